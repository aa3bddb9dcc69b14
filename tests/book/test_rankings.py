"""The checks of "Rankings on a finite set": the literal definition and SciPy agree with
perception, repeated values are counted, and nearest neighbours are read off the ranks
exactly when rows have no ties."""

import torch

from perceptcoh import dissimilarity, perception
from perceptcoh.book import rankings


def test_definition_scipy_and_perception_agree_with_ties():
    generator = torch.Generator().manual_seed(2)
    points = torch.randint(0, 3, (12, 2), generator=generator).double()
    D = dissimilarity(points)
    assert rankings.repeated_values(D) > 0
    R = perception(points)
    assert torch.equal(R, rankings.ranks_by_counting(D))
    assert torch.equal(R, rankings.ranks_by_scipy(D))


def test_repeated_values_counts_within_rows():
    D = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 2.0], [1.0, 2.0, 0.0]])
    assert rankings.repeated_values(D) == 1


def test_neighbours_from_ranks():
    generator = torch.Generator().manual_seed(3)
    cloud = torch.randn(25, 2, generator=generator, dtype=torch.float64)
    assert rankings.neighbours_from_ranks(cloud)
    line = torch.tensor([[0.0], [1.0], [2.0], [5.0]], dtype=torch.float64)
    assert not rankings.neighbours_from_ranks(line)  # 1 is equidistant from 0 and 2


def test_plot_returns_the_two_rows():
    import matplotlib
    matplotlib.use("Agg")
    cloud = torch.randn(20, 2, generator=torch.Generator().manual_seed(4),
                        dtype=torch.float64)
    row, row_squared = rankings.plot_anchor_ranks(cloud, 0)
    assert torch.equal(row, row_squared) and torch.equal(row, perception(cloud)[0])
