"""The figures of a seed study (:mod:`perceptcoh.engine.seed_study`), as the chapter *Digits,
live on CPU* (``book/experiments/01_digits.ipynb``) shows them: features projected on their
first two principal components, coloured by class, and each method's mean perception gap
against its mean linear-probe accuracy, with one standard deviation over seeds.

Both return the matplotlib figure; the notebook shows it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from .seed_study import SeedStudy

__all__ = ["gap_probe_plot", "pca2", "pca_grid"]


def pca2(features: np.ndarray) -> np.ndarray:
    """``(n, d)`` features centred and projected on their first two principal components."""
    centred = features - features.mean(axis=0)
    _, _, directions = np.linalg.svd(centred, full_matrices=False)
    return centred @ directions[:2].T


def pca_grid(panels: Mapping[str, np.ndarray], labels: np.ndarray, columns: int = 3
             ) -> plt.Figure:
    """One scatter per ``title: features`` of ``panels``, projected by :func:`pca2`, points
    coloured by their class in ``labels`` (0 to 9), with one legend of the classes below."""
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(8, 2.8 * rows), squeeze=False)
    for axis, (title, features) in zip(axes.flat, panels.items()):
        points = pca2(features)
        axis.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=2, vmin=-0.5,
                     vmax=9.5, linewidths=0)
        axis.set_title(title, fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    for axis in list(axes.flat)[len(panels):]:
        axis.axis("off")
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=plt.cm.tab10(d),
                          markersize=4) for d in range(10)]
    figure.legend(handles, [str(d) for d in range(10)], loc="lower center", ncol=10,
                  fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.06))
    figure.tight_layout()
    return figure


def gap_probe_plot(study: SeedStudy, entries: Sequence[tuple[str, str, str]],
                   highlight: str = "pc") -> plt.Figure:
    """Mean perception gap (x) against mean linear-probe accuracy (y) of each ``(method,
    protocol, label)`` of ``entries``, with one sample standard deviation over seeds as error
    bars: ``highlight`` in red, the other pure-transfer methods in blue, references in grey."""
    figure, axis = plt.subplots(figsize=(6, 3.5))
    for method, protocol, label in entries:
        gaps, probes = study.values(method, protocol, "gap"), study.values(method, protocol,
                                                                           "probe")
        colour = "C3" if method == highlight else "C0" if protocol == "pure" else "gray"
        axis.errorbar(gaps.mean(), probes.mean(), xerr=gaps.std(ddof=1),
                      yerr=probes.std(ddof=1), fmt="o", capsize=2, color=colour)
        axis.annotate(label, (gaps.mean(), probes.mean()), textcoords="offset points",
                      xytext=(4, -10) if method == "untrained" else (4, 3), fontsize=8)
    axis.set_xlabel(r"perception gap $\hat\Delta_1$ to the teacher (test set)")
    axis.set_ylabel("linear-probe accuracy")
    axis.set_title(f"pure transfer, mean ± std over {len(study.seeds)} seeds", fontsize=10)
    figure.tight_layout()
    return figure
