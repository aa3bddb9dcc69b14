"""The book's notebooks are committed without outputs (README: the build runs every notebook,
so what the book shows is what the current code prints); scripts/strip_outputs.py strips them."""

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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: str(path.relative_to(ROOT)))
def test_code_cells_fit_88_columns(path):
    """The book's column shows about 88 characters of code; a longer line scrolls."""
    notebook = nbformat.read(path, as_version=4)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            for line in cell.source.splitlines():
                assert len(line) <= 88, f"cell {index}: {len(line)} columns: {line.strip()[:60]}"
