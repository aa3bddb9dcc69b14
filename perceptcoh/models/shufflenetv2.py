"""ShuffleNetV2 (Ma et al. 2018) for CIFAR, as in RepDistiller's ``ShuffleV2``.

A 1x1 stem to 24 channels at full resolution (no stride, no max pooling on 32x32), three
stages, each a stride-2 down-sampling unit followed by 3, 7 and 3 basic units (one more
unit per stage than the ImageNet network: RepDistiller's layout) at widths 116, 232, 464,
a 1x1 convolution to 1024 channels and global average pooling over the final 4x4 map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import FeatureClassifier, initialize

__all__ = ["ShuffleNetV2", "shufflenetv2"]

_WIDTHS = (116, 232, 464)
_BASIC_UNITS = (3, 7, 3)
_LAST_CHANNELS = 1024
_STEM_CHANNELS = 24


def _conv_bn(
    in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    padding = kernel // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, padding, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class BasicUnit(nn.Module):
    """Half of the channels pass through; the other half goes 1x1-ReLU, depthwise 3x3,
    1x1-ReLU; the halves are concatenated and the channels shuffled."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.split = channels - half
        self.pointwise1 = _conv_bn(half, half, 1)
        self.depthwise = _conv_bn(half, half, 3, groups=half)
        self.pointwise2 = _conv_bn(half, half, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept, transformed = x[:, : self.split], x[:, self.split :]
        out = F.relu(self.pointwise1(transformed))
        out = F.relu(self.pointwise2(self.depthwise(out)))
        return F.channel_shuffle(torch.cat([kept, out], 1), 2)


class DownUnit(nn.Module):
    """Two stride-2 branches of ``out_channels / 2`` each: depthwise 3x3 then 1x1-ReLU on
    the input; 1x1-ReLU, depthwise 3x3, 1x1-ReLU. Concatenated, shuffled."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        half = out_channels // 2
        self.left_depthwise = _conv_bn(in_channels, in_channels, 3, 2, groups=in_channels)
        self.left_pointwise = _conv_bn(in_channels, half, 1)
        self.right_pointwise1 = _conv_bn(in_channels, half, 1)
        self.right_depthwise = _conv_bn(half, half, 3, 2, groups=half)
        self.right_pointwise2 = _conv_bn(half, half, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = F.relu(self.left_pointwise(self.left_depthwise(x)))
        right = F.relu(self.right_pointwise1(x))
        right = F.relu(self.right_pointwise2(self.right_depthwise(right)))
        return F.channel_shuffle(torch.cat([left, right], 1), 2)


class ShuffleNetV2(FeatureClassifier):
    """ShuffleNetV2 1x for 32x32 inputs; ``feature_dim = 1024``."""

    def __init__(self, num_classes: int) -> None:
        super().__init__(_LAST_CHANNELS, num_classes)
        layers: list[nn.Module] = [*_conv_bn(3, _STEM_CHANNELS, 1), nn.ReLU(inplace=True)]
        in_channels = _STEM_CHANNELS
        for width, units in zip(_WIDTHS, _BASIC_UNITS):
            layers.append(DownUnit(in_channels, width))
            layers += [BasicUnit(width) for _ in range(units)]
            in_channels = width
        layers += [*_conv_bn(in_channels, _LAST_CHANNELS, 1), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        initialize(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.body(x), 1).flatten(1)

    def last_stage(self) -> list[nn.Module]:
        """The last 1x1 convolution to ``feature_dim`` channels with its batch norm, and ReLU."""
        return list(self.body)[-2:]


def shufflenetv2(num_classes: int) -> ShuffleNetV2:
    """ShuffleNetV2 1x (RepDistiller's ``ShuffleV2``), 1.36M parameters with 100 classes."""
    return ShuffleNetV2(num_classes)
