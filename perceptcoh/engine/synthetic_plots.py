"""Tables and figures of the chapter "The loss in action on synthetic data"
(book/theory/05_synthetic.ipynb), drawn from :mod:`perceptcoh.engine.synthetic`'s runs."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import HTML

from .report import html_table
from .synthetic import Comparison

__all__ = ["score_table", "sheet_colours", "show_embeddings"]


def score_table(name: str, run: Comparison, test_size: int) -> HTML:
    """One seed's held-out scores per method: learning rate, gap, kNN agreement,
    trustworthiness and training seconds."""
    rows = [[method, "–" if row["lr"] is None else f"{row['lr']:.0e}",
             f"{row['gap']:.3f}", f"{row['kNN']:.3f}", f"{row['trust']:.3f}",
             f"{row['seconds']:.1f}" if "seconds" in row else "–"]
            for method, row in run.results.items()]
    caption = f"{name}: held-out scores ({test_size} inputs), seed 0"
    return HTML(html_table(["method", "lr", "gap", "kNN", "trust", "train s"], rows,
                           caption=caption))


def sheet_colours(uv: np.ndarray) -> np.ndarray:
    """RGB colours of points of the sheet: red grows with ``u``, blue with ``v``."""
    return np.stack([(uv[:, 0] + 1) / 2, 0.4 * np.ones(len(uv)), (uv[:, 1] + 1) / 2],
                    axis=1)


def show_embeddings(name: str, run: Comparison, colour: np.ndarray | None = None,
                    shown: int = 400, **scatter) -> None:
    """The students' 2-D held-out features side by side, each titled with its gap; a
    subset of ``shown`` inputs keeps the figure light. ``colour`` defaults to the run's."""
    colour = run.colour if colour is None else colour
    fig, axes = plt.subplots(1, len(run.embeddings), figsize=(10, 2.6))
    for ax, (method, embedding) in zip(axes, run.embeddings.items()):
        points = embedding[:shown]
        ax.scatter(points[:, 0], points[:, 1], c=colour[:shown], s=5, linewidths=0,
                   **scatter)
        ax.set_title(f"{method} (gap {run.results[method]['gap']:.3f})", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{name}: 2-D student features of {shown} held-out inputs", fontsize=10)
    fig.tight_layout()
    plt.show()
