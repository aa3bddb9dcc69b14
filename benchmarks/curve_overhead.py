"""What recording learning curves costs a cohort's training (``curve_every``).

    OMP_NUM_THREADS=2 python benchmarks/curve_overhead.py --json out.json

K students (the fair test's methods in turn, pure protocol, ``gradient_ratio=1``; resnet20
teacher with random weights, resnet8 students, CIFAR-100 batches of 128) train ``--steps``
steps with ``curve_every`` 0 and ``--curve-every``, alternately, ``--repeats`` times each;
the overhead is the ratio of the fastest of each, minus 1 (on a shared machine the slow
repeats are the ones another process delayed), and each repeat's own ratio is reported
too. The weights reached are checked to be the same with and without curves.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from common import fair_cohort, write_result
from perceptcoh.engine import prepare_cohort, train_cohort_epoch
from perceptcoh.engine.loop import optimiser_step, teacher_forward, training_batch
from perceptcoh.models import build_model


def step_costs(args: argparse.Namespace) -> dict:
    """Median seconds of a cohort's step without and with a curve point for every student."""
    sessions = prepare_cohort(fair_cohort(args.students, args.data_root, batch_size=128),
                              teacher=build_model("resnet20", 100))
    lead = sessions[0]
    generator = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {"plain": [], "measured": []}
    for repeat in range(2 * args.step_repeats + 2):
        measured = repeat % 2 == 1
        indices = torch.randint(len(lead.train_set), (128,), generator=generator)
        inputs, labels = training_batch(lead, indices, generator)
        outputs = teacher_forward(lead, lead.teacher, inputs)
        start = time.perf_counter()
        for session in sessions:
            optimiser_step(session, inputs, labels, *outputs, indices=indices,
                           curve=[] if measured else None)
        if repeat >= 2:  # the first two warm up
            times["measured" if measured else "plain"].append(time.perf_counter() - start)
    plain, measured = (statistics.median(times[name]) for name in ("plain", "measured"))
    return {"plain_seconds": plain, "measured_seconds": measured,
            "overhead_at_curve_every": (measured - plain) / (args.curve_every * plain)}


def run(args: argparse.Namespace, curve_every: int) -> tuple[float, list[dict]]:
    """Seconds of ``--steps`` steps after one warm-up step, and the final weights."""
    torch.manual_seed(0)
    sessions = prepare_cohort(fair_cohort(args.students, args.data_root, batch_size=128,
                                          curve_every=curve_every),
                              teacher=build_model("resnet20", 100))
    train_cohort_epoch(sessions, 0, max_steps=1)
    seconds = train_cohort_epoch(sessions, 1, max_steps=args.steps)[0]["seconds"]
    return seconds, [s.student.state_dict() for s in sessions]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=7)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--curve-every", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--step-repeats", type=int, default=20)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    times: dict[str, list[float]] = {"without": [], "with": []}
    weights = {}
    for _ in range(args.repeats):
        for name, every in (("without", 0), ("with", args.curve_every)):
            seconds, weights[name] = run(args, every)
            times[name].append(seconds)
            print(name, f"{seconds:.2f} s", file=sys.stderr)
    steps = step_costs(args)
    print(f"a cohort step: {steps['plain_seconds']:.3f} s plain, {steps['measured_seconds']:.3f}"
          f" s measured: overhead {100 * steps['overhead_at_curve_every']:+.2f}% at a point "
          f"every {args.curve_every} steps")
    same = all(torch.equal(a[key], b[key])
               for a, b in zip(weights["without"], weights["with"]) for key in a)
    overhead = min(times["with"]) / min(times["without"]) - 1
    paired = [w / o - 1 for w, o in zip(times["with"], times["without"])]
    print(f"{args.students} students, {args.steps} steps, a curve point every "
          f"{args.curve_every}: overhead {100 * overhead:+.1f}%, same weights: {same}")
    write_result(args.json, {"arguments": vars(args), "seconds": times, "overhead": overhead,
                             "paired_overheads": paired,
                             "median_paired_overhead": statistics.median(paired),
                             "step_costs": steps, "same_weights": same})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
