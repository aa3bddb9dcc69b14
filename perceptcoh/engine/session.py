"""Assembly: the data on the device, the teacher, and each student's model, loss, beta,
optimiser and schedule, as :class:`Session` objects that the loop steps
(:mod:`perceptcoh.engine.loop`)."""

from __future__ import annotations

import copy
import math
import os
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..models import build_model
from ..models.base import FeatureClassifier, float32_last_stage
from ..registry import SPECS, build_loss
from .checkpoint import load_teacher
from .config import COHORT_FIELDS, DEFAULT_BETA, TrainConfig, data_seed, on_logits, \
    resolve_precision, validate
from .data import ImageDataset, load_dataset, normalize
from .data.split import validation_split
from .distributed import init_distributed, resolve_device
from .files import seeded_prefix
from .state import Session

__all__ = ["Session", "Objective", "prepare", "prepare_cohort", "balanced_beta",
           "transfer_term", "set_beta"]

# Random-crop padding and horizontal flips per dataset (digits are 8x8 and not mirror-symmetric).
AUGMENTATION = {"cifar10": (4, True), "cifar100": (4, True), "digits": (1, False)}


class Objective(nn.Module):
    """The student and its training loss, one module, so that DDP synchronises the
    gradients of both the student and the loss's learnable parts (FitNet's regressor, CC's
    projection).

    ``forward(inputs, labels, teacher_features, teacher_logits)`` returns
    ``(loss, student_logits)`` (with ``measure=True`` also ``(features, CE, L)``, CE computed
    in the pure protocol too, for :mod:`perceptcoh.engine.curves`): ``CE + beta * L`` (supervised), ``pure_weight * L`` (pure) or
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
        self.indexed = method in SPECS and SPECS[method].indexed
        self.supervised = protocol == "supervised"
        self.beta = beta
        self.pure_weight = pure_weight
        self.label_smoothing = label_smoothing

    def forward(self, inputs, labels, teacher_features=None, teacher_logits=None, indices=None,
                measure=False):
        features, logits = self.student(inputs)
        cross_entropy = term = None
        if self.supervised or measure:
            # In the pure protocol CE is computed only to be measured, never stepped.
            cross_entropy = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        if self.transfer_loss is None:
            loss = cross_entropy
        else:
            term = transfer_term(self.transfer_loss, features, logits, teacher_features,
                                 teacher_logits, on_logits=self.on_logits,
                                 indices=indices if self.indexed else None)
            if self.supervised:
                loss = cross_entropy + self.beta * term
            else:
                loss = self.pure_weight * term
        if measure:
            return loss, logits, (features, cross_entropy, term)
        return loss, logits

    @property
    def transfer_weight(self) -> float:
        """The weight of the transfer loss in the stepped loss: ``beta`` (supervised) or
        ``pure_weight`` (pure)."""
        return self.beta if self.supervised else self.pure_weight


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
    if any(c.curve_every for c in configs) and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("curve_every records learning curves in one process; set it to 0 "
                         "under torchrun")
    configs = [validate(config, teacher_given=teacher is not None) for config in configs]
    _check_cohort(configs)
    lead = configs[0]
    rank, world_size, local_rank, owner = init_distributed(lead)
    device = resolve_device(lead.device, local_rank if world_size > 1 else None)
    memory_format = torch.channels_last if lead.channels_last else torch.contiguous_format
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest kernels once

    seed = data_seed(lead)
    train_set = load_dataset(lead.dataset, "train", lead.data_root)
    test_set = load_dataset(lead.dataset, "test", lead.data_root)
    validation_set = None
    if lead.validation_split is not None:
        # Held out before anything else is drawn, by its own fixed seed; the normalisation
        # keeps the statistics of the whole training split.
        kept, held_out = validation_split(train_set.labels, lead.validation_split,
                                          train_set.num_classes)
        validation_set = train_set.subset(held_out).to(device)
        train_set = train_set.subset(kept)
    if lead.train_subset is not None:
        train_set = train_set.subset(seeded_prefix(len(train_set), lead.train_subset, seed))
    if lead.test_subset is not None:
        test_set = test_set.subset(seeded_prefix(len(test_set), lead.test_subset, seed + 1))
    train_set, test_set = train_set.to(device), test_set.to(device)
    probe_set = train_set
    if lead.probe_subset is not None and lead.probe_subset < len(train_set):
        probe_set = train_set.subset(seeded_prefix(len(train_set), lead.probe_subset, seed + 3))
    if lead.batch_size % world_size:
        raise ValueError(f"batch_size {lead.batch_size} is not divisible by the "
                         f"{world_size} processes")
    local_batch = lead.batch_size // world_size
    steps_per_epoch = len(train_set) // lead.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"the training set ({len(train_set)} images) is smaller than one "
                         f"batch ({lead.batch_size})")
    precision = resolve_precision(lead.precision, device)
    transfer = [config for config in configs if config.method != "ce"]
    teacher_info = None
    if transfer:
        if teacher is None:
            teacher, teacher_info = load_teacher(transfer[0], train_set.num_classes)
        else:
            teacher_info = {"model": transfer[0].teacher, "checkpoint": None, "sha256": None}
        teacher = teacher.to(device, memory_format=memory_format).eval().requires_grad_(False)
        if precision != "fp32" and isinstance(teacher, FeatureClassifier):
            # The teacher's ranks are taken as exact: its features come from a float32 last
            # stage (see perceptcoh.engine.loop's docstring for the measurement).
            teacher = float32_last_stage(teacher)
        if lead.compile:
            teacher.compile()
    normalisation = _normalisation(train_set, device)
    padding, flip = AUGMENTATION[lead.dataset]
    augmentation = (
        padding if lead.crop_padding is None else lead.crop_padding,
        flip if lead.flip is None else lead.flip,
    )
    shared = dict(device=device, rank=rank, world_size=world_size, train_set=train_set,
                  test_set=test_set, probe_set=probe_set, validation_set=validation_set,
                  steps_per_epoch=steps_per_epoch,
                  local_batch=local_batch, augmentation=augmentation,
                  normalisation=normalisation, precision=precision)
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
            # PC ranks each process's anchors against the global batch (an explicit opt-in);
            # CRD updates its memory banks with the global batch.
            options.setdefault("process_group", torch.distributed.group.WORLD)
        transfer_loss = build_loss(
            config.method,
            student_dim=getattr(student, "feature_dim", None),
            teacher_dim=getattr(teacher, "feature_dim", None),
            dataset_size=len(train_set),
            **options,
        ).to(device)
    beta = config.beta if config.beta is not None else DEFAULT_BETA.get(config.method, 0.0)
    if config.gradient_ratio is not None and transfer_loss is not None:
        rank = shared["rank"]
        first = seeded_prefix(len(train_set), config.batch_size, data_seed(config) + 2)
        first = first[rank * local_batch : (rank + 1) * local_batch].to(device)
        inputs = normalize(train_set.images[first], *normalisation,
                           channels_last=config.channels_last)
        beta = config.gradient_ratio * balanced_beta(
            student, teacher, transfer_loss, inputs, train_set.labels[first],
            on_logits=on_logits(config.method),
            indices=first if SPECS[config.method].indexed else None,
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
        # No buffer broadcast: it would overwrite every process's CRD memory banks (two
        # 50,000 x 128 buffers, 51 MB a step) with rank 0's, which CRD keeps equal on every
        # process by gathering each update instead. Batch-norm statistics then stay each
        # process's own; rank 0's, the ones saved, are what the broadcast gave it anyway.
        objective = nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=unused, broadcast_buffers=False,
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


def transfer_term(loss: nn.Module, features: torch.Tensor, logits: torch.Tensor,
                  teacher_features: torch.Tensor | None, teacher_logits: torch.Tensor | None,
                  *, on_logits: bool, indices: torch.Tensor | None = None) -> torch.Tensor:
    """The transfer loss on the two sides' logits (``on_logits``) or features, with the
    batch's dataset ``indices`` for the losses that take them."""
    if on_logits:
        return loss(logits, teacher_logits)
    if indices is not None:
        return loss(features, teacher_features, indices)
    return loss(features, teacher_features)


