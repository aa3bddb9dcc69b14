"""README.md's promises: its two commands are what CI runs, and its example runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def fenced_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def test_readme_opens_with_exactly_two_commands_that_ci_runs():
    commands = [block.strip() for block in fenced_blocks("bash")]
    assert len(commands) == 2
    install_and_build, run_tests = commands
    assert "python scripts/lock.py install" in install_and_build
    assert "jupyter-book build . -W" in install_and_build
    assert "pytest tests --nbval-lax book" in run_tests
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert install_and_build in ci_lines and run_tests in ci_lines
    assert ci_lines.index(install_and_build) < ci_lines.index(run_tests)


def test_readme_example_runs(capsys):
    (example,) = fenced_blocks("python")
    exec(compile(example, "README.md", "exec"), {})
    gap = float(capsys.readouterr().out.strip().removeprefix("tensor(").removesuffix(")"))
    assert 0.0 <= gap <= 1.0
