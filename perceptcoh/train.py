"""Training engine: teachers, and students by feature transfer, in one epoch loop (SPEC 6).

    from perceptcoh.train import TrainConfig, train_teacher, transfer

    train_teacher(TrainConfig(dataset="cifar100", model="resnet32x4", output_dir="runs/t"))
    transfer(TrainConfig(model="resnet8x4", method="pc", teacher_checkpoint="runs/t/checkpoint.pt"))

Written for speed on one GPU, the way airbench is: the whole training set sits on the device
as one uint8 tensor; each epoch draws one permutation there and a batch is a slice of it;
random crops and flips are a few tensor ops on the batch; the forward runs in the precision
of :func:`resolve_precision` (bf16 autocast on recent GPUs, fp16 with a gradient scaler on
older ones such as Colab's T4, fp32 on a CPU) and channels_last; evaluation is IEEE fp32;
and a training step never waits for the device: losses and correct counts are summed on the
device and read once per epoch, when the epoch's loss is also checked for NaN/Inf. The teacher is frozen, in eval mode, and runs under
``torch.inference_mode``.

Every hyper-parameter is a field of :class:`TrainConfig`; :func:`run` reads it top to bottom:
data, models, loss, optimiser, optional resume, the epoch loop (:func:`train_epoch`), the
final evaluation (:func:`perceptcoh.evaluate.evaluate_models`) and ``results.json``.

Checkpoints: after every epoch (every ``checkpoint_every`` epochs, and always after the last
and before a time-limit stop) ``output_dir/checkpoint.pt`` is replaced atomically. It holds
the model, the transfer loss's learnable parts, optimiser, scheduler, torch RNG states and
the config. The permutation and augmentation generators are re-seeded every epoch from
``(seed, epoch, rank)``, so a run resumed from epoch ``e`` draws exactly the batches of an
uninterrupted one, on every process, and on a CPU reproduces its weights bit for bit. A
finished run also writes ``model.pt``, the same without what resuming needs (half the
size): the file to give a transfer run as ``teacher_checkpoint``.

Several GPUs: launched by ``torchrun``, each process takes ``batch_size / world_size``
samples of every global batch, the model (and the loss's learnable parts) are wrapped in
DDP, and the PC loss ranks each process's anchors against the global batch (the engine
passes it ``process_group=torch.distributed.group.WORLD``). Only rank 0 writes files.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import DATASETS, ImageDataset, augment, load_dataset, normalize
from .evaluate import evaluate_models, evaluate_teacher, top1_accuracy
from .models import MODELS, build_model
from .provenance import file_sha256, provenance
from .registry import LOSSES, SPECS, build_loss

__all__ = [
    "TrainConfig",
    "DEFAULT_BETA",
    "METHODS",
    "CHECKPOINT_NAME",
    "MODEL_NAME",
    "RESULTS_NAME",
    "CheckpointError",
    "NonFiniteLossError",
    "run",
    "run_cohort",
    "train_teacher",
    "transfer",
    "prepare",
    "prepare_cohort",
    "COHORT_FIELDS",
    "data_seed",
    "on_logits",
    "balanced_beta",
    "run_differences",
    "train_epoch",
    "train_cohort_epoch",
    "load_checkpoint",
    "model_from_checkpoint",
    "evaluate_checkpoint",
    "resolve_precision",
    "PRECISIONS",
]

METHODS = ("ce", *LOSSES)
PROTOCOLS = ("supervised", "pure")
SCHEDULES = ("cosine", "step")
CHECKPOINT_NAME = "checkpoint.pt"  # after every epoch: what resuming needs
MODEL_NAME = "model.pt"  # after the last epoch: the finished model alone (a teacher)
RESULTS_NAME = "results.json"
CHECKPOINT_FORMAT = "perceptcoh-checkpoint/1"

# Weight of the transfer loss next to cross-entropy when a run leaves beta unset: each
# loss's LossSpec.default_beta (perceptcoh.registry), which says where the values come from.
DEFAULT_BETA = {name: spec.default_beta for name, spec in SPECS.items()}

# Random-crop padding and horizontal flips per dataset (digits are 8x8 and not mirror-symmetric).
_AUGMENTATION = {"cifar10": (4, True), "cifar100": (4, True), "digits": (1, False)}

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

# Fields that change where a run goes; a resumed run must agree with its checkpoint on them.
# The others only say how or where it is executed.
# teacher_checkpoint says where the teacher is; which teacher it is, its SHA-256, is checked
# on its own.
_EXECUTION_FIELDS = frozenset(
    {"data_root", "teacher_checkpoint", "device", "precision", "channels_last", "compile", "eval_every",
     "eval_batch_size", "teacher_probes", "triplet_points", "output_dir", "resume",
     "time_limit", "checkpoint_every", "progress"}
)


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
        "supervised", "'supervised': CE + beta * L (SPEC 6a); 'pure': L alone, on features "
        "(on logits for kd), scored by linear probe and kNN (SPEC 6b)"
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
    epochs: int = _option(240, "number of epochs")
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
    train_subset: int | None = _option(
        None, "train on the first N images of a seeded permutation (smoke runs)"
    )
    test_subset: int | None = _option(
        None, "evaluate on the first N test images of a seeded permutation (smoke runs)"
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


class CheckpointError(ValueError):
    """A checkpoint file is corrupt, not ours, or does not belong to this run."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def train_teacher(config: TrainConfig) -> dict:
    """Train a model with cross-entropy alone (``method="ce"``); see :func:`run`."""
    if config.method != "ce":
        raise ValueError(f"train_teacher trains with method='ce', got method={config.method!r}")
    return run(config)


