"""Image datasets as uint8 tensors on the training device, and on-device augmentation.

As in airbench, a dataset is one ``uint8`` tensor of shape ``(N, C, H, W)`` that lives on
the device the model trains on; a batch is augmented (:func:`augment`) and normalised
(:func:`normalize`) there in a few tensor operations, with no ``DataLoader`` and no
per-sample Python.

Datasets (:data:`DATASETS`):

* ``"cifar10"``, ``"cifar100"``: 50,000 training and 10,000 test 32x32 RGB images. Looked
  for under ``root``, else ``$PERCEPTCOH_DATA``, else ``./data``, in two layouts: the
  offline copies of this project (``cifar100/`` holding ``meta.json``, ``train-0.npz.xz``
  ... ``train-4.npz.xz`` and ``test.npz.xz``; ``cifar10-jpeg/`` holding ``train.zip`` and
  ``test.zip``; or those files directly in ``root``) and torchvision's own
  (``cifar-100-python/``, ``cifar-10-batches-py/``). If neither is there, torchvision
  downloads the original into ``root`` (needs internet). Decoded offline copies are
  cached as ``.npz`` under ``$PERCEPTCOH_CACHE`` (default ``~/.cache/perceptcoh``).
* ``"digits"``: scikit-learn's bundled 8x8 handwritten digits (1,797 grayscale images,
  10 classes), split 75/25 into train and test; needs no download.

The ``mean`` and ``std`` of a dataset are always the per-channel statistics of its
training split (pixel values scaled to ``[0, 1]``), for the test split too, so that both
are normalised alike.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import io
import json
import lzma
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .files import atomic_write, file_sha256

__all__ = [
    "ImageDataset",
    "CorruptDataError",
    "load_dataset",
    "augment",
    "normalize",
    "DATASETS",
    "SPLITS",
    "DATA_ENV",
    "CACHE_ENV",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
]

DATASETS = ("cifar10", "cifar100", "digits")
SPLITS = ("train", "test")
DATA_ENV = "PERCEPTCOH_DATA"
CACHE_ENV = "PERCEPTCOH_CACHE"
DEFAULT_ROOT = "./data"
DEFAULT_CACHE = "~/.cache/perceptcoh"

# Known per-channel statistics of the CIFAR training sets (original pixels), for reference
# and for the tests; the loaders compute them from the data rather than trusting these.
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

_NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "digits": 10}
# Folder names of the offline copies (see /work/shared/data/*/README.md in this project).
_OFFLINE_FOLDER = {"cifar100": "cifar100", "cifar10": "cifar10-jpeg"}
_OFFLINE_FILES = {
    "cifar100": {
        "train": ("meta.json", *(f"train-{shard}.npz.xz" for shard in range(5))),
        "test": ("meta.json", "test.npz.xz"),
    },
    "cifar10": {"train": ("train.zip",), "test": ("test.zip",)},
}
_TORCHVISION_FOLDER = {"cifar100": "cifar-100-python", "cifar10": "cifar-10-batches-py"}
_TORCHVISION_FILES = {
    "cifar100": {"train": ("train",), "test": ("test",)},
    "cifar10": {
        "train": tuple(f"data_batch_{batch}" for batch in range(1, 6)),
        "test": ("test_batch",),
    },
}
# Bumped whenever the layout of a cache file changes, so that old files are not read.
_CACHE_VERSION = 1
_DIGITS_SEED = 0
_DIGITS_TEST_FRACTION = 0.25


class CorruptDataError(RuntimeError):
    """A dataset file exists but cannot be read, or its checksum does not match."""


@dataclass
class ImageDataset:
    """Images and labels of one split, as tensors on one device.

    Attributes:
        images: ``uint8`` tensor ``(N, C, H, W)``, pixel values ``0..255``.
        labels: ``int64`` tensor ``(N,)``, values ``0..num_classes-1``, on the same device.
        mean, std: per-channel mean and standard deviation of the *training* split's
            pixels scaled to ``[0, 1]`` (``C`` floats each), whichever split this is.
        num_classes: number of classes.
        name: the dataset's name, one of :data:`DATASETS`.
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


