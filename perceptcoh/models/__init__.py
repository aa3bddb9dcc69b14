"""The model zoo of the CIFAR knowledge-distillation benchmarks, and two digits models.

The architectures and sizes are those of RepDistiller (Tian et al., "Contrastive
Representation Distillation", ICLR 2020), which most feature-transfer papers compare on;
the code is written anew. Every model maps ``x`` to ``(features, logits)``, where
``features`` is the penultimate ``(B, model.feature_dim)`` vector (after global pooling,
flattened) that the transfer losses compare, and ``logits`` is ``(B, num_classes)``.

Parameters with ``num_classes=100``, as published and as counted (exactly) by
``tests/test_models.py``:

==============  =========  ===========  ==========================================
name            params     feature_dim  input
==============  =========  ===========  ==========================================
resnet8x4       1.23M      256          (B, 3, 32, 32)
resnet32x4      7.43M      256          (B, 3, 32, 32)
resnet8         0.08M      64           (B, 3, 32, 32)
resnet20        0.28M      64           (B, 3, 32, 32)
resnet56        0.86M      64           (B, 3, 32, 32)
resnet110       1.74M      64           (B, 3, 32, 32)
wrn_40_2        2.26M      128          (B, 3, 32, 32)
wrn_16_2        0.70M      128          (B, 3, 32, 32)
vgg13           9.46M      512          (B, 3, 32, 32)
vgg8            3.96M      512          (B, 3, 32, 32)
mobilenetv2     0.81M      1280         (B, 3, 32, 32), half width
shufflenetv2    1.36M      1024         (B, 3, 32, 32)
digits_cnn      0.15M      128          (B, 1, 8, 8), 10 classes
digits_mlp      4.8K       8            (B, 1, 8, 8), 10 classes; ``feature_dim=``
==============  =========  ===========  ==========================================

All accept ``channels_last`` inputs and weights (``model.to(memory_format=...)``).
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from .base import FeatureClassifier
from .digits import digits_cnn, digits_mlp
from .mobilenetv2 import mobilenetv2
from .resnet import resnet8, resnet8x4, resnet20, resnet32x4, resnet56, resnet110
from .shufflenetv2 import shufflenetv2
from .vgg import vgg8, vgg13
from .wrn import wrn_16_2, wrn_40_2

__all__ = ["MODELS", "build_model", "FeatureClassifier"]

MODELS: dict[str, Callable[..., FeatureClassifier]] = {
    "resnet8x4": resnet8x4,
    "resnet32x4": resnet32x4,
    "resnet8": resnet8,
    "resnet20": resnet20,
    "resnet56": resnet56,
    "resnet110": resnet110,
    "wrn_40_2": wrn_40_2,
    "wrn_16_2": wrn_16_2,
    "vgg8": vgg8,
    "vgg13": vgg13,
    "mobilenetv2": mobilenetv2,
    "shufflenetv2": shufflenetv2,
    "digits_cnn": digits_cnn,
    "digits_mlp": digits_mlp,
}


def build_model(name: str, num_classes: int, **kwargs: object) -> nn.Module:
    """Construct the model registered as ``name`` with ``num_classes`` outputs.

    ``kwargs`` go to the model's constructor (``feature_dim`` and ``hidden_dim`` for
    ``"digits_mlp"``, ``feature_dim`` for ``"digits_cnn"``, ``width`` for
    ``"mobilenetv2"``). The model's ``forward(x)`` returns ``(features, logits)``.

    Raises:
        TypeError: ``name`` is not a string, or ``kwargs`` holds an argument the model
            does not take.
        ValueError: ``name`` is unknown (the message lists the known names), or
            ``num_classes`` is not a positive integer.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    return MODELS[name](num_classes, **kwargs)
