"""A results document (``results/*.json``, written by :func:`perceptcoh.engine.run_plan`)
as the book shows it: tables of mean ± std over seeds, and the verdict of one method
against others, paired over seeds.

    document = json.loads(Path("results/cifar100-laptop-all.json").read_text())
    display(HTML(comparison_table(document)))
    for row in verdicts(document, baselines=("kd", "crd")):
        print(row["baseline"], row["metric"], row["verdict"])

The verdict of method A against baseline B on a score, from the per-seed differences
``A_s - B_s`` (same seed: same data, batches and initial student), with the paired
``(1 - 2 alpha)`` interval ``[low, high]`` of their mean (:func:`perceptcoh.stats.difference`):

* ``ahead``: ``low > 0`` (a one-sided test at level ``alpha``); ``behind``: ``high < 0``;
* ``on par``: ``-delta < low`` and ``high < delta`` (two one-sided tests; accuracies only,
  ``delta`` fixed before the runs);
* ``undecided``: none of these; ``n/a``: fewer than two seeds.

For a score where lower is better (the perception gap) the difference is ``B_s - A_s``.

Runs whose features collapsed (``collapsed`` in the document, from each run's
``results.json``: :mod:`perceptcoh.engine.collapse`) are marked in the tables with a dagger
and their count, "† 2/3 collapsed", explained in a footnote, and listed by
:func:`collapsed_runs`. A document saved before that check has no ``collapsed``: its runs
are shown unmarked (unknown, not known to be healthy). Runs whose features are degraded but
not collapsed (:func:`degradation`) are marked apart, "‡ 1/3 degraded", with a footnote of
their own, and listed by :func:`degraded_runs`.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..stats import difference, holm
from ..engine.collapse import (DEGRADED_DEAD_FRACTION, DEGRADED_NORM_RATIO, DEGRADED_SPAN,
                               ZERO_FRACTION, degradation_reasons)
from ..engine.experiments import aggregate

__all__ = ["METHOD_NAMES", "SCORES", "COLLAPSE_FOOTNOTE", "DEGRADED_FOOTNOTE", "mean_std",
           "html_table", "comparison_table", "collapsed_runs", "degradation", "degraded_runs",
           "lengths_table", "runs_of", "scores_by_seed",
           "verdicts", "verdict_cell", "verdict_table", "verdict_text", "verdicts_by_length",
           "holm_footnote",
           "SCORE_KEYS", "verdict_changes", "sweep", "sweep_table", "students",
           "collapse_table"]

METHOD_NAMES = {"ce": "CE only", "kd": "KD", "fitnet": "FitNet", "sp": "SP", "cc": "CC",
                "rkd": "RKD", "pkt": "PKT", "crd": "CRD", "pc": "PC (ours)"}

# (protocol, metric, lower is better, label) of each score of the comparison.
SCORES = (("supervised", "top1", False, "supervised: top-1"),
          ("pure", "linear_probe_top1", False, "pure: linear probe"),
          ("pure", "knn_top1", False, "pure: kNN"),
          ("pure", "perception_gap_r1", True, "pure: gap Δ₁"))

# The definition is perceptcoh.engine.collapse.collapse_reasons.
COLLAPSE_FOOTNOTE = (f"† k/n collapsed: the features of k of the n seeds collapsed (at least "
                     f"{ZERO_FRACTION:.0%} of their entries exactly 0, fewer distinct rows "
                     f"than classes, or non-finite values): their scores measure a handful "
                     f"of points, not a representation")
# The definition is perceptcoh.engine.collapse.degradation_reasons.
DEGRADED_FOOTNOTE = (f"‡ k/n degraded: the features of k of the n seeds did not collapse but "
                     f"degraded (at least {DEGRADED_DEAD_FRACTION:.0%} of their dimensions "
                     f"dead, fewer than {DEGRADED_SPAN} dimensions spanned, or a norm below "
                     f"{DEGRADED_NORM_RATIO:g} times that of the initial student): their scores "
                     f"rest on a few live dimensions")


def mean_std(summary: dict | None, scale: float = 100, digits: int = 1) -> str:
    """``"mean ± std"`` of an :func:`perceptcoh.engine.aggregate` entry, times ``scale``
    (the std left out for one run; ``"–"`` for no entry)."""
    if not summary:
        return "–"
    text = f"{scale * summary['mean']:.{digits}f}"
    if summary["n"] > 1:
        text += f" ± {scale * summary['std']:.{digits}f}"
    return text


def html_table(header: Sequence[str], rows: Sequence[Sequence[object]],
               caption: str | None = None, footnote: str | None = None) -> str:
    """An HTML table (escaped text; numbers right-aligned by the book's style), with
    ``footnote`` in a footer row spanning every column."""
    parts = ["<table>"]
    if caption:
        parts.append(f"<caption>{html.escape(caption)}</caption>")
    parts.append("<thead><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
                 + "</tr></thead><tbody>")
    for row in rows:
        parts.append("<tr>" + "".join(f"<td>{html.escape(str(value))}</td>" for value in row)
                     + "</tr>")
    parts.append("</tbody>")
    if footnote:
        parts.append(f'<tfoot><tr><td colspan="{len(header)}">{html.escape(footnote)}</td>'
                     f"</tr></tfoot>")
    parts.append("</table>")
    return "".join(parts)


def runs_of(document: dict, *, comparison: bool = True) -> list[dict]:
    """The document's comparison runs (``comparison``), or its ablation runs (keys with a
    ``knob``)."""
    return [entry for entry in document["runs"] if ("knob" in entry["key"]) != comparison]


def comparison_table(document: dict, methods: Sequence[str] = tuple(METHOD_NAMES),
                     pair: str | None = None, caption: str | None = None) -> str:
    """The comparison of one pair (default: the document's first) as an HTML table: per
    method, mean ± std over seeds of each of :data:`SCORES` (accuracies in %). A score
    whose runs include collapsed ones reads "† k/n collapsed", and the method's name
    carries †; degraded ones, "‡ k/n degraded" and ‡; the footnotes
    (:data:`COLLAPSE_FOOTNOTE`, :data:`DEGRADED_FOOTNOTE`) say why."""
    runs = runs_of(document)
    pair = pair or runs[0]["key"]["pair"]
    of_pair = [e for e in runs if e["key"]["pair"] == pair]
    rows = aggregate(of_pair, ("method", "protocol"),
                     tuple(dict.fromkeys(metric for _, metric, _, _ in SCORES)))
    found = {(row["method"], row["protocol"]): row for row in rows}
    counts = _failure_counts(of_pair)
    body = []
    for method in methods:
        cells = [METHOD_NAMES.get(method, method)]
        for protocol, metric, lower, _ in SCORES:
            row = found.get((method, protocol), {})
            text = mean_std(row.get(metric), 1 if lower else 100, 3 if lower else 1)
            cells.append(text + _marks(*counts.get((method, protocol), (0, 0, 0))))
        for sign, index in ("†", 0), ("‡", 1):
            if any(counts.get((method, protocol), (0, 0, 0))[index]
                   for protocol, *_ in SCORES):
                cells[0] += f" {sign}"
        body.append(cells)
    return html_table(["method", *(label for *_, label in SCORES)], body, caption,
                      _footnote(counts.values()))


def collapsed_runs(document: dict) -> list[dict]:
    """The runs of ``document`` (comparison and ablations) whose features collapsed, in
    order, each as its ``key``, ``output_dir`` and the ``reasons``
    (:func:`perceptcoh.engine.collapse.collapse_reasons`). A run saved before the check
    (without ``collapsed``) is not listed."""
    return [{"key": entry["key"], "output_dir": entry.get("output_dir"),
             "reasons": (entry.get("collapse") or {}).get("reasons", [])}
            for entry in document["runs"] if entry.get("collapsed")]


def degradation(entry: dict) -> list[str]:
    """Why a run of a document is degraded (:func:`perceptcoh.engine.collapse.
    degradation_reasons`), empty when it is not, or when it collapsed (a collapse is marked
    as such). A run saved before the degradation check is judged on the statistics its
    ``collapse`` record holds (the dead dimensions; the span and the initial norm were not
    measured then)."""
    record = entry.get("collapse") or {}
    if entry.get("collapsed") or not record:
        return []
    if "degradation" in record:
        return list(record["degradation"])
    initial = record.get("initial") or {}
    return degradation_reasons(record, initial.get("feature_norm"))


def degraded_runs(document: dict) -> list[dict]:
    """The runs of ``document`` (comparison and ablations) whose features are degraded
    (:func:`degradation`), in order, each as its ``key``, ``output_dir`` and the
    ``reasons``."""
    return [{"key": entry["key"], "output_dir": entry.get("output_dir"), "reasons": reasons}
            for entry in document["runs"] if (reasons := degradation(entry))]


def _failure_counts(runs: Sequence[dict]) -> dict[tuple[str, str], tuple[int, int, int]]:
    """``(collapsed, degraded, runs)`` per ``(method, protocol)``; a run without
    ``collapsed`` counts as not collapsed."""
    counts: dict[tuple[str, str], tuple[int, int, int]] = {}
    for entry in runs:
        group = (entry["key"]["method"], entry["key"]["protocol"])
        collapsed, degraded, total = counts.get(group, (0, 0, 0))
        counts[group] = (collapsed + bool(entry.get("collapsed")),
                         degraded + bool(degradation(entry)), total + 1)
    return counts


def _marks(collapsed: int, degraded: int, total: int) -> str:
    """" † k/n collapsed" and " ‡ k/n degraded", where there are any."""
    return ((f" † {collapsed}/{total} collapsed" if collapsed else "")
            + (f" ‡ {degraded}/{total} degraded" if degraded else ""))


def _footnote(counts) -> str | None:
    """The footnotes of the marks that ``counts`` (``(collapsed, degraded, runs)``) need."""
    counts = list(counts)
    notes = [note for index, note in ((0, COLLAPSE_FOOTNOTE), (1, DEGRADED_FOOTNOTE))
             if any(count[index] for count in counts)]
    return "; ".join(notes) or None


def verdicts(document: dict, method: str = "pc", baselines: Sequence[str] = ("fitnet", "sp",
             "cc", "rkd", "pkt", "crd"), *, delta: float = 0.01, alpha: float = 0.05,
             protocols: Sequence[str] | None = None) -> list[dict]:
    """``method`` against each of ``baselines`` on each of :data:`SCORES` (of ``protocols``
    only, when given), per pair of the document's comparison runs (see the module's
    docstring). Each row: ``pair``, ``protocol``, ``metric``, ``baseline``, ``n`` (seeds),
    ``d`` (mean difference, positive: ``method`` better), ``low``, ``high``, ``verdict``,
    ``p`` (the p-value of that verdict's test: two-sided for ``ahead`` and ``behind``,
    whose direction the data chose, the larger of the two one-sided tests for ``on par``,
    the smallest of them for ``undecided``), ``alpha`` and ``holm``: whether the call
    survives Holm's step-down correction (:func:`perceptcoh.stats.holm`) over every row of
    the call with two seeds or more, so that the chance of any false call among them is at
    most ``alpha``."""
    runs = runs_of(document)
    found = []
    for pair in dict.fromkeys(entry["key"]["pair"] for entry in runs):
        for protocol, metric, lower, _ in SCORES:
            if protocols is not None and protocol not in protocols:
                continue
            mine = scores_by_seed(runs, method, protocol, metric, pair=pair)
            for baseline in baselines:
                theirs = scores_by_seed(runs, baseline, protocol, metric, pair=pair)
                seeds = sorted(set(mine) & set(theirs))
                row = {"pair": pair, "protocol": protocol, "metric": metric,
                       "baseline": baseline, "n": len(seeds), "alpha": alpha}
                if len(seeds) < 2:
                    found.append({**row, "d": math.nan, "low": math.nan, "high": math.nan,
                                  "verdict": "n/a", "p": math.nan, "holm": False})
                    continue
                a = np.array([mine[s] for s in seeds])
                b = np.array([theirs[s] for s in seeds])
                step = difference(b, a, paired=True) if lower else difference(a, b, paired=True)
                found.append({**row, **_verdict(step, alpha, None if lower else delta)})
    tested = [row for row in found if row["verdict"] != "n/a"]
    for row, rejected in zip(tested, holm([row["p"] for row in tested], alpha)):
        row["holm"] = rejected and row["verdict"] != "undecided"
    return found


def _verdict(step, alpha: float, delta: float | None) -> dict:
    """The verdict of a paired difference and its test's p-value (``delta=None``: no
    "on par" for this score)."""
    low, high = step.bounds(alpha)
    tests = {"ahead": step.p_above(0.0), "behind": step.p_below(0.0)}
    if delta is not None:
        tests["on par"] = max(step.p_above(-delta), step.p_below(delta))
    verdict = ("ahead" if low > 0 else "behind" if high < 0
               else "on par" if delta is not None and -delta < low and high < delta
               else "undecided")
    if verdict in ("ahead", "behind"):
        # The direction was picked by the data: the two-sided p, so that Holm controls the
        # chance of any false directional call (the one-sided p of the picked side is half
        # of it, and with it the family-wise error was about 9% at alpha = 5%).
        p = min(1.0, 2 * min(tests["ahead"], tests["behind"]))
    else:
        p = tests[verdict] if verdict in tests else min(tests.values())
    return {"d": step.d, "low": low, "high": high, "verdict": verdict, "p": p}


def verdict_cell(row: dict) -> str:
    """A verdict as a table shows it: ``"behind ✱ (-2.1, [-3.0, -1.2])"``, the difference
    and its interval in points of accuracy, or as a fraction for the gap; ✱ when it
    survives Holm's correction."""
    if row["verdict"] == "n/a":
        return "–"
    scale, digits = (1, 3) if row["metric"] == "perception_gap_r1" else (100, 1)
    mark = " ✱" if row["holm"] else ""
    return (f"{row['verdict']}{mark} ({scale * row['d']:+.{digits}f}, "
            f"[{scale * row['low']:+.{digits}f}, {scale * row['high']:+.{digits}f}])")


