"""What the chapter *CIFAR-100 on a GPU* (``book/experiments/03_cifar100.ipynb``) shows: the
full-scale comparison, beside RepDistiller's published numbers; its ablations are
:mod:`perceptcoh.book.ablations`.

The chapter loads its saved document once, near its top, with
:func:`perceptcoh.book.saved.load_saved` (``missing_ok=True``: ``None`` until the GPU run
has written it). Every function here that shows a document takes that ``None`` too and
then shows no result of ours, so the chapter decides once.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from IPython.display import HTML, display

from ..engine.cost import forward_flops
from ..engine.experiments import COMPARISON_METHODS, SCALES, Plan, aggregate, run_plan
from .report import METHOD_NAMES, comparison_table, html_table, verdicts

__all__ = ["COMPARISON", "PUBLISHED", "COMPARISON_COMMAND", "PUBLISHED_SOURCE", "run_on_gpu",
           "provenance", "check_comparison", "show_comparison", "published_table",
           "check_published", "plan_summary", "check_comparison_plan"]

COMPARISON = "cifar100-comparison.json"
PUBLISHED = "repdistiller-cifar100.json"
COMPARISON_COMMAND = "python -m perceptcoh experiment comparison --scale full"
PUBLISHED_SOURCE = "git checkout results/repdistiller-cifar100.json (committed, by hand)"


def run_on_gpu(plan: Plan, output: str | os.PathLike) -> None:
    """Train ``plan`` here (reusing finished runs, resuming an interrupted one) and save
    its document to ``output``; refuses without a CUDA GPU."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("re-running the full-scale runs needs a CUDA GPU")
    run_plan(plan, output, progress=True)


def provenance(document: dict) -> str:
    """Runs, commit, device and wall time of a saved document, in one line."""
    origin = document["provenance"]
    return (f"{len(document['runs'])} runs, commit {origin['git_commit'][:10]}, "
            f"{origin['device']}, wall time "
            f"{document['wall_time_seconds']['total'] / 3600:.2f} h")


def _require(condition: bool, message: object) -> None:
    if not condition:
        raise ValueError(message)


def check_comparison(document: dict) -> None:
    """Raises ``ValueError`` unless the document is a completed full-scale comparison whose
    every distilled student read the teacher saved with it (same SHA-256)."""
    _require(document["completed"] and document["scale"] == "full", "not a completed "
             "full-scale comparison")
    for model, teacher in document["teachers"].items():
        for entry in document["runs"]:
            if entry["key"]["method"] != "ce" and \
                    entry["key"]["pair"].startswith(model + "->"):
                _require(entry["teacher_sha256"] == teacher["sha256"], entry["key"])


def show_comparison(document: dict | None) -> None:
    """Our full-scale comparison: its provenance, one table per pair (mean ± std over
    seeds) and PC's verdicts against the class-unaware baselines, counted; checked first
    (:func:`check_comparison`). Nothing but a note when ``document`` is ``None``."""
    if document is None:
        print("No result of ours: the comparison is not saved yet (see above).")
        return
    check_comparison(document)
    print(provenance(document))
    for pair in dict.fromkeys(entry["key"]["pair"] for entry in document["runs"]):
        display(HTML(comparison_table(document, pair=pair,
                                      caption=f"{pair}: ours, mean ± std")))
    counts = dict(Counter(row["verdict"] for row in verdicts(document)))
    print("PC against the class-unaware baselines, over pairs and scores:", counts)


def published_table(published: dict, full: dict | None) -> str:
    """RepDistiller's published top-1 beside ours (supervised, mean over seeds, last
    epoch), per pair, as HTML; our column reads "–" while ``full`` is ``None``."""
    ours = {}
    if full is not None:
        for row in aggregate(full["runs"], ("pair", "method", "protocol"), ("top1",)):
            if row["protocol"] == "supervised":
                ours[row["pair"], row["method"]] = f"{100 * row['top1']['mean']:.2f}"
    pairs = list(published["pairs"])
    teacher = ["teacher"]
    for pair in pairs:
        theirs = published["pairs"][pair]["teacher"]
        mine = "–" if full is None else \
            f"{100 * full['teachers'][pair.split('->')[0]]['metrics']['top1']:.2f}"
        teacher += [f"{theirs:.2f}", mine]
    body = [teacher]
    for method in COMPARISON_METHODS:
        row = [METHOD_NAMES[method]]
        for pair in pairs:
            theirs = published["pairs"][pair].get("student" if method == "ce" else method)
            row += ["–" if theirs is None else f"{theirs:.2f}",
                    ours.get((pair, method), "–")]
        body.append(row)
    header = ["top-1 (%)", *(f"{pair}: {who}" for pair in pairs
                             for who in ("RepDistiller (theirs)", "ours"))]
    recipe = published["recipe"]
    caption = (f"CIFAR-100 test top-1: RepDistiller's published numbers "
               f"({recipe['epochs']} epochs, batch {recipe['batch_size']}, best epoch) "
               f"and ours (last epoch)")
    source = published["source"]
    footnote = (f"source: {source['repository']} @ {source['commit'][:10]}, "
                f"{source['file']}")
    return html_table(header, body, caption=caption, footnote=footnote)


def check_published(published: dict) -> None:
    """Raises ``ValueError`` unless the published numbers cover the full scale's pairs."""
    expected = {f"{t}->{s}" for t, s in SCALES["full"]["pairs"]}
    _require(set(published["pairs"]) == expected, sorted(published["pairs"]))


def plan_summary(plan: Plan) -> str:
    """The size of a full-scale comparison plan, and the forward cost of each network,
    as HTML."""
    recipe = SCALES[plan.scale]
    (teacher,) = plan.teachers.values()
    models = dict.fromkeys([teacher.model, *(s for _, s in recipe["pairs"])])
    caption = (f"{len(plan.runs)} student runs from one {teacher.model} teacher "
               f"({teacher.epochs} epochs); students: {recipe['student']['epochs']} "
               f"epochs at batch {recipe['student']['batch_size']}")
    return html_table(["network", "forward MFLOP per image"],
                      [[m, f"{forward_flops(m, 'cifar100') / 1e6:,.0f}"] for m in models],
                      caption=caption)


def check_comparison_plan(plan: Plan) -> None:
    """Raises ``ValueError`` unless the plan is every method in both protocols (CE once)
    for every pair and seed, and every distilled student reads the plan's one teacher with
    ``beta`` measured (``gradient_ratio=1``), not set."""
    (teacher,) = plan.teachers.values()
    for run in plan.runs:
        if run.config.method != "ce":
            _require(run.config.teacher_checkpoint ==
                     str(Path(teacher.output_dir) / "model.pt"), run.key)
            _require(run.config.gradient_ratio == 1.0 and run.config.beta is None,
                     run.key)
    recipe = SCALES[plan.scale]
    settings = 1 + 2 * (len(COMPARISON_METHODS) - 1)  # CE once, every other twice
    _require(len(plan.runs) == settings * len(recipe["seeds"]) * len(recipe["pairs"]),
             len(plan.runs))
