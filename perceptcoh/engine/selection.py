"""Choosing each method's setting on the validation split, one rule for every method.

A selection run is a finished run of the fair test's selection plan
(:func:`perceptcoh.engine.fair.selection_plan`): its key names the method, the
``gradient_ratio`` and, for a method with a knob of its own, the knob and its value. The
rule (registered before the runs, :func:`perceptcoh.engine.fair.registration`):

* a run counts only if it is healthy: ``collapsed is False`` (a run saved before the check,
  ``None``, does not count) and it did not diverge;
* among a method's healthy runs, the one with the highest validation linear probe
  (``val_linear_probe_top1``) is chosen; ties go to the smaller ratio, then to the knob's
  first value;
* a ratio chosen at the smallest or the largest ratio the method was trained at is flagged
  (``edge``: ``"below"`` or ``"above"``), since a better one may lie beyond.

The rule never sees a test score: :func:`validation_view` is all it reads of a run, and it
copies only the ``val_*`` metrics, reading no other metric's value (``tests/test_fair.py``
hands it runs whose test scores raise when read).
"""

from __future__ import annotations

from typing import Mapping, Sequence

__all__ = ["SCORE", "VALIDATION_PREFIX", "validation_view", "healthy", "choose"]

# What the rule maximises: the linear probe on the validation split.
SCORE = "val_linear_probe_top1"

VALIDATION_PREFIX = "val_"


def validation_view(run: Mapping) -> dict:
    """What the rule may know of a run: its key, its health, and its ``val_*`` metrics
    (the values of no other metric are read)."""
    metrics = run["metrics"]
    return {
        "key": dict(run["key"]),
        "collapsed": run.get("collapsed"),
        "diverged": run.get("diverged"),
        "metrics": {name: metrics[name] for name in metrics
                    if name.startswith(VALIDATION_PREFIX)},
    }


def healthy(view: Mapping) -> bool:
    """Whether a run may be chosen: its features did not collapse (``collapsed is False``;
    unknown does not count) and its loss did not diverge."""
    return view["collapsed"] is False and view.get("diverged") is None


def choose(runs: Sequence[Mapping], knob_order: Mapping[str, Sequence] | None = None
           ) -> dict[str, dict]:
    """Each method's chosen setting, from its selection ``runs`` (documents' run records).

    Returns ``{method: {"gradient_ratio", "knob", "value", "score", "edge", "ratios",
    "healthy", "runs"}}``: the chosen run's ratio, knob and value (``None`` for a method
    without a knob), its validation score, ``edge`` (``None``, ``"below"`` or ``"above"``:
    the chosen ratio is the smallest or largest trained), the ratios trained, and how many
    of the method's runs were healthy of how many. ``knob_order`` gives each method's knob
    values in their registered order (ties go to the first); by default, order of
    appearance.

    Raises:
        ValueError: a method has no healthy run (nothing can be chosen), or a healthy run
            lacks the validation score (it was not trained with a validation split).
    """
    views = [validation_view(run) for run in runs]
    methods: dict[str, list[dict]] = {}
    for view in views:
        methods.setdefault(view["key"]["method"], []).append(view)
    chosen = {}
    for method, members in methods.items():
        candidates = [view for view in members if healthy(view)]
        if not candidates:
            raise ValueError(f"no healthy selection run of {method!r}: every one collapsed "
                             f"or diverged, so no setting can be chosen")
        missing = [view["key"] for view in candidates if SCORE not in view["metrics"]]
        if missing:
            raise ValueError(f"selection runs without {SCORE} (no validation split): "
                             f"{missing}")
        values = list((knob_order or {}).get(method, ()))
        for view in members:
            if view["key"].get("value") not in values:
                values.append(view["key"].get("value"))

        def preference(view: dict) -> tuple:
            key = view["key"]
            return (-view["metrics"][SCORE], key["gradient_ratio"], values.index(key.get("value")))

        best = min(candidates, key=preference)
        ratios = sorted({view["key"]["gradient_ratio"] for view in members})
        ratio = best["key"]["gradient_ratio"]
        edge = "below" if ratio == ratios[0] else "above" if ratio == ratios[-1] else None
        chosen[method] = {
            "gradient_ratio": ratio,
            "knob": best["key"].get("knob"),
            "value": best["key"].get("value"),
            "score": best["metrics"][SCORE],
            "edge": edge,
            "ratios": ratios,
            "healthy": len(candidates),
            "runs": len(members),
        }
    return chosen
