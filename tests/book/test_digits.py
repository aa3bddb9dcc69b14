"""The seed study of the digits chapter: a 2-seed grid of tiny digits students, the beta
measurement against the chapter's first hand-written version, and the bookkeeping (tables,
paired intervals, per-seed winners and correlations, the fingerprint) on synthetic scores."""

from __future__ import annotations

from functools import partial

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn.functional as F

matplotlib.use("Agg")

from digits_runs import tiny  # noqa: E402
from perceptcoh.engine import DEFAULT_BETA, model_from_checkpoint, prepare  # noqa: E402
from perceptcoh.book.claims import check_claims  # noqa: E402
from perceptcoh.engine.data import normalize  # noqa: E402
from perceptcoh.engine.evaluate import extract_features  # noqa: E402
from perceptcoh.book.digits import gap_probe_plot, pca2, pca_grid  # noqa: E402
from perceptcoh.book.digits import (  # noqa: E402
    SeedStudy,
    beta_table,
    measure_beta,
    run_study,
    score_student,
    train_student,
)
from perceptcoh.stats import difference  # noqa: E402

RNG = np.random.default_rng(0)
SCORES = {  # 5 seeds of three methods; "b" is best on the probe, "a" on the gap
    "a": {"probe": 0.80 + RNG.normal(0, 0.01, 5), "gap": 0.10 + RNG.normal(0, 0.01, 5)},
    "b": {"probe": 0.85 + RNG.normal(0, 0.01, 5), "gap": 0.20 + RNG.normal(0, 0.01, 5)},
    "c": {"probe": 0.50 + RNG.normal(0, 0.01, 5), "gap": 0.30 + RNG.normal(0, 0.01, 5)},
}


def synthetic() -> SeedStudy:
    rows = {(m, "pure"): [{"probe": s["probe"][i], "gap": s["gap"][i], "seconds": 1.0 + i}
                          for i in range(5)] for m, s in SCORES.items()}
    return SeedStudy(list(range(5)), rows, seconds=3.0)


def config(method: str, protocol: str, seed: int, **fields):
    return tiny(method=method, protocol=protocol, seed=seed, epochs=1,
                model_options={"feature_dim": 4}, **fields)


@pytest.fixture(scope="module")
def trained_teacher(teacher):
    model, _ = model_from_checkpoint(teacher[0], torch.device("cpu"))
    return model


def test_values_cells_and_tables_are_mean_and_std_over_seeds():
    study = synthetic()
    assert np.array_equal(study.values("a", "pure", "probe"), SCORES["a"]["probe"])
    v = SCORES["b"]["gap"]
    assert study.cell("b", "pure", "gap") == f"{v.mean():.3f} ± {v.std(ddof=1):.3f}"
    html = study.table([("a", "pure", "A"), ("c", "pure", "C")], [("probe", "probe")], "cap")
    assert html.count("<tr>") == 3 and study.cell("c", "pure", "probe") in html
    assert study.mean_seconds(("a", "pure")) == 3.0


def test_intervals_are_the_paired_differences_of_perceptcoh_stats():
    study = synthetic()
    d, half = study.interval(("a", "pure"), ("b", "pure"), "probe")
    step = difference(SCORES["a"]["probe"], SCORES["b"]["probe"], paired=True)
    low, high = step.bounds(alpha=0.05)
    assert (d, half) == (step.d, (high - low) / 2)
    flipped, _ = study.interval(("a", "pure"), ("b", "pure"), "gap", lower_is_better=True)
    assert flipped == pytest.approx(np.mean(SCORES["b"]["gap"] - SCORES["a"]["gap"]))
    html = study.interval_table("a", {"b": "b", "C only": ("c", "pure")},
                                [("probe", "pure", "probe"), ("gap", "pure", "gap")],
                                {"gap"}, "cap")
    assert "<th>A minus</th>" in html and "<th>C only</th>" in html
    assert f"{flipped:+.3f} ± " in html


def test_winners_spearman_and_claims_on_derived_scores():
    study = synthetic()
    assert study.winners(["a", "b", "c"], "pure", "probe") == ["b"] * 5
    assert study.winners(["a", "b", "c"], "pure", "gap", lower_is_better=True) == ["a"] * 5
    rho = study.spearman(["a", "b", "c"], "pure", "gap", "probe")
    assert rho.shape == (5,) and np.all(np.abs(rho) <= 1)
    scipy_stats = pytest.importorskip("scipy.stats")
    for i in range(5):
        gaps = [SCORES[m]["gap"][i] for m in "abc"]
        probes = [SCORES[m]["probe"][i] for m in "abc"]
        assert rho[i] == pytest.approx(scipy_stats.spearmanr(gaps, probes)[0])
    study.derived["gap-probe", "per seed"] = {"spearman": rho}
    claims = check_claims([("pure", "probe", "b", "ahead of", "c"),
                           ("per seed", "spearman", "gap-probe", "below", 1.0)],
                          study.values, lower_is_better={"spearman"})
    assert claims.hold


