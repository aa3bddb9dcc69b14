"""A validation sweep of the synthetic chapter's learning rates (book/theory/
05_synthetic.ipynb, whose rates were fixed by hand before it), saved to
results/synthetic-sweep.json:

- a sweep of each loss's learning rate over {3e-3, 1e-2, 3e-2, 1e-1, 3e-1}, on each data
  set, on four validation seeds (16 to 19) that the chapter's sixteen seeds (0 to 15) do not
  use: the rate with the smallest mean held-out perception gap. The grid reaches ten times
  above the largest rate a first sweep (3e-3 to 3e-2) chose, so that a choice at its upper
  edge would show;
- RKD's angle term (the weights of Park et al.) added to its distance term, on two of those
  seeds, at the rates the sweep chose: held-out gaps and training times, beside PC.

    python scripts/synthetic_sweep.py      # about 10 minutes on one CPU thread

The chapter trains every loss at the rate chosen here: ``LEARNING_RATES`` of
``perceptcoh.book.synthetic`` must equal the saved choice (tests/book/test_synthetic.py).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from perceptcoh import RelationalKD
from perceptcoh.engine.provenance import provenance
from perceptcoh.book.synthetic import DATASETS, LOSSES, Budget, compare


def sweep_learning_rates(seeds: Sequence[int], rates: Sequence[float],
                         budget: Budget = Budget()) -> dict[str, dict[str, object]]:
    """Per data set of :data:`DATASETS` and loss of :data:`LOSSES`, the mean held-out
    perception gap over ``seeds`` at each learning rate, and the rate with the smallest.

    Returns ``{data set: {"gap": {loss: {rate: mean gap}}, "chosen": {loss: rate}}}`` (rates
    as ``repr`` strings, the keys a JSON file can hold).
    """
    sweep = {}
    for name, make_data in DATASETS.items():
        gaps = {method: {} for method in LOSSES}
        for rate in rates:
            runs = [compare(name, make_data(np.random.default_rng(seed), budget.train_size,
                                            budget.test_size), seed, budget,
                            learning_rates=dict.fromkeys(LOSSES, rate))
                    for seed in seeds]
            for method in LOSSES:
                gaps[method][repr(rate)] = float(np.mean(
                    [run.results[method]["gap"] for run in runs]))
        chosen = {method: float(min(gap, key=gap.get)) for method, gap in gaps.items()}
        sweep[name] = {"gap": gaps, "chosen": chosen}
    return sweep


def angle_term_check(seeds: Sequence[int], learning_rates: dict[str, dict[str, float]],
                     budget: Budget = Budget()) -> list[dict[str, object]]:
    """RKD with and without its angle term (the weights of Park et al., distance 25 and
    angle 50), at RKD's rate of ``learning_rates[data set]``, beside PC, on each data set
    and seed: held-out gaps and training seconds, one record per run."""
    losses = {"PC": LOSSES["PC"], "RKD": LOSSES["RKD"],
              "RKD with angle": lambda: RelationalKD(distance_weight=25.0,
                                                     angle_weight=50.0)}
    records = []
    for name, make_data in DATASETS.items():
        rates = {**learning_rates[name], "RKD with angle": learning_rates[name]["RKD"]}
        for seed in seeds:
            run = compare(name, make_data(np.random.default_rng(seed), budget.train_size,
                                          budget.test_size), seed, budget,
                          learning_rates=rates, losses=losses)
            records.append({"data": name, "seed": seed, **{
                f"{method} {key}": run.results[method][key]
                for method in losses for key in ("gap", "seconds")}})
    return records


def angle_term_summary(records: Sequence[dict[str, object]]) -> dict[str, float]:
    """What :func:`angle_term_check`'s records say: the number of runs, the largest
    relative change of RKD's held-out gap when the angle term is added, the median ratio of
    training times (with / without), and in how many runs the gap with the angle term
    stayed above PC's."""
    change = [abs(r["RKD with angle gap"] / r["RKD gap"] - 1) for r in records]
    slowdown = [r["RKD with angle seconds"] / r["RKD seconds"] for r in records]
    return {"runs": len(records), "largest_change": float(max(change)),
            "slowdown": float(np.median(slowdown)),
            "above_pc": sum(r["RKD with angle gap"] > r["PC gap"] for r in records)}


VALIDATION_SEEDS = [16, 17, 18, 19]
RATES = [3e-3, 1e-2, 3e-2, 1e-1, 3e-1]
OUTPUT = Path(__file__).resolve().parents[1] / "results" / "synthetic-sweep.json"


def main() -> int:
    torch.set_num_threads(1)  # the networks are tiny: one thread wastes least
    sweep = sweep_learning_rates(VALIDATION_SEEDS, RATES)
    chosen = {name: entry["chosen"] for name, entry in sweep.items()}
    document = {
        "provenance": provenance(device="cpu"),
        "validation_seeds": VALIDATION_SEEDS,
        "rates": RATES,
        "sweep": sweep,
        "angle_term": angle_term_check(VALIDATION_SEEDS[:2], chosen),
    }
    OUTPUT.write_text(json.dumps(document, indent=1) + "\n")
    print(json.dumps({name: entry["chosen"] for name, entry in document["sweep"].items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
