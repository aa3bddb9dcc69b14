"""Where a number came from: saved next to every result (results/*.json)."""

from __future__ import annotations

import datetime
import platform
import subprocess
import sys
from pathlib import Path

import torch

__all__ = ["provenance", "committed_in", "environment", "FLOAT_ORDER_KEYS"]

# What decides the floating-point order of a computation here: two runs agree bit for bit
# only where all of these match (the CPU model and its vector instructions included).
FLOAT_ORDER_KEYS = ("torch", "device", "cpu_threads", "cpu_model", "cpu_capability")


def provenance(command: list[str] | None = None,
               device: torch.device | str | None = None) -> dict[str, object]:
    """Git commit, device, library versions and time of a run, as a JSON-ready dict.

    ``command`` defaults to the running process's ``sys.argv``. ``device`` is the device the
    run computed on: ``"cpu"`` for a CPU, the GPU's name for a CUDA device; without it, the
    machine's first GPU if it has one (a ``--device cpu`` run on a GPU machine must pass it). The commit is the one
    checked out when this module was first imported, which is the code the process runs
    even if the checkout moves on during a long run (``None`` outside a git checkout);
    ``git_dirty`` says whether tracked files differed from it then.
    """
    return {
        "command": list(sys.argv if command is None else command),
        "git_commit": _STARTED_AT["commit"],
        "git_dirty": _STARTED_AT["dirty"],
        "device": _device_name(device),
        "cpu": platform.processor() or platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def environment(device: torch.device | str | None = None) -> dict[str, object]:
    """The part of :func:`provenance` that decides floating-point order
    (:data:`FLOAT_ORDER_KEYS`): torch, device, CPU threads, CPU model and the vector
    instructions torch's CPU kernels use (``torch.backends.cpu.get_cpu_capability()``)."""
    found = provenance(device=device)
    return {key: found[key] for key in FLOAT_ORDER_KEYS}


def committed_in(path: str | Path) -> str | None:
    """The commit that last changed ``path`` in the checkout this module lives in, when the
    file is committed as it is now; ``None`` when it is not committed (new or changed) or
    there is no git checkout. A registration committed before its runs is proved so."""
    path = Path(path).resolve()
    if not path.is_file():
        return None
    changed = _git("status", "--porcelain", "--", str(path))
    if changed is None or changed:
        return None
    return _git("log", "-n", "1", "--format=%H", "--", str(path)) or None


def _cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _device_name(device: torch.device | str | None) -> str:
    if device is None:
        return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def _git(*arguments: str) -> str | None:
    try:
        completed = subprocess.run(
            ["git", *arguments], capture_output=True, text=True, check=True,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return completed.stdout.strip()


# Read once, when the process imports the engine: see provenance().
_STARTED_AT = {"commit": _git("rev-parse", "HEAD"),
               "dirty": bool(_git("status", "--porcelain", "--untracked-files=no"))}
