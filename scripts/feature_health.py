"""The features of the saved laptop students, measured as the engine's final check measures
them (perceptcoh.engine.collapse.check_collapse: the first 512 CIFAR-100 test images, eval
mode, float32), beside those of the same student before training (the seed's initial
weights), saved to results/feature-health.json: the evidence behind the thresholds of a
*degraded* run (perceptcoh.engine.collapse.degradation_reasons).

    PERCEPTCOH_DATA=../shared/data python scripts/feature_health.py   # about a minute

It reads every finished run with a ``model.pt`` under ``runs/laptop`` (the fair test's
selection and final runs of the machine that trained them; a clean clone has none) and the
``collapse`` record of every run of the saved laptop documents (``results/cifar100-laptop-
*.json``), which hold the dead dimensions but not the rank or the initial norm.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from perceptcoh.engine.checkpoint import model_from_checkpoint
from perceptcoh.book.report import degradation
from perceptcoh.engine.collapse import check_collapse
from perceptcoh.engine.data import load_dataset
from perceptcoh.engine.provenance import provenance
from perceptcoh.models import build_model

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "laptop"
OUTPUT = ROOT / "results" / "feature-health.json"


def initial_student(name: str, num_classes: int, options: dict, seed: int) -> torch.nn.Module:
    """The student a run of ``seed`` starts from (perceptcoh.engine.session seeds torch with
    the run's seed, then builds the model)."""
    torch.manual_seed(seed)
    return build_model(name, num_classes, **options).eval()


def measured_runs(test_set) -> list[dict]:
    """Every finished run under :data:`RUNS`: its key settings, its features' statistics
    and those of its initial student."""
    records = []
    for model_file in sorted(RUNS.glob("*/*/model.pt")):
        results = json.loads((model_file.parent / "results.json").read_text())
        config = results["config"]
        model, _ = model_from_checkpoint(model_file)
        initial = initial_student(config["model"], test_set.num_classes,
                                  config.get("model_options") or {}, config["seed"])
        start = check_collapse(initial, test_set, channels_last=False)
        final = check_collapse(model, test_set, channels_last=False,
                               initial_norm=start["feature_norm"])
        records.append({
            "run": model_file.parent.name, "method": config["method"],
            "epochs": config["epochs"], "seed": config["seed"],
            "probe_top1": results["metrics"].get("linear_probe_top1"),
            **{name: final[name] for name in ("collapsed", "degraded", "degradation",
                                             "dead_fraction", "effective_rank",
                                             "spanned_dimensions", "feature_norm",
                                             "norm_ratio")},
            "initial": {name: start[name] for name in ("feature_norm", "effective_rank",
                                                      "spanned_dimensions")},
        })
    return records


def saved_documents() -> dict[str, dict]:
    """Per saved laptop document: its runs with a ``collapse`` record, the collapsed ones,
    the degraded ones (judged on the dead dimensions they hold), and the largest dead
    fraction among the others."""
    summary = {}
    for path in sorted((ROOT / "results").glob("cifar100-laptop-*.json")):
        runs = [run for run in json.loads(path.read_text()).get("runs", [])
                if run.get("collapse")]
        if not runs:
            continue
        healthy = [run for run in runs if not run.get("collapsed") and not degradation(run)]
        summary[path.name] = {
            "runs": len(runs),
            "collapsed": sum(bool(run.get("collapsed")) for run in runs),
            "degraded": [run["key"] for run in runs if degradation(run)],
            "largest_dead_fraction_of_the_others": max(
                (run["collapse"]["dead_fraction"] for run in healthy), default=None),
        }
    return summary


def extremes(records: list[dict]) -> dict:
    """The ranges over the trained, healthy runs, and over the initial students."""
    trained = [r for r in records if r["epochs"] > 0 and not r["collapsed"]
               and not r["degraded"]]
    return {
        "trained_runs": len(trained),
        "dead_fraction_max": max(r["dead_fraction"] for r in trained),
        "spanned_dimensions_min": min(r["spanned_dimensions"] for r in trained),
        "effective_rank_range": [min(r["effective_rank"] for r in trained),
                                 max(r["effective_rank"] for r in trained)],
        "norm_ratio_range": [min(r["norm_ratio"] for r in trained),
                             max(r["norm_ratio"] for r in trained)],
        "initial_effective_rank_range": [min(r["initial"]["effective_rank"] for r in records),
                                         max(r["initial"]["effective_rank"] for r in records)],
        "initial_spanned_dimensions_min": min(r["initial"]["spanned_dimensions"]
                                              for r in records),
    }


def main() -> int:
    torch.set_num_threads(1)
    test_set = load_dataset("cifar100", "test", download=False)
    records = measured_runs(test_set)
    if not records:
        print(f"no finished run with a model.pt under {RUNS}", file=sys.stderr)
        return 1
    document = {"provenance": provenance(device="cpu"), "images": 512,
                "summary": extremes(records), "documents": saved_documents(),
                "runs": records}
    OUTPUT.write_text(json.dumps(document, indent=1) + "\n")
    print(json.dumps(document["summary"], indent=1))
    print(json.dumps(document["documents"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
