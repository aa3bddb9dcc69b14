"""The worked example of the chapter "Why relax the geometry"
(``book/theory/01_why_relax_geometry.ipynb``): a teacher on a helix in R^3 that no
student in one or two dimensions can copy, and the line that keeps every order.

    t, teacher, student = helix_and_line(40, pitch=0.6)
    eigenvalues, mds_2d = classical_mds(dissimilarity(teacher), dims=2)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import torch

from ..baselines import FitNet, RelationalKD, SimilarityPreserving
from ..metrics import knn_agreement

__all__ = ["helix_and_line", "chord", "classical_mds", "scaled_distance_error",
           "geometry_losses", "descent_scores", "plot_helix_and_line", "plot_matrices",
           "plot_descent"]


def helix_and_line(n: int = 40, pitch: float = 0.6, device: torch.device | str = "cpu",
                   seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(t, teacher, student)``: ``n`` sorted parameters ``t`` drawn uniformly in
    ``[0, 4 pi]`` by a generator seeded with ``seed`` (float64, CPU), the teacher's points
    ``(cos t, sin t, pitch t)`` of shape ``(n, 3)`` and the student's ``t`` of shape
    ``(n, 1)``, both on ``device``."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.sort(4 * math.pi * torch.rand(n, generator=generator,
                                            dtype=torch.float64)).values
    teacher = torch.stack([t.cos(), t.sin(), pitch * t], dim=1).to(device)
    return t, teacher, t[:, None].to(device)


def chord(delta: torch.Tensor, pitch: float = 0.6) -> torch.Tensor:
    """``h(delta) = sqrt(2 - 2 cos delta + pitch^2 delta^2)``: the distance between two
    points of the helix whose parameters differ by ``delta``."""
    return (2 - 2 * delta.cos() + pitch**2 * delta.square()).sqrt()


def classical_mds(distances: torch.Tensor, dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Classical MDS of an ``(n, n)`` distance matrix: the eigenvalues of
    ``B = -1/2 J D∘D J`` in decreasing order, and the ``(n, dims)`` configuration of its
    top ``dims`` eigenvectors, scaled by the square roots of their eigenvalues."""
    n = len(distances)
    centring = torch.eye(n, dtype=distances.dtype, device=distances.device) - 1 / n
    gram = -0.5 * centring @ distances.square() @ centring
    eigenvalues, eigenvectors = torch.linalg.eigh(gram)
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    return eigenvalues, eigenvectors[:, :dims] * eigenvalues[:dims].sqrt()


def scaled_distance_error(target: torch.Tensor, distances: torch.Tensor) -> float:
    """``||target - s D|| / ||target||`` for the least-squares scale ``s``: how far the
    distances ``D`` are from a scaled copy of ``target``."""
    scale = (target * distances).sum() / distances.square().sum()
    return ((target - scale * distances).norm() / target.norm()).item()


def geometry_losses(student: torch.Tensor, teacher: torch.Tensor) -> dict[str, float]:
    """FitNet (with its best regressor: the least-squares affine map, in closed form), SP,
    RKD and RKD's distance term, evaluated at ``student`` (float64 features)."""
    fitnet = FitNet(student_dim=student.shape[1], teacher_dim=teacher.shape[1])
    fitnet = fitnet.double().to(student.device)
    design = torch.cat([student, torch.ones_like(student)], dim=1)
    solution = torch.linalg.lstsq(design.cpu(), teacher.cpu()).solution
    solution = solution.to(student.device)
    with torch.no_grad():
        fitnet.regressor.weight.copy_(solution[:-1].T)
        fitnet.regressor.bias.copy_(solution[-1])
        return {
            "FitNet (best regressor)": fitnet(student, teacher).item(),
            "SP": SimilarityPreserving()(student, teacher).item(),
            "RKD (weights 25 and 50)": RelationalKD()(student, teacher).item(),
            "RKD distance term": RelationalKD(1.0, angle_weight=0.0)(student,
                                                                     teacher).item(),
        }


def descent_scores(starts: Sequence[tuple[torch.Tensor, list]], teacher: torch.Tensor
                   ) -> Callable[[str, str, str], list[float]]:
    """``scores(who, protocol, score)`` over the starts of the RKD descent (each
    ``(points, history)``, history rows ``(step, loss, gap)``), for
    :func:`perceptcoh.book.claims.check_claims`; ``who`` and ``protocol`` are ignored.
    Scores: ``"loss after / before"``, ``"gap after"`` and ``"smallest k-NN agreement"``
    (over k = 1..10)."""
    table = {
        "loss after / before": [h[-1][1] / h[0][1] for _, h in starts],
        "gap after": [h[-1][2] for _, h in starts],
        "smallest k-NN agreement": [
            min(knn_agreement(p, teacher, k=k).item() for k in range(1, 11))
            for p, _ in starts],
    }
    return lambda who, protocol, score: table[score]


def plot_helix_and_line(t: torch.Tensor, teacher: torch.Tensor, student: torch.Tensor,
                        pitch: float = 0.6) -> None:
    """The teacher's helix in 3-D beside the student's line, points coloured by ``t``."""
    colours, n = t.numpy(), len(t)
    fig = plt.figure(figsize=(8, 2.6))
    grid_spec = fig.add_gridspec(1, 2, width_ratios=[1, 1.4])
    ax = fig.add_subplot(grid_spec[0], projection="3d")
    dense = torch.linspace(0, 4 * math.pi, 400, dtype=torch.float64)
    ax.plot(dense.cos(), dense.sin(), pitch * dense, color="0.8", lw=0.8)
    ax.scatter(*teacher.T.cpu().numpy(), c=colours, cmap="viridis", s=10)
    ax.set_title("teacher: a helix in $\\mathbb{R}^3$", fontsize=10)
    ax.set_xticks([]), ax.set_yticks([]), ax.set_zticks([])
    ax = fig.add_subplot(grid_spec[1])
    ax.scatter(student[:, 0].cpu(), torch.zeros(n), c=colours, cmap="viridis", s=10)
    ax.set_title("coherent student: the line $g(x_i) = t_i$", fontsize=10)
    ax.set_yticks([])
    ax.set_xlabel("$t$")
    fig.tight_layout()
    plt.show()


def plot_matrices(panels: dict[str, torch.Tensor]) -> None:
    """Square matrices side by side as images, each titled by its key."""
    fig, axes = plt.subplots(1, len(panels), figsize=(2.5 * len(panels), 2.8))
    for ax, (title, matrix) in zip(axes, panels.items()):
        image = ax.imshow(matrix.cpu(), cmap="magma")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    plt.show()


def plot_descent(points: torch.Tensor, history: Sequence[tuple], colours) -> None:
    """The 2-D student after the RKD descent, and its loss and perception gap by step."""
    steps, losses, gaps = zip(*history)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    axes[0].scatter(points[:, 0].cpu(), points[:, 1].cpu(), c=colours, cmap="viridis",
                    s=10)
    axes[0].set_title("2-D student after minimising RKD distances", fontsize=10)
    axes[0].set_aspect("equal", adjustable="datalim")
    axes[1].plot(steps, losses, color="C0")
    axes[1].set_ylabel("RKD distance term", color="C0")
    axes[1].set_xlabel("step")
    gap_axis = axes[1].twinx()
    gap_axis.plot(steps, gaps, color="C1")
    gap_axis.set_ylabel("perception gap", color="C1")
    axes[1].set_title("distance loss down, perception gap up", fontsize=10)
    fig.tight_layout()
    plt.show()
