"""Checkpoints: writing and reading a run's state, and checking that one belongs to a run.

``checkpoint.pt`` holds what resuming needs (model, the loss's learnable parts, optimiser,
scheduler, gradient scaler, RNG states, config, history); ``model.pt`` a finished model alone,
the file a transfer run takes as its teacher. Both are written atomically.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..models import build_model
from .config import TrainConfig, recipe
from .files import atomic_write, file_sha256, jsonable

if TYPE_CHECKING:
    from .state import Session

__all__ = [
    "CHECKPOINT_NAME", "MODEL_NAME", "RESULTS_NAME", "CheckpointError", "load_checkpoint",
    "model_from_checkpoint", "save_checkpoint", "run_differences", "check_same_run",
    "load_teacher",
]

CHECKPOINT_NAME = "checkpoint.pt"  # after every epoch: what resuming needs


MODEL_NAME = "model.pt"  # after the last epoch: the finished model alone (a teacher)


RESULTS_NAME = "results.json"


CHECKPOINT_FORMAT = "perceptcoh-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint file is corrupt, not ours, or does not belong to this run."""


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


def _model_from_state(state: dict, path: Path) -> nn.Module:
    description = state["model"]
    try:
        model = build_model(description["name"], description["num_classes"],
                            **description.get("options", {}))
        model.load_state_dict(state["model_state"])
    except (RuntimeError, KeyError, ValueError, TypeError) as error:
        raise CheckpointError(f"cannot rebuild the model of checkpoint {path}: {error}") from error
    return model


def save_checkpoint(session: Session, path: Path, epoch: int, history: list, totals: dict,
                     *, model_only: bool = False) -> None:
    """Write the run's state to ``path`` atomically. ``model_only``: what a finished model
    needs (weights, architecture, dataset, config, history), without the optimiser, the
    scheduler and the RNG states that resuming needs: half the size."""
    config = session.config
    state = {
        "format": CHECKPOINT_FORMAT,
        "epoch": epoch,
        "config": jsonable(asdict(config)),
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
    atomic_write(path, lambda handle: torch.save(state, handle), binary=True)


def run_differences(saved_run: dict, config: TrainConfig,
                    teacher_sha256: str | None = None) -> list[str]:
    """How ``config``, trained from the teacher whose checkpoint has SHA-256
    ``teacher_sha256``, differs from ``saved_run`` (a checkpoint or a results.json: its
    ``"config"`` and ``"teacher"``), as ``"name: saved X, now Y"``; empty when it would repeat
    that run. Fields that only say how or where a run is executed are not compared; the
    teacher is compared by hash (when both are known), not by path."""
    saved = saved_run.get("config") or {}
    # A field added after the run was saved reads as its default, which is what that run did.
    defaults = recipe(TrainConfig())
    different = [
        f"{name}: saved {saved.get(name, defaults.get(name))!r}, now {value!r}"
        for name, value in recipe(config).items() if saved.get(name, defaults.get(name)) != value
    ]
    saved_sha = (saved_run.get("teacher") or {}).get("sha256")
    if saved_sha and teacher_sha256 and saved_sha != teacher_sha256:
        different.append(f"teacher SHA-256: saved {saved_sha}, now {teacher_sha256} "
                         f"(another teacher)")
    return different


def check_same_run(state: dict, config: TrainConfig, path: Path,
                    teacher_sha256: str | None) -> None:
    if not isinstance(state["config"], dict):
        raise CheckpointError(f"checkpoint {path} holds no config")
    different = run_differences(state, config, teacher_sha256)
    if different:
        raise CheckpointError(
            f"checkpoint {path} was written by a different run; resuming needs the same "
            f"settings ({'; '.join(different)})"
        )


def load_teacher(config: TrainConfig, num_classes: int) -> tuple[nn.Module, dict]:
    """The teacher of a transfer run and what its results record about it (architecture,
    file, SHA-256, epochs). A file with a record beside it (``NAME.json`` with a
    ``"sha256"``, as shipped teachers have) must match that hash.

    Raises:
        CheckpointError: the file does not match its record, or is not a checkpoint.
        ValueError: the checkpoint does not fit the run (architecture, dataset, classes,
            an unfinished run).
    """
    path = Path(config.teacher_checkpoint)
    digest = file_sha256(path) if path.is_file() else None
    record = path.with_suffix(".json")
    if digest is not None and record.is_file():
        expected = json.loads(record.read_text()).get("sha256")
        if expected is not None and expected != digest:
            raise CheckpointError(f"teacher checkpoint {path} has SHA-256 {digest}, but "
                                  f"{record} records {expected}: the file was changed or "
                                  f"truncated")
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
    info = {"model": recorded, "checkpoint": str(path), "sha256": digest,
            "options": state["model"].get("options", {}), "epochs": state["epoch"],
            "recorded_test_top1": (state.get("history") or [{}])[-1].get("test_top1")}
    return teacher, info
