"""Execute every chapter of the book and print a fingerprint of what it computes: the proof,
for a refactor, that nothing computed changed.

    python scripts/chapter_fingerprints.py --json before.json          # on the old tree
    python scripts/chapter_fingerprints.py --json after.json           # on the new tree
    python scripts/chapter_fingerprints.py --compare before.json after.json

Each chapter (``_toc.yml``'s order) is executed top to bottom with nbclient in its own
folder, as ``jupyter-book build`` does. Its fingerprint is the SHA-256 of the numbers in
every text, HTML, Markdown and LaTeX output, in order, and of the SHA-256 of every image.
Left out, because they change from one execution to the next: timings (a number followed by
a unit of time, or by "/s", and every cell of an HTML table column whose header names a
time or a memory size, such as "train s", "ms / call" or "peak MB"), dates and times, and hexadecimal hashes (git
commits, SHA-256). ``--compare`` names, per chapter, the numbers and images that differ.

The chapters import ``perceptcoh`` as their kernel finds it: to fingerprint another checkout
(a worktree of the old commit, say) while the library is installed in editable mode from
this one, put that checkout first with ``PYTHONPATH=/path/to/checkout``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import json
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]

# Removed before numbers are read: what differs between two executions of the same code.
VOLATILE = [
    re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?(\.\d+)?([+-]\d{2}:\d{2}|Z)?"),
    re.compile(r"\d{4}-\d{2}-\d{2}"),
    re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,64}\b"),
    re.compile(r"[-+]?\d[\d,]*(\.\d+)?\s*(ms|s|sec|secs|seconds?|min|mins|minutes?|h|hours?)"
               r"\b(?!\s*\w*\s*=)"),
    re.compile(r"[-+]?\d[\d,]*(\.\d+)?\s*[\w-]*\s*/\s*s\b"),
]
# A table column whose header matches this holds timings, or the peak memory of a run: both
# measured, so they differ from one execution to the next.
TIME_HEADER = re.compile(r"(\b(ms|s|sec|seconds?|min|minutes?|time|speed|images/s|MB|MiB|GB"
                         r"|GiB|memory)\b|/\s*s\b)", re.IGNORECASE)
TABLE = re.compile(r"<table.*?</table>", re.DOTALL | re.IGNORECASE)
ROW = re.compile(r"<tr.*?</tr>", re.DOTALL | re.IGNORECASE)
CELL = re.compile(r"<t([hd])[^>]*>(.*?)</t[hd]>", re.DOTALL | re.IGNORECASE)
TAG = re.compile(r"<[^>]+>")
NUMBER = re.compile(r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
TEXT_TYPES = ("text/plain", "text/html", "text/markdown", "text/latex")


def chapters() -> list[Path]:
    """Every notebook of the book, in the table of contents' order."""
    toc = (ROOT / "_toc.yml").read_text()
    files = [ROOT / f"{name}.ipynb" for name in re.findall(r"(?:root|file):\s*(\S+)", toc)]
    return [path for path in files if path.is_file()]


def _untimed_table(match: re.Match) -> str:
    """An HTML table as text, one cell after another, without its timing columns."""
    timing, kept = set(), []
    for row in ROW.findall(match.group(0)):
        cells = CELL.findall(row)
        if all(kind.lower() == "h" for kind, _ in cells):
            timing = {i for i, (_, text) in enumerate(cells)
                      if TIME_HEADER.search(html.unescape(TAG.sub(" ", text)))}
            kept += [TAG.sub(" ", text) for _, text in cells]
            continue
        kept += [TAG.sub(" ", text) for i, (_, text) in enumerate(cells) if i not in timing]
    return " | ".join(kept)


def numbers(text: str) -> list[str]:
    text = TABLE.sub(_untimed_table, text)
    for pattern in VOLATILE:
        text = pattern.sub(" ", text)
    return [match.replace(",", "") for match in NUMBER.findall(text)
            if any(character.isdigit() for character in match)]


def fingerprint(notebook: nbformat.NotebookNode) -> dict:
    """The numbers and image hashes of ``notebook``'s outputs, and their SHA-256."""
    found: list[str] = []
    images: list[str] = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                found += numbers(output.get("text", ""))
            elif output.get("output_type") == "error":
                found.append(f"error:{output.get('ename')}")
            data = output.get("data", {})
            for kind in TEXT_TYPES:
                if kind in data:
                    text = data[kind]
                    found += numbers("".join(text) if isinstance(text, list) else text)
            for kind, value in data.items():
                if kind.startswith("image/"):
                    raw = base64.b64decode(value) if kind != "image/svg+xml" else value.encode()
                    images.append(hashlib.sha256(raw).hexdigest())
    digest = hashlib.sha256(json.dumps([found, images]).encode()).hexdigest()[:16]
    return {"fingerprint": digest, "numbers": found, "images": images}


def execute(path: Path, timeout: int) -> tuple[nbformat.NotebookNode, float]:
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return notebook, time.perf_counter() - start


def compare(before: dict, after: dict) -> int:
    """Print what differs between two ``--json`` files; 1 if anything does."""
    different = 0
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old is None or new is None:
            print(f"{name}: only in {'after' if old is None else 'before'}")
            different = 1
            continue
        if old["fingerprint"] == new["fingerprint"]:
            print(f"{name}: same ({old['fingerprint']})")
            continue
        different = 1
        print(f"{name}: {old['fingerprint']} -> {new['fingerprint']}")
        if old["images"] != new["images"]:
            changed = sum(a != b for a, b in zip(old["images"], new["images"]))
            print(f"  images: {changed} of {len(old['images'])} differ "
                  f"({len(old['images'])} before, {len(new['images'])} after)")
        if old["numbers"] != new["numbers"]:
            pairs = [(i, a, b) for i, (a, b) in enumerate(zip(old["numbers"], new["numbers"]))
                     if a != b]
            print(f"  numbers: {len(old['numbers'])} before, {len(new['numbers'])} after; "
                  f"first differences: {pairs[:8]}")
    return different


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write every chapter's numbers and image hashes here")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"),
                        help="compare two --json files instead of executing")
    parser.add_argument("--only", nargs="+", default=None,
                        help="chapters to execute (names as in _toc.yml, e.g. book/intro)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    args = parser.parse_args(argv)
    if args.compare:
        before, after = (json.loads(Path(path).read_text()) for path in args.compare)
        return compare(before, after)
    results = {}
    for path in chapters():
        name = str(path.relative_to(ROOT).with_suffix(""))
        if args.only and name not in args.only:
            continue
        notebook, seconds = execute(path, args.timeout)
        results[name] = fingerprint(notebook)
        print(f"{name:40} {results[name]['fingerprint']}  {len(results[name]['numbers']):5} "
              f"numbers {len(results[name]['images']):3} images  ({seconds:.0f} s)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
