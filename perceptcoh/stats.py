r"""Comparing two methods over seeds: the book's two kinds of statistical claim.

Each method is trained from several seeds and scored once per seed, giving samples ``a`` and
``b``. With Welch's standard error of the difference of means,

.. math::

    d = \bar a - \bar b, \qquad
    \mathrm{se} = \sqrt{s_a^2 / n_a + s_b^2 / n_b},

and :math:`t_q` the :math:`q`-quantile of Student's :math:`t` with Welch-Satterthwaite degrees
of freedom (or, when ``a[i]`` and ``b[i]`` share a seed, the paired form: :math:`d` the mean of
the per-seed differences, :math:`\mathrm{se}` their standard deviation over :math:`\sqrt n`,
:math:`n - 1` degrees of freedom), a two-sided :math:`(1 - 2\alpha)` interval of the difference is
:math:`d \pm t_{1-\alpha}\,\mathrm{se}`. The two claims:

- **A is ahead of B** (:func:`ahead`): the one-sided test at level :math:`\alpha` rejects
  "A is not better", i.e. :math:`d - t_{1-\alpha}\,\mathrm{se} > 0`. With a tolerance
  :math:`\delta`, "A is not behind B by :math:`\delta` or more" (non-inferiority):
  :math:`d - t_{1-\alpha}\,\mathrm{se} > -\delta`.
- **A and B are on par within** :math:`\delta` (:func:`on_par`): two one-sided tests (TOST) at
  level :math:`\alpha` reject both :math:`d \le -\delta` and :math:`d \ge \delta`, i.e. the
  :math:`(1 - 2\alpha)` interval lies inside :math:`(-\delta, \delta)`. The tolerance
  :math:`\delta` is fixed before the data are seen.
- **A's score is beyond a fixed value c** (:func:`exceeds`): the same one-sided test with
  :math:`b` replaced by the constant :math:`c` (:math:`\mathrm{se} = s_a/\sqrt{n_a}`,
  :math:`n_a - 1` degrees of freedom).

A new environment (another torch, thread count or device) changes the floating-point order of
training and so draws the training noise afresh: a claim that clears its threshold by a few
standard errors here can miss it there. Each :class:`Claim` therefore reports its *margin*,
how far its statistic clears its threshold in units of ``se``. Two independent runs differ by
about :math:`\sqrt 2\,\mathrm{se}`, so a margin of :math:`m` fails on a re-run with probability
about :math:`\Phi(-m / \sqrt 2)` and holds with probability about :math:`\Phi(m / \sqrt 2)`
(:func:`rerun_holds`), over 99.7% for :math:`m \ge 4`.

When the environment variable ``PERCEPTCOH_CLAIMS_LOG`` names a file, every claim checked is
appended to it as one JSON line, so the claims of two environments can be compared.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["DEFAULT_ALPHA", "Claim", "ahead", "difference", "exceeds", "holm", "on_par",
           "rerun_holds"]

DEFAULT_ALPHA = 0.05


@dataclass(frozen=True)
class Difference:
    """Welch's difference of means ``d = mean(a) - mean(b)``, its standard error and degrees
    of freedom."""

    d: float
    se: float
    dof: float

    def bounds(self, alpha: float) -> tuple[float, float]:
        """The two-sided ``(1 - 2 alpha)`` interval ``d -/+ t_{1 - alpha} se``."""
        from scipy.stats import t

        half = float(t.ppf(1 - alpha, self.dof)) * self.se
        return self.d - half, self.d + half

    def p_above(self, threshold: float) -> float:
        """The one-sided p-value of "the true difference is above ``threshold``":
        ``P(T >= (d - threshold) / se)`` under ``d = threshold``; ``low > threshold`` in
        :meth:`bounds` exactly when this is below ``alpha``."""
        from scipy.stats import t

        if self.se == 0:
            return 0.0 if self.d > threshold else 1.0
        return float(t.sf((self.d - threshold) / self.se, self.dof))

    def p_below(self, threshold: float) -> float:
        """The one-sided p-value of "the true difference is below ``threshold``"."""
        from scipy.stats import t

        if self.se == 0:
            return 0.0 if self.d < threshold else 1.0
        return float(t.cdf((self.d - threshold) / self.se, self.dof))


@dataclass(frozen=True)
class Claim:
    """One checked claim: what it says, its statistic, the threshold the statistic must clear,
    and the margin in standard errors. ``holds`` is ``statistic > threshold`` for
    :func:`ahead` and ``statistic < threshold`` for :func:`on_par`."""

    name: str
    kind: str  # "ahead" or "on par"
    statistic: float
    threshold: float
    se: float
    holds: bool
    n: tuple[int, int]

    @property
    def margin(self) -> float:
        """How far the statistic clears the threshold, in standard errors (negative: it fails)."""
        gap = self.statistic - self.threshold if self.kind == "ahead" else self.threshold - self.statistic
        return gap / self.se if self.se > 0 else float("inf") if gap > 0 else float("-inf")

    def __str__(self) -> str:
        relation = ">" if self.kind == "ahead" else "<"
        verdict = "holds" if self.holds else "FAILS"
        return (f"{self.name}: {self.statistic:+.4f} {relation} {self.threshold:+.4f}, "
                f"margin {self.margin:.1f} se, {verdict}")


def rerun_holds(margin: float) -> float:
    r"""The probability that a claim with ``margin`` standard errors here still holds on a
    re-run in another environment: :math:`\Phi(m/\sqrt 2)`, the statistic of each run
    drawn independently with the same spread, so their difference has standard deviation
    :math:`\sqrt 2\,\mathrm{se}` (a normal approximation)."""
    if not math.isfinite(margin):
        raise ValueError(f"margin must be a finite number of standard errors, got {margin!r}")
    return 0.5 * (1.0 + math.erf(margin / 2.0))


def _sample(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    sample = np.asarray(values, dtype=np.float64)
    if sample.ndim != 1 or len(sample) < 2:
        raise ValueError(f"{name} must be a 1-d sequence of at least 2 scores (one per seed), got shape {sample.shape}")
    if not np.isfinite(sample).all():
        raise ValueError(f"{name} holds a non-finite score: {sample.tolist()}")
    return sample


def difference(a: Sequence[float], b: Sequence[float] | float, paired: bool = False) -> Difference:
    """Welch's difference of means of ``a`` and ``b``, with Welch-Satterthwaite degrees of freedom;
    a number ``b`` is a constant (one-sample ``t``). ``paired``: ``a[i]`` and ``b[i]`` come from
    the same seed (same data, initial student and batches), and the difference is the mean of
    the per-seed differences, with their own spread (paired ``t``)."""
    a = _sample(a, "a")
    if paired:
        b = _sample(b, "b")
        if len(a) != len(b):
            raise ValueError(f"paired samples need one score per seed on both sides, got {len(a)} and {len(b)}")
        return difference(a - b, 0.0)
    if np.isscalar(b):
        se = float(a.std(ddof=1) / np.sqrt(len(a)))
        return Difference(float(a.mean() - b), se, float(len(a) - 1))
    b = _sample(b, "b")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = float(np.sqrt(va + vb))
    if se == 0:
        dof = float(len(a) + len(b) - 2)
    else:
        dof = float((va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)))
    return Difference(float(a.mean() - b.mean()), se, dof)


def _log(claim: Claim) -> None:
    path = os.environ.get("PERCEPTCOH_CLAIMS_LOG")
    if path:
        with open(path, "a") as handle:
            handle.write(json.dumps({**asdict(claim), "margin": claim.margin}) + "\n")


def ahead(a: Sequence[float], b: Sequence[float], name: str, alpha: float = DEFAULT_ALPHA,
          lower_is_better: bool = False, tolerance: float = 0.0, paired: bool = False) -> Claim:
    """Whether ``a`` is better than ``b`` at level ``alpha``: the lower end of the ``(1 - 2 alpha)``
    interval of ``mean(a) - mean(b)`` is above ``-tolerance`` (with ``lower_is_better``, of
    ``mean(b) - mean(a)``). ``tolerance = 0`` claims superiority; ``tolerance = delta > 0`` claims
    non-inferiority, "not behind by ``delta`` or more". ``paired``: see :func:`difference`."""
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    step = difference(b, a, paired) if lower_is_better else difference(a, b, paired)
    low, _ = step.bounds(alpha)
    claim = Claim(name, "ahead", low, -tolerance, step.se, low > -tolerance, (len(a), len(b)))
    _log(claim)
    return claim


def on_par(a: Sequence[float], b: Sequence[float], delta: float, name: str, alpha: float = DEFAULT_ALPHA,
           paired: bool = False) -> Claim:
    """Whether ``a`` and ``b`` are equivalent within ``delta`` by two one-sided tests at level
    ``alpha``: the ``(1 - 2 alpha)`` interval of ``mean(a) - mean(b)`` lies inside
    ``(-delta, delta)``. The statistic is the interval's largest absolute end. ``paired``: see
    :func:`difference`."""
    if not delta > 0:
        raise ValueError(f"delta must be a positive tolerance, got {delta}")
    step = difference(a, b, paired)
    low, high = step.bounds(alpha)
    statistic = max(abs(low), abs(high))
    claim = Claim(name, "on par", statistic, delta, step.se, statistic < delta, (len(a), len(b)))
    _log(claim)
    return claim


def exceeds(a: Sequence[float], threshold: float, name: str, alpha: float = DEFAULT_ALPHA,
            lower_is_better: bool = False) -> Claim:
    """Whether ``mean(a)`` is above ``threshold`` at level ``alpha`` (one-sample one-sided ``t``):
    the lower end of its ``(1 - 2 alpha)`` interval is above it (with ``lower_is_better``, the
    upper end is below it). The statistic is that end, minus the threshold, sign-flipped when
    lower is better, so it must be above 0."""
    step = difference(a, threshold)  # of mean(a) - threshold
    low, high = step.bounds(alpha)
    statistic = -high if lower_is_better else low
    claim = Claim(name, "ahead", statistic, 0.0, step.se, statistic > 0, (len(a), 0))
    _log(claim)
    return claim


def holm(p_values: Sequence[float], alpha: float = DEFAULT_ALPHA) -> list[bool]:
    """Holm's step-down control of the family-wise error: which of ``m`` hypotheses are
    rejected so that the chance of rejecting any true one is at most ``alpha``.

    With the p-values sorted, ``p_(1) <= ... <= p_(m)``, reject ``p_(1), ..., p_(k-1)`` where
    ``k`` is the first rank with ``p_(k) > alpha / (m - k + 1)``. Returns, in the order given,
    whether each is rejected.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or not ((p >= 0) & (p <= 1)).all():
        raise ValueError(f"p_values must be a 1-d sequence of numbers in [0, 1], got {p_values!r}")
    rejected = np.zeros(len(p), dtype=bool)
    for rank, index in enumerate(np.argsort(p, kind="stable")):
        if p[index] > alpha / (len(p) - rank):
            break
        rejected[index] = True
    return rejected.tolist()
