"""What a trained student is worth: accuracy, frozen-feature probes, and coherence with its teacher.

* :func:`top1_accuracy`: the model's own classifier on a labelled set (the supervised protocol).
* :func:`extract_features`: the penultimate features of a whole set, for the probes below.
* :func:`linear_probe_accuracy`, :func:`knn_accuracy`, :func:`retrieval_map`: what frozen
  features are worth without the model's classifier (protocol (b)).
* :func:`transfer_metrics`: perception gap, triplet concordance and kNN agreement between
  teacher and student features on the same images (book: book/theory/03_perception).
* :func:`evaluate_models`: all of the above at once, as saved in a run's ``results.json``.

Every function works on the device the features (or the model) live on, a chunk of rows
at a time, and returns Python floats. Accuracies are fractions in ``[0, 1]``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import Metric, check_chunk_size, check_metric
from .checkpoint import model_from_checkpoint
from .config import on_logits
from .data import ImageDataset, load_dataset, normalize
from .distributed import resolve_device
from .files import atomic_write_text, file_sha256, seeded_prefix
from .provenance import provenance
from ..dissimilarity import pairwise
from ..metrics import knn_agreement, triplet_concordance
from ..perception import perception, perception_gap
from ..ranking import exact_ranks, row_chunks

__all__ = [
    "top1_accuracy",
    "extract_features",
    "linear_probe_accuracy",
    "fit_linear_probe",
    "knn_accuracy",
    "retrieval_map",
    "transfer_metrics",
    "TeacherReference",
    "evaluate_teacher",
    "evaluate_models",
]

# Elements of the largest (rows x reference points) block a chunk may hold.
_CHUNK_ELEMENTS = {"cpu": 1 << 22, "cuda": 1 << 27}


def top1_accuracy(
    model: nn.Module,
    dataset: ImageDataset,
    batch_size: int = 1024,
    *,
    channels_last: bool = True,
) -> float:
    """Fraction of ``dataset`` whose label is the arg-max of the model's logits.

    ``model`` returns ``(features, logits)``; it is run in eval mode under
    ``torch.inference_mode`` on its own device (``dataset`` may live elsewhere: batches are
    moved), on images normalised with ``dataset.mean``/``dataset.std``, in IEEE float32 (no
    autocast, and no TF32 on a GPU: a lower precision reorders nearby points and changes their
    exact ranks). The model's train/eval mode is restored afterwards.
    """
    _, logits, labels = _outputs(model, dataset, batch_size, channels_last=channels_last)
    return float((logits.argmax(dim=1) == labels).float().mean())


def extract_features(
    model: nn.Module,
    dataset: ImageDataset,
    batch_size: int = 1024,
    *,
    channels_last: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's features of every image of ``dataset``, in order, and their labels.

    Same conventions as :func:`top1_accuracy`. Returns ``(features, labels)``: a float32
    ``(N, feature_dim)`` tensor and an int64 ``(N,)`` tensor, both on the model's device,
    neither requiring gradient.
    """
    features, _, labels = _outputs(model, dataset, batch_size, channels_last=channels_last)
    return features, labels


@contextlib.contextmanager
def ieee_float32(device: torch.device):
    """Float32 matmuls and convolutions in full IEEE precision on ``device``: TF32 (a 10-bit
    mantissa) off for the duration, the previous settings restored after. Nothing to do on a
    CPU."""
    if device.type != "cuda":
        yield
        return
    matmul_precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        with torch.backends.cudnn.flags(
            enabled=torch.backends.cudnn.enabled, benchmark=torch.backends.cudnn.benchmark,
            deterministic=torch.backends.cudnn.deterministic, allow_tf32=False,
        ):
            yield
    finally:
        torch.set_float32_matmul_precision(matmul_precision)


