"""The locked environment (scripts/lock.py): the lock covers requirements.in, agrees with
pyproject.toml's ranges, and every way an environment can differ from it is reported with the
package's name and the command that fixes it."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("lock", ROOT / "scripts" / "lock.py")
lock = importlib.util.module_from_spec(spec)
sys.modules["lock"] = lock  # dataclasses look their module up
spec.loader.exec_module(lock)

PINS = lock.read_lock(lock.LOCK.read_text())
WANTED = lock.read_input_names(lock.LOCK_INPUT.read_text())


def pinned(name: str) -> list[str]:
    return [pin.version for pin in PINS if pin.name == name]


def test_every_requested_package_is_pinned_exactly_once_per_environment():
    for name in WANTED:
        assert pinned(name) or name == lock.project_name(), name
    unconditional = [pin.name for pin in PINS if not pin.marker]
    assert len(unconditional) == len(set(unconditional))


def test_locked_torch_pair_is_inside_every_declared_range():
    pyproject = (ROOT / "pyproject.toml").read_text()
    lock_input = lock.LOCK_INPUT.read_text()
    for name in ("torch", "torchvision"):
        (version,) = pinned(name)
        lower = re.search(rf'"{name}>=([0-9.]+)', pyproject).group(1)
        assert Version(version) >= Version(lower), (name, version, lower)
        (line,) = [row for row in lock_input.splitlines() if re.match(rf"{name}[<>=]", row)]
        assert Requirement(line).specifier.contains(version), (name, version, line)


def test_a_matching_environment_has_no_problems():
    pins = [lock.Pin("torch", "2.14.1", ""), lock.Pin("appnope", "1.0", "sys_platform == 'never'")]
    installed = {"torch": "2.14.1+cu130", "pip": "25.0"}  # a local label is the same release
    assert lock.compare(pins, installed, ["torch"]) == []


@pytest.mark.parametrize(
    "installed, wanted, expected",
    [
        ({"torch": "2.13.0"}, ["torch"], r"torch: locked at 2\.14\.1, installed 2\.13\.0\. Fix: .*lock\.py install"),
        ({}, ["torch"], r"torch: locked at 2\.14\.1, not installed\. Fix: .*lock\.py install"),
        ({"torch": "2.14.1", "extra": "1.0"}, ["torch"], r"extra==1\.0: installed, .*no entry.*lock\.py compile.*"),
        ({"torch": "2.14.1"}, ["torch", "newdep"], r"newdep: requirements\.in asks for it.*lock\.py compile"),
    ],
)
def test_each_difference_names_the_package_and_the_fix(installed, wanted, expected):
    (problem,) = lock.compare([lock.Pin("torch", "2.14.1", "")], installed, wanted)
    assert re.fullmatch(expected, problem), problem


def test_a_lock_line_that_is_not_a_pin_is_refused():
    with pytest.raises(lock.LockError, match=r"line 2 is not an exact pin.*'numpy>=2'.*lock\.py compile"):
        lock.read_lock("torch==2.14.1\nnumpy>=2\n")


def test_a_pin_the_index_cannot_serve_is_named():
    stderr = (
        "ERROR: Could not find a version that satisfies the requirement torch==9.9.9 (from versions: 2.9.1)\n"
        "ERROR: No matching distribution found for torch==9.9.9\n"
    )
    assert lock.unavailable_pin(stderr) == ("torch", "9.9.9")
    assert lock.unavailable_pin("ERROR: Could not install packages due to an OSError") is None
