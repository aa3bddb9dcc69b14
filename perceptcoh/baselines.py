"""Baseline transfer losses the experiments compare against (book: book/theory/05_synthetic).

Every loss is an ``nn.Module`` with ``forward(student_features, teacher_features)`` returning
a 0-dim tensor, so a trainer can swap one for another (see :mod:`perceptcoh.registry`);
:class:`LogitKD` takes logits instead of features. Each is written from its paper:

* :class:`FitNet` (Romero et al., 2015): regress the teacher's features from the student's.
* :class:`SimilarityPreserving` (Tung & Mori, 2019): match row-normalised Gram matrices.
* :class:`CorrelationCongruence` (Peng et al., 2019): match RBF-kernel correlation matrices.
* :class:`RelationalKD` (Park et al., 2019): match pairwise distances and triplet angles.
* :class:`PKT` (Passalis & Tefas, 2018): match cosine-kernel conditional probabilities.
* :class:`LogitKD` (Hinton et al., 2015): match temperature-softened class probabilities.

Shared conventions, as in :class:`perceptcoh.PerceptionCoherenceLoss`: student features
are ``(B, q)`` and teacher features ``(B, p)`` floating tensors, ``q`` and ``p`` may differ;
the teacher is detached, so gradients reach the student features and the loss's own
learnable parts only; the loss is computed in float32 (float64 if an input is float64) with
autocast disabled, so bf16/fp16 features under autocast are safe. ``check_finite=False``
skips the NaN/Inf check (one host synchronisation per call on a GPU).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ._validation import (
    check_chunk_size,
    check_features,
    check_positive,
    check_same_batch,
)
from .dissimilarity import pairwise
from .ranking import row_chunks

__all__ = [
    "FitNet",
    "SimilarityPreserving",
    "CorrelationCongruence",
    "RelationalKD",
    "PKT",
    "LogitKD",
]

# Relations (Gram matrices, distances, conditional probabilities) need a second sample.
_RELATION_MIN_SAMPLES = 2


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
        self.student_dim = _check_positive_integer(student_dim, "student_dim")
        self.teacher_dim = _check_positive_integer(teacher_dim, "teacher_dim")
        self.check_finite = bool(check_finite)
        self.regressor = nn.Linear(self.student_dim, self.teacher_dim)

    def extra_repr(self) -> str:
        return f"student_dim={self.student_dim}, teacher_dim={self.teacher_dim}"

    def forward(
        self, student_features: torch.Tensor, teacher_features: torch.Tensor
    ) -> torch.Tensor:
        _check_pair(student_features, teacher_features, 1, self.check_finite)
        _check_width(student_features, "student_features", self.student_dim, "student_dim")
        _check_width(teacher_features, "teacher_features", self.teacher_dim, "teacher_dim")
        with torch.autocast(device_type=student_features.device.type, enabled=False):
            student, teacher = _full_precision(student_features, teacher_features)
            prediction = _linear(self.regressor, student)
            return (prediction - teacher).square().mean()


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
        _check_pair(student_features, teacher_features, _RELATION_MIN_SAMPLES, self.check_finite)
        with torch.autocast(device_type=student_features.device.type, enabled=False):
            student, teacher = _full_precision(student_features, teacher_features)
            student_gram = F.normalize(student @ student.T, dim=1)
            teacher_gram = F.normalize(teacher @ teacher.T, dim=1)
            return (student_gram - teacher_gram).square().sum() / student.shape[0] ** 2


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
        self.student_dim = _check_positive_integer(student_dim, "student_dim")
        self.teacher_dim = _check_positive_integer(teacher_dim, "teacher_dim")
        self.gamma = check_positive(gamma, "gamma")
        self.order = _check_positive_integer(order, "order")
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
        _check_pair(student_features, teacher_features, _RELATION_MIN_SAMPLES, self.check_finite)
        _check_width(student_features, "student_features", self.student_dim, "student_dim")
        _check_width(teacher_features, "teacher_features", self.teacher_dim, "teacher_dim")
        with torch.autocast(device_type=student_features.device.type, enabled=False):
            student, teacher = _full_precision(student_features, teacher_features)
            student_unit = F.normalize(_linear(self.projection, student), dim=1)
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
        _check_pair(student_features, teacher_features, _RELATION_MIN_SAMPLES, self.check_finite)
        with torch.autocast(device_type=student_features.device.type, enabled=False):
            student, teacher = _full_precision(student_features, teacher_features)
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
        _check_pair(student_features, teacher_features, _RELATION_MIN_SAMPLES, self.check_finite)
        with torch.autocast(device_type=student_features.device.type, enabled=False):
            student, teacher = _full_precision(student_features, teacher_features)
            n = student.shape[0]
            diagonal = torch.eye(n, dtype=torch.bool, device=student.device)
            student_probability = _neighbour_probabilities(student, diagonal)
            teacher_probability = _neighbour_probabilities(teacher, diagonal)
            log_ratio = torch.log(teacher_probability + self.eps) - torch.log(
                student_probability + self.eps
            )
            # The diagonal holds p = 0 on both sides, so it adds exactly 0.
            return (teacher_probability * log_ratio).sum() / n


class LogitKD(nn.Module):
    """Match the student's temperature-softened class probabilities to the teacher's.

    Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015. With
    temperature ``T``, ``p^t_i = softmax(z^t_i / T)`` and ``p^s_i = softmax(z^s_i / T)``::

        L = T^2 / B * sum_i KL(p^t_i || p^s_i) = T^2 / B * sum_i sum_c p^t_ic log(p^t_ic / p^s_ic)

    The ``T^2`` keeps the gradient's scale comparable across temperatures, as in the paper.
    Nothing is learnable.

    Args:
        temperature: ``T > 0``.
        check_finite: check the inputs for NaN/Inf.

    ``forward(student_logits, teacher_logits)`` takes two ``(B, C)`` floating tensors,
    ``B >= 1``, and returns a 0-dim tensor whose gradient flows to ``student_logits`` only.
    """

    def __init__(self, temperature: float = 4.0, check_finite: bool = True) -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.check_finite = bool(check_finite)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        check_features(
            student_logits, "student_logits", min_samples=1, check_finite=self.check_finite
        )
        check_features(
            teacher_logits, "teacher_logits", min_samples=1, check_finite=self.check_finite
        )
        check_same_batch(student_logits, "student_logits", teacher_logits, "teacher_logits")
        if student_logits.shape[1] != teacher_logits.shape[1]:
            raise ValueError(
                "student_logits and teacher_logits must have the same number of classes, "
                f"got {student_logits.shape[1]} and {teacher_logits.shape[1]}"
            )
        with torch.autocast(device_type=student_logits.device.type, enabled=False):
            student, teacher = _full_precision(student_logits, teacher_logits)
            student_log_probability = F.log_softmax(student / self.temperature, dim=1)
            teacher_log_probability = F.log_softmax(teacher / self.temperature, dim=1)
            divergence = F.kl_div(
                student_log_probability,
                teacher_log_probability,
                reduction="batchmean",
                log_target=True,
            )
            return self.temperature**2 * divergence


def _check_pair(
    student_features: torch.Tensor,
    teacher_features: torch.Tensor,
    min_samples: int,
    check_finite: bool,
) -> None:
    check_features(
        student_features, "student_features", min_samples=min_samples, check_finite=check_finite
    )
    check_features(
        teacher_features, "teacher_features", min_samples=min_samples, check_finite=check_finite
    )
    check_same_batch(student_features, "student_features", teacher_features, "teacher_features")


def _check_width(features: torch.Tensor, name: str, expected: int, dim_name: str) -> None:
    if features.shape[1] != expected:
        raise ValueError(
            f"{name} must have {dim_name}={expected} features (columns), got {features.shape[1]}"
        )


def _check_positive_integer(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return value


def _full_precision(
    student: torch.Tensor, teacher: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sides in float64 if either is float64, float32 otherwise; the teacher detached."""
    wide = torch.float64 if torch.float64 in (student.dtype, teacher.dtype) else torch.float32
    return student.to(wide), teacher.detach().to(wide)


def _linear(layer: nn.Linear, features: torch.Tensor) -> torch.Tensor:
    # The parameters follow the features' precision; the cast is differentiable, so the
    # gradient still reaches them in their own dtype.
    bias = None if layer.bias is None else layer.bias.to(features.dtype)
    return F.linear(features, layer.weight.to(features.dtype), bias)


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


def _neighbour_probabilities(features: torch.Tensor, diagonal: torch.Tensor) -> torch.Tensor:
    """``p_{j|i}`` of the cosine kernel with ``p_{i|i} = 0``; a row of zero kernel stays 0."""
    unit = F.normalize(features, dim=1)
    kernel = ((unit @ unit.T + 1) / 2).masked_fill(diagonal, 0)
    total = kernel.sum(dim=1, keepdim=True)
    return kernel / total.clamp_min(torch.finfo(kernel.dtype).tiny)
