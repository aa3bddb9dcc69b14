"""The introduction's results at a glance: a row per saved document, computed from its
runs, and "not run yet" for one that is not saved."""

import json
import shutil
from pathlib import Path

from perceptcoh.engine.experiments import aggregate
from perceptcoh.book.intro import DOCUMENTS, best_other, glance_row, results_at_a_glance
from perceptcoh.book.report import runs_of

LAPTOP = Path(__file__).resolve().parents[2] / "results" / "cifar100-laptop-all.json"


def summary(runs):
    return {(r["method"], r["protocol"]): r
            for r in aggregate(runs, ("method", "protocol"), ("top1",))}


def test_best_other_leaves_pc_out():
    runs = [{"key": {"method": m, "protocol": "supervised"}, "metrics": {"top1": v}}
            for m, v in [("pc", 0.9), ("kd", 0.5), ("rkd", 0.612)]]
    assert best_other(summary(runs), "supervised", "top1") == "RKD 61.2%"


def test_a_row_is_computed_from_the_document():
    document = json.loads(LAPTOP.read_text())
    row = glance_row("laptop", document)
    runs = runs_of(document)
    pc = [e["metrics"]["top1"] for e in runs
          if e["key"]["method"] == "pc" and e["key"]["protocol"] == "supervised"]
    assert row[0] == f"laptop ({len({e['key']['seed'] for e in runs})} seeds)"
    assert row[2].startswith(f"PC {100 * sum(pc) / len(pc):.1f}%; best other ")
    assert document["provenance"]["device"] in row[5]


def test_a_missing_document_reads_not_run_yet(tmp_path):
    shutil.copy(LAPTOP, tmp_path / DOCUMENTS["CIFAR-100 on your laptop"])
    table = results_at_a_glance(tmp_path)
    assert table.count("<tr>") == 3 and table.count("not run yet") == 1
    assert "CIFAR-100 on your laptop (" in table


def test_pc_is_shown_against_the_strongest_class_unaware_baseline_and_kd():
    """Issue 27, item 1: no count that adds weak baselines together; the strongest
    class-unaware baseline of each score (SP on the top-1, FitNet on the probe here) and KD,
    each with its verdict and Holm mark, from the same family as the laptop chapter's."""
    from perceptcoh.book.intro import pc_verdicts
    from perceptcoh.book.report import verdicts

    scores = {"pc": (0.50, 0.30), "fitnet": (0.40, 0.40), "sp": (0.45, 0.20),
              "kd": (0.60, 0.31), "ce": (0.49, None)}
    runs = []
    for method, (top1, probe) in scores.items():
        for seed, noise in enumerate((0.0, 0.002, -0.001)):
            runs.append({"key": {"pair": "t->s", "method": method, "protocol": "supervised",
                                 "seed": seed}, "metrics": {"top1": top1 + noise}})
            if probe is not None:
                runs.append({"key": {"pair": "t->s", "method": method, "protocol": "pure",
                                     "seed": seed},
                             "metrics": {"linear_probe_top1": probe + noise * seed}})
    document = {"runs": runs}
    rows = {(r["baseline"], r["metric"]): r
            for r in verdicts(document, "pc", ["ce", "kd", "fitnet", "sp"])}

    def cell(name, method, metric):
        row = rows[method, metric]
        return f"{row['verdict']} {name}" + (" ✱" if row["holm"] else "")

    assert pc_verdicts(document) == (
        f"supervised top-1: {cell('SP', 'sp', 'top1')}, {cell('KD', 'kd', 'top1')}; "
        f"pure probe: {cell('FitNet', 'fitnet', 'linear_probe_top1')}, "
        f"{cell('KD', 'kd', 'linear_probe_top1')}")
    assert rows["sp", "top1"]["verdict"] == "ahead" and rows["kd", "top1"]["verdict"] == "behind"
