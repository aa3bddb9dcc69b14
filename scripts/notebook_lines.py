"""Measure the book's code as a reader sees it: per chapter, the code lines of its visible
cells, its largest visible cell, and all its code (hidden cells included).

    python scripts/notebook_lines.py            # the table
    python scripts/notebook_lines.py --check    # exit 1, naming them, where a limit is broken

A cell is hidden when its tags hide its input (``hide-input``, ``remove-input``,
``hide-cell``, ``remove-cell``). The limits, checked by ``tests/test_notebooks.py``: no
visible cell over 30 lines; at most 200 visible lines in an experiment chapter (and the
quickstart) and 250 in a theory chapter; under 2,000 lines of code in the whole book; no
code line over 76 characters (what the book's column shows at 1280 px); and every visible
code cell followed, after any hidden cells, by prose that says what it showed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
HIDING_TAGS = {"hide-input", "remove-input", "hide-cell", "remove-cell"}
CELL_LIMIT = 30
THEORY_LIMIT, EXPERIMENT_LIMIT = 250, 200
BOOK_LIMIT = 2000
COLUMNS = 76


def hidden(cell) -> bool:
    return bool(HIDING_TAGS & set(cell.get("metadata", {}).get("tags", [])))


def lines(cell) -> int:
    return len(cell.source.splitlines())


def measure(path: Path) -> dict:
    """Counts of one notebook, and the places where it breaks a per-chapter limit."""
    cells = nbformat.read(path, as_version=4).cells
    code = [(index, cell) for index, cell in enumerate(cells) if cell.cell_type == "code"]
    visible = [(index, cell) for index, cell in code if not hidden(cell)]
    limit = THEORY_LIMIT if path.parent.name == "theory" else EXPERIMENT_LIMIT
    problems = []
    for index, cell in visible:
        if lines(cell) > CELL_LIMIT:
            problems.append(f"cell {index} has {lines(cell)} lines (> {CELL_LIMIT})")
        following = next((c for c in cells[index + 1:] if not (c.cell_type == "code"
                                                                 and hidden(c))), None)
        if following is None or following.cell_type != "markdown":
            problems.append(f"cell {index} is not followed by prose")
    for index, cell in code:
        for line in cell.source.splitlines():
            if len(line) > COLUMNS:
                problems.append(f"cell {index}: a line of {len(line)} columns (> {COLUMNS})")
    visible_lines = sum(lines(cell) for _, cell in visible)
    if visible_lines > limit:
        problems.append(f"{visible_lines} visible code lines (> {limit})")
    return {"visible": visible_lines, "largest": max((lines(c) for _, c in visible), default=0),
            "total": sum(lines(cell) for _, cell in code), "problems": problems}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 where a limit is broken")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: the whole book")
    arguments = parser.parse_args(argv)
    paths = [p.resolve() for p in arguments.notebooks] or sorted((ROOT / "book").rglob("*.ipynb"))
    print(f"{'chapter':42s} {'visible':>7s} {'largest':>7s} {'total':>6s}")
    failed, total = False, 0
    for path in paths:
        counts = measure(path)
        total += counts["total"]
        print(f"{str(path.relative_to(ROOT)):42s} {counts['visible']:7d} {counts['largest']:7d} "
              f"{counts['total']:6d}")
        for problem in counts["problems"]:
            print(f"    {problem}")
            failed = True
    print(f"{'all code, hidden cells included':42s} {'':7s} {'':7s} {total:6d}")
    if not arguments.notebooks and total >= BOOK_LIMIT:
        print(f"    the book holds {total} code lines (>= {BOOK_LIMIT})")
        failed = True
    return 1 if arguments.check and failed else 0


if __name__ == "__main__":
    sys.exit(main())
