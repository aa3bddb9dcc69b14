"""What the loss chapter (book/theory/04_loss) draws: its figures and its speed table.

The chapter computes what it shows in its visible cells; these functions only draw it
(matplotlib figures, returned and not shown: the notebook's backend shows them) or run and
tabulate the repository's loss benchmark (``benchmarks/loss_speed.py``), which lives in a
clone of the repository, not in the installed package.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..engine.config import TrainConfig
from ..engine.plans import SCALES
from ..perception import perception
from .report import html_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["temperature_figure", "feature_norms_figure", "pushed_pairs_figure",
           "benchmark_script", "run_benchmark", "speed_table", "train_toy_student",
           "laptop_sgd"]

# Where a clone of the repository keeps its benchmarks: next to the package's folder.
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _off_diagonal(matrix: torch.Tensor) -> np.ndarray:
    """The entries of a square matrix off its diagonal, as a NumPy vector."""
    mask = ~torch.eye(matrix.shape[0], dtype=torch.bool, device=matrix.device)
    return matrix[mask].cpu().numpy()


def temperature_figure(exact: torch.Tensor, soft: Mapping[float, torch.Tensor],
                       taus: Sequence[float], loss_errors: Sequence[float]) -> Figure:
    """Soft ranks against exact ranks, one panel per temperature of ``soft`` (``tau ->
    (B, B)`` soft ranks; ``exact`` the ``(B, B)`` exact ranks), and ``|L - gap|`` against
    ``taus`` on log axes in a last panel (a 0 drawn at 1e-16)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(soft) + 1, figsize=(10, 2.6))
    for ax, (tau, ranks) in zip(axes, soft.items()):
        ax.scatter(_off_diagonal(exact), _off_diagonal(ranks), s=1, alpha=0.3)
        ax.plot([0, 1], [0, 1], color="k", lw=0.8)
        ax.set_title(f"tau = {tau:g}", fontsize=10)
        ax.set_xlabel("exact rank R")
    axes[0].set_ylabel("soft rank S")
    axes[-1].loglog(taus, np.maximum(loss_errors, 1e-16), "o-", ms=3)
    axes[-1].set_xlabel("tau")
    axes[-1].set_title("|L - gap| (0 drawn at 1e-16)", fontsize=9)
    fig.tight_layout()
    return fig


def feature_norms_figure(norms: Mapping[str, np.ndarray]) -> Figure:
    """The mean feature norm against the step, one colour per entry of ``norms`` (label ->
    ``(seeds, steps)`` array), one line per seed, on a log axis (a 0 drawn at 1e-8)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    for index, (label, runs) in enumerate(norms.items()):
        colour = ("C3", "C0")[index] if index < 2 else f"C{index}"
        for seed, run in enumerate(runs):
            ax.plot(np.maximum(run, 1e-8), color=colour, lw=1,
                    label=label if seed == 0 else None)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("mean feature norm (1e-8 = 0)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def pushed_pairs_figure(teacher_points: torch.Tensor, student_points: torch.Tensor,
                        gradient: torch.Tensor, anchor: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one anchor's row of the gradient: the teacher's and the student's 2-D points,
    each labelled with its rank from ``anchor`` (a misranked point, in red, with the
    student's rank and the teacher's in brackets), and on the student's panel the descent
    direction ``-dL/dD_aj * dD_aj/dx_j`` of every other point ``j``, the direction from the
    anchor to ``j`` scaled by ``-gradient[anchor, j]`` (``gradient``: ``dL/dD^g``, ``(n, n)``).

    Returns, for the other points in order, the arrows' lengths and whether each point is
    misranked.
    """
    import matplotlib.pyplot as plt

    n = student_points.shape[0]
    ranks_f, ranks_g = perception(teacher_points), perception(student_points)
    positions = student_points.cpu().numpy()
    teacher_np = teacher_points.cpu().numpy()
    others = [j for j in range(n) if j != anchor]
    directions = positions[others] - positions[anchor]
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    force = -gradient[anchor, others].cpu().numpy()[:, None] * directions
    wrong = (ranks_f != ranks_g)[anchor, others].cpu().numpy()
    teacher_rank = np.rint(ranks_f[anchor, others].cpu().numpy() * (n - 1)).astype(int)
    student_rank = np.rint(ranks_g[anchor, others].cpu().numpy() * (n - 1)).astype(int)
    colours = np.where(wrong, "C3", "0.5")

    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.8))
    for ax, points, title in [(axes[0], teacher_np, "teacher"),
                              (axes[1], positions, "student: descent direction")]:
        ax.scatter(points[others, 0], points[others, 1], s=14, c=colours)
        ax.scatter(*points[anchor], marker="*", s=150, color="k")
        for (x, y), t, s in zip(points[others], teacher_rank, student_rank):
            label = f"{t}" if title == "teacher" or s == t else f"{s} ({t})"
            ax.annotate(label, (x, y), xytext=(3, 3), textcoords="offset points", fontsize=7)
        ax.set_title(title, fontsize=10)
        ax.set_aspect("equal")
    scale = 0.2 / np.linalg.norm(force, axis=1).max()
    tips = positions[others] + scale * force
    axes[1].quiver(positions[others, 0], positions[others, 1], force[:, 0] * scale,
                   force[:, 1] * scale, color=colours, angles="xy", scale_units="xy",
                   scale=1, width=0.006)
    everything = np.concatenate([positions, tips])
    axes[1].set_xlim(everything[:, 0].min() - 0.05, everything[:, 0].max() + 0.08)
    axes[1].set_ylim(everything[:, 1].min() - 0.05, everything[:, 1].max() + 0.05)
    fig.suptitle("anchor (star) and its ranks of the other points; red: misranked, "
                 "labelled student rank (teacher rank)", fontsize=9)
    fig.tight_layout()
    return np.linalg.norm(force, axis=1), wrong


