"""The perception-coherence loss (book: book/theory/04_loss)."""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from ._validation import (
    Metric,
    check_chunk_size,
    check_exponent,
    check_features,
    check_metric,
    check_positive,
    check_same_batch,
)
from .dissimilarity import pairwise
from .ranking import (
    comparison_tiles,
    exact_ranks,
    row_scale,
    row_scale_floor,
    soft_ranks,
    tile_sigmoids,
)

__all__ = ["PerceptionCoherenceLoss"]


class PerceptionCoherenceLoss(nn.Module):
    """Make the student rank dissimilarities the way the teacher does.

    On a batch of ``B`` samples, with teacher dissimilarities ``D^f`` (no gradient) and
    student dissimilarities ``D^g``::

        T_ij = R^f_ij                                   exact teacher ranks
        S_ij = 1/(B-1) * (1 + sum_{k != i, j} sigmoid((D^g_ij - D^g_ik) / (tau * s_i)))
        L    = 1/(B(B-1)) * sum_{i != j} |S_ij - T_ij|^r

    where ``s_i`` is the mean of row ``i`` of ``D^g`` off the diagonal, so that ``L`` is
    invariant to rescaling the student's features. As ``tau -> 0``, ``S -> R^g`` and
    ``L -> perception_gap(student, teacher, r=r)`` on the batch (for tie-free data).

    The gradient is the exact gradient of ``L``, the path through ``s_i`` included. Because
    ``L`` does not change when a row of ``D^g`` is rescaled, Euler's theorem gives
    ``sum_j D^g_ij dL/dD^g_ij = 0`` on every row, and ``sum_n f_n . dL/df_n = 0`` for the
    features: the gradient never moves the features radially. Holding ``s_i`` fixed (a
    detached scale) breaks this, and that gradient pulls the features inward until ReLU
    features die (book/theory/04_loss, "Why the scale must carry its gradient").

    Args:
        tau: temperature of the student's smoothed ranks, ``> 0``. Relative to ``s_i``:
            ``tau = 0.1`` smooths comparisons that differ by about a tenth of a typical
            dissimilarity.
        metric_teacher, metric_student: dissimilarities of each side (see
            :func:`perceptcoh.dissimilarity`).
        r: 2 (squared, default) or 1 (absolute) difference between ranks.
        teacher_tau: 0 for exact teacher ranks; ``> 0`` smooths the teacher's ranks the same
            way as the student's, with this temperature.
        chunk_size: anchors processed at once. The ``O(B^3)`` comparisons are made one chunk
            of anchors at a time, so memory is ``O(B^2 + chunk_size * B^2)``; ``None`` picks
            a chunk from a per-device element budget.
        check_finite: check that the features hold no NaN/Inf: a ``ValueError`` on a CPU, a
            device-side assertion on a GPU (no host synchronisation). Turned off, a NaN or
            infinity in either side's features makes the loss NaN; it never gives a finite
            loss silently (the teacher's ranks come from a sort, which would hide it, so its
            dissimilarities are added to the targets times 0).
        process_group: ``None`` (default) ranks each process's batch on its own, with no
            collective communication. A ``torch.distributed`` process group (for example
            ``torch.distributed.group.WORLD``) ranks each process's anchors against the
            batches of every process in it (features gathered, the gradient kept for the
            local part). The value returned is then the group's size times this process's
            share, so its mean over processes is the global-batch loss and DDP's gradient
            averaging yields that loss's exact gradient. Every process must hold the same
            number of samples.

    ``forward(student_features, teacher_features)`` takes ``(B, q)`` and ``(B, p)`` floating
    tensors (``q`` and ``p`` may differ, ``B >= 3``) and returns a 0-dim tensor whose
    gradient flows to ``student_features`` only. The loss is computed in float32 (float64
    for float64 inputs) with autocast disabled, so bf16/fp16 features under autocast are
    safe. The backward pass is computed during the forward pass, in the same sweep over
    the comparisons, and stored as a ``(B, B)`` matrix.
    """

    def __init__(
        self,
        tau: float = 0.1,
        metric_teacher: Metric = "euclidean",
        metric_student: Metric = "euclidean",
        r: int = 2,
        teacher_tau: float = 0.0,
        chunk_size: int | None = None,
        check_finite: bool = True,
        process_group: torch.distributed.ProcessGroup | None = None,
    ) -> None:
        super().__init__()
        self.tau = check_positive(tau, "tau")
        check_metric(metric_teacher, "metric_teacher")
        check_metric(metric_student, "metric_student")
        self.metric_teacher = metric_teacher
        self.metric_student = metric_student
        self.r = check_exponent(r)
        self.teacher_tau = check_positive(teacher_tau, "teacher_tau", allow_zero=True)
        self.chunk_size = check_chunk_size(chunk_size)
        self.check_finite = bool(check_finite)
        if process_group is not None and not (
            torch.distributed.is_available() and isinstance(process_group, torch.distributed.ProcessGroup)
        ):
            raise TypeError(f"process_group must be None or a torch.distributed.ProcessGroup, "
                            f"got {type(process_group).__name__}")
        self.process_group = process_group

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, metric_teacher={self.metric_teacher!r}, "
            f"metric_student={self.metric_student!r}, r={self.r}, teacher_tau={self.teacher_tau}"
        )

    def forward(
        self, student_features: torch.Tensor, teacher_features: torch.Tensor
    ) -> torch.Tensor:
        check_features(student_features, "student_features", check_finite=self.check_finite)
        check_features(teacher_features, "teacher_features", check_finite=self.check_finite)
        check_same_batch(student_features, "student_features", teacher_features, "teacher_features")
        device = student_features.device
        with torch.autocast(device_type=device.type, enabled=False):
            student = _full_precision(student_features)
            teacher = _full_precision(teacher_features.detach())
            group = self.process_group
            world_size = 1 if group is None else torch.distributed.get_world_size(group)
            if world_size > 1:
                anchors, student, teacher = _gather_global_batch(student, teacher, group)
            else:
                anchors = torch.arange(student.shape[0], device=device)
            batch = student.shape[0]
            with torch.no_grad():
                teacher_distances = pairwise(teacher[anchors], teacher, self.metric_teacher)
                if self.teacher_tau > 0:
                    target = soft_ranks(teacher_distances, anchors, self.teacher_tau, self.chunk_size)
                else:
                    target = exact_ranks(teacher_distances, anchors)
                # A sort turns NaN into ranks; this keeps a non-finite teacher from giving a
                # finite loss (on the device: no host synchronisation).
                target = target + 0 * teacher_distances.sum(dim=-1, keepdim=True)
            student_distances = pairwise(student[anchors], student, self.metric_student)
            # Each process sums its own anchors' rows; scaled by the world size, the mean
            # over processes is the global-batch loss and DDP's gradient averaging gives
            # its exact gradient.
            return world_size * _SoftRankGap.apply(
                student_distances,
                target.to(student_distances.dtype),
                anchors,
                self.tau,
                self.r,
                self.chunk_size,
                batch * (batch - 1),
            )


