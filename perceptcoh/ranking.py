"""Exact and smoothed normalised ranks of rows of a dissimilarity matrix (SPEC sections 2, 5).

Every function here works on a block of anchor rows ``D`` of shape ``(c, m)``: row ``a`` holds
the dissimilarities from anchor ``a`` to the ``m`` reference points, and ``self_index[a]`` is
the column of the anchor itself, which is left out of every count (``k != i``). Working on
blocks of rows is what keeps memory at ``O(m^2)`` plus one chunk.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

# Elements of the largest temporary a chunk may allocate. On a CPU this keeps each of a
# chunk's temporaries (1 MB in float32) in a core's L2 cache, where the several passes over
# them are cheap: at B = 512, chunks of 8 MB ran about 1.5x slower than chunks of 1 MB
# (benchmarks/loss_speed.py). On a GPU it keeps a few hundred MB per temporary.
_CHUNK_ELEMENTS = {"cpu": 1 << 18, "cuda": 1 << 26}


def row_chunks(
    n_rows: int,
    elements_per_row: int,
    chunk_size: int | None,
    device: torch.device,
    budget: dict[str, int] | None = None,
) -> Iterator[tuple[int, int]]:
    """Yield ``(start, stop)`` row ranges of at most ``chunk_size`` rows.

    With ``chunk_size=None`` the chunk holds as many rows as fit a per-device element
    budget (``budget``, keyed by device type; by default the one sized for the loss's
    comparisons), given that each row allocates ``elements_per_row`` elements.
    """
    if chunk_size is None:
        budgets = _CHUNK_ELEMENTS if budget is None else budget
        budget = budgets.get(device.type, budgets["cpu"])
        chunk_size = max(1, budget // max(1, elements_per_row))
    for start in range(0, n_rows, chunk_size):
        yield start, min(start + chunk_size, n_rows)


def exact_ranks(distances: torch.Tensor, self_index: torch.Tensor) -> torch.Tensor:
    """Normalised ranks with the "at most" tie rule, by sorting each row.

    ``R[a, j] = 1/(m-1) * #{k != self_index[a] : D[a, k] <= D[a, j]}`` and
    ``R[a, self_index[a]] = 0``. Cost ``O(c m log m)``. On a CPU the rows are sorted by
    NumPy, whose vectorised sort is several times faster than ``torch.sort`` there.
    """
    rows = torch.arange(distances.shape[0], device=distances.device)
    m = distances.shape[1]
    # +inf in the anchor's own column puts it after every finite value, out of all counts.
    masked = distances.detach().clone()
    masked[rows, self_index] = float("inf")
    if masked.device.type == "cpu":
        counts = torch.from_numpy(_at_most_counts_numpy(masked.numpy()))
    else:
        counts = _at_most_counts_torch(masked)
    ranks = counts.to(distances.dtype) / (m - 1)
    ranks[rows, self_index] = 0
    return ranks


def _at_most_counts_torch(distances: torch.Tensor) -> torch.Tensor:
    """``counts[a, j] = #{k : D[a, k] <= D[a, j]}`` by a sort and a binary search per entry."""
    sorted_rows = distances.sort(dim=1).values
    return torch.searchsorted(sorted_rows, distances, right=True)


