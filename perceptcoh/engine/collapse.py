"""Collapse: features that no longer tell images apart, detected so that it is never silent.

A student whose features collapse (every ReLU of its last layer dead, or every image
mapped to a handful of points) still trains with a finite loss and fills every table with
numbers: a linear probe at chance, a perception gap, a kNN accuracy. The engine therefore
measures the features on a fixed set of images, the first :data:`COLLAPSE_IMAGES` test
images un-augmented:

* every epoch, in the run's precision (:func:`epoch_feature_statistics`): each epoch
  record of ``history`` holds ``feature_norm`` and ``dead_fraction``;
* at the end of a run, in IEEE float32 as evaluated (:func:`check_collapse`):
  ``results.json`` holds ``collapsed`` and ``collapse`` (the statistics behind it and the
  reasons), and a collapsed run raises a :class:`CollapseWarning` that names it.

:func:`collapse_reasons` holds the definition. The laptop chapter
(book/experiments/02_laptop) shows the collapse that made these checks necessary: PC
students of the laptop table whose ReLU features died.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from .data import ImageDataset, normalize
from .evaluate import extract_features

if TYPE_CHECKING:
    from .state import Session

__all__ = ["COLLAPSE_IMAGES", "ZERO_FRACTION", "CollapseWarning", "feature_statistics",
           "collapse_reasons", "check_collapse", "epoch_feature_statistics"]

# Images the features are measured on: the first of the test set, the same every epoch.
COLLAPSE_IMAGES = 512
# Fraction of feature entries exactly 0 at or above which the features count as collapsed.
ZERO_FRACTION = 0.99


class CollapseWarning(UserWarning):
    """A finished run's features collapsed (:func:`collapse_reasons`): its probes, kNN and
    gaps measure a handful of points, not a representation."""


def feature_statistics(features: torch.Tensor) -> dict:
    """What the features of ``n`` images, an ``(n, d)`` tensor, say about collapse (two reads
    from the device: the statistics, then the distinct rows):

    * ``feature_norm``: the mean Euclidean norm of a row;
    * ``zero_fraction``: the fraction of the ``n * d`` entries that are exactly 0;
    * ``dead_fraction``: the fraction of the ``d`` dimensions that are exactly 0 on every
      image (dead ReLUs);
    * ``distinct_rows``: the number of distinct rows (images the features tell apart, at
      most ``n``);
    * ``finite``: whether every entry is finite;
    * ``images``: ``n``.

    Computed in float32 whatever the features' dtype.
    """
    if features.ndim != 2 or features.shape[0] < 1:
        raise ValueError(f"features must be a non-empty (n, d) tensor, got shape "
                         f"{tuple(features.shape)}")
    features = features.detach().float()
    zero = features == 0
    values = torch.stack([
        features.norm(dim=1).mean(),
        zero.float().mean(),
        zero.all(dim=0).float().mean(),
        torch.isfinite(features).all().float(),
    ]).tolist()
    norm, zero_fraction, dead_fraction, finite = values
    return {"feature_norm": norm, "zero_fraction": zero_fraction,
            "dead_fraction": dead_fraction,
            "distinct_rows": int(torch.unique(features, dim=0).shape[0]),
            "finite": bool(finite), "images": int(features.shape[0])}


def collapse_reasons(statistics: dict, num_classes: int) -> list[str]:
    """Why features with :func:`feature_statistics` ``statistics`` have collapsed; an empty
    list when they have not.

    Features of ``n`` images of a dataset of ``num_classes`` classes have collapsed when
    any of these holds:

    * an entry is NaN or infinite;
    * at least :data:`ZERO_FRACTION` (99%) of the entries are exactly 0;
    * fewer than ``min(num_classes, n)`` rows are distinct: no classifier on these
      features can tell every class apart.
    """
    reasons = []
    if not statistics["finite"]:
        reasons.append("non-finite features")
    if statistics["zero_fraction"] >= ZERO_FRACTION:
        reasons.append(f"{statistics['zero_fraction']:.1%} of the feature entries are 0 "
                       f"({statistics['dead_fraction']:.1%} of the dimensions dead)")
    needed = min(num_classes, statistics["images"])
    if statistics["distinct_rows"] < needed:
        reasons.append(f"{statistics['distinct_rows']} distinct feature rows among "
                       f"{statistics['images']} images, fewer than {needed}")
    return reasons


def check_collapse(model: nn.Module, dataset: ImageDataset, *, images: int = COLLAPSE_IMAGES,
                   batch_size: int = 1024, channels_last: bool = True) -> dict:
    """:func:`feature_statistics` of ``model``'s features of the first ``images`` images of
    ``dataset`` (all of them if fewer), extracted as evaluation extracts them
    (:func:`perceptcoh.engine.evaluate.extract_features`: eval mode, IEEE float32), with
    ``collapsed`` and the ``reasons`` of :func:`collapse_reasons`."""
    first = dataset.subset(torch.arange(min(images, len(dataset))))
    features, _ = extract_features(model, first, batch_size, channels_last=channels_last)
    statistics = feature_statistics(features)
    reasons = collapse_reasons(statistics, dataset.num_classes)
    return {"collapsed": bool(reasons), **statistics, "reasons": reasons}


def epoch_feature_statistics(session: Session, images: int = COLLAPSE_IMAGES
                             ) -> dict[str, float]:
    """``feature_norm`` and ``dead_fraction`` (:func:`feature_statistics`) of the session's
    student on the first ``images`` test images, measured as the student trains: eval mode,
    ``torch.inference_mode``, the session's precision and memory layout; read from the device
    once the epoch is done. The student's train/eval mode is restored."""
    config, student = session.config, session.student
    dataset = session.test_set
    count = min(images, len(dataset))
    was_training = student.training
    student.eval()
    parts = []
    try:
        with session.autocast, torch.inference_mode():
            for start in range(0, count, config.eval_batch_size):
                stop = min(count, start + config.eval_batch_size)
                inputs = normalize(dataset.images[start:stop], *session.normalisation,
                                   channels_last=config.channels_last)
                parts.append(student(inputs)[0].float())
    finally:
        student.train(was_training)
    statistics = feature_statistics(torch.cat(parts))
    return {name: statistics[name] for name in ("feature_norm", "dead_fraction")}
