"""Contrastive representation distillation (Tian, Krishnan & Isola, ICLR 2020), as in
RepDistiller's ``CRDLoss``: embedding heads, a memory bank over the training set, and NCE
with sampled negatives."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_features, check_positive, check_same_batch
from .common import linear

__all__ = ["CRD"]


class CRD(nn.Module):
    """Contrast each student embedding with the teacher embeddings of the same image and of
    ``nce_k`` other training images, and the other way round.

    Both sides are embedded by a linear head and normalised, ``u_i = h_s(s_i) / |h_s(s_i)|``
    and ``v_i = h_t(t_i) / |h_t(t_i)|``. Two memory banks hold one unit vector per training
    image, ``M^s`` (student side) and ``M^t`` (teacher side). For sample ``i`` of the batch,
    at dataset position ``y_i``, with ``n_i`` = ``y_i`` followed by ``nce_k`` positions
    drawn uniformly from the training set, and ``T = nce_t``::

        o^s_ik = exp(<M^t_{n_ik}, u_i> / T) / Z_s      (student against teacher memories)
        o^t_ik = exp(<M^s_{n_ik}, v_i> / T) / Z_t      (teacher against student memories)
        h(o)   = - log(o_0 / (o_0 + K/N)) - sum_{k >= 1} log((K/N) / (o_k + K/N))
        L      = 1/B * sum_i [h(o^s_i) + h(o^t_i)]

    where ``N`` is the number of training images, ``K = nce_k``, and ``Z_s``, ``Z_t`` are
    set once, on the first call, to ``N`` times the mean of that call's ``exp(<.,.>/T)``
    (RepDistiller's normalisation of the NCE probabilities). After each call the memories
    at the batch's positions move towards the new embeddings and are renormalised:
    ``M^s_{y_i} <- normalize(m M^s_{y_i} + (1 - m) u_i)`` with ``m = nce_m``, the same for
    ``M^t``. Memories are read before they are updated, and without gradient.

    Differences from RepDistiller: its default ``mode="exact"`` draws the negatives from
    other classes, which uses the labels; here they are drawn uniformly from the whole
    training set, so the loss stays free of labels, like every other transfer loss here.
    The negatives of call ``c`` come from a generator seeded with ``(seed, c)``, so a
    resumed run draws the same ones (the call count is part of the state dict).

    Under DDP (``process_group`` given), each process draws its own negatives (seeded with
    ``(seed, c, rank)``; rank 0 draws those of one process), and every process applies the
    same memory update, that of the global batch: the batch's positions and embeddings are
    gathered from every process before the update, so the banks stay equal on every process
    and equal those of one process trained on the concatenated batches. ``Z_s`` and ``Z_t``
    are the mean over processes of each one's first-call estimate. The banks must then not
    be broadcast by DDP (``broadcast_buffers=False``), which would replace every process's
    banks with rank 0's before each forward pass.

    Args:
        student_dim, teacher_dim: ``q`` and ``p``, the widths of the two sides' features.
        dataset_size: ``N``, the number of training images (the memory banks' rows).
        feat_dim: width of the embeddings (RepDistiller: 128).
        nce_k: negatives per sample (RepDistiller: 16384).
        nce_t: temperature ``T`` (RepDistiller: 0.07).
        nce_m: momentum ``m`` of the memory update (RepDistiller: 0.5).
        seed: seed of the memory banks' initialisation and of the negatives.
        check_finite: check the inputs for NaN/Inf.
        process_group: ``None`` (default): no collective call. A ``torch.distributed``
            process group: the memory update of the group's global batch, as above. Every
            process must hold the same number of samples.

    ``forward(student_features, teacher_features, indices)`` takes ``(B, q)`` and ``(B, p)``
    floating tensors and the ``(B,)`` dataset positions of the batch (distinct integers in
    ``[0, N)``) and returns a 0-dim tensor. Learnable: ``embed_student`` and
    ``embed_teacher``. The memory banks are buffers: they are saved with the state dict.
    """

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        dataset_size: int,
        feat_dim: int = 128,
        nce_k: int = 16384,
        nce_t: float = 0.07,
        nce_m: float = 0.5,
        seed: int = 0,
        check_finite: bool = True,
        process_group: torch.distributed.ProcessGroup | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("student_dim", student_dim), ("teacher_dim", teacher_dim),
                            ("dataset_size", dataset_size), ("feat_dim", feat_dim),
                            ("nce_k", nce_k)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.student_dim, self.teacher_dim = student_dim, teacher_dim
        self.dataset_size, self.feat_dim, self.nce_k = dataset_size, feat_dim, nce_k
        self.nce_t = check_positive(nce_t, "nce_t")
        if isinstance(nce_m, bool) or not isinstance(nce_m, (int, float)) or not 0 <= nce_m < 1:
            raise ValueError(f"nce_m must be a number in [0, 1), got {nce_m!r}")
        self.nce_m = float(nce_m)
        self.seed = seed
        self.check_finite = bool(check_finite)
        if process_group is not None and not (
            torch.distributed.is_available()
            and isinstance(process_group, torch.distributed.ProcessGroup)
        ):
            raise TypeError(f"process_group must be None or a torch.distributed.ProcessGroup, "
                            f"got {type(process_group).__name__}")
        self.process_group = process_group
        self.embed_student = nn.Linear(student_dim, feat_dim)
        self.embed_teacher = nn.Linear(teacher_dim, feat_dim)
        # RepDistiller's initialisation: uniform in [-a, a] with a = 1 / sqrt(feat_dim / 3),
        # rows of about unit norm.
        bound = 1 / math.sqrt(feat_dim / 3)
        generator = torch.Generator().manual_seed(seed)
        for name in ("memory_student", "memory_teacher"):
            memory = torch.rand(dataset_size, feat_dim, generator=generator) * 2 * bound - bound
            self.register_buffer(name, memory)
        self.register_buffer("normalisers", torch.full((2,), -1.0))  # Z_s, Z_t; < 0: unset
        self.calls = 0

    def extra_repr(self) -> str:
        return (f"student_dim={self.student_dim}, teacher_dim={self.teacher_dim}, "
                f"dataset_size={self.dataset_size}, feat_dim={self.feat_dim}, "
                f"nce_k={self.nce_k}, nce_t={self.nce_t}, nce_m={self.nce_m}")

    def get_extra_state(self) -> dict:
        return {"calls": self.calls}

    def set_extra_state(self, state: dict) -> None:
        self.calls = int(state["calls"])

    def negatives(self, batch: int, device: torch.device, rank: int = 0) -> torch.Tensor:
        """The ``(batch, nce_k)`` positions this call contrasts with (uniform draws) on the
        process of rank ``rank``."""
        seed = self.seed * 1_000_003 + self.calls
        if rank:
            seed = int(np.random.SeedSequence([self.seed, self.calls, rank]).generate_state(1)[0])
        generator = torch.Generator(device=device).manual_seed(seed)
        return torch.randint(0, self.dataset_size, (batch, self.nce_k), device=device,
                             generator=generator)

    def forward(self, student_features: torch.Tensor, teacher_features: torch.Tensor,
                indices: torch.Tensor) -> torch.Tensor:
        check_features(student_features, "student_features", check_finite=self.check_finite)
        check_features(teacher_features, "teacher_features", check_finite=self.check_finite)
        check_same_batch(student_features, "student_features", teacher_features,
                         "teacher_features")
        if student_features.shape[1] != self.student_dim:
            raise ValueError(f"student_features must have student_dim={self.student_dim} "
                             f"features (columns), got {student_features.shape[1]}")
        if teacher_features.shape[1] != self.teacher_dim:
            raise ValueError(f"teacher_features must have teacher_dim={self.teacher_dim} "
                             f"features (columns), got {teacher_features.shape[1]}")
        if (not isinstance(indices, torch.Tensor) or indices.shape != student_features.shape[:1]
                or indices.dtype.is_floating_point or indices.dtype == torch.bool):
            raise ValueError(f"indices must be an integer tensor of shape "
                             f"({student_features.shape[0]},): the batch's dataset positions")
        device = student_features.device
        indices = indices.to(device=device, dtype=torch.int64)
        batch = indices.shape[0]
        group = self.process_group
        world_size = 1 if group is None else torch.distributed.get_world_size(group)
        rank = 0 if world_size == 1 else torch.distributed.get_rank(group)
        contrast = torch.cat([indices[:, None], self.negatives(batch, device, rank)], dim=1)
        first_call = self.calls == 0
        self.calls += 1
        with torch.autocast(device_type=device.type, enabled=False):
            wide = torch.float64 if torch.float64 in (
                student_features.dtype, teacher_features.dtype) else torch.float32
            student = F.normalize(linear(self.embed_student, student_features.to(wide)), dim=1)
            teacher = F.normalize(
                linear(self.embed_teacher, teacher_features.detach().to(wide)), dim=1)
            memory_student = self.memory_student.to(wide)
            memory_teacher = self.memory_teacher.to(wide)
            scores = torch.stack([
                _similarities(memory_teacher, contrast, student, self.nce_t),
                _similarities(memory_student, contrast, teacher, self.nce_t),
            ])  # (2, B, K + 1): student side, teacher side
            with torch.no_grad():  # Z from the first call, on the device: no host sync
                first = scores.detach().mean(dim=(1, 2)) * self.dataset_size
                if world_size > 1 and first_call:  # counted on the host: no device read
                    torch.distributed.all_reduce(first, group=group)
                    first = first / world_size
                self.normalisers.copy_(torch.where(self.normalisers < 0,
                                                   first.to(self.normalisers.dtype),
                                                   self.normalisers))
            probabilities = scores / self.normalisers.to(wide)[:, None, None]
            loss = _nce(probabilities, self.nce_k, self.dataset_size).sum() / batch
            with torch.no_grad():
                student, teacher = student.detach(), teacher.detach()
                if world_size > 1:
                    indices, student, teacher = _gather_batch(indices, student, teacher, group)
                self._update(self.memory_student, indices, student)
                self._update(self.memory_teacher, indices, teacher)
        return loss

    def _update(self, memory: torch.Tensor, indices: torch.Tensor, embeddings: torch.Tensor
                ) -> None:
        moved = memory[indices] * self.nce_m + embeddings.detach().to(memory.dtype) * (
            1 - self.nce_m)
        memory.index_copy_(0, indices, F.normalize(moved, dim=1))


def _gather_batch(indices: torch.Tensor, student: torch.Tensor, teacher: torch.Tensor,
                  group: torch.distributed.ProcessGroup
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The global batch's positions and both sides' embeddings, in rank order (two
    all-gathers; every process must hold the same number of samples)."""
    world_size = torch.distributed.get_world_size(group)
    embeddings = torch.cat([student, teacher], dim=1).contiguous()
    parts = [torch.empty_like(embeddings) for _ in range(world_size)]
    torch.distributed.all_gather(parts, embeddings, group=group)
    positions = [torch.empty_like(indices) for _ in range(world_size)]
    torch.distributed.all_gather(positions, indices.contiguous(), group=group)
    gathered = torch.cat(parts)
    width = student.shape[1]
    return torch.cat(positions), gathered[:, :width], gathered[:, width:]


def _similarities(memory: torch.Tensor, contrast: torch.Tensor, embeddings: torch.Tensor,
                  temperature: float) -> torch.Tensor:
    """``exp(<memory[contrast[i, k]], embeddings[i]> / T)``, ``(B, K + 1)``.

    Two ways to the same dot products, whichever holds the smaller intermediate: gather the
    ``(B, K + 1, D)`` memory rows and multiply (RepDistiller's way), or score every memory
    row at once, ``(B, N) = E M^T``, and pick the contrasted entries. The second reads the
    memory once in a dense matmul instead of copying ``B (K + 1)`` scattered rows: on two
    CPU cores at N = 50,000, B = 128, D = 128 it is 5x faster at K = 4,096 and 25x at
    K = 16,384 (values equal to rounding).
    """
    if memory.shape[0] <= contrast.shape[1] * memory.shape[1]:
        # A copy: the backward of the product reads the memory, updated in place after.
        dots = (embeddings @ memory.clone().T).gather(1, contrast)
    else:
        rows = memory[contrast]  # (B, K + 1, D), no gradient: memories are buffers
        dots = torch.bmm(rows, embeddings[:, :, None]).squeeze(2)
    return torch.exp(dots / temperature)


def _nce(probabilities: torch.Tensor, nce_k: int, dataset_size: int) -> torch.Tensor:
    """NCE's negative log-likelihood of each row: the first entry is the positive."""
    noise = nce_k / dataset_size  # K * P_n with P_n = 1 / N
    epsilon = 1e-7  # as RepDistiller's ContrastLoss
    positive = probabilities[..., 0]
    negative = probabilities[..., 1:]
    positive_term = torch.log(positive / (positive + noise + epsilon))
    negative_term = torch.log(noise / (negative + noise + epsilon)).sum(dim=-1)
    return -(positive_term + negative_term)