def transfer(config: TrainConfig) -> dict:
    """Train a student with a transfer loss from a teacher checkpoint; see :func:`run`."""
    if config.method == "ce":
        raise ValueError("transfer needs a transfer loss as method, got 'ce' (use train_teacher)")
    return run(config)


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
    integer("epochs", config.epochs, 1)
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
    integer("train_subset", config.train_subset, 1, optional=True)
    integer("test_subset", config.test_subset, 1, optional=True)
    integer("seed", config.seed, 0)
    integer("data_seed", config.data_seed, 0, optional=True)
    integer("eval_every", config.eval_every, 0)
    integer("eval_batch_size", config.eval_batch_size, 1)
    integer("triplet_points", config.triplet_points, 3)
    real("time_limit", config.time_limit, 0, optional=True)
    integer("checkpoint_every", config.checkpoint_every, 0)
    if not (config.device in ("auto", "cpu", "cuda") or config.device.startswith("cuda:")):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {config.device!r}")
    output_dir = config.output_dir
    if output_dir is None:
        suffix = "-pure" if config.protocol == "pure" else ""
        output_dir = os.path.join(
            "runs", config.dataset, f"{config.model}-{config.method}{suffix}-seed{config.seed}"
        )
    return dataclasses.replace(config, milestones=milestones, output_dir=str(output_dir))


class Objective(nn.Module):
    """The student and its training loss, one module, so that DDP synchronises the
    gradients of both the student and the loss's learnable parts (FitNet's regressor, CC's
    projection).

    ``forward(inputs, labels, teacher_features, teacher_logits)`` returns
    ``(loss, student_logits)``: ``CE + beta * L`` (supervised), ``pure_weight * L`` (pure) or
    ``CE``
    (``transfer_loss=None``), where ``L`` is called on logits for the losses in
    :func:`on_logits` methods and on features otherwise.
    """

    def __init__(self, student: nn.Module, transfer_loss: nn.Module | None, method: str,
                 protocol: str, beta: float, label_smoothing: float,
                 pure_weight: float = 1.0) -> None:
        super().__init__()
        self.student = student
        self.transfer_loss = transfer_loss
        self.on_logits = on_logits(method)
        self.supervised = protocol == "supervised"
        self.beta = beta
        self.pure_weight = pure_weight
        self.label_smoothing = label_smoothing

    def forward(self, inputs, labels, teacher_features=None, teacher_logits=None):
        features, logits = self.student(inputs)
        loss = None
        if self.supervised:
            loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        if self.transfer_loss is not None:
            if self.on_logits:
                term = self.transfer_loss(logits, teacher_logits)
            else:
                term = self.transfer_loss(features, teacher_features)
            if loss is not None:
                loss = loss + self.beta * term
            else:
                loss = self.pure_weight * term
        return loss, logits


@dataclass
class Session:
    """Everything the epoch loop needs, built by :func:`prepare`."""

    config: TrainConfig
    device: torch.device
    rank: int
    world_size: int
    train_set: ImageDataset  # on the device
    test_set: ImageDataset
    student: nn.Module
    teacher: nn.Module | None
    transfer_loss: nn.Module | None
    objective: nn.Module  # what a step calls: Objective, DDP-wrapped under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    steps_per_epoch: int
    local_batch: int
    augmentation: tuple[int, bool]
    normalisation: tuple[torch.Tensor, torch.Tensor]  # mean and std on the device, float32
    beta: float
    teacher_info: dict | None
    precision: str  # resolved: "bf16", "fp16" or "fp32"
    scaler: torch.amp.GradScaler | None  # fp16 only
    distributed_owner: bool = False  # this call initialised the process group

    @property
    def autocast(self):
        dtype = _AUTOCAST_DTYPES.get(self.precision)
        return torch.autocast(self.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)

    @property
    def classifier(self) -> bool:
        """Whether the student's classifier is trained (and so worth scoring)."""
        return self.config.protocol == "supervised" or on_logits(self.config.method)


# Fields on which the students of one pass must agree: they decide the batches, where the
# data and the teacher live, and how a step runs.
COHORT_FIELDS = ("dataset", "data_root", "train_subset", "test_subset", "batch_size",
                 "crop_padding", "flip", "device", "precision", "channels_last", "compile")


def on_logits(method: str) -> bool:
    """Whether ``method``'s transfer loss compares logits (its LossSpec says so)."""
    return method in SPECS and SPECS[method].inputs == "logits"


def data_seed(config: TrainConfig) -> int:
    """The seed of ``config``'s subsets, batch order and augmentations."""
    return config.seed if config.data_seed is None else config.data_seed


def prepare(config: TrainConfig, *, teacher: nn.Module | None = None) -> Session:
    """Data on the device, models, loss, optimiser and schedule for ``config``.

    ``teacher`` replaces the teacher read from ``config.teacher_checkpoint`` (benchmarks and
    tests use a freshly initialised one); real transfer runs leave it ``None``. The same as
    :func:`prepare_cohort` with one config.
    """
    return prepare_cohort([config], teacher=teacher)[0]


