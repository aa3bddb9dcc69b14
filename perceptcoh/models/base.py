"""What every model of the zoo shares: ``forward(x) -> (features, logits)``."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FeatureClassifier", "float32_last_stage", "initialize"]


class FeatureClassifier(nn.Module):
    """A network whose last layer is a linear classifier on a ``feature_dim`` vector.

    Subclasses define :meth:`features`, ``x -> (B, feature_dim)``: the penultimate
    representation (after global pooling, flattened), which the transfer losses compare.
    ``forward`` returns it together with the logits, so a trainer gets both in one pass.
    """

    feature_dim: int

    def __init__(self, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.classifier = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def last_stage(self) -> list[nn.Module]:
        """The modules that compute the features from the last stage's input (the last
        resolution's blocks of a ResNet, the last 1x1 convolution of a MobileNet), which
        :func:`float32_last_stage` runs in float32 under autocast."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(B, C, H, W)`` -> ``(features (B, feature_dim), logits (B, num_classes))``."""
        features = self.features(x)
        return features, self.classifier(features)


def float32_last_stage(model: FeatureClassifier) -> FeatureClassifier:
    """Run ``model``'s :meth:`~FeatureClassifier.last_stage` and classifier in float32, with
    autocast off, whatever precision the rest runs in; returns ``model``, changed in place.

    The engine does this to the teacher under bf16/fp16 autocast: the ranks the PC loss takes
    as exact are those of its features, and a bf16 forward reorders up to 1.3% of a row's
    pairs (``benchmarks/teacher_ranks.py``). Each module's ``forward`` is wrapped on the
    instance, so the weights and the ``state_dict`` are unchanged; without autocast the
    wrapped forward computes the same values as before, bit for bit.
    """
    for module in [*model.last_stage(), model.classifier]:
        if getattr(module, "_float32_forward", False):
            continue
        module.forward = _in_float32(module.forward)
        module._float32_forward = True
    return model


def _in_float32(forward):
    def forward_in_float32(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return forward(x.float())

    return forward_in_float32


def initialize(model: nn.Module, *, linear_std: float | None = None) -> None:
    """He initialisation of the convolutions, unit batch norms, as in RepDistiller.

    Convolutions get ``N(0, 2 / (k * k * out_channels))`` (He, fan-out) and zero biases;
    batch norms weight 1 and bias 0. With ``linear_std``, linear layers get
    ``N(0, linear_std^2)`` weights and zero biases (VGG, MobileNetV2); otherwise they keep
    PyTorch's default.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and linear_std is not None:
            nn.init.normal_(module.weight, std=linear_std)
            nn.init.zeros_(module.bias)
