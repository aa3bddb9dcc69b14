r"""Collapse and degradation: features that no longer tell images apart, or barely do,
detected so that it is never silent.

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

A run can fail short of that: most of its channels dead, its features shrunk to a sliver of
their size, or spread along one or two directions only. Such a run is *degraded*
(:func:`degradation_reasons`): ``results.json`` holds ``degraded`` and, in ``collapse``,
``degradation`` (the reasons), the effective rank, the spanned dimensions and the norm
relative to the initial student's; a :class:`DegradedWarning` names it and the book's tables
mark it (‡), apart from a collapse (†). The thresholds sit far from every healthy run
measured (``scripts/feature_health.py``, saved in ``results/feature-health.json``): in the
155 runs of the saved laptop documents no dimension was dead, except in the two fair-selection
runs whose probe fell near chance (PC with Euclidean dissimilarities and FitNet, at gradient
ratio 10: 61% and 97% of their dimensions dead); in the 39 trained laptop runs with a saved
model (CIFAR-100, ResNet-8 students, 64 features) the features spanned at least 14
dimensions (eigenvalues above :data:`SPAN_TOLERANCE` of the largest; the untrained students
at least 10), and the final norm was 0.29 to 6.5 times the initial student's.

The effective rank, the participation ratio :math:`(\sum_k \lambda_k)^2 / \sum_k
\lambda_k^2` of the eigenvalues :math:`\lambda_k` of the features' covariance, is recorded
but not thresholded: the untrained ResNet-8 student's is only 1.3 to 2.2 (one direction
dominates its random features), as low as a degenerate run's, while its features span 10
dimensions or more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from .data import ImageDataset, normalize
from .evaluate import extract_features

if TYPE_CHECKING:
    from .state import Session

__all__ = ["COLLAPSE_IMAGES", "DEGRADED_DEAD_FRACTION", "DEGRADED_NORM_RATIO", "DEGRADED_SPAN",
           "SPAN_TOLERANCE", "ZERO_FRACTION", "CollapseWarning", "DegradedWarning",
           "feature_statistics", "collapse_reasons", "degradation_reasons", "check_collapse",
           "epoch_feature_statistics"]

# Images the features are measured on: the first of the test set, the same every epoch.
COLLAPSE_IMAGES = 512
# Fraction of feature entries exactly 0 at or above which the features count as collapsed.
ZERO_FRACTION = 0.99
# Degraded (see the module's docstring): at least this fraction of the dimensions dead,
DEGRADED_DEAD_FRACTION = 0.5
# fewer spanned dimensions than this (covariance eigenvalues at least SPAN_TOLERANCE times
# the largest),
DEGRADED_SPAN = 3
SPAN_TOLERANCE = 1e-3
# or a mean feature norm below this fraction of the initial student's.
DEGRADED_NORM_RATIO = 0.05


class CollapseWarning(UserWarning):
    """A finished run's features collapsed (:func:`collapse_reasons`): its probes, kNN and
    gaps measure a handful of points, not a representation."""


class DegradedWarning(UserWarning):
    """A finished run's features are degraded (:func:`degradation_reasons`): they still tell
    images apart, but through a few live dimensions or a sliver of their initial size."""


def feature_statistics(features: torch.Tensor) -> dict:
    r"""What the features of ``n`` images, an ``(n, d)`` tensor, say about collapse (two reads
    from the device: the statistics, then the distinct rows):

    * ``feature_norm``: the mean Euclidean norm of a row;
    * ``zero_fraction``: the fraction of the ``n * d`` entries that are exactly 0;
    * ``dead_fraction``: the fraction of the ``d`` dimensions that are exactly 0 on every
      image (dead ReLUs);
    * ``distinct_rows``: the number of distinct rows (images the features tell apart, at
      most ``n``);
    * ``effective_rank``: the participation ratio :math:`(\sum_k \lambda_k)^2 / \sum_k
      \lambda_k^2` of the eigenvalues of the features' covariance, from 1 (one direction)
      to ``d`` (all alike); 0 for constant or non-finite features;
    * ``spanned_dimensions``: the number of those eigenvalues at least
      :data:`SPAN_TOLERANCE` times the largest; 0 for constant or non-finite features;
    * ``finite``: whether every entry is finite;
    * ``images``: ``n``.

    Computed in float32 whatever the features' dtype, the covariance's eigenvalues in
    float64 on the CPU.
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
    effective_rank, spanned = _spectrum(features) if finite else (0.0, 0)
    return {"feature_norm": norm, "zero_fraction": zero_fraction,
            "dead_fraction": dead_fraction,
            "distinct_rows": int(torch.unique(features, dim=0).shape[0]),
            "effective_rank": effective_rank, "spanned_dimensions": spanned,
            "finite": bool(finite), "images": int(features.shape[0])}


