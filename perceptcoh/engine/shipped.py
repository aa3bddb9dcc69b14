"""Teachers shipped with the library, so that the laptop chapter needs no teacher training.

Each shipped teacher is a ``model.pt`` of a finished run (weights, architecture, recipe,
history) in ``perceptcoh/engine/teachers/NAME.pt``, with ``NAME.json`` beside it: its
SHA-256, size, recipe, the command that trains it again, its test metrics and the
provenance of the run. :func:`shipped_teacher` returns the file only after checking its
hash, so a truncated download, a Git LFS pointer or an edited file is refused by name.

    from perceptcoh.engine.shipped import shipped_teacher
    teacher_checkpoint = shipped_teacher("cifar100-resnet20")

``scripts/ship_teacher.py`` writes both files from a finished run.
"""

from __future__ import annotations

import json
from pathlib import Path

from .checkpoint import CheckpointError
from .files import file_sha256

__all__ = ["TEACHERS_DIR", "shipped_teachers", "shipped_record", "shipped_teacher"]

TEACHERS_DIR = Path(__file__).resolve().parent / "teachers"


def shipped_teachers() -> list[str]:
    """Names of the teachers shipped in :data:`TEACHERS_DIR`."""
    return sorted(path.stem for path in TEACHERS_DIR.glob("*.json"))


def shipped_record(name: str) -> dict:
    """The record (``NAME.json``) of shipped teacher ``name``.

    Raises:
        ValueError: no teacher of that name is shipped (the message lists those that are).
    """
    record = TEACHERS_DIR / f"{name}.json"
    if not record.is_file():
        known = ", ".join(shipped_teachers()) or "none"
        raise ValueError(f"no shipped teacher {name!r}; shipped: {known}")
    return json.loads(record.read_text())


def shipped_teacher(name: str) -> str:
    """The path of shipped teacher ``name``'s checkpoint, after checking its SHA-256.

    Raises:
        ValueError: no teacher of that name is shipped.
        CheckpointError: the file is missing or its SHA-256 is not the recorded one.
    """
    record = shipped_record(name)
    path = TEACHERS_DIR / record["file"]
    if not path.is_file():
        raise CheckpointError(f"shipped teacher {name!r}: {path} is missing; reinstall the "
                              f"package or train it again with: {record['command']}")
    digest = file_sha256(path)
    if digest != record["sha256"]:
        raise CheckpointError(
            f"shipped teacher {name!r}: {path} has SHA-256 {digest}, expected "
            f"{record['sha256']} (a truncated or replaced file, or a Git LFS pointer); "
            f"reinstall the package or train it again with: {record['command']}"
        )
    return str(path)