def _score_labels(found: Sequence[dict]) -> list[tuple[str, str, str]]:
    """``(protocol, metric, label)`` of the :data:`SCORES` that ``found`` covers, in order."""
    present = {(row["protocol"], row["metric"]) for row in found}
    return [(protocol, metric, label) for protocol, metric, _, label in SCORES
            if (protocol, metric) in present]


def verdict_table(found: Sequence[dict], baselines: Sequence[str],
                  caption: str | None = None) -> str:
    """The rows of :func:`verdicts` (one pair) as an HTML table: a row per baseline, a
    column per score, each cell a :func:`verdict_cell`."""
    table = {(row["baseline"], row["protocol"], row["metric"]): row for row in found}
    labels = _score_labels(found)
    body = [[METHOD_NAMES.get(b, b), *(verdict_cell(table[b, p, m]) for p, m, _ in labels)]
            for b in baselines]
    return html_table(["against", *(label for *_, label in labels)], body, caption,
                      holm_footnote([found]))


def holm_footnote(families: Sequence[Sequence[dict]]) -> str:
    """What ✱ means, with the family-wise level Holm's correction controls: one family of
    :func:`verdicts` rows, or several (one per column)."""
    sizes = [sum(row["verdict"] != "n/a" for row in rows) for rows in families]
    alpha = next((row["alpha"] for rows in families for row in rows), 0.05)
    family = (f"a family of {sizes[0]} comparisons" if len(sizes) == 1
              else "each column's family (" + ", ".join(map(str, sizes)) + " comparisons)")
    return (f"✱ survives Holm's correction over {family}: the chance of any false "
            f"'ahead' or 'behind' call among them is at most {alpha:.0%}")


