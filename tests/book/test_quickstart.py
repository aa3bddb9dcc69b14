"""The quickstart's transfer problem: the same draws as the chapter's original cell, in
the same order; neighbour purity; the per-seed scores its claims read."""

import torch
from torch import nn

from perceptcoh import perception_gap
from perceptcoh.book.quickstart import (clusters_problem, same_cluster_neighbours,
                                            seed_scores)


def test_draws_are_those_of_the_chapter_in_order():
    problem = clusters_problem(3)
    torch.manual_seed(3)
    centres = 2.0 * torch.randn(4, 16)
    labels = torch.arange(4).repeat_interleave(48)
    train = centres[labels] + torch.randn(len(labels), 16)
    test = centres[labels] + torch.randn(len(labels), 16)
    teacher = nn.Sequential(nn.Linear(16, 128), nn.ReLU(), nn.Linear(128, 32))
    student = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))
    assert torch.equal(problem.labels, labels)
    assert torch.equal(problem.train_inputs, train) and torch.equal(problem.test_inputs, test)
    for mine, theirs in [(problem.teacher, teacher), (problem.student, student)]:
        for a, b in zip(mine.parameters(), theirs.parameters()):
            assert torch.equal(a, b)
    assert not any(p.requires_grad for p in problem.teacher.parameters())
    assert clusters_problem(3, student_dim=5).student[-1].out_features == 5


def test_outcome_gaps_and_purity():
    problem = clusters_problem(0)
    with torch.no_grad():
        before = problem.student(problem.test_inputs)
    result = problem.outcome(before, before.clone())
    assert result["gap_before"] == result["gap_after"] == perception_gap(
        before, problem.teacher(problem.test_inputs)).item()
    separated = torch.tensor([[0.0], [0.1], [0.2], [10.0], [10.1], [10.2]])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    assert same_cluster_neighbours(separated, labels, k=2) == 1.0
    assert same_cluster_neighbours(separated, torch.tensor([0, 1, 0, 1, 0, 1]), k=2) < 0.5


def test_seed_scores_read_each_seed():
    features = torch.cat([torch.zeros(6, 1), torch.full((6, 1), 9.0)]) + \
        torch.linspace(0, 1, 12)[:, None]
    result = {"gap_before": 0.4, "gap_after": 0.1, "labels": torch.tensor([0] * 6 + [1] * 6),
              "teacher": features, "before": features.flip(0), "after": features}
    scores = seed_scores([result, result])
    assert scores("student", "held-out", "gap after / before") == [0.25, 0.25]
    assert scores("after", "held-out", "same-cluster 5-NN") == [1.0, 1.0]
    assert scores("before", "held-out", "same-cluster 5-NN") == [
        same_cluster_neighbours(result["before"], result["labels"])] * 2
