"""The model zoo: shapes, parameter counts, channels_last, the registry's errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from perceptcoh.models import MODELS, FeatureClassifier, build_model
from perceptcoh.models.base import float32_last_stage

# Published sizes with 100 classes (Tian et al. 2020, table of RepDistiller's models), and
# the exact counts of the architectures as defined there (conv biases in VGG included).
PARAMETERS = {
    "resnet8x4": (1.23e6, 1_233_540),
    "resnet32x4": (7.43e6, 7_433_860),
    "resnet8": (0.08e6, 83_892),
    "resnet20": (0.28e6, 278_324),
    "resnet56": (0.86e6, 861_620),
    "resnet110": (1.74e6, 1_736_564),
    "wrn_40_2": (2.26e6, 2_255_156),
    "wrn_16_2": (0.70e6, 703_284),
    "vgg13": (9.46e6, 9_462_180),
    "vgg8": (3.96e6, 3_965_028),
    "mobilenetv2": (0.81e6, 812_836),
    "shufflenetv2": (1.36e6, 1_355_528),
}
FEATURE_DIM = {
    "resnet8x4": 256, "resnet32x4": 256, "resnet8": 64, "resnet20": 64, "resnet56": 64, "resnet110": 64,
    "wrn_40_2": 128, "wrn_16_2": 128, "vgg13": 512, "vgg8": 512, "mobilenetv2": 1280,
    "shufflenetv2": 1024, "digits_cnn": 128, "digits_mlp": 8,
}
CIFAR_MODELS = tuple(PARAMETERS)
DIGITS_MODELS = ("digits_cnn", "digits_mlp")


def count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def test_registry_holds_the_zoo():
    assert set(MODELS) == set(CIFAR_MODELS) | set(DIGITS_MODELS)


@pytest.mark.parametrize("name", CIFAR_MODELS + DIGITS_MODELS)
def test_forward_returns_features_and_logits_in_both_memory_formats(name):
    torch.manual_seed(0)
    digits = name in DIGITS_MODELS
    num_classes = 10 if digits else 100
    model = build_model(name, num_classes)
    assert isinstance(model, FeatureClassifier) and model.feature_dim == FEATURE_DIM[name]
    x = torch.randn(2, 1, 8, 8) if digits else torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features, logits = model(x)
        assert features.shape == (2, model.feature_dim) and logits.shape == (2, num_classes)
        assert torch.isfinite(features).all() and torch.isfinite(logits).all()
        # The features are what the classifier reads.
        assert torch.allclose(model.classifier(features), logits, atol=1e-6)
        model = model.to(memory_format=torch.channels_last)
        features_cl, logits_cl = model(x.contiguous(memory_format=torch.channels_last))
    scale = features.abs().max().item() + 1
    assert torch.allclose(features_cl, features, atol=1e-4 * scale, rtol=1e-4)
    assert torch.allclose(logits_cl, logits, atol=1e-4 * scale, rtol=1e-4)


@pytest.mark.parametrize("name", CIFAR_MODELS)
def test_parameter_counts_match_the_published_ones(name):
    published, exact = PARAMETERS[name]
    measured = count(build_model(name, 100))
    assert measured == exact
    # Published to two decimals in millions: within 1%, or half a unit of the last digit.
    assert abs(measured - published) <= max(0.01 * published, 0.005e6)


@pytest.mark.parametrize(
    "name", ["resnet8x4", "wrn_16_2", "vgg8", "mobilenetv2", "shufflenetv2", "digits_mlp"]
)
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    model = build_model(name, 10)
    x = torch.randn(4, 1, 8, 8) if name.startswith("digits") else torch.randn(4, 3, 32, 32)
    features, logits = model(x)
    (features.square().mean() + logits.logsumexp(1).mean()).backward()
    missing = [
        key
        for key, parameter in model.named_parameters()
        if parameter.grad is None or not parameter.grad.abs().sum() > 0
    ]
    assert missing == []


def test_digits_models_options():
    model = build_model("digits_mlp", 10, feature_dim=3, hidden_dim=16)
    features, logits = model(torch.randn(5, 1, 8, 8))
    assert features.shape == (5, 3) and logits.shape == (5, 10) and model.feature_dim == 3
    assert count(model) == 64 * 16 + 16 + 16 * 3 + 3 + 3 * 10 + 10
    assert build_model("digits_cnn", 7, feature_dim=64)(torch.randn(2, 1, 8, 8))[0].shape == (2, 64)
    with pytest.raises(ValueError, match="feature_dim"):
        build_model("digits_mlp", 10, feature_dim=0)


def test_build_model_errors():
    with pytest.raises(ValueError, match="unknown model 'resnet18'") as info:
        build_model("resnet18", 100)
    assert all(name in str(info.value) for name in MODELS)
    with pytest.raises(TypeError, match="name"):
        build_model(None, 100)
    for bad in (0, -3, 2.5, True, "100"):
        with pytest.raises(ValueError, match="num_classes"):
            build_model("resnet20", bad)
    with pytest.raises(TypeError, match="feature_dim"):
        build_model("resnet20", 100, feature_dim=8)


@pytest.mark.parametrize("name", CIFAR_MODELS + DIGITS_MODELS)
def test_last_stage_holds_submodules_and_float32_keeps_values_and_weights(name):
    torch.manual_seed(0)
    model = build_model(name, 10).eval()
    stage = model.last_stage()
    submodules = {id(module) for module in model.modules()}
    assert stage and all(id(module) in submodules for module in stage)
    x = torch.randn(3, 1, 8, 8) if name in DIGITS_MODELS else torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        state = {key: value.clone() for key, value in model.state_dict().items()}
        float32_last_stage(float32_last_stage(model))  # twice: wrapped once
        after = model(x)
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(model.state_dict()[key], value) for key, value in state.items())
    # Without autocast nothing changes, bit for bit.
    assert all(torch.equal(a, b) for a, b in zip(before, after))


def test_float32_last_stage_under_bf16_autocast_is_the_float32_stage_of_the_rounded_trunk():
    torch.manual_seed(0)
    model = build_model("resnet8", 10).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            rounded_features, rounded_logits = model(x)
            trunk = model.stages[:-1](model.stem(x))
        assert rounded_features.dtype == torch.bfloat16 and trunk.dtype == torch.bfloat16
        last = model.stages[-1](trunk.float())
        expected = torch.nn.functional.adaptive_avg_pool2d(last, 1).flatten(1)
        float32_last_stage(model)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            features, logits = model(x)
    assert features.dtype == torch.float32 and logits.dtype == torch.float32
    assert torch.equal(features, expected)
    assert torch.equal(logits, model.classifier(expected))
    assert not torch.equal(features, rounded_features.float())
