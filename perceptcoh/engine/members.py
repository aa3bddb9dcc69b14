"""Each student of a pass (:class:`Member`), as :func:`perceptcoh.engine.loop.run_cohort`
carries it through the epochs: resumed from its checkpoint (:func:`resume`), each epoch
recorded and checkpointed when due (:func:`end_epoch`), then evaluated, checked for
collapse and written as ``model.pt`` and ``results.json`` (:func:`finish`), or, if its loss
diverged, written as such (:func:`finish_diverged`)."""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .checkpoint import (
    CHECKPOINT_NAME,
    MODEL_NAME,
    RESULTS_NAME,
    CheckpointError,
    check_same_run,
    load_checkpoint,
    save_checkpoint,
)
from .collapse import CollapseWarning, DegradedWarning, check_collapse, epoch_feature_statistics
from .config import data_seed, recipe_sha256
from .evaluate import evaluate_models, top1_accuracy
from .files import atomic_write_text, jsonable
from .provenance import provenance
from .session import set_beta
from .state import Session

__all__ = ["Member", "resume", "end_epoch", "finish", "finish_diverged"]


@dataclass
class Member:
    """A student's progress through a cohort's epochs."""

    session: Session
    output: Path
    start_epoch: int = 0
    history: list = field(default_factory=list)
    totals: dict = field(default_factory=lambda: {"train_seconds": 0.0, "train_images": 0,
                                                  "wall_seconds": 0.0})
    wall_offset: float = 0.0
    diverged: dict | None = None  # {"epoch", "loss"} when its loss became NaN or infinite

    @property
    def checkpoint_path(self) -> Path:
        return self.output / CHECKPOINT_NAME


def resume(session: Session) -> Member:
    """A cohort member for ``session``, from its checkpoint when resuming."""
    config = session.config
    member = Member(session, Path(config.output_dir))
    checkpoint_path = member.checkpoint_path
    if checkpoint_path.exists() and not config.resume:
        raise CheckpointError(
            f"{checkpoint_path} already exists: pass resume=True (--resume) to continue that "
            f"run, or choose another output_dir"
        )
    if config.resume and checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path)
        check_same_run(state, config, checkpoint_path,
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
                set_beta(session, float(state["beta"]))
            member.start_epoch, member.history = int(state["epoch"]), list(state["history"])
            member.totals.update(state["totals"])
        except (RuntimeError, KeyError, ValueError, TypeError) as error:
            raise CheckpointError(f"{checkpoint_path} does not fit this run: {error!r}") from error
    if member.start_epoch == 0:  # the initial student, the reference of a shrinking norm
        member.totals["initial_features"] = epoch_feature_statistics(session)
    member.wall_offset = member.totals["wall_seconds"]
    return member


def end_epoch(member: Member, epoch: int, stats: dict, stopped_early: bool, started: float,
               is_writer: bool) -> dict:
    """Record a member's epoch (with its features' norm and dead dimensions,
    :func:`epoch_feature_statistics`), score its test top-1 when due, checkpoint when due."""
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
        **epoch_feature_statistics(session),
    }
    last = epoch + 1 == config.epochs
    if session.classifier:
        record["train_top1"] = stats["train_top1"]
        if last or (config.eval_every and (epoch + 1) % config.eval_every == 0):
            record["test_top1"] = top1_accuracy(
                session.student, session.test_set, config.eval_batch_size,
                channels_last=config.channels_last,
            )
    if "curve" in stats:
        record["curve"] = stats["curve"]
    member.history.append(record)
    every = config.checkpoint_every
    if is_writer and (last or stopped_early or (every and (epoch + 1) % every == 0)):
        member.totals["wall_seconds"] = member.wall_offset + time.perf_counter() - started
        save_checkpoint(session, member.checkpoint_path, epoch + 1, member.history,
                        member.totals)
    return record


