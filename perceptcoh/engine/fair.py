"""The fair test of the paper's claim: every method at its own best step size, chosen on a
validation split by one rule, then trained from fresh seeds and scored once on the test set.

Three documents, in order, each a command (``python -m perceptcoh experiment NAME``):

1. ``fair-plan``: :func:`registration`, the grid, the rule and the margins of the
   verdicts, written before any selection run and committed (``results/*-fair-plan.json``).
2. ``fair-selection``: :func:`selection_plan`, every method of :data:`FAIR_METHODS` in the
   pure protocol (``beta * L``, with ``beta`` set from one labelled batch so that
   ``beta * |grad L| = gradient_ratio * |grad CE|``) at every ``gradient_ratio`` of the
   grid, crossed with two values of the method's own knob (:data:`KNOBS`), from the
   selection seed, at the final runs' length, on the training images the validation split
   leaves; the setting of each method is chosen by :func:`perceptcoh.engine.selection.choose`
   from validation scores only. A ratio chosen at the grid's edge extends that method's grid
   by one step on that side (:data:`EXTENSIONS`), once, and the choice is made again.
3. ``fair-final``: :func:`final_plan`, every method at its chosen setting from the final
   seeds, which the selection did not use, with two controls: CE alone (labels only,
   supervised) and the untrained student (``epochs=0``), both scored against the teacher.

Every run records a learning curve (``curve_every``, :mod:`perceptcoh.engine.curves`).
CRD is left out: its memory bank holds one feature per training image, refreshed once an
epoch, so in two epochs its negatives are features of an initial and of a half-trained
student; it keeps its row in the one-epoch table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from .plans import Plan, PlannedRun, SCALES, new_plan, student_run

__all__ = ["FAIR_METHODS", "CLASS_UNAWARE", "CLASS_AWARE", "KNOBS", "Knob", "FAIR_SCALES",
           "EXTENSIONS", "MARGINS", "registration", "selection_plan", "final_plan",
           "extensions_for"]

# PC, the class-unaware baselines the claim is about, and KD, the class-aware reference.
CLASS_UNAWARE = ("fitnet", "pkt", "sp", "cc", "rkd")
CLASS_AWARE = ("kd",)
FAIR_METHODS = ("pc", *CLASS_UNAWARE, *CLASS_AWARE)


@dataclass(frozen=True)
class Knob:
    """A method's main knob: its two values (the first is the library's default), the
    loss options each sets, and where the values come from."""

    name: str
    values: tuple
    options: Callable[[object], dict]
    source: str


KNOBS: dict[str, Knob] = {
    "pc": Knob("metric", ("euclidean", "cosine"),
               lambda value: {"metric_teacher": value, "metric_student": value},
               "the dissimilarity d_f = d_g: the paper says its formulation applies to general "
               "dissimilarities; the library's euclidean default was never chosen on data"),
    "kd": Knob("temperature", (4.0, 2.5), lambda value: {"temperature": value},
               "Hinton et al. (2015): for a small student, temperatures 2.5 to 4 worked best; "
               "4 is RepDistiller's and the library's default"),
    "rkd": Knob("angle", (True, False),
                lambda value: {"angle_weight": 50.0 if value else 0.0},
                "Park et al. (2019): RKD-DA (distance weight 25, angle weight 50) against "
                "RKD-D (distance only)"),
    "cc": Knob("gamma", (0.4, 0.8), lambda value: {"gamma": value},
               "Peng et al. (2019), kernel width of the Gaussian RBF: 0.4 is RepDistiller's "
               "default, 0.8 a sharper kernel that its 2nd-order Taylor expansion still "
               "follows (2 gamma <= 1.6)"),
}

# The grid's next step beyond each edge: one more factor of about 3.
EXTENSIONS = {"below": 0.1, "above": 30.0}

# The fair test at each scale: the length and seeds of every run, the validation split, the
# learning-curve interval and the grid of gradient_ratio.
FAIR_SCALES: dict[str, dict] = {
    "laptop": {"epochs": 2, "validation_split": 5000, "curve_every": 50,
               "selection_seed": 0, "final_seeds": (1, 2, 3),
               "gradient_ratios": (0.3, 1.0, 3.0, 10.0)},
    # A pipeline check in minutes on the cpu scale's subsets.
    "cpu": {"epochs": 1, "validation_split": 1000, "curve_every": 8,
            "selection_seed": 0, "final_seeds": (1,),
            "gradient_ratios": (1.0, 3.0)},
}

# The verdicts of the final table, fixed before the runs.
MARGINS = {
    "probe": {"metric": "linear_probe_top1", "interval": 0.90, "on_par_within": 0.01,
              "rule": "on par when the paired 90% interval of the test-probe difference "
                      "(over the final seeds) lies within +/-1 point; ahead or behind when "
                      "it lies wholly above or below 0"},
    "gap": {"metric": "perception_gap_r1", "interval": 0.90, "on_par_fraction": 0.01,
            "rule": "on par when the paired 90% interval of the gap difference lies within "
                    "+/-1% of the CE-only student's mean gap (the span from that gap to 0 is "
                    "the part of the gap that labels alone do not give); ahead or behind "
                    "when it lies wholly below or above 0 (a smaller gap is better)"},
    "family": "each of PC's comparisons (6 methods, 2 scores) is read on its own 90% "
              "interval, not adjusted for the others; the chapter says so beside the verdicts",
}

_RULE = ("each method's setting (gradient_ratio, and its knob's value where it has one) is "
         "the healthy selection run (collapsed is False, not diverged) with the best "
         "validation linear probe (val_linear_probe_top1); ties go to the smaller ratio, then "
         "to the knob's first value; a collapsed or diverged run is never chosen. A ratio "
         "chosen at the edge of the grid is flagged, that method's grid is extended by one "
         "step on that side (0.1 below, 30 above) at each knob value, and the choice is made "
         "again on the extended grid (once; the flag is kept)")


def registration(scale: str = "laptop") -> dict:
    """What the fair test commits to before its first selection run: methods, grid, knobs
    (with their sources), the selection rule, seeds, length, validation split, and the
    margins of the verdicts."""
    fair = _fair(scale)
    return {
        "scale": scale,
        "protocol": "pure: the student trains on beta * L alone; beta is set once, from one "
                    "labelled batch of the initial student, so that beta * |grad L| = "
                    "gradient_ratio * |grad CE| (the labels of that batch set one scalar)",
        "methods": {"pc": "the method under test", "class_unaware": list(CLASS_UNAWARE),
                    "class_aware": list(CLASS_AWARE)},
        "left_out": {"crd": "its memory bank holds one feature per training image, "
                            "refreshed once an epoch: in a run of a few epochs its negatives "
                            "are stale features of an early student"},
        "gradient_ratios": list(fair["gradient_ratios"]),
        "extensions": dict(EXTENSIONS),
        "knobs": {method: {"name": knob.name, "values": list(knob.values),
                           "source": knob.source} for method, knob in KNOBS.items()},
        "budget": "every (ratio, knob value) pair of a method is one run from the selection "
                  "seed: 8 runs for a method with a knob, 4 without, plus 2 per extension "
                  "(1 without a knob)",
        "rule": _RULE,
        "score": "val_linear_probe_top1",
        "selection_seed": fair["selection_seed"],
        "final_seeds": list(fair["final_seeds"]),
        "epochs": fair["epochs"],
        "validation_split": fair["validation_split"],
        "curve_every": fair["curve_every"],
        "controls": ["ce: CE alone on the labels, supervised, the final seeds",
                     "untrained: the initial student (epochs 0), the final seeds"],
        "margins": MARGINS,
        "student_recipe": SCALES[scale]["student"],
    }


def selection_plan(scale: str = "laptop", *, extensions: Mapping[str, Sequence[float]] = {},
                   root: str | os.PathLike = "runs", **execution) -> Plan:
    """Every method of :data:`FAIR_METHODS` at every ``gradient_ratio`` of the scale's grid
    (and ``extensions[method]``), crossed with its knob's values, from the selection seed.
    ``execution``: TrainConfig fields that only say how the runs are executed."""
    fair = _fair(scale)
    plan = _fair_plan("fair-selection", scale, root, execution)
    seed = fair["selection_seed"]
    for method in FAIR_METHODS:
        ratios = sorted({*fair["gradient_ratios"], *extensions.get(method, ())})
        knob = KNOBS.get(method)
        for ratio in ratios:
            for value in (knob.values if knob else (None,)):
                key = {**_pair_key(plan), "method": method, "protocol": "pure", "seed": seed,
                       "gradient_ratio": ratio, "knob": knob and knob.name, "value": value}
                plan.runs.append(_fair_run(plan, key, root, execution, method, seed,
                                           gradient_ratio=ratio, value=value))
    return plan


def final_plan(scale: str, chosen: Mapping[str, Mapping], *,
               root: str | os.PathLike = "runs", **execution) -> Plan:
    """Every method at its ``chosen`` setting (``{method: {"gradient_ratio", "value"}}``,
    from :func:`perceptcoh.engine.selection.choose`) from each final seed, and the two
    controls, CE alone (``method`` ``"ce"``) and the untrained student (``"untrained"``)."""
    fair = _fair(scale)
    missing = [method for method in FAIR_METHODS if method not in chosen]
    if missing:
        raise ValueError(f"chosen has no setting for {', '.join(missing)}")
    plan = _fair_plan("fair-final", scale, root, execution)
    for seed in fair["final_seeds"]:
        for method in FAIR_METHODS:
            setting = chosen[method]
            knob = KNOBS.get(method)
            key = {**_pair_key(plan), "method": method, "protocol": "pure", "seed": seed,
                   "gradient_ratio": setting["gradient_ratio"], "knob": knob and knob.name,
                   "value": setting.get("value")}
            plan.runs.append(_fair_run(plan, key, root, execution, method, seed,
                                       gradient_ratio=setting["gradient_ratio"],
                                       value=setting.get("value")))
        for control, epochs in (("ce", fair["epochs"]), ("untrained", 0)):
            key = {**_pair_key(plan), "method": control, "protocol": "supervised",
                   "seed": seed, "gradient_ratio": None, "knob": None, "value": None}
            plan.runs.append(_fair_run(plan, key, root, execution, "ce", seed, epochs=epochs))
    return plan


def extensions_for(chosen: Mapping[str, Mapping]) -> dict[str, tuple[float, ...]]:
    """The ratios to add to each method whose choice sits at an edge of its grid: the step
    of :data:`EXTENSIONS` on that side, unless that method was trained there already."""
    return {method: (EXTENSIONS[setting["edge"]],) for method, setting in chosen.items()
            if setting["edge"] and EXTENSIONS[setting["edge"]] not in setting["ratios"]}


def _fair(scale: str) -> dict:
    if scale not in FAIR_SCALES:
        raise ValueError(f"the fair test has no scale {scale!r}; choose one of: "
                         f"{', '.join(FAIR_SCALES)}")
    return FAIR_SCALES[scale]


def _fair_plan(name: str, scale: str, root, execution: dict) -> Plan:
    return new_plan(name, scale, SCALES[scale]["pairs"][:1], root, execution)


def _pair_key(plan: Plan) -> dict:
    teacher, student = SCALES[plan.scale]["pairs"][0]
    return {"pair": f"{teacher}->{student}"}


def _fair_run(plan: Plan, key: dict, root, execution: dict, method: str, seed: int, *,
              gradient_ratio: float | None = None, value: object = None,
              epochs: int | None = None) -> PlannedRun:
    fair = FAIR_SCALES[plan.scale]
    teacher, student = SCALES[plan.scale]["pairs"][0]
    overrides: dict = {"epochs": fair["epochs"] if epochs is None else epochs,
                       "validation_split": fair["validation_split"]}
    protocol = "supervised"
    if method != "ce":
        protocol = "pure"
        overrides["gradient_ratio"] = gradient_ratio
        knob = KNOBS.get(method)
        if knob is not None:
            overrides["loss_options"] = knob.options(value)
    execution = {**execution, "curve_every": fair["curve_every"]}
    return student_run(plan, key, teacher, student, root, execution, method=method,
                       protocol=protocol, seed=seed, **overrides)

