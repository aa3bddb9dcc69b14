"""Relational knowledge distillation (Park et al., 2019): match pairwise distances and
triplet angles."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .._validation import check_chunk_size, check_positive
from ..dissimilarity import pairwise
from ..ranking import row_chunks
from .common import RELATION_MIN_SAMPLES, check_pair, full_precision

__all__ = ["RelationalKD"]


class RelationalKD(nn.Module):
    """Make the student's pairwise distances and triplet angles match the teacher's.

    Park et al., "Relational Knowledge Distillation", CVPR 2019. With Huber's function
    ``h(z) = z^2 / 2`` for ``|z| < 1`` and ``|z| - 1/2`` otherwise (smooth L1, beta = 1),
    applied to each side's features ``x`` (student) and ``y`` (teacher)::

        distance:  psi_D(x)_ij = ||x_i - x_j|| / mu(x),  mu(x) = mean_{i != j} ||x_i - x_j||
                   L_D = 1/(B(B-1)) * sum_{i != j} h(psi_D(x)_ij - psi_D(y)_ij)
        angle:     e_ji = (x_i - x_j) / ||x_i - x_j||   (the zero vector when i = j)
                   psi_A(x)_ijk = <e_ji, e_jk>          cosine of the angle at vertex x_j
                   L_A = 1/B^3 * sum_{i, j, k} h(psi_A(x)_ijk - psi_A(y)_ijk)
        L = distance_weight * L_D + angle_weight * L_A

    The distance mean is over the ``B(B-1)`` ordered pairs ``i != j``. The angle mean is over
    all ``B^3`` ordered triples ``(i, j, k)``, degenerate ones included: a triple with
    ``i = j`` or ``k = j`` has angle 0 on both sides and one with ``i = k != j`` has angle 1
    on both sides, so they add nothing to the sum but count in the ``B^3``. Both terms are
    invariant to rescaling either side's features. If all points of a side coincide its
    distances are all 0 (``mu`` is floored at the smallest positive float).

    The angle term reads each side through the Gram matrix ``G = x_c x_c^T`` of its centred
    features ``x_c = x - mean(x)`` (differences do not change; centring limits cancellation)::

        <x_i - x_j, x_k - x_j> = G_ik - G_ij - G_jk + G_jj,   ||x_i - x_j||^2 = G_ii + G_jj - 2 G_ij

    so after one ``(B, B)`` product per side its ``B^3`` cosines cost elementwise operations,
    not ``B^3 (p + q)`` multiply-adds. They are computed for a chunk of vertices ``j`` at a
    time, and each chunk is recomputed during the backward pass (activation checkpointing),
    so memory is ``O(chunk_size * B^2)`` rather than ``O(B^3)``.

    Args:
        distance_weight: weight of ``L_D``, ``>= 0`` (the paper's 25).
        angle_weight: weight of ``L_A``, ``>= 0`` (the paper's 50); 0 skips the ``O(B^3)``
            term. At least one weight must be ``> 0``.
        chunk_size: vertices per chunk of the angle term; ``None`` picks a chunk from a
            per-device element budget.
        check_finite: check the inputs for NaN/Inf.

    Nothing is learnable; ``q`` and ``p`` may differ.

    ``forward(student_features, teacher_features)`` takes ``(B, q)`` and ``(B, p)`` floating
    tensors, ``B >= 2``, and returns a 0-dim tensor.
    """

    def __init__(
        self,
        distance_weight: float = 25.0,
        angle_weight: float = 50.0,
        chunk_size: int | None = None,
        check_finite: bool = True,
    ) -> None:
        super().__init__()
        self.distance_weight = check_positive(distance_weight, "distance_weight", allow_zero=True)
        self.angle_weight = check_positive(angle_weight, "angle_weight", allow_zero=True)
        if self.distance_weight == 0 and self.angle_weight == 0:
            raise ValueError("distance_weight and angle_weight cannot both be 0")
        self.chunk_size = check_chunk_size(chunk_size)
        self.check_finite = bool(check_finite)

    def extra_repr(self) -> str:
        return (
            f"distance_weight={self.distance_weight}, angle_weight={self.angle_weight}, "
            f"chunk_size={self.chunk_size}"
        )

    def forward(
        self, student_features: torch.Tensor, teacher_features: torch.Tensor
    ) -> torch.Tensor:
        check_pair(student_features, teacher_features, RELATION_MIN_SAMPLES, self.check_finite)
        with torch.autocast(device_type=student_features.device.type, enabled=False):
            student, teacher = full_precision(student_features, teacher_features)
            loss = student.new_zeros(())
            if self.distance_weight > 0:
                loss = loss + self.distance_weight * self.distance_term(student, teacher)
            if self.angle_weight > 0:
                loss = loss + self.angle_weight * self.angle_term(student, teacher)
            return loss

    @staticmethod
    def distance_term(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """``L_D`` of two checked, full-precision feature tensors (teacher without gradient)."""
        n = student.shape[0]
        off_diagonal = 1 - torch.eye(n, dtype=student.dtype, device=student.device)
        student_distances = _normalised_distances(student, off_diagonal)
        with torch.no_grad():
            teacher_distances = _normalised_distances(teacher, off_diagonal)
        # Both diagonals are exactly 0 and add nothing: the sum is over the pairs i != j.
        huber = F.smooth_l1_loss(student_distances, teacher_distances, beta=1.0, reduction="sum")
        return huber / (n * (n - 1))

    def angle_term(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """``L_A`` of two checked, full-precision feature tensors, chunk by chunk of vertices."""
        n = student.shape[0]
        student_gram = _centred_gram(student)
        with torch.no_grad():
            teacher_gram = _centred_gram(teacher)
        recompute = torch.is_grad_enabled() and student.requires_grad
        total = student.new_zeros(())
        # About four (c, B, B) temporaries per chunk: the inner products and two scalings.
        for start, stop in row_chunks(n, 4 * n * n, self.chunk_size, student.device):
            if recompute:
                # Keeps only the chunk's inputs for the backward pass, not its (c, B, B) angles.
                total = total + checkpoint(
                    _angle_huber_sum, student_gram, teacher_gram, start, stop, use_reentrant=False
                )
            else:
                total = total + _angle_huber_sum(student_gram, teacher_gram, start, stop)
        return total / n**3


def _normalised_distances(features: torch.Tensor, off_diagonal: torch.Tensor) -> torch.Tensor:
    """``||x_i - x_j|| / mean_{i != j} ||x_i - x_j||`` as a matrix with a zero diagonal.

    ``off_diagonal`` is a float mask (1 off the diagonal); multiplying by it rather than
    indexing with a boolean mask keeps shapes static, so a GPU step does not wait for the
    host to learn how many elements were selected.
    """
    n = features.shape[0]
    distances = pairwise(features, features, "euclidean") * off_diagonal
    mean = distances.sum() / (n * (n - 1))
    return distances / mean.clamp_min(torch.finfo(distances.dtype).tiny)


def _centred_gram(features: torch.Tensor) -> torch.Tensor:
    """``G = x_c x_c^T`` with ``x_c = x - mean(x)``: every inner product of differences."""
    centred = features - features.mean(dim=0)
    return centred @ centred.T


def _angles(gram: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """``psi[c, i, k] = <e_ji, e_jk>`` for the vertices ``j = start + c`` from the Gram matrix,
    with ``e_jj = 0``: 0 whenever ``i = j`` or ``k = j``, and for a point equal to the vertex."""
    vertex_rows = gram[start:stop]  # G_ji = G_ij
    vertex_norms = gram.diagonal()[start:stop]  # G_jj
    inner = gram[None] - vertex_rows[:, :, None] - vertex_rows[:, None, :] + vertex_norms[:, None, None]
    squared = gram.diagonal()[None] + vertex_norms[:, None] - 2 * vertex_rows  # ||x_i - x_j||^2
    inverse = torch.where(squared > 0, squared.clamp_min(torch.finfo(gram.dtype).tiny).rsqrt(), 0.0)
    points = torch.arange(gram.shape[0], device=gram.device)
    is_vertex = points[None, :] == torch.arange(start, stop, device=gram.device)[:, None]
    inverse = inverse.masked_fill(is_vertex, 0)
    return inner * inverse[:, :, None] * inverse[:, None, :]


def _angle_huber_sum(
    student_gram: torch.Tensor, teacher_gram: torch.Tensor, start: int, stop: int
) -> torch.Tensor:
    """``sum_{j in [start, stop), i, k} h(psi_A(x)_ijk - psi_A(y)_ijk)``."""
    student_angles = _angles(student_gram, start, stop)
    with torch.no_grad():
        teacher_angles = _angles(teacher_gram, start, stop)
    return F.smooth_l1_loss(student_angles, teacher_angles, reduction="sum", beta=1.0)
