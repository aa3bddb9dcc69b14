"""How much autocast moves the teacher's ranks: the shipped resnet20 teacher's features on
CIFAR-100 test images in float32, against the same features under bf16 and fp16 autocast
with the whole forward in the autocast precision, and with the last stage and classifier in
float32 (:func:`perceptcoh.models.base.float32_last_stage`, what
:func:`perceptcoh.engine.loop.teacher_forward` gives on a GPU), ranked as the PC loss ranks
them, per batch.

    OMP_NUM_THREADS=1 python benchmarks/teacher_ranks.py --json results/teacher-ranks-autocast.json

For each batch size ``B`` the first ``--images`` test images (a seeded shuffle) are cut into
batches. In every batch and every anchor ``i`` it counts the pairs ``{j, k}`` (``j, k != i``)
whose order ``sign(D_ij - D_ik)`` differs between the float32 and the autocast features (a
tie on one side and not the other counts as a change), as a fraction of the row's
``(B-1)(B-2)/2`` pairs; it reports the mean and the largest fraction over rows, the share of
rows above 1%, and the perception gap (``r = 1``) between the two rank matrices. Autocast
runs on the CPU here; a GPU's bf16/fp16 convolutions round alike but not bit for bit.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time

import torch

from perceptcoh import perception, perception_gap
from perceptcoh.dissimilarity import pairwise
from perceptcoh.engine.checkpoint import model_from_checkpoint
from perceptcoh.engine.data import load_dataset, normalize
from perceptcoh.engine.files import seeded_prefix
from perceptcoh.engine.provenance import provenance
from perceptcoh.engine.shipped import shipped_teacher
from perceptcoh.models.base import float32_last_stage

THRESHOLD = 0.01  # the share of a row's pairs above which the teacher's last stage goes fp32
VARIANTS = (("bf16", torch.bfloat16, False), ("fp16", torch.float16, False),
            ("bf16, last stage fp32", torch.bfloat16, True),
            ("fp16, last stage fp32", torch.float16, True))


def features(model: torch.nn.Module, images: torch.Tensor, mean, std, dtype: torch.dtype | None,
             chunk: int = 128) -> torch.Tensor:
    """Penultimate features in float32, computed under ``dtype`` autocast (``None``: off)."""
    parts = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype or torch.bfloat16,
                                                enabled=dtype is not None):
        for start in range(0, len(images), chunk):
            inputs = normalize(images[start : start + chunk], mean, std, channels_last=True)
            parts.append(model(inputs)[0].float())
    return torch.cat(parts)


def changed_pairs(reference: torch.Tensor, rounded: torch.Tensor) -> torch.Tensor:
    """Per anchor, the fraction of pairs ``{j, k}`` of other points whose order differs."""
    b = reference.shape[0]
    fractions = torch.empty(b, dtype=torch.float64)
    distances = [pairwise(x, x, "euclidean") for x in (reference, rounded)]
    upper = torch.ones(b, b, dtype=torch.bool).triu(1)
    for anchor in range(b):
        orders = [torch.sign(d[anchor, :, None] - d[anchor, None, :]) for d in distances]
        differ = (orders[0] != orders[1]) & upper
        differ[anchor, :] = False
        differ[:, anchor] = False
        fractions[anchor] = differ.sum() / ((b - 1) * (b - 2) / 2)
    return fractions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default="cifar100-resnet20")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128, 512])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the results here, with provenance")
    args = parser.parse_args()

    started = time.perf_counter()
    model, _ = model_from_checkpoint(shipped_teacher(args.teacher))
    model = model.to(memory_format=torch.channels_last)
    test_set = load_dataset("cifar100", "test", args.data_root)
    chosen = seeded_prefix(len(test_set), args.images, args.seed)
    images = test_set.images[chosen]
    mean = torch.tensor(test_set.mean, dtype=torch.float32)
    std = torch.tensor(test_set.std, dtype=torch.float32)
    reference = features(model, images, mean, std, None)
    rows = []
    for name, dtype, last_stage_fp32 in VARIANTS:
        variant = float32_last_stage(copy.deepcopy(model)) if last_stage_fp32 else model
        rounded = features(variant, images, mean, std, dtype)
        relative = float(((rounded - reference).norm(dim=1) / reference.norm(dim=1)).mean())
        for batch in args.batch_sizes:
            fractions, gaps = [], []
            for start in range(0, args.images - batch + 1, batch):
                part = slice(start, start + batch)
                fractions.append(changed_pairs(reference[part], rounded[part]))
                gaps.append(float(perception_gap(rounded[part], reference[part])))
            fractions = torch.cat(fractions)
            row = {"autocast": name, "batch_size": batch, "batches": len(gaps),
                   "mean_changed_pairs": float(fractions.mean()),
                   "max_changed_pairs": float(fractions.max()),
                   "rows_above_threshold": float((fractions > THRESHOLD).double().mean()),
                   "perception_gap": sum(gaps) / len(gaps),
                   "feature_relative_error": relative}
            rows.append(row)
            print(f"{name} B={batch:4d} ({len(gaps):2d} batches): pairs that change order per "
                  f"row: mean {row['mean_changed_pairs']:.4%}, max "
                  f"{row['max_changed_pairs']:.4%}; rows above {THRESHOLD:.0%}: "
                  f"{row['rows_above_threshold']:.2%}; perception gap "
                  f"{row['perception_gap']:.5f}; feature error {relative:.2e}", flush=True)
    assert torch.equal(perception(reference[:64]), perception(reference[:64].clone()))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"teacher": args.teacher, "images": args.images, "seed": args.seed,
                       "threshold": THRESHOLD, "results": rows,
                       "seconds": time.perf_counter() - started, "provenance": provenance()},
                      handle, indent=2)
            handle.write("\n")


if __name__ == "__main__":
    sys.exit(main())
