"""A chapter's saved results checked as data: the documents hold what their plan says,
every run of a group stays within a bound, and a live re-run agrees with the saved table.
The CIFAR-100 laptop chapter (``book/experiments/02_laptop.ipynb``) calls each in a line.

Bounds on every run are rows, read as sentences::

    BOUNDS = [
        # results, runs of PC,          score,   every run is, bound
        ("before",  "pure, comparison", "gap",   "above",      1 / 3),
        ("now",     "every student",    "probe", "at least",   0.03),
    ]
    checked = check_every_run(BOUNDS, {"before": old, "now": new}, method="pc")
    display(checked)                        # runs, worst value, bound, verdict
    assert checked.hold, checked.failures

The runs are ``"comparison"`` (the comparison's runs of the method), ``"every student"``
(comparison and ablations, each student once: :func:`perceptcoh.book.report.students`) or
``"sweep KNOB"`` (the ablation runs of one knob; ``"sweep KNOB=VALUE"``, one of its points),
optionally preceded by a protocol (``"pure, comparison"``). The scores are the short names of
:data:`perceptcoh.book.report.SCORE_KEYS`.

The live re-run (:func:`compare_live`) must equal the saved runs bit for bit in the
environment that wrote them (same torch, device, thread count, CPU model and vector
instructions, all recorded on both sides, and the same measured ``beta``); elsewhere each
score must lie within ``max(4 sqrt(2) s, f)`` of the saved one, ``s`` the seed standard
deviation of that score over the saved runs of the same method (:func:`seed_spread`), ``f``
the floor of that score: the largest difference measured between floating-point orders of
the same runs (:func:`float_order_floor`, from ``results/laptop-float-order-*.json``). A
pooled spread would let one method's noise hide another's regression.

The bookkeeping checks raise ``ValueError`` naming what is wrong.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np

from ..engine.plans import sweep_values
from ..engine.provenance import FLOAT_ORDER_KEYS
from .report import (METHOD_NAMES, SCORE_KEYS, collapsed_runs, html_table, runs_of,
                     scores_by_seed, students, sweep)

__all__ = ["BOUNDS", "CheckedRuns", "LiveCheck", "check_every_run", "check_comparison",
           "check_longer", "check_sweeps", "pass_times", "seed_spread", "float_order_floor",
           "compare_live", "SWEEP_LABELS", "method_colours", "plot_comparison",
           "plot_sweeps", "sweep_band"]


# How every run of a group must compare with the bound.
BOUNDS = {"above": operator.gt, "below": operator.lt, "at least": operator.ge,
          "at most": operator.le}


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _select(document: dict, runs: str, method: str) -> list[dict]:
    """The runs of ``method`` that ``runs`` names (see the module's docstring)."""
    protocol, _, which = runs.rpartition(", ")
    if which == "comparison":
        group = [e for e in runs_of(document) if e["key"]["method"] == method]
    elif which == "every student":
        group = list(students(document, method).values())
    elif which.startswith("sweep "):
        knob, _, value = which.removeprefix("sweep ").partition("=")
        group = [e for e in runs_of(document, comparison=False)
                 if e["key"]["method"] == method and e["key"].get("knob") == knob
                 and (not value or str(e["key"]["value"]) == value)]
    else:
        raise ValueError(f"runs must end with 'comparison', 'every student' or 'sweep KNOB', "
                         f"got {runs!r}")
    return [e for e in group if not protocol or e["key"]["protocol"] == protocol]


@dataclass(frozen=True)
class CheckedRuns:
    """The rows of :func:`check_every_run`, each with its runs' count, worst value and the
    keys of the runs that break it; shown in a notebook as an HTML table."""

    rows: tuple[tuple, ...]
    counts: tuple[int, ...]
    worst: tuple[float, ...]
    offenders: tuple[tuple[dict, ...], ...]
    caption: str

    @property
    def hold(self) -> bool:
        """Whether every run of every row is within its bound."""
        return not any(self.offenders)

    @property
    def failures(self) -> list[str]:
        """The rows that fail, with the keys of their offending runs."""
        return [f"{row}: {[e['key'] for e in bad]}"
                for row, bad in zip(self.rows, self.offenders) if bad]

    def _repr_html_(self) -> str:
        body = [[results, runs, score, n, f"{worst:.4f}", relation, f"{bound:.4f}",
                 "holds" if not bad else f"fails ({len(bad)} of {n})"]
                for (results, runs, score, relation, bound), n, worst, bad
                in zip(self.rows, self.counts, self.worst, self.offenders)]
        return html_table(["results", "runs", "score", "n", "worst", "every run is",
                           "bound", "verdict"], body, caption=self.caption)


def check_every_run(rows: Sequence[tuple], documents: Mapping[str, dict], method: str = "pc",
                    caption: str = "Every run within its bound") -> CheckedRuns:
    """Check that every run of each row (``(results, runs, score, relation, bound)``, see
    the module's docstring) is ``relation`` the ``bound`` on ``score``; the worst value is
    the one closest to breaking it. Raises ``ValueError`` on an unknown relation or score,
    or on a row that selects no run; never on a bound that is broken (assert
    :attr:`CheckedRuns.hold`)."""
    counts, worst, offenders = [], [], []
    for results, runs, score, relation, bound in rows:
        _require(relation in BOUNDS, f"relation must be one of {tuple(BOUNDS)}, got {relation!r}")
        _require(score in SCORE_KEYS, f"score must be one of {tuple(SCORE_KEYS)}, got {score!r}")
        group = _select(documents[results], runs, method)
        _require(bool(group), f"no run of {method} is {runs!r} in {results!r}")
        values = [e["metrics"][SCORE_KEYS[score]] for e in group]
        counts.append(len(group))
        worst.append(min(values) if relation in ("above", "at least") else max(values))
        offenders.append(tuple(e for e, v in zip(group, values)
                               if not BOUNDS[relation](v, bound)))
    return CheckedRuns(tuple(map(tuple, rows)), tuple(counts), tuple(worst),
                       tuple(offenders), caption)


def check_comparison(document: dict, methods: Sequence[str], seeds: Sequence[int],
                     shipped: str, sha256: str, scale: str = "laptop") -> None:
    """A completed comparison of ``scale``: every method in both protocols (CE only in the
    supervised one) for every seed, from the shipped teacher ``shipped`` whose checkpoint
    has ``sha256``; every run (ablations too) with finite metrics and a ``collapsed`` flag,
    and none collapsed."""
    _completed(document, scale)
    found = sorted((e["key"]["method"], e["key"]["protocol"], e["key"]["seed"])
                   for e in runs_of(document))
    planned = sorted((m, p, s) for m in methods
                     for p in (("supervised",) if m == "ce" else ("supervised", "pure"))
                     for s in seeds)
    _require(found == planned, f"the comparison's runs are {found}, the plan's {planned}")
    for name, teacher in document["teachers"].items():
        _require(teacher["shipped"] == shipped and teacher["sha256"] == sha256,
                 f"teacher {name} is not the shipped {shipped}")
    for entry in document["runs"]:
        expected = None if entry["key"]["method"] == "ce" else sha256
        _require(entry["teacher_sha256"] == expected, f"{entry['key']}: another teacher")
        _require(all(math.isfinite(v) for v in entry["metrics"].values()),
                 f"{entry['key']}: a metric is not finite")
    _healthy(document)


def _completed(document: dict, scale: str) -> None:
    _require(document["completed"] and document["scale"] == scale,
             f"not a completed {scale} document")


def _healthy(document: dict) -> None:
    _require(all("collapsed" in e for e in document["runs"]),
             "a run was saved before the collapse check")
    _require(not collapsed_runs(document), f"collapsed: {collapsed_runs(document)}")


def check_longer(document: dict, methods: Sequence[str], seeds: Sequence[int], epochs: int,
                 scale: str = "laptop") -> None:
    """A completed longer schedule of ``scale``: each of ``methods`` from every seed, for
    ``epochs`` epochs, none collapsed."""
    _completed(document, scale)
    found = sorted((e["key"]["method"], e["key"]["seed"]) for e in document["runs"])
    _require(found == sorted((m, s) for m in methods for s in seeds),
             f"the longer runs are {found}")
    _require(all(e["key"]["epochs"] == epochs for e in document["runs"]),
             f"a run was not trained for {epochs} epochs")
    _healthy(document)


def check_sweeps(document: dict, ablations: Mapping[str, Sequence], method: str = "pc",
                 seed: int = 0) -> None:
    """Every planned value of each sweep of ``ablations`` is there (``gradient_ratio``
    also at 0, CE alone); the comparison's pure run of ``method`` and ``seed`` is a point
    of every pure sweep; and ``beta`` is exactly proportional to ``gradient_ratio`` (the
    same student measured on the same batch), None at 0."""
    points = runs_of(document, comparison=False)
    for knob, values in ablations.items():
        expected = sweep_values(knob, values)
        found = [point[0] for point in sweep(points, knob)]
        _require(sorted(map(str, found)) == sorted(map(str, expected)),
                 f"the {knob} sweep has {found}, the plan {expected}")
    reference = next(e for e in runs_of(document) if (e["key"]["method"], e["key"]["protocol"],
                                                       e["key"]["seed"]) == (method, "pure", seed))
    for knob in ablations:
        if knob != "gradient_ratio":
            _require(reference["output_dir"] in {e["output_dir"] for e in points
                                                 if e["key"]["knob"] == knob},
                     f"the comparison's {method} run is not a point of the {knob} sweep")
    betas = {value: beta for value, _, _, beta in sweep(points, "gradient_ratio")}
    _require(betas[0.0] is None, "CE alone has a beta")
    for ratio, beta in betas.items():
        _require(not ratio or math.isclose(beta / ratio, betas[1.0], rel_tol=1e-6),
                 f"beta {beta} at gradient_ratio {ratio} is not proportional")


def pass_times(document: dict) -> dict[tuple[str, ...], float]:
    """The wall time of each pass over the data (its students, as a tuple of run folders),
    the longest of its runs' times; raises ``ValueError`` unless they add up to the
    document's total."""
    passes: dict[tuple[str, ...], float] = {}
    for entry in document["runs"]:
        members = tuple(entry["cohort"])
        passes[members] = max(passes.get(members, 0.0), entry["wall_time_seconds"])
    total = document["wall_time_seconds"]["total"]
    _require(math.isclose(total, sum(passes.values()), rel_tol=1e-9),
             f"the passes take {sum(passes.values())} s, the document says {total} s")
    return passes


def seed_spread(runs: Sequence[dict], method: str, protocol: str, metric: str) -> float:
    """The seed standard deviation of ``metric`` over ``method``'s runs of ``protocol``
    among ``runs`` whose features did not collapse (``collapsed`` not true). Raises
    ``ValueError`` when fewer than two runs have the metric: no spread to measure."""
    values = np.array([e["metrics"][metric] for e in runs
                       if (e["key"]["method"], e["key"]["protocol"]) == (method, protocol)
                       and not e.get("collapsed") and metric in e["metrics"]])
    if len(values) < 2:
        raise ValueError(f"{method!r} has {len(values)} healthy run(s) with {metric!r} in "
                         f"the {protocol} protocol: no seed spread to measure")
    return float(values.std(ddof=1))


def float_order_floor(measured: Sequence[dict], saved: Mapping[str, dict]) -> dict[str, float]:
    """Per metric, the largest difference between two floating-point orders of the same run:
    over the runs of the ``measured`` documents (``results/laptop-float-order-*.json``,
    ``scripts/float_order.py``: the same runs under other thread counts or with oneDNN off,
    each run naming its ``document``) and the saved run of the same key in ``saved[name]``.
    Raises ``ValueError`` when fewer than two documents are measured, or a measured run has
    no saved counterpart."""
    if len(measured) < 2:
        raise ValueError(f"measured must hold at least two floating-point orders, got "
                         f"{len(measured)}")
    indexed = {name: {json.dumps(e["key"], sort_keys=True): e for e in document["runs"]}
               for name, document in saved.items() if document is not None}
    values: dict[tuple[str, str, str], list[float]] = {}
    for document in measured:
        for run in document["runs"]:
            name, key = run["document"], json.dumps(run["key"], sort_keys=True)
            if name not in indexed:
                raise ValueError(f"no saved document {name!r} to compare the measured runs "
                                 f"with")
            by_key = indexed[name]
            if key not in by_key:
                raise ValueError(f"no saved run of {run['key']} in {name!r}")
            for metric, value in run["metrics"].items():
                group = values.setdefault((name, key, metric),
                                          [by_key[key]["metrics"][metric]])
                group.append(value)
    floor: dict[str, float] = {}
    for (_, _, metric), group in values.items():
        floor[metric] = max(floor.get(metric, 0.0), max(group) - min(group))
    return floor


@dataclass(frozen=True)
class LiveCheck:
    """The live runs against the saved ones (:func:`compare_live`): one ``(key, metric,
    live, saved, tolerance)`` per score, and the keys of the runs that are not known to be
    healthy on both sides; shown in a notebook as an HTML table."""

    compared: tuple[tuple[dict, str, float, float, float], ...]
    locked: bool
    unhealthy: tuple[dict, ...] = ()
    shown: int = 24

    @property
    def hold(self) -> bool:
        """Whether something was compared, every run is healthy on both sides, and every
        live score is within its tolerance of the saved one (NaN never is)."""
        return not self.failures

    @property
    def failures(self) -> list[tuple]:
        """The scores outside their tolerance, the unhealthy runs, or what says that
        nothing was compared."""
        if not self.compared:
            return ["no score was compared"]
        return ([row for row in self.compared if not abs(row[2] - row[3]) <= row[4]]
                + [("collapsed or unknown", key) for key in self.unhealthy])

    @property
    def summary(self) -> str:
        """What the check asks of this environment, and whether it was met."""
        if self.locked:
            return ("the environment that wrote the table: the numbers must be equal, "
                    + ("and are" if self.hold else "and are not"))
        return "another environment: every score " + (
            "is within its tolerance" if self.hold else "is not within its tolerance")

    def _repr_html_(self) -> str:
        body = [[METHOD_NAMES[key["method"]], key["protocol"], metric, f"{a:.4f}",
                 f"{b:.4f}", f"{abs(a - b):.4f}", f"{tolerance:.4f}"]
                for key, metric, a, b, tolerance in self.compared]
        more = f" (the first {self.shown} of {len(body)})" if len(body) > self.shown else ""
        seeds = ", ".join(str(seed) for seed in sorted({key["seed"] for key, *_ in
                                                        self.compared}))
        return html_table(["method", "protocol", "score", "live", "saved", "|difference|",
                           "allowed"], body[:self.shown],
                          caption=f"Live against saved, seed {seeds}{more}")


def compare_live(live: dict, saved: dict, floor: Mapping[str, float],
                 metrics: Sequence[str] = ("top1", "linear_probe_top1", "knn_top1",
                                           "perception_gap_r1"),
                 pool: Sequence[dict] | None = None) -> LiveCheck:
    """Each live run's ``metrics`` against the saved run of the same key (see the module's
    docstring for the tolerance); tolerance 0 when ``live`` was written in the saved
    table's environment (every key of :data:`perceptcoh.engine.provenance.FLOAT_ORDER_KEYS`
    recorded on both sides and equal) and every run measured the saved ``beta``. A metric of ``metrics`` that either run has is compared; one that only one of
    them has is a failure (its missing side NaN), never skipped. A run whose ``collapsed``
    is not ``False`` on either side (collapsed, or saved before the check and unknown) is
    listed in :attr:`LiveCheck.unhealthy` and fails the check. ``floor``: each metric's
    floor (:func:`float_order_floor`); a compared metric without one raises ``ValueError``.
    ``pool``: the saved runs whose seed spread sets the tolerance, one setting per method
    (default: the comparison's runs, :func:`perceptcoh.book.report.runs_of`; the fair test's
    final runs, whose keys all name a knob, pass ``saved["runs"]``)."""
    by_key = {json.dumps(e["key"], sort_keys=True): e for e in saved["runs"]}
    pairs = [(e, by_key[json.dumps(e["key"], sort_keys=True)]) for e in live["runs"]]
    here, origin = live["provenance"], saved["provenance"]
    # Bit-equal only where everything that decides floating-point order is known to match
    # (a document saved before the CPU model and capability were recorded never is).
    locked = all(k in here and k in origin and here[k] == origin[k]
                 for k in FLOAT_ORDER_KEYS) and all(e["beta"] == s["beta"] for e, s in pairs)
    pool = runs_of(saved) if pool is None else pool
    compared, unhealthy = [], []
    for entry, reference in pairs:
        if entry.get("collapsed") is not False or reference.get("collapsed") is not False:
            unhealthy.append(entry["key"])
        method, protocol = entry["key"]["method"], entry["key"]["protocol"]
        for metric in metrics:
            if metric not in reference["metrics"] and metric not in entry["metrics"]:
                continue
            if metric not in floor:
                raise ValueError(f"floor has no value for {metric!r}: measure it with "
                                 f"scripts/float_order.py")
            tolerance = 0.0 if locked else max(
                4 * math.sqrt(2) * seed_spread(pool, method, protocol, metric), floor[metric])
            compared.append((entry["key"], metric, entry["metrics"].get(metric, math.nan),
                             reference["metrics"].get(metric, math.nan), tolerance))
    return LiveCheck(tuple(compared), locked, tuple(unhealthy))


# ----------------------------------------------------------------------------------------
# The figures of a results document: the comparison, one dot per seed, and the ablation


SWEEP_LABELS = {"tau": r"temperature $\tau$", "batch_size": "batch size $B$",
                "metric": "dissimilarity", "r": "exponent $r$",
                "gradient_ratio": "gradient_ratio"}


def method_colours(methods: Sequence[str]) -> dict[str, str]:
    """PC in red, the references without a relational loss (CE, KD) in grey, the other
    baselines in blue."""
    return {m: "C3" if m == "pc" else "gray" if m in ("ce", "kd") else "C0" for m in methods}


def _seeds(runs, method, protocol, metric) -> np.ndarray:
    return np.array(list(scores_by_seed(runs, method, protocol, metric).values()))


def plot_comparison(runs: Sequence[dict], methods: Sequence[str], title: str) -> plt.Figure:
    """Left: the supervised top-1 of each seed (dots) and their mean (bar), per method.
    Right: the pure protocol's linear probe against the gap to the teacher, one dot per
    seed, each method (but the first, CE, which has no pure run) named at its mean."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    colours = method_colours(methods)
    supervised = {m: 100 * _seeds(runs, m, "supervised", "top1") for m in methods}
    for x, method in enumerate(methods):
        values = supervised[method]
        left.bar(x, values.mean(), color=colours[method], alpha=0.5)
        left.plot([x] * len(values), values, "k.", markersize=4)
    left.set_xticks(range(len(methods)), [METHOD_NAMES.get(m, m) for m in methods],
                    rotation=45, fontsize=8)
    every = np.concatenate(list(supervised.values()))
    left.set_ylim(0, every.max() + 1)  # a bar's length is its value: the axis starts at 0
    left.set_ylabel("test top-1 (%)")
    left.set_title("supervised", fontsize=9)
    for method in methods[1:]:
        gaps = _seeds(runs, method, "pure", "perception_gap_r1")
        probes = 100 * _seeds(runs, method, "pure", "linear_probe_top1")
        right.plot(gaps, probes, "o", color=colours[method], markersize=4)
        right.annotate(METHOD_NAMES.get(method, method), (gaps.mean(), probes.mean()),
                       textcoords="offset points", xytext=(4, 3), fontsize=8)
    right.set_xlabel(r"perception gap $\hat\Delta_1$ to the teacher (test)")
    right.set_ylabel("linear probe (%)")
    right.set_title("pure transfer", fontsize=9)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def plot_sweeps(runs: Sequence[dict], knobs: Sequence[str],
                labels: Mapping[str, str] = SWEEP_LABELS,
                comparison: Sequence[dict] | None = None, method: str = "pc") -> plt.Figure:
    """One panel per knob: the score of each point of :func:`perceptcoh.book.report.
    sweep` (the top-1 for ``gradient_ratio``, the linear probe otherwise), in %. With the
    ``comparison`` runs, each panel also shows :func:`sweep_band` of ``method`` as a grey
    band: the seed spread that a point must leave to differ from the comparison's run."""
    figure, axes = plt.subplots(1, len(knobs), figsize=(13, 2.8), squeeze=False)
    for axis, knob in zip(axes[0], knobs):
        points = sweep(runs, knob)
        x = np.arange(len(points))
        if comparison is not None:
            low, high = sweep_band(runs, comparison, knob, method)
            axis.axhspan(100 * low, 100 * high, color="0.85", zorder=0,
                         label="mean ± sd over seeds")
        axis.plot(x, [100 * p[1] for p in points], "o-", color="C0")
        axis.set_xticks(x, [str(p[0]) for p in points], fontsize=8)
        axis.set_xlabel(labels.get(knob, knob))
        axis.set_title("top-1 (%)" if knob == "gradient_ratio" else "probe (%)", fontsize=9)
    if comparison is not None:
        axes[0][0].legend(fontsize=7, loc="best")
    figure.tight_layout()
    return figure


def sweep_band(runs: Sequence[dict], comparison: Sequence[dict], knob: str,
               method: str = "pc") -> tuple[float, float]:
    """The mean ± one standard deviation over seeds of ``method``'s comparison runs, in the
    protocol of ``knob``'s sweep and on its score (top-1 when supervised, else the linear
    probe): the training noise a sweep's point must leave to differ from the comparison."""
    protocols = {e["key"]["protocol"] for e in runs if e["key"].get("knob") == knob}
    if len(protocols) != 1:
        raise ValueError(f"knob {knob!r} must be swept in one protocol, found {protocols}")
    protocol = protocols.pop()
    values = _seeds(comparison, method, protocol,
                    "top1" if protocol == "supervised" else "linear_probe_top1")
    if len(values) < 2:
        raise ValueError(f"comparison must hold at least 2 seeds of {method!r} in the "
                         f"{protocol} protocol, got {len(values)}")
    spread = values.std(ddof=1)
    return values.mean() - spread, values.mean() + spread
