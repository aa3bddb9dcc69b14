"""The fair test: the validation split, the selection rule (which reads no test score), the
plans of the selection and final runs, and their registration."""

import json
from collections.abc import Mapping

import pytest
import torch

from perceptcoh.engine import fair
from perceptcoh.engine.config import TrainConfig, recipe
from perceptcoh.engine.data.split import VALIDATION_SEED, validation_split
from perceptcoh.engine.selection import SCORE, choose, validation_view


# ------------------------------------------------------------------ the validation split


def test_validation_split_is_class_balanced_disjoint_and_complete():
    labels = torch.arange(10).repeat_interleave(30)[torch.randperm(300)]
    kept, held_out = validation_split(labels, 50, 10)
    assert len(held_out) == 50 and len(kept) == 250
    assert torch.bincount(labels[held_out], minlength=10).tolist() == [5] * 10
    assert sorted(torch.cat([kept, held_out]).tolist()) == list(range(300))


def test_validation_split_depends_on_its_own_seed_only():
    labels = torch.arange(5).repeat(40)
    first = validation_split(labels, 20, 5)[1]
    torch.manual_seed(123)  # the global generator plays no part
    assert torch.equal(validation_split(labels, 20, 5)[1], first)
    assert torch.equal(validation_split(labels, 20, 5, seed=VALIDATION_SEED)[1], first)
    assert not torch.equal(validation_split(labels, 20, 5, seed=1)[1], first)


@pytest.mark.parametrize("size, message", [(0, "positive multiple"), (15, "positive multiple"),
                                           (200, "class 0 has only")])
def test_validation_split_rejects_what_it_cannot_balance(size, message):
    labels = torch.arange(10).repeat(10)
    with pytest.raises(ValueError, match=message):
        validation_split(labels, size, 10)


# ------------------------------------------------------------------ the selection rule


class PoisonedTestScores(Mapping):
    """Metrics whose test scores raise when read: the selection must never read one."""

    def __init__(self, values):
        self.values = values

    def __getitem__(self, name):
        if not name.startswith("val_"):
            raise AssertionError(f"the selection read the test score {name!r}")
        return self.values[name]

    def __iter__(self):
        return iter(self.values)

    def __len__(self):
        return len(self.values)


def _run(method, ratio, val, test, value=None, collapsed=False, diverged=None):
    return {"key": {"method": method, "gradient_ratio": ratio, "knob": value and "knob",
                    "value": value},
            "collapsed": collapsed, "diverged": diverged,
            "metrics": {SCORE: val, "val_knn_top1": val, "linear_probe_top1": test,
                        "knn_top1": test, "perception_gap_r1": 0.3}}


def _runs():
    return [
        _run("pc", 0.3, 0.10, 0.90), _run("pc", 1.0, 0.20, 0.10), _run("pc", 3.0, 0.15, 0.10),
        _run("pc", 10.0, 0.30, 0.10, collapsed=True),
        _run("kd", 0.3, 0.30, 0.10, value=4.0), _run("kd", 0.3, 0.30, 0.50, value=2.5),
        _run("kd", 1.0, 0.10, 0.10, value=4.0), _run("kd", 1.0, 0.10, 0.10, value=2.5),
        _run("sp", 1.0, 0.20, 0.10), _run("sp", 3.0, float("nan"), 0.99,
                                          diverged={"epoch": 1, "loss": float("nan")}),
        _run("sp", 10.0, 0.25, 0.10, collapsed=None),
    ]


def test_selection_reads_no_test_score():
    runs = _runs()
    poisoned = [{**run, "metrics": PoisonedTestScores(run["metrics"])} for run in runs]
    assert choose(poisoned) == choose(runs)
    assert set(validation_view(poisoned[0])["metrics"]) == {SCORE, "val_knn_top1"}


def test_selection_does_not_move_with_test_scores():
    runs = _runs()
    shuffled = [{**run, "metrics": {**run["metrics"], "linear_probe_top1": 1 - i / 20,
                                    "knn_top1": i / 20}} for i, run in enumerate(runs)]
    assert choose(shuffled) == choose(runs)


