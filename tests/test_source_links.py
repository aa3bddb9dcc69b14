"""The book's links to the library's source are relative (the repository's address is named
once, in _config.yml) and point at files that exist: the build turns each into a link to the
file, and a missing one would fail it."""

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").rglob("*.ipynb"))
LINK = re.compile(r"\]\(([^)\s]+)\)")


def source_links(path: Path) -> list[str]:
    """Relative links of the notebook's prose to files that are not pages of the book."""
    cells = nbformat.read(path, as_version=4).cells
    targets = [target for cell in cells if cell.cell_type == "markdown"
               for target in LINK.findall(cell.source)]
    return [target for target in targets
            if "://" not in target and not target.startswith("#")
            and Path(target.split("#")[0]).suffix not in ("", ".ipynb", ".md")]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: str(path.relative_to(ROOT)))
def test_links_to_source_files_resolve_inside_the_repository(path):
    for target in source_links(path):
        file = (path.parent / target.split("#")[0]).resolve()
        assert file.is_file(), f"{target} does not exist"
        assert ROOT in file.parents, f"{target} is outside the repository"


def test_the_loss_chapter_links_to_its_kernel():
    links = source_links(ROOT / "book" / "theory" / "04_loss.ipynb")
    assert "../../perceptcoh/loss.py" in links and "../../perceptcoh/ranking.py" in links
