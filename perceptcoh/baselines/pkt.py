"""Probabilistic knowledge transfer (Passalis & Tefas, 2018): match cosine-kernel
conditional probabilities."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_positive
from .common import RELATION_MIN_SAMPLES, check_pair, full_precision

__all__ = ["PKT"]


class PKT(nn.Module):
    """Make the student's cosine-kernel neighbour probabilities match the teacher's.

    Passalis & Tefas, "Learning Deep Representations with Probabilistic Knowledge Transfer",
    ECCV 2018. Each side is L2-normalised per sample and turned into conditional
    probabilities with the cosine kernel, the anchor itself left out::

        K_ij    = (cos(x_i, x_j) + 1) / 2                    in [0, 1]
        p_{j|i} = K_ij / sum_{k != i} K_ik                   for j != i
        L       = 1/B * sum_i sum_{j != i} p^t_{j|i} log((p^t_{j|i} + eps) / (p^s_{j|i} + eps))

    i.e. the mean over anchors of ``KL(teacher || student)`` between the neighbour
    distributions; ``eps`` keeps the log finite when a probability is 0. (The reference
    implementation keeps the diagonal and averages over all ``B^2`` entries; here the anchor
    is excluded, as the paper's definition of ``p_{j|i}`` does.) Nothing is learnable; ``q``
    and ``p`` may differ.

    Args:
        eps: added inside the log, ``> 0``.
        check_finite: check the inputs for NaN/Inf.

    ``forward(student_features, teacher_features)`` takes ``(B, q)`` and ``(B, p)`` floating
    tensors, ``B >= 2``, and returns a 0-dim tensor.
    """

    def __init__(self, eps: float = 1e-7, check_finite: bool = True) -> None:
        super().__init__()
        self.eps = check_positive(eps, "eps")
        self.check_finite = bool(check_finite)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"

    def forward(
        self, student_features: torch.Tensor, teacher_features: torch.Tensor
    ) -> torch.Tensor:
        check_pair(student_features, teacher_features, RELATION_MIN_SAMPLES, self.check_finite)
        with torch.autocast(device_type=student_features.device.type, enabled=False):
            student, teacher = full_precision(student_features, teacher_features)
            n = student.shape[0]
            diagonal = torch.eye(n, dtype=torch.bool, device=student.device)
            student_probability = _neighbour_probabilities(student, diagonal)
            teacher_probability = _neighbour_probabilities(teacher, diagonal)
            log_ratio = torch.log(teacher_probability + self.eps) - torch.log(
                student_probability + self.eps
            )
            # The diagonal holds p = 0 on both sides, so it adds exactly 0.
            return (teacher_probability * log_ratio).sum() / n


def _neighbour_probabilities(features: torch.Tensor, diagonal: torch.Tensor) -> torch.Tensor:
    """``p_{j|i}`` of the cosine kernel with ``p_{i|i} = 0``; a row of zero kernel stays 0."""
    unit = F.normalize(features, dim=1)
    kernel = ((unit @ unit.T + 1) / 2).masked_fill(diagonal, 0)
    total = kernel.sum(dim=1, keepdim=True)
    return kernel / total.clamp_min(torch.finfo(kernel.dtype).tiny)
