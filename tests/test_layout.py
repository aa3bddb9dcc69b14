"""The core needs only torch and numpy and never imports the engine."""

from __future__ import annotations

import subprocess
import sys

CORE = ["perceptcoh", "perceptcoh.dissimilarity", "perceptcoh.ranking", "perceptcoh.perception",
        "perceptcoh.loss", "perceptcoh.baselines", "perceptcoh.metrics", "perceptcoh.models",
        "perceptcoh.registry"]


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
