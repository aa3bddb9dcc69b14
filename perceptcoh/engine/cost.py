"""What a plan will cost before it runs: images, FLOPs, and the time at a measured rate.

    from perceptcoh.engine.cost import plan_cost
    print(format_cost(plan_cost(comparison_plan("full"))))

FLOPs count 2 per multiply-add, as ``torch.utils.flop_counter`` does, for one forward pass
of each architecture at its input size. A training step costs three forwards (the backward
pass is about twice the forward), a teacher forward during transfer one. What is already
finished (a ``results.json``) costs nothing; the rest is priced as :func:`run_plan` would
run it: teachers one by one, students in passes (:func:`perceptcoh.engine.experiments.cohorts`)
that share one teacher forward per batch.

The time estimate divides each part's FLOPs by a rate measured on the device with a few
training steps of that part's model (:func:`measured_rate`), so it reflects what the
device achieves on these networks, not its peak.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..models import build_model
from .checkpoint import RESULTS_NAME
from .config import TrainConfig, resolve_precision
from .distributed import resolve_device

__all__ = ["TRAIN_FORWARDS", "forward_flops", "measured_rate", "plan_cost", "format_cost"]

# A training step is a forward and a backward pass, about three forwards in all.
TRAIN_FORWARDS = 3

_SIZES = {"cifar10": (50_000, (3, 32, 32), 10), "cifar100": (50_000, (3, 32, 32), 100),
          "digits": (1_347, (1, 8, 8), 10)}  # training images, input shape, classes


@functools.lru_cache(maxsize=None)
def forward_flops(model: str, dataset: str, options: tuple = ()) -> int:
    """FLOPs of one forward pass of ``model`` (built for ``dataset``) on one image."""
    from torch.utils.flop_counter import FlopCounterMode

    _, shape, classes = _SIZES[dataset]
    network = build_model(model, classes, **dict(options)).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        network(torch.zeros(2, *shape))
    return counter.get_total_flops() // 2


def measured_rate(model: str, dataset: str, device: str = "auto", *, batch_size: int = 64,
                  steps: int = 3, training: bool = True, options: tuple = ()) -> float:
    """FLOP/s of ``model`` on ``device``: ``steps`` timed training steps (or forwards, with
    ``training=False``) at ``batch_size``, in the precision ``"auto"`` picks, after one
    warm-up step."""
    resolved = resolve_device(device, None)
    _, shape, classes = _SIZES[dataset]
    torch.manual_seed(0)
    network = build_model(model, classes, **dict(options)).to(
        resolved, memory_format=torch.channels_last)
    inputs = torch.randn(batch_size, *shape, device=resolved).contiguous(
        memory_format=torch.channels_last)
    labels = torch.randint(0, classes, (batch_size,), device=resolved)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01)
    precision = resolve_precision("auto", resolved)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    def step() -> None:
        with torch.autocast(resolved.type, dtype=dtype or torch.bfloat16,
                            enabled=dtype is not None):
            if not training:
                with torch.inference_mode():
                    network.eval()(inputs)
                return
            _, logits = network.train()(inputs)
            loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    if resolved.type == "cuda":
        torch.cuda.synchronize(resolved)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if resolved.type == "cuda":
        torch.cuda.synchronize(resolved)
    seconds = time.perf_counter() - start
    flops = forward_flops(model, dataset, options) * batch_size * steps
    return flops * (TRAIN_FORWARDS if training else 1) / seconds


def _images(config: TrainConfig) -> int:
    """Training images ``config``'s run processes, over all its epochs."""
    train_images = _SIZES[config.dataset][0] - (config.validation_split or 0)
    if config.train_subset is not None:
        train_images = min(train_images, config.train_subset)
    return config.epochs * (train_images // config.batch_size) * config.batch_size


def _finished(config: TrainConfig) -> bool:
    return (Path(config.output_dir) / RESULTS_NAME).exists()


def plan_cost(plan, *, device: str = "auto", cohort_size: int | None = None,
              calibrate: bool = True) -> dict:
    """Images, FLOPs and estimated seconds of what is left of ``plan`` on ``device``.

    Returns ``parts`` (one row per teacher and per pass of students: what it trains, its
    images, FLOPs and, with ``calibrate``, seconds at the rate measured for its models),
    and the totals. Without ``calibrate`` nothing is run and no time is estimated.
    """
    from .experiments import cohorts

    parts = []
    rates: dict[tuple, float] = {}

    def seconds(model: str, config: TrainConfig, flops: float, training: bool) -> float | None:
        if not calibrate:
            return None
        options = tuple(sorted(config.model_options.items()))
        key = (model, config.dataset, options, training)
        if key not in rates:
            rates[key] = measured_rate(model, config.dataset, device, training=training,
                                       options=options)
        return flops / rates[key]

    for name, config in plan.teachers.items():
        if _finished(config):
            continue
        images = _images(config)
        flops = TRAIN_FORWARDS * images * forward_flops(config.model, config.dataset)
        parts.append({"what": f"teacher {name}", "students": 0, "images": images,
                      "flops": flops, "seconds": seconds(config.model, config, flops, True)})
    unique = {planned.config.output_dir: planned.config for planned in plan.runs}
    waiting = [config for config in unique.values() if not _finished(config)]
    for cohort in cohorts(waiting, cohort_size):
        lead = cohort[0]
        images = max(_images(config) for config in cohort)
        flops, time_needed = 0.0, 0.0
        teacher = next((c.teacher for c in cohort if c.method != "ce"), None)
        if teacher is not None:
            teacher_flops = images * forward_flops(teacher, lead.dataset)
            flops += teacher_flops
            time_needed += seconds(teacher, lead, teacher_flops, False) or 0.0
        for config in cohort:
            options = tuple(sorted(config.model_options.items()))
            student_flops = TRAIN_FORWARDS * _images(config) * forward_flops(
                config.model, config.dataset, options)
            flops += student_flops
            time_needed += seconds(config.model, config, student_flops, True) or 0.0
        parts.append({"what": f"{len(cohort)} students ({lead.dataset}, teacher {teacher})",
                      "students": len(cohort), "images": images, "flops": flops,
                      "seconds": time_needed if calibrate else None})
    total_seconds = sum(part["seconds"] for part in parts) if calibrate else None
    return {"plan": plan.name, "scale": plan.scale,
            "device": str(resolve_device(device, None)), "parts": parts,
            "images": sum(part["images"] for part in parts),
            "flops": sum(part["flops"] for part in parts), "seconds": total_seconds}


def format_cost(cost: dict) -> str:
    """A plain-text table of :func:`plan_cost`'s result."""
    lines = [f"{cost['plan']} ({cost['scale']}) on {cost['device']}: what is left to train",
             f"{'part':52} {'images':>12} {'PFLOP':>9} {'est. min':>9}"]
    for part in cost["parts"]:
        minutes = "-" if part["seconds"] is None else f"{part['seconds'] / 60:9.1f}"
        lines.append(f"{part['what'][:52]:52} {part['images']:12,d} "
                     f"{part['flops'] / 1e15:9.3f} {minutes:>9}")
    minutes = "-" if cost["seconds"] is None else f"{cost['seconds'] / 60:9.1f}"
    lines.append(f"{'total':52} {cost['images']:12,d} {cost['flops'] / 1e15:9.3f} "
                 f"{minutes:>9}")
    return "\n".join(lines)
