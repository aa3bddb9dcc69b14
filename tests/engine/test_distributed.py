"""Given a process group, the PC loss ranks over the global batch: 2 CPU processes with gloo.
Without one it makes no collective call, even where a process group exists."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from distributed_workers import (BATCH, WORLD_SIZE, crd, crd_batches, crd_worker, inputs,
                                 worker)
from perceptcoh import PerceptionCoherenceLoss


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