def test_the_fingerprint_ignores_timings_and_derived_scores_only():
    study = synthetic()
    first = study.fingerprint(beta={"a": 1.0})
    study.rows["a", "pure"][0]["seconds"] = 99.0
    study.derived["x", "y"] = {"z": np.zeros(5)}
    assert study.fingerprint(beta={"a": 1.0}) == first
    assert study.fingerprint(beta={"a": 2.0}) != first
    study.rows["a", "pure"][0]["probe"] += 1e-12
    assert study.fingerprint(beta={"a": 1.0}) != first


def test_beta_table_shows_the_ratio_of_the_default_weight():
    html = beta_table({"rkd": 0.5}, caption="cap")
    assert f"<td>{DEFAULT_BETA['rkd'] / 0.5:.3g}</td>" in html and "<td>0.5</td>" in html


@pytest.mark.parametrize("method", ["pc", "kd"])
def test_measure_beta_equals_the_chapter_s_gradient_norms(trained_teacher, method):
    """The first version of the chapter measured the norms by hand; the engine's
    balanced_beta must give the same float."""
    session = prepare(config(method, "supervised", 0), teacher=trained_teacher)
    inputs = normalize(session.train_set.images[:64], *session.normalisation)
    labels = session.train_set.labels[:64]
    with torch.no_grad():
        teacher_features, teacher_logits = trained_teacher(inputs)
    features, logits = session.student(inputs)
    transfer = session.transfer_loss(logits, teacher_logits) if method == "kd" else \
        session.transfer_loss(features, teacher_features)
    parameters = list(session.student.parameters())

    def norm(loss):
        gradients = torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
        return torch.cat([g.flatten() for g in gradients if g is not None]).norm().item()

    expected = norm(F.cross_entropy(logits, labels)) / norm(transfer)
    assert measure_beta(config(method, "supervised", 0), trained_teacher) == expected


def test_a_two_seed_grid_trains_every_run_and_repeats_bit_for_bit(trained_teacher):
    test_set = prepare(config("ce", "supervised", 0)).test_set
    teacher_test, _ = extract_features(trained_teacher, test_set)
    grid = {("ce", "supervised"): partial(config, "ce", "supervised"),
            ("pc", "pure"): partial(config, "pc", "pure")}
    study = run_study([3, 4], grid, trained_teacher, teacher_test,
                      untrained=partial(config, "ce", "supervised"))
    assert set(study.rows) == {*grid, ("untrained", "-")}
    assert all(len(rows) == 2 for rows in study.rows.values())
    assert set(study.features) == set(grid)  # the first seed's, trained runs only
    assert study.features["pc", "pure"].shape == (len(test_set), 4)
    assert "top1" in study.rows["ce", "supervised"][0]
    assert "top1" not in study.rows["pc", "pure"][0]
    assert study.rows["untrained", "-"][0]["first_epoch_loss"] is None
    for rows in study.rows.values():
        for row in rows:
            assert 0 <= row["probe"] <= 1 and 0 <= row["knn"] <= 1 and row["gap"] >= 0
    row, _ = score_student(*train_student(config("pc", "pure", 4), trained_teacher),
                           teacher_test)
    again = study.rows["pc", "pure"][1]
    assert {k: v for k, v in row.items() if k != "seconds"} == \
        {k: v for k, v in again.items() if k != "seconds"}
    assert study.values("pc", "pure", "gap").shape == (2,)


def test_pca2_projects_on_the_two_largest_directions():
    points = np.random.default_rng(1).normal(size=(200, 3)) * np.array([5.0, 2.0, 0.1])
    projected = pca2(points)
    assert projected.shape == (200, 2)
    assert np.allclose(projected.mean(axis=0), 0)
    variances = projected.var(axis=0)
    assert variances[0] > variances[1] > 1 and variances.sum() > 0.99 * points.var(axis=0).sum()


def test_the_figures_have_a_panel_per_entry():
    rng = np.random.default_rng(2)
    panels = {name: rng.normal(size=(30, 4)) for name in ("teacher", "a", "b", "c")}
    figure = pca_grid(panels, rng.integers(0, 10, 30))
    assert sum(axis.axison for axis in figure.axes) == 4 and len(figure.axes) == 6
    figure = gap_probe_plot(synthetic(), [(m, "pure", m) for m in "abc"], highlight="a")
    assert len(figure.axes[0].containers) == 3  # one errorbar per entry
    assert "5 seeds" in figure.axes[0].get_title()
