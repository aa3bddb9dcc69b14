"""The validation split: a class-balanced part of a training set, held out by a fixed seed.

Hyper-parameters are chosen on it, never on the test set. The seed is
:data:`VALIDATION_SEED`, the same for every run whatever its initialisation and data seeds,
so that every run of an experiment holds out the same images and no selection can pick a
favourable split.
"""

from __future__ import annotations

import torch

__all__ = ["VALIDATION_SEED", "validation_split"]

# The seed of every validation split; no run's seed or data_seed changes it.
VALIDATION_SEED = 20_260_524


def validation_split(labels: torch.Tensor, size: int, num_classes: int,
                     seed: int = VALIDATION_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """``(training, validation)``: positions into ``labels`` (int64, ``(N,)``, on any
    device), both sorted, CPU int64. The validation part holds ``size / num_classes`` images
    of each class, the first of a seeded permutation of that class's positions; the training
    part holds every other position.

    Raises:
        ValueError: ``size`` is not a positive multiple of ``num_classes``, or a class has
            too few images to give its share and keep one for training.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size % num_classes:
        raise ValueError(f"validation_split must be a positive multiple of the {num_classes} "
                         f"classes (a class-balanced split), got {size!r}")
    per_class = size // num_classes
    labels = labels.cpu()
    generator = torch.Generator().manual_seed(seed)
    held_out = []
    for label in range(num_classes):
        positions = torch.nonzero(labels == label).flatten()
        if len(positions) <= per_class:
            raise ValueError(f"validation_split {size} takes {per_class} images of each class, "
                             f"but class {label} has only {len(positions)}")
        order = torch.randperm(len(positions), generator=generator)
        held_out.append(positions[order[:per_class]])
    validation = torch.cat(held_out).sort().values
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[validation] = False
    return torch.nonzero(keep).flatten(), validation
