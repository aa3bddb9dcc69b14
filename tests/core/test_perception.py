"""dissimilarity, perception and perception_gap against brute force, and their invariances."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from perceptcoh import dissimilarity, perception, perception_gap, ranking
from reference import dissimilarity_loops, gap_loops, ranks_loops

METRICS = ["euclidean", "sqeuclidean", "cosine"]


def integer_grid(n: int, p: int, seed: int, high: int = 4) -> torch.Tensor:
    """Points on a small integer grid: many exact ties, and exact float64 arithmetic."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(-high, high + 1, (n, p), generator=generator).double()


# Small integer grids: hypothesis explores duplicates and tied distances. Every built-in
# computation on them is exact in float64, so ranks must agree exactly.
grid_points = st.integers(3, 9).flatmap(
    lambda n: st.integers(1, 3).flatmap(
        lambda p: arrays("float64", (n, p), elements=st.integers(-3, 3).map(float))
    )
)


@pytest.mark.parametrize("metric", METRICS)
def test_dissimilarity_matches_loops(metric):
    x = torch.randn(6, 4, dtype=torch.float64)
    y = torch.randn(5, 4, dtype=torch.float64)
    torch.testing.assert_close(dissimilarity(x, y, metric), dissimilarity_loops(x, y, metric))
    square = dissimilarity(x, metric=metric)
    torch.testing.assert_close(square, dissimilarity_loops(x, x, metric), atol=1e-7, rtol=1e-7)
    assert torch.all(square.diagonal() == 0)


def test_dissimilarity_callable_and_dtypes():
    x = torch.randn(5, 3)
    manhattan = dissimilarity(x, metric=lambda a, b: torch.cdist(a, b, p=1))
    torch.testing.assert_close(manhattan, torch.cdist(x, x, p=1))
    assert dissimilarity(x.bfloat16()).dtype == torch.float32
    assert dissimilarity(x.double()).dtype == torch.float64


def test_euclidean_gradient_is_finite_at_zero_distance():
    x = torch.tensor([[0.0, 1.0], [0.0, 1.0], [2.0, 0.0]], requires_grad=True)
    dissimilarity(x).sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean"])
@pytest.mark.parametrize("seed", [0, 1])
def test_perception_matches_loops_with_ties(metric, seed):
    x = integer_grid(12, 2, seed)
    expected = ranks_loops(dissimilarity_loops(x, x, metric))
    torch.testing.assert_close(perception(x, metric), expected, rtol=0, atol=0)


def test_perception_cosine_matches_loops():
    # Cosines are not exact in floating point, so this one is on tie-free Gaussian data.
    x = torch.randn(12, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    expected = ranks_loops(dissimilarity_loops(x, x, "cosine"))
    torch.testing.assert_close(perception(x, "cosine"), expected, rtol=0, atol=0)


def test_perception_values_and_dtype():
    x = integer_grid(10, 3, seed=3)
    ranks = perception(x)
    n = x.shape[0]
    assert ranks.dtype == torch.float64
    assert torch.all(ranks.diagonal() == 0)
    off_diagonal = ranks[~torch.eye(n, dtype=torch.bool)]
    assert torch.all(off_diagonal >= 1 / (n - 1)) and torch.all(off_diagonal <= 1)
    # every row's largest rank is 1: the farthest point is at most as far as itself
    assert torch.all(ranks.max(dim=1).values == 1)
    assert perception(x.float()).dtype == torch.float32


def test_all_ties_give_rank_one():
    x = torch.zeros(5, 2)
    ranks = perception(x)
    assert torch.all(ranks == 1 - torch.eye(5))


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 64])
def test_perception_chunked_equals_unchunked(chunk_size):
    x = integer_grid(20, 2, seed=5)
    torch.testing.assert_close(perception(x, chunk_size=chunk_size), ranks_loops(
        dissimilarity_loops(x, x, "euclidean")), rtol=0, atol=0)


