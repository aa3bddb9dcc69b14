"""What the perception chapter (book/theory/03_perception) draws: the closed-form
perceptions of a scalar example with the sample ranks that estimate them, the convergence
of the plug-in gap, and where two students disagree with the teacher.

The chapter computes what it shows in its visible cells (the perceptions are its functions
``pi(x, y)``, vectorised over NumPy arrays); these functions only draw it and return the
matplotlib figure, which the notebook's backend shows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["closed_form_figure", "convergence_figure", "disagreement_figure"]

Perception = Callable[[np.ndarray, np.ndarray], np.ndarray]


def closed_form_figure(pi_f: Perception, pi_g: Perception, sample: np.ndarray,
                       ranks_f: np.ndarray, ranks_g: np.ndarray) -> Figure:
    """Left: the teacher's and the student's perceptions from the anchor ``sample[0]`` as
    functions of ``y`` on ``[0, 1]``, with the ranks ``R_0j`` of the other points of
    ``sample`` (``ranks_f``, ``ranks_g``) drawn on them. Right: the teacher's perception as
    the distribution function ``F_x(t) = pi_f(x, x + t)`` of the anchor's distance, beside
    the empirical distribution function of the sample's distances."""
    import matplotlib.pyplot as plt

    anchor, others = sample[0], sample[1:]
    ys = np.linspace(0, 1, 400)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    ax = axes[0]
    ax.plot(ys, pi_f(anchor, ys), color="C0", label=rf"teacher $\pi^f({anchor:g}, y)$")
    ax.plot(ys, pi_g(anchor, ys), color="C1", label=rf"student $\pi^g({anchor:g}, y)$")
    ax.scatter(others, ranks_f, s=10, color="C0",
               label=rf"ranks $R^f_{{0j}}$ (n = {len(sample)})")
    ax.scatter(others, ranks_g, s=10, color="C1", marker="x", label=r"ranks $R^g_{0j}$")
    ax.axvline(anchor, color="gray", lw=0.8, ls=":")
    ax.set_xlabel("y")
    ax.set_ylabel("perception")
    ax.legend(fontsize=7)
    ax = axes[1]
    ts = np.linspace(0, 0.8, 400)
    ax.plot(ts, pi_f(anchor, anchor + ts), color="C0",
            label=rf"$F_x(t) = P(|Z - {anchor:g}| \leq t)$")
    distances = np.sort(np.abs(others - anchor))
    ax.step(distances, np.arange(1, len(distances) + 1) / len(distances), where="post",
            color="k", lw=1, label=f"empirical, {len(distances)} points")
    ax.set_xlabel("distance t from the anchor")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def convergence_figure(sizes: Sequence[int], estimates: np.ndarray, exact: float) -> Figure:
    """The plug-in gap against the sample size: the mean of ``estimates`` (``(len(sizes),
    repeats)``, one row per size) with one standard deviation of a single estimate as error
    bar, and the ``exact`` value as a dashed line."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.errorbar(sizes, estimates.mean(axis=1), yerr=estimates.std(axis=1, ddof=1),
                fmt="o-", ms=4, capsize=3, label=r"estimate, mean $\pm$ 1 sd")
    ax.axhline(exact, color="k", lw=1, ls="--", label=r"exact $\Delta_1$")
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(size) for size in sizes])
    ax.minorticks_off()
    ax.set_xlabel("sample size n")
    ax.set_ylabel(r"perception gap $\Delta_1$")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def disagreement_figure(pi_f: Perception, students: Mapping[str, Perception],
                        grid: int = 300) -> Figure:
    """``|pi_f(x, y) - pi_g(x, y)|`` over anchors ``x`` and points ``y`` in ``[0, 1]^2``
    (midpoints of a ``grid x grid`` grid), one panel per student (title -> perception), on
    one colour scale from 0 to 1, with dotted lines at 1/2."""
    import matplotlib.pyplot as plt

    nodes = (np.arange(grid) + 0.5) / grid
    x, y = nodes[:, None], nodes[None, :]
    fig, axes = plt.subplots(1, len(students), figsize=(7.5, 3.2), layout="constrained")
    axes = np.atleast_1d(axes)
    for ax, (title, pi_g) in zip(axes, students.items()):
        image = ax.imshow(np.abs(pi_f(x, y) - pi_g(x, y)), origin="lower",
                          extent=(0, 1, 0, 1), cmap="magma", vmin=0, vmax=1)
        ax.axhline(0.5, color="w", lw=0.6, ls=":")
        ax.axvline(0.5, color="w", lw=0.6, ls=":")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("y")
    axes[0].set_ylabel("anchor x")
    fig.colorbar(image, ax=axes, label=r"$|\pi^f(x, y) - \pi^g(x, y)|$", shrink=0.9)
    return fig
