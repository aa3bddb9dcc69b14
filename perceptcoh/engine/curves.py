"""Learning curves: every ``curve_every`` optimiser steps, what a student's step looks like.

A point, measured on the step's own batch and forward pass, before the optimiser steps:

* ``step``: optimiser steps taken before it (0: the initial student);
* ``loss``: the loss that is stepped; ``transfer_loss``: ``L``; ``cross_entropy``: CE on
  the student's logits (in the pure protocol computed for this measurement only);
* ``gradient_ratio``: ``|grad_theta (w L)| / |grad_theta CE|`` over the student's
  parameters ``theta``, where ``w`` is the weight the step gives ``L`` (``beta``); it starts
  near the run's ``gradient_ratio`` when beta was measured, and says how it drifts;
* ``feature_norm``: the mean Euclidean norm of the batch's feature rows;
* ``effective_rank``: the participation ratio of the batch features' covariance
  eigenvalues, ``(sum_k lambda_k)^2 / sum_k lambda_k^2 = tr(C)^2 / ||C||_F^2``, between 1
  (one direction) and the feature dimension (all directions alike).

The measurement reads the graph the step builds (two extra backward passes with
``torch.autograd.grad``, which leave ``.grad`` alone) and queues device tensors only: the
loop reads the points once per epoch. The weights a run reaches do not depend on whether it
records curves.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["CURVE_FIELDS", "curve_point", "effective_rank", "curve_records"]

CURVE_FIELDS = ("loss", "transfer_loss", "cross_entropy", "gradient_ratio", "feature_norm",
                "effective_rank")


def effective_rank(features: torch.Tensor) -> torch.Tensor:
    """The participation ratio ``tr(C)^2 / ||C||_F^2`` of the covariance ``C`` of the rows
    of ``features`` ``(n, d)``, a 0-dim float tensor (``nan`` when every row is the same)."""
    rows = features.detach().float()
    centred = rows - rows.mean(dim=0)
    covariance = centred.T @ centred
    return torch.trace(covariance) ** 2 / covariance.square().sum()


def curve_point(objective: nn.Module, loss: torch.Tensor, features: torch.Tensor,
                cross_entropy: torch.Tensor, term: torch.Tensor | None) -> torch.Tensor:
    """The :data:`CURVE_FIELDS` of one step as a float64 device tensor (``nan`` where the
    run has no transfer loss). ``objective`` is the step's
    :class:`perceptcoh.engine.session.Objective`; the graph of ``loss``, ``cross_entropy``
    and ``term`` must still be alive: it is kept for the step's own backward pass."""
    parameters = [p for p in objective.student.parameters() if p.requires_grad]
    ce_norm = _gradient_norm(cross_entropy, parameters)
    missing = torch.full((), math.nan, device=loss.device)
    if term is None:
        transfer, ratio = missing, missing
    else:
        transfer = term.detach().float()
        ratio = _gradient_norm(objective.transfer_weight * term, parameters) / ce_norm
    rows = features.detach().float()
    values = [loss.detach().float(), transfer, cross_entropy.detach().float(), ratio,
              rows.norm(dim=1).mean(), effective_rank(rows)]
    return torch.stack([value.reshape(()).double() for value in values])


def curve_records(points: list[tuple[int, torch.Tensor]]) -> list[dict]:
    """``(step, curve_point)`` pairs as dicts (one read from the device for all)."""
    if not points:
        return []
    values = torch.stack([point for _, point in points]).tolist()
    return [{"step": step, **{name: (value if math.isfinite(value) else None)
                              for name, value in zip(CURVE_FIELDS, row)}}
            for (step, _), row in zip(points, values)]


def _gradient_norm(value: torch.Tensor, parameters: list[torch.Tensor]) -> torch.Tensor:
    gradients = torch.autograd.grad(value, parameters, retain_graph=True, allow_unused=True)
    return torch.sqrt(sum(g.float().square().sum() for g in gradients if g is not None))
