"""Checks and figures of the chapter "Rankings on a finite set"
(``book/theory/02_rankings.ipynb``): the definition of the normalised ranks transcribed
literally, and by SciPy, to check :func:`perceptcoh.perception` against; nearest
neighbours read off the ranks; one anchor's ranks drawn.

    D = dissimilarity(points)
    assert torch.equal(perception(points).cpu(), ranks_by_counting(D))
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy.stats import rankdata

from ..dissimilarity import dissimilarity
from ..perception import perception

__all__ = ["ranks_by_counting", "ranks_by_scipy", "repeated_values",
           "neighbours_from_ranks", "plot_anchor_ranks"]


def ranks_by_counting(D: torch.Tensor) -> torch.Tensor:
    """The definition, literally: ``R[i, j]`` is the fraction of ``k != i`` with
    ``D[i, k] <= D[i, j]``, zero diagonal; ``O(n^3)`` comparisons, float64 on the CPU,
    for checking only."""
    n, rows = len(D), D.tolist()
    R = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            if j != i:
                count = sum(rows[i][k] <= rows[i][j] for k in range(n) if k != i)
                R[i, j] = count / (n - 1)
    return R


def ranks_by_scipy(D: torch.Tensor) -> torch.Tensor:
    """The same ranks from ``scipy.stats.rankdata(method="max")`` on each row without
    its anchor (float64, CPU)."""
    n, D = len(D), D.cpu().numpy()
    R = np.zeros((n, n))
    for i in range(n):
        others = np.arange(n) != i
        R[i, others] = rankdata(D[i, others], method="max") / (n - 1)
    return torch.from_numpy(R)


def repeated_values(D: torch.Tensor) -> int:
    """How many entries of ``D``'s rows repeat an earlier value of their row (the
    diagonal included)."""
    return sum(len(row) - len(set(row)) for row in D.tolist())


def neighbours_from_ranks(features: torch.Tensor) -> bool:
    """Whether, for every anchor and every ``k``, the set ``{j != i : R[i, j] <= k /
    (n - 1)}`` is anchor ``i``'s ``k`` nearest neighbours by ``topk`` (euclidean), and
    no row of the dissimilarities has a tie (the condition of the statement)."""
    n = len(features)
    eye = torch.eye(n, dtype=torch.bool, device=features.device)
    masked = dissimilarity(features).masked_fill(eye, math.inf)
    sorted_rows = masked.sort(dim=1).values
    if not (sorted_rows[:, 1:-1] > sorted_rows[:, :-2]).all():
        return False
    positions = (perception(features) * (n - 1)).round()
    for k in range(1, n):
        nearest = masked.topk(k, dim=1, largest=False).indices
        from_topk = torch.zeros(n, n, dtype=torch.bool,
                                device=features.device).scatter_(1, nearest, True)
        if not torch.equal(from_topk, (positions >= 1) & (positions <= k)):
            return False
    return True


def plot_anchor_ranks(points: torch.Tensor, anchor: int) -> tuple[torch.Tensor,
                                                                   torch.Tensor]:
    """Left: the other 2-D ``points`` coloured by their rank for ``anchor``; right: the
    anchor's row of ranks against its row of dissimilarities, euclidean and squared
    euclidean. Returns the two rows of ranks."""
    others = torch.arange(len(points), device=points.device) != anchor
    row = perception(points)[anchor]
    row_squared = perception(points, "sqeuclidean")[anchor]
    distances = dissimilarity(points)[anchor]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    shown = axes[0].scatter(*points[others].T.cpu(), c=row[others].cpu(),
                            cmap="viridis", s=14)
    axes[0].scatter(*points[anchor].cpu(), marker="*", s=160, color="red",
                    label="anchor")
    fig.colorbar(shown, ax=axes[0], label="rank $R_{ij}$")
    axes[0].set_aspect("equal", adjustable="datalim")
    axes[0].legend(fontsize=8, loc="lower right")
    axes[0].set_title("ranks seen from one anchor", fontsize=10)
    axes[1].scatter(distances[others].cpu(), row[others].cpu(), s=10,
                    label="euclidean $D_{ij}$")
    axes[1].scatter(distances[others].square().cpu(), row_squared[others].cpu(), s=10,
                    marker="x", label="squared euclidean $D_{ij}^2$")
    axes[1].set_xlabel("dissimilarity to the anchor")
    axes[1].set_ylabel("rank $R_{ij}$")
    axes[1].legend(fontsize=8)
    axes[1].set_title("different dissimilarities, same ranks", fontsize=10)
    fig.tight_layout()
    plt.show()
    return row, row_squared
