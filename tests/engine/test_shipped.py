"""Shipped teachers: written by scripts/ship_teacher.py, loaded only with their SHA-256."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest
import torch

from perceptcoh.engine import CHECKPOINT_NAME, CheckpointError, TrainConfig, run, train_teacher
from perceptcoh.engine import shipped

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"


def ship(run_dir, name, folder, monkeypatch):
    monkeypatch.setattr(shipped, "TEACHERS_DIR", folder)
    monkeypatch.setattr(sys, "argv", ["ship_teacher.py", str(run_dir), name, "--command",
                                      "python -m perceptcoh train-teacher --preset smoke"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(ROOT / "scripts" / "ship_teacher.py"), run_name="__main__")
    return exit_info.value.code


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("teacher")
    train_teacher(TrainConfig(dataset="digits", model="digits_cnn", epochs=1, batch_size=64,
                              train_subset=256, test_subset=60, triplet_points=20,
                              progress=False, output_dir=str(output)))
    return output


def test_a_shipped_teacher_is_found_checked_and_used(teacher_run, tmp_path, monkeypatch):
    folder = tmp_path / "teachers"
    assert ship(teacher_run, "digits-cnn", folder, monkeypatch) == 0
    record = json.loads((folder / "digits-cnn.json").read_text())
    assert record["sha256"] == shipped.file_sha256(folder / "digits-cnn.pt")
    assert record["metrics"]["top1"] > 0.1 and record["model"]["name"] == "digits_cnn"
    assert shipped.shipped_teachers() == ["digits-cnn"]
    path = shipped.shipped_teacher("digits-cnn")
    student = run(TrainConfig(dataset="digits", model="digits_mlp", method="pc", epochs=1,
                              batch_size=64, train_subset=256, test_subset=60,
                              triplet_points=20, progress=False, teacher_checkpoint=path,
                              output_dir=str(tmp_path / "student")))
    assert student["teacher"]["sha256"] == record["sha256"]


def test_a_changed_or_missing_file_is_refused_by_name(teacher_run, tmp_path, monkeypatch):
    folder = tmp_path / "teachers"
    assert ship(teacher_run, "digits-cnn", folder, monkeypatch) == 0
    with open(folder / "digits-cnn.pt", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(CheckpointError, match="digits-cnn.*SHA-256.*train-teacher"):
        shipped.shipped_teacher("digits-cnn")
    # The engine checks it too, when given the file's path directly.
    with pytest.raises(CheckpointError, match="digits-cnn.json records"):
        run(TrainConfig(dataset="digits", model="digits_mlp", method="pc", epochs=1,
                        batch_size=64, train_subset=256, test_subset=60, progress=False,
                        teacher_checkpoint=str(folder / "digits-cnn.pt"),
                        output_dir=str(tmp_path / "student")))
    (folder / "digits-cnn.pt").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        shipped.shipped_teacher("digits-cnn")
    with pytest.raises(ValueError, match="no shipped teacher 'other'; shipped: digits-cnn"):
        shipped.shipped_teacher("other")


def test_an_unfinished_run_is_not_shipped(tmp_path, monkeypatch, capsys):
    (tmp_path / "run").mkdir()
    assert ship(tmp_path / "run", "x", tmp_path / "teachers", monkeypatch) == 1
    assert "not a finished run" in capsys.readouterr().err


@pytest.mark.skipif(not shipped.shipped_teachers(), reason="no teacher shipped yet")
@pytest.mark.parametrize("name", shipped.shipped_teachers())
def test_each_shipped_teacher_is_small_and_matches_its_record(name):
    record = shipped.shipped_record(name)
    path = Path(shipped.shipped_teacher(name))
    assert path.stat().st_size == record["bytes"] <= 3 * 10**6
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert state["model"]["name"] == record["model"]["name"]
    assert state["epoch"] == record["recipe"]["epochs"]
    assert CHECKPOINT_NAME not in record["file"]
