"""The CIFAR-100 chapter's helpers: RepDistiller's numbers beside ours (or beside dashes
while ours are not saved), the check of the plan and of a saved document."""

import json
from pathlib import Path

import matplotlib
import pytest

from perceptcoh.book import cifar100
from perceptcoh.engine.experiments import comparison_plan

matplotlib.use("Agg")
PUBLISHED = json.loads((Path(__file__).resolve().parents[2] / "results" /
                        cifar100.PUBLISHED).read_text())


def test_published_table_without_and_with_ours():
    pair = next(iter(PUBLISHED["pairs"]))
    alone = cifar100.published_table(PUBLISHED, None)
    assert f"{PUBLISHED['pairs'][pair]['kd']:.2f}" in alone
    assert PUBLISHED["source"]["commit"][:10] in alone
    runs = [{"key": {"pair": pair, "method": "kd", "protocol": "supervised", "seed": s},
             "metrics": {"top1": v}} for s, v in enumerate([0.7012, 0.7034])]
    full = {"runs": runs, "teachers": {pair.split("->")[0]: {"metrics": {"top1": 0.7777}}}}
    both = cifar100.published_table(PUBLISHED, full)
    assert "70.23" in both and "77.77" in both and "–" in both


def test_published_pairs_are_the_full_scale_pairs():
    cifar100.check_published(PUBLISHED)
    with pytest.raises(ValueError):
        cifar100.check_published({"pairs": {"a->b": {}}})


def test_the_comparison_plan_is_checked():
    plan = comparison_plan("full")
    cifar100.check_comparison_plan(plan)
    assert f"{len(plan.runs)} student runs" in cifar100.plan_summary(plan)
    plan.runs.pop()
    with pytest.raises(ValueError):
        cifar100.check_comparison_plan(plan)


def test_a_comparison_document_whose_teacher_differs_is_refused(capsys):
    document = {"completed": True, "scale": "full", "teachers": {"t": {"sha256": "a"}},
                "runs": [{"key": {"method": "pc", "pair": "t->s"}, "teacher_sha256": "b"}]}
    with pytest.raises(ValueError):
        cifar100.check_comparison(document)
    cifar100.show_comparison(None)
    assert "not saved yet" in capsys.readouterr().out
