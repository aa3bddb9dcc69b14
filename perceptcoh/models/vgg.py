"""VGG with batch norm for CIFAR, as in the KD benchmarks (no fully connected stack).

Five stages of 3x3 conv-BN-ReLU layers (convolutions with bias, as in RepDistiller), 2x2
max pooling after the first three (32 -> 16 -> 8 -> 4), the last two stages at 4x4, then
global average pooling and one linear classifier on the 512 channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import FeatureClassifier, initialize

__all__ = ["VGG", "vgg8", "vgg13"]

# Output channels of each convolution, stage by stage.
_VGG8 = ((64,), (128,), (256,), (512,), (512,))
_VGG13 = ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512))
# Stages followed by 2x2 max pooling. RepDistiller pools after the fourth stage too, but
# only for 64x64 inputs; on CIFAR the fourth and fifth stages both run at 4x4.
_POOLED_STAGES = 3


class VGG(FeatureClassifier):
    """VGG on ``stages`` of convolution widths; ``feature_dim`` is the last width (512)."""

    def __init__(self, stages: tuple[tuple[int, ...], ...], num_classes: int) -> None:
        super().__init__(stages[-1][-1], num_classes)
        layers: list[nn.Module] = []
        in_channels = 3
        for index, widths in enumerate(stages):
            for width in widths:
                layers += [
                    nn.Conv2d(in_channels, width, 3, 1, 1),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                in_channels = width
            if index < _POOLED_STAGES:
                layers.append(nn.MaxPool2d(2, 2))
        self.body = nn.Sequential(*layers)
        self.last_stage_convolutions = len(stages[-1])
        initialize(self, linear_std=0.01)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.body(x), 1).flatten(1)

    def last_stage(self) -> list[nn.Module]:
        """The last stage's convolutions, batch norms and ReLUs."""
        return list(self.body)[-3 * self.last_stage_convolutions :]


def vgg8(num_classes: int) -> VGG:
    """VGG-8 with batch norm, 3.96M parameters with 100 classes."""
    return VGG(_VGG8, num_classes)


def vgg13(num_classes: int) -> VGG:
    """VGG-13 with batch norm, 9.46M parameters with 100 classes."""
    return VGG(_VGG13, num_classes)
