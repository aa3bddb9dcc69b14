"""The fair test of the laptop chapter (``book/experiments/02_laptop.ipynb``, section "The
paper's claim, tested fairly"): what was registered before the runs, the selection grid
with each method's chosen setting, the learning curves, the final table beside its
controls, and PC's verdicts by the registered rule (:data:`perceptcoh.engine.fair.MARGINS`).

The documents are the engine's (:mod:`perceptcoh.engine.fair`): the registration
(``results/cifar100-laptop-fair-plan.json``), the selection and the final runs. Every
function that shows a document takes ``None`` too (not saved yet) and then says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from ..engine.collapse import DEGRADED_DEAD_FRACTION
from ..engine.fair import CLASS_AWARE, CLASS_UNAWARE, FAIR_METHODS, final_plan
from ..engine.plans import Plan
from ..stats import difference
from .report import METHOD_NAMES, degradation, html_table, scores_by_seed

__all__ = ["PLAN", "SELECTION", "FINAL", "registration_table", "selection_table",
           "plot_curves", "final_table", "verdicts", "verdict_table", "answer", "live_plan"]

PLAN = "cifar100-laptop-fair-plan.json"
SELECTION = "cifar100-laptop-fair-selection.json"
FINAL = "cifar100-laptop-fair-final.json"

CONTROLS = {"ce": "CE only (labels)", "untrained": "untrained"}
CURVE_LABELS = {"loss": "stepped loss / its first value",
                "gradient_ratio": r"$|\nabla(\beta L)|\,/\,|\nabla \mathrm{CE}|$",
                "feature_norm": "mean feature norm", "effective_rank": "effective rank"}


def registration_table(registered: Mapping) -> str:
    """The registered knobs (method, knob, its two values, where they come from) and the
    grid, as HTML; the commit that registered them in the caption."""
    registration = registered["registration"]
    rows = [[METHOD_NAMES[method], knob["name"], " / ".join(map(str, knob["values"])),
             knob["source"]] for method, knob in registration["knobs"].items()]
    others = [METHOD_NAMES[m] for m in FAIR_METHODS if m not in registration["knobs"]]
    rows.append([", ".join(others), "–", "–", "no main knob of its own"])
    ratios = ", ".join(map(str, registration["gradient_ratios"]))
    commit = registered.get("committed_in")
    commit = "(not committed)" if commit is None else commit[:10]
    return html_table(["method", "knob", "values", "source"], rows,
                      caption=f"registered in commit {commit}: gradient_ratio in "
                              f"{{{ratios}}}, crossed with each knob's two values")


def _value(key: Mapping) -> str:
    return "" if key.get("knob") is None else f"{key['knob']}={key['value']}"


def selection_table(selection: Mapping | None) -> str:
    """Each selection run's validation probe (%), a row per method and knob value, a
    column per ratio; the chosen setting marked ▶, a collapsed run as †, a diverged one as
    ✗, a degraded one with ‡ (:func:`~perceptcoh.book.report.degradation`), an edge
    choice flagged."""
    if selection is None:
        return "<p>No selection to show: it is not saved yet.</p>"
    ratios = sorted({run["key"]["gradient_ratio"] for run in selection["runs"]})
    cells: dict[tuple, dict] = {}
    for run in selection["runs"]:
        key = run["key"]
        row = cells.setdefault((key["method"], _value(key)), {})
        if run.get("diverged"):
            text = "✗"
        elif run.get("collapsed") is not False:
            text = "†"
        else:
            text = f"{100 * run['metrics']['val_linear_probe_top1']:.1f}"
            text += " ‡" if degradation(run) else ""
        chosen = selection["chosen"][key["method"]]
        if (chosen["gradient_ratio"], chosen["value"]) == (key["gradient_ratio"], key["value"]):
            text = f"▶ {text}" + (" ⚑" if chosen["edge"] else "")
        row[key["gradient_ratio"]] = text
    extended = selection.get("extensions") or {}
    rows = [[METHOD_NAMES[method] + (" (grid extended)" if method in extended else ""),
             value or "–", *[row.get(r, "") for r in ratios]]
            for (method, value), row in cells.items()]
    return html_table(["method", "knob", *[f"ratio {r:g}" for r in ratios]], rows,
                      caption="validation linear probe (%) of each selection run (seed "
                              f"{selection['runs'][0]['key']['seed']})",
                      footnote="▶ chosen; ⚑ chosen at the edge of the grid; † collapsed; "
                               "✗ diverged (neither can be chosen); ‡ degraded (at least "
                               f"{DEGRADED_DEAD_FRACTION:.0%} of the dimensions dead: "
                               "perceptcoh.engine.collapse.degradation_reasons)")


def _curves(document: Mapping, method: str) -> dict[str, np.ndarray]:
    """The mean curve over the method's runs (seeds) of each quantity, by step."""
    runs = [run for run in document["runs"] if run["key"]["method"] == method and run["curve"]]
    if not runs:
        return {}
    steps = np.array([point["step"] for point in runs[0]["curve"]])
    curves = {"step": steps}
    for name in CURVE_LABELS:
        values = np.array([[np.nan if p[name] is None else p[name] for p in run["curve"]]
                           for run in runs], dtype=float)
        if name == "loss":
            values = values / values[:, :1]
        curves[name] = values.mean(axis=0)
    return curves


