"""What several benchmarks share: the fair test's cohort of CPU students, and writing a
result with its provenance. Imported by the benchmarks run as scripts
(``python benchmarks/NAME.py``), whose folder is then first on ``sys.path``."""

from __future__ import annotations

import json
from typing import Any

import torch

from perceptcoh.engine import TrainConfig
from perceptcoh.engine.fair import FAIR_METHODS
from perceptcoh.engine.provenance import provenance


def fair_cohort(students: int, data_root: str | None, **fields: Any) -> list[TrainConfig]:
    """``students`` CPU students of the fair test's methods in turn: pure protocol,
    ``gradient_ratio=1``, resnet20 teacher, resnet8 students, CIFAR-100, one epoch, seeds
    0, 1, ... and data seed 0; ``fields`` sets any other TrainConfig field (``batch_size``,
    ``compile``, ``curve_every``)."""
    methods = [FAIR_METHODS[index % len(FAIR_METHODS)] for index in range(students)]
    return [TrainConfig(dataset="cifar100", data_root=data_root, model="resnet8",
                        teacher="resnet20", method=method, protocol="pure",
                        gradient_ratio=1.0, epochs=1, seed=index, data_seed=0,
                        device="cpu", progress=False, output_dir=f"unused/{index}", **fields)
            for index, method in enumerate(methods)]


def write_result(path: str | None, document: dict) -> None:
    """``document`` with the thread count and the provenance, as JSON at ``path`` (nothing
    when ``path`` is ``None``)."""
    if path is None:
        return
    document = {**document, "threads": torch.get_num_threads(), "provenance": provenance()}
    with open(path, "w") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