def load_dataset(
    name: str,
    split: str,
    root: str | os.PathLike | None = None,
    *,
    download: bool = True,
    device: str | torch.device = "cpu",
) -> ImageDataset:
    """Load one split of a dataset as an :class:`ImageDataset` on ``device``.

    Args:
        name: one of :data:`DATASETS` (``"cifar10"``, ``"cifar100"``, ``"digits"``).
        split: ``"train"`` or ``"test"``.
        root: folder that holds the CIFAR data (ignored for ``"digits"``); ``None`` means
            ``$PERCEPTCOH_DATA`` if set, else ``./data``. Both ``root`` and, below it,
            ``cifar100/`` or ``cifar10-jpeg/`` are searched for the offline copies, and
            ``root`` for torchvision's layout. A lossless copy is preferred: for CIFAR-10
            torchvision's original over the JPEG copy; for CIFAR-100 the offline copy
            (same pixels, cached decoding) over torchvision's.
        download: if no copy is found, let torchvision download the original into
            ``root`` (needs internet).
        device: where the returned tensors live.

    Image order is as stored, not shuffled: the offline CIFAR-100 copy is grouped by class
    and the CIFAR-10 JPEG copy is sorted by class, so training code must shuffle.

    The first read of an offline copy checks it against its ``SHA256SUMS`` and decodes it
    (seconds: xz or JPEG); the decoded arrays are cached as uncompressed ``.npz`` under
    ``$PERCEPTCOH_CACHE`` (default ``~/.cache/perceptcoh``), keyed by the source files'
    names, sizes and modification times, so a changed source is decoded again. Reading
    the test split needs the training split's statistics; they are cached too. Within a
    process a split is read once: later calls return tensors over the same CPU memory, so
    do not modify them in place (``subset`` and ``to`` copy).

    Raises:
        ValueError: ``name`` or ``split`` is not a known value.
        FileNotFoundError: no copy of the data was found and it could not be downloaded;
            the message says where it looked and how to get the data.
        CorruptDataError: a file is there but is truncated, unreadable or fails its
            checksum.
    """
    _check_choice(name, "name", DATASETS)
    _check_choice(split, "split", SPLITS)
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a str, os.PathLike or None, got {type(root).__name__}")
    if name == "digits":
        images, labels, mean, std = _load_digits(split)
        source_kind = "sklearn"
    else:
        source = _find_cifar(name, _resolve_root(root), download)
        key = (source, split, tuple(_stamp(path) for path in source.files(split)))
        if key not in _loaded:  # read once per process; a changed file is read again
            images, labels = _read_split(source, split)
            mean, std = _train_statistics(source, images if split == "train" else None)
            _loaded[key] = images, labels, mean, std
        images, labels, mean, std = _loaded[key]
        source_kind = source.kind
    return ImageDataset(
        images=torch.from_numpy(images).to(device),
        labels=torch.from_numpy(labels).to(device),
        mean=mean,
        std=std,
        num_classes=_NUM_CLASSES[name],
        name=name,
        source=source_kind,
    )


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


