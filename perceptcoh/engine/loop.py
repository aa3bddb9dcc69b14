"""The training loop, read top to bottom: :func:`run_cohort` prepares the students
(:func:`perceptcoh.engine.session.prepare_cohort`), resumes their checkpoints, trains epoch by
epoch (:func:`train_cohort_epoch`: per step one batch, one augmentation, one teacher forward,
then each student's step), evaluates them and writes their results.

Written for speed on one GPU, the way airbench is: the whole training set sits on the device
as one uint8 tensor; each epoch draws one permutation there and a batch is a slice of it;
random crops and flips are a few tensor ops on the batch; the forward runs in the precision
of :func:`perceptcoh.engine.config.resolve_precision` (bf16 autocast on recent GPUs, fp16
with a gradient scaler on older ones such as Colab's T4, fp32 on a CPU) and channels_last;
evaluation is IEEE fp32; and a training step never waits for the device: losses and correct
counts are summed on the device and read once per epoch, when the epoch's loss is also
checked for NaN/Inf. The teacher is frozen, in eval mode, and runs under
``torch.inference_mode``.

Under autocast the teacher's features, and so the "exact" teacher ranks of the PC loss, are
those of a bf16 or fp16 forward, except its last stage and classifier, which run in float32
(:func:`perceptcoh.models.base.float32_last_stage`, applied by the session). Measured with
the shipped resnet20 teacher on 1,024 CIFAR-100 test images at B = 64, 128 and 512
(autocast on a CPU; ``benchmarks/teacher_ranks.py``, saved in
``results/teacher-ranks-autocast.json``): with the whole forward in bf16 a row has 0.47% of
its pairs in another order than in float32 on average, and the worst row 1.28% (B = 64),
above the 1% at which the last stage goes to float32; with the last stage in float32, 0.43%
and 1.02%. Most of the reordering comes from the earlier stages' rounding, which only a
float32 teacher removes. Under fp16: 0.06% and 0.31%, and 0.05% and 0.31%.

Each student's bookkeeping (its checkpoint, epoch records, evaluation and results) is
:mod:`perceptcoh.engine.members`.

Checkpoints: every ``checkpoint_every`` epochs, and always after the last and before a
time-limit stop, ``output_dir/checkpoint.pt`` is replaced atomically. The permutation and
augmentation generators are re-seeded every epoch from ``(data_seed, epoch, rank)``, so a
run resumed from epoch ``e`` draws exactly the batches of an uninterrupted one, on every
process, and on a CPU reproduces its weights bit for bit. A finished run also writes
``model.pt`` (the model alone) and ``results.json``.

Collapse is never silent (:mod:`perceptcoh.engine.collapse`): every epoch record holds the
student's ``feature_norm`` and ``dead_fraction`` on a fixed set of test images, read at the
epoch's end; ``results.json`` says whether the finished run's features ``collapsed``, and a
collapsed run raises a :class:`CollapseWarning` that names it.

Several GPUs: launched by ``torchrun``, each process takes ``batch_size / world_size``
samples of every global batch, the model (and the loss's learnable parts) are wrapped in
DDP, and the PC loss ranks each process's anchors against the global batch (the engine
passes it ``process_group=torch.distributed.group.WORLD``). Only rank 0 writes files.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .config import TrainConfig, data_seed
from .curves import curve_point, curve_records
from .data import augment, normalize
from .distributed import any_process
from .evaluate import evaluate_teacher
from .members import end_epoch, finish, finish_diverged, resume
from .progress import EpochReporter
from .session import Session, prepare_cohort

__all__ = [
    "NonFiniteLossError", "DivergenceWarning", "train_teacher", "transfer", "run", "run_cohort", "train_epoch",
    "train_cohort_epoch", "training_batch", "teacher_forward", "optimiser_step", "train_step",
]

class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class DivergenceWarning(UserWarning):
    """A student of a cohort trained with ``keep_going`` diverged (its loss became NaN or
    infinite): it was dropped from the pass, and its results say ``diverged``."""


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


def run_cohort(configs: list[TrainConfig], *, keep_going: bool = False) -> list[dict]:
    """Train several students in one pass over the data (:func:`prepare_cohort`), each
    with its own checkpoint, evaluation and ``results.json``; returns their results in
    order. A student resumed at a later epoch than the others, or with fewer epochs, takes
    part in the epochs it still needs: every epoch's batches depend on the data seed and the
    epoch only. The teacher is run once per step for all students, and its evaluation
    (features, probes, ranks of the test set) is computed once for all of them.

    ``time_limit`` is the smallest of the configs'. Each result has ``cohort`` (the output
    folders of the students trained in the pass) and ``cohort_size``; its seconds and images
    per second are the pass's. A CE-only student of a pass that has a teacher is scored
    against it too (its perception gap and the other transfer metrics: the control of what
    labels alone give).

    With ``keep_going``, a student whose epoch loss is NaN or infinite is dropped from the
    pass instead of stopping it: a :class:`DivergenceWarning` names it, and its results
    (written, so that a plan does not train it again) have ``diverged`` (the epoch and the
    loss) and no metrics. A finished student's results have ``diverged: None``.

    Raises:
        as :func:`run`, for any student (``NonFiniteLossError`` only without ``keep_going``).
    """
    started = time.perf_counter()
    sessions = prepare_cohort(configs)
    try:
        return _run_cohort(sessions, started, keep_going)
    finally:
        if sessions[0].distributed_owner:
            torch.distributed.destroy_process_group()


def train_epoch(session: Session, epoch: int, *, max_steps: int | None = None) -> dict:
    """One epoch (or its first ``max_steps`` steps) of training; the only host
    synchronisation is the read-out of the loss and accuracy sums at the end.

    Returns ``loss`` (mean over steps, averaged over processes), ``train_top1``
    (on augmented images), ``images`` (trained on, all processes) and ``seconds``.

    Raises:
        NonFiniteLossError: the epoch's loss is NaN or infinite.
    """
    return train_cohort_epoch([session], epoch, max_steps=max_steps)[0]


def train_cohort_epoch(sessions: list[Session], epoch: int, *, max_steps: int | None = None,
                       on_step: Callable[[], None] | None = None,
                       raise_nonfinite: bool = True) -> list[dict]:
    """One epoch of every student of ``sessions`` (from :func:`prepare_cohort`) in one pass
    over the data: each step draws one batch, augments it once and runs the teacher once,
    then steps each student on it. ``on_step`` is called after each step's work is queued
    (a progress bar; it must not wait for the device). Returns one :func:`train_epoch`
    record per student; the seconds are the pass's, shared by all. A student whose
    ``curve_every`` is set also has ``curve``, its learning-curve points
    (:mod:`perceptcoh.engine.curves`), read from the device with the epoch's sums.

    Raises:
        NonFiniteLossError: a student's epoch loss is NaN or infinite (the message names
            its run); without ``raise_nonfinite`` its record has ``finite: False`` instead.
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
    distiller = _first_distiller(sessions)
    teacher = None if distiller is None else distiller.teacher
    loss_sums = torch.zeros(len(sessions), device=device)
    correct = torch.zeros(len(sessions), dtype=torch.int64, device=device)
    for session in sessions:
        session.objective.train()
    if teacher is not None:
        teacher.eval()
    _synchronize(device)
    start = time.perf_counter()
    curves: list[list] = [[] for _ in sessions]
    for step in range(steps):
        first = step * batch_size + lead.rank * lead.local_batch
        indices = order[first : first + lead.local_batch]
        inputs, labels = training_batch(lead, indices, augmentation_generator)
        teacher_outputs = teacher_forward(lead, teacher, inputs)
        global_step = epoch * lead.steps_per_epoch + step
        for index, session in enumerate(sessions):
            every = session.config.curve_every
            curve = curves[index] if every and global_step % every == 0 else None
            loss, logits = optimiser_step(session, inputs, labels, *teacher_outputs,
                                          indices=indices, curve=curve)
            if curve is not None:
                curve[-1] = (global_step, curve[-1])
            loss_sums[index] += loss
            correct[index] += (logits.argmax(dim=1) == labels).sum()
        if on_step is not None:
            on_step()
    sums = torch.stack([loss_sums.double(), correct.double()], dim=1)
    if lead.world_size > 1:
        torch.distributed.all_reduce(sums)
    totals = sums.tolist()  # the epoch's one host synchronisation
    seconds = time.perf_counter() - start
    images = steps * batch_size
    records = []
    for session, (loss_total, correct_total), curve in zip(sessions, totals, curves):
        mean_loss = loss_total / (max(steps, 1) * lead.world_size)
        record = {"loss": mean_loss, "train_top1": correct_total / max(images, 1),
                  "images": images, "seconds": seconds}
        if session.config.curve_every:
            record["curve"] = curve_records(curve)
        if not math.isfinite(mean_loss):
            if raise_nonfinite:
                raise NonFiniteLossError(_divergence_message(session, epoch, mean_loss))
            record["finite"] = False
        records.append(record)
    return records


