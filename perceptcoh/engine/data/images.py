"""The device side of the data: :class:`ImageDataset` (one split as tensors on one device),
:func:`augment` and :func:`normalize` (a whole batch in a few tensor operations, where it
lives), and :func:`channel_statistics` (the exact per-channel mean and std that normalise
both splits)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["ImageDataset", "augment", "normalize", "channel_statistics"]


@dataclass
class ImageDataset:
    """Images and labels of one split, as tensors on one device.

    Attributes:
        images: ``uint8`` tensor ``(N, C, H, W)``, pixel values ``0..255``.
        labels: ``int64`` tensor ``(N,)``, values ``0..num_classes-1``, on the same device.
        mean, std: per-channel mean and standard deviation of the *training* split's
            pixels scaled to ``[0, 1]`` (``C`` floats each), whichever split this is.
        num_classes: number of classes.
        name: the dataset's name, one of :data:`~perceptcoh.engine.data.DATASETS`.
        source: where the pixels were read from: ``"torchvision"`` (the original release),
            ``"offline-npz"`` (the lossless CIFAR-100 copy), ``"offline-jpeg"`` (the
            CIFAR-10 copy re-encoded as JPEG, quality about 75: accuracies measured on it
            are close to, not identical with, published CIFAR-10 figures; say so where
            one is shown), ``"sklearn"`` (digits) or ``""`` (built by hand).
    """

    images: torch.Tensor
    labels: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    name: str
    source: str = ""

    def __post_init__(self) -> None:
        _check_uint8_images(self.images, "images")
        if not isinstance(self.labels, torch.Tensor) or self.labels.dtype != torch.int64:
            raise TypeError(
                f"labels must be an int64 torch.Tensor, got "
                f"{getattr(self.labels, 'dtype', type(self.labels).__name__)}"
            )
        if self.labels.shape != self.images.shape[:1]:
            raise ValueError(
                f"labels must have shape ({self.images.shape[0]},) to match images, "
                f"got {tuple(self.labels.shape)}"
            )
        if self.labels.device != self.images.device:
            raise ValueError(
                f"images and labels must be on the same device, "
                f"got {self.images.device} and {self.labels.device}"
            )
        channels = self.images.shape[1]
        self.mean = _channel_tuple(self.mean, "mean", channels)
        self.std = _channel_tuple(self.std, "std", channels, positive=True)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, source={self.source!r}, "
            f"images={tuple(self.images.shape)} {self.images.dtype} on {self.images.device}, "
            f"num_classes={self.num_classes}, mean={self.mean}, std={self.std})"
        )

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: str | torch.device) -> ImageDataset:
        """The same dataset with ``images`` and ``labels`` on ``device``."""
        return dataclasses.replace(
            self, images=self.images.to(device), labels=self.labels.to(device)
        )

    def subset(self, indices: torch.Tensor | Sequence[int] | slice) -> ImageDataset:
        """The samples at ``indices`` (integers, a boolean mask of length ``N``, or a slice).

        ``mean`` and ``std`` are kept: they describe the training split, not the subset.
        """
        if not isinstance(indices, slice):
            if not isinstance(indices, torch.Tensor) and len(indices) == 0:
                indices = torch.empty(0, dtype=torch.int64)  # as_tensor([]) would be float
            indices = torch.as_tensor(indices, device=self.images.device)
            if indices.ndim != 1 or indices.is_floating_point() or indices.is_complex():
                raise ValueError(
                    f"indices must be a 1-D sequence of integers or booleans, or a slice, "
                    f"got a {indices.ndim}-D tensor of {indices.dtype}"
                )
        return dataclasses.replace(self, images=self.images[indices], labels=self.labels[indices])


def augment(
    images: torch.Tensor,
    *,
    padding: int = 4,
    flip: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random crops after zero padding, and random horizontal flips, of a batch.

    Each image is padded with ``padding`` zeros on every side and cropped back to
    ``H x W`` at an offset drawn uniformly from ``0..2*padding`` in each direction, then,
    if ``flip``, mirrored left-right with probability 1/2. Every sample draws its own
    offsets and flip; the whole batch is done in one gather, on ``images``' device.

    Args:
        images: ``uint8`` tensor ``(N, C, H, W)``.
        padding: zeros added on each side before cropping, ``>= 0``; 0 means no crop.
        flip: whether to flip half of the images (at random) horizontally.
        generator: source of the random draws (offsets then flips, in that order), for
            reproducible batches. It may live on another device than ``images``; the
            draws are then moved over.

    Returns:
        ``uint8`` tensor of the same shape, in ``channels_last`` memory format (which
        :func:`normalize` returns anyway). ``images`` is not modified.
    """
    _check_uint8_images(images, "images")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
    count, _, height, width = images.shape
    device = images.device
    random_device = generator.device if generator is not None else device

    def draw(high: int) -> torch.Tensor:
        values = torch.randint(high, (count, 1), generator=generator, device=random_device)
        return values.to(device)

    if padding > 0:
        padded = F.pad(images, (padding, padding, padding, padding))
        row_offset, column_offset = draw(2 * padding + 1), draw(2 * padding + 1)
    else:
        padded = images
        row_offset = column_offset = torch.zeros((count, 1), dtype=torch.int64, device=device)
    rows = row_offset + torch.arange(height, device=device)
    columns = torch.arange(width, device=device)
    if flip:
        flipped = draw(2).bool()
        columns = torch.where(flipped, width - 1 - columns, columns)
    columns = column_offset + columns
    samples = torch.arange(count, device=device)[:, None, None]
    # Advanced indices on dims 0, 2, 3 around a slice give (N, H, W, C): the gather writes
    # channels_last memory directly, which the permute exposes as (N, C, H, W).
    crops = padded[samples, :, rows[:, :, None], columns[:, None, :]]
    return crops.permute(0, 3, 1, 2)