def test_selection_takes_the_best_healthy_validation_probe():
    chosen = choose(_runs(), {"kd": (4.0, 2.5)})
    # PC: ratio 10 scored best but collapsed; ratio 1 is the best healthy run.
    assert chosen["pc"]["gradient_ratio"] == 1.0 and chosen["pc"]["edge"] is None
    assert (chosen["pc"]["healthy"], chosen["pc"]["runs"]) == (3, 4)
    # KD: a tie on the validation score goes to the knob's first registered value, whatever
    # the test scores say; 0.3 is the grid's smallest ratio: flagged.
    assert (chosen["kd"]["value"], chosen["kd"]["edge"]) == (4.0, "below")
    # SP: the diverged run and the run of unknown health (collapsed None) never count.
    assert chosen["sp"]["gradient_ratio"] == 1.0 and chosen["sp"]["edge"] == "below"
    assert chosen["sp"]["healthy"] == 1


def test_a_method_without_a_healthy_run_cannot_be_chosen():
    with pytest.raises(ValueError, match="no healthy selection run of 'pc'"):
        choose([_run("pc", 1.0, 0.2, 0.2, collapsed=True)])
    with pytest.raises(ValueError, match="without val_linear_probe_top1"):
        choose([{**_run("pc", 1.0, 0.2, 0.2), "metrics": {"linear_probe_top1": 0.2}}])


def test_an_edge_choice_extends_that_side_once():
    chosen = choose(_runs(), {"kd": (4.0, 2.5)})
    assert fair.extensions_for(chosen) == {"kd": (0.1,), "sp": (0.1,)}
    extended = choose(_runs() + [_run("sp", 0.1, 0.05, 0.1)])
    assert extended["sp"]["edge"] is None
    # Already trained on that side: nothing more.
    assert fair.extensions_for({"pc": {"edge": "above", "ratios": [1.0, 30.0]}}) == {}


# ------------------------------------------------------------------ the plans


def _by_method(plan):
    counts = {}
    for run in plan.runs:
        counts[run.key["method"]] = counts.get(run.key["method"], 0) + 1
    return counts


def test_selection_plan_crosses_every_ratio_with_every_knob_value():
    plan = fair.selection_plan("laptop", root="unused", progress=False)
    assert _by_method(plan) == {"pc": 8, "fitnet": 4, "pkt": 4, "sp": 4, "cc": 8, "rkd": 8,
                                "kd": 8}
    assert len({run.config.output_dir for run in plan.runs}) == len(plan.runs) == 44
    for run in plan.runs:
        config = run.config
        assert (config.protocol, config.seed, config.epochs) == ("pure", 0, 2)
        assert config.validation_split == 5000 and config.curve_every == 50
        assert config.gradient_ratio == run.key["gradient_ratio"]
    cosine = [r.config for r in plan.runs if r.key["method"] == "pc" and r.key["value"] == "cosine"]
    assert all(c.loss_options["metric_teacher"] == c.loss_options["metric_student"] == "cosine"
               for c in cosine)
    no_angle = [r.config for r in plan.runs if r.key["method"] == "rkd" and not r.key["value"]]
    assert all(c.loss_options["angle_weight"] == 0.0 for c in no_angle)
    extended = fair.selection_plan("laptop", extensions={"sp": (30.0,), "kd": (0.1,)},
                                   root="unused")
    assert _by_method(extended)["sp"] == 5 and _by_method(extended)["kd"] == 10


