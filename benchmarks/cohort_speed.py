"""Many students in one pass against the same students trained one after the other.

    python benchmarks/cohort_speed.py                        # K = 8, resnet20 -> resnet8, CPU
    python benchmarks/cohort_speed.py --students 8 --steps 8 --json out.json

K students (methods pc, kd, fitnet, rkd, pkt, sp, cc, ce in turn; CIFAR-100, the supervised
protocol, beta measured as in the book's plans) take ``--steps`` training steps each, on the same batches:

* ``one pass``: :func:`perceptcoh.engine.train_cohort_epoch`: per step one batch is drawn,
  augmented and run through the teacher once, then each student steps on it.
* ``separate``: :func:`perceptcoh.engine.train_epoch` for each student in turn, as K runs
  would: the batch, its augmentation and the teacher's forward are repeated K times.

The teacher's weights are random (a trained teacher costs the same time). Throughput is
student-images per second, ``K * steps * batch / seconds``, after ``--warmup-steps``
untimed steps per student.
"""

from __future__ import annotations

import argparse
import sys

import torch

from common import write_result
from perceptcoh.engine import TrainConfig, prepare_cohort, train_cohort_epoch, train_epoch
from perceptcoh.models import build_model

METHODS = ("pc", "kd", "fitnet", "rkd", "pkt", "sp", "cc", "ce")


def configs(args: argparse.Namespace) -> list[TrainConfig]:
    """The students, weighted as the book's plans weight them (``gradient_ratio=1``)."""
    methods = [METHODS[index % len(METHODS)] for index in range(args.students)]
    return [
        TrainConfig(dataset="cifar100", data_root=args.data_root, model=args.student,
                    teacher=args.teacher, method=method,
                    gradient_ratio=None if method == "ce" else 1.0,
                    batch_size=args.batch_size, epochs=1, seed=index, data_seed=0,
                    device=args.device, progress=False, output_dir=f"unused/{index}")
        for index, method in enumerate(methods)
    ]


def measure(args: argparse.Namespace, together: bool) -> float:
    """Seconds for ``--steps`` steps of every student."""
    torch.manual_seed(0)
    sessions = prepare_cohort(configs(args), teacher=build_model(args.teacher, 100))
    if together:
        train_cohort_epoch(sessions, 0, max_steps=args.warmup_steps)
        return train_cohort_epoch(sessions, 1, max_steps=args.steps)[0]["seconds"]
    seconds = 0.0
    for session in sessions:
        train_epoch(session, 0, max_steps=args.warmup_steps)
        seconds += train_epoch(session, 1, max_steps=args.steps)["seconds"]
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=8)
    parser.add_argument("--teacher", default="resnet20")
    parser.add_argument("--student", default="resnet8")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup-steps", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    student_images = args.students * args.steps * args.batch_size
    rows = {}
    for name, together in (("one pass", True), ("separate", False)):
        seconds = measure(args, together)
        rows[name] = {"seconds": seconds, "student_images_per_second": student_images / seconds}
        print(f"{name}: {rows[name]['student_images_per_second']:,.0f} student-images/s",
              file=sys.stderr)
    speedup = rows["one pass"]["student_images_per_second"] / rows["separate"][
        "student_images_per_second"]
    print(f"\n{args.students} students {args.teacher} -> {args.student}, CIFAR-100, batch "
          f"{args.batch_size}, {args.steps} steps, device {args.device}, "
          f"{torch.get_num_threads()} threads")
    for name, row in rows.items():
        print(f"{name:<10} {row['student_images_per_second']:>10,.0f} student-images/s "
              f"{row['seconds']:>8.2f} s")
    print(f"one pass / separate: {speedup:.2f}x")
    write_result(args.json, {"arguments": vars(args), "results": rows, "speedup": speedup})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
