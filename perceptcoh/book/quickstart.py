"""The quickstart's transfer problem (``book/quickstart.ipynb``): four clusters of
16-dimensional inputs, a frozen random teacher with 32 features and a student with 2,
drawn from one seed; how many of each point's neighbours share its cluster; the claims'
per-seed scores and the before/after figure.

    problem = clusters_problem(seed=0, device=device)
    ...train problem.student against problem.teacher(problem.train_inputs)...
    result = problem.outcome(before, after)   # held-out features, gaps, labels
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch
from torch import nn

from ..dissimilarity import dissimilarity
from ..perception import perception_gap

__all__ = ["ClustersProblem", "clusters_problem", "same_cluster_neighbours",
           "seed_scores", "plot_before_after"]


@dataclass
class ClustersProblem:
    """Labelled train and test inputs from the same clusters, a frozen teacher and an
    untrained student (features of 32 and, by default, 2 dimensions)."""

    labels: torch.Tensor
    train_inputs: torch.Tensor
    test_inputs: torch.Tensor
    teacher: nn.Module
    student: nn.Module

    def outcome(self, before: torch.Tensor, after: torch.Tensor) -> dict:
        """What the quickstart looks at: the labels, the teacher's and the student's
        held-out features (``before`` and ``after`` training) and the two perception gaps
        to the teacher."""
        teacher = self.teacher(self.test_inputs)
        return {"labels": self.labels, "teacher": teacher, "before": before,
                "after": after, "gap_before": perception_gap(before, teacher).item(),
                "gap_after": perception_gap(after, teacher).item()}


def clusters_problem(seed: int, device: torch.device | str = "cpu", *,
                     num_clusters: int = 4, per_cluster: int = 48,
                     input_dim: int = 16, student_dim: int = 2) -> ClustersProblem:
    """Draw the clusters' centres, train and test inputs, the teacher and the student from
    ``seed``, in that order, on the CPU (so every device starts from the same numbers),
    then move them to ``device``."""
    torch.manual_seed(seed)
    centres = 2.0 * torch.randn(num_clusters, input_dim)
    labels = torch.arange(num_clusters).repeat_interleave(per_cluster)
    train_inputs = (centres[labels] + torch.randn(len(labels), input_dim)).to(device)
    test_inputs = (centres[labels] + torch.randn(len(labels), input_dim)).to(device)
    teacher = nn.Sequential(nn.Linear(input_dim, 128), nn.ReLU(), nn.Linear(128, 32))
    teacher = teacher.to(device).requires_grad_(False)
    student = nn.Sequential(nn.Linear(input_dim, 32), nn.ReLU(),
                            nn.Linear(32, student_dim))
    return ClustersProblem(labels, train_inputs, test_inputs, teacher, student.to(device))


def same_cluster_neighbours(features: torch.Tensor, labels: torch.Tensor,
                            k: int = 5) -> float:
    """Fraction of each point's ``k`` nearest neighbours (euclidean) that share its label;
    ``labels`` on the CPU."""
    distances = dissimilarity(features).fill_diagonal_(float("inf"))
    neighbours = distances.topk(k, largest=False).indices.cpu()
    return (labels[neighbours] == labels[:, None]).double().mean().item()


def seed_scores(results: Sequence[dict]) -> Callable[[str, str, str], list[float]]:
    """``scores(who, protocol, score)`` over the seeds' :meth:`ClustersProblem.outcome`
    for :func:`perceptcoh.book.claims.check_claims` (``protocol`` is ignored): score
    ``"gap after / before"`` of the ``"student"``, and ``"same-cluster 5-NN"`` of the
    ``"teacher"``, the student ``"before"`` and ``"after"`` training."""
    table = {("student", "gap after / before"):
             [r["gap_after"] / r["gap_before"] for r in results]}
    for who in ("teacher", "before", "after"):
        table[who, "same-cluster 5-NN"] = [
            same_cluster_neighbours(r[who], r["labels"]) for r in results]
    return lambda who, protocol, score: table[who, score]


def plot_before_after(result: dict) -> None:
    """The student's held-out features before and after training, coloured by
    cluster."""
    fig, axes = plt.subplots(1, 2, figsize=(6, 2.6))
    for ax, when, title in [(axes[0], "before", "before"),
                            (axes[1], "after", "after 100 steps")]:
        embedding = result[when].cpu()
        ax.scatter(embedding[:, 0], embedding[:, 1], c=result["labels"], cmap="tab10",
                   vmax=9, s=8)
        ax.set_title(f"{title} (gap {result['gap_' + when]:.2f})", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Student features of held-out inputs, coloured by cluster", fontsize=10)
    fig.tight_layout()
    plt.show()
