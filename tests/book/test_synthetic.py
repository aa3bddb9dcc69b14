"""The synthetic chapter's experiment (perceptcoh.book.synthetic) on tiny budgets: the data
are what the chapter describes, the runs are reproducible and paired, Eckart-Young bounds
FitNet's loss, and the claims, table and figure work end to end."""

import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

from perceptcoh.book.synthetic import (
    DATASETS, LEARNING_RATES, LOSSES, Budget, across_seeds, check, compare, curved_sheet,
    gaussian_clusters, make_student, make_teacher, principal_plane)
from perceptcoh.book.synthetic import score_table, sheet_colours, show_embeddings

ROOT = Path(__file__).resolve().parents[2]
TINY = Budget(steps=3, batch_size=16, train_size=64, test_size=40)


def test_the_data_have_the_shapes_and_geometry_the_chapter_describes():
    (train, labels), (test, _) = gaussian_clusters(np.random.default_rng(0), 50, 20)
    assert train.shape == (50, 8) and test.shape == (20, 8)
    assert set(labels) <= set(range(6))
    (inputs, uv), _ = curved_sheet(np.random.default_rng(0), 30, 10)
    u, v = uv.T
    assert inputs.shape == (30, 5) and np.abs(uv).max() <= 1
    np.testing.assert_allclose(inputs, np.stack(
        [u, v, np.sin(3 * u), np.cos(3 * v), np.sin(2 * (u + v))], axis=1))


def test_the_teacher_is_frozen_and_the_student_is_two_dimensional():
    teacher, student = make_teacher(5), make_student(5)
    assert not any(p.requires_grad for p in teacher.parameters())
    assert teacher(torch.zeros(3, 5)).shape == (3, 64)
    assert student(torch.zeros(3, 5)).shape == (3, 2)


def test_principal_plane_residual_is_the_least_squares_bound():
    features = torch.randn(200, 10, generator=torch.Generator().manual_seed(0))
    project, residual = principal_plane(features)
    coordinates = project(features)
    # the best affine 2-D fit reaches the residual exactly
    design = torch.cat([coordinates, torch.ones(200, 1)], dim=1)
    solution = torch.linalg.lstsq(design, features).solution
    fitted = ((design @ solution - features) ** 2).mean().item()
    assert coordinates.shape == (200, 2) and fitted == pytest.approx(residual, rel=1e-4)
    # and any other plane does worse
    other = torch.cat([features[:, :2], torch.ones(200, 1)], dim=1)
    worse = ((other @ torch.linalg.lstsq(other, features).solution - features) ** 2).mean()
    assert worse.item() > residual


def test_across_seeds_is_reproducible_and_bounded_by_eckart_young():
    first = across_seeds("curved sheet", curved_sheet, [0, 1], TINY)
    again = across_seeds("curved sheet", curved_sheet, [0, 1], TINY)
    assert list(first.first.results) == ["teacher PCA", *LOSSES]
    assert first.first.results["PC"]["lr"] == LEARNING_RATES["curved sheet"]["PC"]
    for method in ["teacher PCA", *LOSSES]:
        np.testing.assert_array_equal(first.sample(method, "gap"),
                                      again.sample(method, "gap"))
    assert first.sample("PC", "gap").shape == (2,)
    np.testing.assert_allclose(first.sample("RKD / PC", "gap"),
                               first.sample("RKD", "gap") / first.sample("PC", "gap"))
    assert (first.fitnet_slack >= 0).all()
    claims = check([("sheet", "gap", "PC", "ahead of", "RKD"),
                    ("sheet", "kNN", "PC", "below", 2.0)], {"sheet": first}, "tiny")
    assert claims.results[0].name.startswith("sheet gap (lower is better)")
    assert claims.results[1].holds


def test_every_data_set_has_its_learning_rates():
    assert set(LEARNING_RATES) == set(DATASETS)
    assert all(set(rates) == set(LOSSES) for rates in LEARNING_RATES.values())


def test_learning_rates_are_the_validated_ones():
    """The chapter trains at the rates its saved validation sweep chose
    (scripts/synthetic_sweep.py), each inside the swept grid, not at its edge."""
    sweep = json.loads((ROOT / "results" / "synthetic-sweep.json").read_text())
    chosen = {data: entry["chosen"] for data, entry in sweep["sweep"].items()}
    assert LEARNING_RATES == chosen
    edges = (min(sweep["rates"]), max(sweep["rates"]))
    assert not [rate for rates in chosen.values() for rate in rates.values()
                if rate in edges]


def test_compare_takes_other_losses_and_rates():
    data = gaussian_clusters(np.random.default_rng(0), TINY.train_size, TINY.test_size)
    run = compare("clusters", data, 0, TINY, learning_rates={"PC": 1e-3},
                  losses={"PC": LOSSES["PC"]})
    assert list(run.results) == ["teacher PCA", "PC"] and run.results["PC"]["lr"] == 1e-3
    assert np.isnan(run.fitnet_loss)


def test_table_and_figure_render(monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.setattr("matplotlib.pyplot.show", lambda: None)
    data = curved_sheet(np.random.default_rng(0), TINY.train_size, TINY.test_size)
    run = compare("curved sheet", data, 0, TINY)
    html = score_table("curved sheet", run, TINY.test_size)._repr_html_()
    assert html.count("<tr>") == 6 and "seed 0" in html
    colours = sheet_colours(run.colour)
    assert colours.shape == (TINY.test_size, 3) and 0 <= colours.min() <= colours.max() <= 1
    show_embeddings("curved sheet", run, colours, shown=20)