def _at_most_counts_numpy(distances: np.ndarray) -> np.ndarray:
    """Same as :func:`_at_most_counts_torch`, by one sort and a scan of runs of equal values.

    After sorting a row, the entry at sorted position ``t`` is at most as large as every
    entry up to the end of its run of equal values, so its count is that run's last
    position plus one; the counts are then scattered back to the original columns.
    """
    m = distances.shape[1]
    if distances.dtype == np.float32:
        # Non-negative float32 values order like their bit patterns read as integers, so a
        # (value bits, column) pair packed into one int64 sorts values and carries the
        # permutation in a single fast integer sort. Adding 0.0 turns -0.0 into +0.0.
        bits = (distances + np.float32(0.0)).view(np.int32).astype(np.int64)
        keys = np.sort((bits << 32) | np.arange(m, dtype=np.int64), axis=1)
        order = keys & 0xFFFFFFFF
        sorted_values = keys >> 32
    else:
        order = np.argsort(distances, axis=1)
        sorted_values = np.take_along_axis(distances, order, axis=1)
    positions = np.arange(m, dtype=np.int64)
    run_ends = np.full(sorted_values.shape, m, dtype=np.int64)
    last_of_run = np.ones(sorted_values.shape, dtype=bool)
    last_of_run[:, :-1] = sorted_values[:, 1:] != sorted_values[:, :-1]
    np.copyto(run_ends, positions, where=last_of_run)
    run_ends = np.minimum.accumulate(run_ends[:, ::-1], axis=1)[:, ::-1]
    counts = np.empty(distances.shape, dtype=np.int64)
    np.put_along_axis(counts, order, run_ends + 1, axis=1)
    return counts


def row_scale(distances: torch.Tensor, self_index: torch.Tensor) -> torch.Tensor:
    """``s_a``: mean dissimilarity from anchor ``a`` to the other points, kept above 0.

    Dividing the surrogate's comparisons by ``s_a`` makes it invariant to rescaling the
    features, as ranks are. The floor (``sqrt`` of the smallest normal number, about 1e-19
    in float32) keeps ``1 / (tau * s_a)`` finite for a fully collapsed row.
    """
    rows = torch.arange(distances.shape[0], device=distances.device)
    own = distances[rows, self_index]
    mean = (distances.sum(dim=1) - own) / (distances.shape[1] - 1)
    return mean.clamp_min(torch.finfo(distances.dtype).tiny ** 0.5)


def pairwise_sigmoids(
    distances: torch.Tensor, self_index: torch.Tensor, inverse_temperature: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The smoothed comparisons of a block of anchors.

    Returns ``P`` of shape ``(c, m, m)`` with ``P[a, j, k] = sigmoid((D_aj - D_ak) * w_a)``
    and ``P_self`` of shape ``(c, m)`` with ``P_self[a, j] = P[a, j, self_index[a]]``, where
    ``w_a = inverse_temperature[a] = 1 / (tau * s_a)``.
    """
    rows = torch.arange(distances.shape[0], device=distances.device)
    scaled = distances * inverse_temperature[:, None]
    comparisons = torch.sigmoid(scaled[:, :, None] - scaled[:, None, :])
    to_self = torch.sigmoid(scaled - scaled[rows, self_index][:, None])
    return comparisons, to_self


def soft_ranks_from_sigmoids(comparisons: torch.Tensor, to_self: torch.Tensor) -> torch.Tensor:
    """``S[a, j] = 1/(m-1) * (1 + sum_{k != self, j} P[a, j, k])`` from :func:`pairwise_sigmoids`.

    The sum over all ``k`` includes ``k = j`` (exactly ``sigmoid(0) = 1/2``) and
    ``k = self``; both are subtracted.
    """
    m = comparisons.shape[-1]
    counts = comparisons.sum(dim=-1) - 0.5 - to_self
    return (1 + counts) / (m - 1)


def soft_ranks(
    distances: torch.Tensor,
    self_index: torch.Tensor,
    tau: float,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Smoothed ranks ``S`` (SPEC section 5) of all rows, chunk by chunk, without gradient."""
    inverse_temperature = 1 / (tau * row_scale(distances, self_index))
    result = torch.empty_like(distances)
    n, m = distances.shape
    with torch.no_grad():
        for start, stop in row_chunks(n, m * m, chunk_size, distances.device):
            comparisons, to_self = pairwise_sigmoids(
                distances[start:stop], self_index[start:stop], inverse_temperature[start:stop]
            )
            result[start:stop] = soft_ranks_from_sigmoids(comparisons, to_self)
    result[torch.arange(n, device=distances.device), self_index] = 0
    return result
