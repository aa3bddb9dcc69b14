"""Transfer losses by name, so that a trainer and a comparison table can loop over them.

* ``"pc"``: :class:`perceptcoh.loss.PerceptionCoherenceLoss`, features.
* ``"fitnet"``: :class:`perceptcoh.baselines.FitNet`, features; needs both dims.
* ``"sp"``: :class:`perceptcoh.baselines.SimilarityPreserving`, features.
* ``"cc"``: :class:`perceptcoh.baselines.CorrelationCongruence`, features; needs both dims.
* ``"rkd"``: :class:`perceptcoh.baselines.RelationalKD`, features.
* ``"pkt"``: :class:`perceptcoh.baselines.PKT`, features.
* ``"kd"``: :class:`perceptcoh.baselines.LogitKD`, logits.

Every loss is called as ``loss(student, teacher)`` and returns a 0-dim tensor. The losses
in :data:`LOGIT_LOSSES` take ``(B, C)`` logits; all the others take ``(B, q)`` student and
``(B, p)`` teacher features.
"""

from __future__ import annotations

import inspect

from torch import nn

from .baselines import (
    PKT,
    CorrelationCongruence,
    FitNet,
    LogitKD,
    RelationalKD,
    SimilarityPreserving,
)
from .loss import PerceptionCoherenceLoss

__all__ = ["LOSSES", "LOGIT_LOSSES", "build_loss"]

LOSSES: dict[str, type[nn.Module]] = {
    "pc": PerceptionCoherenceLoss,
    "fitnet": FitNet,
    "sp": SimilarityPreserving,
    "cc": CorrelationCongruence,
    "rkd": RelationalKD,
    "pkt": PKT,
    "kd": LogitKD,
}

# Called with (student_logits, teacher_logits) rather than features.
LOGIT_LOSSES = frozenset({"kd"})

_DIMENSIONS = ("student_dim", "teacher_dim")


def build_loss(
    name: str,
    *,
    student_dim: int | None = None,
    teacher_dim: int | None = None,
    **options: object,
) -> nn.Module:
    """Construct the transfer loss registered as ``name``.

    ``student_dim`` and ``teacher_dim`` are passed only to the losses whose constructor
    takes them (those with learnable projections: ``"fitnet"``, ``"cc"``), so a trainer can
    always pass both; the others ignore them. ``options`` are the constructor's other
    keyword arguments (``tau`` for ``"pc"``, ``temperature`` for ``"kd"``, ...).

    The losses in :data:`LOGIT_LOSSES` (``"kd"``) are called with ``(student_logits,
    teacher_logits)``, two ``(B, C)`` tensors; all the others with ``(student_features,
    teacher_features)`` of shapes ``(B, q)`` and ``(B, p)``.

    Raises:
        TypeError: ``name`` is not a string, or an option is not an argument of the loss.
        ValueError: ``name`` is unknown (the message lists the known names), or the loss
            needs ``student_dim``/``teacher_dim`` and it is ``None``.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}")
    loss_class = LOSSES[name]
    parameters = inspect.signature(loss_class).parameters
    dimensions = {"student_dim": student_dim, "teacher_dim": teacher_dim}
    arguments: dict[str, object] = {}
    for dimension in _DIMENSIONS:
        if dimension not in parameters:
            continue
        if dimensions[dimension] is not None:
            arguments[dimension] = dimensions[dimension]
        elif parameters[dimension].default is inspect.Parameter.empty:
            raise ValueError(f"loss {name!r} needs {dimension}, got None")
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for option in options:
        if not (accepts_any or option in parameters):
            known = [p for p in parameters if p not in _DIMENSIONS]
            raise TypeError(
                f"loss {name!r} has no option {option!r}; its options are {', '.join(known)}"
            )
    return loss_class(**arguments, **options)
