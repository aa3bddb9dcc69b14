"""What the chapter *Ablations* (``book/experiments/04_ablations.ipynb``) shows: one knob of
PC at a time on the full-scale comparison's main pair, each a sweep plotted from the saved
document (:func:`perceptcoh.engine.plans.ablation_plan`).

As in :mod:`perceptcoh.book.cifar100`, the chapter loads its document once and every
function here takes ``None`` (not saved yet) too.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

from ..engine.experiments import SCALES, Plan, sweep_values
from .cifar100 import _require, provenance
from .report import sweep

__all__ = ["ABLATION", "ABLATION_COMMAND", "LABELS", "plot_knob", "check_sweeps",
           "show_sweeps", "ablation_plan_summary", "check_ablation_plan"]

ABLATION = "cifar100-ablation.json"
ABLATION_COMMAND = "python -m perceptcoh experiment ablation --scale full"

# The x-axis label of each knob of the ablations.
LABELS = {"tau": r"temperature $\tau$", "batch_size": "batch size $B$",
          "metric": "dissimilarity $d_f = d_g$", "r": "exponent $r$",
          "gradient_ratio": r"gradient_ratio ($\beta$ / the balancing $\beta$)"}


def plot_knob(document: dict, knob: str, title: str) -> None:
    """Plot one sweep (score on the left axis, gap on the right), then print its
    points."""
    points = sweep(document["runs"], knob)
    values = [p[0] for p in points]
    categorical = any(isinstance(v, str) for v in values)
    x = np.arange(len(values)) if categorical else np.array(values, dtype=float)
    figure, axis = plt.subplots(figsize=(5.2, 2.8))
    protocol = "supervised" if knob == "gradient_ratio" else "pure"
    axis.plot(x, [100 * p[1] for p in points], "o-", color="C0")
    axis.set_ylabel("top-1 (%)" if protocol == "supervised" else "linear probe (%)",
                    color="C0")
    gap_axis = axis.twinx()
    gap_axis.plot(x, [p[2] for p in points], "s--", color="C3")
    gap_axis.set_ylabel(r"gap $\hat\Delta_1$", color="C3")
    if not categorical and knob in ("tau", "batch_size"):
        axis.set_xscale("log", base=10 if knob == "tau" else 2)
    axis.set_xticks(x, [str(v) for v in values])
    axis.set_xlabel(LABELS[knob])
    axis.set_title(f"{title}: {protocol}", fontsize=9)
    plt.tight_layout()
    plt.show()
    print("  ".join(f"{v}: {100 * s:.1f}%" + ("" if math.isnan(g) else f", gap {g:.3f}")
                    for v, s, g, _ in points))


def _planned_values(knob: str, scale: str) -> list[str]:
    return sorted(map(str, sweep_values(knob, SCALES[scale]["ablations"][knob])))


def check_sweeps(document: dict, scale: str = "full") -> None:
    """Raises ``ValueError`` unless the document is complete, every knob has every planned
    value (CE alone as ``gradient_ratio`` 0), the comparison's setting is one shared run
    and every metric is finite."""
    _require(document["completed"], "not completed")
    for knob in SCALES[scale]["ablations"]:
        found = [p[0] for p in sweep(document["runs"], knob)]
        _require(sorted(map(str, found)) == _planned_values(knob, scale), (knob, found))
    batch = SCALES[scale]["student"]["batch_size"]
    default = {e["output_dir"] for e in document["runs"]
               if e["key"]["protocol"] == "pure" and not e["config"]["loss_options"]
               and e["config"]["batch_size"] == batch}
    _require(len(default) == 1, default)
    for entry in document["runs"]:
        _require(all(math.isfinite(v) for v in entry["metrics"].values()
                     if isinstance(v, float)), entry["key"])


def show_sweeps(document: dict | None, scale: str = "full") -> None:
    """Check the saved sweeps (:func:`check_sweeps`), print their provenance and plot
    every knob; nothing but a note when ``document`` is ``None``."""
    if document is None:
        print("No sweep to show: the ablations are not saved yet (see above).")
        return
    check_sweeps(document, scale)
    print(provenance(document))
    for knob in SCALES[scale]["ablations"]:
        plot_knob(document, knob, f"{scale} scale")


def _shared(plan: Plan, comparison: Plan) -> set[str]:
    return {run.config.output_dir for run in plan.runs} & \
        {run.config.output_dir for run in comparison.runs}


def ablation_plan_summary(plan: Plan, comparison: Plan) -> str:
    """How many sweep points the plan has, how many distinct runs, and how many of them
    the comparison already trains."""
    distinct = len({run.config.output_dir for run in plan.runs})
    return (f"{len(plan.runs)} sweep points, {distinct} distinct runs, "
            f"{len(_shared(plan, comparison))} shared with the comparison")


def check_ablation_plan(plan: Plan, comparison: Plan) -> None:
    """Raises ``ValueError`` unless every knob has every planned value and shares exactly
    the comparison's PC run with it (and CE alone for ``gradient_ratio``)."""
    in_comparison = {run.config.output_dir for run in comparison.runs}
    for knob in SCALES[plan.scale]["ablations"]:
        planned = [run.key["value"] for run in plan.runs if run.key["knob"] == knob]
        _require(sorted(map(str, planned)) == _planned_values(knob, plan.scale), knob)
        shared = [run for run in plan.runs
                  if run.key["knob"] == knob and run.config.output_dir in in_comparison]
        _require(len(shared) == (2 if knob == "gradient_ratio" else 1), knob)
