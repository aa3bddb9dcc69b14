"""Bad input raises ValueError/TypeError naming the argument, never a NaN or a wrong answer."""

from __future__ import annotations

import pytest
import torch

from perceptcoh import PerceptionCoherenceLoss, dissimilarity, perception, perception_gap

GOOD = torch.randn(6, 3)


def with_value(value: float) -> torch.Tensor:
    features = GOOD.clone()
    features[2, 1] = value
    return features


BAD_FEATURES = [
    pytest.param(with_value(float("nan")), ValueError, "NaN or infinite", id="nan"),
    pytest.param(with_value(float("inf")), ValueError, "NaN or infinite", id="inf"),
    pytest.param(torch.randn(2, 3), ValueError, "at least 3 samples", id="two-samples"),
    pytest.param(torch.randn(6), ValueError, "2-D tensor", id="1-d"),
    pytest.param(torch.randn(6, 3, 1), ValueError, "2-D tensor", id="3-d"),
    pytest.param(torch.randint(0, 5, (6, 3)), TypeError, "floating dtype", id="integer"),
    pytest.param(GOOD.numpy(), TypeError, "torch.Tensor", id="numpy"),
]


@pytest.mark.parametrize("features, error, message", BAD_FEATURES)
def test_perception_rejects_bad_features(features, error, message):
    with pytest.raises(error, match=f"features.*{message}|{message}.*features"):
        perception(features)


@pytest.mark.parametrize("features, error, message", BAD_FEATURES)
def test_perception_gap_rejects_bad_features(features, error, message):
    with pytest.raises(error, match=f"student_features.*{message}"):
        perception_gap(features, GOOD)
    with pytest.raises(error, match=f"teacher_features.*{message}"):
        perception_gap(GOOD, features)


@pytest.mark.parametrize("features, error, message", BAD_FEATURES)
def test_loss_rejects_bad_features(features, error, message):
    loss = PerceptionCoherenceLoss()
    with pytest.raises(error, match=f"student_features.*{message}"):
        loss(features, GOOD)
    with pytest.raises(error, match=f"teacher_features.*{message}"):
        loss(GOOD, features)


def test_mismatched_batch_sizes():
    with pytest.raises(ValueError, match="same number of samples, got 6 and 7"):
        PerceptionCoherenceLoss()(GOOD, torch.randn(7, 3))
    with pytest.raises(ValueError, match="teacher_features and student_features"):
        perception_gap(torch.randn(7, 3), GOOD)


@pytest.mark.parametrize("tau", [0, -1.0, float("nan"), float("inf")])
def test_tau_must_be_positive_and_finite(tau):
    with pytest.raises(ValueError, match="tau must be finite and > 0"):
        PerceptionCoherenceLoss(tau=tau)


def test_tau_must_be_a_number():
    with pytest.raises(TypeError, match="tau must be a real number"):
        PerceptionCoherenceLoss(tau="0.1")


def test_teacher_tau_may_be_zero_but_not_negative():
    PerceptionCoherenceLoss(teacher_tau=0.0)
    with pytest.raises(ValueError, match="teacher_tau must be finite and >= 0"):
        PerceptionCoherenceLoss(teacher_tau=-0.1)


@pytest.mark.parametrize("r", [0, 3, 1.5, True, "2"])
def test_r_must_be_one_or_two(r):
    with pytest.raises(ValueError, match="r must be 1 or 2"):
        PerceptionCoherenceLoss(r=r)
    with pytest.raises(ValueError, match="r must be 1 or 2"):
        perception_gap(GOOD, GOOD, r=r)


@pytest.mark.parametrize("metric", ["manhattan", "Euclidean", ""])
def test_unknown_metric(metric):
    with pytest.raises(ValueError, match="metric_student must be one of"):
        PerceptionCoherenceLoss(metric_student=metric)
    with pytest.raises(ValueError, match="metric_teacher must be one of"):
        PerceptionCoherenceLoss(metric_teacher=metric)
    with pytest.raises(ValueError, match="metric must be one of"):
        perception(GOOD, metric=metric)
    with pytest.raises(ValueError, match="metric must be one of"):
        dissimilarity(GOOD, metric=metric)


def test_metric_of_wrong_type():
    with pytest.raises(TypeError, match="metric must be one of"):
        perception(GOOD, metric=2)


def test_callable_metric_must_return_the_right_shape_and_non_negative_values():
    with pytest.raises(ValueError, match=r"metric must return a tensor of shape \(6, 6\)"):
        perception(GOOD, metric=lambda a, b: torch.zeros(3, 3))
    with pytest.raises(ValueError, match="negative or NaN dissimilarities"):
        perception(GOOD, metric=lambda a, b: -torch.cdist(a, b))
    with pytest.raises(ValueError, match="negative or NaN dissimilarities"):
        dissimilarity(GOOD, metric=lambda a, b: torch.full((6, 6), float("nan")))


def test_dissimilarity_shape_mismatch():
    with pytest.raises(ValueError, match="same number of features, got 3 and 4"):
        dissimilarity(GOOD, torch.randn(5, 4))
    with pytest.raises(ValueError, match="y contains NaN"):
        dissimilarity(GOOD, torch.full((5, 3), float("nan")))


@pytest.mark.parametrize("chunk_size", [0, -3, 2.5, True])
def test_chunk_size(chunk_size):
    with pytest.raises(ValueError, match="chunk_size must be None or a positive integer"):
        PerceptionCoherenceLoss(chunk_size=chunk_size)
    with pytest.raises(ValueError, match="chunk_size must be None or a positive integer"):
        perception(GOOD, chunk_size=chunk_size)


def test_finite_check_can_be_turned_off_for_training_loops():
    loss = PerceptionCoherenceLoss(check_finite=False)
    assert torch.isnan(loss(with_value(float("nan")), GOOD))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_teacher_never_gives_a_finite_loss(bad):
    loss = PerceptionCoherenceLoss(check_finite=False)
    assert torch.isnan(loss(GOOD, with_value(bad)))
    assert torch.isnan(PerceptionCoherenceLoss(check_finite=False, teacher_tau=0.1)(GOOD, with_value(bad)))


def test_process_group_must_be_a_process_group():
    with pytest.raises(TypeError, match="process_group must be None or a torch.distributed.ProcessGroup, got bool"):
        PerceptionCoherenceLoss(process_group=True)
