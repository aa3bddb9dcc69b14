"""Loading one split of a dataset (:func:`load_dataset`): the source found, read once per
process, the decoded CIFAR arrays and the training split's statistics taken from the disk
cache when they are there (checked against ``SHA256SUMS`` and decoded when not), and the
result handed over as an :class:`~perceptcoh.engine.data.ImageDataset` on the device."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from .cache import cache_path, load_cached_arrays, save_cached_arrays, write_cache_file
from .checksums import verify_checksums
from .cifar import Source, decode_cifar10_jpeg, decode_cifar100_npz, find_cifar, read_torchvision
from .common import DATA_ENV, DATASETS, DEFAULT_ROOT, NUM_CLASSES, SPLITS
from .digits import read_digits
from .images import ImageDataset, channel_statistics

__all__ = ["load_dataset"]


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
        images, labels, mean, std = read_digits(split)
        source_kind = "sklearn"
    else:
        source = find_cifar(name, _resolve_root(root), download)
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
        num_classes=NUM_CLASSES[name],
        name=name,
        source=source_kind,
    )


def _check_choice(value: object, name: str, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


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


def _read_split(source: Source, split: str) -> tuple[np.ndarray, np.ndarray]:
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
        return read_torchvision(source, split)
    cache = cache_path(source, split, "npz")
    cached = load_cached_arrays(cache)
    if cached is not None:
        return cached
    verify_checksums(source.directory, files)
    if source.kind == "offline-npz":
        images, labels = decode_cifar100_npz(source, split)
    else:
        images, labels = decode_cifar10_jpeg(source, split)
    save_cached_arrays(cache, images, labels)
    return images, labels


def _train_statistics(
    source: Source, train_images: np.ndarray | None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the training split, cached as a small JSON file."""
    path = cache_path(source, "train", "json") if all(
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
    mean, std = channel_statistics(train_images)
    if path is not None:
        write_cache_file(
            path, lambda stream: json.dump({"mean": mean, "std": std}, stream), binary=False
        )
    return mean, std