def finish_diverged(member: Member, started: float, is_writer: bool) -> dict:
    """The results of a member whose loss diverged: no metrics, ``diverged`` set; written to
    its results.json (no model.pt: its weights are not finite)."""
    session, config = member.session, member.session.config
    results = {
        "completed": True,
        "diverged": member.diverged,
        "metrics": {},
        "collapsed": None,
        "degraded": None,
        "collapse": None,
        "config": jsonable(asdict(config)),
        "recipe_sha256": recipe_sha256(config),
        "teacher": session.teacher_info,
        "beta": session.beta if config.method != "ce" else None,
        "epochs_completed": member.history[-1]["epoch"] if member.history else 0,
        "wall_time_seconds": member.wall_offset + time.perf_counter() - started,
        "train_seconds": member.totals["train_seconds"],
        "images_per_second": None,
        "images_per_second_after_first_epoch": None,
        "history": member.history,
        "provenance": provenance(device=session.device),
    }
    if is_writer:
        atomic_write_text(member.output / RESULTS_NAME, json.dumps(results, indent=2) + "\n")
    return results


def finish(member: Member, reference, distiller: Session | None, started: float,
            cohort: list[str], is_writer: bool) -> dict:
    """Evaluate a trained member, check its features for collapse (a
    :class:`CollapseWarning` if they have) and degradation (a :class:`DegradedWarning`),
    write its model.pt and results.json; its results. A CE-only member of a pass with a
    teacher (``distiller``) is scored against that teacher too, without the teacher's own
    probes."""
    session, history, totals = member.session, member.history, member.totals
    config = session.config
    teacher = session.teacher
    if teacher is None and distiller is not None:
        teacher = distiller.teacher
    metrics = evaluate_models(
        session.student, session.test_set, train_set=session.probe_set,
        validation_set=session.validation_set,
        teacher=teacher, teacher_reference=reference if teacher is not None else None,
        classifier=session.classifier,
        teacher_probes=config.teacher_probes and session.teacher is not None,
        batch_size=config.eval_batch_size,
        channels_last=config.channels_last, seed=data_seed(config),
        max_points=config.triplet_points,
    )
    initial = totals.get("initial_features")  # absent if resumed from an older checkpoint
    collapse = check_collapse(session.student, session.test_set,
                              batch_size=config.eval_batch_size,
                              channels_last=config.channels_last,
                              initial_norm=initial["feature_norm"] if initial else None)
    collapse["initial"] = initial
    wall_seconds = member.wall_offset + time.perf_counter() - started
    # The first epoch pays for warm-up (cuDNN autotuning, torch.compile).
    steady = history[1:]
    steady_speed = None
    if steady:
        steady_images = len(steady) * session.steps_per_epoch * config.batch_size
        steady_speed = steady_images / sum(record["seconds"] for record in steady)
    results = {
        "completed": True,
        "diverged": None,
        "metrics": metrics,
        "collapsed": collapse["collapsed"],
        "degraded": collapse["degraded"],
        "collapse": collapse,
        "config": jsonable(asdict(config)),
        "recipe_sha256": recipe_sha256(config),
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
        "validation_images": (None if session.validation_set is None
                              else len(session.validation_set)),
        "test_images": len(session.test_set),
        "wall_time_seconds": wall_seconds,
        "train_seconds": totals["train_seconds"],
        "images_per_second": totals["train_images"] / max(totals["train_seconds"], 1e-12),
        "images_per_second_after_first_epoch": steady_speed,
        "precision": session.precision,
        "history": history,
        "provenance": provenance(device=session.device),
    }
    if is_writer and collapse["collapsed"]:
        warnings.warn(CollapseWarning(
            f"the features of run {config.output_dir} (method {config.method!r}, protocol "
            f"{config.protocol!r}) collapsed: {'; '.join(collapse['reasons'])}; its probes "
            f"and gaps measure nothing"))
    elif is_writer and collapse["degraded"]:
        warnings.warn(DegradedWarning(
            f"the features of run {config.output_dir} (method {config.method!r}, protocol "
            f"{config.protocol!r}) are degraded: {'; '.join(collapse['degradation'])}"))
    if is_writer:
        save_checkpoint(session, member.output / MODEL_NAME, results["epochs_completed"],
                        history, totals, model_only=True)
        atomic_write_text(member.output / RESULTS_NAME, json.dumps(results, indent=2) + "\n")
    return results