def prepare_cohort(configs: list[TrainConfig], *, teacher: nn.Module | None = None
                   ) -> list[Session]:
    """One :class:`Session` per config, for students trained together in one pass.

    The data is loaded and moved to the device once, and the teacher read once; each
    student has its own model, loss, optimiser, schedule and beta. The configs must agree on
    :data:`COHORT_FIELDS`, on :func:`data_seed` and, for transfer runs, on the teacher
    checkpoint; they may differ in method, protocol, initialisation seed, loss options,
    learning rate, epochs and everything else. Each student is initialised from
    ``torch.manual_seed(config.seed)`` after the teacher is loaded, so it starts from the
    same weights whether it is trained alone or with others.

    Raises:
        ValueError: an invalid field, or configs that cannot share a pass (the message
            names the field).
    """
    if not configs:
        raise ValueError("configs must hold at least one TrainConfig")
    configs = [validate(config, teacher_given=teacher is not None) for config in configs]
    _check_cohort(configs)
    lead = configs[0]
    rank, world_size, local_rank, owner = _init_distributed(lead)
    device = _resolve_device(lead.device, local_rank if world_size > 1 else None)
    memory_format = torch.channels_last if lead.channels_last else torch.contiguous_format
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest kernels once

    seed = data_seed(lead)
    train_set = load_dataset(lead.dataset, "train", lead.data_root)
    test_set = load_dataset(lead.dataset, "test", lead.data_root)
    if lead.train_subset is not None:
        train_set = train_set.subset(_seeded_prefix(len(train_set), lead.train_subset, seed))
    if lead.test_subset is not None:
        test_set = test_set.subset(_seeded_prefix(len(test_set), lead.test_subset, seed + 1))
    train_set, test_set = train_set.to(device), test_set.to(device)
    if lead.batch_size % world_size:
        raise ValueError(f"batch_size {lead.batch_size} is not divisible by the "
                         f"{world_size} processes")
    local_batch = lead.batch_size // world_size
    steps_per_epoch = len(train_set) // lead.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"the training set ({len(train_set)} images) is smaller than one "
                         f"batch ({lead.batch_size})")
    transfer = [config for config in configs if config.method != "ce"]
    teacher_info = None
    if transfer:
        if teacher is None:
            teacher, teacher_info = _load_teacher(transfer[0], train_set.num_classes)
        else:
            teacher_info = {"model": transfer[0].teacher, "checkpoint": None, "sha256": None}
        teacher = teacher.to(device, memory_format=memory_format).eval().requires_grad_(False)
        if lead.compile:
            teacher.compile()
    normalisation = _normalisation(train_set, device)
    padding, flip = _AUGMENTATION[lead.dataset]
    augmentation = (
        padding if lead.crop_padding is None else lead.crop_padding,
        flip if lead.flip is None else lead.flip,
    )
    precision = resolve_precision(lead.precision, device)
    shared = dict(device=device, rank=rank, world_size=world_size, train_set=train_set,
                  test_set=test_set, steps_per_epoch=steps_per_epoch, local_batch=local_batch,
                  augmentation=augmentation, normalisation=normalisation, precision=precision)
    sessions = []
    for index, config in enumerate(configs):
        uses_teacher = config.method != "ce"
        sessions.append(_prepare_student(
            config, teacher if uses_teacher else None, teacher_info if uses_teacher else None,
            memory_format, distributed_owner=owner and index == 0, **shared,
        ))
    return sessions


def _check_cohort(configs: list[TrainConfig]) -> None:
    lead = configs[0]
    for config in configs[1:]:
        for name in COHORT_FIELDS:
            if getattr(config, name) != getattr(lead, name):
                raise ValueError(
                    f"students trained in one pass must share {name}: {lead.output_dir} has "
                    f"{getattr(lead, name)!r}, {config.output_dir} {getattr(config, name)!r}"
                )
        if data_seed(config) != data_seed(lead):
            raise ValueError(
                f"students trained in one pass must share the data seed (data_seed, else "
                f"seed): {lead.output_dir} has {data_seed(lead)}, {config.output_dir} "
                f"{data_seed(config)}"
            )
    transfer = [config for config in configs if config.method != "ce"]
    for config in transfer[1:]:
        if config.teacher_checkpoint != transfer[0].teacher_checkpoint:
            raise ValueError(
                f"students trained in one pass must share teacher_checkpoint: "
                f"{transfer[0].output_dir} has {transfer[0].teacher_checkpoint!r}, "
                f"{config.output_dir} {config.teacher_checkpoint!r}"
            )
        if config.teacher != transfer[0].teacher:
            raise ValueError(
                f"students trained in one pass must share teacher: {transfer[0].output_dir} "
                f"has {transfer[0].teacher!r}, {config.output_dir} {config.teacher!r}"
            )
    directories = [config.output_dir for config in configs]
    if len(set(directories)) != len(directories):
        raise ValueError(f"students trained in one pass need distinct output_dir, got "
                         f"{directories}")


def _prepare_student(config: TrainConfig, teacher: nn.Module | None, teacher_info: dict | None,
                     memory_format: torch.memory_format, *, device: torch.device,
                     train_set: ImageDataset, local_batch: int, steps_per_epoch: int,
                     world_size: int, normalisation, precision: str,
                     distributed_owner: bool, **shared) -> Session:
    """The model, loss, beta, optimiser and schedule of one student."""
    torch.manual_seed(config.seed)
    student = build_model(config.model, train_set.num_classes, **config.model_options)
    student = student.to(device, memory_format=memory_format)
    transfer_loss = None
    if teacher is not None:
        if not on_logits(config.method) and local_batch < 3:
            raise ValueError(f"method {config.method!r} needs at least 3 samples per process "
                             f"and batch, got {local_batch}")
        spec = SPECS[config.method]
        options = dict(config.loss_options)
        if spec.device_checks:
            # The epoch's loss is checked once instead: no host synchronisation per step.
            options.setdefault("check_finite", False)
        if world_size > 1 and spec.global_batch:
            # PC ranks each process's anchors against the global batch (an explicit opt-in).
            options.setdefault("process_group", torch.distributed.group.WORLD)
        transfer_loss = build_loss(
            config.method,
            student_dim=getattr(student, "feature_dim", None),
            teacher_dim=getattr(teacher, "feature_dim", None),
            **options,
        ).to(device)
    beta = config.beta if config.beta is not None else DEFAULT_BETA.get(config.method, 0.0)
    if config.gradient_ratio is not None and transfer_loss is not None:
        rank = shared["rank"]
        first = _seeded_prefix(len(train_set), config.batch_size, data_seed(config) + 2)
        first = first[rank * local_batch : (rank + 1) * local_batch].to(device)
        inputs = normalize(train_set.images[first], *normalisation,
                           channels_last=config.channels_last)
        beta = config.gradient_ratio * balanced_beta(
            student, teacher, transfer_loss, inputs, train_set.labels[first],
            on_logits=on_logits(config.method),
        )
        if world_size > 1:  # the processes' shares of the batch differ: one mean for all
            mean = torch.tensor([beta / world_size], dtype=torch.float64, device=device)
            torch.distributed.all_reduce(mean)
            beta = float(mean)
    if config.compile:
        student.compile()
    objective: nn.Module = Objective(
        student, transfer_loss, config.method, config.protocol, beta, config.label_smoothing,
        pure_weight=beta if config.gradient_ratio is not None else 1.0,
    )
    if world_size > 1:
        # A pure feature loss leaves the student's classifier without gradient.
        unused = config.protocol == "pure" and not on_logits(config.method)
        objective = nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=unused,
        )
    parameters = list(student.parameters())
    if transfer_loss is not None:
        parameters += list(transfer_loss.parameters())
    optimizer = torch.optim.SGD(
        parameters,
        lr=config.lr * config.batch_size / 128,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov and config.momentum > 0,
        fused=device.type == "cuda",
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(config, steps_per_epoch))
    return Session(
        config=config, device=device, world_size=world_size, train_set=train_set,
        student=student, teacher=teacher, transfer_loss=transfer_loss, objective=objective,
        optimizer=optimizer, scheduler=scheduler, steps_per_epoch=steps_per_epoch,
        local_batch=local_batch, normalisation=normalisation, beta=beta,
        teacher_info=teacher_info, precision=precision,
        scaler=torch.amp.GradScaler(device.type) if precision == "fp16" else None,
        distributed_owner=distributed_owner, **shared,
    )


