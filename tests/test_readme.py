"""README.md's promises: its two commands are what CI runs, and its example runs."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from perceptcoh import perception_gap

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


def brute_force_ranks(features: torch.Tensor) -> torch.Tensor:
    """``R_ij = #{k != i : D_ik <= D_ij} / (n - 1)``, ``R_ii = 0``, straight from the formula:
    float64 Euclidean distances from coordinate differences (not the library's Gram matrix)
    and every comparison ``D_ik <= D_ij`` made (no sorting)."""
    x = features.double()
    n = x.shape[0]
    distances = (x[:, None, :] - x[None, :, :]).square().sum(dim=-1).sqrt()
    others = ~torch.eye(n, dtype=torch.bool)
    # at_most[i, j, k] = D_ik <= D_ij, counted over k != i
    at_most = (distances[:, None, :] <= distances[:, :, None]) & others[:, None, :]
    return at_most.sum(dim=-1).double() / (n - 1) * others


def test_readme_example_runs(capsys):
    (example,) = fenced_blocks("python")
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    printed = capsys.readouterr().out.strip()
    # The printed gap is the gap of the trained student's features (the forward pass is
    # deterministic on a CPU, so recomputing it prints the same text) ...
    with torch.no_grad():
        student_features = namespace["student"](namespace["inputs"])
    teacher_features = namespace["teacher_features"]
    gap = perception_gap(student_features, teacher_features)
    assert printed == str(gap)
    # ... and that gap is mean_{i != j} |R^teacher_ij - R^student_ij| by brute force.
    n = student_features.shape[0]
    expected = float((brute_force_ranks(teacher_features)
                      - brute_force_ranks(student_features)).abs().sum() / (n * (n - 1)))
    # The library ranks float32 distances; the reference float64 ones. Two nearly equal
    # distances of a row may then compare the other way round, and each such comparison moves
    # one count by 1 and the gap by 1 / (n (n - 1)^2) = 4.8e-7 at n = 128. Over 40 seeds at
    # most 3 did; 20 are allowed, plus the float32 rounding of the result. A wrong rank or
    # normalisation moves the gap far more (dividing by n instead of n - 1: about 2e-3).
    flips = 20 / (n * (n - 1) ** 2)
    assert abs(float(gap) - expected) <= flips + 2 ** -24 * expected
