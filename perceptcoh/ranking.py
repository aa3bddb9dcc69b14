"""Exact and smoothed normalised ranks of rows of a dissimilarity matrix.

The math is in the book's chapters book/theory/02_rankings (exact ranks) and
book/theory/04_loss (smoothed ranks).

Every function here works on a block of anchor rows ``D`` of shape ``(c, m)``: row ``a`` holds
the dissimilarities from anchor ``a`` to the ``m`` reference points, and ``self_index[a]`` is
the column of the anchor itself, which is left out of every count (``k != i``). Working on
blocks of rows is what keeps memory at ``O(m^2)`` plus one chunk.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

# Elements of the largest temporary a chunk may allocate. On a CPU, 4 MB in float32: the
# PC loss at B = 256..1024 ran 1.1-1.3x faster than with 1 MB tiles (more tiles, more
# per-call overhead) and 1.4-2x faster than with 16 MB (out of cache). On a GPU it keeps a
# few hundred MB per temporary.
_CHUNK_ELEMENTS = {"cpu": 1 << 20, "cuda": 1 << 26}


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
    m = distances.shape[1]
    own = self_index[:, None].long()
    # +inf in the anchor's own column puts it after every finite value, out of all counts.
    # A scatter with a Python scalar: indexed assignment (``x[rows, own] = inf``) would turn
    # the scalar into a CPU tensor and copy it to the device, a copy that waits for the GPU.
    masked = distances.detach().clone().scatter_(1, own, float("inf"))
    if masked.device.type == "cpu":
        counts = torch.from_numpy(_at_most_counts_numpy(masked.numpy()))
    else:
        counts = _at_most_counts_torch(masked)
    ranks = counts.to(distances.dtype) / (m - 1)
    return ranks.scatter_(1, own, 0.0)


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
    return mean.clamp_min(row_scale_floor(distances.dtype))


def row_scale_floor(dtype: torch.dtype) -> float:
    """The floor of :func:`row_scale`: the square root of ``dtype``'s smallest normal number."""
    return torch.finfo(dtype).tiny ** 0.5


def comparison_tiles(
    n_rows: int, n_columns: int, chunk_size: int | None, device: torch.device
) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(start, stop, low, high)``: anchors ``start:stop`` and columns ``low:high`` of
    one tile of the comparisons ``P[a, j, k]``, which holds every ``k``.

    A tile has at most ``chunk_size`` anchors (``None``: as many as the per-device element
    budget allows) and as many columns ``j`` as keep it within that budget, so that no
    ``(chunk, m, m)`` tensor is ever built when ``m^2`` alone exceeds the budget: at
    ``m = 1024`` on a CPU a tile is one anchor and 256 columns (1 MB in float32).
    """
    budget = _CHUNK_ELEMENTS.get(device.type, _CHUNK_ELEMENTS["cpu"])
    rows = chunk_size if chunk_size is not None else max(1, budget // (n_columns * n_columns))
    columns = min(n_columns, max(1, budget // (min(rows, n_rows) * n_columns)))
    for start in range(0, n_rows, rows):
        stop = min(start + rows, n_rows)
        for low in range(0, n_columns, columns):
            yield start, stop, low, min(low + columns, n_columns)


def tile_sigmoids(scaled: torch.Tensor, low: int, high: int, out: torch.Tensor) -> torch.Tensor:
    """``P[a, j, k] = sigmoid(x_aj - x_ak)`` for the columns ``j`` in ``low:high`` and every
    ``k``, where ``x = D * w`` are the scaled dissimilarities of a block of anchors
    (``(c, m)``), written into ``out``'s first ``c * (high - low) * m`` elements (a reused
    workspace: no allocation per tile) and returned as a ``(c, high - low, m)`` view.

    On a CPU the ``m^2`` sigmoids of an anchor are products of ``2m`` exponentials,
    ``sigmoid(x_j - x_k) = 1 / (1 + F_j E_k)`` with ``E_k = exp(x_k - c)`` and
    ``F_j = exp(c - x_j)`` around the anchor's mid-range ``c``: a multiplication, an addition
    and a reciprocal per entry instead of an exponential, about 3x faster. ``E`` and ``F``
    are computed in float64 and rounded once, so an entry is within a few units in the last
    place of the sigmoid's. The form needs ``|x - c|`` within the dtype's exponent range
    (``max - min <= 160`` in float32, 1400 in float64); a block of anchors spread wider, and
    every block on a GPU (where the exponentials are cheap and a range check would wait for
    the device), takes the direct sigmoid.
    """
    c, m = scaled.shape
    tile = out[: c * (high - low) * m].view(c, high - low, m)
    if scaled.device.type == "cpu":
        lowest, highest = scaled.aminmax(dim=1)
        limit = 160.0 if scaled.dtype == torch.float32 else 1400.0
        if float((highest - lowest).max()) <= limit:
            centred = scaled.double() - ((highest + lowest) / 2).double()[:, None]
            forward, backward = centred.exp().to(scaled.dtype), (-centred).exp().to(scaled.dtype)
            torch.mul(backward[:, low:high, None], forward[:, None, :], out=tile)
            return tile.add_(1).reciprocal_()
    torch.sub(scaled[:, low:high, None], scaled[:, None, :], out=tile)
    return tile.sigmoid_()


def soft_ranks(
    distances: torch.Tensor,
    self_index: torch.Tensor,
    tau: float,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Smoothed ranks ``S`` (book/theory/04_loss) of all rows, tile by tile, without
    gradient."""
    n, m = distances.shape
    with torch.no_grad():
        scaled = distances * (1 / (tau * row_scale(distances, self_index)))[:, None]
        rows = torch.arange(n, device=distances.device)
        to_self = torch.sigmoid(scaled - scaled[rows, self_index][:, None])
        result = torch.empty_like(distances)
        workspace = None
        for start, stop, low, high in comparison_tiles(n, m, chunk_size, distances.device):
            if workspace is None:
                workspace = distances.new_empty((stop - start) * (high - low) * m)
            tile = tile_sigmoids(scaled[start:stop], low, high, workspace)
            counts = tile.sum(dim=-1) - 0.5 - to_self[start:stop, low:high]
            result[start:stop, low:high] = (1 + counts) / (m - 1)
    return result.scatter_(1, self_index[:, None].long(), 0.0)  # a scalar: no copy to the device