def balanced_beta(student: nn.Module, teacher: nn.Module, transfer_loss: nn.Module,
                  inputs: torch.Tensor, labels: torch.Tensor, *, on_logits: bool) -> float:
    """The weight ``beta = |grad_theta CE| / |grad_theta L|`` that gives the transfer loss
    ``L`` a gradient as large as the cross-entropy's, for the student's parameters ``theta``
    as they are, on one batch (``inputs``, normalised, and ``labels``), in float32.

    The student's BatchNorm statistics are restored afterwards: measuring trains nothing.

    Raises:
        ValueError: ``L`` or CE has a zero or non-finite gradient, so no weight balances them.
    """
    saved = copy.deepcopy(student.state_dict())
    was_training = student.training
    student.train()
    with torch.no_grad():
        teacher_features, teacher_logits = teacher(inputs)
    features, logits = student(inputs)
    cross_entropy = F.cross_entropy(logits.float(), labels)
    if on_logits:
        term = transfer_loss(logits, teacher_logits)
    else:
        term = transfer_loss(features, teacher_features)
    parameters = [parameter for parameter in student.parameters() if parameter.requires_grad]
    norms = []
    for loss in (cross_entropy, term):
        gradients = torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
        norms.append(torch.cat([g.flatten().float() for g in gradients if g is not None]).norm())
    student.load_state_dict(saved)
    student.train(was_training)
    ce_norm, loss_norm = (float(norm) for norm in norms)
    if not (math.isfinite(ce_norm) and math.isfinite(loss_norm) and ce_norm > 0 and loss_norm > 0):
        raise ValueError(
            f"cannot balance the gradients: |grad CE| = {ce_norm}, |grad L| = {loss_norm} on the "
            f"first batch; set beta instead of gradient_ratio"
        )
    return ce_norm / loss_norm


def train_epoch(session: Session, epoch: int, *, max_steps: int | None = None) -> dict:
    """One epoch (or its first ``max_steps`` steps) of training; the only host
    synchronisation is the read-out of the loss and accuracy sums at the end.

    Returns ``loss`` (mean over steps, averaged over processes), ``train_top1``
    (on augmented images), ``images`` (trained on, all processes) and ``seconds``.

    Raises:
        NonFiniteLossError: the epoch's loss is NaN or infinite.
    """
    return train_cohort_epoch([session], epoch, max_steps=max_steps)[0]


def train_cohort_epoch(sessions: list[Session], epoch: int, *, max_steps: int | None = None
                       ) -> list[dict]:
    """One epoch of every student of ``sessions`` (from :func:`prepare_cohort`) in one pass
    over the data: each step draws one batch, augments it once and runs the teacher once,
    then steps each student on it. Returns one :func:`train_epoch` record per student; the
    seconds are the pass's, shared by all.

    Raises:
        NonFiniteLossError: a student's epoch loss is NaN or infinite (the message names
            its run).
    """
    lead = sessions[0]
    device, steps = lead.device, lead.steps_per_epoch
    if max_steps is not None:
        steps = min(max_steps, steps)
    seed, batch_size = data_seed(lead.config), lead.config.batch_size
    # The order is the same on every process, the augmentations differ.
    order = torch.randperm(len(lead.train_set), device=device,
                           generator=_generator(device, seed, epoch, 0))
    augmentation_generator = _generator(device, seed, epoch, 1 + lead.rank)
    teacher = next((s.teacher for s in sessions if s.teacher is not None), None)
    loss_sums = torch.zeros(len(sessions), device=device)
    correct = torch.zeros(len(sessions), dtype=torch.int64, device=device)
    for session in sessions:
        session.objective.train()
    if teacher is not None:
        teacher.eval()
    _synchronize(device)
    start = time.perf_counter()
    for step in range(steps):
        first = step * batch_size + lead.rank * lead.local_batch
        indices = order[first : first + lead.local_batch]
        inputs, labels = training_batch(lead, indices, augmentation_generator)
        teacher_outputs = teacher_forward(lead, teacher, inputs)
        for index, session in enumerate(sessions):
            loss, logits = optimiser_step(session, inputs, labels, *teacher_outputs)
            loss_sums[index] += loss
            correct[index] += (logits.argmax(dim=1) == labels).sum()
    sums = torch.stack([loss_sums.double(), correct.double()], dim=1)
    if lead.world_size > 1:
        torch.distributed.all_reduce(sums)
    totals = sums.tolist()  # the epoch's one host synchronisation
    seconds = time.perf_counter() - start
    images = steps * batch_size
    records = []
    for session, (loss_total, correct_total) in zip(sessions, totals):
        mean_loss = loss_total / (max(steps, 1) * lead.world_size)
        if not math.isfinite(mean_loss):
            config = session.config
            raise NonFiniteLossError(
                f"the training loss of epoch {epoch + 1} of {config.output_dir} is {mean_loss} "
                f"(method {config.method!r}, lr {config.lr}, beta {session.beta}); lower the "
                f"learning rate or beta, or check the teacher checkpoint"
            )
        records.append({"loss": mean_loss, "train_top1": correct_total / max(images, 1),
                        "images": images, "seconds": seconds})
    return records


