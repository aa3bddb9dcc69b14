"""The ablations chapter's helpers: the sweeps of a saved document, sorted, checked and
plotted, and the check of the plan."""

import math

import matplotlib
import pytest

from perceptcoh.book import ablations
from perceptcoh.book.report import sweep
from perceptcoh.engine.experiments import ablation_plan, comparison_plan

matplotlib.use("Agg")


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
    ablations.show_sweeps(document)
    assert "wall time 1.00 h" in capsys.readouterr().out
    document["runs"][0]["metrics"]["top1"] = math.nan
    with pytest.raises(ValueError):
        ablations.check_sweeps(document)
    document["runs"].pop(0)
    with pytest.raises(ValueError):
        ablations.check_sweeps(document)


def test_the_ablation_plan_shares_the_comparison_run():
    plan, comparison = ablation_plan("full"), comparison_plan("full")
    ablations.check_ablation_plan(plan, comparison)
    summary = ablations.ablation_plan_summary(plan, comparison)
    assert summary.startswith(f"{len(plan.runs)} sweep points")
    with pytest.raises(ValueError):
        ablations.check_ablation_plan(plan, comparison_plan("full", seeds=(7,)))
