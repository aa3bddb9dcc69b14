"""``python -m perceptcoh``: options, a smoke run in a subprocess, and clear errors."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from perceptcoh.engine import cli
from perceptcoh.engine import CHECKPOINT_NAME, MODEL_NAME, RESULTS_NAME, TrainConfig

SMALL = ["--epochs", "1", "--train-subset", "128", "--test-subset", "40",
         "--triplet-points", "10", "--no-progress"]


def help_text(capsys, *arguments: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*arguments, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_help_documents_every_config_field(capsys):
    transfer_help = help_text(capsys, "transfer")
    teacher_help = help_text(capsys, "train-teacher")
    for field in dataclasses.fields(TrainConfig):
        option = "--" + field.name.replace("_", "-")
        assert option in transfer_help, option
        if field.name not in cli._TRANSFER_ONLY:
            assert option in teacher_help, option
    assert "--preset" in transfer_help and "smoke" in transfer_help
    assert "lr * batch_size / 128" in " ".join(transfer_help.split())
    assert "evaluate" in help_text(capsys)
    assert "--teacher-checkpoint" in help_text(capsys, "evaluate")


def test_smoke_run_in_a_subprocess_then_transfer_and_evaluate(tmp_path, capsys):
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    completed = subprocess.run(
        [sys.executable, "-m", "perceptcoh", "train-teacher", "--preset", "smoke", *SMALL,
         "--output-dir", "teacher"],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    results = json.loads((tmp_path / "teacher" / RESULTS_NAME).read_text())
    assert results["config"]["dataset"] == "digits" and results["config"]["epochs"] == 1
    assert {"git_commit", "device", "torch", "command"} <= set(results["provenance"])
    assert json.loads(completed.stdout)["top1"] == results["metrics"]["top1"]

    teacher = str(tmp_path / "teacher" / MODEL_NAME)
    student_dir = tmp_path / "student"
    code = cli.main(["transfer", "--preset", "smoke", "--method", "pc", *SMALL,
                     "--teacher-checkpoint", teacher, "--output-dir", str(student_dir),
                     "--loss-options", "tau=0.2", "--model-options", "feature_dim=4"])
    assert code == 0
    results = json.loads((student_dir / RESULTS_NAME).read_text())
    assert results["config"]["loss_options"] == {"tau": 0.2}
    assert results["config"]["model_options"] == {"feature_dim": 4}
    assert results["config"]["model"] == "digits_mlp"  # from the preset
    assert "perception_gap_r1" in results["metrics"]
    capsys.readouterr()

    output = tmp_path / "evaluation.json"
    code = cli.main(["evaluate", "--checkpoint", str(student_dir / CHECKPOINT_NAME),
                     "--teacher-checkpoint", teacher, "--test-subset", "40",
                     "--train-subset", "128", "--triplet-points", "10",
                     "--output", str(output)])
    assert code == 0
    evaluation = json.loads(output.read_text())
    printed = json.loads(capsys.readouterr().out)
    assert printed["results"] == str(output)
    assert evaluation["metrics"]["top1"] == pytest.approx(results["metrics"]["top1"])
    assert evaluation["metrics"]["perception_gap_r1"] == pytest.approx(
        results["metrics"]["perception_gap_r1"])
    assert "provenance" in evaluation


@pytest.mark.parametrize("arguments, message", [
    (["transfer", "--method", "magic"], "invalid choice: 'magic'"),
    (["train-teacher", "--model", "resnet9000"], "invalid choice: 'resnet9000'"),
    (["train-teacher", "--dataset", "imagenet"], "invalid choice: 'imagenet'"),
    (["transfer"], "--method"),
    (["transfer", "--method", "pc", "--loss-options", "tau"], "KEY=VALUE"),
    (["train-teacher", "--epochs", "many"], "invalid int value"),
    (["train-teacher", "--method", "pc"], "unrecognized arguments"),
])
def test_bad_arguments_exit_with_a_message(capsys, arguments, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(arguments)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_invalid_values_exit_with_status_1(capsys, tmp_path):
    code = cli.main(["transfer", "--method", "pc", "--dataset", "digits",
                     "--model", "digits_mlp", "--teacher-checkpoint",
                     str(tmp_path / "missing.pt"), "--output-dir", str(tmp_path / "run")])
    assert code == 1
    assert "missing.pt does not exist" in capsys.readouterr().err
    code = cli.main(["train-teacher", "--preset", "smoke", "--epochs", "-1"])
    assert code == 1
    assert "epochs must be" in capsys.readouterr().err


def test_time_limit_exits_75_and_resume_finishes(tmp_path, capsys):
    arguments = ["train-teacher", "--preset", "smoke", *SMALL, "--epochs", "2",
                 "--output-dir", str(tmp_path)]
    assert cli.main([*arguments, "--time-limit", "0"]) == cli.EXIT_INCOMPLETE
    assert "--resume" in capsys.readouterr().err
    assert not (tmp_path / RESULTS_NAME).exists()
    assert cli.main([*arguments, "--resume"]) == 0
    assert json.loads((tmp_path / RESULTS_NAME).read_text())["epochs_completed"] == 2


def test_parse_mapping():
    assert cli.parse_mapping(["tau=0.05", "r=1", "metric_student=cosine"]) == {
        "tau": 0.05, "r": 1, "metric_student": "cosine"}
    assert cli.parse_mapping(['{"tau": 0.1}']) == {"tau": 0.1}
    with pytest.raises(ValueError):
        cli.parse_mapping(["=3"])
