r"""A chapter's statistical claims as data: declared in one table, checked by one function,
shown as one HTML table.

A chapter writes its claims as rows, each read as a sentence::

    CLAIMS = [
        # protocol,  score,   A,     relation,     B,        tolerance
        ("pure",     "gap",   "pc",  "ahead of",   "rkd"),
        ("pure",     "probe", "pc",  "not behind", "rkd",    0.03),
        ("supervised", "top1", "pc", "on par with", "rkd",   0.03),
        ("pure",     "rho",   "per seed", "below", 0.0),
    ]
    claims = check_claims(CLAIMS, scores, lower_is_better={"gap", "rho"})
    display(claims)                        # the table: statistic, threshold, margin, verdict
    assert claims.hold, claims.failures    # nbval fails here when a claim stops holding

``scores(method, protocol, score)`` returns the per-seed scores (one per seed, in the same
seed order for every method, so comparisons are paired). ``A`` and ``B`` are method names, or
``(method, protocol)`` for a method of another protocol (CE only in a pure-protocol claim); a
number ``B`` is a fixed value. The relations, with :mod:`perceptcoh.stats`' tests at
``alpha`` (one-sided 95% by default), "better" meaning lower for the scores in
``lower_is_better``:

==================  ==============================================  =======================
relation            holds when                                      test
==================  ==============================================  =======================
``ahead of``        A is better than B                              :func:`~perceptcoh.stats.ahead`
``not behind``      A is not worse than B by ``tolerance`` or more  :func:`~perceptcoh.stats.ahead`
``on par with``     A and B differ by less than ``tolerance``       :func:`~perceptcoh.stats.on_par`
``above``           A's mean is above the number B                  :func:`~perceptcoh.stats.exceeds`
``below``           A's mean is below the number B                  :func:`~perceptcoh.stats.exceeds`
==================  ==============================================  =======================

A row that ends with ``PRINTED`` (after the tolerance) is a comparison the chapter shows but
does not claim: it is checked and shown alike, marked "printed", and never fails.

**The margin an asserted claim needs.** A claim clears its threshold by a margin, in standard
errors; a re-run elsewhere redraws the training noise, and a claim at margin ``m`` holds there
with probability about :math:`\Phi(m/\sqrt 2)` (:func:`perceptcoh.stats.rerun_holds`). So a
chapter asserts, in the environment that wrote it, only claims of margin
:data:`WRITTEN_MARGIN` or more, and anywhere else a margin above 0: ``min_margin`` of
:func:`check_claims`, which :func:`asserted_margin` chooses from the saved record of the
writing environment (:func:`perceptcoh.engine.provenance.environment`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..engine.provenance import environment
from ..stats import DEFAULT_ALPHA, Claim, ahead, exceeds, on_par
from .report import html_table

__all__ = ["PRINTED", "RELATIONS", "WRITTEN_MARGIN", "CheckedClaims", "ClaimRow",
           "asserted_margin", "check_claims"]

WRITTEN_MARGIN = 4.0  # standard errors, in the environment that wrote the chapter

PRINTED = "printed"
RELATIONS = ("ahead of", "not behind", "on par with", "above", "below")

Side = str | tuple[str, str]


@dataclass(frozen=True)
class ClaimRow:
    """One declared claim: ``a`` is ``relation`` ``b`` on ``score`` in ``protocol``."""

    protocol: str
    score: str
    a: Side
    relation: str
    b: Side | float
    tolerance: float = 0.0
    asserted: bool = True

    @classmethod
    def parse(cls, row: Sequence) -> ClaimRow:
        """A row as a chapter writes it: ``(protocol, score, a, relation, b[, tolerance][,
        PRINTED])``."""
        values = list(row)
        asserted = not (values and values[-1] == PRINTED)
        if not asserted:
            values.pop()
        if len(values) not in (5, 6):
            raise ValueError(f"a claim row is (protocol, score, A, relation, B[, tolerance]"
                             f"[, PRINTED]), got {tuple(row)!r}")
        claim = cls(*values, asserted=asserted)
        if claim.relation not in RELATIONS:
            raise ValueError(f"relation must be one of {RELATIONS}, got {claim.relation!r} "
                             f"in {tuple(row)!r}")
        numeric = claim.relation in ("above", "below")
        if numeric != isinstance(claim.b, (int, float)):
            raise ValueError(f"B must be a number exactly when the relation is 'above' or "
                             f"'below', got {claim.b!r} in {tuple(row)!r}")
        needs_tolerance = claim.relation in ("not behind", "on par with")
        if needs_tolerance != (claim.tolerance > 0):
            raise ValueError(f"a positive tolerance goes with 'not behind' and 'on par with' "
                             f"only, got {claim.tolerance!r} in {tuple(row)!r}")
        return claim

    def side(self, side: Side) -> tuple[str, str]:
        return (side, self.protocol) if isinstance(side, str) else tuple(side)

    def sentence(self, lower_is_better: bool) -> str:
        """The claim in words, e.g. "pure gap (lower is better): pc ahead of rkd"."""
        def name(side):
            method, protocol = self.side(side)
            return method if protocol == self.protocol else f"{method} ({protocol})"

        b = f"{self.b:g}" if isinstance(self.b, (int, float)) else name(self.b)
        within = f" by {self.tolerance:g}" if self.relation == "not behind" else (
            f" within {self.tolerance:g}" if self.relation == "on par with" else "")
        better = " (lower is better)" if lower_is_better else ""
        return f"{self.protocol} {self.score}{better}: {name(self.a)} {self.relation} {b}{within}"


@dataclass(frozen=True)
class CheckedClaims:
    """The claims of :func:`check_claims`, each with its test's :class:`~perceptcoh.stats.Claim`;
    shown in a notebook as an HTML table."""

    rows: tuple[ClaimRow, ...]
    results: tuple[Claim, ...]
    caption: str
    min_margin: float = 0.0

    def _kept(self, claim: Claim) -> bool:
        return claim.holds and claim.margin >= self.min_margin

    @property
    def hold(self) -> bool:
        """Whether every asserted claim holds with a margin of at least ``min_margin``
        (printed rows never fail)."""
        return all(self._kept(claim) for row, claim in zip(self.rows, self.results)
                   if row.asserted)

    @property
    def failures(self) -> list[str]:
        """The asserted claims that fail, or hold by less than ``min_margin``, as text (the
        message of the chapter's assert)."""
        return [str(claim) + ("" if not claim.holds else
                              f" (below the margin {self.min_margin:g} asserted here)")
                for row, claim in zip(self.rows, self.results)
                if row.asserted and not self._kept(claim)]

    def of(self, row: Sequence) -> Claim:
        """The result of the claim declared as ``row``."""
        return self.results[self.rows.index(ClaimRow.parse(row))]

    def _repr_html_(self) -> str:
        lines = []
        for row, claim in zip(self.rows, self.results):
            relation = ">" if claim.kind == "ahead" else "<"
            verdict = ("holds" if self._kept(claim) else "fails") if row.asserted else (
                "printed: " + ("would hold" if claim.holds else "does not hold"))
            threshold = claim.threshold + 0.0  # -0.0 (a zero tolerance) reads as +0.0000
            lines.append([claim.name, f"{claim.statistic:+.4f}", relation,
                          f"{threshold:+.4f}", f"{claim.margin:.1f}", verdict])
        rule = (f"; asserted at a margin of {self.min_margin:g} or more"
                if self.min_margin > 0 else "; asserted at a margin above 0")
        return html_table(["claim", "statistic", "", "threshold", "margin (se)", "verdict"],
                          lines, caption=self.caption + rule)


def check_claims(rows: Sequence[Sequence], scores: Callable[[str, str, str], Sequence[float]],
                 *, lower_is_better: Collection[str] = (), alpha: float = DEFAULT_ALPHA,
                 caption: str = "The chapter's claims", min_margin: float = 0.0
                 ) -> CheckedClaims:
    """Check every claim of ``rows`` (see the module's docstring) on the per-seed
    ``scores(method, protocol, score)``.

    The statistic of each claim is the end of its ``(1 - 2 alpha)`` interval that decides it,
    the margin is how far it clears the threshold in standard errors (:class:`perceptcoh.stats.
    Claim`). An asserted claim holds when its statistic clears the threshold by at least
    ``min_margin`` standard errors (0: by any margin; see the module's docstring). Raises
    ``ValueError`` on a malformed row or a negative ``min_margin``; never raises on a claim
    that fails: the chapter asserts :attr:`CheckedClaims.hold`.
    """
    if not min_margin >= 0:
        raise ValueError(f"min_margin must be a number of standard errors >= 0, "
                         f"got {min_margin!r}")
    parsed = tuple(ClaimRow.parse(row) for row in rows)
    if not parsed:
        raise ValueError("rows must declare at least one claim")
    results = []
    for row in parsed:
        lower = row.score in lower_is_better
        name = row.sentence(lower)
        a = np.asarray(scores(*row.side(row.a), row.score), dtype=np.float64)
        if row.relation in ("above", "below"):
            results.append(exceeds(a, row.b, name, alpha,
                                   lower_is_better=row.relation == "below"))
            continue
        b = np.asarray(scores(*row.side(row.b), row.score), dtype=np.float64)
        if row.relation == "on par with":
            results.append(on_par(a, b, row.tolerance, name, alpha, paired=True))
        else:
            results.append(ahead(a, b, name, alpha, lower_is_better=lower,
                                 tolerance=row.tolerance, paired=True))
    return CheckedClaims(parsed, tuple(results), caption, min_margin)


def asserted_margin(written: Mapping[str, object]) -> float:
    """:data:`WRITTEN_MARGIN` when this process runs in the environment ``written`` (a
    record of :func:`perceptcoh.engine.provenance.environment` saved where the chapter was
    written: every key equal), else 0."""
    return WRITTEN_MARGIN if dict(written) == environment() else 0.0
