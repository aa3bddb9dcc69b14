"""Worker processes of the distributed tests (tests/engine/test_distributed.py and
tests/engine/test_train.py). A spawned worker is pickled by its module's name and imported
again in the child: it lives in this module, importable from ``tests/`` (pyproject's pytest
``pythonpath``), because a test module collected with ``--import-mode=importlib`` has a name
(``tests.engine.test_distributed``) that the child cannot import where the repository root is
not on ``sys.path`` (the ``pytest`` script, as CI runs it)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from perceptcoh import CRD, PerceptionCoherenceLoss
from perceptcoh.engine import TrainConfig, run

WORLD_SIZE = 2
BATCH = 12


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(BATCH, 3, generator=generator), torch.randn(BATCH, 8, generator=generator)


def worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD_SIZE)
    try:
        student, teacher = inputs()
        local = slice(rank * BATCH // WORLD_SIZE, (rank + 1) * BATCH // WORLD_SIZE)
        student_local = student[local].clone().requires_grad_(True)
        value = PerceptionCoherenceLoss(tau=0.2, process_group=dist.group.WORLD)(student_local, teacher[local])
        value.backward()
        # The default ranks the local batch alone: no collective, although a group exists.
        local_only = PerceptionCoherenceLoss(tau=0.2)(student[local], teacher[local])
        torch.save({"value": value.detach(), "grad": student_local.grad, "local_only": local_only},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        # Every process reaches this point before any tears gloo down.
        dist.barrier()
        dist.destroy_process_group()
    # The results are saved: leave without the interpreter's teardown, where a thread of the
    # torch.distributed stack sometimes ended the process with "terminate called without an
    # active exception" (SIGABRT) after its work was done, failing about 1 run in 10.
    os._exit(0)


CRD_STEPS = 3
CRD_DATASET = 40


def crd_batches() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``CRD_STEPS`` global batches: student and teacher features, distinct dataset positions."""
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(BATCH, 3, generator=generator, dtype=torch.float64),
             torch.randn(BATCH, 5, generator=generator, dtype=torch.float64),
             torch.randperm(CRD_DATASET, generator=generator)[:BATCH])
            for _ in range(CRD_STEPS)]


def crd(process_group=None):
    torch.manual_seed(0)  # the same heads and banks on every process
    return CRD(student_dim=3, teacher_dim=5, dataset_size=CRD_DATASET, feat_dim=4, nce_k=6,
               process_group=process_group).double()


def crd_worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD_SIZE)
    try:
        loss = crd(dist.group.WORLD)
        local = slice(rank * BATCH // WORLD_SIZE, (rank + 1) * BATCH // WORLD_SIZE)
        negatives = loss.negatives(BATCH // WORLD_SIZE, torch.device("cpu"), rank)
        for student, teacher, indices in crd_batches():
            loss(student[local], teacher[local], indices[local])
        torch.save({"state": loss.state_dict(), "negatives": negatives},
                   os.path.join(out_dir, f"crd{rank}.pt"))
    finally:
        dist.barrier()
        dist.destroy_process_group()
    os._exit(0)  # as worker() does


def train_worker(rank: int, port: int, config: TrainConfig, out: str) -> None:
    """One of two torchrun-like processes training ``config`` (test_train.py); saves its
    history as ``history<rank>.pt`` in ``out``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE="2")
    torch.set_num_threads(1)
    result = run(config)
    torch.save(result["history"], os.path.join(out, f"history{rank}.pt"))
