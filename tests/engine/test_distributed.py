"""Given a process group, the PC loss ranks over the global batch: 2 CPU processes with gloo.
Without one it makes no collective call, even where a process group exists."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from perceptcoh import CRD, PerceptionCoherenceLoss

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


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_global_batch_loss_equals_single_process_loss(tmp_path):
    mp.spawn(worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    results = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]

    student, teacher = inputs()
    student.requires_grad_(True)
    single = PerceptionCoherenceLoss(tau=0.2)(student, teacher)
    single.backward()

    # The mean over processes is the global-batch loss ...
    mean_value = sum(result["value"] for result in results) / WORLD_SIZE
    torch.testing.assert_close(mean_value, single.detach())
    # ... and each process's local gradient, averaged by DDP (divided by the world size),
    # is the single-process gradient of its samples.
    local_grads = torch.cat([result["grad"] for result in results]) / WORLD_SIZE
    torch.testing.assert_close(local_grads, student.grad)
    # Ranking only within the local half would give a different loss:
    halves = [PerceptionCoherenceLoss(tau=0.2)(student[s].detach(), teacher[s])
              for s in (slice(0, BATCH // 2), slice(BATCH // 2, BATCH))]
    assert abs(float(sum(halves) / 2) - float(single.detach())) > 1e-3
    for rank, result in enumerate(results):
        torch.testing.assert_close(result["local_only"], halves[rank])


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


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_crd_banks_under_ddp_equal_one_process_on_the_concatenated_batches(tmp_path):
    """Each process gathers the global batch's positions and embeddings before the memory
    update: after a few steps every process holds the banks of one process trained on the
    concatenated batches, although each drew its own negatives."""
    mp.spawn(crd_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD_SIZE,
             join=True)
    results = [torch.load(tmp_path / f"crd{rank}.pt") for rank in range(WORLD_SIZE)]

    single = crd()
    initial = single.memory_student.clone()
    for student, teacher, indices in crd_batches():
        single(student, teacher, indices)
    for result in results:
        for name in ("memory_student", "memory_teacher"):
            torch.testing.assert_close(result["state"][name], getattr(single, name))
    assert not torch.equal(single.memory_student, initial)
    # Z is estimated from the negatives, which differ, but it is the same on every process.
    torch.testing.assert_close(results[0]["state"]["normalisers"],
                               results[1]["state"]["normalisers"])
    # Rank 0 draws the negatives one process would; every other rank draws its own.
    torch.testing.assert_close(results[0]["negatives"],
                               crd().negatives(BATCH // WORLD_SIZE, torch.device("cpu")))
    assert not torch.equal(results[0]["negatives"], results[1]["negatives"])
