"""Pairwise dissimilarities ``D_ij = d(x_i, y_j)`` (book: book/theory/02_rankings).

A dissimilarity is any function with ``d(a, a) = 0`` and ``d >= 0``. Three are built in;
any callable ``metric(x, y) -> (n, m)`` tensor works too.
"""

from __future__ import annotations

import torch

from ._validation import Metric, check_features, check_metric

__all__ = ["dissimilarity"]


def dissimilarity(
    x: torch.Tensor, y: torch.Tensor | None = None, metric: Metric = "euclidean"
) -> torch.Tensor:
    """Matrix of dissimilarities between the rows of ``x`` and the rows of ``y``.

    Args:
        x: ``(n, p)`` floating tensor.
        y: ``(m, p)`` floating tensor on the same device, or ``None`` for ``y = x`` (then
            the diagonal is exactly 0, as ``d(a, a) = 0`` requires).
        metric: ``"euclidean"`` ``||a - b||``, ``"sqeuclidean"`` ``||a - b||^2``,
            ``"cosine"`` ``1 - <a, b> / (||a|| ||b||)`` (a zero vector is treated as
            orthogonal to everything, as :func:`torch.nn.functional.normalize` does), or a
            callable ``metric(x, y)`` returning an ``(n, m)`` tensor of non-negative values.

    Returns:
        ``(n, m)`` tensor ``D`` with ``D[i, j] = d(x_i, y_j)``, differentiable with respect
        to ``x`` and ``y``. Half and bfloat16 inputs are computed in float32; float64 stays
        float64. The built-in metrics go through the Gram matrix ``x y^T`` (fast, and exact
        on small-integer data in float64); the gradient of ``"euclidean"`` at a zero
        distance is defined as 0.

    Raises:
        TypeError, ValueError: naming the argument, for non-tensors, wrong ndim, integer
            dtype, NaN/Inf values, mismatched feature sizes, an unknown metric, or a callable
            metric whose result has the wrong shape or negative/NaN values.
    """
    check_features(x, "x", min_samples=1)
    if y is not None:
        check_features(y, "y", min_samples=1)
        if y.device != x.device:
            raise ValueError(f"x and y must be on the same device, got {x.device} and {y.device}")
        if not callable(metric) and y.shape[1] != x.shape[1]:
            raise ValueError(
                f"x and y must have the same number of features, got {x.shape[1]} and {y.shape[1]}"
            )
    check_metric(metric, "metric")
    distances = pairwise(x, x if y is None else y, metric)
    if callable(metric) and not bool((distances >= 0).all()):
        raise ValueError("metric returned negative or NaN dissimilarities; expected d >= 0")
    if y is None:
        distances = distances.clone()
        distances.fill_diagonal_(0)
    return distances


def pairwise(x: torch.Tensor, y: torch.Tensor, metric: Metric) -> torch.Tensor:
    """``dissimilarity`` without argument checks, for the library's inner loops."""
    if callable(metric):
        distances = metric(x, y)
        expected = (x.shape[0], y.shape[0])
        if not isinstance(distances, torch.Tensor) or tuple(distances.shape) != expected:
            got = tuple(distances.shape) if isinstance(distances, torch.Tensor) else type(distances)
            raise ValueError(f"metric must return a tensor of shape {expected}, got {got}")
        return distances
    x, y = _at_least_float32(x), _at_least_float32(y)
    if metric == "cosine":
        x_unit = torch.nn.functional.normalize(x, dim=1)
        y_unit = torch.nn.functional.normalize(y, dim=1)
        return (1 - x_unit @ y_unit.T).clamp(0, 2)
    squared = _squared_euclidean(x, y)
    if metric == "sqeuclidean":
        return squared
    return _safe_sqrt(squared)


def _at_least_float32(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def _squared_euclidean(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # ||a||^2 + ||b||^2 - 2<a, b>: one matrix product; rounding can make it slightly negative.
    x_norms = x.square().sum(dim=1, keepdim=True)
    y_norms = y.square().sum(dim=1, keepdim=True).T
    return torch.addmm(x_norms + y_norms, x, y.T, alpha=-2).clamp_min(0)


def _safe_sqrt(squared: torch.Tensor) -> torch.Tensor:
    # sqrt has an infinite derivative at 0 (the diagonal, duplicate points); the inner
    # where keeps that infinity out of the backward pass, so the gradient there is 0.
    # Testing "== 0" rather than "> 0" lets a NaN through as a NaN.
    zero = squared == 0
    return torch.where(zero, 0, torch.where(zero, 1, squared).sqrt())
