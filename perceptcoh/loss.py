"""The perception-coherence loss (SPEC section 5)."""

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
    exact_ranks,
    pairwise_sigmoids,
    row_chunks,
    row_scale,
    soft_ranks,
    soft_ranks_from_sigmoids,
)

__all__ = ["PerceptionCoherenceLoss"]


class PerceptionCoherenceLoss(nn.Module):
    """Make the student rank dissimilarities the way the teacher does.

    On a batch of ``B`` samples, with teacher dissimilarities ``D^f`` (no gradient) and
    student dissimilarities ``D^g``::

        T_ij = R^f_ij                                   exact teacher ranks (SPEC section 2)
        S_ij = 1/(B-1) * (1 + sum_{k != i, j} sigmoid((D^g_ij - D^g_ik) / (tau * s_i)))
        L    = 1/(B(B-1)) * sum_{i != j} |S_ij - T_ij|^r

    where ``s_i`` is the mean of row ``i`` of ``D^g`` off the diagonal, detached, so that
    ``L`` is invariant to rescaling the student's features. As ``tau -> 0``, ``S -> R^g``
    and ``L -> perception_gap(teacher, student, r=r)`` on the batch (for tie-free data).

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
            inverse_temperature = 1 / (self.tau * row_scale(student_distances.detach(), anchors))
            # Each process sums its own anchors' rows; scaled by the world size, the mean
            # over processes is the global-batch loss and DDP's gradient averaging gives
            # its exact gradient.
            return world_size * _SoftRankGap.apply(
                student_distances,
                target.to(student_distances.dtype),
                anchors,
                inverse_temperature,
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

    ``S`` depends on row ``a`` of ``D`` only, so once a chunk of rows has its ``S`` the
    derivative ``dL/dS`` of those rows is known and the gradient with respect to ``D`` can be
    formed from the same sigmoids, before they are freed. With ``P' = P (1 - P)``,
    ``h_aj = dL/dS_aj / (m-1)`` and ``w_a = 1 / (tau s_a)``, for ``k != j`` and
    ``j, k != self_a``::

        dL/dD_aj = w_a * ( h_aj * sum_{k != j, self} P'_ajk  -  sum_{i != j, self} h_ai P'_aij )

    (``D_aj`` enters ``S_aj`` with a plus sign and every other ``S_ai`` of its row with a minus
    sign). The anchor's own column gets no gradient: it is left out of every count.
    """

    @staticmethod
    def forward(ctx, distances, target, self_index, inverse_temperature, r, chunk_size, normaliser):
        n, m = distances.shape
        rows = torch.arange(n, device=distances.device)
        needs_grad = ctx.needs_input_grad[0]
        total = distances.new_zeros(())
        gradient = torch.zeros_like(distances) if needs_grad else None
        for start, stop in row_chunks(n, m * m, chunk_size, distances.device):
            chunk_rows = rows[start:stop]
            chunk_self = self_index[start:stop]
            chunk_weight = inverse_temperature[start:stop]
            comparisons, to_self = pairwise_sigmoids(distances[start:stop], chunk_self, chunk_weight)
            difference = soft_ranks_from_sigmoids(comparisons, to_self) - target[start:stop]
            difference[chunk_rows - start, chunk_self] = 0
            total += difference.abs().pow(r).sum()
            if not needs_grad:
                continue
            if r == 2:
                slope = 2 * difference
            else:
                slope = difference.sign()
            slope /= normaliser * (m - 1)
            # comparisons becomes P' = P - P^2 in place: the largest temporary is reused.
            derivative = comparisons.addcmul_(comparisons, comparisons, value=-1)
            to_self_derivative = to_self * (1 - to_self)
            own = slope * (derivative.sum(dim=-1) - 0.25 - to_self_derivative)
            others = torch.bmm(slope[:, None, :], derivative).squeeze(1) - 0.25 * slope
            others[chunk_rows - start, chunk_self] = 0
            gradient[start:stop] = chunk_weight[:, None] * (own - others)
        ctx.save_for_backward(gradient)
        return total / normaliser

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        (gradient,) = ctx.saved_tensors
        return grad_output * gradient, None, None, None, None, None, None
