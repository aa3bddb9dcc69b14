"""Remove every output from the book's notebooks (run before committing one).

    python scripts/strip_outputs.py [NOTEBOOK ...]    # default: every notebook under book/

The rule (README): notebooks are committed without outputs, and `jupyter-book build` runs each
of them, so the book always shows what the current code prints in the environment that built
it. tests/test_notebooks.py fails on a notebook that still holds outputs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def strip(path: Path) -> bool:
    """Clear outputs, execution counts and execution timings; True when the file changed."""
    notebook = nbformat.read(path, as_version=4)
    before = nbformat.writes(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
    after = nbformat.writes(notebook)
    if after != before:
        path.write_text(after)
    return after != before


def main(paths: list[str]) -> int:
    notebooks = [Path(p) for p in paths] or sorted((ROOT / "book").rglob("*.ipynb"))
    for path in notebooks:
        if strip(path):
            print(f"stripped {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
