"""What every model of the zoo shares: ``forward(x) -> (features, logits)``."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FeatureClassifier", "initialize"]


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

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(B, C, H, W)`` -> ``(features (B, feature_dim), logits (B, num_classes))``."""
        features = self.features(x)
        return features, self.classifier(features)


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