def _check_choice(value: object, name: str, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


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
# digits


def _load_digits(split: str) -> tuple[np.ndarray, np.ndarray, tuple, tuple]:
    images, labels = _digits_split(split)
    mean, std = _statistics(_digits_split("train")[0])
    # Copies: torch.from_numpy would otherwise share (and let callers mutate) the cache.
    return images.copy(), labels.copy(), mean, std


_digits_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _digits_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    if split not in _digits_cache:
        try:
            from sklearn.datasets import load_digits
            from sklearn.model_selection import train_test_split
        except ImportError as error:
            raise ImportError(
                "the 'digits' dataset needs scikit-learn: pip install scikit-learn"
            ) from error
        digits = load_digits()
        # Values are integers 0..16; spread them over the uint8 range like the CIFAR pixels.
        images = np.rint(digits.images * (255 / 16)).astype(np.uint8)[:, None, :, :]
        labels = digits.target.astype(np.int64)
        train, test = train_test_split(
            np.arange(len(labels)),
            test_size=_DIGITS_TEST_FRACTION,
            random_state=_DIGITS_SEED,
            stratify=labels,
        )
        for name, index in (("train", train), ("test", test)):
            _digits_cache[name] = (np.ascontiguousarray(images[index]), labels[index])
    return _digits_cache[split]


# ----------------------------------------------------------------------------------------
# CIFAR: finding a copy


@dataclass(frozen=True)
class _Source:
    """One copy of a CIFAR dataset: ``kind`` says how to read the files in ``directory``."""

    name: str
    kind: str  # "offline-npz", "offline-jpeg" or "torchvision"
    directory: Path

    def files(self, split: str) -> list[Path]:
        if self.kind == "torchvision":
            names = _TORCHVISION_FILES[self.name][split]
        else:
            names = _OFFLINE_FILES[self.name][split]
        return [self.directory / file_name for file_name in names]


# Decoded CIFAR splits of this process, keyed by their source and its files' sizes and
# modification times: a run plan's many runs read each split once.
_loaded: dict[tuple, tuple[np.ndarray, np.ndarray, tuple, tuple]] = {}


def _stamp(path: Path) -> tuple[str, int, int]:
    status = path.stat()
    return str(path), status.st_size, status.st_mtime_ns


def _resolve_root(root: str | os.PathLike | None) -> Path:
    if root is None:
        root = os.environ.get(DATA_ENV) or DEFAULT_ROOT
    return Path(root).expanduser()


def _find_cifar(name: str, root: Path, download: bool) -> _Source:
    offline_kind = "offline-npz" if name == "cifar100" else "offline-jpeg"
    offline = [
        _Source(name, offline_kind, directory)
        for directory in (root / _OFFLINE_FOLDER[name], root)
    ]
    torchvision_copy = _Source(name, "torchvision", root / _TORCHVISION_FOLDER[name])
    # Lossless first: for CIFAR-10 the offline copy is JPEG, for CIFAR-100 it is exact.
    if name == "cifar100":
        candidates = [*offline, torchvision_copy]
    else:
        candidates = [torchvision_copy, *offline]
    for candidate in candidates:
        if any(path.is_file() for path in candidate.files("train") + candidate.files("test")):
            return candidate
    if download:
        try:
            _torchvision_dataset(name, root, train=True, download=True)
        except Exception as error:  # no network, proxy, disk full, ...: all mean "not here"
            raise FileNotFoundError(
                _missing_message(name, root, offline, torchvision_copy)
                + f"\nThe download into {root} failed: {type(error).__name__}: {error}"
            ) from error
        return torchvision_copy
    raise FileNotFoundError(_missing_message(name, root, offline, torchvision_copy))


def _missing_message(
    name: str, root: Path, offline: list[_Source], torchvision_copy: _Source
) -> str:
    expected = ", ".join(dict.fromkeys(
        path.name for split in SPLITS for path in offline[0].files(split)
    ))
    looked = "\n".join(f"  {candidate.directory}" for candidate in offline)
    torchvision_class = "CIFAR100" if name == "cifar100" else "CIFAR10"
    return (
        f"no copy of {name} found. Looked for the offline copy ({expected}) in:\n{looked}\n"
        f"and for torchvision's layout in:\n  {torchvision_copy.directory}\n"
        f"To get the data, either\n"
        f"  * with internet access, call load_dataset({name!r}, ..., download=True) or "
        f"torchvision.datasets.{torchvision_class}({str(root)!r}, download=True), or\n"
        f"  * point ${DATA_ENV} or the root argument to a folder holding the offline copy "
        f"(a '{_OFFLINE_FOLDER[name]}' folder, or its files directly)."
    )


# ----------------------------------------------------------------------------------------
# CIFAR: reading a split, with a cache of decoded arrays


def _read_split(source: _Source, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (N, 3, 32, 32), labels int64 (N,))`` of ``split`` of ``source``."""
    files = source.files(split)
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"the {source.name} copy in {source.directory} is incomplete: reading its "
            f"{split} split needs {', '.join(missing)} (the test split too needs the train "
            f"files, whose statistics normalise both splits)"
        )
    if source.kind == "torchvision":
        # Unpickling the original batches takes about a second: not worth a cache.
        return _read_torchvision(source, split)
    cache = _cache_path(source, split, "npz")
    cached = _load_cached_arrays(cache)
    if cached is not None:
        return cached
    _verify_checksums(source.directory, files)
    if source.kind == "offline-npz":
        images, labels = _decode_cifar100_npz(source, split)
    else:
        images, labels = _decode_cifar10_jpeg(source, split)
    _save_cached_arrays(cache, images, labels)
    return images, labels


def _read_torchvision(source: _Source, split: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        dataset = _torchvision_dataset(
            source.name, source.directory.parent, train=split == "train", download=False
        )
    except RuntimeError as error:  # torchvision's "Dataset not found or corrupted"
        raise CorruptDataError(
            f"torchvision's copy of {source.name} in {source.directory} fails its integrity "
            f"check ({error}); delete the folder and download it again"
        ) from error
    images = np.ascontiguousarray(np.asarray(dataset.data, dtype=np.uint8).transpose(0, 3, 1, 2))
    return images, np.asarray(dataset.targets, dtype=np.int64)


def _torchvision_dataset(name: str, root: Path, *, train: bool, download: bool):
    import torchvision

    datasets = torchvision.datasets
    dataset_class = datasets.CIFAR100 if name == "cifar100" else datasets.CIFAR10
    return dataset_class(str(root), train=train, download=download)


def _decode_cifar100_npz(source: _Source, split: str) -> tuple[np.ndarray, np.ndarray]:
    shards = [path for path in source.files(split) if path.name.endswith(".npz.xz")]
    # xz decompression releases the GIL, so shards decompress in parallel.
    parts = _parallel_map(_read_cifar100_shard, shards)
    images = np.concatenate([part[0] for part in parts])
    labels = np.concatenate([part[1] for part in parts])
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)), labels


def _read_cifar100_shard(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with lzma.open(path) as compressed:
            arrays = np.load(io.BytesIO(compressed.read()))
            images, labels = arrays["images"], arrays["fine_labels"]
    except (lzma.LZMAError, EOFError, OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise _corrupt(path, error) from error
    if (
        images.dtype != np.uint8
        or images.shape[1:] != (32, 32, 3)
        or labels.shape != images.shape[:1]
    ):
        raise _corrupt(path, f"unexpected arrays {images.dtype}{images.shape}, {labels.shape}")
    if labels.size and labels.max() >= _NUM_CLASSES["cifar100"]:
        raise _corrupt(path, f"fine label {labels.max()} out of range 0..99")
    return images, labels.astype(np.int64)


def _decode_cifar10_jpeg(source: _Source, split: str) -> tuple[np.ndarray, np.ndarray]:
    (archive_path,) = source.files(split)
    try:
        with zipfile.ZipFile(archive_path) as archive:
            members = sorted(
                member
                for member in archive.namelist()
                if member.startswith(f"{split}/") and member.lower().endswith(".jpg")
            )
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise _corrupt(archive_path, error) from error
    # Folder names sorted alphabetically are torchvision's label order.
    classes = sorted({member.split("/")[1] for member in members if member.count("/") == 2})
    if len(classes) != _NUM_CLASSES["cifar10"]:
        raise _corrupt(archive_path, f"expected 10 class folders under {split}/, got {classes}")
    label_of = {class_name: label for label, class_name in enumerate(classes)}
    labels = np.array([label_of[member.split("/")[1]] for member in members], dtype=np.int64)
    images = np.empty((len(members), 32, 32, 3), dtype=np.uint8)
    _decode_jpegs(archive_path, members, images)
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)), labels


def _decode_jpegs(archive_path: Path, members: list[str], out: np.ndarray) -> None:
    from PIL import Image, UnidentifiedImageError

    # One thread: for a 32x32 JPEG, Pillow spends most of its time in Python (header
    # parsing) holding the GIL, so decoding threads measured no faster.
    try:
        with zipfile.ZipFile(archive_path) as archive:
            for index, member in enumerate(members):
                image = Image.open(io.BytesIO(archive.read(member)), formats=("JPEG",))
                if image.size != (32, 32):
                    raise _corrupt(archive_path, f"{member} is {image.size}, not 32x32")
                if image.mode != "RGB":
                    image = image.convert("RGB")
                # tobytes + frombuffer: a quarter less time than np.asarray(image) here.
                out[index] = np.frombuffer(image.tobytes(), np.uint8).reshape(32, 32, 3)
    except (zipfile.BadZipFile, UnidentifiedImageError, OSError, EOFError, KeyError) as error:
        raise _corrupt(archive_path, error) from error


def _corrupt(path: Path, reason: object) -> CorruptDataError:
    return CorruptDataError(
        f"{path} is corrupt or incomplete ({reason}); delete it and copy or download it again"
    )


def _verify_checksums(directory: Path, files: list[Path]) -> None:
    """Compare ``files`` with the ``SHA256SUMS`` in ``directory``, if there is one."""
    sums_path = directory / "SHA256SUMS"
    if not sums_path.is_file():
        return
    expected = {}
    for line in sums_path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            expected[parts[1].lstrip("*")] = parts[0].lower()
    for path in files:
        if path.name not in expected:
            continue
        digest = file_sha256(path)
        if digest != expected[path.name]:
            raise CorruptDataError(
                f"{path} does not match its SHA256 in {sums_path} (expected "
                f"{expected[path.name]}, got {digest}): the copy is corrupt or "
                f"incomplete; copy or download it again"
            )


def _parallel_map(function: Callable, items: Sequence) -> list:
    """``[function(item) for item in items]`` on up to one thread per core."""
    workers = max(1, min(len(items), os.cpu_count() or 1))
    if workers == 1:
        return [function(item) for item in items]
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(function, items))


def _cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def _cache_path(source: _Source, split: str, suffix: str) -> Path:
    """Cache file for ``split`` of ``source``: ``<name>-<kind>-<split>-<where>-<version>``.

    ``where`` hashes the source folder (two copies do not evict each other's cache) and
    ``version`` the source files' names, sizes and modification times (a changed copy is
    decoded again, and replaces the stale file).
    """
    where = hashlib.sha256(str(source.directory.resolve()).encode()).hexdigest()[:8]
    version = hashlib.sha256(f"cache format {_CACHE_VERSION};".encode())
    for path in source.files(split):
        status = path.stat()
        version.update(f"{path.name}:{status.st_size}:{status.st_mtime_ns};".encode())
    stem = f"{source.name}-{source.kind}-{split}-{where}-{version.hexdigest()[:16]}"
    return _cache_dir() / f"{stem}.{suffix}"


def _load_cached_arrays(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path) as arrays:
            return arrays["images"], arrays["labels"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None  # a broken cache file is rebuilt, never trusted


def _save_cached_arrays(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    def write(stream) -> None:
        np.savez(stream, images=images, labels=labels)

    _write_atomically(path, write, binary=True)


def _write_atomically(path: Path, write: Callable, *, binary: bool) -> None:
    """Write a cache file with :func:`perceptcoh.engine.files.atomic_write`.

    Older cache files of the same dataset, split and kind (from a previous version of the
    source) are removed. A cache that cannot be written only costs time: warn, go on.
    """
    try:
        atomic_write(path, write, binary=binary)
        if "-" in path.stem:
            prefix = path.stem[: path.stem.rindex("-") + 1]
            for stale in path.parent.glob(f"{prefix}*{path.suffix}"):
                if stale != path:
                    stale.unlink(missing_ok=True)
    except OSError as error:
        warnings.warn(
            f"could not write the cache file {path} ({error}); set ${CACHE_ENV} to a "
            f"writable folder to avoid decoding the data again",
            stacklevel=4,
        )


# ----------------------------------------------------------------------------------------
# Statistics of the training split


def _train_statistics(
    source: _Source, train_images: np.ndarray | None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the training split, cached as a small JSON file."""
    path = _cache_path(source, "train", "json") if all(
        file.is_file() for file in source.files("train")
    ) else None
    if path is not None and path.is_file():
        try:
            stored = json.loads(path.read_text())
            return tuple(stored["mean"]), tuple(stored["std"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # rebuilt below
    if train_images is None:
        train_images, _ = _read_split(source, "train")
    mean, std = _statistics(train_images)
    if path is not None:
        _write_atomically(
            path, lambda stream: json.dump({"mean": mean, "std": std}, stream), binary=False
        )
    return mean, std


def _statistics(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
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
