"""MobileNetV2 (Sandler et al. 2018) for CIFAR, as used in the KD benchmarks.

RepDistiller's ``mobile_half``: expansion 6 and width multiplier 0.5 on the standard
inverted-residual table, a stride-2 stem (32 -> 16), later strides bringing the map to
2x2, a 1x1 convolution to 1280 channels (not scaled down for multipliers <= 1) and global
average pooling. Every inverted residual keeps its 1x1 expansion convolution, even with
expansion 1, as in that implementation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import FeatureClassifier, initialize

__all__ = ["MobileNetV2", "mobilenetv2"]

# (expansion, output channels, blocks, stride of the first block); None = the model's T.
_TABLE = (
    (1, 16, 1, 1),
    (None, 24, 2, 1),
    (None, 32, 3, 2),
    (None, 64, 4, 2),
    (None, 96, 3, 1),
    (None, 160, 3, 2),
    (None, 320, 1, 1),
)
_LAST_CHANNELS = 1280


def _conv_bn(
    in_channels: int,
    out_channels: int,
    kernel: int,
    stride: int = 1,
    groups: int = 1,
    relu: bool = True,
) -> list[nn.Module]:
    padding = kernel // 2
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel, stride, padding, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return layers


class InvertedResidual(nn.Module):
    """1x1 expansion, 3x3 depthwise, linear 1x1 projection; residual when shapes match."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.residual = stride == 1 and in_channels == out_channels
        self.body = nn.Sequential(
            *_conv_bn(in_channels, hidden, 1),
            *_conv_bn(hidden, hidden, 3, stride, groups=hidden),
            *_conv_bn(hidden, out_channels, 1, relu=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


class MobileNetV2(FeatureClassifier):
    """MobileNetV2 with expansion ``expansion`` and width multiplier ``width``;
    ``feature_dim = 1280`` for ``width <= 1``."""

    def __init__(self, num_classes: int, *, expansion: int = 6, width: float = 0.5) -> None:
        last_channels = int(_LAST_CHANNELS * width) if width > 1.0 else _LAST_CHANNELS
        super().__init__(last_channels, num_classes)
        in_channels = int(32 * width)
        layers: list[nn.Module] = _conv_bn(3, in_channels, 3, stride=2)
        for block_expansion, channels, blocks, stride in _TABLE:
            out_channels = int(channels * width)
            for index in range(blocks):
                layers.append(
                    InvertedResidual(
                        in_channels,
                        out_channels,
                        stride if index == 0 else 1,
                        expansion if block_expansion is None else block_expansion,
                    )
                )
                in_channels = out_channels
        layers += _conv_bn(in_channels, last_channels, 1)
        self.body = nn.Sequential(*layers)
        initialize(self, linear_std=0.01)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.body(x), 1).flatten(1)

    def last_stage(self) -> list[nn.Module]:
        """The last 1x1 convolution to ``feature_dim`` channels, its batch norm and ReLU."""
        return list(self.body)[-3:]


def mobilenetv2(num_classes: int, *, width: float = 0.5) -> MobileNetV2:
    """MobileNetV2 at half width (RepDistiller's ``mobile_half``), 0.81M parameters with
    100 classes."""
    return MobileNetV2(num_classes, width=width)