def training_batch(session: Session, indices: torch.Tensor, generator: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalised, augmented images ``indices`` (a device tensor) and their labels."""
    train_set = session.train_set
    images = train_set.images[indices]
    labels = train_set.labels[indices]
    padding, flip = session.augmentation
    if padding or flip:
        images = augment(images, padding=padding, flip=flip, generator=generator)
    # Mean and std as device tensors: built from floats, they would be copied to the device
    # on every call, a copy that waits for the device.
    mean, std = session.normalisation
    return normalize(images, mean, std, channels_last=session.config.channels_last), labels


def teacher_forward(session: Session, teacher: nn.Module | None, inputs: torch.Tensor
                    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The frozen teacher's ``(features, logits)`` on ``inputs`` (``(None, None)`` without a
    teacher), under ``torch.inference_mode`` in the session's precision."""
    if teacher is None:
        return None, None
    with session.autocast, torch.inference_mode():
        features, logits = teacher(inputs)
    # Out of inference mode, so that losses may save them for their backward pass.
    return features.clone(), logits.clone()


def optimiser_step(session: Session, inputs: torch.Tensor, labels: torch.Tensor,
                   teacher_features: torch.Tensor | None, teacher_logits: torch.Tensor | None):
    """One optimiser step of ``session``'s student on a prepared batch. Returns the detached
    loss and the student's logits, on the device: nothing here waits for the device."""
    with session.autocast:
        loss, logits = session.objective(inputs, labels, teacher_features, teacher_logits)
    session.optimizer.zero_grad(set_to_none=True)
    if session.scaler is None:
        loss.backward()
        session.optimizer.step()
    else:
        # fp16: the scaled loss keeps small gradients representable; a step whose gradients
        # overflowed is skipped and the scale lowered. With the fused optimiser (CUDA) the
        # check stays on the device.
        session.scaler.scale(loss).backward()
        session.scaler.step(session.optimizer)
        session.scaler.update()
    session.scheduler.step()
    return loss.detach(), logits.detach()


def train_step(session: Session, indices: torch.Tensor, generator: torch.Generator):
    """One optimiser step on the training images ``indices`` (a device tensor).

    Returns the detached loss, the student's logits and the labels, all on the device:
    nothing here waits for the device to finish.
    """
    inputs, labels = training_batch(session, indices, generator)
    teacher_outputs = teacher_forward(session, session.teacher, inputs)
    loss, logits = optimiser_step(session, inputs, labels, *teacher_outputs)
    return loss, logits, labels


def run(config: TrainConfig) -> dict:
    """Train as ``config`` says, evaluate, and write ``results.json``; returns the results.

    ``method="ce"`` trains with cross-entropy alone (a teacher, or the student baseline);
    any other method transfers from ``teacher_checkpoint`` under ``protocol``. Every
    ``checkpoint_every`` epochs, after the last and before a time-limit stop, the checkpoint is
    replaced; with ``resume`` a run continues from it. When
    ``time_limit`` stops a run early, the returned dict has ``completed: False`` and no
    ``results.json`` is written. The same as :func:`run_cohort` with one config.

    Raises:
        ValueError: an invalid field (unknown dataset, model, method, ...), or a teacher
            checkpoint that does not fit the run.
        CheckpointError: a corrupt checkpoint, or one written by a different run.
        NonFiniteLossError: the loss diverged.
    """
    return run_cohort([config])[0]


def run_cohort(configs: list[TrainConfig]) -> list[dict]:
    """Train several students in one pass over the data (:func:`prepare_cohort`), each
    with its own checkpoint, evaluation and ``results.json``; returns their results in
    order. A student resumed at a later epoch than the others, or with fewer epochs, takes
    part in the epochs it still needs: every epoch's batches depend on the data seed and the
    epoch only. The teacher is run once per step for all students, and its evaluation
    (features, probes, ranks of the test set) is computed once for all of them.

    ``time_limit`` is the smallest of the configs'. Each result has ``cohort`` (the output
    folders of the students trained in the pass) and ``cohort_size``; its seconds and images
    per second are the pass's.

    Raises:
        as :func:`run`, for any student.
    """
    started = time.perf_counter()
    sessions = prepare_cohort(configs)
    try:
        return _run_cohort(sessions, started)
    finally:
        if sessions[0].distributed_owner:
            torch.distributed.destroy_process_group()


@dataclass
class _Member:
    """A student's progress through a cohort's epochs."""

    session: Session
    output: Path
    start_epoch: int = 0
    history: list = field(default_factory=list)
    totals: dict = field(default_factory=lambda: {"train_seconds": 0.0, "train_images": 0,
                                                  "wall_seconds": 0.0})
    wall_offset: float = 0.0

    @property
    def checkpoint_path(self) -> Path:
        return self.output / CHECKPOINT_NAME


def _run_cohort(sessions: list[Session], started: float) -> list[dict]:
    members = [_resume(session) for session in sessions]
    lead = sessions[0]
    is_writer = lead.rank == 0
    limits = [s.config.time_limit for s in sessions if s.config.time_limit is not None]
    time_limit = min(limits) if limits else None
    first_epoch = min(member.start_epoch for member in members)
    last_epoch = max(member.session.config.epochs for member in members)
    reporter = _Reporter(sessions, first_epoch, last_epoch,
                         enabled=lead.config.progress and is_writer)
    stopped_early = False
    for epoch in range(first_epoch, last_epoch):
        active = [m for m in members if m.start_epoch <= epoch < m.session.config.epochs]
        records = train_cohort_epoch([m.session for m in active], epoch)
        if time_limit is not None:
            # Stop if another epoch would end past the limit; every process must agree.
            elapsed = time.perf_counter() - started
            unfinished = any(epoch + 1 < m.session.config.epochs for m in active)
            stopped_early = unfinished and _any_process(
                lead, elapsed + records[0]["seconds"] > time_limit)
        reporter.epoch([
            (member.session.config.output_dir,
             _end_epoch(member, epoch, stats, stopped_early, started, is_writer))
            for member, stats in zip(active, records)
        ])
        if stopped_early:
            break
    reporter.close()
    if stopped_early:
        return [{"completed": False, "epoch": m.history[-1]["epoch"] if m.history else 0,
                 "epochs": m.session.config.epochs, "checkpoint": str(m.checkpoint_path),
                 "history": m.history} for m in members]
    reference = None
    teacher = next((s.teacher for s in sessions if s.teacher is not None), None)
    if teacher is not None:
        lead_transfer = next(s for s in sessions if s.teacher is not None).config
        reference = evaluate_teacher(
            teacher, lead.test_set, train_set=lead.train_set,
            probes=any(s.config.teacher_probes for s in sessions if s.teacher is not None),
            batch_size=lead_transfer.eval_batch_size, channels_last=lead_transfer.channels_last,
            seed=data_seed(lead_transfer),
        )
    cohort = [member.session.config.output_dir for member in members]
    return [_finish(member, reference, started, cohort, is_writer) for member in members]


def _resume(session: Session) -> _Member:
    """A cohort member for ``session``, from its checkpoint when resuming."""
    config = session.config
    member = _Member(session, Path(config.output_dir))
    checkpoint_path = member.checkpoint_path
    if checkpoint_path.exists() and not config.resume:
        raise CheckpointError(
            f"{checkpoint_path} already exists: pass resume=True (--resume) to continue that "
            f"run, or choose another output_dir"
        )
    if config.resume and checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path)
        _check_same_run(state, config, checkpoint_path,
                        (session.teacher_info or {}).get("sha256"))
        try:
            session.student.load_state_dict(state["model_state"])
            if session.transfer_loss is not None:
                session.transfer_loss.load_state_dict(state["loss_state"])
            session.optimizer.load_state_dict(state["optimizer"])
            session.scheduler.load_state_dict(state["scheduler"])
            if session.scaler is not None and state.get("scaler"):
                session.scaler.load_state_dict(state["scaler"])
            torch.set_rng_state(state["rng"]["torch"])
            if session.device.type == "cuda" and state["rng"]["cuda"]:
                torch.cuda.set_rng_state(state["rng"]["cuda"][0], session.device)
            if config.gradient_ratio is not None:  # measured once, at the start of the run
                _set_beta(session, float(state["beta"]))
            member.start_epoch, member.history = int(state["epoch"]), list(state["history"])
            member.totals.update(state["totals"])
        except (RuntimeError, KeyError, ValueError, TypeError) as error:
            raise CheckpointError(f"{checkpoint_path} does not fit this run: {error!r}") from error
    member.wall_offset = member.totals["wall_seconds"]
    return member


