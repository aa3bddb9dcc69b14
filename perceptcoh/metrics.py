"""How well a student's feature space keeps the teacher's order (book: book/theory/03_perception).

Both functions take the student's features first and the teacher's second, as every function
of the library that takes both sides does (the losses included); both are symmetric in them.
"""

from __future__ import annotations

import torch

from ._validation import (
    Metric,
    check_chunk_size,
    check_features,
    check_metric,
    check_same_batch,
)
from .dissimilarity import pairwise
from .ranking import row_chunks

__all__ = ["triplet_concordance", "knn_agreement"]


def triplet_concordance(
    student_features: torch.Tensor,
    teacher_features: torch.Tensor,
    metric_student: Metric = "euclidean",
    metric_teacher: Metric = "euclidean",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Fraction of triples on whose order teacher and student agree (a Kendall-type statistic).

    ``mean over distinct i, j, k of 1[sign(D^f_ij - D^f_ik) = sign(D^g_ij - D^g_ik)]``: the
    plug-in estimate of ``P[sign(D^f_XY - D^f_XZ) = sign(D^g_XY - D^g_XZ)]`` for ``X, Y, Z``
    i.i.d. (book: book/theory/03_perception). It is 1 for coherent feature spaces. A tie
    counts as agreement only when both sides tie. Cost ``O(n^3)`` time, ``O(n^2)`` memory
    per chunk of anchors.

    Returns:
        0-dim float64 tensor in ``[0, 1]``.
    """
    _check_pair(teacher_features, student_features, metric_teacher, metric_student)
    chunk_size = check_chunk_size(chunk_size)
    n = teacher_features.shape[0]
    device = teacher_features.device
    agreeing = torch.zeros((), dtype=torch.float64, device=device)
    with torch.no_grad():
        for start, stop in row_chunks(n, n * n, chunk_size, device):
            anchors = torch.arange(start, stop, device=device)
            orders = []
            for features, metric in ((teacher_features, metric_teacher), (student_features, metric_student)):
                distances = pairwise(features[start:stop], features, metric)
                orders.append(torch.sign(distances[:, :, None] - distances[:, None, :]))
            agree = orders[0] == orders[1]
            # leave out j = k, and j = i or k = i
            agree &= ~torch.eye(n, dtype=torch.bool, device=device)
            # Masks with a scalar, not indexed assignment, whose False would be a CPU tensor
            # copied to the device (a copy that waits for it).
            is_anchor = (anchors[:, None] == torch.arange(n, device=device))
            agree.masked_fill_(is_anchor[:, :, None], False)
            agree.masked_fill_(is_anchor[:, None, :], False)
            agreeing += agree.sum()
    return agreeing / (n * (n - 1) * (n - 2))


def knn_agreement(
    student_features: torch.Tensor,
    teacher_features: torch.Tensor,
    k: int = 10,
    metric_student: Metric = "euclidean",
    metric_teacher: Metric = "euclidean",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Mean overlap of each point's ``k`` nearest neighbours in the two feature spaces.

    ``mean_i |N^f_k(i) ∩ N^g_k(i)| / k`` where ``N_k(i)`` are the ``k`` points other than
    ``i`` with the smallest dissimilarity to ``i``. Coherence preserves every anchor's
    neighbours for every ``k`` (book: book/theory/03_perception), so a coherent student scores
    1. Ties at the ``k``-th neighbour are broken by ``torch.topk``.

    Returns:
        0-dim float64 tensor in ``[0, 1]``.
    """
    _check_pair(teacher_features, student_features, metric_teacher, metric_student)
    n = teacher_features.shape[0]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n - 1:
        raise ValueError(f"k must be an integer in [1, n - 1] = [1, {n - 1}], got {k!r}")
    chunk_size = check_chunk_size(chunk_size)
    device = teacher_features.device
    overlap = torch.zeros((), dtype=torch.float64, device=device)
    with torch.no_grad():
        for start, stop in row_chunks(n, n, chunk_size, device):
            anchors = torch.arange(start, stop, device=device)
            members = []
            for features, metric in ((teacher_features, metric_teacher), (student_features, metric_student)):
                distances = pairwise(features[start:stop], features, metric).clone()
                distances.scatter_(1, anchors[:, None], float("inf"))
                neighbours = distances.topk(k, dim=1, largest=False).indices
                member = torch.zeros(distances.shape, dtype=torch.bool, device=device)
                members.append(member.scatter_(1, neighbours, True))
            overlap += (members[0] & members[1]).sum()
    return overlap / (n * k)


def _check_pair(teacher_features, student_features, metric_teacher, metric_student) -> None:
    check_features(teacher_features, "teacher_features")
    check_features(student_features, "student_features")
    check_same_batch(teacher_features, "teacher_features", student_features, "student_features")
    check_metric(metric_teacher, "metric_teacher")
    check_metric(metric_student, "metric_student")
