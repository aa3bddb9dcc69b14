"""The suite routes CPU tests to the CPU on a GPU machine: shown on a CPU machine by running
the probes below in a pytest subprocess that believes it has a GPU (``conftest.py``)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from digits_runs import tiny
from perceptcoh.engine.distributed import resolve_device

FAKE_GPU = os.environ.get("PERCEPTCOH_TEST_FAKE_GPU") == "1"
probe = pytest.mark.skipif(not FAKE_GPU, reason="runs in test_cpu_tests_stay_on_the_cpu")


@probe
def test_probe_a_cpu_test_sees_no_gpu():
    assert not torch.cuda.is_available()
    assert resolve_device("auto", None) == torch.device("cpu")
    assert tiny().device == "cpu"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""  # nor do its subprocesses


@probe
@pytest.mark.cuda
def test_probe_a_cuda_test_sees_the_gpu():
    assert torch.cuda.is_available()
    assert os.environ.get("CUDA_VISIBLE_DEVICES") != ""


def test_cpu_tests_stay_on_the_cpu_on_a_gpu_machine():
    # This test's own environment hides the GPU; the subprocess starts as on a GPU machine.
    environment = {name: value for name, value in os.environ.items()
                   if name != "CUDA_VISIBLE_DEVICES"}
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", "probe"],
        env={**environment, "PERCEPTCOH_TEST_FAKE_GPU": "1"}, capture_output=True, text=True,
        cwd=os.path.dirname(os.path.dirname(__file__)), timeout=300,
    )
    assert "2 passed" in completed.stdout, completed.stdout + completed.stderr




def test_provenance_names_the_device_the_run_computed_on(monkeypatch):
    from perceptcoh.engine.provenance import provenance

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    assert provenance(device="cpu")["device"] == "cpu"  # a --device cpu run
    assert provenance(device=torch.device("cuda", 0))["device"] == "Fake GPU"
    assert provenance()["device"] == "Fake GPU"  # no device given: the machine's GPU