def _end_epoch(member: _Member, epoch: int, stats: dict, stopped_early: bool, started: float,
               is_writer: bool) -> dict:
    """Record a member's epoch, score its test top-1 when due, checkpoint when due."""
    session = member.session
    config = session.config
    member.totals["train_seconds"] += stats["seconds"]
    member.totals["train_images"] += stats["images"]
    record = {
        "epoch": epoch + 1,
        "loss": stats["loss"],
        "lr": session.optimizer.param_groups[0]["lr"],
        "seconds": stats["seconds"],
        "images_per_second": stats["images"] / stats["seconds"],
    }
    last = epoch + 1 == config.epochs
    if session.classifier:
        record["train_top1"] = stats["train_top1"]
        if last or (config.eval_every and (epoch + 1) % config.eval_every == 0):
            record["test_top1"] = top1_accuracy(
                session.student, session.test_set, config.eval_batch_size,
                channels_last=config.channels_last,
            )
    member.history.append(record)
    every = config.checkpoint_every
    if is_writer and (last or stopped_early or (every and (epoch + 1) % every == 0)):
        member.totals["wall_seconds"] = member.wall_offset + time.perf_counter() - started
        _save_checkpoint(session, member.checkpoint_path, epoch + 1, member.history,
                         member.totals)
    return record


def _finish(member: _Member, reference, started: float, cohort: list[str],
            is_writer: bool) -> dict:
    """Evaluate a trained member, write its model.pt and results.json; its results."""
    session, history, totals = member.session, member.history, member.totals
    config = session.config
    metrics = evaluate_models(
        session.student, session.test_set, train_set=session.train_set,
        teacher=session.teacher, teacher_reference=reference if session.teacher else None,
        classifier=session.classifier, teacher_probes=config.teacher_probes,
        batch_size=config.eval_batch_size,
        channels_last=config.channels_last, seed=data_seed(config),
        max_points=config.triplet_points,
    )
    wall_seconds = member.wall_offset + time.perf_counter() - started
    # The first epoch pays for warm-up (cuDNN autotuning, torch.compile).
    steady = history[1:]
    steady_speed = None
    if steady:
        steady_images = len(steady) * session.steps_per_epoch * config.batch_size
        steady_speed = steady_images / sum(record["seconds"] for record in steady)
    results = {
        "completed": True,
        "metrics": metrics,
        "config": _jsonable(asdict(config)),
        "teacher": session.teacher_info,
        "beta": session.beta if config.method != "ce" else None,
        "checkpoint": str(member.checkpoint_path),
        "model": str(member.output / MODEL_NAME),
        "epochs_completed": history[-1]["epoch"] if history else 0,
        "world_size": session.world_size,
        "cohort_size": len(cohort),
        "cohort": cohort,
        "steps_per_epoch": session.steps_per_epoch,
        "train_images": len(session.train_set),
        "test_images": len(session.test_set),
        "wall_time_seconds": wall_seconds,
        "train_seconds": totals["train_seconds"],
        "images_per_second": totals["train_images"] / max(totals["train_seconds"], 1e-12),
        "images_per_second_after_first_epoch": steady_speed,
        "precision": session.precision,
        "history": history,
        "provenance": provenance(),
    }
    if is_writer:
        _save_checkpoint(session, member.output / MODEL_NAME, results["epochs_completed"],
                         history, totals, model_only=True)
        _atomic_write_text(member.output / RESULTS_NAME, json.dumps(results, indent=2) + "\n")
    return results


