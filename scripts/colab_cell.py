"""Write the first code cell of every notebook of the book from ``_config.yml``.

On Colab that cell clones the book's repository (``repository.url``) at the book's branch
(``repository.branch``, the one the launch buttons open), installs the library from the
clone (``scripts/colab_setup.py``: an installed torch and torchvision that meet the
library's lower bounds are kept, and the versions found are printed), and moves into the
notebook's folder, so that saved results, the shipped teacher and the benchmarks are where
the notebook looks; elsewhere it does nothing. The clone is where the first run started
(``/content/perceptcoh``): run again, from the notebook's folder inside it, or in a
restarted runtime, the cell finds the same clone and moves into the same folder. The
repository is named once, in ``_config.yml``:

    python scripts/colab_cell.py           # rewrite the cells after editing _config.yml
    python scripts/colab_cell.py --check   # exit 1, naming them, if a cell is not current

``tests/test_launch.py`` runs the check.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
MARKER = '"google.colab" in sys.modules'

TEMPLATE = '''import os
import runpy
import subprocess
import sys

if "google.colab" in sys.modules:  # clone the book once, install from it
    url, branch = "{url}", "{branch}"
    clone = os.environ.setdefault(
        "PERCEPTCOH_CLONE", os.path.abspath("perceptcoh"))
    if not os.path.isdir(os.path.join(clone, ".git")):
        subprocess.run(["git", "clone", "-q", "--depth", "1", "--branch",
                        branch, url, clone], check=True)
    setup = os.path.join(clone, "scripts", "colab_setup.py")
    # keeps Colab's torch and torchvision where recent enough
    runpy.run_path(setup)["install"](clone, get_ipython())
    os.chdir(os.path.join(clone, "{folder}"))'''


def repository() -> tuple[str, str]:
    """``(url, branch)`` of the book's repository, from ``_config.yml``."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    return config["url"], config["branch"]


def notebooks() -> list[Path]:
    return sorted((ROOT / "book").rglob("*.ipynb"))


def colab_cell(notebook: Path) -> str:
    """The first code cell ``notebook`` must have."""
    url, branch = repository()
    folder = notebook.parent.relative_to(ROOT).as_posix()
    return TEMPLATE.format(url=url, branch=branch, folder=folder)


def first_code_cell(book: nbformat.NotebookNode):
    return next(cell for cell in book.cells if cell.cell_type == "code")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a "
                        "notebook's first code cell is not the current one")
    arguments = parser.parse_args(argv)
    stale = []
    for path in notebooks():
        book = nbformat.read(path, as_version=4)
        cell = first_code_cell(book)
        expected = colab_cell(path)
        if cell.source == expected:
            continue
        stale.append(path.relative_to(ROOT))
        if not arguments.check:
            if MARKER not in cell.source:  # no Colab cell yet: add one before the first
                cell = nbformat.v4.new_code_cell()
                book.cells.insert(next(i for i, c in enumerate(book.cells)
                                       if c.cell_type == "code"), cell)
            cell.source = expected
            cell.metadata["tags"] = ["hide-input"]
            nbformat.write(book, path)
    if arguments.check and stale:
        print("not current: " + ", ".join(map(str, stale)) + "; run python scripts/colab_cell.py",
              file=sys.stderr)
        return 1
    for path in stale:
        print(f"wrote the Colab cell of {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
