"""Wide ResNets (Zagoruyko & Komodakis 2016) for CIFAR: WRN-depth-k.

Pre-activation basic blocks (BN-ReLU-conv, twice) in three stages of widths 16k, 32k, 64k
after a 3x3 stem with 16 channels; ``(depth - 4) / 6`` blocks per stage; a final BN-ReLU
before global average pooling. No dropout, as in the KD benchmarks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import FeatureClassifier, initialize

__all__ = ["WideResNet", "wrn_16_2", "wrn_40_2"]


class WideBlock(nn.Module):
    """Pre-activation block; where the shape changes, the shortcut is a 1x1 convolution
    of the *activated* input (so BN-ReLU is shared by both branches)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.projection: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.projection = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = F.relu(self.bn1(x))
        out = self.conv1(activated)
        out = self.conv2(F.relu(self.bn2(out)))
        shortcut = x if self.projection is None else self.projection(activated)
        return out + shortcut


class WideResNet(FeatureClassifier):
    """WRN-``depth``-``widen_factor``; ``feature_dim = 64 * widen_factor``."""

    def __init__(self, depth: int, widen_factor: int, num_classes: int) -> None:
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"depth must be 6n + 4 with n >= 1 (10, 16, 28, 40...), got {depth}")
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        super().__init__(widths[2], num_classes)
        blocks_per_stage = (depth - 4) // 6
        self.stem = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        blocks = []
        in_channels = 16
        for width, stride in zip(widths, (1, 2, 2)):
            for index in range(blocks_per_stage):
                blocks.append(WideBlock(in_channels, width, stride if index == 0 else 1))
                in_channels = width
        self.blocks = nn.Sequential(*blocks)
        self.blocks_per_stage = blocks_per_stage
        self.bn = nn.BatchNorm2d(widths[2])
        initialize(self)
        nn.init.zeros_(self.classifier.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.blocks(self.stem(x))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def last_stage(self) -> list[nn.Module]:
        """The blocks on 8x8 maps (the final batch norm follows them in their precision)."""
        return list(self.blocks)[-self.blocks_per_stage :]


def wrn_16_2(num_classes: int) -> WideResNet:
    """WRN-16-2, 0.70M parameters with 100 classes."""
    return WideResNet(16, 2, num_classes)


def wrn_40_2(num_classes: int) -> WideResNet:
    """WRN-40-2, 2.26M parameters with 100 classes."""
    return WideResNet(40, 2, num_classes)
