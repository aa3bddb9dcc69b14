"""Correlation congruence (Peng et al., 2019): match RBF-kernel correlation matrices."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_positive
from .common import (
    RELATION_MIN_SAMPLES,
    check_pair,
    check_positive_integer,
    check_width,
    full_precision,
    linear,
)

__all__ = ["CorrelationCongruence"]


class CorrelationCongruence(nn.Module):
    """Make the student's kernel correlations within a batch match the teacher's.

    Peng et al., "Correlation Congruence for Knowledge Distillation", ICCV 2019. The student
    features go through a learned linear projection to the teacher's dimension, both sides
    are L2-normalised per sample (``u_i = P(s_i) / ||P(s_i)||``, ``v_i = t_i / ||t_i||``), and
    the correlation of two unit vectors is the Gaussian RBF kernel approximated by its Taylor
    expansion to ``order``::

        exp(-gamma ||x - y||^2) = exp(-2 gamma) exp(2 gamma <x, y>)
                                ~ exp(-2 gamma) * sum_{n=0}^{order} (2 gamma <x, y>)^n / n!
        C^s_ij = k(u_i, u_j),   C^t_ij = k(v_i, v_j)
        L      = 1/B^2 * ||C^s - C^t||_F^2

    Only the student has a projection: a learnable projection on the teacher side would let
    the optimiser send both sides to a constant embedding, where the loss is 0 and nothing
    is transferred.

    Args:
        student_dim: ``q``, the number of student features.
        teacher_dim: ``p``, the number of teacher features.
        gamma: kernel width, ``> 0``.
        order: order of the Taylor expansion, a positive integer.
        check_finite: check the inputs for NaN/Inf.

    Learnable: ``projection``, an ``nn.Linear(student_dim, teacher_dim)``.

    ``forward(student_features, teacher_features)`` takes ``(B, q)`` and ``(B, p)`` floating
    tensors, ``B >= 2``, and returns a 0-dim tensor.
    """

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        gamma: float = 0.4,
        order: int = 2,
        check_finite: bool = True,
    ) -> None:
        super().__init__()
        self.student_dim = check_positive_integer(student_dim, "student_dim")
        self.teacher_dim = check_positive_integer(teacher_dim, "teacher_dim")
        self.gamma = check_positive(gamma, "gamma")
        self.order = check_positive_integer(order, "order")
        self.check_finite = bool(check_finite)
        self.projection = nn.Linear(self.student_dim, self.teacher_dim)

    def extra_repr(self) -> str:
        return (
            f"student_dim={self.student_dim}, teacher_dim={self.teacher_dim}, "
            f"gamma={self.gamma}, order={self.order}"
        )

    def forward(
        self, student_features: torch.Tensor, teacher_features: torch.Tensor
    ) -> torch.Tensor:
        check_pair(student_features, teacher_features, RELATION_MIN_SAMPLES, self.check_finite)
        check_width(student_features, "student_features", self.student_dim, "student_dim")
        check_width(teacher_features, "teacher_features", self.teacher_dim, "teacher_dim")
        with torch.autocast(device_type=student_features.device.type, enabled=False):
            student, teacher = full_precision(student_features, teacher_features)
            student_unit = F.normalize(linear(self.projection, student), dim=1)
            teacher_unit = F.normalize(teacher, dim=1)
            difference = self._correlation(student_unit) - self._correlation(teacher_unit)
            return difference.square().sum() / student.shape[0] ** 2

    def _correlation(self, unit: torch.Tensor) -> torch.Tensor:
        scaled_cosine = (2 * self.gamma) * (unit @ unit.T)
        term = torch.ones_like(scaled_cosine)
        total = term
        for power in range(1, self.order + 1):
            term = term * scaled_cosine / power
            total = total + term
        return math.exp(-2 * self.gamma) * total
