"""The laptop chapter's live re-runs under one floating-point order, saved as
results/laptop-float-order-LABEL.json: how far the scores of the same runs move when only
the order of the floating-point operations changes (thread count, oneDNN on or off). The
live check's tolerance has a floor that covers the largest such move
(perceptcoh.book.laptop.float_order_floor).

The runs are the chapter's CPU live set: PC and the two baselines with the best saved probe
(KD, FitNet), pure protocol, seed 0, one pass of the laptop scale
(results/cifar100-laptop-all.json); and the fair test's PC at its chosen setting, first final
seed (results/cifar100-laptop-fair-final.json). Each setting trains them afresh under
runs/float-order/LABEL (finished runs are reused: a second call only rewrites the file):

    PERCEPTCOH_DATA=../shared/data python scripts/float_order.py --threads 1
    PERCEPTCOH_DATA=../shared/data python scripts/float_order.py --threads 1 --no-onednn
    PERCEPTCOH_DATA=../shared/data python scripts/float_order.py --threads 2

(about 15 minutes each on this machine's two cores; two 1-thread settings can share them
with OMP_WAIT_POLICY=PASSIVE). Each writes its own file; the label says the setting.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from perceptcoh.book import laptop_fair
from perceptcoh.engine.experiments import comparison_plan, run_plan
from perceptcoh.engine.provenance import provenance

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("top1", "linear_probe_top1", "knn_top1", "perception_gap_r1")


def label_of(threads: int, onednn: bool) -> str:
    return f"threads{threads}" + ("" if onednn else "-no-onednn")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, required=True, help="torch CPU threads")
    parser.add_argument("--no-onednn", action="store_true",
                        help="torch.backends.mkldnn.enabled = False (no oneDNN kernels)")
    parser.add_argument("--methods", nargs="+", default=["pc", "kd", "fitnet"],
                        help="methods of the comparison's live set")
    args = parser.parse_args()
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    torch.backends.mkldnn.enabled = not args.no_onednn
    label = label_of(args.threads, not args.no_onednn)
    root = ROOT / "runs" / "float-order" / label
    final = json.loads((ROOT / "results" / "cifar100-laptop-fair-final.json").read_text())

    plan = comparison_plan("laptop", methods=args.methods, seeds=(0,), root=root)
    plan.runs = [run for run in plan.runs if run.key["protocol"] == "pure"]
    documents = {"comparison": run_plan(plan, None),
                 "fair": run_plan(laptop_fair.live_plan(final, root=root), None)}
    runs = [{"document": name, "key": entry["key"], "beta": entry["beta"],
             "collapsed": entry["collapsed"],
             "metrics": {m: entry["metrics"][m] for m in METRICS
                         if entry["metrics"].get(m) is not None},
             "provenance": entry["provenance"]}  # where and at which commit it trained
            for name, document in documents.items() for entry in document["runs"]]
    record = {"label": label, "threads": args.threads, "onednn": not args.no_onednn,
              "training_seconds": {name: document["wall_time_seconds"]["total"]
                                   for name, document in documents.items()},
              "runs": runs, "provenance": provenance(device="cpu")}
    path = ROOT / "results" / f"laptop-float-order-{label}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
