"""What a trained student is worth: its accuracy, and every metric of a run, computed from
the model (or a checkpoint) on a labelled set.

* :func:`top1_accuracy`: the model's own classifier on a labelled set (the supervised protocol).
* :func:`extract_features`: the penultimate features of a whole set, for the probes.
* :func:`evaluate_models`: the accuracy, the probes and retrieval, and the coherence with
  the teacher at once, as saved in a run's ``results.json``; :func:`evaluate_teacher`
  computes the teacher's side once for many students.
* :func:`evaluate_checkpoint`: the same for a saved run, written to ``evaluation.json``.

The metrics on features (linear probe, kNN, retrieval, transfer metrics) are
:mod:`perceptcoh.engine.feature_metrics`, re-exported here. Forward passes run in IEEE
float32 on the model's device; results are Python floats, accuracies fractions in
``[0, 1]``.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from .._validation import Metric
from ..perception import perception
from .checkpoint import model_from_checkpoint
from .config import on_logits
from .data import ImageDataset, load_dataset, normalize
from .distributed import resolve_device
from .feature_metrics import (
    fit_linear_probe,
    knn_accuracy,
    linear_probe_accuracy,
    linear_probe_scores,
    retrieval_map,
    transfer_metrics,
)
from .files import atomic_write_text, file_sha256, seeded_prefix
from .provenance import provenance

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
def ieee_float32(device: torch.device) -> Iterator[None]:
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
    validation_set: ImageDataset | None = None,
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
    * with ``validation_set`` (held-out training images): ``val_top1`` (with ``classifier``)
      and, with ``train_set``, ``val_linear_probe_top1`` and ``val_knn_top1``, from the same
      probes as the test scores. Hyper-parameters are chosen on these, never on the test
      scores (:mod:`perceptcoh.engine.selection`).
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
        validation = None
        if validation_set is not None:
            validation = _outputs(student, validation_set, **common)
        results = _model_metrics(student, "", features, logits, labels, test_set, train_set,
                                 classifier, k, metric, batch_size, channels_last,
                                 validation=validation)
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
                   batch_size: int, channels_last: bool,
                   validation: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
                   ) -> dict[str, float]:
    """One model's top-1 (with ``classifier``), probes (with ``train_set``) and retrieval;
    with ``validation`` (features, logits and labels of a validation split) the top-1 and
    probes on it too, as ``val_*``."""
    results: dict[str, float] = {}
    scored = {"": (features, logits, labels)}
    if validation is not None:
        scored["val_"] = validation
    if classifier:
        for split, (_, split_logits, split_labels) in scored.items():
            results[f"{prefix}{split}top1"] = float(
                (split_logits.argmax(dim=1) == split_labels).float().mean())
    if train_set is not None:
        train_features, train_labels = extract_features(
            model, train_set, batch_size=batch_size, channels_last=channels_last)
        num_classes = max(train_set.num_classes, test_set.num_classes)
        probes = linear_probe_scores(
            train_features, train_labels,
            [(split_features, split_labels) for split_features, _, split_labels
             in scored.values()], num_classes=num_classes)
        for split, probe, (split_features, _, split_labels) in zip(scored, probes,
                                                                   scored.values()):
            results[f"{prefix}{split}linear_probe_top1"] = probe
            results[f"{prefix}{split}knn_top1"] = knn_accuracy(
                train_features, train_labels, split_features, split_labels,
                k=min(k, len(train_set)), metric=metric,
            )
    results[f"{prefix}retrieval_map"] = retrieval_map(features, labels, metric=metric)
    return results


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
