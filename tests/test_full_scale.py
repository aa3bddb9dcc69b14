"""The full-scale chapters' helpers: RepDistiller's numbers beside ours (or beside dashes
while ours are not saved), the checks of the two plans and of saved documents, the
sweeps."""

import json
import math
from pathlib import Path

import matplotlib
import pytest

from perceptcoh.engine import full_scale
from perceptcoh.engine.experiments import ablation_plan, comparison_plan
from perceptcoh.engine.report import sweep

matplotlib.use("Agg")
PUBLISHED = json.loads((Path(__file__).resolve().parents[1] / "results" /
                        full_scale.PUBLISHED).read_text())


def test_published_table_without_and_with_ours():
    pair = next(iter(PUBLISHED["pairs"]))
    alone = full_scale.published_table(PUBLISHED, None)
    assert f"{PUBLISHED['pairs'][pair]['kd']:.2f}" in alone
    assert PUBLISHED["source"]["commit"][:10] in alone
    runs = [{"key": {"pair": pair, "method": "kd", "protocol": "supervised", "seed": s},
             "metrics": {"top1": v}} for s, v in enumerate([0.7012, 0.7034])]
    full = {"runs": runs, "teachers": {pair.split("->")[0]: {"metrics": {"top1": 0.7777}}}}
    both = full_scale.published_table(PUBLISHED, full)
    assert "70.23" in both and "77.77" in both and "–" in both


def test_published_pairs_are_the_full_scale_pairs():
    full_scale.check_published(PUBLISHED)
    with pytest.raises(ValueError):
        full_scale.check_published({"pairs": {"a->b": {}}})


def test_the_comparison_plan_is_checked():
    plan = comparison_plan("full")
    full_scale.check_comparison_plan(plan)
    assert f"{len(plan.runs)} student runs" in full_scale.plan_summary(plan)
    plan.runs.pop()
    with pytest.raises(ValueError):
        full_scale.check_comparison_plan(plan)


def test_a_comparison_document_whose_teacher_differs_is_refused(capsys):
    document = {"completed": True, "scale": "full", "teachers": {"t": {"sha256": "a"}},
                "runs": [{"key": {"method": "pc", "pair": "t->s"}, "teacher_sha256": "b"}]}
    with pytest.raises(ValueError):
        full_scale.check_comparison(document)
    full_scale.show_comparison(None)
    assert "not saved yet" in capsys.readouterr().out


def ablation_document(plan, gap=0.1):
    runs = [{"key": run.key, "output_dir": run.config.output_dir, "beta": 1.0,
             "config": {"loss_options": run.config.loss_options,
                        "batch_size": run.config.batch_size},
             "metrics": {"top1": 0.5, "linear_probe_top1": 0.4, "perception_gap_r1": gap}}
            for run in plan.runs]
    return {"completed": True, "runs": runs, "provenance": {"git_commit": "0" * 40,
            "device": "cpu"}, "wall_time_seconds": {"total": 3600.0}}


def test_sweeps_are_sorted_checked_and_plotted(capsys):
    plan = ablation_plan("full")
    document = ablation_document(plan)
    values = [point[0] for point in sweep(document["runs"], "tau")]
    assert values == sorted(values) and len(values) == 5
    full_scale.show_sweeps(document)
    assert "wall time 1.00 h" in capsys.readouterr().out
    document["runs"][0]["metrics"]["top1"] = math.nan
    with pytest.raises(ValueError):
        full_scale.check_sweeps(document)
    document["runs"].pop(0)
    with pytest.raises(ValueError):
        full_scale.check_sweeps(document)


def test_the_ablation_plan_shares_the_comparison_run():
    plan, comparison = ablation_plan("full"), comparison_plan("full")
    full_scale.check_ablation_plan(plan, comparison)
    summary = full_scale.ablation_plan_summary(plan, comparison)
    assert summary.startswith(f"{len(plan.runs)} sweep points")
    with pytest.raises(ValueError):
        full_scale.check_ablation_plan(plan, comparison_plan("full", seeds=(7,)))