def verdicts_by_length(by_length: dict[str, Sequence[dict]], baselines: Sequence[str],
                       caption: str | None = None) -> str:
    """The :func:`verdicts` of the same comparison at several training lengths (label ->
    rows) as an HTML table: a row per baseline and score, a column per length."""
    tables = {length: {(r["baseline"], r["protocol"], r["metric"]): r for r in rows}
              for length, rows in by_length.items()}
    labels = _score_labels(next(iter(by_length.values())))
    body = [[METHOD_NAMES.get(b, b), label,
             *(verdict_cell(table[b, p, m]) for table in tables.values())]
            for b in baselines for p, m, label in labels]
    return html_table(["against", "score", *by_length], body, caption,
                      holm_footnote(list(by_length.values())))


def verdict_text(found: Sequence[dict], alpha: float = 0.05) -> str:
    """The rows of :func:`verdicts` as Markdown: per score, the baselines of each verdict;
    then how many false "ahead" or "behind" calls chance alone would give if every method
    were equal (``2 alpha`` per comparison), and the calls that survive Holm's correction."""
    phrases = {"ahead": "ahead of", "on par": "on par with", "behind": "behind",
               "undecided": "undecided against"}
    lines = []
    for protocol, metric, label in _score_labels(found):
        parts = []
        for verdict, phrase in phrases.items():
            names = [METHOD_NAMES.get(r["baseline"], r["baseline"]) for r in found
                     if (r["protocol"], r["metric"], r["verdict"]) == (protocol, metric, verdict)]
            if names:
                parts.append(f"**{phrase}** {', '.join(names)}")
        if parts:
            lines.append(f"- {label}: " + "; ".join(parts) + ".")
    tested = [r for r in found if r["verdict"] != "n/a"]
    calls = [r for r in tested if r["verdict"] != "undecided"]
    kept = [f"{r['verdict']} {METHOD_NAMES.get(r['baseline'], r['baseline'])} "
            f"({dict((m, l) for _, m, l in _score_labels(found))[r['metric']]})"
            for r in tested if r["holm"]]
    lines.append(
        f"\n{len(calls)} of the {len(tested)} comparisons give a call; if every method were "
        f"equal, chance alone would give about {2 * alpha * len(tested):.1f} false "
        f"'ahead' or 'behind' calls among them ({2 * alpha:.0%} each). "
        + (f"{len(kept)} survive Holm's correction (any false call at most "
           f"{alpha:.0%}): {'; '.join(kept)}." if kept
           else "None survives Holm's correction (any false call at most "
           f"{alpha:.0%}).")
    )
    return "\n".join(lines)