def test_final_plan_trains_the_chosen_settings_from_unused_seeds_with_controls():
    chosen = {method: {"gradient_ratio": 3.0, "value": (fair.KNOBS[method].values[1]
                                                        if method in fair.KNOBS else None)}
              for method in fair.FAIR_METHODS}
    plan = fair.final_plan("laptop", chosen, root="unused")
    seeds = {run.config.seed for run in plan.runs}
    assert seeds == {1, 2, 3} and fair.FAIR_SCALES["laptop"]["selection_seed"] not in seeds
    assert _by_method(plan) == {**{m: 3 for m in fair.FAIR_METHODS}, "ce": 3, "untrained": 3}
    untrained = [r.config for r in plan.runs if r.key["method"] == "untrained"]
    assert all(c.method == "ce" and c.epochs == 0 for c in untrained)
    ce = [r.config for r in plan.runs if r.key["method"] == "ce"]
    assert all(c.epochs == 2 and c.validation_split == 5000 for c in ce)
    kd = [r.config for r in plan.runs if r.key["method"] == "kd"]
    assert all(c.loss_options["temperature"] == 2.5 and c.gradient_ratio == 3.0 for c in kd)
    with pytest.raises(ValueError, match="no setting for pc"):
        fair.final_plan("laptop", {k: v for k, v in chosen.items() if k != "pc"})


def test_registration_is_json_and_names_grid_rule_and_margins():
    registered = fair.registration("laptop")
    assert json.loads(json.dumps(registered)) == json.loads(json.dumps(fair.registration("laptop")))
    assert registered["gradient_ratios"] == [0.3, 1.0, 3.0, 10.0]
    assert registered["margins"]["probe"]["on_par_within"] == 0.01
    assert set(registered["knobs"]) == {"pc", "kd", "rkd", "cc"}
    assert "crd" in registered["left_out"]
    with pytest.raises(ValueError, match="no scale 'full'"):
        fair.registration("full")


def test_validation_split_is_part_of_the_recipe_and_curves_are_not():
    assert "validation_split" in recipe(TrainConfig(validation_split=100))
    assert "curve_every" not in recipe(TrainConfig(curve_every=5))


# ------------------------------------------------------------------ the whole test, on digits


def test_the_fair_test_runs_end_to_end_on_digits(monkeypatch, tmp_path):
    """Registration, selection (with an edge extended once) and final runs with their
    controls, on the tests' tiny digits scale: each document holds what the chapter reads."""
    from digits_runs import TINY_SCALE

    from perceptcoh.engine.experiments import SCALES, run_fair_final, run_fair_selection

    monkeypatch.setitem(SCALES, "tiny", TINY_SCALE)
    monkeypatch.setitem(fair.FAIR_SCALES, "tiny", {
        "epochs": 1, "validation_split": 50, "curve_every": 2, "selection_seed": 0,
        "final_seeds": (1, 2), "gradient_ratios": (1.0, 3.0)})
    monkeypatch.setattr(fair, "FAIR_METHODS", ("pc", "kd"))
    monkeypatch.setattr(fair, "CLASS_UNAWARE", ())
    registered = {"registration": fair.registration("tiny"), "committed_in": None}
    options = dict(root=tmp_path, progress=False)
    with pytest.raises(ValueError, match="differs from the one the code runs"):
        run_fair_selection("tiny", {"registration": {**registered["registration"],
                                                     "epochs": 9}}, **options)
    selection = run_fair_selection("tiny", registered, tmp_path / "selection.json", **options)
    assert selection["completed"] and set(selection["chosen"]) == {"pc", "kd"}
    # Each method was chosen at an edge of {1, 3} first, so its grid grew by one step.
    assert set(selection["extensions"]) == {"pc", "kd"}
    assert all(len(run["curve"]) > 0 and "val_linear_probe_top1" in run["metrics"]
               for run in selection["runs"])
    final = run_fair_final("tiny", selection, tmp_path / "final.json", **options)
    methods = [run["key"]["method"] for run in final["runs"]]
    assert sorted(set(methods)) == ["ce", "kd", "pc", "untrained"]
    assert len(methods) == 2 * 4 and {run["key"]["seed"] for run in final["runs"]} == {1, 2}
    assert all("perception_gap_r1" in run["metrics"] for run in final["runs"])
    assert final["chosen"] == selection["chosen"]
