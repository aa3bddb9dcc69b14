"""Checksums of a dataset's files: an offline copy is compared with the ``SHA256SUMS`` file
of its folder before it is decoded, so that a truncated or damaged copy fails loudly."""

from __future__ import annotations

from pathlib import Path

from ..files import file_sha256
from .common import CorruptDataError

__all__ = ["verify_checksums"]


def verify_checksums(directory: Path, files: list[Path]) -> None:
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