def lengths_table(documents: dict[str, dict], methods: Sequence[str],
                  caption: str | None = None, protocol: str = "pure") -> str:
    """The same methods trained for several lengths (label -> results document) as an HTML
    table: a row per method and length, mean ± std over seeds of each score of
    ``protocol`` (accuracies in %), collapsed and degraded runs marked as in
    :func:`comparison_table`."""
    scores = [(metric, lower, label) for p, metric, lower, label in SCORES if p == protocol]
    body, counts = [], []
    for method in methods:
        for length, document in documents.items():
            runs = [e for e in runs_of(document)
                    if (e["key"]["method"], e["key"]["protocol"]) == (method, protocol)]
            summary = aggregate(runs, ("method",), tuple(m for m, _, _ in scores))
            row = summary[0] if summary else {}
            count = next(iter(_failure_counts(runs).values()), (0, 0, 0))
            counts.append(count)
            name = METHOD_NAMES.get(method, method) + _marks(*count)
            body.append([name, length, *(mean_std(row.get(metric), 1 if lower else 100,
                                                  3 if lower else 1)
                                         for metric, lower, _ in scores)])
    return html_table(["method", "training", *(label for *_, label in scores)], body,
                      caption, _footnote(counts))


def scores_by_seed(runs: Sequence[dict], method: str, protocol: str, metric: str, *,
                   pair: str | None = None) -> dict[int, float]:
    """``metric`` of each run of ``method`` in ``protocol`` (of ``pair``; any pair when
    ``None``, for a document of one pair), keyed by seed, in the order of the seeds. Runs
    that lack the metric are left out."""
    found = {e["key"]["seed"]: e["metrics"][metric] for e in runs
             if (e["key"]["method"], e["key"]["protocol"]) == (method, protocol)
             and (pair is None or e["key"]["pair"] == pair) and metric in e["metrics"]}
    return dict(sorted(found.items()))


