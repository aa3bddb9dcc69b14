"""What identifies a run: :class:`TrainConfig`, its validation, and the rules derived from it.

Every hyper-parameter of a run is a field of :class:`TrainConfig`. The fields split in two:
the *recipe*, which decides the results (data, models, method, optimisation, seeds), and the
*execution settings* (:data:`EXECUTION_FIELDS`: where the data and the teacher file are, the
device, precision, layout, evaluation batch size, checkpoint interval, progress, output
folder, time limit), which do not. Resuming a run and reusing a finished one compare the
recipe only (:func:`perceptcoh.engine.checkpoint.run_differences`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from ..models import MODELS
from ..registry import LOSSES, SPECS
from .data import DATASETS

__all__ = [
    "TrainConfig", "validate", "METHODS", "PROTOCOLS", "SCHEDULES", "PRECISIONS",
    "DEFAULT_BETA", "EXECUTION_FIELDS", "COHORT_FIELDS", "on_logits", "data_seed",
    "resolve_precision", "recipe", "recipe_sha256",
]

METHODS = ("ce", *LOSSES)


PROTOCOLS = ("supervised", "pure")


SCHEDULES = ("cosine", "step")


# Weight of the transfer loss next to cross-entropy when a run leaves beta unset: each
# loss's LossSpec.default_beta (perceptcoh.registry), which says where the values come from.
DEFAULT_BETA = {name: spec.default_beta for name, spec in SPECS.items()}


PRECISIONS = ("auto", "bf16", "fp16", "fp32")


# Fields that change where a run goes; a resumed run must agree with its checkpoint on them.
# The others only say how or where it is executed.
# teacher_checkpoint says where the teacher is; which teacher it is, its SHA-256, is checked
# on its own.
# curve_every only reads the training (tests/test_curves.py checks that the weights are the
# same with and without it).
EXECUTION_FIELDS = frozenset(
    {"data_root", "teacher_checkpoint", "device", "precision", "channels_last", "compile", "eval_every",
     "eval_batch_size", "teacher_probes", "triplet_points", "output_dir", "resume",
     "time_limit", "checkpoint_every", "progress", "curve_every"}
)


# Fields on which the students of one pass must agree: they decide the batches, where the
# data and the teacher live, and how a step runs.
COHORT_FIELDS = ("dataset", "data_root", "validation_split", "train_subset", "test_subset",
                 "probe_subset", "batch_size", "crop_padding", "flip", "device", "precision", "channels_last",
                 "compile")


def _option(default: Any = None, help: str = "", **extra: Any) -> Any:
    if isinstance(default, dict):
        return field(default_factory=dict, metadata={"help": help, **extra})
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class TrainConfig:
    """Every hyper-parameter of a run. Each field's ``metadata["help"]`` documents it (and
    becomes its ``--help`` text on the command line)."""

    # What is trained, on what.
    dataset: str = _option("cifar100", "dataset: cifar10, cifar100 or digits")
    data_root: str | None = _option(
        None, "folder holding the datasets (default: $PERCEPTCOH_DATA, then ./data)"
    )
    model: str = _option(
        "resnet8x4", "architecture trained by this run (the student of a transfer run)"
    )
    model_options: dict = _option(
        {}, "keyword arguments of the model's constructor, e.g. {\"feature_dim\": 8}"
    )
    teacher: str | None = _option(
        None, "teacher architecture (transfer runs); default: the one recorded in "
        "teacher_checkpoint, which it must match when given"
    )
    teacher_checkpoint: str | None = _option(
        None, "model.pt (or checkpoint.pt) of a finished teacher run (required by transfer "
        "runs)"
    )
    method: str = _option(
        "ce", "'ce' (cross-entropy only: teachers and the plain student baseline) or a "
        "registered transfer loss: " + ", ".join(LOSSES)
    )
    protocol: str = _option(
        "supervised", "'supervised': CE + beta * L; 'pure': beta * L alone (beta 1 unless "
        "gradient_ratio sets it from one labelled batch), on features (on logits "
        "for kd), scored by linear probe and kNN (the digits chapter's two protocols)"
    )
    beta: float | None = _option(
        None, "weight of the transfer loss next to CE (supervised protocol); default: "
        "DEFAULT_BETA[method]"
    )
    gradient_ratio: float | None = _option(
        None, "measure beta instead of setting it: beta * |grad L| = gradient_ratio * "
        "|grad CE| for the initial student on the first training batch (one rule for every "
        "method); the pure protocol then trains on beta * L, so that its steps start "
        "gradient_ratio times as large as CE's would"
    )
    loss_options: dict = _option(
        {}, "keyword arguments of the transfer loss, e.g. {\"tau\": 0.1} for pc, "
        "{\"temperature\": 4} for kd"
    )
    # Optimisation: SGD, RepDistiller's CIFAR recipe by default.
    epochs: int = _option(240, "number of epochs; 0 trains nothing and scores the initial "
                          "model (the untrained control)")
    batch_size: int = _option(
        128, "global batch size (split evenly across processes under torchrun)"
    )
    lr: float = _option(
        0.1, "learning rate for a batch of 128 (RepDistiller's 0.05 at batch 64); the one "
        "used is lr * batch_size / 128"
    )
    momentum: float = _option(0.9, "SGD momentum")
    weight_decay: float = _option(5e-4, "SGD weight decay (all parameters)")
    nesterov: bool = _option(True, "Nesterov momentum")
    schedule: str = _option(
        "cosine", "learning-rate schedule after warm-up: 'cosine' (to 0) or 'step'"
    )
    milestones: tuple = _option(
        (0.625, 0.75, 0.875), "step schedule: fractions of the run at which the learning "
        "rate is multiplied by lr_decay (RepDistiller: epochs 150, 180, 210 of 240)",
        nargs="+", item_type=float,
    )
    lr_decay: float = _option(0.1, "step schedule: factor applied at each milestone")
    warmup_epochs: float = _option(
        0.0, "linear warm-up of the learning rate from 0, in epochs (fractions allowed; at "
        "most the whole run)"
    )
    label_smoothing: float = _option(0.0, "label smoothing of the cross-entropy")
    # Data.
    crop_padding: int | None = _option(
        None, "random-crop padding in pixels, 0 for none; default 4 (CIFAR), 1 (digits)"
    )
    flip: bool | None = _option(
        None, "random horizontal flips; default on for CIFAR, off for digits"
    )
    validation_split: int | None = _option(
        None, "hold out N training images, N / classes of each class, drawn by a fixed seed "
        "(VALIDATION_SEED, whatever seed and data_seed are), as a validation split: the run "
        "trains on the rest, and its probes, fitted on training images, are scored on the "
        "validation split (val_* metrics) and on the test set, apart"
    )
    train_subset: int | None = _option(
        None, "train on the first N images of a seeded permutation (smoke runs; drawn from "
        "what validation_split leaves)"
    )
    test_subset: int | None = _option(
        None, "evaluate on the first N test images of a seeded permutation (smoke runs)"
    )
    probe_subset: int | None = _option(
        None, "fit the linear probe and kNN on the first N training images of a seeded "
        "permutation (default: every training image)"
    )
    seed: int = _option(0, "seed of the initialisation (and of the data, unless data_seed is "
                        "set)")
    data_seed: int | None = _option(
        None, "seed of the subsets, the batch order and the augmentations; default: seed. "
        "Students that share it see identical batches, so they can train in one pass "
        "(run_cohort)"
    )
    # Execution.
    device: str = _option("auto", "'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'")
    precision: str = _option(
        "auto", "'auto' (bf16 autocast on CUDA compute capability >= 8.0, fp16 autocast with a "
        "gradient scaler below it, fp32 on a CPU), 'bf16', 'fp16' (with a gradient scaler) or 'fp32'"
    )
    channels_last: bool = _option(True, "channels_last memory format for images and models")
    compile: bool = _option(False, "torch.compile the models (slower first epoch)")
    eval_every: int = _option(
        1, "test top-1 every this many epochs and after the last; 0: after the last only"
    )
    eval_batch_size: int = _option(1024, "batch size of evaluation passes")
    teacher_probes: bool = _option(
        True, "also score the teacher's own top-1, probes and retrieval after a transfer run "
        "(off: the teacher's test features are still compared with the student's)"
    )
    triplet_points: int = _option(
        1000, "test points on which the final triplet concordance with the teacher is "
        "computed (a seeded subsample: the cost grows as the cube)"
    )
    output_dir: str | None = _option(
        None, "folder of checkpoint.pt and results.json; default "
        "runs/<dataset>/<model>-<method>[-pure]-seed<seed>"
    )
    resume: bool = _option(
        False, "continue from output_dir/checkpoint.pt (start afresh if there is none)"
    )
    time_limit: float | None = _option(
        None, "seconds: stop after the epoch past which another epoch would exceed this "
        "wall time (checkpoint saved, no results.json); continue later with resume"
    )
    checkpoint_every: int = _option(
        1, "replace checkpoint.pt every this many epochs; always after the last epoch and "
        "before a time-limit stop; 0: only then"
    )
    progress: bool = _option(
        True, "report each epoch: a tqdm bar on a terminal, one line per epoch otherwise"
    )
    curve_every: int = _option(
        0, "every this many steps, record a learning-curve point (transfer loss, "
        "|grad(beta L)| / |grad CE|, feature norm, effective rank of the batch features) in "
        "the epoch's history; 0: none"
    )


def validate(config: TrainConfig, *, teacher_given: bool = False) -> TrainConfig:
    """Check every field, raising ``ValueError`` with the field's name; returns a copy with
    ``milestones`` as a tuple and ``output_dir`` filled in. ``teacher_given``: a teacher
    module is supplied, so no ``teacher_checkpoint`` is needed."""

    def choose(name: str, value: object, choices) -> None:
        if value not in choices:
            raise ValueError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")

    def integer(name: str, value: object, low: int, optional: bool = False) -> None:
        if optional and value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")

    def real(name: str, value: object, low: float, high: float = math.inf,
             optional: bool = False) -> None:
        if optional and value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            low <= value <= high and math.isfinite(value)
        ):
            raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")

    choose("dataset", config.dataset, DATASETS)
    choose("model", config.model, sorted(MODELS))
    if config.teacher is not None:
        choose("teacher", config.teacher, sorted(MODELS))
    choose("method", config.method, METHODS)
    choose("protocol", config.protocol, PROTOCOLS)
    choose("precision", config.precision, PRECISIONS)
    choose("schedule", config.schedule, SCHEDULES)
    if config.method == "ce":
        if config.protocol != "supervised":
            raise ValueError("method 'ce' has no pure protocol (it has no transfer loss)")
    elif config.teacher_checkpoint is None and not teacher_given:
        raise ValueError(
            f"method {config.method!r} transfers from a teacher: set teacher_checkpoint"
        )
    for name in ("model_options", "loss_options"):
        if not isinstance(getattr(config, name), dict):
            raise ValueError(f"{name} must be a dict, got {getattr(config, name)!r}")
    integer("epochs", config.epochs, 0)
    integer("batch_size", config.batch_size, 1)
    real("lr", config.lr, 0)
    real("momentum", config.momentum, 0, 1)
    real("weight_decay", config.weight_decay, 0)
    real("lr_decay", config.lr_decay, 0, 1)
    real("warmup_epochs", config.warmup_epochs, 0)
    real("label_smoothing", config.label_smoothing, 0, 1)
    real("beta", config.beta, 0, optional=True)
    real("gradient_ratio", config.gradient_ratio, 0, optional=True)
    if config.gradient_ratio is not None and config.beta is not None:
        raise ValueError("set beta or gradient_ratio, not both: gradient_ratio measures beta")
    milestones = tuple(config.milestones)
    for milestone in milestones:
        real("milestones", milestone, 0, 1)
    integer("crop_padding", config.crop_padding, 0, optional=True)
    integer("validation_split", config.validation_split, 1, optional=True)
    integer("train_subset", config.train_subset, 1, optional=True)
    integer("test_subset", config.test_subset, 1, optional=True)
    integer("probe_subset", config.probe_subset, 1, optional=True)
    integer("seed", config.seed, 0)
    integer("data_seed", config.data_seed, 0, optional=True)
    integer("eval_every", config.eval_every, 0)
    integer("eval_batch_size", config.eval_batch_size, 1)
    integer("triplet_points", config.triplet_points, 3)
    real("time_limit", config.time_limit, 0, optional=True)
    integer("checkpoint_every", config.checkpoint_every, 0)
    integer("curve_every", config.curve_every, 0)
    if not (config.device in ("auto", "cpu", "cuda") or config.device.startswith("cuda:")):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {config.device!r}")
    output_dir = config.output_dir
    if output_dir is None:
        suffix = "-pure" if config.protocol == "pure" else ""
        output_dir = os.path.join(
            "runs", config.dataset, f"{config.model}-{config.method}{suffix}-seed{config.seed}"
        )
    return dataclasses.replace(config, milestones=milestones, output_dir=str(output_dir))


def on_logits(method: str) -> bool:
    """Whether ``method``'s transfer loss compares logits (its LossSpec says so)."""
    return method in SPECS and SPECS[method].inputs == "logits"


