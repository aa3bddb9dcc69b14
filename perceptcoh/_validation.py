"""Argument checks shared by the public functions.

Every check raises at once with the argument's name and what was expected, so that bad
input never turns into a silent NaN or a wrong answer further down.
"""

from __future__ import annotations

from typing import Callable, Union

import torch

Metric = Union[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]

BUILTIN_METRICS = ("euclidean", "sqeuclidean", "cosine")

# Ranks need an anchor, a point to rank and at least one other point to compare it with.
MIN_SAMPLES = 3


def check_features(
    features: torch.Tensor, name: str, *, min_samples: int = MIN_SAMPLES, check_finite: bool = True
) -> None:
    """Check that ``features`` is a floating ``(n, p)`` tensor with ``n >= min_samples``.

    ``check_finite`` reads the values: on a CPU a NaN or infinity raises ``ValueError`` here;
    on a GPU the check is queued on the device (``torch._assert_async``), so it costs no host
    synchronisation and a failure surfaces as a device-side assertion, naming ``name``, at the
    next synchronisation. The shape and dtype checks only read metadata.
    """
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(features).__name__}")
    if features.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D tensor of shape (n_samples, n_features), "
            f"got shape {tuple(features.shape)}"
        )
    if not features.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {features.dtype}")
    if features.shape[0] < min_samples:
        raise ValueError(
            f"{name} needs at least {min_samples} samples (rows), got {features.shape[0]}"
        )
    if features.shape[1] < 1:
        raise ValueError(f"{name} needs at least one feature (column), got 0")
    if check_finite:
        if features.device.type == "cpu":
            if not bool(torch.isfinite(features).all()):
                raise ValueError(f"{name} contains NaN or infinite values")
        else:
            torch._assert_async(torch.isfinite(features).all(), f"{name} contains NaN or infinite values")


def check_same_batch(
    first: torch.Tensor, first_name: str, second: torch.Tensor, second_name: str
) -> None:
    """Check that two feature tensors describe the same samples (same number of rows)."""
    if first.shape[0] != second.shape[0]:
        raise ValueError(
            f"{first_name} and {second_name} must have the same number of samples, "
            f"got {first.shape[0]} and {second.shape[0]}"
        )
    if first.device != second.device:
        raise ValueError(
            f"{first_name} and {second_name} must be on the same device, "
            f"got {first.device} and {second.device}"
        )


def check_metric(metric: object, name: str) -> None:
    """Check that ``metric`` is a built-in metric name or a callable."""
    if callable(metric):
        return
    if not isinstance(metric, str):
        raise TypeError(
            f"{name} must be one of {BUILTIN_METRICS} or a callable, got {type(metric).__name__}"
        )
    if metric not in BUILTIN_METRICS:
        raise ValueError(f"{name} must be one of {BUILTIN_METRICS} or a callable, got {metric!r}")


def check_positive(value: object, name: str, *, allow_zero: bool = False) -> float:
    """Check that ``value`` is a finite real number, > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    bound_ok = value >= 0 if allow_zero else value > 0
    if not (bound_ok and value < float("inf")):
        expected = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {expected}, got {value}")
    return value


def check_exponent(r: object, name: str = "r") -> int:
    """Check that the gap exponent ``r`` is 1 or 2."""
    if isinstance(r, bool) or r not in (1, 2):
        raise ValueError(f"{name} must be 1 or 2, got {r!r}")
    return int(r)


def check_chunk_size(chunk_size: object, name: str = "chunk_size") -> int | None:
    """Check that ``chunk_size`` is ``None`` or a positive integer."""
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"{name} must be None or a positive integer, got {chunk_size!r}")
    return chunk_size