# A chapter's short names of the scores (its claim rows and bounds use them).
SCORE_KEYS = {"top1": "top1", "probe": "linear_probe_top1", "knn": "knn_top1",
              "gap": "perception_gap_r1"}


def verdict_changes(by_length: dict[str, Sequence[dict]]) -> str:
    """The verdicts of :func:`verdicts_by_length`'s input that differ between its first
    and its last length, as one Markdown sentence ("2 of the 16 verdicts change with the
    longer schedule: KD on pure: kNN, undecided → ahead; ...")."""
    rows = list(by_length.values())
    changed = [(r["baseline"], r["metric"], r["verdict"], s["verdict"])
               for r, s in zip(rows[0], rows[-1]) if r["verdict"] != s["verdict"]]
    labels = {metric: label for _, metric, _, label in SCORES}
    changes = "; ".join(f"{METHOD_NAMES.get(b, b)} on {labels[m]}, {a} → {z}"
                        for b, m, a, z in changed)
    return (f"{len(changed)} of the {len(rows[0])} verdicts change with the longer schedule"
            + (f": {changes}." if changed else "."))


def sweep(runs: Sequence[dict], knob: str) -> list[tuple]:
    """``(value, score, gap, beta)`` of each ablation run of ``knob``, sorted by value
    (numbers first): the score is the top-1 in the supervised protocol and the linear
    probe in the pure one, the gap NaN where it was not measured (the CIFAR-100 laptop
    chapter, ``book/experiments/02_laptop.ipynb``, plots them)."""
    points = []
    for entry in runs:
        if entry["key"].get("knob") == knob:
            metrics = entry["metrics"]
            supervised = entry["key"]["protocol"] == "supervised"
            points.append((entry["key"]["value"],
                           metrics["top1" if supervised else "linear_probe_top1"],
                           metrics.get("perception_gap_r1", math.nan), entry["beta"]))
    return sorted(points, key=lambda point: (isinstance(point[0], str), point[0]))


