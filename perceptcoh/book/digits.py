"""A grid of small students over seeds, trained by the engine and scored: the study of the
chapter *Digits, live on CPU* (``book/experiments/01_digits.ipynb``).

    betas = {m: measure_beta(config_of(m, "supervised", 0), teacher) for m in methods}
    grid = {(m, p): partial(config_of, m, p) for m in methods for p in protocols}
    study = run_study(seeds, grid, teacher, teacher_test, untrained=partial(config_of, ...))
    display(HTML(study.table([("pc", "pure", "PC")], [("probe", "linear probe")])))
    check_claims(CLAIMS, study.values)     # per-seed scores, paired over seeds

Each student is trained by :func:`perceptcoh.engine.prepare` and
:func:`perceptcoh.engine.train_epoch` (what :func:`perceptcoh.engine.run` does, without its
files and its evaluation), then scored on the test set: linear probe and kNN on its frozen
features, the perception gap to the teacher's test features, and top-1 when it has a
classifier. Every run of one seed is trained, in a fixed order, before the next seed's, so
that a re-run draws the same random numbers in the same order.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from ..engine.config import DEFAULT_BETA, TrainConfig, on_logits
from ..engine.data import normalize
from ..engine.evaluate import (extract_features, knn_accuracy, linear_probe_accuracy,
                               top1_accuracy)
from ..engine.loop import train_epoch
from ..engine.session import Session, balanced_beta, prepare
from ..perception import perception_gap
from ..stats import difference
from .report import html_table

__all__ = ["SeedStudy", "beta_table", "measure_beta", "run_study", "score_student",
           "train_student", "gap_probe_plot", "pca2", "pca_grid"]


Key = tuple[str, str]  # (method, protocol)


def train_student(config: TrainConfig, teacher: nn.Module | None = None
                  ) -> tuple[Session, list[dict]]:
    """``prepare(config)`` and ``config.epochs`` calls of ``train_epoch``: :func:`run`
    without its files and evaluation. CE-only students (``method="ce"``) get no teacher."""
    session = prepare(config, teacher=None if config.method == "ce" else teacher)
    return session, [train_epoch(session, epoch) for epoch in range(config.epochs)]


def score_student(session: Session, history: Sequence[dict], teacher_test: torch.Tensor
                  ) -> tuple[dict, torch.Tensor]:
    """One student's scores and its test features: linear probe and kNN (``k = 20``) fitted
    on its training features, perception gap (``r = 1``) to ``teacher_test``, training
    seconds, first and last epoch's loss (``None`` untrained), and ``top1`` if it has a
    classifier."""
    student = session.student
    train_features, train_labels = extract_features(student, session.train_set)
    test_features, labels = extract_features(student, session.test_set)
    row = {
        "probe": linear_probe_accuracy(train_features, train_labels, test_features, labels),
        "knn": knn_accuracy(train_features, train_labels, test_features, labels, k=20),
        "gap": perception_gap(test_features, teacher_test, r=1).item(),
        "seconds": sum(epoch["seconds"] for epoch in history),
        "first_epoch_loss": history[0]["loss"] if history else None,
        "last_epoch_loss": history[-1]["loss"] if history else None,
    }
    if session.classifier:
        row["top1"] = top1_accuracy(student, session.test_set)
    return row, test_features


def measure_beta(config: TrainConfig, teacher: nn.Module, batch: int = 64) -> float:
    """The ``beta`` that equals the norms of the gradients of ``beta * L`` and of CE on the
    student's parameters (:func:`perceptcoh.engine.balanced_beta`), for the student of
    ``config`` at initialisation, on its first ``batch`` training images."""
    session = prepare(config, teacher=teacher)
    images = session.train_set.images[:batch]
    inputs = normalize(images, *session.normalisation)
    return balanced_beta(session.student, teacher, session.transfer_loss, inputs,
                         session.train_set.labels[:batch], on_logits=on_logits(config.method))


def beta_table(betas: Mapping[str, float], caption: str | None = None) -> str:
    """HTML table of each method's ``DEFAULT_BETA``, the gradient ratio it gives
    (``DEFAULT_BETA / beta``: 1 is the balance) and ``betas``, the balanced weight."""
    rows = [[m, f"{DEFAULT_BETA[m]:.4g}", f"{DEFAULT_BETA[m] / b:.3g}", f"{b:.3g}"]
            for m, b in betas.items()]
    return html_table(["method", "DEFAULT_BETA", "its ratio", "our beta"], rows, caption)


@dataclass
class SeedStudy:
    """The scores of a grid of students, one row per seed (same seed order for every run, so
    comparisons are paired): ``rows[method, protocol]`` the dicts of :func:`score_student`,
    ``features[method, protocol]`` the first seed's test features, ``seconds`` the wall time.
    ``derived[name, protocol][score]`` holds per-seed scores computed from the others (a
    per-seed correlation), served by :meth:`values` like the rest but not fingerprinted."""

    seeds: list[int]
    rows: dict[Key, list[dict]]
    features: dict[Key, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0
    derived: dict[Key, dict[str, np.ndarray]] = field(default_factory=dict)

    def values(self, method: str, protocol: str, score: str) -> np.ndarray:
        """The per-seed ``score`` of ``(method, protocol)``: the ``scores`` argument of
        :func:`perceptcoh.book.claims.check_claims`."""
        if (method, protocol) in self.derived:
            return np.asarray(self.derived[method, protocol][score])
        return np.array([row[score] for row in self.rows[method, protocol]])

    def cell(self, method: str, protocol: str, score: str) -> str:
        """``"mean ± std"`` over seeds (sample std), 3 decimals."""
        v = self.values(method, protocol, score)
        return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}"

    def table(self, entries: Sequence[tuple[str, str, str]],
              scores: Sequence[tuple[str, str]], caption: str) -> str:
        """HTML table, a row per ``(method, protocol, label)`` of ``entries``, a column per
        ``(score, header)`` of ``scores``, each cell :meth:`cell`."""
        rows = [[label, *(self.cell(m, p, s) for s, _ in scores)] for m, p, label in entries]
        return html_table(["method", *(h for _, h in scores)], rows, caption)

    def interval(self, a: Key, b: Key, score: str, lower_is_better: bool = False,
                 alpha: float = 0.05) -> tuple[float, float]:
        """Mean paired difference ``a - b`` over seeds (``b - a`` if ``lower_is_better``)
        and the half-width of its ``1 - 2 alpha`` interval."""
        x, y = self.values(*a, score), self.values(*b, score)
        step = difference(y, x, paired=True) if lower_is_better else \
            difference(x, y, paired=True)
        low, high = step.bounds(alpha=alpha)
        return step.d, (high - low) / 2

    def interval_table(self, a: str, others: Mapping[str, str | Key],
                       scores: Sequence[tuple[str, str, str]], lower_is_better: set[str],
                       caption: str) -> str:
        """HTML table of :meth:`interval` for ``a`` against each ``label: b`` of ``others``,
        a row per ``(score, protocol, label)`` of ``scores``: ``a`` is taken in that
        protocol, and so is ``b`` when it is a method name (not ``(method, protocol)``)."""
        def side(b: str | Key, protocol: str) -> Key:
            return (b, protocol) if isinstance(b, str) else b

        rows = [[label, *(f"{d:+.3f} ± {h:.3f}" for d, h in (
            self.interval((a, protocol), side(b, protocol), score, score in lower_is_better)
            for b in others.values()))] for score, protocol, label in scores]
        return html_table([f"{a.upper()} minus", *others], rows, caption)

    def winners(self, methods: Sequence[str], protocol: str, score: str,
                lower_is_better: bool = False) -> list[str]:
        """The best of ``methods`` on ``score``, seed by seed (the first on a tie)."""
        pick = min if lower_is_better else max
        return [pick(methods, key=lambda m: self.rows[m, protocol][i][score])
                for i in range(len(self.seeds))]

    def spearman(self, methods: Sequence[str], protocol: str, x: str, y: str) -> np.ndarray:
        """Per seed, Spearman's correlation of scores ``x`` and ``y`` across ``methods``
        (Pearson's of their ranks; no ties expected)."""
        def ranks(score: str, i: int) -> np.ndarray:
            return np.argsort(np.argsort([self.rows[m, protocol][i][score] for m in methods]))

        return np.array([np.corrcoef(ranks(x, i), ranks(y, i))[0, 1]
                         for i in range(len(self.seeds))])

    def mean_seconds(self, key: Key) -> float:
        """Mean training seconds of a run over seeds."""
        return float(np.mean([row["seconds"] for row in self.rows[key]]))

    def fingerprint(self, **extra: object) -> str:
        """SHA-256 of every score but the timings, with ``extra`` (the teacher's metrics,
        the betas): on a CPU, a re-run in the same environment gives the same one."""
        numbers = {**extra, "students": {
            f"{m}|{p}": [{k: v for k, v in row.items() if k != "seconds"} for row in rows]
            for (m, p), rows in self.rows.items()}}
        return hashlib.sha256(
            json.dumps(numbers, sort_keys=True, default=float).encode()).hexdigest()


def run_study(seeds: Sequence[int], grid: Mapping[Key, Callable[[int], TrainConfig]],
              teacher: nn.Module, teacher_test: torch.Tensor, *,
              untrained: Callable[[int], TrainConfig] | None = None) -> SeedStudy:
    """Train and score every run of ``grid`` (``(method, protocol)`` to the config of a seed)
    for each seed, in the order: the untrained student of ``untrained(seed)`` (scored as
    ``("untrained", "-")``), then the runs of ``grid`` in its order. The first seed's test
    features of every trained run are kept."""
    rows: dict[Key, list[dict]] = {key: [] for key in grid}
    if untrained is not None:
        rows["untrained", "-"] = []
    study = SeedStudy(list(seeds), rows)
    started = time.perf_counter()
    for seed in seeds:
        if untrained is not None:
            rows["untrained", "-"].append(score_student(prepare(untrained(seed)), [],
                                                        teacher_test)[0])
        for key, config_of in grid.items():
            row, features = score_student(*train_student(config_of(seed), teacher),
                                          teacher_test)
            rows[key].append(row)
            if seed == seeds[0]:
                study.features[key] = features.cpu().numpy()
    study.seconds = time.perf_counter() - started
    return study


# ----------------------------------------------------------------------------------------
# The figures of a seed study (:mod:`perceptcoh.book.digits`), as the chapter *Digits,


def pca2(features: np.ndarray) -> np.ndarray:
    """``(n, d)`` features centred and projected on their first two principal components."""
    centred = features - features.mean(axis=0)
    _, _, directions = np.linalg.svd(centred, full_matrices=False)
    return centred @ directions[:2].T


def pca_grid(panels: Mapping[str, np.ndarray], labels: np.ndarray, columns: int = 3
             ) -> plt.Figure:
    """One scatter per ``title: features`` of ``panels``, projected by :func:`pca2`, points
    coloured by their class in ``labels`` (0 to 9), with one legend of the classes below."""
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(8, 2.8 * rows), squeeze=False)
    for axis, (title, features) in zip(axes.flat, panels.items()):
        points = pca2(features)
        axis.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=2, vmin=-0.5,
                     vmax=9.5, linewidths=0)
        axis.set_title(title, fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    for axis in list(axes.flat)[len(panels):]:
        axis.axis("off")
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=plt.cm.tab10(d),
                          markersize=4) for d in range(10)]
    figure.legend(handles, [str(d) for d in range(10)], loc="lower center", ncol=10,
                  fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.06))
    figure.tight_layout()
    return figure