# Checkpoints.


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :func:`run` (tensors on the CPU).

    Raises:
        FileNotFoundError: there is no such file.
        CheckpointError: the file is corrupt, truncated, or not a perceptcoh checkpoint;
            the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for damaged files
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is corrupt, truncated or not a torch "
            f"checkpoint ({type(error).__name__}: {error})"
        ) from error
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"{path} is not a perceptcoh checkpoint (expected format {CHECKPOINT_FORMAT!r}, "
            f"found {found!r})"
        )
    missing = {"epoch", "config", "model", "dataset", "model_state"} - set(state)
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(sorted(missing))}")
    return state


def model_from_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu"
                          ) -> tuple[nn.Module, dict]:
    """The model saved in a checkpoint, in eval mode on ``device``, and the checkpoint."""
    state = load_checkpoint(path)
    return _model_from_state(state, Path(path)).to(device).eval(), state


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
    """Evaluate a run's checkpoint on its dataset (:func:`perceptcoh.evaluate.evaluate_models`)
    and write the results, with provenance, to ``output`` (default: ``evaluation.json``
    next to the checkpoint). Returns what was written, ``output`` included."""

    path = Path(checkpoint)
    resolved = _resolve_device(device, None)
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
        train_set = train_set.subset(_seeded_prefix(len(train_set), train_subset, seed))
    if test_subset is not None:
        test_set = test_set.subset(_seeded_prefix(len(test_set), test_subset, seed + 1))
    classifier = config.get("protocol") == "supervised" or on_logits(config.get("method"))
    metrics = evaluate_models(
        student, test_set.to(resolved), train_set=train_set.to(resolved), teacher=teacher,
        classifier=classifier, k=k, max_points=triplet_points, batch_size=batch_size,
        channels_last=True, seed=seed,
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
        "provenance": provenance(),
        "output": str(output),
    }
    _atomic_write_text(output, json.dumps(results, indent=2) + "\n")
    return results


def _model_from_state(state: dict, path: Path) -> nn.Module:
    description = state["model"]
    try:
        model = build_model(description["name"], description["num_classes"],
                            **description.get("options", {}))
        model.load_state_dict(state["model_state"])
    except (RuntimeError, KeyError, ValueError, TypeError) as error:
        raise CheckpointError(f"cannot rebuild the model of checkpoint {path}: {error}") from error
    return model


def _save_checkpoint(session: Session, path: Path, epoch: int, history: list, totals: dict,
                     *, model_only: bool = False) -> None:
    """Write the run's state to ``path`` atomically. ``model_only``: what a finished model
    needs (weights, architecture, dataset, config, history), without the optimiser, the
    scheduler and the RNG states that resuming needs: half the size."""
    config = session.config
    state = {
        "format": CHECKPOINT_FORMAT,
        "epoch": epoch,
        "config": _jsonable(asdict(config)),
        "model": {"name": config.model, "num_classes": session.train_set.num_classes,
                  "options": dict(config.model_options),
                  "feature_dim": getattr(session.student, "feature_dim", None)},
        "dataset": {"name": config.dataset, "mean": list(session.train_set.mean),
                    "std": list(session.train_set.std),
                    "num_classes": session.train_set.num_classes},
        "model_state": session.student.state_dict(),
        "loss_state": session.transfer_loss.state_dict() if session.transfer_loss else {},
        "history": history,
        "totals": dict(totals),
        "teacher": session.teacher_info,
        "beta": session.beta,
    }
    if not model_only:
        cuda = session.device.type == "cuda"
        state.update(
            optimizer=session.optimizer.state_dict(),
            scheduler=session.scheduler.state_dict(),
            scaler=session.scaler.state_dict() if session.scaler is not None else None,
            rng={"torch": torch.get_rng_state(),
                 "cuda": [torch.cuda.get_rng_state(session.device)] if cuda else []},
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)  # atomic: a reader sees the old or the new file, never half


def run_differences(saved_run: dict, config: TrainConfig,
                    teacher_sha256: str | None = None) -> list[str]:
    """How ``config``, trained from the teacher whose checkpoint has SHA-256
    ``teacher_sha256``, differs from ``saved_run`` (a checkpoint or a results.json: its
    ``"config"`` and ``"teacher"``), as ``"name: saved X, now Y"``; empty when it would repeat
    that run. Fields that only say how or where a run is executed are not compared; the
    teacher is compared by hash (when both are known), not by path."""
    saved, current = saved_run.get("config") or {}, _jsonable(asdict(config))
    different = [
        f"{name}: saved {saved.get(name, '<missing>')!r}, now {value!r}"
        for name, value in current.items()
        if name not in _EXECUTION_FIELDS and saved.get(name, "<missing>") != value
    ]
    saved_sha = (saved_run.get("teacher") or {}).get("sha256")
    if saved_sha and teacher_sha256 and saved_sha != teacher_sha256:
        different.append(f"teacher SHA-256: saved {saved_sha}, now {teacher_sha256} "
                         f"(another teacher)")
    return different