def plot_curves(document: Mapping, methods: Sequence[str] = (*FAIR_METHODS, "ce"),
                quantities: Sequence[str] = ("loss", "gradient_ratio", "feature_norm",
                                             "effective_rank")) -> plt.Figure:
    """One panel per quantity of the learning curves, one line per method (the mean of its
    final seeds): PC in red, KD and CE in grey, the class-unaware baselines in blue tones."""
    figure, axes = plt.subplots(1, len(quantities), figsize=(3.1 * len(quantities), 2.9))
    for axis, quantity in zip(np.atleast_1d(axes), quantities):
        for index, method in enumerate(methods):
            curves = _curves(document, method)
            if not curves or np.all(np.isnan(curves[quantity])):
                continue
            colour = "C3" if method == "pc" else "gray" if method in ("kd", "ce") else \
                plt.cm.Blues(0.45 + 0.1 * index)
            style = "--" if method == "ce" else "-"
            axis.plot(curves["step"], curves[quantity], style, color=colour,
                      label=METHOD_NAMES[method], lw=1.4)
        if quantity in ("gradient_ratio", "feature_norm"):
            axis.set_yscale("log")
        axis.set_xlabel("optimiser step")
        axis.set_title(CURVE_LABELS[quantity], fontsize=9)
    np.atleast_1d(axes)[-1].legend(fontsize=7, loc="best")
    figure.tight_layout()
    return figure


def _scores(document: Mapping, method: str, metric: str) -> dict[int, float]:
    """:func:`~perceptcoh.book.report.scores_by_seed` of a final run: the controls train in
    the supervised protocol, the fair methods in the pure one."""
    protocol = "supervised" if method in CONTROLS else "pure"
    return scores_by_seed(document["runs"], method, protocol, metric)


def _mean_std(values: Sequence[float], scale: float, digits: int) -> str:
    values = np.asarray(values, dtype=float) * scale
    spread = values.std(ddof=1) if len(values) > 1 else math.nan
    return f"{values.mean():.{digits}f} ± {spread:.{digits}f}"


def final_table(final: Mapping | None) -> str:
    """Each method at its chosen setting and the two controls: test probe and kNN (%),
    gap, mean ± standard deviation over the final seeds (of the runs that did not
    diverge), the setting, and the runs that failed: collapsed, diverged or degraded,
    announced in their own column, never averaged away in silence."""
    if final is None:
        return "<p>No final table to show: the final runs are not saved yet.</p>"
    rows = []
    for method in (*FAIR_METHODS, *CONTROLS):
        cells = [CONTROLS.get(method, METHOD_NAMES.get(method, method))]
        for metric, scale, digits in (("linear_probe_top1", 100, 1), ("knn_top1", 100, 1),
                                      ("perception_gap_r1", 1, 4)):
            cells.append(_mean_std(list(_scores(final, method, metric).values()), scale,
                                   digits))
        setting = final["chosen"].get(method)
        cells.append("–" if setting is None else
                     f"ratio {setting['gradient_ratio']:g}"
                     + (f", {setting['knob']}={setting['value']}" if setting["knob"] else ""))
        runs = [run for run in final["runs"] if run["key"]["method"] == method]
        failed = [f"seed {run['key']['seed']} " + ("diverged" if run.get("diverged")
                                                   else "collapsed" if run.get("collapsed")
                                                   else "degraded")
                  for run in runs
                  if run.get("diverged") or run.get("collapsed") or degradation(run)]
        cells.append(", ".join(failed) if failed else f"none of {len(runs)}")
        rows.append(cells)
    seeds = sorted({run["key"]["seed"] for run in final["runs"]})
    return html_table(["student", "probe (%)", "kNN (%)", "gap Δ₁", "setting", "failed runs"],
                      rows,
                      caption=f"test scores, mean ± sd over seeds {seeds}")


