"""Small teacher and student for the 8x8 digits of :func:`perceptcoh.engine.data.load_dataset`.

They train in seconds on a CPU, so a chapter can run a whole transfer experiment live.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import FeatureClassifier, initialize

__all__ = ["DigitsCNN", "DigitsMLP", "digits_cnn", "digits_mlp"]

_SIDE = 8


class DigitsCNN(FeatureClassifier):
    """Teacher: two 3x3 conv-BN-ReLU layers (32, 64 channels), 2x2 max pooling, and a
    fully connected ReLU layer to ``feature_dim`` (default 128) features.

    Input ``(B, 1, 8, 8)``.
    """

    def __init__(self, num_classes: int, *, feature_dim: int = 128, in_channels: int = 1) -> None:
        _check_width(feature_dim, "feature_dim")
        super().__init__(feature_dim, num_classes)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, 1, 1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, 1, 1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.project = nn.Linear(64 * (_SIDE // 2) ** 2, feature_dim)
        initialize(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.project(self.body(x).flatten(1)))

    def last_stage(self) -> list[nn.Module]:
        """The fully connected layer to the features."""
        return [self.project]


class DigitsMLP(FeatureClassifier):
    """Student: ``64 -> hidden_dim`` (ReLU) ``-> feature_dim``, then the linear classifier.

    The features are the bottleneck's output *without* a ReLU: on a layer as narrow as the
    default 8 units a ReLU can silence whole coordinates, and the linear classifier reads
    the bottleneck either way. Input ``(B, 1, 8, 8)`` (flattened) or ``(B, 64)``.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        feature_dim: int = 8,
        hidden_dim: int = 64,
        in_features: int = _SIDE * _SIDE,
    ) -> None:
        _check_width(feature_dim, "feature_dim")
        _check_width(hidden_dim, "hidden_dim")
        super().__init__(feature_dim, num_classes)
        self.hidden = nn.Linear(in_features, hidden_dim)
        self.bottleneck = nn.Linear(hidden_dim, feature_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(F.relu(self.hidden(x.flatten(1))))

    def last_stage(self) -> list[nn.Module]:
        """The linear bottleneck to the features."""
        return [self.bottleneck]


def _check_width(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def digits_cnn(num_classes: int, *, feature_dim: int = 128) -> DigitsCNN:
    """CNN teacher for 8x8 digits, 151K parameters with 10 classes."""
    return DigitsCNN(num_classes, feature_dim=feature_dim)


def digits_mlp(num_classes: int, *, feature_dim: int = 8, hidden_dim: int = 64) -> DigitsMLP:
    """MLP student for 8x8 digits with a ``feature_dim``-wide feature layer (default 8)."""
    return DigitsMLP(num_classes, feature_dim=feature_dim, hidden_dim=hidden_dim)
