"""Saved results documents (``results/*.json``) as a chapter loads them: once, near its
top, from the repository that holds the book.

    document = load_saved("cifar100-comparison.json",
                          "python -m perceptcoh experiment comparison --scale full")

A missing document is a :class:`FileNotFoundError` that names the command writing it.
A chapter whose document may not be saved yet (the full-scale chapters,
``book/experiments/03_cifar100.ipynb`` and ``04_ablations.ipynb``, before their GPU run)
passes ``missing_ok=True`` and gets ``None`` with that sentence printed, once.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["repository_root", "load_saved", "missing_sentence"]


def repository_root(start: Path | None = None) -> Path:
    """The repository that holds the book: the first of ``start`` (default: the current
    directory) and its parents with a ``_toc.yml``."""
    start = Path.cwd() if start is None else Path(start)
    for folder in [start, *start.parents]:
        if (folder / "_toc.yml").exists():
            return folder
    raise FileNotFoundError(f"no _toc.yml in {start} or its parents: not in the book")


def missing_sentence(name: str, command: str) -> str:
    """What a chapter says of a document that is not saved yet, in lines short enough for
    an output block of the book's column (the command on a line of its own)."""
    return (f"results/{name} is not saved yet,\nso this chapter shows no result from it. "
            f"It is written by:\n  {command}")


def load_saved(name: str, command: str, *, missing_ok: bool = False,
               root: Path | None = None) -> dict | None:
    """The results document ``results/name`` of the repository (:func:`repository_root`
    of ``root``).

    When it is missing: raises :class:`FileNotFoundError` naming ``command``, the command
    that writes it; with ``missing_ok``, prints :func:`missing_sentence` and returns
    ``None`` instead.
    """
    path = repository_root(root) / "results" / name
    if path.exists():
        return json.loads(path.read_text())
    if not missing_ok:
        raise FileNotFoundError(missing_sentence(name, command))
    print(missing_sentence(name, command))
    return None