def verdicts(final: Mapping, margins: Mapping | None = None) -> list[dict]:
    """PC against each baseline, on the test probe and on the gap, by the registered rule:
    the paired 90% interval of ``PC - baseline`` over the final seeds; ``"on par"`` when it
    lies within the margin (probe: ``on_par_within``; gap: ``on_par_fraction`` of the CE-only
    student's mean gap), else ``"ahead"`` or ``"behind"`` when it excludes 0 (a smaller gap
    is better), else ``"undecided"``. Each row has ``group`` (class-unaware or
    class-aware), ``score``, ``d``, ``low``, ``high``, ``margin`` and ``verdict``."""
    margins = margins or final["registered"]["registration"]["margins"]
    ce_gap = float(np.mean(list(_scores(final, "ce", "perception_gap_r1").values())))
    scores = {"probe": (margins["probe"]["metric"], margins["probe"]["on_par_within"], 1),
              "gap": (margins["gap"]["metric"], margins["gap"]["on_par_fraction"] * ce_gap, -1)}
    alpha = (1 - margins["probe"]["interval"]) / 2
    rows = []
    for group, baselines in (("class-unaware", CLASS_UNAWARE), ("class-aware", CLASS_AWARE)):
        for baseline in baselines:
            for score, (metric, margin, better) in scores.items():
                pc, other = _scores(final, "pc", metric), _scores(final, baseline, metric)
                seeds = sorted(set(pc) & set(other))
                step = difference([pc[s] for s in seeds], [other[s] for s in seeds],
                                  paired=True)
                low, high = step.bounds(alpha)
                if -margin <= low and high <= margin:
                    verdict = "on par"
                elif low > 0 or high < 0:
                    verdict = "ahead" if (low > 0) == (better > 0) else "behind"
                else:
                    verdict = "undecided"
                rows.append({"group": group, "baseline": baseline, "score": score,
                             "d": step.d, "low": low, "high": high, "margin": margin,
                             "verdict": verdict})
    return rows


def verdict_table(rows: Sequence[Mapping]) -> str:
    """:func:`verdicts` as HTML, the class-unaware baselines first, then KD."""
    body = []
    for row in rows:
        scale, digits = (100, 1) if row["score"] == "probe" else (1, 4)
        body.append([row["group"], METHOD_NAMES[row["baseline"]], row["score"],
                     f"{scale * row['d']:+.{digits}f}",
                     f"[{scale * row['low']:+.{digits}f}, {scale * row['high']:+.{digits}f}]",
                     f"±{scale * row['margin']:.{digits}f}", row["verdict"]])
    return html_table(["group", "PC against", "score", "PC − it", "90% interval", "margin",
                       "verdict"], body,
                      caption="PC against each baseline, paired over the final seeds "
                              "(probe in points; each interval on its own, not adjusted)")


def answer(rows: Sequence[Mapping]) -> str:
    """One sentence that answers the paper's claim from :func:`verdicts`, whichever way the
    verdicts go: for each score, how many class-unaware baselines PC is ahead of, on par
    with, behind or undecided against, and its verdict against KD."""
    parts = []
    for score in ("probe", "gap"):
        unaware = [row["verdict"] for row in rows
                   if row["score"] == score and row["group"] == "class-unaware"]
        counts = ", ".join(f"{verdict} {unaware.count(verdict)}" for verdict in
                           ("ahead", "on par", "behind", "undecided") if unaware.count(verdict))
        kd = [row["verdict"] for row in rows if row["score"] == score
              and row["group"] == "class-aware"]
        parts.append(f"on the {score}, against the {len(unaware)} class-unaware baselines, "
                     f"PC is {counts}; against KD, {', '.join(kd)}")
    return "At this scale, " + "; ".join(parts) + "."


def live_plan(final: Mapping, method: str = "pc", **options) -> Plan:
    """The live check's re-run: the final run of ``method`` at its chosen setting from the
    first final seed, a plan of one run (``options``: :func:`perceptcoh.engine.fair.
    final_plan`'s ``root`` and execution fields, e.g. ``data_root``)."""
    plan = final_plan(final["scale"], final["chosen"], **options)
    seed = min(run.key["seed"] for run in plan.runs)
    plan.runs = [run for run in plan.runs
                 if run.key["method"] == method and run.key["seed"] == seed]
    if not plan.runs:
        raise ValueError(f"method must be one of the final runs' methods, got {method!r}")
    return plan
