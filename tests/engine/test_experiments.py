"""Plans of the book's experiments, and running them resumably on a tiny digits scale."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from digits_runs import TINY_SCALE as TINY
from perceptcoh.engine import TrainConfig, experiments, shipped, train_teacher
from perceptcoh.engine.cli import main
from perceptcoh.engine.experiments import (
    COMPARISON_METHODS,
    SCALES,
    ablation_plan,
    aggregate,
    cohorts,
    combined_plan,
    comparison_plan,
    default_output,
    longer_plan,
    run_plan,
)
from perceptcoh.engine.presets import preset
from perceptcoh.engine import MODEL_NAME



@pytest.fixture
def tiny_scale(monkeypatch):
    monkeypatch.setitem(SCALES, "tiny", TINY)
    return "tiny"


def test_the_full_comparison_is_every_method_pair_protocol_and_seed():
    plan = comparison_plan("full")
    assert len(plan.runs) == 2 * 3 * (1 + 2 * (len(COMPARISON_METHODS) - 1))
    assert len({run.config.output_dir for run in plan.runs}) == len(plan.runs)
    # One teacher, the one `train-teacher --preset full` trains.
    assert list(plan.teachers) == ["resnet32x4"]
    teacher = plan.teachers["resnet32x4"]
    assert teacher.output_dir == preset("full", "train-teacher")["output_dir"]
    assert teacher.epochs == preset("full", "train-teacher")["epochs"]
    for run in plan.runs:
        config, key = run.config, run.key
        assert (config.method, config.protocol, config.seed) == (
            key["method"], key["protocol"], key["seed"])
        assert key["pair"] == f"resnet32x4->{config.model}"
        assert config.epochs == 20 and config.batch_size == 512 and config.dataset == "cifar100"
        if config.method == "ce":
            assert config.teacher_checkpoint is None and config.gradient_ratio is None
        else:  # one rule for beta, no per-method tuning
            assert config.gradient_ratio == 1.0 and config.beta is None
            assert config.teacher_checkpoint == f"{teacher.output_dir}/{MODEL_NAME}"


def test_ablations_vary_one_knob_and_share_the_comparisons_pc_runs(tiny_scale):
    comparison = {run.config.output_dir: run.config for run in comparison_plan(tiny_scale).runs}
    plan = ablation_plan(tiny_scale)
    pc_pure = next(c for c in comparison.values() if c.method == "pc" and c.protocol == "pure")
    for run in plan.runs:
        knob, value, config = run.key["knob"], run.key["value"], run.config
        if knob == "gradient_ratio" and value == 0.0:
            assert config.method == "ce"
            continue
        reference = comparison[pc_pure.output_dir]
        if config.protocol == "supervised":
            reference = dataclasses.replace(reference, protocol="supervised")
        setting = {"tau": config.loss_options.get("tau", 0.1),
                   "batch_size": config.batch_size,
                   "metric": config.loss_options.get("metric_student", "euclidean"),
                   "r": config.loss_options.get("r", 2),
                   "gradient_ratio": config.gradient_ratio}[knob]
        assert setting == value
        # Every other field is the comparison's.
        differing = {f.name for f in dataclasses.fields(config)
                     if getattr(config, f.name) != getattr(reference, f.name)}
        assert differing <= {"loss_options", "batch_size", "gradient_ratio", "output_dir"}
        if config.output_dir in comparison:
            assert config == comparison[config.output_dir]
    defaults = [run for run in plan.runs if run.config.output_dir == pc_pure.output_dir]
    assert {run.key["knob"] for run in defaults} == {"tau", "batch_size", "metric", "r"}
    with pytest.raises(ValueError, match="unknown scale 'huge'"):
        ablation_plan("huge")


def test_bad_selections_are_named():
    with pytest.raises(ValueError, match="methods must be"):
        comparison_plan("full", methods=["pc", "magic"])
    with pytest.raises(ValueError, match="pairs must"):
        comparison_plan("full", pairs=[])


def test_run_plan_trains_once_records_teachers_and_resumes(tiny_scale, tmp_path, monkeypatch):
    plan = comparison_plan(tiny_scale, methods=["ce", "pc", "kd"], root=tmp_path,
                           progress=False)
    output = tmp_path / "doc.json"
    # A deadline already past: nothing starts, everything is missing.
    stopped = run_plan(plan, output, time_limit=0, progress=False)
    assert not stopped["completed"] and len(stopped["missing"]) == 1 + len(plan.runs)
    assert not output.exists()

    document = run_plan(plan, output, progress=False)
    assert document["completed"] and json.loads(output.read_text()) == json.loads(
        json.dumps(document))
    teacher = document["teachers"]["digits_cnn"]
    model = tmp_path / "tiny" / "teacher" / MODEL_NAME
    assert teacher["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert teacher["recipe"]["epochs"] == 1 and teacher["recipe"]["model"] == "digits_cnn"
    assert len(document["runs"]) == 2 * 5
    for entry in document["runs"]:
        assert entry["teacher_sha256"] == (None if entry["key"]["method"] == "ce"
                                           else teacher["sha256"])
        assert {"git_commit", "device"} <= set(entry["provenance"])
        # CE alone is trained without the teacher, and scored against the one of its pass.
        assert "perception_gap_r1" in entry["metrics"]
        assert math.isfinite(entry["metrics"]["linear_probe_top1"])
        assert ("top1" in entry["metrics"]) == (entry["key"]["protocol"] == "supervised"
                                                or entry["key"]["method"] == "kd")
    walls = document["wall_time_seconds"]
    assert walls["total"] == pytest.approx(walls["teachers"] + walls["students"])
    # Students train in passes (one per seed here: the tiny scale sets no data_seed); a
    # pass's wall time counts once.
    passes = {}
    for entry in document["runs"]:
        members = tuple(entry["cohort"])
        passes[members] = max(passes.get(members, 0.0), entry["wall_time_seconds"])
    assert len(passes) == document["student_passes"] == 2
    assert walls["students"] == pytest.approx(sum(passes.values()))

    # A second call trains nothing: every run is read back.
    monkeypatch.setattr(experiments, "run_cohort", lambda configs: pytest.fail("trained again"))
    again = run_plan(plan, None, progress=False)
    assert again["runs"] == document["runs"] and again["teachers"] == document["teachers"]

    # The same runs from another working folder: paths differ, the runs do not.
    monkeypatch.chdir(tmp_path)
    relative = comparison_plan(tiny_scale, methods=["ce", "pc", "kd"], root=".", progress=False)
    assert relative.runs[1].config.teacher_checkpoint != plan.runs[1].config.teacher_checkpoint
    reused = run_plan(relative, None, progress=False)["runs"]
    assert [(e["key"], e["metrics"]) for e in reused] == [(e["key"], e["metrics"])
                                                         for e in document["runs"]]

    # A folder holding another run's results is refused, by name.
    changed = dataclasses.replace(plan.runs[1].config, lr=0.3)
    plan.runs[1] = dataclasses.replace(plan.runs[1], config=changed)
    with pytest.raises(ValueError, match=r"lr: saved 0\.1, now 0\.3"):
        run_plan(plan, None, progress=False)
    # So are students of another teacher.
    with open(model, "ab") as handle:
        handle.write(b"another teacher")
    with pytest.raises(ValueError, match="teacher SHA-256: saved " + teacher["sha256"]):
        run_plan(relative, None, progress=False)


def test_aggregate_matches_numpy():
    rng = np.random.default_rng(0)
    runs = [{"key": {"method": m, "seed": s}, "metrics": {"a": float(rng.normal()),
                                                          **({"b": 1.0} if m == "x" else {})}}
            for m in ("x", "y") for s in range(3)]
    rows = aggregate(runs, ("method",), ("a", "b"))
    assert [row["method"] for row in rows] == ["x", "y"]
    for row in rows:
        sample = [r["metrics"]["a"] for r in runs if r["key"]["method"] == row["method"]]
        assert row["a"]["mean"] == pytest.approx(np.mean(sample))
        assert row["a"]["std"] == pytest.approx(np.std(sample, ddof=1))
        assert row["a"]["n"] == 3
    assert "b" in rows[0] and "b" not in rows[1]
    single = aggregate(runs[:1], ("method", "seed"), ("a",))
    assert math.isnan(single[0]["a"]["std"])


def test_default_outputs():
    assert str(default_output(comparison_plan("full"))) == "results/cifar100-comparison.json"
    assert str(default_output(combined_plan("laptop"))) == "results/cifar100-laptop-all.json"
    assert str(default_output(ablation_plan("cpu"), "r")) == "r/cpu/ablation.json"


def test_cli_experiment_errors_are_clear(capsys):
    assert main(["experiment", "comparison", "--pairs", "resnet32x4"]) == 1
    assert "TEACHER:STUDENT" in capsys.readouterr().err
    assert main(["experiment", "ablation", "--methods", "pc"]) == 1
    assert "--pairs and --methods" in capsys.readouterr().err
    assert main(["experiment", "comparison", "--methods", "magic"]) == 1
    assert "methods must be" in capsys.readouterr().err


def test_every_full_scale_student_shares_one_pass():
    """One data seed for every method, protocol and initialisation seed, and one teacher:
    the 102 students can train in one pass, or in passes of a chosen size, in plan order."""
    from perceptcoh.engine.experiments import cohorts

    plan = comparison_plan("full")
    configs = list({run.config.output_dir: run.config for run in plan.runs}.values())
    assert [len(group) for group in cohorts(configs)] == [102]
    groups = cohorts(configs, 16)
    assert [len(group) for group in groups] == [16] * 6 + [6]
    assert [config for group in groups for config in group] == configs
    with pytest.raises(ValueError, match="cohort_size"):
        cohorts(configs, 0)


def test_students_of_different_data_or_teachers_get_different_passes(tiny_scale):
    from perceptcoh.engine.experiments import cohorts

    plan = comparison_plan(tiny_scale, methods=["ce", "pc"])  # tiny: data seed = seed
    configs = [run.config for run in plan.runs]
    groups = cohorts(configs)
    assert len(groups) == 2 and all({c.seed for c in group} == {group[0].seed}
                                    for group in groups)
    other = dataclasses.replace(configs[1], teacher_checkpoint="elsewhere/model.pt",
                                output_dir="elsewhere")
    assert len(cohorts([configs[0], configs[1], other])) == 2


def test_the_dry_run_counts_flops_as_designed():
    """resnet32x4 and resnet8x4 forwards cost 2.17 and 0.35 GFLOP per CIFAR image (2 FLOP
    per multiply-add); the full comparison then costs one teacher training, one teacher
    forward per batch of the pass, and 102 student trainings."""
    from perceptcoh.engine.cost import TRAIN_FORWARDS, forward_flops, plan_cost

    assert forward_flops("resnet32x4", "cifar100") == pytest.approx(2.17e9, rel=0.01)
    assert forward_flops("resnet8x4", "cifar100") == pytest.approx(0.354e9, rel=0.01)
    plan = comparison_plan("full", root="no-such-root")
    cost = plan_cost(plan, calibrate=False)
    teacher, students = cost["parts"]
    assert teacher["images"] == 120 * (50_000 // 512) * 512
    assert students["images"] == 20 * (50_000 // 512) * 512 and students["students"] == 102
    per_student = {name: TRAIN_FORWARDS * students["images"] * forward_flops(name, "cifar100")
                   for name in ("resnet8x4", "shufflenetv2")}
    expected = students["images"] * forward_flops("resnet32x4", "cifar100") + 51 * sum(
        per_student.values())
    assert students["flops"] == pytest.approx(expected, rel=1e-12)
    assert cost["flops"] == teacher["flops"] + students["flops"] and cost["seconds"] is None


def test_the_dry_run_prices_only_what_is_left(tiny_scale, tmp_path):
    from perceptcoh.engine.cost import format_cost, plan_cost

    plan = comparison_plan(tiny_scale, methods=["ce", "pc"], seeds=[0], root=tmp_path,
                           progress=False)
    before = plan_cost(plan)
    assert len(before["parts"]) == 2 and before["seconds"] > 0
    assert "total" in format_cost(before)
    run_plan(plan, None, progress=False)
    assert plan_cost(plan)["parts"] == []


def test_the_laptop_scale_transfers_from_the_shipped_teacher_and_trains_none():
    plan = comparison_plan("laptop")
    assert plan.teachers == {} and plan.shipped == {"resnet20": "cifar100-resnet20"}
    assert len(plan.runs) == 3 * (1 + 2 * (len(COMPARISON_METHODS) - 1))
    checkpoint = shipped.shipped_teacher("cifar100-resnet20")
    for run in plan.runs:
        config = run.config
        assert (config.model, config.dataset, config.train_subset, config.probe_subset) == (
            "resnet8", "cifar100", None, 10_000)
        assert config.teacher_checkpoint == (None if config.method == "ce" else checkpoint)
        if config.method == "crd":
            assert config.loss_options == {"nce_k": 4096}
    with pytest.raises(ValueError, match="shipped resnet20 teacher .* pairs name resnet32x4"):
        comparison_plan("laptop", pairs=[("resnet32x4", "resnet8")])


def test_the_combined_plan_shares_the_comparisons_pass_with_most_ablations():
    comparison, ablation = comparison_plan("laptop"), ablation_plan("laptop")
    plan = combined_plan("laptop")
    assert plan.runs == comparison.runs + ablation.runs and plan.name == "all"
    unique = list({run.config.output_dir: run.config for run in plan.runs}.values())
    passes = cohorts(unique)
    # One pass at the recipe's batch size holds every comparison run; the other batch
    # sizes of the sweep each need their own.
    assert sorted(group[0].batch_size for group in passes) == [64, 128, 256]
    main_pass = {c.output_dir for c in next(g for g in passes if g[0].batch_size == 128)}
    assert {run.config.output_dir for run in comparison.runs} < main_pass
    assert main(["experiment", "all", "--methods", "pc"]) == 1


def test_the_longer_point_trains_the_pure_protocol_longer_in_one_pass():
    longer = SCALES["laptop"]["longer"]
    plan = longer_plan("laptop")
    assert plan.name == "longer" and default_output(plan) == Path(
        "results/cifar100-laptop-longer.json")
    assert sorted((r.key["method"], r.key["seed"]) for r in plan.runs) == sorted(
        (m, s) for m in longer["methods"] for s in SCALES["laptop"]["seeds"])
    one_epoch = {(r.key["method"], r.key["seed"]): r.config
                 for r in comparison_plan("laptop").runs if r.key["protocol"] == "pure"}
    for run in plan.runs:
        assert run.key["protocol"] == "pure" and run.key["epochs"] == longer["epochs"] > 1
        # Only the epochs differ from the one-epoch comparison's run, and so does the folder.
        same = one_epoch[run.key["method"], run.key["seed"]]
        assert dataclasses.replace(run.config, epochs=1, output_dir=same.output_dir) == same
        assert run.config.output_dir != same.output_dir
    assert len(cohorts([r.config for r in plan.runs])) == 1
    with pytest.raises(ValueError, match="has no longer point"):
        longer_plan("full")
    assert main(["experiment", "longer", "--methods", "pc"]) == 1


def ship_digits_teacher(folder: Path, monkeypatch) -> None:
    run_dir = folder / "run"
    train_teacher(TrainConfig(dataset="digits", model="digits_cnn", epochs=1, batch_size=64,
                              train_subset=256, test_subset=60, triplet_points=20,
                              progress=False, output_dir=str(run_dir)))
    monkeypatch.setattr(shipped, "TEACHERS_DIR", folder / "teachers")
    monkeypatch.setattr(sys, "argv", ["ship_teacher.py", str(run_dir), "digits-cnn",
                                      "--command", "train it"])
    script = Path(__file__).resolve().parents[2] / "scripts" / "ship_teacher.py"
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(script), run_name="__main__")
    assert exit_info.value.code == 0


def test_a_plan_of_a_shipped_teacher_records_it_and_spends_no_teacher_time(
        tmp_path, monkeypatch):
    ship_digits_teacher(tmp_path, monkeypatch)
    scale = {**TINY, "teacher": {"shipped": "digits-cnn"},
             "student": {**TINY["student"], "probe_subset": 64}}
    monkeypatch.setitem(SCALES, "tiny-shipped", scale)
    plan = comparison_plan("tiny-shipped", methods=["ce", "pc"], seeds=(0,), root=tmp_path,
                           progress=False)
    assert plan.teachers == {}
    document = run_plan(plan, None, progress=False)
    record = shipped.shipped_record("digits-cnn")
    teacher = document["teachers"]["digits_cnn"]
    assert teacher["shipped"] == "digits-cnn" and teacher["sha256"] == record["sha256"]
    assert teacher["checkpoint"] == shipped.shipped_teacher("digits-cnn")
    assert teacher["metrics"] == record["metrics"] and teacher["command"] == "train it"
    assert document["wall_time_seconds"]["teachers"] == 0
    for entry in document["runs"]:
        assert entry["config"]["probe_subset"] == 64
        assert entry["teacher_sha256"] == (None if entry["key"]["method"] == "ce"
                                           else record["sha256"])


def test_a_pass_of_a_plan_trains_alone_and_a_last_call_gathers_them(tiny_scale, tmp_path):
    """Processes can share a plan: ``only_pass`` trains one pass, numbered over every
    student run of the plan, so a pass finished elsewhere does not renumber the others."""
    plan = comparison_plan(tiny_scale, methods=["ce", "pc"], seeds=[0], root=tmp_path,
                           progress=False)
    passes = [[config.output_dir for config in group]
              for group in experiments.cohorts([run.config for run in plan.runs], 2)]
    assert len(passes) == 2

    def finished():
        return {run.config.output_dir for run in plan.runs
                if (Path(run.config.output_dir) / "results.json").exists()}

    second = run_plan(plan, progress=False, cohort_size=2, only_pass=2)
    assert not second["completed"] and finished() == set(passes[1])
    first = run_plan(plan, progress=False, cohort_size=2, only_pass=1)  # numbering kept
    assert first["completed"] and finished() == set(passes[0]) | set(passes[1])
    gathered = run_plan(plan, progress=False, cohort_size=2)  # trains nothing more
    assert gathered["runs"] == first["runs"]
    with pytest.raises(ValueError, match="only_pass must be in 1..2"):
        run_plan(plan, progress=False, cohort_size=2, only_pass=3)