def _outputs(
    model: nn.Module, dataset: ImageDataset, batch_size: int, *, channels_last: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features, logits (both IEEE float32) and labels of the whole set, on the model's device."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if len(dataset) == 0:
        raise ValueError("dataset is empty")
    device = _model_device(model)
    was_training = model.training
    model.eval()
    features, logits = [], []
    # As device tensors once, rather than floats copied to the device for every batch.
    mean = torch.tensor(dataset.mean, dtype=torch.float32).to(device)
    std = torch.tensor(dataset.std, dtype=torch.float32).to(device)
    try:
        with torch.inference_mode(), ieee_float32(device):
            for start in range(0, len(dataset), batch_size):
                images = dataset.images[start : start + batch_size].to(device, non_blocking=True)
                inputs = normalize(images, mean, std, channels_last=channels_last)
                batch_features, batch_logits = model(inputs)
                features.append(batch_features.float())
                logits.append(batch_logits.float())
    finally:
        model.train(was_training)
    labels = dataset.labels.to(device)
    # Clones leave inference mode, so the results can be used anywhere, autograd included.
    return torch.cat(features).clone(), torch.cat(logits).clone(), labels.clone()


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def linear_probe_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    l2: float = 1e-4,
    max_iter: int = 500,
    num_classes: int | None = None,
) -> float:
    """Test accuracy of a multinomial logistic regression fitted on frozen train features.

    The features are standardised with the train set's per-feature mean and standard
    deviation (a constant feature is left at 0). The classifier ``softmax(W z + b)`` minimises
    the full-batch objective::

        mean_i  -log softmax(W z_i + b)[y_i]  +  l2 / 2 * ||W||_F^2      (b not penalised)

    with L-BFGS (strong-Wolfe line search) on the features' device and dtype: on a GPU a
    CIFAR-sized probe takes well under a second, and no scikit-learn is needed. This is
    scikit-learn's ``LogisticRegression`` objective (``lbfgs``, multinomial) with
    ``C = 1 / (l2 * n_train)``; the tests check the two agree.

    Args:
        train_features: ``(n, d)`` floating tensor; ``train_labels``: ``(n,)`` integers.
        test_features: ``(m, d)`` on the same device; ``test_labels``: ``(m,)`` integers.
        l2: weight-decay strength ``>= 0``.
        max_iter: L-BFGS iterations at most.
        num_classes: number of classes; ``None`` for ``1 + the largest label``.

    Returns:
        Fraction of test points whose arg-max class is their label.
    """
    _check_labelled(train_features, train_labels, "train")
    _check_labelled(test_features, test_labels, "test")
    if test_features.shape[1] != train_features.shape[1]:
        raise ValueError(
            "train_features and test_features must have the same number of features, "
            f"got {train_features.shape[1]} and {test_features.shape[1]}"
        )
    if num_classes is None:
        num_classes = int(torch.maximum(train_labels.max(), test_labels.max())) + 1
    weight, bias, mean, std = fit_linear_probe(
        train_features, train_labels, num_classes, l2=l2, max_iter=max_iter
    )
    test = (test_features.detach().to(weight.dtype) - mean) / std
    predictions = (test @ weight.T + bias).argmax(dim=1)
    return float((predictions == test_labels).float().mean())


