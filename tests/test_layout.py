"""The layout of the package: the core never imports the engine, no module is longer than
:data:`MAX_LINES`, and no modules import each other in a circle."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import deque
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "perceptcoh"
MAX_LINES = 500

CORE = ["perceptcoh", "perceptcoh.dissimilarity", "perceptcoh.ranking", "perceptcoh.perception",
        "perceptcoh.loss", "perceptcoh.baselines", "perceptcoh.baselines.common",
        "perceptcoh.baselines.fitnet", "perceptcoh.baselines.sp", "perceptcoh.baselines.cc",
        "perceptcoh.baselines.rkd", "perceptcoh.baselines.pkt", "perceptcoh.baselines.kd",
        "perceptcoh.metrics", "perceptcoh.models", "perceptcoh.registry"]


def test_the_core_imports_without_the_engine_and_its_dependencies():
    """In a fresh interpreter where the engine and the engine's libraries cannot be
    imported, every core module still imports and computes a loss."""
    script = f"""
import sys
for blocked in ("perceptcoh.engine", "torchvision", "sklearn", "scipy", "tqdm", "PIL"):
    sys.modules[blocked] = None  # any import of it raises ImportError
import importlib
for name in {CORE!r}:
    importlib.import_module(name)
import torch, perceptcoh
value = perceptcoh.PerceptionCoherenceLoss()(torch.randn(8, 3), torch.randn(8, 5))
assert torch.isfinite(value)
loaded = sorted(name for name, module in sys.modules.items()
                if name.startswith("perceptcoh.engine") and module is not None)
assert not loaded, loaded
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


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
