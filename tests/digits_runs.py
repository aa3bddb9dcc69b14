"""Tiny training runs on scikit-learn's digits, shared by the engine's tests."""

from __future__ import annotations

from perceptcoh.engine import TrainConfig


def tiny(**fields) -> TrainConfig:
    """Digits, 256 training images, batches of 64: 4 steps an epoch, on the CPU (a CUDA
    test passes ``device="cuda"``)."""
    base = dict(dataset="digits", model="digits_mlp", epochs=2, batch_size=64, lr=0.1,
                train_subset=256, test_subset=60, triplet_points=20, progress=False,
                device="cpu")
    base.update(fields)
    return TrainConfig(**base)
