"""Perception (normalised ranks) and the perception gap on a finite sample.

The math is in the book's chapters book/theory/02_rankings and book/theory/03_perception."""

from __future__ import annotations

import torch

from ._validation import (
    Metric,
    check_chunk_size,
    check_exponent,
    check_features,
    check_metric,
    check_same_batch,
)
from .dissimilarity import pairwise
from .ranking import exact_ranks, row_chunks

__all__ = ["perception", "perception_gap"]


def perception(
    features: torch.Tensor, metric: Metric = "euclidean", chunk_size: int | None = None
) -> torch.Tensor:
    """Exact normalised ranks ``R`` of a sample (book: book/theory/02_rankings).

    ``R[i, j] = 1/(n-1) * #{k != i : D_ik <= D_ij}`` for ``j != i`` and ``R[i, i] = 0``,
    with ``D = dissimilarity(features, metric=metric)``. ``R[i, j]`` is the perception
    ``pi(x_i, x_j)`` under the empirical measure of the other ``n - 1`` points
    (book/theory/03_perception): the fraction of the sample that anchor ``i`` sees at least
    as close as ``x_j``. Ties share the largest rank ("at most").

    Args:
        features: ``(n, p)`` floating tensor, ``n >= 3``.
        metric: a built-in metric name or a callable (see :func:`dissimilarity`).
        chunk_size: anchors processed at once; ``None`` picks a size that keeps each
            chunk's temporaries near a few million elements.

    Returns:
        ``(n, n)`` tensor with values in ``{0} U {1/(n-1), ..., 1}``, float64 for float64
        features and float32 otherwise. Not differentiable (ranks are piecewise constant).
        Cost ``O(n^2 log n)`` time, ``O(n^2)`` memory for the result plus one chunk.
    """
    check_features(features, "features")
    check_metric(metric, "metric")
    chunk_size = check_chunk_size(chunk_size)
    n = features.shape[0]
    result = None
    with torch.no_grad():
        for start, stop in row_chunks(n, n, chunk_size, features.device):
            ranks = _ranks_of_rows(features, start, stop, metric)
            if result is None:
                result = torch.empty(n, n, dtype=ranks.dtype, device=features.device)
            result[start:stop] = ranks
    return result


def perception_gap(
    student_features: torch.Tensor,
    teacher_features: torch.Tensor,
    metric_student: Metric = "euclidean",
    metric_teacher: Metric = "euclidean",
    r: int = 1,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Plug-in estimate of the perception gap ``Delta_r(f, g; mu)``
    (book/theory/03_perception).

    ``mean_{i != j} |R^f_ij - R^g_ij|^r`` where ``R^f = perception(teacher_features)`` and
    ``R^g = perception(student_features)``, computed row chunk by row chunk so that neither
    ``(n, n)`` rank matrix is held in full. It is 0 exactly when every anchor orders the
    other points the same way (ties included) in both feature spaces.

    Like every function of the library that takes both sides, it takes the student's
    first, as the losses do; the gap is symmetric in the two sides.

    Args:
        student_features: ``(n, q)`` floating tensor, ``n >= 3``.
        teacher_features: ``(n, p)`` floating tensor on the same device; ``p`` may differ
            from ``q``.
        metric_student, metric_teacher: dissimilarities of each side.
        r: 1 (mean absolute difference, a footrule) or 2 (mean squared difference).
        chunk_size: anchors processed at once (``None``: automatic).

    Returns:
        0-dim tensor in ``[0, 1]`` (accumulated in float64; float64 for float64 inputs,
        float32 otherwise).
    """
    check_features(teacher_features, "teacher_features")
    check_features(student_features, "student_features")
    check_same_batch(teacher_features, "teacher_features", student_features, "student_features")
    check_metric(metric_teacher, "metric_teacher")
    check_metric(metric_student, "metric_student")
    r = check_exponent(r)
    chunk_size = check_chunk_size(chunk_size)
    n = teacher_features.shape[0]
    total = torch.zeros((), dtype=torch.float64, device=teacher_features.device)
    result_dtype = torch.float32
    with torch.no_grad():
        for start, stop in row_chunks(n, n, chunk_size, teacher_features.device):
            teacher_ranks = _ranks_of_rows(teacher_features, start, stop, metric_teacher)
            student_ranks = _ranks_of_rows(student_features, start, stop, metric_student)
            # Both diagonals are 0, so summing every entry sums over i != j.
            total += (teacher_ranks.double() - student_ranks.double()).abs().pow(r).sum()
            result_dtype = torch.promote_types(teacher_ranks.dtype, student_ranks.dtype)
    return (total / (n * (n - 1))).to(result_dtype)


def _ranks_of_rows(features: torch.Tensor, start: int, stop: int, metric: Metric) -> torch.Tensor:
    """Rows ``start:stop`` of ``perception(features, metric)``."""
    distances = pairwise(features[start:stop], features, metric)
    if callable(metric) and not bool((distances >= 0).all()):
        raise ValueError("metric returned negative or NaN dissimilarities; expected d >= 0")
    self_index = torch.arange(start, stop, device=features.device)
    return exact_ranks(distances, self_index)