def _check_same_run(state: dict, config: TrainConfig, path: Path,
                    teacher_sha256: str | None) -> None:
    if not isinstance(state["config"], dict):
        raise CheckpointError(f"checkpoint {path} holds no config")
    different = run_differences(state, config, teacher_sha256)
    if different:
        raise CheckpointError(
            f"checkpoint {path} was written by a different run; resuming needs the same "
            f"settings ({'; '.join(different)})"
        )


def _load_teacher(config: TrainConfig, num_classes: int) -> tuple[nn.Module, dict]:
    path = Path(config.teacher_checkpoint)
    state = load_checkpoint(path)
    recorded = state["model"]["name"]
    if config.teacher is not None and config.teacher != recorded:
        raise ValueError(f"teacher checkpoint {path} holds a {recorded}, not the requested "
                         f"teacher {config.teacher}")
    if state["dataset"]["name"] != config.dataset:
        raise ValueError(f"teacher checkpoint {path} was trained on {state['dataset']['name']}, "
                         f"this run uses {config.dataset}")
    if state["model"]["num_classes"] != num_classes:
        raise ValueError(f"teacher checkpoint {path} has {state['model']['num_classes']} "
                         f"classes, the dataset {num_classes}")
    planned = state["config"].get("epochs")
    if state["epoch"] != planned:
        raise ValueError(f"teacher checkpoint {path} is from an unfinished run (epoch "
                         f"{state['epoch']} of {planned}); finish it with --resume first")
    teacher = _model_from_state(state, path)
    info = {"model": recorded, "checkpoint": str(path), "sha256": file_sha256(path),
            "options": state["model"].get("options", {}), "epochs": state["epoch"],
            "recorded_test_top1": (state.get("history") or [{}])[-1].get("test_top1")}
    return teacher, info


def _set_beta(session: Session, beta: float) -> None:
    objective = session.objective
    if isinstance(objective, nn.parallel.DistributedDataParallel):
        objective = objective.module
    objective.beta = objective.pure_weight = session.beta = beta


# Small helpers.


def _lr_factor(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """Multiplier of the learning rate at optimiser step ``step`` (LambdaLR, per step)."""
    total = config.epochs * steps_per_epoch
    warmup = min(total, round(config.warmup_epochs * steps_per_epoch))
    milestones = [round(fraction * total) for fraction in config.milestones]

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.schedule == "cosine":
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.5 * (1 + math.cos(math.pi * progress))
        return config.lr_decay ** sum(step >= milestone for milestone in milestones)

    return factor


def _generator(device: torch.device, seed: int, epoch: int, stream: int) -> torch.Generator:
    """A generator on ``device`` seeded from ``(seed, epoch, stream)`` (well mixed)."""
    mixed = np.random.SeedSequence([seed, epoch, stream]).generate_state(1)[0]
    return torch.Generator(device=device).manual_seed(int(mixed))


def _normalisation(dataset: ImageDataset, device: torch.device
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(dataset.mean, dtype=torch.float32).to(device)
    std = torch.tensor(dataset.std, dtype=torch.float32).to(device)
    return mean, std


def _seeded_prefix(n: int, count: int, seed: int) -> torch.Tensor:
    if count > n:
        raise ValueError(f"subset of {count} images requested from a set of {n}")
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:count]


def _resolve_device(name: str, local_rank: int | None) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available")
        if local_rank is not None:
            device = torch.device("cuda", local_rank)
        elif device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
    return device


def _init_distributed(config: TrainConfig) -> tuple[int, int, int, bool]:
    """``(rank, world_size, local_rank, initialised_here)`` from torchrun's environment."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1, 0, False
    if not torch.distributed.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size(), local_rank, False
    uses_cuda = config.device != "cpu" and torch.cuda.is_available()
    if uses_cuda:
        torch.cuda.set_device(local_rank)
    torch.distributed.init_process_group("nccl" if uses_cuda else "gloo")
    return rank, world_size, local_rank, True


def _any_process(session: Session, flag: bool) -> bool:
    """Whether ``flag`` holds on any process (all of them get the same answer)."""
    if session.world_size == 1:
        return flag
    value = torch.tensor(float(flag), device=session.device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


class _Reporter:
    """Per-epoch progress of a cohort: a tqdm bar on a terminal (the first student's
    numbers), one line per student and epoch otherwise, or nothing."""

    def __init__(self, sessions: list[Session], start_epoch: int, epochs: int,
                 enabled: bool) -> None:
        self.epochs, self.enabled, self.bar = epochs, enabled, None
        self.cohort = len(sessions) > 1
        if enabled and sys.stderr.isatty():
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                lead = sessions[0].config
                description = (f"{len(sessions)} students" if self.cohort
                               else f"{lead.model} {lead.method}")
                self.bar = tqdm(total=epochs, initial=start_epoch, unit="epoch",
                                desc=description, dynamic_ncols=True)

    def epoch(self, records: list[tuple[str, dict]]) -> None:
        """``records``: (output_dir, epoch record) of each student trained this epoch."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix(_summary(records[0][1]), refresh=False)
            self.bar.update(1)
            return
        for output_dir, record in records:
            text = "  ".join(f"{key} {value}" for key, value in _summary(record).items())
            name = f"{output_dir}  " if self.cohort else ""
            print(f"{name}epoch {record['epoch']}/{self.epochs}  {text}", file=sys.stderr,
                  flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _summary(record: dict) -> dict[str, str]:
    shown = {"loss": f"{record['loss']:.4g}"}
    for name in ("train_top1", "test_top1"):
        if name in record:
            shown[name] = f"{record[name]:.4f}"
    shown["img/s"] = f"{record['images_per_second']:,.0f}"
    return shown


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