def sweep_table(runs: Sequence[dict], knobs: Sequence[str],
                caption: str = "The sweeps, seed 0 (score: linear probe, or top-1 for "
                               "gradient_ratio)") -> str:
    """Every point of :func:`sweep` for each of ``knobs`` as an HTML table: knob, value,
    score in %, gap and the measured ``beta`` ("–" where there is none)."""
    body = [[knob, value, f"{100 * score:.1f}%", "–" if math.isnan(gap) else f"{gap:.3f}",
             "–" if beta is None else f"{beta:.3g}"]
            for knob in knobs for value, score, gap, beta in sweep(runs, knob)]
    return html_table(["knob", "value", "score", "gap Δ₁", "beta"], body, caption)


def students(document: dict, method: str = "pc") -> dict[str, dict]:
    """Each student of ``method`` in ``document`` once, by the name of its run folder (a
    comparison run is also a point of several sweeps), comparison and ablations alike."""
    found: dict[str, dict] = {}
    for entry in document["runs"]:
        if entry["key"]["method"] == method:
            found.setdefault(Path(entry["output_dir"]).name, entry)
    return found


def collapse_table(before: dict, now: dict, method: str = "pc",
                   caption: str = "PC's students: detached scale (before) and exact "
                                  "gradient (now)") -> str:
    """Every student of ``method`` in two documents of the same plan (``before`` and
    ``now``) as an HTML table: its setting, then its linear probe and gap in each. Raises
    ``ValueError`` when the two documents do not hold the same students."""
    old, new = students(before, method), students(now, method)
    if old.keys() != new.keys():
        raise ValueError(f"the documents hold different students: "
                         f"{sorted(old.keys() ^ new.keys())}")

    def setting(key: dict) -> str:
        knob = f", {key['knob']} = {key['value']}" if "knob" in key else ""
        return f"{key['protocol']}, seed {key['seed']}{knob}"

    def scores(entry: dict) -> list[str]:
        m = entry["metrics"]
        return [f"{100 * m['linear_probe_top1']:.1f}%", f"{m['perception_gap_r1']:.3f}"]

    body = [[setting(new[name]["key"]), *scores(old[name]), *scores(new[name])] for name in old]
    return html_table(["student", "probe, before", "gap, before", "probe, now", "gap, now"],
                      body, caption)