def balanced_beta(student: nn.Module, teacher: nn.Module, transfer_loss: nn.Module,
                  inputs: torch.Tensor, labels: torch.Tensor, *, on_logits: bool,
                  indices: torch.Tensor | None = None) -> float:
    """The weight ``beta = |grad_theta CE| / |grad_theta L|`` that gives the transfer loss
    ``L`` a gradient as large as the cross-entropy's, for the student's parameters ``theta``
    as they are, on one batch (``inputs``, normalised, ``labels``, and the dataset
    ``indices`` for a loss that takes them), in float32.

    The student's and the loss's state (BatchNorm statistics, a memory bank) are restored
    afterwards: measuring trains nothing.

    Raises:
        ValueError: ``L`` or CE has a zero or non-finite gradient, so no weight balances them.
    """
    saved = copy.deepcopy(student.state_dict())
    saved_loss = copy.deepcopy(transfer_loss.state_dict())
    was_training = student.training
    student.train()
    with torch.no_grad():
        teacher_features, teacher_logits = teacher(inputs)
    features, logits = student(inputs)
    cross_entropy = F.cross_entropy(logits.float(), labels)
    term = transfer_term(transfer_loss, features, logits, teacher_features, teacher_logits,
                         on_logits=on_logits, indices=indices)
    parameters = [parameter for parameter in student.parameters() if parameter.requires_grad]
    norms = []
    for loss in (cross_entropy, term):
        gradients = torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
        norms.append(torch.cat([g.flatten().float() for g in gradients if g is not None]).norm())
    student.load_state_dict(saved)
    transfer_loss.load_state_dict(saved_loss)
    student.train(was_training)
    ce_norm, loss_norm = (float(norm) for norm in norms)
    if not (math.isfinite(ce_norm) and math.isfinite(loss_norm) and ce_norm > 0 and loss_norm > 0):
        raise ValueError(
            f"cannot balance the gradients: |grad CE| = {ce_norm}, |grad L| = {loss_norm} on the "
            f"first batch; set beta instead of gradient_ratio"
        )
    return ce_norm / loss_norm


def set_beta(session: Session, beta: float) -> None:
    objective = session.objective
    if isinstance(objective, nn.parallel.DistributedDataParallel):
        objective = objective.module
    objective.beta = objective.pure_weight = session.beta = beta


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


def _normalisation(dataset: ImageDataset, device: torch.device
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(dataset.mean, dtype=torch.float32).to(device)
    std = torch.tensor(dataset.std, dtype=torch.float32).to(device)
    return mean, std
