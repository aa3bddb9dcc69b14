"""perceptcoh.stats against scipy's Welch test, and the two claims' logic."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as scipy_stats

from perceptcoh.stats import ahead, difference, exceeds, on_par, rerun_holds

A = [0.91, 0.93, 0.90, 0.94, 0.92, 0.95]
B = [0.85, 0.88, 0.86, 0.90, 0.84]


def welch_interval(a, b, confidence):
    return scipy_stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence_level=confidence)


@pytest.mark.parametrize("alpha", [0.05, 0.025, 0.1])
def test_interval_is_scipys_welch_interval(alpha):
    low, high = difference(A, B).bounds(alpha)
    reference = welch_interval(A, B, 1 - 2 * alpha)
    assert np.isclose(low, reference.low, rtol=1e-12) and np.isclose(high, reference.high, rtol=1e-12)


def test_ahead_is_the_one_sided_welch_test():
    for a, b in [(A, B), (B, A), (A, A)]:
        claim = ahead(a, b, "a > b")
        p_value = scipy_stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue
        assert claim.holds == (p_value < 0.05), (a, b, p_value)
    assert ahead(B, A, "b lower", lower_is_better=True).holds


def test_tolerance_turns_ahead_into_non_inferiority():
    d = np.mean(B) - np.mean(A)  # B is behind A by about 0.055
    assert not ahead(B, A, "superior").holds
    assert not ahead(B, A, "within 0.05", tolerance=0.05).holds
    assert ahead(B, A, "within 0.15", tolerance=0.15).holds
    assert ahead(B, A, "x", tolerance=0.15).threshold == -0.15 and d < 0


def test_on_par_is_two_one_sided_tests():
    close = [x + 0.002 for x in A]
    for delta in (0.005, 0.01, 0.03, 0.1):
        claim = on_par(A, close, delta, "on par")
        low, high = welch_interval(A, close, 0.9)
        assert claim.holds == (-delta < low and high < delta), delta
        tost = max(
            scipy_stats.ttest_ind(A, [x - delta for x in close], equal_var=False, alternative="greater").pvalue,
            scipy_stats.ttest_ind(A, [x + delta for x in close], equal_var=False, alternative="less").pvalue,
        )
        assert claim.holds == (tost < 0.05), delta
    assert not on_par(A, B, 0.03, "far apart").holds


def test_margin_is_in_standard_errors_and_signed():
    claim = ahead(A, B, "a > b")
    assert claim.margin == pytest.approx(claim.statistic / claim.se)
    assert ahead(B, A, "b > a").margin < 0
    par = on_par(A, A, 0.05, "same")
    assert par.margin == pytest.approx((0.05 - par.statistic) / par.se) and par.margin > 0


def test_bad_samples_are_refused_by_name():
    with pytest.raises(ValueError, match="a must be a 1-d sequence of at least 2"):
        ahead([0.9], B, "one seed")
    with pytest.raises(ValueError, match="b holds a non-finite score"):
        ahead(A, [0.8, float("nan")], "nan")
    with pytest.raises(ValueError, match="delta must be a positive tolerance"):
        on_par(A, B, 0.0, "no tolerance")
    with pytest.raises(ValueError, match="tolerance must be >= 0"):
        ahead(A, B, "negative", tolerance=-0.1)


def test_claims_are_logged_when_asked(tmp_path, monkeypatch):
    log = tmp_path / "claims.jsonl"
    monkeypatch.setenv("PERCEPTCOH_CLAIMS_LOG", str(log))
    first, second = ahead(A, B, "first"), on_par(A, A, 0.05, "second")
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [row["name"] for row in rows] == ["first", "second"]
    assert rows[0]["statistic"] == first.statistic and rows[1]["margin"] == second.margin


def test_exceeds_is_the_one_sample_one_sided_test():
    for threshold in (0.90, 0.92, 0.93, 0.95):
        above = scipy_stats.ttest_1samp(A, threshold, alternative="greater").pvalue < 0.05
        below = scipy_stats.ttest_1samp(A, threshold, alternative="less").pvalue < 0.05
        assert exceeds(A, threshold, "above").holds == above, threshold
        assert exceeds(A, threshold, "below", lower_is_better=True).holds == below, threshold
    low, high = scipy_stats.ttest_1samp(A, 0.9).confidence_interval(confidence_level=0.9)
    assert np.isclose(exceeds(A, 0.9, "x").statistic, low - 0.9, rtol=1e-12)
    assert np.isclose(exceeds(A, 0.99, "x", lower_is_better=True).statistic, 0.99 - high, rtol=1e-12)


def test_paired_is_the_paired_t_test():
    a, b = A[:5], B
    low, high = scipy_stats.ttest_rel(a, b).confidence_interval(confidence_level=0.9)
    claim = on_par(a, b, 0.2, "paired", paired=True)
    assert np.isclose(claim.statistic, max(abs(low), abs(high)), rtol=1e-12)
    p_value = scipy_stats.ttest_rel(a, b, alternative="greater").pvalue
    assert ahead(a, b, "paired", paired=True).holds == (p_value < 0.05)
    with pytest.raises(ValueError, match="paired samples need one score per seed on both sides, got 6 and 5"):
        ahead(A, B, "unequal", paired=True)


def test_holm_matches_its_step_down_definition():
    from perceptcoh.stats import holm

    # m = 4: thresholds 0.0125, 0.0167, 0.025, 0.05 for the sorted p-values.
    assert holm([0.01, 0.04, 0.03, 0.005]) == [True, False, False, True]
    assert holm([0.01, 0.015, 0.03, 0.04]) == [True, True, False, False]
    assert holm([0.001, 0.002, 0.003, 0.04]) == [True, True, True, True]
    assert holm([0.2, 0.001]) == [False, True]
    with pytest.raises(ValueError, match="p_values"):
        holm([0.5, 1.5])


def test_one_sided_p_values_agree_with_the_interval():
    from perceptcoh.stats import difference

    step = difference([0.31, 0.29, 0.35, 0.33], [0.30, 0.27, 0.31, 0.30], paired=True)
    for alpha in (0.05, 0.1, 0.2):
        low, high = step.bounds(alpha)
        assert (low > 0) == (step.p_above(0.0) < alpha)
        assert (high < 0.05) == (step.p_below(0.05) < alpha)
    assert abs(step.p_above(0.0) + step.p_below(0.0) - 1) < 1e-12


@pytest.mark.parametrize("margin", [-2.0, 0.0, 1.5, 4.0])
def test_rerun_holds_is_the_chance_that_a_fresh_draw_clears_the_threshold(margin):
    """Phi(m / sqrt 2): scipy's normal CDF, and a simulation of two independent runs whose
    statistics have one standard error each, the first clearing by m."""
    assert rerun_holds(margin) == pytest.approx(scipy_stats.norm.cdf(margin / np.sqrt(2)),
                                                abs=1e-12)
    rng = np.random.default_rng(0)
    here, there = rng.standard_normal((2, 400_000))
    # Here the statistic clears the threshold by m = truth + noise; a re-run redraws the noise.
    kept = np.mean(margin - here + there > 0)
    assert kept == pytest.approx(rerun_holds(margin), abs=4 * 0.5 / np.sqrt(400_000))


def test_rerun_holds_refuses_an_infinite_margin():
    with pytest.raises(ValueError, match="margin"):
        rerun_holds(float("inf"))
