"""Similarity-preserving distillation (Tung & Mori, 2019): match row-normalised Gram
matrices."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import RELATION_MIN_SAMPLES, check_pair, full_precision

__all__ = ["SimilarityPreserving"]


class SimilarityPreserving(nn.Module):
    """Make the student's pairwise similarities within a batch match the teacher's.

    Tung & Mori, "Similarity-Preserving Knowledge Distillation", ICCV 2019. With student
    features ``S`` (``B x q``) and teacher features ``T`` (``B x p``)::

        G_s = rownorm(S S^T),   G_t = rownorm(T T^T),   rownorm(G)_i = G_i / ||G_i||_2
        L   = 1/B^2 * ||G_s - G_t||_F^2

    (a row of zeros stays zero). Nothing is learnable; ``q`` and ``p`` may differ.

    Args:
        check_finite: check the inputs for NaN/Inf.

    ``forward(student_features, teacher_features)`` takes ``(B, q)`` and ``(B, p)`` floating
    tensors, ``B >= 2``, and returns a 0-dim tensor.
    """

    def __init__(self, check_finite: bool = True) -> None:
        super().__init__()
        self.check_finite = bool(check_finite)

    def forward(
        self, student_features: torch.Tensor, teacher_features: torch.Tensor
    ) -> torch.Tensor:
        check_pair(student_features, teacher_features, RELATION_MIN_SAMPLES, self.check_finite)
        with torch.autocast(device_type=student_features.device.type, enabled=False):
            student, teacher = full_precision(student_features, teacher_features)
            student_gram = F.normalize(student @ student.T, dim=1)
            teacher_gram = F.normalize(teacher @ teacher.T, dim=1)
            return (student_gram - teacher_gram).square().sum() / student.shape[0] ** 2