def normalize(
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    channels_last: bool = True,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``(images / 255 - mean) / std`` per channel, as floats ready for a model.

    Args:
        images: ``uint8`` tensor ``(N, C, H, W)``.
        mean, std: ``C`` floats each (``std > 0``), e.g. an :class:`ImageDataset`'s; or
            tensors of ``C`` values already on the device, used unchecked, which spares
            the host-to-device copy of the floats (a wait for the device) on every call.
        channels_last: return the ``channels_last`` memory format (faster convolutions
            on GPUs, esp. with autocast); otherwise contiguous ``NCHW``.
        dtype: floating dtype of the result. Half-precision results are computed in
            float32 and rounded once at the end.

    Returns:
        Tensor ``(N, C, H, W)`` of ``dtype`` on ``images``' device.
    """
    _check_uint8_images(images, "images")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    compute_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    mean_tensor = _channel_tensor(mean, "mean", images, compute_dtype)
    std_tensor = _channel_tensor(std, "std", images, compute_dtype, positive=True)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    result = images.to(compute_dtype, memory_format=memory_format)
    result.div_(255).sub_(mean_tensor).div_(std_tensor)
    return result.to(dtype)


# ----------------------------------------------------------------------------------------
# Argument checks


def _check_uint8_images(images: object, name: str) -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if images.dtype != torch.uint8:
        raise TypeError(f"{name} must have dtype torch.uint8, got {images.dtype}")
    if images.ndim != 4:
        raise ValueError(
            f"{name} must be a 4-D tensor of shape (N, C, H, W), got shape {tuple(images.shape)}"
        )


def _channel_tensor(
    values: object, name: str, images: torch.Tensor, dtype: torch.dtype, *, positive: bool = False
) -> torch.Tensor:
    """``values`` as a ``(1, C, 1, 1)`` tensor of ``dtype`` on ``images``' device."""
    channels = images.shape[1]
    if isinstance(values, torch.Tensor):
        # Checking the values would read them back to the host: only the shape is checked.
        if values.numel() != channels:
            raise ValueError(
                f"{name} must have one value per channel ({channels}), got {values.numel()}"
            )
        return values.to(device=images.device, dtype=dtype).view(1, channels, 1, 1)
    checked = _channel_tuple(values, name, channels, positive=positive)
    return torch.tensor(checked, dtype=dtype, device=images.device).view(1, channels, 1, 1)


def _channel_tuple(
    values: object, name: str, channels: int, *, positive: bool = False
) -> tuple[float, ...]:
    if isinstance(values, torch.Tensor):
        values = values.tolist()
    try:
        result = tuple(float(value) for value in values)  # type: ignore[union-attr]
    except TypeError:
        raise TypeError(
            f"{name} must be a sequence of {channels} floats, got {values!r}"
        ) from None
    if len(result) != channels:
        raise ValueError(
            f"{name} must have one value per channel ({channels}), got {len(result)}"
        )
    if not all(np.isfinite(result)) or (positive and min(result) <= 0):
        expected = "finite and > 0" if positive else "finite"
        raise ValueError(f"{name} must be {expected}, got {result}")
    return result


# ----------------------------------------------------------------------------------------
# Statistics


def channel_statistics(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and population std of ``uint8 (N, C, H, W)`` images / 255.

    Computed from a 256-bin histogram per channel (integer counts), so float rounding
    never accumulates over the ~51 million pixels of a channel, and no float copy of the
    images is made.
    """
    pixels = torch.from_numpy(images)
    counts = torch.stack([
        torch.bincount(pixels[:, channel].reshape(-1), minlength=256)
        for channel in range(pixels.shape[1])
    ]).double()
    values = torch.arange(256, dtype=torch.float64) / 255
    totals = counts.sum(dim=1)
    mean = (counts * values).sum(dim=1) / totals
    variance = (counts * (values[None, :] - mean[:, None]) ** 2).sum(dim=1) / totals
    return tuple(mean.tolist()), tuple(variance.sqrt().tolist())
