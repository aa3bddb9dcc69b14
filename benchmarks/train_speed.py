"""Training throughput of a PC transfer step, resnet32x4 -> resnet8x4 on CIFAR-100: our loop
against the same training written the usual way, side by side.

    python benchmarks/train_speed.py                                  # one epoch, CUDA if present
    python benchmarks/train_speed.py --device cpu --steps 4 --batch-size 64 --json out.json

* ``ours``: :func:`perceptcoh.engine.train_epoch`: the training set resident on the device as
  uint8, one permutation per epoch, crops and flips as tensor ops on the batch, bf16
  autocast (CUDA only), channels_last, no host synchronisation inside the epoch.
* ``dataloader``: a torchvision pipeline as most training scripts have it: a dataset of
  PIL images (``torchvision.datasets.CIFAR100``'s ``__getitem__``, over the same pixels),
  ``RandomCrop(32, 4)``, ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize`` in
  ``DataLoader`` workers, fp32, contiguous tensors, and ``loss.item()`` every step.

Both compute the same loss (CE + PC on the penultimate features, teacher frozen) with the
same models and SGD. The teacher's weights are random: a trained teacher costs the same
time. Each pipeline runs ``--warmup-steps`` untimed steps, then ``--steps`` timed steps
(default: one epoch), with one device synchronisation at each end of the timed part.
Results are printed as a table and, with ``--json``, saved with provenance.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

from perceptcoh import PerceptionCoherenceLoss
from perceptcoh.engine.data import load_dataset
from perceptcoh.models import build_model
from perceptcoh.engine.provenance import provenance
from perceptcoh.engine import TrainConfig, prepare, train_epoch

TEACHER, STUDENT, BETA, TAU = "resnet32x4", "resnet8x4", 1.0, 0.1


def measure_ours(args: argparse.Namespace, device: torch.device) -> dict:
    config = TrainConfig(
        dataset="cifar100", data_root=args.data_root, model=STUDENT, teacher=TEACHER,
        method="pc", beta=BETA,
        loss_options={"tau": TAU}, batch_size=args.batch_size, lr=0.1, device=str(device),
        precision="auto", channels_last=True, compile=args.compile, progress=False, epochs=1,
        output_dir="unused",
    )
    torch.manual_seed(0)
    session = prepare(config, teacher=build_model(TEACHER, 100))
    if args.warmup_steps:
        train_epoch(session, 0, max_steps=args.warmup_steps)
    stats = train_epoch(session, 1, max_steps=args.steps)
    return {"images": stats["images"], "seconds": stats["seconds"],
            "steps": stats["images"] // args.batch_size, "loss": stats["loss"],
            "precision": session.precision, "channels_last": True}


class PILImages(torch.utils.data.Dataset):
    """torchvision.datasets.CIFAR100's __getitem__ over an (N, H, W, C) uint8 array."""

    def __init__(self, images, labels, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def measure_dataloader(args: argparse.Namespace, device: torch.device) -> dict:
    from torchvision import transforms

    train = load_dataset("cifar100", "train", args.data_root)
    transform = transforms.Compose([
        transforms.RandomCrop(32, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(train.mean, train.std),
    ])
    dataset = PILImages(train.images.permute(0, 2, 3, 1).numpy(), train.labels.numpy(), transform)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
        pin_memory=device.type == "cuda", drop_last=True,
        persistent_workers=args.workers > 0,
    )
    torch.manual_seed(0)
    student = build_model(STUDENT, 100).to(device)
    teacher = build_model(TEACHER, 100).to(device).eval()
    loss_function = PerceptionCoherenceLoss(tau=TAU)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1 * args.batch_size / 128,
                                momentum=0.9, weight_decay=5e-4, nesterov=True)
    steps = args.steps if args.steps is not None else len(loader)
    total_steps = args.warmup_steps + steps
    running, images, start = 0.0, 0, None
    batches = iter(loader)
    for step in range(total_steps):
        if step == args.warmup_steps:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        try:
            inputs, labels = next(batches)
        except StopIteration:
            batches = iter(loader)
            inputs, labels = next(batches)
        inputs = inputs.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        with torch.no_grad():
            teacher_features, _ = teacher(inputs)
        features, logits = student(inputs)
        loss = F.cross_entropy(logits, labels) + BETA * loss_function(features, teacher_features)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        running += loss.item()
        if step >= args.warmup_steps:
            images += inputs.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"images": images, "seconds": seconds, "steps": steps, "loss": running / total_steps,
            "precision": "fp32", "channels_last": False, "workers": args.workers}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps (default: one epoch, 50000 // batch size)")
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="DataLoader workers of the usual pipeline")
    parser.add_argument("--data-root", default=None,
                        help="folder holding cifar100/ (default: $PERCEPTCOH_DATA, ./data)")
    parser.add_argument("--compile", action="store_true", help="torch.compile our models")
    parser.add_argument("--only", choices=("ours", "dataloader"), default=None)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    rows = {}
    for name, measure in (("ours", measure_ours), ("dataloader", measure_dataloader)):
        if args.only in (None, name):
            rows[name] = measure(args, device)
            rows[name]["images_per_second"] = rows[name]["images"] / rows[name]["seconds"]
            print(f"{name}: {rows[name]['images_per_second']:,.0f} images/s", file=sys.stderr)

    print(f"\nPC transfer {TEACHER} -> {STUDENT}, CIFAR-100, batch {args.batch_size}, "
          f"device {device}")
    print(f"{'pipeline':<12} {'images/s':>10} {'seconds':>9} {'steps':>6}  precision, layout")
    for name, row in rows.items():
        layout = row["precision"] + (
            ", channels_last" if row["channels_last"] else ", NCHW")
        print(f"{name:<12} {row['images_per_second']:>10,.0f} {row['seconds']:>9.2f} "
              f"{row['steps']:>6}  {layout}")
    if len(rows) == 2:
        speedup = rows["ours"]["images_per_second"] / rows["dataloader"]["images_per_second"]
        print(f"speed-up of ours: {speedup:.2f}x")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"arguments": vars(args), "results": rows, "provenance": provenance()},
                      handle, indent=2)
            handle.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
