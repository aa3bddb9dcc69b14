"""Write the first code cell of every notebook of the book from ``_config.yml``.

On Colab that cell clones the book's repository (``repository.url``) at the book's branch
(``repository.branch``, the one the launch buttons open), installs the library from the
clone, and moves into the notebook's folder, so that saved results, the shipped teacher and
the benchmarks are where the notebook looks; elsewhere it does nothing. Run again, or in a
restarted runtime, it finds the same clone and moves into the same folder. It keeps an
installed torch and torchvision that meet the library's lower bounds (``pyproject.toml``),
pinning them in a pip constraint, and prints the versions it found. The repository is
named once, in ``_config.yml``:

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
import subprocess
import sys

if "google.colab" in sys.modules:
    # The book's repository at the book's branch: the library, the saved results and the
    # shipped teacher. _config.yml names it; scripts/colab_cell.py writes this cell.
    repository, branch = "{url}", "{branch}"
    # One clone, where the first run started (/content/perceptcoh): a re-run, which
    # starts in the notebook's folder inside it, and a restarted runtime find it again.
    clone = os.environ.setdefault("PERCEPTCOH_CLONE", os.path.abspath("perceptcoh"))
    if not os.path.isdir(os.path.join(clone, ".git")):
        subprocess.run(["git", "clone", "-q", "--depth", "1", "--branch", branch,
                        repository, clone], check=True)
    # Colab's torch and torchvision stay when they meet the library's lower bounds
    # (pinned by a pip constraint): a new torch is a download of several GB.
    import re
    from importlib.metadata import PackageNotFoundError, version

    def release(text):  # "2.9.1+cu126" -> (2, 9, 1)
        return tuple(int(n) for n in re.findall(r"\\d+", text.split("+")[0])[:3])

    bounds = dict(re.findall(r'"(torch|torchvision)>=([\\d.]+)"',
                             open(os.path.join(clone, "pyproject.toml")).read()))
    constraints, wanted = os.path.join(clone, ".colab-constraints.txt"), []
    with open(constraints, "w") as pins:
        for package, lowest in sorted(bounds.items()):
            try:
                found = version(package)
            except PackageNotFoundError:
                found = None
            if found is not None and release(found) >= release(lowest):
                print(f"{{package}} {{found}}: kept")
                pins.write(f"{{package}}=={{found}}\\n")
            else:
                print(f"{{package}} {{found or 'not installed'}}: the library needs "
                      f"{{package}}>={{lowest}}; pip installs it")
                wanted.append(f'"{{package}}>={{lowest}}"')  # quoted: %pip runs a shell
    install = " ".join(["install -q -e", clone, *wanted, "-c", constraints])
    get_ipython().run_line_magic("pip", install)
    sys.path.insert(0, clone)  # the kernel predates the install
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
