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


# A scale of the book's plans (perceptcoh.engine.plans.SCALES) on digits, for the tests of
# plans and experiments: tiny models, a few steps.
TINY_SCALE = {
    "description": "digits, tiny models, for tests",
    "teacher": {"dataset": "digits", "model": "digits_cnn", "epochs": 1, "batch_size": 64,
                "lr": 0.1, "train_subset": 256, "test_subset": 60, "triplet_points": 20,
                "output_dir": "runs/tiny/teacher"},
    "student": {"dataset": "digits", "model_options": {"feature_dim": 4}, "epochs": 1,
                "batch_size": 32, "lr": 0.1, "train_subset": 128, "test_subset": 60,
                "eval_every": 0, "triplet_points": 20, "teacher_probes": False},
    "pairs": (("digits_cnn", "digits_mlp"),),
    "seeds": (0, 1),
    "ablations": {"tau": (0.05, 0.1), "batch_size": (16, 32), "metric": ("euclidean", "cosine"),
                  "r": (1, 2), "gradient_ratio": (0.5, 1.0)},
}
