"""The introduction's "Results at a glance" (``book/intro.ipynb``): one row per saved
CIFAR-100 results document, a placeholder row for one not saved yet.

    display(HTML(results_at_a_glance(repository_root() / "results")))
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..engine.experiments import aggregate
from .report import METHOD_NAMES, html_table, runs_of, scores_by_seed, verdicts

__all__ = ["DOCUMENTS", "HEADER", "UNAWARE", "best_other", "glance_row", "pc_verdicts",
           "results_at_a_glance"]

# Title of each row, and the document under results/ it is generated from.
DOCUMENTS = {
    "CIFAR-100 on your laptop": "cifar100-laptop-all.json",
    "CIFAR-100 at full scale": "cifar100-comparison.json",
}
HEADER = ["experiment", "teacher top-1", "supervised top-1", "pure: linear probe",
          "PC against the strongest class-unaware baseline and KD (✱ survives Holm)",
          "where, how long"]
# The baselines that use no labels, of which the strongest on each score is shown.
UNAWARE = ("fitnet", "sp", "cc", "rkd", "pkt", "crd")
GLANCE_SCORES = (("supervised", "top1", "supervised top-1"),
                 ("pure", "linear_probe_top1", "pure probe"))


def best_other(summary: dict, protocol: str, metric: str) -> str:
    """The best method but PC on ``metric`` in ``protocol``, by mean over seeds, as
    ``"RKD 61.2%"``; ``summary`` maps ``(method, protocol)`` to a row of
    :func:`perceptcoh.engine.experiments.aggregate`."""
    means = {method: row[metric]["mean"] for (method, in_protocol), row in summary.items()
             if in_protocol == protocol and method != "pc" and metric in row}
    method = max(means, key=means.get)
    return f"{METHOD_NAMES[method]} {100 * means[method]:.1f}%"


def pc_verdicts(document: dict) -> str:
    """PC's verdict against the strongest class-unaware baseline (by mean over seeds) and
    against KD, on each of the supervised top-1 and the pure linear probe, from
    :func:`perceptcoh.book.report.verdicts` over every other method of the document (the
    family of the laptop chapter's verdict table, so a ✱ here is a ✱ there), e.g.
    ``"supervised top-1: behind FitNet ✱, behind KD ✱; pure probe: ..."``."""
    runs = runs_of(document)
    present = [m for m in METHOD_NAMES if m != "pc"
               and any(entry["key"]["method"] == m for entry in runs)]
    found = verdicts(document, "pc", present)
    parts = []
    for protocol, metric, label in GLANCE_SCORES:
        rows = {row["baseline"]: row for row in found
                if (row["protocol"], row["metric"]) == (protocol, metric)
                and row["verdict"] != "n/a"}
        means = {m: np.mean(list(scores_by_seed(runs, m, protocol, metric).values()))
                 for m in UNAWARE if m in rows}
        shown = [m for m in (max(means, key=means.get) if means else None, "kd") if m in rows]
        cells = [f"{rows[m]['verdict']} {METHOD_NAMES[m]}" + (" ✱" if rows[m]["holm"] else "")
                 for m in shown]
        if cells:
            parts.append(f"{label}: " + ", ".join(cells))
    return "; ".join(parts) if parts else "–"


def glance_row(title: str, document: dict) -> list[str]:
    """The row of one results document: teacher, PC and the best other method in each
    protocol (means over seeds), :func:`pc_verdicts`, device and wall time."""
    runs = runs_of(document)
    (teacher,) = document["teachers"].values()
    seeds = {entry["key"]["seed"] for entry in runs}
    summary = {(row["method"], row["protocol"]): row for row in
               aggregate(runs, ("method", "protocol"), ("top1", "linear_probe_top1"))}
    pc_top1 = summary["pc", "supervised"]["top1"]["mean"]
    pc_probe = summary["pc", "pure"]["linear_probe_top1"]["mean"]
    hours = document["wall_time_seconds"]["total"] / 3600
    return [f"{title} ({len(seeds)} seeds)",
            f"{teacher['model']}: {100 * teacher['metrics']['top1']:.1f}%",
            f"PC {100 * pc_top1:.1f}%; best other "
            f"{best_other(summary, 'supervised', 'top1')}",
            f"PC {100 * pc_probe:.1f}%; best other "
            f"{best_other(summary, 'pure', 'linear_probe_top1')}",
            pc_verdicts(document),
            f"{document['provenance']['device']}, {hours:.1f} h"]


def results_at_a_glance(results: Path, documents: dict[str, str] = DOCUMENTS) -> str:
    """The HTML table of ``documents`` (title -> file name) under the folder ``results``;
    a document not saved yet gets a row that says "not run yet"."""
    rows = []
    for title, name in documents.items():
        path = Path(results) / name
        rows.append(glance_row(title, json.loads(path.read_text())) if path.exists()
                    else [title, "not run yet", "–", "–", "–", "–"])
    return html_table(HEADER, rows,
                      caption="The saved CIFAR-100 results, means over seeds")