def _divergence_message(session: Session, epoch: int, loss: float) -> str:
    config = session.config
    return (f"the training loss of epoch {epoch + 1} of {config.output_dir} is {loss} "
            f"(method {config.method!r}, lr {config.lr}, beta {session.beta}); lower the "
            f"learning rate or beta, or check the teacher checkpoint")


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
                   teacher_features: torch.Tensor | None, teacher_logits: torch.Tensor | None,
                   *, indices: torch.Tensor | None = None, curve: list | None = None):
    """One optimiser step of ``session``'s student on a prepared batch (``indices``: its
    positions in the training set). Returns the detached loss and the student's logits, on
    the device: nothing here waits for the device. With ``curve`` (a list), the step's
    learning-curve point (:func:`perceptcoh.engine.curves.curve_point`, a device tensor) is
    appended to it first."""
    with session.autocast:
        if curve is None:
            loss, logits = session.objective(inputs, labels, teacher_features, teacher_logits,
                                             indices)
        else:
            loss, logits, parts = session.objective(inputs, labels, teacher_features,
                                                    teacher_logits, indices, measure=True)
            curve.append(curve_point(session.objective, loss, *parts))
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
    loss, logits = optimiser_step(session, inputs, labels, *teacher_outputs, indices=indices)
    return loss, logits, labels


