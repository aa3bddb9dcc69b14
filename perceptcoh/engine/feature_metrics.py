"""What frozen features are worth, without the model that made them: probes fitted on
labelled features, same-label retrieval, and the coherence of a student's features with
its teacher's on the same images.

* :func:`linear_probe_accuracy` (:func:`fit_linear_probe`), :func:`knn_accuracy`,
  :func:`retrieval_map`: protocol (b), the features' worth without the model's classifier.
* :func:`transfer_metrics`: perception gap, triplet concordance and kNN agreement between
  teacher and student features (book: book/theory/03_perception).

Every function works on the device the features live on, a chunk of rows at a time, and
returns Python floats. Accuracies are fractions in ``[0, 1]``. The models' side (features
of a model, top-1, whole evaluations) is :mod:`perceptcoh.engine.evaluate`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._validation import Metric, check_chunk_size, check_metric
from ..dissimilarity import pairwise
from ..metrics import knn_agreement, triplet_concordance
from ..perception import perception_gap
from ..ranking import exact_ranks, row_chunks
from .files import seeded_prefix

__all__ = [
    "linear_probe_accuracy",
    "linear_probe_scores",
    "fit_linear_probe",
    "knn_accuracy",
    "retrieval_map",
    "transfer_metrics",
]

# Elements of the largest (rows x reference points) block a chunk may hold.
_CHUNK_ELEMENTS = {"cpu": 1 << 22, "cuda": 1 << 27}


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
    return linear_probe_scores(train_features, train_labels, [(test_features, test_labels)],
                               num_classes=num_classes, l2=l2, max_iter=max_iter)[0]


def linear_probe_scores(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    queries: list[tuple[torch.Tensor, torch.Tensor]],
    *,
    num_classes: int,
    l2: float = 1e-4,
    max_iter: int = 500,
) -> list[float]:
    """:func:`linear_probe_accuracy` of one probe, fitted once on the train features, on
    each ``(features, labels)`` of ``queries`` (a validation split and a test set, say)."""
    weight, bias, mean, std = fit_linear_probe(
        train_features, train_labels, num_classes, l2=l2, max_iter=max_iter
    )
    scores = []
    for features, labels in queries:
        query = (features.detach().to(weight.dtype) - mean) / std
        predictions = (query @ weight.T + bias).argmax(dim=1)
        scores.append(float((predictions == labels).float().mean()))
    return scores


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
    once for many students (:func:`perceptcoh.engine.evaluate.evaluate_teacher`); the gaps
    are then the same numbers up to the order of a float64 sum.
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
