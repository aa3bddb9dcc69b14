"""Named sets of :class:`perceptcoh.engine.TrainConfig` fields, per command.

* ``smoke``: digits, a CNN teacher and an MLP student with 8 features, a few epochs: the
  whole pipeline (teacher, transfer, evaluation) in well under a minute on a CPU::

      python -m perceptcoh train-teacher --preset smoke
      python -m perceptcoh transfer --preset smoke --method pc

* ``full``: the CIFAR-100 recipe for a GPU: a resnet32x4 teacher and a resnet8x4 student
  (the pair most feature-transfer papers report, after RepDistiller), batch 512 with the
  learning rate scaled linearly (0.1 per 128 images, i.e. RepDistiller's 0.05 at batch 64),
  5 warm-up epochs and a cosine schedule. 120 epochs rather than RepDistiller's 240 with
  step decays: the large-batch cosine recipe needs fewer, and a run must fit in a few GPU
  sessions (``--time-limit`` and ``--resume`` split it); ``--epochs`` changes it::

      python -m perceptcoh train-teacher --preset full
      python -m perceptcoh transfer --preset full --method pc

* ``laptop``: a CIFAR-100 teacher trained on a laptop CPU: resnet20 (278,324 parameters,
  1.1 MB in float32), 30 epochs at batch 128, lr 0.1, label smoothing 0.1, 1 warm-up epoch
  and a cosine schedule. On 2 CPU cores it trains at about 255 images/s, so the 1.5 million
  training images take about 100 minutes (``--time-limit`` and ``--resume`` split it).
  resnet20 was chosen by measured training speed on 2 cores (resnet8 660 images/s,
  resnet20 255, wrn_16_2 129, resnet8x4 96): the deepest net that sees about 30 epochs in
  two hours::

      python -m perceptcoh train-teacher --preset laptop

Fields given on the command line override the preset's.
"""

from __future__ import annotations

__all__ = ["PRESETS", "preset"]

_SMOKE_TEACHER = "runs/smoke/teacher"
_FULL_TEACHER = "runs/cifar100/resnet32x4-ce-seed0"
_LAPTOP_TEACHER = "runs/laptop/teacher-resnet20"

PRESETS: dict[str, dict[str, dict[str, object]]] = {
    "smoke": {
        "train-teacher": {
            "dataset": "digits", "model": "digits_cnn", "epochs": 4, "batch_size": 64,
            "lr": 0.1, "warmup_epochs": 0.5, "triplet_points": 200,
            "output_dir": _SMOKE_TEACHER,
        },
        "transfer": {
            "dataset": "digits", "model": "digits_mlp", "model_options": {"feature_dim": 8},
            "teacher_checkpoint": f"{_SMOKE_TEACHER}/model.pt", "epochs": 4,
            "batch_size": 64, "lr": 0.1, "warmup_epochs": 0.5, "triplet_points": 200,
        },
    },
    "laptop": {
        "train-teacher": {
            "dataset": "cifar100", "model": "resnet20", "epochs": 30, "batch_size": 128,
            "lr": 0.1, "warmup_epochs": 1, "schedule": "cosine", "label_smoothing": 0.1,
            "eval_every": 5, "output_dir": _LAPTOP_TEACHER,
        },
    },
    "full": {
        "train-teacher": {
            "dataset": "cifar100", "model": "resnet32x4", "epochs": 120, "batch_size": 512,
            "lr": 0.1, "warmup_epochs": 5, "schedule": "cosine", "eval_every": 10,
            "output_dir": _FULL_TEACHER,
        },
        "transfer": {
            "dataset": "cifar100", "model": "resnet8x4", "teacher": "resnet32x4",
            "teacher_checkpoint": f"{_FULL_TEACHER}/model.pt", "epochs": 120,
            "batch_size": 512, "lr": 0.1, "warmup_epochs": 5, "schedule": "cosine",
            "eval_every": 10,
        },
    },
}


def preset(name: str, command: str) -> dict[str, object]:
    """The fields preset ``name`` sets for ``command`` (``"train-teacher"`` or ``"transfer"``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    if command not in PRESETS[name]:
        raise ValueError(f"preset {name!r} has no settings for {command!r}")
    return {key: (dict(value) if isinstance(value, dict) else value)
            for key, value in PRESETS[name][command].items()}