def _gather_global_batch(
    student: torch.Tensor, teacher: torch.Tensor, group: torch.distributed.ProcessGroup
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate the batches of every process in ``group``; only the student side keeps
    its gradient.

    The gather's backward sums, for this process's slice, the gradients that every
    process's rows send to it, so the local features receive their full gradient.
    Every process must hold the same number of samples (``drop_last=True``).
    """
    from torch.distributed.nn.functional import all_gather

    rank, local = torch.distributed.get_rank(group), student.shape[0]
    student_all = torch.cat(all_gather(student, group=group))
    teacher_parts = [torch.empty_like(teacher) for _ in range(torch.distributed.get_world_size(group))]
    torch.distributed.all_gather(teacher_parts, teacher.contiguous(), group=group)
    anchors = torch.arange(rank * local, (rank + 1) * local, device=student.device)
    return anchors, student_all, torch.cat(teacher_parts)


def _full_precision(features: torch.Tensor) -> torch.Tensor:
    return features if features.dtype == torch.float64 else features.float()


class _SoftRankGap(torch.autograd.Function):
    """``L = 1/normaliser * sum_a sum_{j != self_a} |S_aj - T_aj|^r`` and its gradient in one sweep.

    On one process ``normaliser = B(B-1)`` and the rows are the whole batch; under DDP the
    rows are the local anchors and ``normaliser`` is the global ``B(B-1)``.

    With ``x_a = w_a D_a`` (``w_a = 1 / (tau s_a)``, ``s_a`` the mean of row ``a`` off the
    anchor's column), ``P_ajk = sigmoid(x_aj - x_ak)``, ``P' = P (1 - P)`` and
    ``h_aj = dL/dS_aj / (m-1)``, for ``j, k != self_a``, the gradient at a fixed scale is::

        G_aj = w_a * ( h_aj * sum_{k != j, self} P'_ajk  -  sum_{i != j, self} h_ai P'_aij )

    (``D_aj`` enters ``S_aj`` with a plus sign and every other ``S_ai`` of its row with a minus
    sign). ``D_aj`` also moves ``s_a``, by ``1/(m-1)``, and ``L`` depends on the row only
    through ``D_a / s_a``, so ``dL/ds_a = -(sum_k G_ak D_ak) / s_a``. The exact gradient is::

        dL/dD_aj = G_aj - (sum_k G_ak D_ak) / ((m-1) s_a)

    an ``O(m^2)`` correction that removes the radial part of the row: ``sum_j D_aj dL/dD_aj = 0``
    (Euler's identity for a function invariant to scale). The anchor's own column gets no
    gradient: it is left out of every count and of ``s_a``. Where ``s_a`` sits at its floor
    (:func:`perceptcoh.ranking.row_scale`, a fully collapsed row) it is a constant, and the
    correction is 0.

    The sweep visits the comparisons in tiles of a few anchors, a block of columns ``j`` and
    every ``k`` (:func:`perceptcoh.ranking.comparison_tiles`), so memory stays at ``O(m^2)``
    plus one tile whatever ``m``. A tile holds whole rows ``j`` of ``P``, hence ``S_aj`` and
    ``h_aj`` for its columns. Because ``P'`` is symmetric (``P_akj = 1 - P_ajk``), both sums
    of the gradient are sums over the tile's rows ``j`` that it can add to at once, in one
    matrix product: ``sum_j h_aj P'_ajk`` and ``sum_j P'_ajk = sum_j P'_akj``. No ``P`` is
    kept from one tile to the next, and the gradient is formed, stored as an ``(n, m)``
    matrix, once a block of anchors is done.
    """

    @staticmethod
    def forward(ctx, distances, target, self_index, tau, r, chunk_size, normaliser):
        n, m = distances.shape
        needs_grad = ctx.needs_input_grad[0]
        rows = torch.arange(n, device=distances.device)
        columns = torch.arange(m, device=distances.device)
        scale = row_scale(distances, self_index)
        inverse_temperature = 1 / (tau * scale)
        scaled = distances * inverse_temperature[:, None]
        to_self = torch.sigmoid(scaled - scaled[rows, self_index][:, None])
        is_self = columns[None, :] == self_index[:, None]
        total = distances.new_zeros(())
        gradient = torch.empty_like(distances) if needs_grad else None
        slope = torch.empty_like(distances) if needs_grad else None
        workspace = sums = None
        for start, stop, low, high in comparison_tiles(n, m, chunk_size, distances.device):
            if workspace is None:  # the first tile is the largest
                workspace = distances.new_empty((stop - start) * (high - low) * m)
            if low == 0 and needs_grad:
                sums = distances.new_zeros(stop - start, 2, m)  # [sum_j h P', sum_j P']
            tile = tile_sigmoids(scaled[start:stop], low, high, workspace)
            counts = tile.sum(dim=-1) - 0.5 - to_self[start:stop, low:high]
            difference = (1 + counts) / (m - 1) - target[start:stop, low:high]
            difference.masked_fill_(is_self[start:stop, low:high], 0)
            total += difference.abs().pow(r).sum()
            if not needs_grad:
                continue
            block_slope = 2 * difference if r == 2 else difference.sign()
            block_slope /= normaliser * (m - 1)
            slope[start:stop, low:high] = block_slope
            derivative = tile.addcmul_(tile, tile, value=-1)  # P' = P - P^2, in place
            weights = torch.stack([block_slope, torch.ones_like(block_slope)], dim=1)
            sums.baddbmm_(weights, derivative)
            if high == m:  # the block of anchors is done: form its gradient
                weighted, degree = sums.unbind(dim=1)
                block = slice(start, stop)
                to_self_derivative = to_self[block] * (1 - to_self[block])
                # sum_k P'_ajk counts k = j (P' = 1/4) and k = self; so does sum_j h P'.
                own = slope[block] * (degree - 0.25 - to_self_derivative)
                others = (weighted - 0.25 * slope[block]).masked_fill_(is_self[block], 0)
                gradient[block] = inverse_temperature[block, None] * (own - others)
        if needs_grad:
            _add_scale_gradient(gradient, distances, scale, is_self)
        ctx.save_for_backward(gradient)
        return total / normaliser

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        (gradient,) = ctx.saved_tensors
        return grad_output * gradient, None, None, None, None, None, None


def _add_scale_gradient(gradient: torch.Tensor, distances: torch.Tensor, scale: torch.Tensor,
                        is_self: torch.Tensor) -> None:
    """Turn the fixed-scale gradient ``G`` into the exact one, in place:
    ``G_aj -= (sum_k G_ak D_ak) / ((m-1) s_a)`` for ``j != self_a`` (see :class:`_SoftRankGap`).

    A row whose scale is at its floor (:func:`perceptcoh.ranking.row_scale`) has a constant
    ``s_a`` and keeps ``G``.
    """
    m = distances.shape[1]
    radial = (gradient * distances).sum(dim=1)
    floor = row_scale_floor(distances.dtype)
    correction = (radial / ((m - 1) * scale)).masked_fill_(scale <= floor, 0)
    gradient.sub_(correction[:, None]).masked_fill_(is_self, 0)
