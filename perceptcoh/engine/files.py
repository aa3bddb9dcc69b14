"""Small file and sampling helpers shared by the engine: atomic writes, SHA-256 of a file,
JSON-safe copies, and seeded subsets."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import IO, Any, Callable

import torch

__all__ = ["atomic_write", "atomic_write_text", "file_sha256", "jsonable", "seeded_prefix"]


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], *, binary: bool) -> None:
    """Write ``path`` through a temporary file in the same folder, synced to disk and then
    renamed over it: a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb" if binary else "w") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write` of a text."""
    atomic_write(path, lambda handle: handle.write(text), binary=False)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def jsonable(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples become lists, ...)."""
    return json.loads(json.dumps(value))


def seeded_prefix(n: int, count: int, seed: int) -> torch.Tensor:
    """The first ``count`` of a permutation of ``range(n)`` drawn by a CPU generator seeded
    with ``seed``: the same subset on every device and platform."""
    if count > n:
        raise ValueError(f"subset of {count} images requested from a set of {n}")
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:count]
