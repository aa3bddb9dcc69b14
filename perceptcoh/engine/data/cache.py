"""The disk cache of decoded CIFAR splits: uncompressed ``.npz`` arrays (and the training
split's statistics as JSON) under ``$PERCEPTCOH_CACHE`` (default ``~/.cache/perceptcoh``),
named after the source's folder and its files' names, sizes and modification times, so
that a changed copy is decoded again. Every file is written with
:func:`perceptcoh.engine.files.atomic_write`; a cache that cannot be written only warns."""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from pathlib import Path
from typing import IO, Callable

import numpy as np

from ..files import atomic_write
from .cifar import Source
from .common import CACHE_ENV, DEFAULT_CACHE

__all__ = ["cache_path", "load_cached_arrays", "save_cached_arrays", "write_cache_file"]

# Bumped whenever the layout of a cache file changes, so that old files are not read.
_CACHE_VERSION = 1


def _cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def cache_path(source: Source, split: str, suffix: str) -> Path:
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


def load_cached_arrays(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """``(images, labels)`` stored at ``path``, or ``None`` if it is missing or broken."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as arrays:
            return arrays["images"], arrays["labels"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None  # a broken cache file is rebuilt, never trusted


def save_cached_arrays(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Store ``images`` and ``labels`` at ``path`` (:func:`write_cache_file`)."""

    def write(stream: IO) -> None:
        np.savez(stream, images=images, labels=labels)

    write_cache_file(path, write, binary=True)


def write_cache_file(path: Path, write: Callable[[IO], None], *, binary: bool) -> None:
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
