"""The :class:`Session` record: what one student's training holds, as the loop, the
checkpoints and the distributed helpers read it. Built by :mod:`perceptcoh.engine.session`;
this module imports neither it nor its readers."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import TrainConfig, on_logits
from .data import ImageDataset

__all__ = ["Session"]

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Session:
    """Everything the epoch loop needs, built by :func:`perceptcoh.engine.session.prepare`."""

    config: TrainConfig
    device: torch.device
    rank: int
    world_size: int
    train_set: ImageDataset  # on the device
    test_set: ImageDataset
    probe_set: ImageDataset  # the training images the probes are fitted on
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
    # Held-out training images (config.validation_split), never trained on; None without.
    validation_set: ImageDataset | None = None

    @property
    def autocast(self) -> torch.autocast:
        """The autocast context of the run's precision (disabled for fp32)."""
        dtype = _AUTOCAST_DTYPES.get(self.precision)
        return torch.autocast(self.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)

    @property
    def classifier(self) -> bool:
        """Whether the student's classifier is trained (and so worth scoring)."""
        return self.config.protocol == "supervised" or on_logits(self.config.method)
