"""The layout of the package: three wings (the core, the training engine
``perceptcoh.engine``, and what the chapters call, ``perceptcoh.book``), where the core imports
neither of the others and the engine never imports the book's package; every module of the
book's package serves a chapter; no module is longer than :data:`MAX_LINES`, and no modules
import each other in a circle."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import deque
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "perceptcoh"
MAX_LINES = 500

WINGS = ("perceptcoh.engine", "perceptcoh.book")
BOOK = PACKAGE.parent / "book"


def in_wing(name: str, wing: str) -> bool:
    """Whether module ``name`` belongs to ``wing``; ``python -m perceptcoh``
    (``perceptcoh.__main__``, the engine's command line) belongs to the engine."""
    if name == "perceptcoh.__main__":
        return wing == "perceptcoh.engine"
    return name == wing or name.startswith(wing + ".")


def core_modules() -> list[str]:
    """Every module of the core: the package but the engine and the book's package."""
    return [name for name in modules() if not any(in_wing(name, wing) for wing in WINGS)]


def test_the_core_imports_without_the_engine_and_its_dependencies():
    """In a fresh interpreter where the engine, the book's package and the engine's
    libraries cannot be imported, every core module still imports and computes a loss."""
    script = f"""
import sys
for blocked in ("perceptcoh.engine", "perceptcoh.book", "torchvision", "sklearn", "scipy",
                "tqdm", "PIL", "matplotlib", "IPython"):
    sys.modules[blocked] = None  # any import of it raises ImportError
import importlib
for name in {core_modules()!r}:
    importlib.import_module(name)
import torch, perceptcoh
value = perceptcoh.PerceptionCoherenceLoss()(torch.randn(8, 3), torch.randn(8, 5))
assert torch.isfinite(value)
loaded = sorted(name for name, module in sys.modules.items()
                if name.startswith(("perceptcoh.engine", "perceptcoh.book"))
                and module is not None)
assert not loaded, loaded
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_each_wing_imports_only_the_wings_below_it():
    """The core imports neither the engine nor the book's package, anywhere (inside
    functions too); the engine never imports the book's package."""
    graph = import_graph()
    wrong = sorted(f"{name} -> {target}" for name, targets in graph.items()
                   for target in targets
                   if (name in core_modules() and target not in core_modules())
                   or (in_wing(name, "perceptcoh.engine") and in_wing(target, "perceptcoh.book")))
    assert not wrong, "imports across the wings:\n" + "\n".join(wrong)
    assert any(in_wing(name, "perceptcoh.book") for name in graph), "no book package"


def chapter_imports() -> set[str]:
    """The modules of the book's package that the chapters' code cells import."""
    known = modules()
    found = set()
    for notebook in sorted(BOOK.rglob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        code = "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")
        tree = ast.parse("\n".join(line for line in code.splitlines()
                                   if not line.lstrip().startswith(("%", "!"))))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    found.add(target if target in known else node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
    return {name for name in found if in_wing(name, "perceptcoh.book")}


def test_every_module_of_the_book_package_is_called_by_a_chapter():
    """Each module of ``perceptcoh.book`` is imported by a chapter, or by another module of
    the package that a chapter reaches, and has its tests in ``tests/book/``, named after
    it; every test file there names a module."""
    graph = import_graph()
    reached, frontier = set(chapter_imports()), deque(chapter_imports())
    while frontier:
        for target in graph.get(frontier.popleft(), set()):
            if in_wing(target, "perceptcoh.book") and target not in reached:
                reached.add(target)
                frontier.append(target)
    book = {name for name in modules() if in_wing(name, "perceptcoh.book")}
    assert book - {"perceptcoh.book"}, "no module in perceptcoh.book"
    assert book - {"perceptcoh.book"} <= reached, f"called by no chapter: {book - reached}"
    tested = {path.stem.removeprefix("test_")
              for path in (PACKAGE.parent / "tests" / "book").glob("test_*.py")}
    names = {name.rpartition(".")[2] for name in book - {"perceptcoh.book"}}
    assert names == tested, (names - tested, tested - names)


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name; a package is its ``__init__.py``."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports anywhere: at the top, inside functions,
    under ``if TYPE_CHECKING``. ``from X import Y`` imports the module ``X.Y`` if there is
    one, else ``X``; relative imports are resolved against ``name``'s package."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # one level is the package itself, each further one its parent
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in known else base)
    return {target for target in targets if target in known}


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The shortest circle of imports through each module that is on one, as the modules
    along it with the first repeated at the end; each circle once, from its module that
    sorts first."""
    found = {}
    for start in sorted(graph):
        paths = {start: [start]}
        frontier = deque([start])
        while frontier:  # breadth first, until an import leads back to start
            node = frontier.popleft()
            if start in graph[node]:
                circle = paths[node]
                first = circle.index(min(circle))
                key = tuple(circle[first:] + circle[:first])
                found.setdefault(key, [*key, key[0]])
                break
            for target in sorted(graph[node] - paths.keys()):
                paths[target] = paths[node] + [target]
                frontier.append(target)
    return sorted(found.values())


def test_no_module_is_longer_than_the_limit():
    lengths = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    too_long = {name: count for name, count in lengths.items() if count > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"


def test_no_modules_import_each_other_in_a_circle():
    found = cycles(import_graph())
    assert not found, "import circles:\n" + "\n".join(" -> ".join(cycle) for cycle in found)


def test_the_circle_finder_finds_circles_and_resolves_imports(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c", "a"], ["e", "e"]]
    assert cycles({"s": {"c", "d"}, "c": {"s"}, "d": {"s"}}) == [["c", "s", "c"], ["d", "s", "d"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    package = tmp_path / "p"
    (package / "q").mkdir(parents=True)
    (package / "__init__.py").write_text("from .m import x\n")
    (package / "m.py").write_text("import p.q.r\nx = 1\n")
    (package / "q" / "__init__.py").write_text("from .. import m\n")
    (package / "q" / "r.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..q import r\n"
        "def f():\n    from . import n\n    from .. import q\n")
    known = {"p": package / "__init__.py", "p.m": package / "m.py",
             "p.q": package / "q" / "__init__.py", "p.q.r": package / "q" / "r.py"}
    graph = {name: imports(name, path, known) for name, path in known.items()}
    assert graph == {"p": {"p.m"}, "p.m": {"p.q.r"}, "p.q": {"p.m"}, "p.q.r": {"p.q.r", "p.q"}}