@given(grid_points)
@settings(max_examples=40, deadline=None)
def test_perception_monotone_transform_invariance(points):
    x = torch.from_numpy(points)
    base = perception(x, "euclidean")
    assert torch.equal(perception(x, "sqeuclidean"), base)
    assert torch.equal(perception(x, lambda a, b: torch.exp(torch.cdist(a, b) ** 2) - 1), base)


@given(grid_points, st.integers(-5, 5), st.sampled_from([0.25, 0.5, 2.0, 8.0]))
@settings(max_examples=40, deadline=None)
def test_perception_translation_scaling_and_axis_symmetries(points, shift, scale):
    x = torch.from_numpy(points)
    base = perception(x)
    # translations by integers, scalings by powers of 2, and the signed permutations of
    # the axes (orthogonal maps) are exact in float64 on a grid, so ties survive exactly.
    assert torch.equal(perception(x + shift), base)
    assert torch.equal(perception(x * scale), base)
    signed_permutation = x[:, torch.randperm(x.shape[1])] * torch.tensor(
        [(-1.0) ** k for k in range(x.shape[1])], dtype=torch.float64
    )
    assert torch.equal(perception(signed_permutation), base)


@given(grid_points, st.integers(0, 2**31 - 1))
@settings(max_examples=40, deadline=None)
def test_perception_permutation_equivariance(points, seed):
    x = torch.from_numpy(points)
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    assert torch.equal(perception(x[order]), perception(x)[order][:, order])


@given(st.integers(0, 2**31 - 1))
@settings(max_examples=25, deadline=None)
def test_perception_rotation_invariance(seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(15, 4, dtype=torch.float64, generator=generator)
    rotation, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64, generator=generator))
    # A general rotation is not exact in floating point: only near-ties could flip, and
    # Gaussian points have none closer than ~1e-6 with overwhelming probability.
    distances = dissimilarity_loops(x, x, "euclidean")
    gaps = distances.sort(dim=1).values.diff(dim=1)
    if gaps.min() < 1e-9:
        return
    assert torch.equal(perception(3.0 * x @ rotation + 1.5), perception(x))


def test_cosine_and_angle_give_identical_perceptions():
    x = torch.randn(16, 5, dtype=torch.float64)
    angle = lambda a, b: torch.arccos((1 - dissimilarity(a, b, "cosine")).clamp(-1, 1))
    assert torch.equal(perception(x, angle), perception(x, "cosine"))


