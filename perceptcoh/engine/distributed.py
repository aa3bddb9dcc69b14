"""Which process this is and which device it uses: torchrun's environment, one GPU a process."""

from __future__ import annotations

import os

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .config import TrainConfig
    from .state import Session

__all__ = ["init_distributed", "resolve_device", "any_process"]

def init_distributed(config: TrainConfig) -> tuple[int, int, int, bool]:
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


def resolve_device(name: str, local_rank: int | None) -> torch.device:
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


def any_process(session: Session, flag: bool) -> bool:
    """Whether ``flag`` holds on any process (all of them get the same answer)."""
    if session.world_size == 1:
        return flag
    value = torch.tensor(float(flag), device=session.device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())
