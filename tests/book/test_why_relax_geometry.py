"""The helix of "Why relax the geometry": the chapter's draws, the chord formula, classical
MDS, the scaled distance error, the losses at the coherent line and the descent's
scores."""

import math

import torch

from perceptcoh import dissimilarity, perception
from perceptcoh.book import why_relax_geometry


def test_helix_and_line_are_the_chapter_draws():
    t, teacher, student = why_relax_geometry.helix_and_line(40, 0.6)
    generator = torch.Generator().manual_seed(0)
    expected = torch.sort(4 * math.pi * torch.rand(40, generator=generator,
                                                   dtype=torch.float64)).values
    assert torch.equal(t, expected) and torch.equal(student[:, 0], t)
    assert torch.equal(teacher[:, 2], 0.6 * t)
    assert torch.allclose(dissimilarity(teacher), why_relax_geometry.chord(dissimilarity(student)),
                          rtol=1e-9, atol=1e-9)
    assert torch.equal(perception(teacher), perception(student))


def test_classical_mds_recovers_a_planar_configuration():
    points = torch.randn(12, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    D = dissimilarity(points)
    eigenvalues, embedding = why_relax_geometry.classical_mds(D, dims=2)
    assert (eigenvalues[:-1] >= eigenvalues[1:]).all()
    assert eigenvalues[2:].abs().max() < 1e-9 * eigenvalues[0]
    assert torch.allclose(dissimilarity(embedding), D, atol=1e-9)
    assert why_relax_geometry.scaled_distance_error(D, 3 * D) < 1e-12
    assert why_relax_geometry.scaled_distance_error(D, D.sqrt()) > 0.01


def test_geometry_losses_vanish_only_where_they_can():
    student = torch.linspace(0, 1, 10, dtype=torch.float64)[:, None]
    affine = torch.cat([2 * student + 1, -student, 3 * student], dim=1)
    losses = why_relax_geometry.geometry_losses(student, affine)
    assert losses["FitNet (best regressor)"] < 1e-20
    assert losses["RKD distance term"] < 1e-12
    _, teacher, line = why_relax_geometry.helix_and_line()
    assert all(value > 1e-6 for value in why_relax_geometry.geometry_losses(line, teacher).values())


def test_descent_scores_per_start():
    _, teacher, line = why_relax_geometry.helix_and_line()
    points = torch.cat([line, torch.zeros_like(line)], dim=1)
    starts = [(points, [(0, 2.0, 0.0), (5, 1.0, 0.2)])] * 2
    scores = why_relax_geometry.descent_scores(starts, teacher)
    assert scores("RKD descent", "10 starts", "loss after / before") == [0.5, 0.5]
    assert scores("RKD descent", "10 starts", "gap after") == [0.2, 0.2]
    assert scores("RKD descent", "10 starts", "smallest k-NN agreement") == [1.0, 1.0]
