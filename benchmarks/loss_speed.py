"""Forward+backward time and peak memory of PerceptionCoherenceLoss (or RKD, ``--loss rkd``)
against a naive (B, B, B) form and, with ``--before``, an earlier version of the library.

    python benchmarks/loss_speed.py                      # CPU, and CUDA when present
    python benchmarks/loss_speed.py --batch-sizes 64 128 --devices cpu --json out.json
    git worktree add /tmp/before <commit>      # an earlier version, for a before/after table
    python benchmarks/loss_speed.py --dtypes float32 float64 --no-naive --before /tmp/before

With ``--before CHECKOUT`` every row is also measured with the library of that checkout
(its folder first on the path), alternating with this one, so that both see the same
machine load.

Each (implementation, batch size, device) runs in a fresh subprocess, so that its peak
memory is its own: on a CPU the rise of the process's peak resident set over its value
just before the measured calls, on CUDA the rise of ``torch.cuda.max_memory_allocated``.
Times are medians over repeated forward+backward calls after a warm-up.

The naive form is the loss written the obvious way with autograd: one broadcast builds
all ``B^3`` comparisons at once and autograd keeps them for the backward pass. It is
skipped at the batch sizes whose ``(B, B, B)`` tensors would not fit (:func:`naive_fits`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

from perceptcoh import PerceptionCoherenceLoss
from perceptcoh.dissimilarity import pairwise
from perceptcoh.ranking import exact_ranks, row_scale

STUDENT_DIM, TEACHER_DIM, TAU = 64, 256, 0.1
# The naive form keeps about five float32 (B, B, B) tensors alive; skip it where that
# would not fit in host memory.
NAIVE_CPU_MAX_BATCH = 512
NAIVE_LIVE_CUBES = 6  # five, and a margin for the allocator


def naive_fits(batch: int, device: str, dtype: str) -> bool:
    """Whether the naive form's (B, B, B) tensors fit the device: on a CPU up to
    ``NAIVE_CPU_MAX_BATCH``; on a GPU within 80% of its free memory (B = 1024 needs about
    20 GB in float32, more than a T4's 15 GB)."""
    if device != "cuda":
        return batch <= NAIVE_CPU_MAX_BATCH
    needed = NAIVE_LIVE_CUBES * batch**3 * torch.empty((), dtype=getattr(torch, dtype)).element_size()
    free, _ = torch.cuda.mem_get_info()
    return needed <= 0.8 * free


def naive_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """SPEC section 5 in one broadcast: all B^3 sigmoids at once, gradient by autograd."""
    batch = student.shape[0]
    self_index = torch.arange(batch, device=student.device)
    with torch.no_grad():
        target = exact_ranks(pairwise(teacher, teacher, "euclidean"), self_index)
    distances = pairwise(student, student, "euclidean")
    scale = row_scale(distances, self_index)
    comparisons = (distances[:, :, None] - distances[:, None, :]) / (TAU * scale[:, None, None])
    eye = torch.eye(batch, dtype=torch.bool, device=student.device)
    counted = ~eye[:, None, :] & ~eye[None, :, :]  # k != i and k != j
    soft = (1 + (torch.sigmoid(comparisons) * counted).sum(dim=-1)) / (batch - 1)
    return (soft - target)[~eye].square().mean()


def build(loss: str) -> torch.nn.Module:
    """The loss timed: PC, or RKD (distance and angle terms, RepDistiller's weights)."""
    if loss == "rkd":
        from perceptcoh import RelationalKD

        return RelationalKD(check_finite=False)
    return PerceptionCoherenceLoss(tau=TAU, check_finite=False)


def measure(implementation: str, batch: int, device: str, repeats: int,
            dtype: str = "float32", loss_name: str = "pc") -> dict:
    generator = torch.Generator().manual_seed(0)
    kind = getattr(torch, dtype)
    student = torch.randn(batch, STUDENT_DIM, generator=generator, dtype=kind)
    student = student.to(device).requires_grad_(True)
    teacher = torch.randn(batch, TEACHER_DIM, generator=generator, dtype=kind).to(device)
    loss = build(loss_name)
    run = (lambda: loss(student, teacher)) if implementation == "ours" else (
        lambda: naive_loss(student, teacher)
    )

    def step() -> None:
        student.grad = None
        run().backward()

    def synchronize() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    if device == "cuda":
        step()  # first call: kernels, handles
        synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        step()
    times = []
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        step()
        synchronize()
        times.append(time.perf_counter() - start)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - baseline
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    return {"seconds": statistics.median(times), "peak_bytes": peak}


def run_in_subprocess(implementation: str, batch: int, device: str, repeats: int,
                      dtype: str, library: str | None = None, loss_name: str = "pc") -> dict:
    """One measurement in a fresh process; ``library``: a checkout whose ``perceptcoh``
    is imported instead of this one's."""
    command = [sys.executable, __file__, "--worker", implementation, str(batch), device,
               "--repeats", str(repeats), "--dtypes", dtype, "--loss", loss_name]
    environment = dict(os.environ)
    if library is not None:
        environment["PYTHONPATH"] = os.pathsep.join(
            [library, *filter(None, [environment.get("PYTHONPATH")])])
    completed = subprocess.run(command, capture_output=True, text=True, env=environment)
    if completed.returncode != 0:
        raise RuntimeError(f"{implementation} B={batch} {dtype} on {device} failed:\n"
                           f"{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _commit(checkout: str | None) -> str | None:
    if checkout is None:
        return None
    completed = subprocess.run(["git", "-C", checkout, "rev-parse", "HEAD"],
                               capture_output=True, text=True)
    return completed.stdout.strip() or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    parser.add_argument("--devices", nargs="+", default=None,
                        help="devices to measure (default: cpu, plus cuda when available)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per measurement (default: 20 on CUDA, 3 on CPU)")
    parser.add_argument("--dtypes", nargs="+", default=["float32"],
                        choices=["float32", "float64"], help="feature dtypes to measure")
    parser.add_argument("--loss", choices=["pc", "rkd"], default="pc",
                        help="the loss timed (the naive form exists for pc only)")
    parser.add_argument("--no-naive", action="store_true",
                        help="measure only the library's loss, not the naive form")
    parser.add_argument("--before", default=None, metavar="CHECKOUT",
                        help="a checkout of an earlier version: measure its loss too, "
                        "alternating with this one, and print both")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--worker", nargs=3, metavar=("IMPL", "BATCH", "DEVICE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        implementation, batch, device = args.worker
        print(json.dumps(measure(implementation, int(batch), device, args.repeats,
                                 args.dtypes[0], args.loss)))
        return
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = []
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name()}" if "cuda" in devices else ""))
    header = (f"{'device':6} {'dtype':7} {'B':>5} {'ours ms':>9} {'naive ms':>9} "
              f"{'ours MB':>8} {'naive MB':>9}")
    if args.before:
        header += f" {'before ms':>9} {'before MB':>9} {'speedup':>8}"
    print(header)
    mb = lambda b: b / 2**20
    for device in devices:
        repeats = args.repeats or (20 if device == "cuda" else 3)
        for dtype in args.dtypes:
            for batch in args.batch_sizes:
                ours = run_in_subprocess("ours", batch, device, repeats, dtype,
                                         loss_name=args.loss)
                naive = None
                if args.loss == "pc" and not args.no_naive and naive_fits(batch, device, dtype):
                    naive = run_in_subprocess("naive", batch, device, repeats, dtype)
                before = None
                if args.before:
                    before = run_in_subprocess("ours", batch, device, repeats, dtype,
                                               library=args.before, loss_name=args.loss)
                rows.append({"device": device, "dtype": dtype, "batch": batch, "ours": ours,
                             "naive": naive, "before": before})
                line = (f"{device:6} {dtype:7} {batch:5d} {ours['seconds'] * 1e3:9.2f} "
                        + (f"{naive['seconds'] * 1e3:9.2f} " if naive else f"{'-':>9} ")
                        + f"{mb(ours['peak_bytes']):8.1f} "
                        + (f"{mb(naive['peak_bytes']):9.1f}" if naive else f"{'-':>9}"))
                if before:
                    line += (f" {before['seconds'] * 1e3:9.2f} {mb(before['peak_bytes']):9.1f} "
                             f"{before['seconds'] / ours['seconds']:8.2f}")
                print(line, flush=True)
    if args.json:
        from perceptcoh.engine.provenance import provenance

        with open(args.json, "w") as handle:
            json.dump({"provenance": provenance(), "loss": args.loss,
                       "student_dim": STUDENT_DIM,
                       "teacher_dim": TEACHER_DIM, "tau": TAU, "seed": 0,
                       "threads": torch.get_num_threads(), "before": args.before,
                       "before_commit": _commit(args.before), "rows": rows},
                      handle, indent=1)


if __name__ == "__main__":
    main()
