"""triplet_concordance and knn_agreement against loops over i, j, k."""

from __future__ import annotations

import math

import pytest
import torch

from perceptcoh.metrics import knn_agreement, triplet_concordance
from reference import dissimilarity_loops


def sign(value: float) -> int:
    return (value > 0) - (value < 0)


def concordance_loops(teacher, student, metric_teacher="euclidean", metric_student="euclidean"):
    df = dissimilarity_loops(teacher, teacher, metric_teacher)
    dg = dissimilarity_loops(student, student, metric_student)
    n = teacher.shape[0]
    agree = total = 0
    for i in range(n):
        for j in range(n):
            for k in range(n):
                if len({i, j, k}) < 3:
                    continue
                total += 1
                agree += sign(float(df[i, j] - df[i, k])) == sign(float(dg[i, j] - dg[i, k]))
    return agree / total


def knn_loops(teacher, student, k):
    df = dissimilarity_loops(teacher, teacher, "euclidean")
    dg = dissimilarity_loops(student, student, "euclidean")
    n = teacher.shape[0]
    total = 0
    for i in range(n):
        by_teacher = sorted((float(df[i, j]), j) for j in range(n) if j != i)[:k]
        by_student = sorted((float(dg[i, j]), j) for j in range(n) if j != i)[:k]
        total += len({j for _, j in by_teacher} & {j for _, j in by_student})
    return total / (n * k)


@pytest.mark.parametrize("chunk_size", [None, 1, 4])
def test_triplet_concordance_matches_loops_with_ties(chunk_size):
    teacher = torch.randint(-2, 3, (9, 2)).double()
    student = torch.randint(-2, 3, (9, 1)).double()
    expected = concordance_loops(teacher, student)
    got = triplet_concordance(student, teacher, chunk_size=chunk_size)
    assert math.isclose(float(got), expected, rel_tol=1e-12)


def test_triplet_concordance_with_cosine_and_extremes():
    teacher = torch.randn(10, 4, dtype=torch.float64)
    student = torch.randn(10, 3, dtype=torch.float64)
    expected = concordance_loops(teacher, student, "euclidean", "cosine")
    got = triplet_concordance(student, teacher, metric_student="cosine")
    assert math.isclose(float(got), expected, rel_tol=1e-12)
    assert float(triplet_concordance(3 * teacher + 1, teacher)) == 1.0


@pytest.mark.parametrize("k", [1, 3, 8])
def test_knn_agreement_matches_loops(k):
    teacher = torch.randn(12, 5, dtype=torch.float64)
    student = torch.randn(12, 2, dtype=torch.float64)
    assert math.isclose(float(knn_agreement(student, teacher, k=k, chunk_size=5)),
                        knn_loops(teacher, student, k), rel_tol=1e-12)
    assert float(knn_agreement(teacher, teacher @ torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64))[0], k=k)) == 1.0


def test_knn_agreement_rejects_bad_k():
    features = torch.randn(6, 2)
    for k in (0, 6, 2.0):
        with pytest.raises(ValueError, match="k must be an integer"):
            knn_agreement(features, features, k=k)
