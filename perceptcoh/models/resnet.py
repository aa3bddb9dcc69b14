"""CIFAR ResNets (He et al. 2016, section 4.2) in the sizes of the KD benchmarks.

Three stages of basic blocks on 32x32, 16x16 and 8x8 maps after a 3x3 stem, ``(depth - 2)
/ 6`` blocks per stage, global average pooling. ``resnet8/20/56/110`` have widths
16-16-32-64; the "x4" variants of Tian et al. (2020) widths 32-64-128-256 (the first
stage changes width, so its first block has a projection shortcut).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import FeatureClassifier, initialize

__all__ = ["CifarResNet", "resnet8", "resnet20", "resnet56", "resnet110", "resnet8x4", "resnet32x4"]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual; a 1x1 projection when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(FeatureClassifier):
    """ResNet of ``depth = 6n + 2`` layers; ``widths`` = (stem, stage 1, stage 2, stage 3).

    ``features``: the pooled output of the last stage, ``feature_dim = widths[3]``.
    """

    def __init__(self, depth: int, widths: tuple[int, int, int, int], num_classes: int) -> None:
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(
                f"depth must be 6n + 2 with n >= 1 (8, 20, 32, 56, 110...), got {depth}"
            )
        super().__init__(widths[3], num_classes)
        blocks_per_stage = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages = []
        in_channels = widths[0]
        for width, stride in zip(widths[1:], (1, 2, 2)):
            blocks = []
            for index in range(blocks_per_stage):
                blocks.append(BasicBlock(in_channels, width, stride if index == 0 else 1))
                in_channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        initialize(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stages(self.stem(x))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def last_stage(self) -> list[nn.Module]:
        """The blocks on 8x8 maps."""
        return [self.stages[-1]]


_NARROW = (16, 16, 32, 64)
_WIDE = (32, 64, 128, 256)


def resnet8(num_classes: int) -> CifarResNet:
    """ResNet-8, 0.08M parameters with 100 classes: the smallest student of the zoo."""
    return CifarResNet(8, _NARROW, num_classes)


def resnet20(num_classes: int) -> CifarResNet:
    """ResNet-20, 0.28M parameters with 100 classes."""
    return CifarResNet(20, _NARROW, num_classes)


def resnet56(num_classes: int) -> CifarResNet:
    """ResNet-56, 0.86M parameters with 100 classes."""
    return CifarResNet(56, _NARROW, num_classes)


def resnet110(num_classes: int) -> CifarResNet:
    """ResNet-110, 1.74M parameters with 100 classes."""
    return CifarResNet(110, _NARROW, num_classes)


def resnet8x4(num_classes: int) -> CifarResNet:
    """ResNet-8 with four times the width, 1.23M parameters with 100 classes."""
    return CifarResNet(8, _WIDE, num_classes)


def resnet32x4(num_classes: int) -> CifarResNet:
    """ResNet-32 with four times the width, 7.43M parameters with 100 classes."""
    return CifarResNet(32, _WIDE, num_classes)
