"""The claims table: each relation runs the test of perceptcoh.stats it names, printed rows
never fail, and malformed rows are refused by name."""

import numpy as np
import pytest

from perceptcoh.book.claims import PRINTED, check_claims
from perceptcoh.stats import ahead, exceeds, on_par

RNG = np.random.default_rng(0)
NOISE = RNG.normal(0, 0.01, size=(3, 10))
SCORES = {
    ("pc", "pure", "probe"): 0.80 + NOISE[0],
    ("rkd", "pure", "probe"): 0.70 + NOISE[1],
    ("pc", "pure", "gap"): 0.10 + NOISE[2],
    ("rkd", "pure", "gap"): 0.20 + NOISE[1],
    ("ce", "supervised", "probe"): 0.795 + NOISE[1],
}


def scores(method, protocol, score):
    return SCORES[method, protocol, score]


def test_each_relation_is_the_stats_test_it_names():
    checked = check_claims([
        ("pure", "probe", "pc", "ahead of", "rkd"),
        ("pure", "gap", "pc", "ahead of", "rkd"),
        ("pure", "probe", "pc", "not behind", ("ce", "supervised"), 0.03),
        ("pure", "probe", "pc", "on par with", ("ce", "supervised"), 0.03),
        ("pure", "probe", "pc", "above", 0.75),
        ("pure", "gap", "pc", "below", 0.15),
    ], scores, lower_is_better={"gap"})
    pc, rkd, ce = SCORES["pc", "pure", "probe"], SCORES["rkd", "pure", "probe"], \
        SCORES["ce", "supervised", "probe"]
    gap_pc, gap_rkd = SCORES["pc", "pure", "gap"], SCORES["rkd", "pure", "gap"]
    expected = [
        ahead(pc, rkd, "", paired=True),
        ahead(gap_pc, gap_rkd, "", lower_is_better=True, paired=True),
        ahead(pc, ce, "", tolerance=0.03, paired=True),
        on_par(pc, ce, 0.03, "", paired=True),
        exceeds(pc, 0.75, ""),
        exceeds(gap_pc, 0.15, "", lower_is_better=True),
    ]
    for got, want in zip(checked.results, expected):
        assert (got.kind, got.statistic, got.threshold, got.se, got.holds) == \
            (want.kind, want.statistic, want.threshold, want.se, want.holds)
    assert checked.hold and checked.failures == []
    assert checked.results[1].name == "pure gap (lower is better): pc ahead of rkd"
    assert checked.results[2].name == "pure probe: pc not behind ce (supervised) by 0.03"


def test_a_failing_claim_is_reported_and_a_printed_one_never_fails():
    printed = check_claims([("pure", "probe", "rkd", "ahead of", "pc", PRINTED)], scores)
    assert printed.hold and not printed.results[0].holds
    assert "printed: does not hold" in printed._repr_html_()
    failing = check_claims([("pure", "probe", "rkd", "ahead of", "pc"),
                            ("pure", "probe", "pc", "ahead of", "rkd")], scores)
    assert not failing.hold
    assert failing.failures == [str(failing.results[0])]
    html = failing._repr_html_()
    assert html.count("<tr>") == 3 and "fails" in html and "holds" in html
    assert failing.of(("pure", "probe", "pc", "ahead of", "rkd")) is failing.results[1]


@pytest.mark.parametrize("row, message", [
    (("pure", "probe", "pc", "beats", "rkd"), "relation must be one of"),
    (("pure", "probe", "pc", "ahead of"), "a claim row is"),
    (("pure", "probe", "pc", "above", "rkd"), "B must be a number"),
    (("pure", "probe", "pc", "ahead of", 0.5), "B must be a number"),
    (("pure", "probe", "pc", "not behind", "rkd"), "a positive tolerance"),
    (("pure", "probe", "pc", "ahead of", "rkd", 0.03), "a positive tolerance"),
])
def test_malformed_rows_are_refused_by_name(row, message):
    with pytest.raises(ValueError, match=message):
        check_claims([row], scores)
    with pytest.raises(ValueError, match="at least one claim"):
        check_claims([], scores)


def test_a_zero_threshold_reads_as_plus_zero():
    html = check_claims([("pure", "probe", "pc", "ahead of", "rkd")], scores)._repr_html_()
    assert "+0.0000" in html and "-0.0000" not in html


def test_in_the_writing_environment_a_claim_needs_the_written_margin():
    """Issue 25, item 2: a claim that has drifted to a small margin passes elsewhere (margin
    > 0) but fails where the chapter was written (margin >= 4)."""
    from perceptcoh.book.claims import WRITTEN_MARGIN, asserted_margin
    from perceptcoh.engine.provenance import environment

    row = ("pure", "probe", "pc", "above", 0.0)
    claim = check_claims([row], scores).results[0]
    # A threshold the statistic clears by 2 standard errors.
    near = ("pure", "probe", "pc", "above", claim.statistic - 2 * claim.se)
    assert check_claims([near], scores).hold
    strict = check_claims([near], scores, min_margin=WRITTEN_MARGIN)
    assert not strict.hold and "below the margin 4" in strict.failures[0]
    assert "margin of 4 or more" in strict._repr_html_() and "fails" in strict._repr_html_()
    assert check_claims([row], scores, min_margin=WRITTEN_MARGIN).hold
    assert check_claims([near, (*near, PRINTED)], scores,
                        min_margin=0.0).hold
    here = environment()
    assert asserted_margin(here) == WRITTEN_MARGIN == 4.0
    assert asserted_margin({**here, "cpu_threads": here["cpu_threads"] + 1}) == 0.0
    assert asserted_margin({key: here[key] for key in list(here)[:-1]}) == 0.0
    with pytest.raises(ValueError, match="min_margin"):
        check_claims([row], scores, min_margin=-1.0)
