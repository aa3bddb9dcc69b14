"""The CIFAR sources: finding a copy of CIFAR-10 or CIFAR-100 under a root, and reading
its files as uint8 arrays, in each of the three layouts (:class:`Source`):

* ``"torchvision"``: torchvision's own pickled batches (``cifar-100-python/``,
  ``cifar-10-batches-py/``), the original release, which torchvision can download;
* ``"offline-npz"``: this project's lossless CIFAR-100 copy (``meta.json``,
  ``train-0.npz.xz`` ... ``train-4.npz.xz``, ``test.npz.xz``), xz-compressed shards;
* ``"offline-jpeg"``: this project's CIFAR-10 copy re-encoded as JPEG in ``train.zip`` and
  ``test.zip`` (one folder per class).

Nothing here caches or checks checksums: :mod:`perceptcoh.engine.data.loader` does.
"""

from __future__ import annotations

import concurrent.futures
import io
import lzma
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .common import DATA_ENV, NUM_CLASSES, SPLITS, CorruptDataError

__all__ = ["Source", "find_cifar", "read_torchvision", "decode_cifar100_npz",
           "decode_cifar10_jpeg"]

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


@dataclass(frozen=True)
class Source:
    """One copy of a CIFAR dataset: ``kind`` says how to read the files in ``directory``."""

    name: str
    kind: str  # "offline-npz", "offline-jpeg" or "torchvision"
    directory: Path

    def files(self, split: str) -> list[Path]:
        """The files that hold ``split``, whether they exist or not."""
        if self.kind == "torchvision":
            names = _TORCHVISION_FILES[self.name][split]
        else:
            names = _OFFLINE_FILES[self.name][split]
        return [self.directory / file_name for file_name in names]


def find_cifar(name: str, root: Path, download: bool) -> Source:
    """The copy of ``name`` under ``root`` that :func:`perceptcoh.engine.data.load_dataset`
    reads: a lossless one first; with ``download``, torchvision's downloaded into ``root``
    when there is none. Raises ``FileNotFoundError`` saying where it looked."""
    offline_kind = "offline-npz" if name == "cifar100" else "offline-jpeg"
    offline = [
        Source(name, offline_kind, directory)
        for directory in (root / _OFFLINE_FOLDER[name], root)
    ]
    torchvision_copy = Source(name, "torchvision", root / _TORCHVISION_FOLDER[name])
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
    name: str, root: Path, offline: list[Source], torchvision_copy: Source
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
# Reading a split


def read_torchvision(source: Source, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (N, 3, 32, 32), labels int64 (N,))`` of torchvision's pickles."""
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


def decode_cifar100_npz(source: Source, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (N, 3, 32, 32), fine labels int64 (N,))`` of the offline CIFAR-100
    copy, shard by shard in stored order."""
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
    if labels.size and labels.max() >= NUM_CLASSES["cifar100"]:
        raise _corrupt(path, f"fine label {labels.max()} out of range 0..99")
    return images, labels.astype(np.int64)


def decode_cifar10_jpeg(source: Source, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (N, 3, 32, 32), labels int64 (N,))`` of the offline CIFAR-10 JPEG
    copy, sorted by member name; labels in torchvision's order (class folders sorted)."""
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
    if len(classes) != NUM_CLASSES["cifar10"]:
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


def _parallel_map(function: Callable, items: Sequence) -> list:
    """``[function(item) for item in items]`` on up to one thread per core."""
    workers = max(1, min(len(items), os.cpu_count() or 1))
    if workers == 1:
        return [function(item) for item in items]
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(function, items))
