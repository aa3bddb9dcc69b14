"""Knowledge distillation (Hinton et al., 2015): match temperature-softened class
probabilities."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_features, check_positive, check_same_batch
from .common import full_precision

__all__ = ["LogitKD"]


class LogitKD(nn.Module):
    """Match the student's temperature-softened class probabilities to the teacher's.

    Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015. With
    temperature ``T``, ``p^t_i = softmax(z^t_i / T)`` and ``p^s_i = softmax(z^s_i / T)``::

        L = T^2 / B * sum_i KL(p^t_i || p^s_i) = T^2 / B * sum_i sum_c p^t_ic log(p^t_ic / p^s_ic)

    The ``T^2`` keeps the gradient's scale comparable across temperatures, as in the paper.
    Nothing is learnable.

    Args:
        temperature: ``T > 0``.
        check_finite: check the inputs for NaN/Inf.

    ``forward(student_logits, teacher_logits)`` takes two ``(B, C)`` floating tensors,
    ``B >= 1``, and returns a 0-dim tensor whose gradient flows to ``student_logits`` only.
    """

    def __init__(self, temperature: float = 4.0, check_finite: bool = True) -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.check_finite = bool(check_finite)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        check_features(
            student_logits, "student_logits", min_samples=1, check_finite=self.check_finite
        )
        check_features(
            teacher_logits, "teacher_logits", min_samples=1, check_finite=self.check_finite
        )
        check_same_batch(student_logits, "student_logits", teacher_logits, "teacher_logits")
        if student_logits.shape[1] != teacher_logits.shape[1]:
            raise ValueError(
                "student_logits and teacher_logits must have the same number of classes, "
                f"got {student_logits.shape[1]} and {teacher_logits.shape[1]}"
            )
        with torch.autocast(device_type=student_logits.device.type, enabled=False):
            student, teacher = full_precision(student_logits, teacher_logits)
            student_log_probability = F.log_softmax(student / self.temperature, dim=1)
            teacher_log_probability = F.log_softmax(teacher / self.temperature, dim=1)
            divergence = F.kl_div(
                student_log_probability,
                teacher_log_probability,
                reduction="batchmean",
                log_target=True,
            )
            return self.temperature**2 * divergence