def data_seed(config: TrainConfig) -> int:
    """The seed of ``config``'s subsets, batch order and augmentations."""
    return config.seed if config.data_seed is None else config.data_seed


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision a run trains in: ``"auto"`` is bf16 on CUDA devices of compute capability
    8.0 and above, fp16 (with a gradient scaler) below it, and fp32 on a CPU. Below 8.0 cuDNN
    has no fast bf16 convolutions, although ``torch.cuda.is_bf16_supported()`` may say True
    (a T4, for example), so the capability decides. Other values are returned as given."""
    if precision != "auto":
        return precision
    if device.type != "cuda":
        return "fp32"
    major, _ = torch.cuda.get_device_capability(device)
    return "bf16" if major >= 8 else "fp16"


def recipe(config: TrainConfig) -> dict:
    """The fields of ``config`` that decide a run's results (every field but
    :data:`EXECUTION_FIELDS`), as JSON values: what resuming and reusing compare."""
    values = json.loads(json.dumps(dataclasses.asdict(config)))
    return {name: value for name, value in values.items() if name not in EXECUTION_FIELDS}


def recipe_sha256(config: TrainConfig) -> str:
    """SHA-256 of :func:`recipe` as canonical JSON (sorted keys): one name for a recipe,
    the same wherever and however the run is executed."""
    text = json.dumps(recipe(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
