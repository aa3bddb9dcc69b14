"""Transfer losses by name, each with the facts a trainer needs about it, in one record.

* ``"pc"``: :class:`perceptcoh.loss.PerceptionCoherenceLoss`, features.
* ``"fitnet"``: :class:`perceptcoh.baselines.FitNet`, features; needs both dims.
* ``"sp"``: :class:`perceptcoh.baselines.SimilarityPreserving`, features.
* ``"cc"``: :class:`perceptcoh.baselines.CorrelationCongruence`, features; needs both dims.
* ``"rkd"``: :class:`perceptcoh.baselines.RelationalKD`, features.
* ``"pkt"``: :class:`perceptcoh.baselines.PKT`, features.
* ``"kd"``: :class:`perceptcoh.baselines.LogitKD`, logits.
* ``"crd"``: :class:`perceptcoh.baselines.crd.CRD`, features and the batch's dataset positions; needs
  both dims and the training set's size.

Every loss is called as ``loss(student, teacher)`` (the student's side first, then the
teacher's; ``loss(student, teacher, indices)`` for the losses whose spec is ``indexed``) and
returns a 0-dim tensor. The losses whose :class:`LossSpec` has
``inputs="logits"`` take ``(B, C)`` logits; all the others take ``(B, q)`` student and
``(B, p)`` teacher features.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Literal

from torch import nn

from .baselines import (
    CRD,
    PKT,
    CorrelationCongruence,
    FitNet,
    LogitKD,
    RelationalKD,
    SimilarityPreserving,
)
from .loss import PerceptionCoherenceLoss

__all__ = ["LossSpec", "SPECS", "LOSSES", "LOGIT_LOSSES", "build_loss"]

_DIMENSIONS = ("student_dim", "teacher_dim")

@dataclass(frozen=True)
class LossSpec:
    """What a trainer needs to know about one transfer loss.

    * ``cls``: the loss module; called as ``loss(student, teacher)``.
    * ``inputs``: ``"features"`` (penultimate features) or ``"logits"``.
    * ``default_beta``: its weight next to cross-entropy when a run sets neither ``beta``
      nor ``gradient_ratio``. The baselines follow RepDistiller's CIFAR-100 settings (Tian
      et al., 2020), rescaled where our loss is normalised differently: RepDistiller's PKT
      averages over all ``B^2`` pairs of a batch of 64 where ours sums over neighbours (a
      factor ``B``), so its 3e4 becomes 3e4 / 64. ``"pc"`` and ``"kd"`` (equal weight) are
      starting points to tune.
    * ``sized``: constructor arguments sized from the networks (``"student_dim"``,
      ``"teacher_dim"``) or the data (``"dataset_size"``, the training images), for losses
      with learnable projections or a memory over the training set.
    * ``indexed``: called with a third argument, the batch's positions in the training set.
    * ``device_checks``: the constructor takes ``check_finite`` (a trainer turns it off and
      checks each epoch's loss instead, to keep host synchronisations out of its steps).
    * ``global_batch``: the constructor takes ``process_group``, which a trainer passes under
      DDP: PC ranks each process's anchors over the global batch, CRD updates its memory
      banks with the global batch.
    """

    cls: type[nn.Module]
    inputs: Literal["features", "logits"]
    default_beta: float
    sized: tuple[str, ...] = ()
    indexed: bool = False
    device_checks: bool = True
    global_batch: bool = False


SPECS: dict[str, LossSpec] = {
    "pc": LossSpec(PerceptionCoherenceLoss, "features", 1.0, global_batch=True),
    "fitnet": LossSpec(FitNet, "features", 100.0, sized=_DIMENSIONS),
    "sp": LossSpec(SimilarityPreserving, "features", 3000.0),
    "cc": LossSpec(CorrelationCongruence, "features", 0.02, sized=_DIMENSIONS),
    "rkd": LossSpec(RelationalKD, "features", 1.0),
    "pkt": LossSpec(PKT, "features", 3e4 / 64),
    "kd": LossSpec(LogitKD, "logits", 1.0),
    # RepDistiller's CRD runs use beta = 0.8.
    "crd": LossSpec(CRD, "features", 0.8, sized=(*_DIMENSIONS, "dataset_size"), indexed=True,
                    global_batch=True),
}

# Views of SPECS, for loops over the losses.
LOSSES: dict[str, type[nn.Module]] = {name: spec.cls for name, spec in SPECS.items()}
LOGIT_LOSSES = frozenset(name for name, spec in SPECS.items() if spec.inputs == "logits")


def build_loss(
    name: str,
    *,
    student_dim: int | None = None,
    teacher_dim: int | None = None,
    dataset_size: int | None = None,
    **options: object,
) -> nn.Module:
    """Construct the transfer loss registered as ``name``.

    ``student_dim``, ``teacher_dim`` and ``dataset_size`` are passed only to the losses
    whose :attr:`LossSpec.sized` names them (``"fitnet"``, ``"cc"``, ``"crd"``), so a
    trainer can always pass all three; the others ignore them. ``options`` are
    the constructor's other keyword arguments (``tau`` for ``"pc"``, ``temperature`` for
    ``"kd"``, ...).

    The losses in :data:`LOGIT_LOSSES` (``"kd"``: ``inputs="logits"``) are called with
    ``(student_logits, teacher_logits)``, two ``(B, C)`` tensors; all the others with
    ``(student_features, teacher_features)`` of shapes ``(B, q)`` and ``(B, p)``.

    Raises:
        TypeError: ``name`` is not a string, or an option is not an argument of the loss.
        ValueError: ``name`` is unknown (the message lists the known names), or the loss
            needs ``student_dim``/``teacher_dim``/``dataset_size`` and it is ``None``.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    if name not in SPECS:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(sorted(SPECS))}")
    spec = SPECS[name]
    dimensions = {"student_dim": student_dim, "teacher_dim": teacher_dim,
                  "dataset_size": dataset_size}
    arguments: dict[str, object] = {}
    for dimension in spec.sized:
        if dimensions[dimension] is None:
            raise ValueError(f"loss {name!r} needs {dimension}, got None")
        arguments[dimension] = dimensions[dimension]
    parameters = inspect.signature(spec.cls).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for option in options:
        if not (accepts_any or option in parameters):
            known = [p for p in parameters if p not in spec.sized]
            raise TypeError(
                f"loss {name!r} has no option {option!r}; its options are {', '.join(known)}"
            )
    return spec.cls(**arguments, **options)
