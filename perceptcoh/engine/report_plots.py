"""The figures of a results document: the comparison, one dot per seed, and the ablation
sweeps. The CIFAR-100 laptop chapter (``book/experiments/02_laptop.ipynb``) draws both;
each function returns its figure (a notebook shows it when the cell ends)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from .report import METHOD_NAMES, scores_by_seed, sweep

__all__ = ["SWEEP_LABELS", "method_colours", "plot_comparison", "plot_sweeps"]

SWEEP_LABELS = {"tau": r"temperature $\tau$", "batch_size": "batch size $B$",
                "metric": "dissimilarity", "r": "exponent $r$",
                "gradient_ratio": "gradient_ratio"}


def method_colours(methods: Sequence[str]) -> dict[str, str]:
    """PC in red, the references without a relational loss (CE, KD) in grey, the other
    baselines in blue."""
    return {m: "C3" if m == "pc" else "gray" if m in ("ce", "kd") else "C0" for m in methods}


def _seeds(runs, method, protocol, metric) -> np.ndarray:
    return np.array(list(scores_by_seed(runs, method, protocol, metric).values()))


def plot_comparison(runs: Sequence[dict], methods: Sequence[str], title: str) -> plt.Figure:
    """Left: the supervised top-1 of each seed (dots) and their mean (bar), per method.
    Right: the pure protocol's linear probe against the gap to the teacher, one dot per
    seed, each method (but the first, CE, which has no pure run) named at its mean."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    colours = method_colours(methods)
    supervised = {m: 100 * _seeds(runs, m, "supervised", "top1") for m in methods}
    for x, method in enumerate(methods):
        values = supervised[method]
        left.bar(x, values.mean(), color=colours[method], alpha=0.5)
        left.plot([x] * len(values), values, "k.", markersize=4)
    left.set_xticks(range(len(methods)), [METHOD_NAMES.get(m, m) for m in methods],
                    rotation=45, fontsize=8)
    every = np.concatenate(list(supervised.values()))
    left.set_ylim(every.min() - 1, every.max() + 1)
    left.set_ylabel("test top-1 (%)")
    left.set_title("supervised", fontsize=9)
    for method in methods[1:]:
        gaps = _seeds(runs, method, "pure", "perception_gap_r1")
        probes = 100 * _seeds(runs, method, "pure", "linear_probe_top1")
        right.plot(gaps, probes, "o", color=colours[method], markersize=4)
        right.annotate(METHOD_NAMES.get(method, method), (gaps.mean(), probes.mean()),
                       textcoords="offset points", xytext=(4, 3), fontsize=8)
    right.set_xlabel(r"perception gap $\hat\Delta_1$ to the teacher (test)")
    right.set_ylabel("linear probe (%)")
    right.set_title("pure transfer", fontsize=9)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def plot_sweeps(runs: Sequence[dict], knobs: Sequence[str],
                labels: Mapping[str, str] = SWEEP_LABELS) -> plt.Figure:
    """One panel per knob: the score of each point of :func:`perceptcoh.engine.report.
    sweep` (the top-1 for ``gradient_ratio``, the linear probe otherwise), in %."""
    figure, axes = plt.subplots(1, len(knobs), figsize=(13, 2.8), squeeze=False)
    for axis, knob in zip(axes[0], knobs):
        points = sweep(runs, knob)
        x = np.arange(len(points))
        axis.plot(x, [100 * p[1] for p in points], "o-", color="C0")
        axis.set_xticks(x, [str(p[0]) for p in points], fontsize=8)
        axis.set_xlabel(labels.get(knob, knob))
        axis.set_title("top-1 (%)" if knob == "gradient_ratio" else "probe (%)", fontsize=9)
    figure.tight_layout()
    return figure