def benchmark_script(name: str, folder: Path = BENCHMARKS) -> ModuleType:
    """The benchmark ``folder/<name>.py`` imported as a module (a clone of the repository
    keeps them next to the package; an installed package has none: ``FileNotFoundError``
    naming what to do)."""
    path = Path(folder) / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the benchmarks come with a clone of the "
                                f"repository; install perceptcoh from one (pip install -e .)")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_benchmark(script: ModuleType | Path, *arguments: str, threads: int = 1) -> dict:
    """Run a benchmark script (a module from :func:`benchmark_script`, or its path) in a
    fresh process with ``arguments`` and ``--json``, on ``threads`` CPU threads
    (``OMP_NUM_THREADS``), and return the JSON document it writes. A failed run raises
    ``subprocess.CalledProcessError`` carrying its output."""
    path = Path(script.__file__ if isinstance(script, ModuleType) else script)
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / f"{path.stem}.json"
        subprocess.run([sys.executable, str(path), *arguments, "--json", str(result)],
                       check=True, capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        return json.loads(result.read_text())


def speed_table(benchmark: dict) -> str:
    """``benchmarks/loss_speed.py``'s document as an HTML table: per batch size, the time
    and the rise in peak memory of a forward and backward pass, ours against the naive
    form, with the machine and the sizes in the caption."""
    provenance = benchmark["provenance"]
    rows = [[row["batch"],
             f"{row['ours']['seconds'] * 1e3:.1f}",
             f"{row['naive']['seconds'] * 1e3:.1f}",
             f"{row['naive']['seconds'] / row['ours']['seconds']:.1f}x",
             f"{row['ours']['peak_bytes'] / 2**20:.1f}",
             f"{row['naive']['peak_bytes'] / 2**20:.1f}"] for row in benchmark["rows"]]
    threads = provenance["cpu_threads"]
    caption = (f"Forward and backward pass, ours against the naive loss: torch "
               f"{provenance['torch']}, {threads} CPU thread{'s' if threads != 1 else ''}, "
               f"student {benchmark['student_dim']}-d, teacher {benchmark['teacher_dim']}-d, "
               f"tau {benchmark['tau']}")
    return html_table(["B", "ours ms", "naive ms", "speed-up", "ours MB", "naive MB"],
                      rows, caption=caption)


# ----------------------------------------------------------------------------------------
# The norm of a toy student's features under a feature-transfer loss, step by step: a


Transfer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def laptop_sgd() -> dict[str, float]:
    """The SGD settings of the laptop recipe's students: its learning rate per 128 images
    (``SCALES["laptop"]``), and the engine's momentum and weight decay (``TrainConfig``'s
    defaults, which the recipe keeps)."""
    defaults = {field.name: field.default for field in dataclasses.fields(TrainConfig)}
    recipe = {**defaults, **SCALES["laptop"]["student"]}
    return {name: recipe[name] for name in ("lr", "momentum", "weight_decay")}


def train_toy_student(transfer: Transfer, seed: int, steps: int = 800,
                      batch_size: int = 48) -> np.ndarray:
    """Train a student with ``transfer(student_features, teacher_features)`` and return the
    mean norm of its features at each step, before that step's update (``(steps,)``).

    The data: 2,000 inputs in ``R^32``; the teacher's features are a one-hot of 10 clusters
    given by a non-linear rule (the argmax of ``sin(3 x W)``), times 3, plus a little of the
    input. The student: ``32 -> 64 -> 16`` with batch normalisation before its last ReLU, as
    in a ResNet's last block, trained by SGD with the laptop recipe's settings
    (:func:`laptop_sgd`) on random batches. The data and batches come from a
    generator seeded with ``seed``; the weights from the global generator, seeded with
    ``seed`` too (``torch.manual_seed``), so two transfers with one seed start from the same
    weights and see the same batches.
    """
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(2000, 32, generator=generator)
    rule = torch.randn(32, 10, generator=generator)
    clusters = torch.sin(3 * inputs @ rule).argmax(1)  # 10 clusters, non-linear
    targets = 3 * torch.nn.functional.one_hot(clusters, 10) + 0.3 * inputs[:, :10]
    torch.manual_seed(seed)
    student = torch.nn.Sequential(
        torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 16),
        torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
    )
    optimiser = torch.optim.SGD(student.parameters(), **laptop_sgd())
    norms = []
    for _ in range(steps):
        chosen = torch.randint(0, 2000, (batch_size,), generator=generator)
        features = student(inputs[chosen])
        norms.append(features.detach().norm(dim=1).mean().item())
        optimiser.zero_grad()
        transfer(features, targets[chosen]).backward()
        optimiser.step()
    return np.array(norms)