def _spectrum(features: torch.Tensor) -> tuple[float, int]:
    """The effective rank and spanned dimensions of finite ``(n, d)`` features
    (:func:`feature_statistics`)."""
    centred = features.cpu().double()
    centred = centred - centred.mean(dim=0)
    eigenvalues = torch.linalg.eigvalsh(centred.T @ centred).clamp(min=0)
    largest = eigenvalues.max()
    if largest <= 0:
        return 0.0, 0
    rank = eigenvalues.sum() ** 2 / (eigenvalues ** 2).sum()
    return float(rank), int((eigenvalues >= SPAN_TOLERANCE * largest).sum())


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


def degradation_reasons(statistics: dict, initial_norm: float | None = None) -> list[str]:
    """Why features with :func:`feature_statistics` ``statistics`` (or a saved record of
    them) are degraded; an empty list when they are not. Degraded means any of:

    * at least :data:`DEGRADED_DEAD_FRACTION` (half) of the dimensions are dead (exactly 0
      on every image);
    * the features span fewer than :data:`DEGRADED_SPAN` (3) dimensions;
    * their mean norm is below :data:`DEGRADED_NORM_RATIO` (1/20) of ``initial_norm``, the
      initial student's.

    A statistic the record lacks (saved before it was measured), or an ``initial_norm`` of
    ``None``, is not judged. Non-finite features are a collapse, not judged here.
    """
    if not statistics.get("finite", True):
        return []
    reasons = []
    dead = statistics.get("dead_fraction")
    if dead is not None and dead >= DEGRADED_DEAD_FRACTION:
        reasons.append(f"{dead:.1%} of the dimensions dead")
    spanned = statistics.get("spanned_dimensions")
    if spanned is not None and spanned < DEGRADED_SPAN:
        reasons.append(f"the features span {spanned} dimension{'s' * (spanned != 1)}")
    norm = statistics.get("feature_norm")
    if initial_norm and norm is not None and norm < DEGRADED_NORM_RATIO * initial_norm:
        reasons.append(f"the feature norm is {norm / initial_norm:.3g} times the initial "
                       f"student's")
    return reasons


def check_collapse(model: nn.Module, dataset: ImageDataset, *, images: int = COLLAPSE_IMAGES,
                   batch_size: int = 1024, channels_last: bool = True,
                   initial_norm: float | None = None) -> dict:
    """:func:`feature_statistics` of ``model``'s features of the first ``images`` images of
    ``dataset`` (all of them if fewer), extracted as evaluation extracts them
    (:func:`perceptcoh.engine.evaluate.extract_features`: eval mode, IEEE float32), with
    ``collapsed`` and the ``reasons`` of :func:`collapse_reasons`, ``norm_ratio`` (the
    mean norm over ``initial_norm``, the initial student's, when given and not 0), the
    ``degradation`` of :func:`degradation_reasons`, and ``degraded``: degraded short of a
    collapse (a collapsed run is not also called degraded)."""
    first = dataset.subset(torch.arange(min(images, len(dataset))))
    features, _ = extract_features(model, first, batch_size, channels_last=channels_last)
    statistics = feature_statistics(features)
    reasons = collapse_reasons(statistics, dataset.num_classes)
    degradation = degradation_reasons(statistics, initial_norm)
    ratio = statistics["feature_norm"] / initial_norm if initial_norm else None
    return {"collapsed": bool(reasons), **statistics, "reasons": reasons,
            "norm_ratio": ratio, "degraded": bool(degradation) and not reasons,
            "degradation": degradation}


def epoch_feature_statistics(session: Session, images: int = COLLAPSE_IMAGES
                             ) -> dict[str, float]:
    """``feature_norm``, ``dead_fraction`` and ``effective_rank`` (:func:`feature_statistics`)
    of the session's
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
    return {name: statistics[name] for name in ("feature_norm", "dead_fraction",
                                                "effective_rank")}