def fit_linear_probe(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    l2: float = 1e-4,
    max_iter: int = 500,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The classifier of :func:`linear_probe_accuracy`: ``(weight, bias, mean, std)``.

    Class scores of features ``x`` are ``((x - mean) / std) @ weight.T + bias``; ``weight``
    is ``(num_classes, d)``, the others ``(num_classes,)`` and ``(d,)``; float64 for
    float64 features, float32 otherwise; no gradient.
    """
    if not l2 >= 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    dtype = features.dtype if features.dtype == torch.float64 else torch.float32
    train = features.detach().to(dtype)
    mean = train.mean(dim=0)
    std = train.std(dim=0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))
    train = (train - mean) / std
    labels = labels.long()
    weight = torch.zeros(num_classes, train.shape[1], dtype=dtype, device=train.device)
    bias = torch.zeros(num_classes, dtype=dtype, device=train.device)
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        objective = F.cross_entropy(train @ weight.T + bias, labels)
        objective = objective + 0.5 * l2 * weight.square().sum()
        objective.backward()
        return objective

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach(), mean, std


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    k: int = 20,
    *,
    metric: Metric = "euclidean",
    chunk_size: int | None = None,
) -> float:
    """Test accuracy of a ``k``-nearest-neighbour majority vote among the train features.

    Each test point takes the ``k`` train points with the smallest dissimilarity ``metric``
    (see :func:`perceptcoh.dissimilarity`; euclidean by default, the metric whose order the
    PC loss transfers) and predicts their most frequent label. A tie between classes goes to
    the class whose nearest member ranks first among the ``k`` (a tie at the ``k``-th
    distance itself is broken by ``torch.topk``). Test points are processed
    ``chunk_size`` at a time (``None``: a per-device budget), so memory is
    ``O(chunk_size * n_train)``.

    Returns:
        Fraction of test points predicted correctly.
    """
    _check_labelled(train_features, train_labels, "train")
    _check_labelled(test_features, test_labels, "test")
    check_metric(metric, "metric")
    n = train_features.shape[0]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"k must be an integer in [1, n_train] = [1, {n}], got {k!r}")
    device = test_features.device
    num_classes = int(torch.maximum(train_labels.max(), test_labels.max())) + 1
    correct = torch.zeros((), dtype=torch.int64, device=device)
    # Rank bonus: k - position of the class's first (nearest) member, in [1, k], below the
    # (k + 1) that one more vote is worth, so it only decides between equal vote counts.
    bonus = torch.arange(k, 0, -1, device=device)
    with torch.no_grad():
        for start, stop in row_chunks(test_features.shape[0], n, check_chunk_size(chunk_size), device, _CHUNK_ELEMENTS):
            distances = pairwise(test_features[start:stop], train_features, metric)
            neighbours = distances.topk(k, dim=1, largest=False, sorted=True).indices
            votes = train_labels[neighbours]
            score = torch.zeros(stop - start, num_classes, dtype=torch.int64, device=device)
            score.scatter_add_(1, votes, torch.full_like(votes, k + 1))
            nearest = torch.zeros_like(score).scatter_reduce_(
                1, votes, bonus.expand_as(votes), reduce="amax"
            )
            predictions = (score + nearest).argmax(dim=1)
            correct += (predictions == test_labels[start:stop]).sum()
    return float(correct) / test_features.shape[0]


def retrieval_map(
    features: torch.Tensor,
    labels: torch.Tensor,
    *,
    metric: Metric = "euclidean",
    chunk_size: int | None = None,
) -> float:
    """Mean average precision of retrieving same-label points, each point a query.

    Query ``i`` ranks the other ``n - 1`` points by increasing dissimilarity; a point is
    relevant when it shares ``i``'s label. With ``rel_t`` the relevance of the point at
    position ``t = 1 .. n-1`` and ``R_i`` the number of relevant points::

        AP_i = 1/R_i * sum_t rel_t * (sum_{u <= t} rel_u) / t

    and the result is the mean of ``AP_i`` over the queries with ``R_i > 0`` (``nan`` if
    there is none). Equal dissimilarities keep the points' index order (a stable sort).
    Queries are processed ``chunk_size`` at a time, so memory is ``O(chunk_size * n)``.
    """
    _check_labelled(features, labels, "")
    check_metric(metric, "metric")
    n = features.shape[0]
    device = features.device
    total = torch.zeros((), dtype=torch.float64, device=device)
    queries = torch.zeros((), dtype=torch.int64, device=device)
    positions = torch.arange(1, n, device=device, dtype=torch.float64)
    with torch.no_grad():
        for start, stop in row_chunks(n, n, check_chunk_size(chunk_size), device, _CHUNK_ELEMENTS):
            rows = torch.arange(start, stop, device=device)
            distances = pairwise(features[start:stop], features, metric).clone()
            # The query itself sorts last, out of its own ranking.
            distances.scatter_(1, rows[:, None], float("inf"))  # a scalar: no copy to the device
            order = distances.argsort(dim=1, stable=True)[:, : n - 1]
            relevant = (labels[order] == labels[start:stop, None]) & (order != rows[:, None])
            hits = relevant.double()
            precision_at_hits = hits.cumsum(dim=1) / positions * hits
            relevant_count = hits.sum(dim=1)
            has_relevant = relevant_count > 0
            average_precision = precision_at_hits.sum(dim=1) / relevant_count.clamp_min(1)
            total += (average_precision * has_relevant).sum()
            queries += has_relevant.sum()
    return float(total / queries) if int(queries) > 0 else math.nan


def transfer_metrics(
    student_features: torch.Tensor,
    teacher_features: torch.Tensor,
    max_points: int | None = 1000,
    *,
    gap_max_points: int | None = None,
    k: int = 10,
    metric_teacher: Metric = "euclidean",
    metric_student: Metric = "euclidean",
    seed: int = 0,
    teacher_ranks: torch.Tensor | None = None,
) -> dict[str, float]:
    """How coherent the student's features are with the teacher's on the same images.

    * ``perception_gap_r1``, ``perception_gap_r2``: :func:`perceptcoh.perception_gap` with
      ``r = 1`` and ``2`` (``O(n^2 log n)``), on ``gap_max_points`` points (``None``: all).
    * ``knn_agreement``: :func:`perceptcoh.knn_agreement` with ``k`` neighbours, same points.
    * ``triplet_concordance``: :func:`perceptcoh.triplet_concordance`, ``O(n^3)``, on
      ``max_points`` points (``None``: all; 1000 points is about 10^9 comparisons).

    Subsamples are drawn without replacement by a CPU generator seeded with ``seed``, so
    they are the same points on every device; the smaller sample is a prefix of the larger.
    The returned dict also holds the two sample sizes (``gap_points``, ``triplet_points``).

    ``teacher_ranks``: ``perception`` of the teacher's features on the gap sample, computed
    once for many students (:func:`evaluate_teacher`); the gaps are then the same numbers
    up to the order of a float64 sum.
    """
    n = teacher_features.shape[0]
    if student_features.shape[0] != n:
        raise ValueError(
            "teacher_features and student_features must have the same number of samples, "
            f"got {n} and {student_features.shape[0]}"
        )
    order = seeded_prefix(n, n, seed).to(teacher_features.device)
    gap_points = n if gap_max_points is None else min(n, gap_max_points)
    triplet_points = n if max_points is None else min(n, max_points)
    teacher, student = teacher_features.detach().float(), student_features.detach().float()
    gap_sample = order[:gap_points]
    gap_teacher, gap_student = teacher[gap_sample], student[gap_sample]
    if teacher_ranks is None:
        gaps = {r: perception_gap(gap_student, gap_teacher, metric_student=metric_student,
                                  metric_teacher=metric_teacher, r=r)
                for r in (1, 2)}
    else:
        if teacher_ranks.shape != (gap_points, gap_points):
            raise ValueError(f"teacher_ranks must have shape ({gap_points}, {gap_points}), "
                             f"got {tuple(teacher_ranks.shape)}")
        gaps = _gaps_against_ranks(teacher_ranks, gap_student, metric_student)
    metrics = {
        "perception_gap_r1": gaps[1],
        "perception_gap_r2": gaps[2],
        "knn_agreement": knn_agreement(
            gap_student, gap_teacher, k=min(k, gap_points - 1),
            metric_student=metric_student, metric_teacher=metric_teacher,
        ),
        "triplet_concordance": triplet_concordance(
            student[order[:triplet_points]], teacher[order[:triplet_points]],
            metric_student=metric_student, metric_teacher=metric_teacher,
        ),
    }
    result = {name: float(value) for name, value in metrics.items()}
    result.update(gap_points=gap_points, triplet_points=triplet_points)
    return result


def _gaps_against_ranks(teacher_ranks: torch.Tensor, student: torch.Tensor, metric: Metric
                        ) -> dict[int, torch.Tensor]:
    """``perception_gap`` with ``r = 1`` and ``2`` from the teacher's full rank matrix."""
    n = student.shape[0]
    totals = {r: torch.zeros((), dtype=torch.float64, device=student.device) for r in (1, 2)}
    with torch.no_grad():
        for start, stop in row_chunks(n, n, None, student.device):
            distances = pairwise(student[start:stop], student, metric)
            rows = torch.arange(start, stop, device=student.device)
            difference = (teacher_ranks[start:stop].double()
                          - exact_ranks(distances, rows).double()).abs()
            totals[1] += difference.sum()
            totals[2] += difference.square().sum()
    return {r: (total / (n * (n - 1))).float() for r, total in totals.items()}


@dataclass
class TeacherReference:
    """What evaluating students against one teacher on one test set shares, computed once
    by :func:`evaluate_teacher`: the teacher's test ``features``, the exact ``ranks``
    (``perception``) of the gap sample, and the teacher's own ``metrics`` (``teacher_*``:
    top-1, probes, retrieval; empty without probes)."""

    features: torch.Tensor
    ranks: torch.Tensor
    metrics: dict[str, float]
    gap_max_points: int | None
    seed: int


def evaluate_teacher(
    teacher: nn.Module,
    test_set: ImageDataset,
    *,
    train_set: ImageDataset | None = None,
    probes: bool = True,
    k: int = 20,
    metric: Metric = "euclidean",
    gap_max_points: int | None = None,
    batch_size: int = 1024,
    channels_last: bool = True,
    seed: int = 0,
) -> TeacherReference:
    """The teacher's side of :func:`evaluate_models`, for many students at once; the
    arguments mean what they mean there (``probes``: compute the ``teacher_*`` metrics)."""
    with ieee_float32(_model_device(teacher)):
        features, logits, labels = _outputs(teacher, test_set, batch_size=batch_size,
                                            channels_last=channels_last)
        metrics = {}
        if probes:
            metrics = _model_metrics(teacher, "teacher_", features, logits, labels, test_set,
                                     train_set, True, k, metric, batch_size, channels_last)
        n = features.shape[0]
        gap_points = n if gap_max_points is None else min(n, gap_max_points)
        sample = seeded_prefix(n, gap_points, seed).to(features.device)
        ranks = perception(features.float()[sample], metric)
    return TeacherReference(features, ranks, metrics, gap_max_points, seed)


def evaluate_models(
    student: nn.Module,
    test_set: ImageDataset,
    *,
    train_set: ImageDataset | None = None,
    teacher: nn.Module | None = None,
    teacher_reference: TeacherReference | None = None,
    classifier: bool = True,
    teacher_probes: bool = True,
    k: int = 20,
    metric: Metric = "euclidean",
    max_points: int | None = 1000,
    gap_max_points: int | None = None,
    batch_size: int = 1024,
    channels_last: bool = True,
    seed: int = 0,
) -> dict[str, float]:
    """Every metric of a run on the test set, as one flat dict of floats.

    * ``top1``: the student's classifier (only with ``classifier``: a student trained by pure
      feature transfer has an untrained classifier).
    * ``linear_probe_top1``, ``knn_top1`` (with ``train_set``): probes fitted on the
      student's frozen features of ``train_set`` (clean images), scored on ``test_set``.
    * ``retrieval_map``: same-label retrieval among the student's test features.
    * with ``teacher``: :func:`transfer_metrics` between the two on the test set, and
      (with ``teacher_probes``) ``teacher_top1``, the teacher's probes and retrieval as
      ``teacher_*``.

    ``teacher_reference`` (from :func:`evaluate_teacher` with the same test set, seed and
    ``gap_max_points``) supplies the teacher's side, so that scoring many students against
    one teacher computes it once; without it, it is computed here.
    """
    common = dict(batch_size=batch_size, channels_last=channels_last)
    # IEEE float32 for the forward passes and for the distances of the metrics.
    with ieee_float32(_model_device(student)):
        features, logits, labels = _outputs(student, test_set, **common)
        results = _model_metrics(student, "", features, logits, labels, test_set, train_set,
                                 classifier, k, metric, batch_size, channels_last)
        if teacher is not None:
            reference = teacher_reference
            if reference is None:
                reference = evaluate_teacher(
                    teacher, test_set, train_set=train_set, probes=teacher_probes, k=k,
                    metric=metric, gap_max_points=gap_max_points, seed=seed, **common)
            elif reference.seed != seed or reference.gap_max_points != gap_max_points:
                raise ValueError(
                    f"teacher_reference was computed with seed {reference.seed} and "
                    f"gap_max_points {reference.gap_max_points}, this evaluation uses {seed} "
                    f"and {gap_max_points}"
                )
            if teacher_probes:
                if not reference.metrics:
                    raise ValueError("teacher_probes needs a teacher_reference computed with "
                                     "probes=True")
                results.update(reference.metrics)
            results.update(
                transfer_metrics(
                    features, reference.features, max_points,
                    gap_max_points=gap_max_points, seed=seed, teacher_ranks=reference.ranks,
                )
            )
        return results


def _model_metrics(model: nn.Module, prefix: str, features: torch.Tensor, logits: torch.Tensor,
                   labels: torch.Tensor, test_set: ImageDataset,
                   train_set: ImageDataset | None, classifier: bool, k: int, metric: Metric,
                   batch_size: int, channels_last: bool) -> dict[str, float]:
    """One model's top-1 (with ``classifier``), probes (with ``train_set``) and retrieval."""
    results: dict[str, float] = {}
    if classifier:
        results[f"{prefix}top1"] = float((logits.argmax(dim=1) == labels).float().mean())
    if train_set is not None:
        train_features, train_labels = extract_features(
            model, train_set, batch_size=batch_size, channels_last=channels_last)
        num_classes = max(train_set.num_classes, test_set.num_classes)
        results[f"{prefix}linear_probe_top1"] = linear_probe_accuracy(
            train_features, train_labels, features, labels, num_classes=num_classes
        )
        results[f"{prefix}knn_top1"] = knn_accuracy(
            train_features, train_labels, features, labels,
            k=min(k, len(train_set)), metric=metric,
        )
    results[f"{prefix}retrieval_map"] = retrieval_map(features, labels, metric=metric)
    return results


def _check_labelled(features: torch.Tensor, labels: torch.Tensor, name: str) -> None:
    prefix = f"{name}_" if name else ""
    if not isinstance(features, torch.Tensor) or features.ndim != 2:
        raise ValueError(f"{prefix}features must be a 2-D tensor (n, d)")
    if not features.is_floating_point():
        raise TypeError(f"{prefix}features must have a floating dtype, got {features.dtype}")
    if features.shape[0] < 1:
        raise ValueError(f"{prefix}features is empty")
    if not isinstance(labels, torch.Tensor) or labels.shape != features.shape[:1]:
        raise ValueError(
            f"{prefix}labels must be a tensor of shape ({features.shape[0]},), "
            f"got {getattr(labels, 'shape', type(labels).__name__)}"
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TypeError(f"{prefix}labels must be integers, got {labels.dtype}")
    if labels.device != features.device:
        raise ValueError(f"{prefix}labels must be on the features' device {features.device}")


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    *,
    teacher_checkpoint: str | os.PathLike | None = None,
    data_root: str | None = None,
    device: str = "auto",
    batch_size: int = 1024,
    k: int = 20,
    triplet_points: int = 1000,
    train_subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
    output: str | os.PathLike | None = None,
) -> dict:
    """Evaluate a run's checkpoint on its dataset (:func:`perceptcoh.engine.evaluate.evaluate_models`)
    and write the results, with provenance, to ``output`` (default: ``evaluation.json``
    next to the checkpoint). Returns what was written, ``output`` included."""

    path = Path(checkpoint)
    resolved = resolve_device(device, None)
    student, state = model_from_checkpoint(path, resolved)
    config = state["config"]
    dataset = state["dataset"]["name"]
    teacher = None
    if teacher_checkpoint is not None:
        teacher, teacher_state = model_from_checkpoint(teacher_checkpoint, resolved)
        if teacher_state["dataset"]["name"] != dataset:
            raise ValueError(f"teacher checkpoint {teacher_checkpoint} was trained on "
                             f"{teacher_state['dataset']['name']}, {path} on {dataset}")
    train_set = load_dataset(dataset, "train", data_root)
    test_set = load_dataset(dataset, "test", data_root)
    if train_subset is not None:
        train_set = train_set.subset(seeded_prefix(len(train_set), train_subset, seed))
    if test_subset is not None:
        test_set = test_set.subset(seeded_prefix(len(test_set), test_subset, seed + 1))
    classifier = config.get("protocol") == "supervised" or on_logits(config.get("method"))
    # Inputs in the memory format the run used, and the models in it too (a checkpoint's
    # model is rebuilt contiguous): as the run's own evaluation was computed.
    channels_last = bool(config.get("channels_last", True))
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    student = student.to(memory_format=memory_format)
    if teacher is not None:
        teacher = teacher.to(memory_format=memory_format)
    metrics = evaluate_models(
        student, test_set.to(resolved), train_set=train_set.to(resolved), teacher=teacher,
        classifier=classifier, k=k, max_points=triplet_points, batch_size=batch_size,
        channels_last=channels_last, seed=seed,
    )
    output = Path(output) if output is not None else path.with_name("evaluation.json")
    results = {
        "metrics": metrics,
        "checkpoint": {"path": str(path), "sha256": file_sha256(path), "epoch": state["epoch"]},
        "teacher_checkpoint": None if teacher_checkpoint is None else {
            "path": str(teacher_checkpoint), "sha256": file_sha256(Path(teacher_checkpoint))},
        "dataset": dataset,
        "train_images": len(train_set),
        "test_images": len(test_set),
        "settings": {"k": k, "triplet_points": triplet_points, "train_subset": train_subset,
                     "test_subset": test_subset, "seed": seed},
        "run_config": config,
        "provenance": provenance(device=resolved),
        "output": str(output),
    }
    atomic_write_text(output, json.dumps(results, indent=2) + "\n")
    return results
