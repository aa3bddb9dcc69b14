"""FitNet (Romero et al., 2015): regress the teacher's features from the student's."""

from __future__ import annotations

import torch
from torch import nn

from .common import check_pair, check_positive_integer, check_width, full_precision, linear

__all__ = ["FitNet"]


class FitNet(nn.Module):
    """Regress the teacher's features from the student's through a learned linear map.

    Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015. The paper's regressor is
    a convolution from the student's guided layer to the teacher's hint layer; on feature
    vectors it is a linear map ``r(s) = W s + b``::

        L = 1/(B p) * sum_i ||W s_i + b - t_i||^2

    i.e. the mean squared error over all ``B * p`` elements.

    Args:
        student_dim: ``q``, the number of student features.
        teacher_dim: ``p``, the number of teacher features.
        check_finite: check the inputs for NaN/Inf.

    Learnable: ``regressor``, an ``nn.Linear(student_dim, teacher_dim)`` (``W`` and ``b``).

    ``forward(student_features, teacher_features)`` takes ``(B, q)`` and ``(B, p)`` floating
    tensors, ``B >= 1``, and returns a 0-dim tensor.
    """

    def __init__(self, student_dim: int, teacher_dim: int, check_finite: bool = True) -> None:
        super().__init__()
        self.student_dim = check_positive_integer(student_dim, "student_dim")
        self.teacher_dim = check_positive_integer(teacher_dim, "teacher_dim")
        self.check_finite = bool(check_finite)
        self.regressor = nn.Linear(self.student_dim, self.teacher_dim)

    def extra_repr(self) -> str:
        return f"student_dim={self.student_dim}, teacher_dim={self.teacher_dim}"

    def forward(
        self, student_features: torch.Tensor, teacher_features: torch.Tensor
    ) -> torch.Tensor:
        check_pair(student_features, teacher_features, 1, self.check_finite)
        check_width(student_features, "student_features", self.student_dim, "student_dim")
        check_width(teacher_features, "teacher_features", self.teacher_dim, "teacher_dim")
        with torch.autocast(device_type=student_features.device.type, enabled=False):
            student, teacher = full_precision(student_features, teacher_features)
            prediction = linear(self.regressor, student)
            return (prediction - teacher).square().mean()
