"""The locked environment: ``requirements.in`` (loose ranges) -> ``requirements.txt`` (every
package pinned, transitive ones included). README's install command and CI use the lock.

    python scripts/lock.py compile   # resolve requirements.in again with uv, write requirements.txt
    python scripts/lock.py install   # pip install -r requirements.txt, then `check`
    python scripts/lock.py check     # print the installed versions, fail where they differ

The lock is universal (uv's ``--universal``): a package that only some platforms or Pythons
need carries an environment marker, and ``check`` compares only the entries whose marker holds
here. ``install`` and ``compile`` need nothing beyond the standard library and pip (and uv for
``compile``); ``check`` needs ``packaging``, which the lock installs.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK_INPUT = ROOT / "requirements.in"
LOCK = ROOT / "requirements.txt"
OLDEST_PYTHON = "3.10"  # pyproject.toml's requires-python
COMPILE = "python scripts/lock.py compile"
INSTALL = "python scripts/lock.py install"
# Installed by `python -m venv` itself, so present whether or not the lock names them.
VENV_SEEDED = frozenset({"pip", "setuptools", "wheel"})


class LockError(RuntimeError):
    """The environment or the lock is not what it should be; the message says how to fix it."""


@dataclass(frozen=True)
class Pin:
    name: str  # canonical (PEP 503) name
    version: str  # exact version, or "" for the editable project itself
    marker: str  # environment marker, "" when the package is needed everywhere


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project_name() -> str:
    match = re.search(r'^name\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    if match is None:
        raise LockError("pyproject.toml has no [project] name")
    return canonical(match.group(1))


def read_lock(text: str) -> list[Pin]:
    """Parse uv's output: ``name==version[ ; marker]`` lines, ``-e .`` for the project."""
    pins = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.strip() == "-e .":
            pins.append(Pin(project_name(), "", ""))
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)\s*(?:;\s*(.+))?", line.strip())
        if match is None:
            raise LockError(
                f"requirements.txt line {number} is not an exact pin (name==version): "
                f"{line.strip()!r}. Regenerate the lock: {COMPILE}"
            )
        pins.append(Pin(canonical(match.group(1)), match.group(2), match.group(3) or ""))
    return pins


def read_input_names(text: str) -> list[str]:
    """The package names that requirements.in asks for (``-e .`` is the project)."""
    names = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line == "-e .":
            names.append(project_name())
        else:
            names.append(canonical(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line).group(0)))
    return names


def compare(pins: list[Pin], installed: dict[str, str], wanted: list[str]) -> list[str]:
    """Every way ``installed`` (canonical name -> version) differs from the lock's ``pins``
    whose markers hold here; ``wanted`` are requirements.in's names, each needing a pin."""
    from packaging.markers import Marker
    from packaging.version import Version

    here = {pin.name: pin for pin in pins if not pin.marker or Marker(pin.marker).evaluate()}
    problems = []
    for name in wanted:
        if not any(pin.name == name for pin in pins):
            problems.append(f"{name}: requirements.in asks for it, requirements.txt has no entry. Fix: {COMPILE}")
    for name, pin in sorted(here.items()):
        if name not in installed:
            problems.append(f"{name}: locked at {pin.version or 'the project'}, not installed. Fix: {INSTALL}")
        elif pin.version and Version(installed[name]).public != Version(pin.version).public:
            problems.append(f"{name}: locked at {pin.version}, installed {installed[name]}. Fix: {INSTALL}")
    for name, version in sorted(installed.items()):
        if name not in here and name not in VENV_SEEDED:
            problems.append(
                f"{name}=={version}: installed, but requirements.txt has no entry for it here. Fix: add "
                f"it to requirements.in and run {COMPILE}, or uninstall it (pip uninstall {name})"
            )
    return problems


def installed_distributions() -> dict[str, str]:
    from importlib.metadata import distributions

    return {canonical(dist.metadata["Name"]): dist.version for dist in distributions()}


def check() -> None:
    try:
        import packaging  # noqa: F401
    except ImportError as error:
        raise LockError(f"`check` needs the packaging library, which the lock installs. Fix: {INSTALL}") from error
    pins = read_lock(LOCK.read_text())
    installed = installed_distributions()
    print(f"Resolved versions (Python {sys.version.split()[0]}, {sys.platform}):")
    for name in sorted(installed):
        print(f"  {name}=={installed[name]}")
    problems = compare(pins, installed, read_input_names(LOCK_INPUT.read_text()))
    if problems:
        raise LockError("The environment differs from requirements.txt:\n  " + "\n  ".join(problems))
    print(f"The environment matches requirements.txt ({len(installed)} distributions).")


def unavailable_pin(pip_stderr: str) -> tuple[str, str] | None:
    """(name, version) of the pinned requirement that pip could not find, if that is why it failed."""
    match = re.search(r"No matching distribution found for ([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", pip_stderr)
    return None if match is None else (match.group(1), match.group(2))


def install() -> None:
    command = [sys.executable, "-m", "pip", "install", "-r", str(LOCK)]
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    stderr = []
    for line in process.stderr:
        sys.stderr.write(line)
        stderr.append(line)
    if process.wait() != 0:
        missing = unavailable_pin("".join(stderr))
        if missing is not None:
            name, version = missing
            raise LockError(
                f"requirements.txt pins {name}=={version}, and no package index that pip uses here "
                f"serves it for Python {sys.version.split()[0]} on {sys.platform}. Fix: point pip at an "
                f"index that has it (PIP_INDEX_URL), or change the range in requirements.in and "
                f"regenerate the lock ({COMPILE})."
            )
        raise LockError(f"`{' '.join(command)}` failed (exit {process.returncode}); pip's error is above.")
    check()


def compile_lock() -> None:
    uv = shutil.which("uv")
    if uv is None:
        raise LockError("`compile` resolves with uv, which is not on PATH. Fix: pip install uv, or " + INSTALL)
    subprocess.run(
        [uv, "pip", "compile", LOCK_INPUT.name, "--universal", "--python-version", OLDEST_PYTHON,
         "--output-file", LOCK.name, "--custom-compile-command", COMPILE],
        cwd=ROOT, check=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["compile", "install", "check"])
    args = parser.parse_args(argv)
    try:
        {"compile": compile_lock, "install": install, "check": check}[args.command]()
    except LockError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