def gap_probe_plot(study: SeedStudy, entries: Sequence[tuple[str, str, str]],
                   highlight: str = "pc") -> plt.Figure:
    """Mean perception gap (x) against mean linear-probe accuracy (y) of each ``(method,
    protocol, label)`` of ``entries``, with one sample standard deviation over seeds as error
    bars: ``highlight`` in red, the other pure-transfer methods in blue, references in grey."""
    figure, axis = plt.subplots(figsize=(6, 3.5))
    for method, protocol, label in entries:
        gaps, probes = study.values(method, protocol, "gap"), study.values(method, protocol,
                                                                           "probe")
        colour = "C3" if method == highlight else "C0" if protocol == "pure" else "gray"
        axis.errorbar(gaps.mean(), probes.mean(), xerr=gaps.std(ddof=1),
                      yerr=probes.std(ddof=1), fmt="o", capsize=2, color=colour)
        axis.annotate(label, (gaps.mean(), probes.mean()), textcoords="offset points",
                      xytext=(4, -10) if method == "untrained" else (4, 3), fontsize=8)
    axis.set_xlabel(r"perception gap $\hat\Delta_1$ to the teacher (test set)")
    axis.set_ylabel("linear-probe accuracy")
    axis.set_title(f"pure transfer, mean ± std over {len(study.seeds)} seeds", fontsize=10)
    figure.tight_layout()
    return figure
