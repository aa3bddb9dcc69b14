"""Slow brute-force references, written plainly from SPEC.md with loops over i, j, k.

Nothing here calls the library: each function restates a formula with Python loops over
float64 scalars so that the tests compare two independent implementations.
"""

from __future__ import annotations

import math

import torch


def dissimilarity_loops(x: torch.Tensor, y: torch.Tensor, metric: str) -> torch.Tensor:
    n, m = x.shape[0], y.shape[0]
    out = torch.zeros(n, m, dtype=torch.float64)
    for i in range(n):
        for j in range(m):
            a, b = x[i].tolist(), y[j].tolist()
            squared = sum((u - v) ** 2 for u, v in zip(a, b))
            if metric == "sqeuclidean":
                out[i, j] = squared
            elif metric == "euclidean":
                out[i, j] = math.sqrt(squared)
            elif metric == "cosine":
                dot = sum(u * v for u, v in zip(a, b))
                norms = math.sqrt(sum(u * u for u in a)) * math.sqrt(sum(v * v for v in b))
                out[i, j] = 1 - dot / norms
            else:
                raise AssertionError(metric)
    return out


def ranks_loops(distances: torch.Tensor) -> torch.Tensor:
    """R_ij = 1/(n-1) #{k != i : D_ik <= D_ij}, R_ii = 0."""
    n = distances.shape[0]
    ranks = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            count = sum(1 for k in range(n) if k != i and distances[i, k] <= distances[i, j])
            ranks[i, j] = count / (n - 1)
    return ranks


def gap_loops(teacher_ranks: torch.Tensor, student_ranks: torch.Tensor, r: int) -> float:
    n = teacher_ranks.shape[0]
    total = 0.0
    for i in range(n):
        for j in range(n):
            if i != j:
                total += abs(float(teacher_ranks[i, j]) - float(student_ranks[i, j])) ** r
    return total / (n * (n - 1))


def soft_ranks_loops(distances: torch.Tensor, tau: float) -> torch.Tensor:
    """S_ij = 1/(n-1) (1 + sum_{k != i,j} sigmoid((D_ij - D_ik) / (tau s_i))), s_i = row mean."""
    n = distances.shape[0]
    soft = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        scale = sum(float(distances[i, k]) for k in range(n) if k != i) / (n - 1)
        for j in range(n):
            if i == j:
                continue
            total = 1.0
            for k in range(n):
                if k in (i, j):
                    continue
                z = (float(distances[i, j]) - float(distances[i, k])) / (tau * scale)
                total += 1 / (1 + math.exp(-z))
            soft[i, j] = total / (n - 1)
    return soft


def loss_loops(student_distances, teacher_distances, tau, r, teacher_tau=0.0) -> float:
    """L = 1/(B(B-1)) sum_{i != j} |S_ij - T_ij|^r (SPEC section 5)."""
    soft = soft_ranks_loops(student_distances, tau)
    if teacher_tau > 0:
        target = soft_ranks_loops(teacher_distances, teacher_tau)
    else:
        target = ranks_loops(teacher_distances)
    return gap_loops(target, soft, r)


def loss_loops_autograd(student: torch.Tensor, teacher: torch.Tensor, metric_student: str,
                        metric_teacher: str, tau: float, r: int, teacher_tau: float = 0.0
                        ) -> torch.Tensor:
    """The same loss with torch scalars in the loops, so that autograd differentiates it
    end to end: the student's dissimilarities, the row means ``s_i`` (not detached) and every
    sigmoid. The teacher side carries no gradient."""
    n = student.shape[0]

    def distance(a: torch.Tensor, b: torch.Tensor, metric: str) -> torch.Tensor:
        squared = ((a - b) ** 2).sum()
        if metric == "sqeuclidean":
            return squared
        if metric == "euclidean":
            return squared.sqrt() if squared > 0 else squared
        if metric == "cosine":
            return 1 - (a * b).sum() / (a.norm() * b.norm())
        raise AssertionError(metric)

    def soft_row(row: list, i: int, temperature: float) -> list:
        scale = sum(row[k] for k in range(n) if k != i) / (n - 1)
        soft = []
        for j in range(n):
            if j == i:
                soft.append(None)
                continue
            total = 1.0
            for k in range(n):
                if k not in (i, j):
                    total = total + torch.sigmoid((row[j] - row[k]) / (temperature * scale))
            soft.append(total / (n - 1))
        return soft

    teacher_distances = dissimilarity_loops(teacher.detach(), teacher.detach(), metric_teacher)
    if teacher_tau > 0:
        target = soft_ranks_loops(teacher_distances, teacher_tau)
    else:
        target = ranks_loops(teacher_distances)
    total = 0.0
    for i in range(n):
        row = [distance(student[i], student[j], metric_student) for j in range(n)]
        soft = soft_row(row, i, tau)
        for j in range(n):
            if j != i:
                total = total + (soft[j] - float(target[i, j])).abs() ** r
    return total / (n * (n - 1))
