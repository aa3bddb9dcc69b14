"""The book's notebooks are committed without outputs (README: the build runs every notebook,
so what the book shows is what the current code prints); scripts/strip_outputs.py strips them."""

import runpy
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").rglob("*.ipynb"))


def test_the_book_has_notebooks():
    assert len(NOTEBOOKS) >= 9


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: str(path.relative_to(ROOT)))
def test_notebook_is_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"cell {index} holds outputs: run python scripts/strip_outputs.py {path.relative_to(ROOT)}"
            )


LINES = runpy.run_path(str(ROOT / "scripts" / "notebook_lines.py"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: str(path.relative_to(ROOT)))
def test_visible_code_teaches_in_short_cells(path):
    """scripts/notebook_lines.py's limits: no visible cell over 30 lines, at most 200 visible
    lines in an experiment chapter and 250 in a theory chapter, no line over 76 columns,
    and prose after every visible cell."""
    assert LINES["measure"](path)["problems"] == []


def test_the_book_holds_under_2000_lines_of_code():
    total = sum(LINES["measure"](path)["total"] for path in NOTEBOOKS)
    assert total < LINES["BOOK_LIMIT"], total
