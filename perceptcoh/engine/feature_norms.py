"""The norm of a toy student's features under a feature-transfer loss, step by step: a
small ReLU network learns the ranking of a synthetic teacher, small enough to train live
in a chapter, many times.

The loss chapter (book/theory/04_loss, "Why the scale must carry its gradient") trains it
with a detached row scale and with the exact loss: the first one's features shrink until
their ReLUs die, the second one's keep their norm.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = ["train_toy_student"]

Transfer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def train_toy_student(transfer: Transfer, seed: int, steps: int = 800,
                      batch_size: int = 48) -> np.ndarray:
    """Train a student with ``transfer(student_features, teacher_features)`` and return the
    mean norm of its features at each step, before that step's update (``(steps,)``).

    The data: 2,000 inputs in ``R^32``; the teacher's features are a one-hot of 10 clusters
    given by a non-linear rule (the argmax of ``sin(3 x W)``), times 3, plus a little of the
    input. The student: ``32 -> 64 -> 16`` with batch normalisation before its last ReLU, as
    in a ResNet's last block, trained by SGD at the laptop recipe's learning rate (0.1,
    momentum 0.9, weight decay 5e-4) on random batches. The data and batches come from a
    generator seeded with ``seed``; the weights from the global generator, seeded with
    ``seed`` too (``torch.manual_seed``), so two transfers with one seed start from the same
    weights and see the same batches.
    """
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(2000, 32, generator=generator)
    rule = torch.randn(32, 10, generator=generator)
    clusters = torch.sin(3 * inputs @ rule).argmax(1)  # 10 clusters, non-linear
    targets = 3 * torch.nn.functional.one_hot(clusters, 10) + 0.3 * inputs[:, :10]
    torch.manual_seed(seed)
    student = torch.nn.Sequential(
        torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 16),
        torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
    )
    optimiser = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9,
                                weight_decay=5e-4)
    norms = []
    for _ in range(steps):
        chosen = torch.randint(0, 2000, (batch_size,), generator=generator)
        features = student(inputs[chosen])
        norms.append(features.detach().norm(dim=1).mean().item())
        optimiser.zero_grad()
        transfer(features, targets[chosen]).backward()
        optimiser.step()
    return np.array(norms)
