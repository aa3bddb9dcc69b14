"""What the baseline losses share: the checks of their inputs, and the casts that compute
every loss in float32 (float64 if an input is float64) whatever the autocast dtype."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_features, check_same_batch

__all__ = ["RELATION_MIN_SAMPLES", "check_pair", "check_width", "check_positive_integer",
           "full_precision", "linear"]

# Relations (Gram matrices, distances, conditional probabilities) need a second sample.
RELATION_MIN_SAMPLES = 2


def check_pair(
    student_features: torch.Tensor,
    teacher_features: torch.Tensor,
    min_samples: int,
    check_finite: bool,
) -> None:
    """Both sides: 2-D floating tensors of at least ``min_samples`` rows (finite, with
    ``check_finite``), the same number of rows."""
    check_features(
        student_features, "student_features", min_samples=min_samples, check_finite=check_finite
    )
    check_features(
        teacher_features, "teacher_features", min_samples=min_samples, check_finite=check_finite
    )
    check_same_batch(student_features, "student_features", teacher_features, "teacher_features")


def check_width(features: torch.Tensor, name: str, expected: int, dim_name: str) -> None:
    """``features`` has ``expected`` columns, the ``dim_name`` the loss was built with."""
    if features.shape[1] != expected:
        raise ValueError(
            f"{name} must have {dim_name}={expected} features (columns), got {features.shape[1]}"
        )


def check_positive_integer(value: object, name: str) -> int:
    """``value``, an ``int`` (not a ``bool``) ``>= 1``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return value


def full_precision(
    student: torch.Tensor, teacher: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sides in float64 if either is float64, float32 otherwise; the teacher detached."""
    wide = torch.float64 if torch.float64 in (student.dtype, teacher.dtype) else torch.float32
    return student.to(wide), teacher.detach().to(wide)


def linear(layer: nn.Linear, features: torch.Tensor) -> torch.Tensor:
    """``layer(features)`` in the features' dtype, whatever the layer's."""
    # The parameters follow the features' precision; the cast is differentiable, so the
    # gradient still reaches them in their own dtype.
    bias = None if layer.bias is None else layer.bias.to(features.dtype)
    return F.linear(features, layer.weight.to(features.dtype), bias)
