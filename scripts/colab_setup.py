"""What the book's first cell does on Colab once the repository is cloned: install the
library from the clone, keeping Colab's torch and torchvision.

A torch or torchvision that meets the library's lower bound (``pyproject.toml``) is kept,
pinned in a pip constraint so that the install cannot replace it (a new torch is a download
of several GB, and Colab's torchvision is built for its torch); one below the bound, or
missing, is installed. Each is named with the version found. ``scripts/colab_cell.py``
writes the cell that runs this; ``tests/test_colab_cell.py`` runs both on a CPU machine.
"""

from __future__ import annotations

import os
import re
import sys
from importlib.metadata import PackageNotFoundError, version


def release(text: str) -> tuple[int, ...]:
    """``"2.9.1+cu126"`` -> ``(2, 9, 1)``."""
    return tuple(int(n) for n in re.findall(r"\d+", text.split("+")[0])[:3])


def install(clone: str, shell) -> None:
    """``%pip install -e clone`` in the IPython ``shell``, with torch and torchvision kept
    where they meet their bounds; ``clone`` goes first on ``sys.path`` (the kernel predates
    the install)."""
    with open(os.path.join(clone, "pyproject.toml")) as handle:
        bounds = dict(re.findall(r'"(torch|torchvision)>=([\d.]+)"', handle.read()))
    constraints, wanted = os.path.join(clone, ".colab-constraints.txt"), []
    with open(constraints, "w") as pins:
        for package, lowest in sorted(bounds.items()):
            try:
                found = version(package)
            except PackageNotFoundError:
                found = None
            if found is not None and release(found) >= release(lowest):
                print(f"{package} {found}: kept")
                pins.write(f"{package}=={found}\n")
            else:
                print(f"{package} {found or 'not installed'}: the library needs "
                      f"{package}>={lowest}; pip installs it")
                wanted.append(f'"{package}>={lowest}"')  # quoted: %pip runs a shell
    shell.run_line_magic("pip", " ".join(["install -q -e", clone, *wanted, "-c", constraints]))
    if clone not in sys.path:
        sys.path.insert(0, clone)
