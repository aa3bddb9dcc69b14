"""A results document as tables and verdicts, on a made-up document."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from perceptcoh.engine.report import (comparison_table, html_table, mean_std, runs_of,
                                      scores_by_seed, verdicts)


def entry(method, protocol, seed, **metrics):
    return {"key": {"pair": "t->s", "method": method, "protocol": protocol, "seed": seed},
            "metrics": metrics}


PC = [0.50, 0.52, 0.51]
FITNET = [0.40, 0.43, 0.41]  # PC ahead by about 10 points, every seed
SP = [0.505, 0.515, 0.512]   # within a point of PC
DOCUMENT = {"runs": [
    *(entry("pc", "pure", s, linear_probe_top1=v, perception_gap_r1=0.1) for s, v in enumerate(PC)),
    *(entry("fitnet", "pure", s, linear_probe_top1=v, perception_gap_r1=0.2)
      for s, v in enumerate(FITNET)),
    *(entry("sp", "pure", s, linear_probe_top1=v, perception_gap_r1=0.1 + 0.01 * s)
      for s, v in enumerate(SP)),
    {"key": {"pair": "t->s", "method": "pc", "protocol": "pure", "seed": 0, "knob": "tau",
             "value": 1.0}, "metrics": {"linear_probe_top1": 0.0}},
]}


def test_mean_std_and_html_tables():
    assert mean_std({"mean": 0.5123, "std": 0.0101, "n": 3}) == "51.2 ± 1.0"
    assert mean_std({"mean": 0.5, "std": math.nan, "n": 1}) == "50.0"
    assert mean_std(None) == "–"
    table = html_table(["a<b"], [["x&y"]], caption="c")
    assert table == ("<table><caption>c</caption><thead><tr><th>a&lt;b</th></tr></thead>"
                     "<tbody><tr><td>x&amp;y</td></tr></tbody></table>")


def test_the_comparison_table_leaves_out_ablations_and_shows_mean_and_spread():
    assert len(runs_of(DOCUMENT)) == 9 and len(runs_of(DOCUMENT, comparison=False)) == 1
    table = comparison_table(DOCUMENT, methods=["pc", "fitnet"])
    spread = np.std(PC, ddof=1) * 100
    assert f"<td>PC (ours)</td><td>–</td><td>51.0 ± {spread:.1f}</td>" in table
    assert "<td>0.100 ± 0.000</td>" in table


def test_verdicts_follow_the_paired_interval():
    rows = {(r["baseline"], r["metric"]): r for r in verdicts(DOCUMENT, baselines=["fitnet", "sp"])}
    probe = rows["fitnet", "linear_probe_top1"]
    differences = np.array(PC) - np.array(FITNET)
    half = stats.t.ppf(0.95, 2) * differences.std(ddof=1) / math.sqrt(3)
    assert probe["d"] == pytest.approx(differences.mean())
    assert (probe["low"], probe["high"]) == pytest.approx(
        (differences.mean() - half, differences.mean() + half))
    assert probe["verdict"] == "ahead" and probe["n"] == 3
    assert rows["fitnet", "perception_gap_r1"]["verdict"] == "ahead"  # lower gap is better
    assert rows["sp", "linear_probe_top1"]["verdict"] == "on par"
    assert rows["sp", "perception_gap_r1"]["verdict"] == "undecided"  # no "on par" for the gap
    assert rows["sp", "top1"]["verdict"] == "n/a"


def test_scores_by_seed_are_in_seed_order_and_skip_ablations_and_other_pairs():
    runs = [entry("pc", "pure", 2, top1=0.3), entry("pc", "pure", 0, top1=0.1),
            entry("pc", "supervised", 1, top1=0.9), entry("pc", "pure", 1, knn_top1=0.5),
            {"key": {"pair": "u->s", "method": "pc", "protocol": "pure", "seed": 5},
             "metrics": {"top1": 0.7}}]
    assert list(scores_by_seed(runs, "pc", "pure", "top1", pair="t->s").items()) == [
        (0, 0.1), (2, 0.3)]
    assert scores_by_seed(runs, "pc", "pure", "top1") == {0: 0.1, 2: 0.3, 5: 0.7}
    assert scores_by_seed(runs_of(DOCUMENT), "pc", "pure", "linear_probe_top1") == dict(
        enumerate(PC))
