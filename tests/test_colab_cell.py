"""The Colab cell (scripts/colab_cell.py) run as Colab would, on a CPU machine: google.colab
faked, a local repository in place of GitHub, and ``%pip`` recorded instead of run."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
import types
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = runpy.run_path(str(ROOT / "scripts" / "colab_cell.py"))
NOTEBOOK = ROOT / "book" / "theory" / "04_loss.ipynb"


class Shell:
    """``get_ipython()``: records the ``%pip`` lines."""

    def __init__(self) -> None:
        self.pip: list[str] = []

    def run_line_magic(self, name: str, line: str) -> None:
        assert name == "pip"
        self.pip.append(line)


def origin(tmp_path: Path, pyproject: str) -> str:
    """A repository that stands in for the book's: its pyproject.toml and the notebook's
    folder, on the configured branch."""
    repository = tmp_path / "origin"
    (repository / "book" / "theory").mkdir(parents=True)
    (repository / "pyproject.toml").write_text(pyproject)
    (repository / "book" / "theory" / "04_loss.ipynb").write_text("{}")
    (repository / "scripts").mkdir()
    setup = (ROOT / "scripts" / "colab_setup.py").read_text()
    (repository / "scripts" / "colab_setup.py").write_text(setup)
    _, branch = SCRIPT["repository"]()
    git = ["git", "-C", str(repository), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git[:3], "init", "-q", "-b", branch], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "origin"], check=True)
    return repository.as_uri()


@pytest.fixture
def colab(tmp_path, monkeypatch):
    """A Colab runtime starting in ``tmp_path/content``; returns ``run(cell)``."""
    content = tmp_path / "content"
    content.mkdir()
    monkeypatch.chdir(content)
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PERCEPTCOH_CLONE", "")
    monkeypatch.delenv("PERCEPTCOH_CLONE")  # restored (unset) after the test
    shell = Shell()

    def run(cell: str) -> Shell:
        exec(compile(cell, "colab-cell", "exec"), {"get_ipython": lambda: shell})
        return shell

    return content, run


def cell_for(url: str) -> str:
    configured, _ = SCRIPT["repository"]()
    return SCRIPT["colab_cell"](NOTEBOOK).replace(configured, url)


def test_the_cell_run_twice_or_after_a_restart_leaves_the_same_folder(tmp_path, colab, capsys):
    content, run = colab
    cell = cell_for(origin(tmp_path, (ROOT / "pyproject.toml").read_text()))
    folder = content / "perceptcoh" / "book" / "theory"
    run(cell)
    assert Path.cwd() == folder
    run(cell)  # a second run starts in the notebook's folder
    assert Path.cwd() == folder
    assert not (folder / "perceptcoh").exists()
    os.environ.pop("PERCEPTCOH_CLONE")  # a restarted runtime: a new kernel, back in content
    os.chdir(content)
    shell = run(cell)
    assert Path.cwd() == folder
    assert [p.name for p in content.iterdir()] == ["perceptcoh"]
    assert str(content / "perceptcoh") in sys.path
    # torch and torchvision meet the bounds here: kept, pinned, and said so.
    clone = content / "perceptcoh"
    assert shell.pip == [f"install -q -e {clone} -c {clone / '.colab-constraints.txt'}"] * 3
    pins = (clone / ".colab-constraints.txt").read_text().split()
    assert pins == [f"torch=={version('torch')}", f"torchvision=={version('torchvision')}"]
    assert f"torch {version('torch')}: kept" in capsys.readouterr().out


def test_a_torch_older_than_the_bound_is_replaced_and_said_so(tmp_path, colab, capsys):
    _, run = colab
    pyproject = 'dependencies = ["torch>=99.0", "numpy"]\ntrain = ["torchvision>=0.1"]\n'
    shell = run(cell_for(origin(tmp_path, pyproject)))
    clone = Path(os.environ["PERCEPTCOH_CLONE"])
    assert shell.pip == [f'install -q -e {clone} "torch>=99.0" -c {clone / ".colab-constraints.txt"}']
    assert (clone / ".colab-constraints.txt").read_text() == f"torchvision=={version('torchvision')}\n"
    out = capsys.readouterr().out
    assert f"torch {version('torch')}: the library needs torch>=99.0; pip installs it" in out


def test_outside_colab_the_cell_does_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(compile(SCRIPT["colab_cell"](NOTEBOOK), "cell", "exec"), {})
    assert Path.cwd() == tmp_path and not any(tmp_path.iterdir())