@pytest.mark.parametrize("r", [1, 2])
@pytest.mark.parametrize("metric_student", ["euclidean", "cosine"])
def test_perception_gap_matches_loops(r, metric_student):
    teacher = integer_grid(11, 3, seed=7)
    student = torch.randn(11, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    expected = gap_loops(
        ranks_loops(dissimilarity_loops(teacher, teacher, "euclidean")),
        ranks_loops(dissimilarity_loops(student, student, metric_student)),
        r,
    )
    got = perception_gap(student, teacher, metric_student=metric_student, r=r, chunk_size=4)
    assert got.dtype == torch.float64
    assert math.isclose(float(got), expected, rel_tol=1e-12, abs_tol=1e-12)


def test_perception_gap_zero_for_coherent_maps_and_positive_otherwise():
    x = torch.randn(30, 6, dtype=torch.float64)
    rotation, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    assert float(perception_gap(2.0 * x @ rotation - 1.0, x)) == 0.0
    assert float(perception_gap(x[:, :2], x)) > 0.0
    assert float(perception_gap(x, x, metric_student="sqeuclidean")) == 0.0


def test_perception_runs_on_20000_points_in_bounded_memory():
    # The result itself is 20,000^2 float32 (1.6 GB); the work per chunk stays small.
    x = torch.randn(20_000, 8)
    ranks = perception(x)
    assert ranks.shape == (20_000, 20_000)
    assert torch.all(ranks.max(dim=1).values == 1)


# The two fast counting paths of perceptcoh.ranking.exact_ranks, against the loop reference
# on values with many exact ties. On a CPU exact_ranks counts with NumPy (float32 rows by one
# integer sort of packed (value bits, column) keys; float64 rows by argsort); on a GPU with
# _at_most_counts_torch (sort + searchsorted). The torch path runs on a CPU tensor too, so
# "torch" below routes exact_ranks through it on the CPU.

# Values exact in float32 and float64 alike, with ties and the orderings bit packing must
# get right: -0.0 ties with +0.0, the smallest subnormal and normal numbers, neighbours of
# 1.0 one float32 ulp apart, and large values.
TIE_VALUES = [0.0, -0.0, 2.0**-149, 2.0**-126, 0.5, 1.0, 1.0 + 2.0**-23, 1.0 - 2.0**-24,
              2.0, 3.0, 2.0**100]


def tied_matrix(rows: int, columns: int, seed: int) -> torch.Tensor:
    """A float64 matrix drawn from TIE_VALUES (every row has ties once columns > 11)."""
    generator = torch.Generator().manual_seed(seed)
    pool = torch.tensor(TIE_VALUES, dtype=torch.float64)
    return pool[torch.randint(len(pool), (rows, columns), generator=generator)]


@pytest.fixture(params=["numpy", "torch"])
def counting_path(request, monkeypatch):
    """Which counting path exact_ranks takes on this CPU tensor."""
    if request.param == "torch":
        monkeypatch.setattr(ranking, "_at_most_counts_numpy",
                            lambda rows: ranking._at_most_counts_torch(
                                torch.from_numpy(rows)).numpy())
    return request.param


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [3, 4, 12, 37, 80])
@pytest.mark.parametrize("seed", [0, 1])
def test_exact_ranks_fast_paths_match_loops_on_ties(counting_path, dtype, n, seed):
    distances = tied_matrix(n, n, seed + 100 * n)
    assert torch.equal(distances.to(dtype).double(), distances)  # the values are exact
    # ranks_loops (float64, loops over i, j, k) on a NumPy array: fast enough at n = 80.
    expected_counts = (ranks_loops(distances.numpy()) * (n - 1)).round()
    expected = expected_counts.to(dtype) / (n - 1)  # as the library divides, in its dtype
    # The whole matrix, and row blocks with the anchors' own columns inside them.
    got = ranking.exact_ranks(distances.to(dtype), torch.arange(n))
    assert got.dtype == dtype
    assert torch.equal(got, expected)
    for start, stop in [(0, 1), (1, n // 2 + 1), (n // 2, n)]:
        block = ranking.exact_ranks(distances[start:stop].to(dtype), torch.arange(start, stop))
        assert torch.equal(block, expected[start:stop])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 2), (5, 3), (7, 64), (3, 300)])
def test_at_most_counts_match_loops_on_ties_and_infinities(dtype, shape):
    # The counting kernels themselves, on rectangular blocks with several +inf per row (the
    # masked self column, and any inf: every count over them is the row's length).
    rows, columns = shape
    values = tied_matrix(rows, columns, seed=columns)
    values[:, :: max(1, columns // 3)] = float("inf")
    expected = torch.tensor([[sum(1 for k in range(columns) if row[k] <= row[j])
                              for j in range(columns)] for row in values.tolist()])
    torch_counts = ranking._at_most_counts_torch(values.to(dtype))
    numpy_counts = torch.from_numpy(ranking._at_most_counts_numpy(values.to(dtype).numpy()))
    assert torch.equal(torch_counts, expected)
    assert torch.equal(numpy_counts, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", [0, 1])
def test_perception_of_duplicated_points_matches_loops_on_both_paths(counting_path, dtype,
                                                                       seed):
    # Every point twice, on an integer grid: zero distances off the diagonal and tied rows.
    # Small-integer coordinates keep the Gram matrix exact in float32 as in float64.
    x = integer_grid(15, 2, seed, high=3)
    x = torch.cat([x, x[torch.randperm(15, generator=torch.Generator().manual_seed(seed))]])
    n = x.shape[0]
    expected_counts = (ranks_loops(dissimilarity_loops(x, x, "sqeuclidean").numpy())
                       * (n - 1)).round()
    expected = expected_counts.to(dtype) / (n - 1)
    for metric in ("euclidean", "sqeuclidean"):
        assert torch.equal(perception(x.to(dtype), metric, chunk_size=7), expected), metric