def _run_cohort(sessions: list[Session], started: float, keep_going: bool) -> list[dict]:
    members = [resume(session) for session in sessions]
    lead = sessions[0]
    is_writer = lead.rank == 0
    limits = [s.config.time_limit for s in sessions if s.config.time_limit is not None]
    time_limit = min(limits) if limits else None
    first_epoch = min(member.start_epoch for member in members)
    last_epoch = max(member.session.config.epochs for member in members)
    reporter = EpochReporter(sessions, first_epoch, last_epoch, lead.steps_per_epoch,
                             enabled=lead.config.progress and is_writer)
    stopped_early = False
    for epoch in range(first_epoch, last_epoch):
        active = [m for m in members if m.start_epoch <= epoch < m.session.config.epochs
                  and m.diverged is None]
        if not active:
            break
        records = train_cohort_epoch([m.session for m in active], epoch,
                                     on_step=reporter.step, raise_nonfinite=not keep_going)
        for member, stats in zip(active, records):
            if stats.get("finite", True):
                continue
            member.diverged = {"epoch": epoch + 1, "loss": stats["loss"]}
            if is_writer:
                warnings.warn(DivergenceWarning(_divergence_message(member.session, epoch,
                                                                    stats["loss"])))
        kept = [(m, stats) for m, stats in zip(active, records) if m.diverged is None]
        if time_limit is not None:
            # Stop if another epoch would end past the limit; every process must agree.
            elapsed = time.perf_counter() - started
            unfinished = any(epoch + 1 < m.session.config.epochs for m in active)
            stopped_early = unfinished and any_process(
                lead, elapsed + records[0]["seconds"] > time_limit)
        reporter.epoch([
            (member.session.config.output_dir,
             end_epoch(member, epoch, stats, stopped_early, started, is_writer))
            for member, stats in kept
        ])
        if stopped_early:
            break
    reporter.close()
    if stopped_early:
        # A diverged student's results are written now: it is done, whatever the others do.
        return [finish_diverged(m, started, is_writer) if m.diverged else
                {"completed": False, "epoch": m.history[-1]["epoch"] if m.history else 0,
                 "epochs": m.session.config.epochs, "checkpoint": str(m.checkpoint_path),
                 "history": m.history} for m in members]
    reference = None
    distiller = _first_distiller(sessions)
    if distiller is not None:
        reference = evaluate_teacher(
            distiller.teacher, lead.test_set, train_set=lead.probe_set,
            probes=any(s.config.teacher_probes for s in sessions if s.teacher is not None),
            batch_size=distiller.config.eval_batch_size,
            channels_last=distiller.config.channels_last, seed=data_seed(distiller.config),
        )
    cohort = [member.session.config.output_dir for member in members]
    return [finish_diverged(member, started, is_writer) if member.diverged else
            finish(member, reference, distiller, started, cohort, is_writer)
            for member in members]


def _first_distiller(sessions: Sequence[Session]) -> Session | None:
    """The first session of a cohort that has a teacher: the cohort shares it (one
    teacher forward pass per batch, one teacher reference for evaluation)."""
    return next((s for s in sessions if s.teacher is not None), None)


def _generator(device: torch.device, seed: int, epoch: int, stream: int) -> torch.Generator:
    """A generator on ``device`` seeded from ``(seed, epoch, stream)`` (well mixed)."""
    mixed = np.random.SeedSequence([seed, epoch, stream]).generate_state(1)[0]
    return torch.Generator(device=device).manual_seed(int(mixed))


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
