"""The comparison and sweep figures draw what the document holds, one mark per run."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from perceptcoh.engine.report_plots import (method_colours, plot_comparison,  # noqa: E402
                                            plot_sweeps)

TOP1 = {"ce": [0.30, 0.32], "kd": [0.31, 0.33], "pc": [0.35, 0.34]}


def run(method, protocol, seed, **metrics):
    return {"key": {"pair": "t->s", "method": method, "protocol": protocol, "seed": seed},
            "metrics": metrics}


RUNS = [run(m, "supervised", s, top1=v) for m, values in TOP1.items()
        for s, v in enumerate(values)] + [
    run(m, "pure", s, linear_probe_top1=0.2 + 0.01 * s, perception_gap_r1=0.25 - 0.01 * s)
    for m in ("kd", "pc") for s in (0, 1)]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_the_comparison_has_a_bar_per_method_and_a_dot_per_seed():
    figure = plot_comparison(RUNS, list(TOP1), "title")
    left, right = figure.axes
    heights = [bar.get_height() for bar in left.patches]
    assert heights == pytest.approx([100 * np.mean(v) for v in TOP1.values()])
    assert left.get_ylim() == pytest.approx((29.0, 36.0))  # every seed, 1 point of margin
    assert [t.get_text() for t in left.get_xticklabels()] == ["CE only", "KD", "PC (ours)"]
    dots = [line for line in right.lines]
    assert len(dots) == 2 and dots[1].get_color() == "C3"  # CE has no pure run
    assert list(dots[0].get_xdata()) == pytest.approx([0.25, 0.24])
    assert [t.get_text() for t in right.texts] == ["KD", "PC (ours)"]
    assert figure._suptitle.get_text() == "title"
    assert method_colours(["ce", "kd", "sp", "pc"]) == {"ce": "gray", "kd": "gray",
                                                         "sp": "C0", "pc": "C3"}


def test_the_sweeps_have_a_panel_per_knob_with_the_points_in_order():
    runs = [dict(run("pc", "pure", 0, linear_probe_top1=score), beta=4.0)
            for score in (0.3, 0.1)]
    runs[0]["key"].update(knob="tau", value=1.0)
    runs[1]["key"].update(knob="tau", value=0.1)
    runs.append(dict(run("pc", "supervised", 0, top1=0.5), beta=None))
    runs[2]["key"].update(knob="gradient_ratio", value=0.0)
    figure = plot_sweeps(runs, ["tau", "gradient_ratio"])
    tau, ratio = figure.axes
    assert list(tau.lines[0].get_ydata()) == pytest.approx([10.0, 30.0])
    assert [t.get_text() for t in tau.get_xticklabels()] == ["0.1", "1.0"]
    assert tau.get_xlabel() == r"temperature $\tau$" and tau.get_title() == "probe (%)"
    assert ratio.get_title() == "top-1 (%)" and len(plot_sweeps(runs, ["tau"]).axes) == 1
