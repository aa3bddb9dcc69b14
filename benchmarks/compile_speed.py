"""A cohort of students in one pass, eager against ``--compile`` (``torch.compile`` of the
student and teacher models), on CIFAR-100 batches.

    OMP_NUM_THREADS=2 python benchmarks/compile_speed.py --students 4 --json out.json

K students (the fair test's methods in turn, pure protocol, ``gradient_ratio=1``, resnet20
teacher with random weights, resnet8 students) take ``--warmup-steps`` untimed steps (where
compilation happens; their seconds are reported as ``warmup_seconds``), then ``--steps``
timed steps. Each mode is run twice from the same seeds, and ``repeatable`` says whether
the two runs end with bit-identical weights (what a live re-run of a saved run needs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from common import fair_cohort, write_result
from perceptcoh.engine import prepare_cohort, train_cohort_epoch
from perceptcoh.models import build_model


def measure(args: argparse.Namespace, compile_models: bool) -> dict:
    """Warm-up seconds, timed seconds and the final weights of one cohort."""
    torch.manual_seed(0)
    teacher = build_model("resnet20", 100)
    sessions = prepare_cohort(fair_cohort(args.students, args.data_root,
                                           batch_size=args.batch_size,
                                           compile=compile_models), teacher=teacher)
    start = time.perf_counter()
    train_cohort_epoch(sessions, 0, max_steps=args.warmup_steps)
    warmup = time.perf_counter() - start
    seconds = train_cohort_epoch(sessions, 1, max_steps=args.steps)[0]["seconds"]
    weights = [{k: v.clone() for k, v in s.student.state_dict().items()} for s in sessions]
    return {"warmup_seconds": warmup, "seconds": seconds, "weights": weights}


def same(first: list[dict], second: list[dict]) -> bool:
    return all(torch.equal(a[key], b[key]) for a, b in zip(first, second) for key in a)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    rows = {}
    for name, compile_models in (("eager", False), ("compile", True)):
        first, second = measure(args, compile_models), measure(args, compile_models)
        images = args.students * args.steps * args.batch_size
        rows[name] = {
            "warmup_seconds": [first["warmup_seconds"], second["warmup_seconds"]],
            "seconds": [first["seconds"], second["seconds"]],
            "ms_per_student_step": 1000 * min(first["seconds"], second["seconds"])
            / (args.students * args.steps),
            "student_images_per_second": images / min(first["seconds"], second["seconds"]),
            "repeatable": same(first["weights"], second["weights"]),
        }
        print(name, json.dumps(rows[name]), file=sys.stderr)
    speedup = rows["eager"]["ms_per_student_step"] / rows["compile"]["ms_per_student_step"]
    print(f"{args.students} students, batch {args.batch_size}, {torch.get_num_threads()} "
          f"threads: compile / eager speed {speedup:.2f}x")
    write_result(args.json, {"arguments": vars(args), "results": rows, "speedup": speedup})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
