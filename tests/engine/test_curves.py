"""Learning curves, the validation split in a run, the controls (CE alone and the untrained
student scored against the teacher) and a diverged student in a cohort."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from digits_runs import tiny
from perceptcoh.engine import CHECKPOINT_NAME, load_checkpoint, prepare, run, run_cohort
from perceptcoh.engine.curves import CURVE_FIELDS, curve_point, effective_rank
from perceptcoh.engine.data import load_dataset
from perceptcoh.engine.data.split import validation_split
from perceptcoh.engine.loop import DivergenceWarning, training_batch, teacher_forward
from perceptcoh.engine.loop import _generator


def _pure(teacher, root, name, **fields):
    return tiny(method="pc", protocol="pure", gradient_ratio=1.0, teacher_checkpoint=str(
        teacher[0]), data_seed=0, output_dir=str(root / name), **fields)


def test_effective_rank_is_the_participation_ratio_of_the_covariance_eigenvalues():
    torch.manual_seed(0)
    features = torch.randn(50, 6, dtype=torch.float64) * torch.tensor([5.0, 3, 1, 1, 0.1, 0])
    eigenvalues = torch.linalg.eigvalsh(torch.cov(features.T))
    expected = eigenvalues.sum() ** 2 / eigenvalues.square().sum()
    assert float(effective_rank(features)) == pytest.approx(float(expected), rel=1e-5)
    one_direction = torch.randn(20, 1) * torch.ones(1, 4)
    assert float(effective_rank(one_direction)) == pytest.approx(1.0, rel=1e-5)


def test_curve_point_equals_gradients_taken_one_by_one(teacher, tmp_path):
    session = prepare(_pure(teacher, tmp_path, "pc"))
    indices = torch.arange(64)
    inputs, labels = training_batch(session, indices, _generator(session.device, 0, 0, 1))
    teacher_features, teacher_logits = teacher_forward(session, session.teacher, inputs)
    objective = session.objective
    loss, _, parts = objective(inputs, labels, teacher_features, teacher_logits, measure=True)
    point = dict(zip(CURVE_FIELDS, curve_point(objective, loss, *parts).tolist()))

    parameters = [p for p in session.student.parameters() if p.requires_grad]

    def norm(value):
        gradients = torch.autograd.grad(value, parameters, allow_unused=True)
        return math.sqrt(sum(float(g.square().sum()) for g in gradients if g is not None))

    features, logits = session.student(inputs)
    cross_entropy = F.cross_entropy(logits, labels)
    term = session.transfer_loss(features, teacher_features)
    ce_norm = norm(cross_entropy)
    features, logits = session.student(inputs)
    ratio = norm(session.beta * session.transfer_loss(features, teacher_features)) / ce_norm
    assert point["gradient_ratio"] == pytest.approx(ratio, rel=1e-5)
    assert point["transfer_loss"] == pytest.approx(float(term.detach()), rel=1e-6)
    assert point["loss"] == pytest.approx(session.beta * float(term.detach()), rel=1e-6)
    assert point["cross_entropy"] == pytest.approx(float(cross_entropy.detach()), rel=1e-6)
    assert point["feature_norm"] == pytest.approx(float(features.norm(dim=1).mean()), rel=1e-6)
    assert point["effective_rank"] == pytest.approx(float(effective_rank(features)), rel=1e-5)


def test_curves_are_recorded_and_change_no_weight(teacher, tmp_path):
    """Bit for bit on a CPU: the measurement reads the step's graph and leaves .grad alone."""
    recorded = run(_pure(teacher, tmp_path, "curves", curve_every=3))
    plain = run(_pure(teacher, tmp_path, "plain"))
    steps = recorded["steps_per_epoch"] * recorded["epochs_completed"]
    curve = [point for record in recorded["history"] for point in record["curve"]]
    assert [point["step"] for point in curve] == list(range(0, steps, 3))
    assert all(set(point) == {"step", *CURVE_FIELDS} for point in curve)
    assert all(math.isfinite(point[name]) for point in curve for name in CURVE_FIELDS)
    assert "curve" not in plain["history"][0]
    assert recorded["metrics"] == plain["metrics"]
    states = [load_checkpoint(tmp_path / name / CHECKPOINT_NAME)["model_state"]
              for name in ("curves", "plain")]
    for key, value in states[1].items():
        assert torch.equal(states[0][key], value), key


def test_a_ce_student_has_a_curve_without_transfer_terms(tmp_path):
    results = run(tiny(curve_every=2, output_dir=str(tmp_path / "ce")))
    point = results["history"][0]["curve"][0]
    assert point["transfer_loss"] is None and point["gradient_ratio"] is None
    assert point["loss"] == point["cross_entropy"]


def test_a_validation_split_is_held_out_and_scored_apart(teacher, tmp_path):
    config = tiny(validation_split=50, output_dir=str(tmp_path / "val"))
    session = prepare(config)
    full = load_dataset("digits", "train")
    kept, held_out = validation_split(full.labels, 50, 10)
    assert torch.equal(session.validation_set.images, full.images[held_out])
    assert torch.bincount(session.validation_set.labels, minlength=10).tolist() == [5] * 10
    # The training images (a subset drawn from what the split leaves) are never held out.
    rows = {tuple(image.flatten().tolist()) for image in full.images[kept]}
    assert all(tuple(image.flatten().tolist()) in rows for image in session.train_set.images)
    results = run(config)
    assert results["validation_images"] == 50
    assert {"val_top1", "val_linear_probe_top1", "val_knn_top1"} <= set(results["metrics"])
    assert {"top1", "linear_probe_top1", "knn_top1"} <= set(results["metrics"])
    assert "val_linear_probe_top1" not in run(tiny(output_dir=str(tmp_path / "none")))["metrics"]


def test_controls_are_scored_against_the_teacher_of_their_pass(teacher, tmp_path):
    results = run_cohort([
        _pure(teacher, tmp_path, "pc"),
        tiny(data_seed=0, output_dir=str(tmp_path / "ce")),
        tiny(data_seed=0, epochs=0, seed=7, output_dir=str(tmp_path / "untrained")),
    ])
    for result in results:
        assert "perception_gap_r1" in result["metrics"]
    untrained = results[2]
    assert untrained["epochs_completed"] == 0 and untrained["history"] == []
    initial = prepare(tiny(seed=7, output_dir=str(tmp_path / "initial"))).student.state_dict()
    saved = load_checkpoint(tmp_path / "untrained" / "model.pt")["model_state"]
    for key, value in initial.items():
        assert torch.equal(saved[key], value), key


def test_a_diverged_student_is_dropped_and_announced_with_keep_going(teacher, tmp_path):
    configs = [_pure(teacher, tmp_path, "fine"), tiny(lr=1e12, data_seed=0,
                                                      output_dir=str(tmp_path / "wild"))]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fine, wild = run_cohort(configs, keep_going=True)
    assert any(issubclass(w.category, DivergenceWarning) and "wild" in str(w.message)
               for w in caught)
    assert wild["diverged"]["epoch"] == 1 and wild["metrics"] == {}
    assert fine["diverged"] is None and fine["epochs_completed"] == 2
    assert (tmp_path / "wild" / "results.json").is_file()
