"""Test-session settings, and the device each test runs on.

CPU tests run on the CPU whatever the machine has: in every test not marked ``cuda``,
``torch.cuda.is_available()`` says no and ``CUDA_VISIBLE_DEVICES`` is empty (for the
subprocesses a test starts), so ``device="auto"`` resolves to the CPU, and the tests that
check bit-identical CPU results get them on a GPU machine too. CUDA tests opt in with
``@pytest.mark.cuda`` and are skipped where there is no GPU.
"""

import os

import pytest
import torch

from digits_runs import tiny
from perceptcoh.engine import CHECKPOINT_NAME, train_teacher

# The tests run many small tensor operations. On a machine whose cores are shared with other
# processes, OpenMP worker threads that wait for a busy core made them several times slower
# (perception of 4,000 points: 14 s with 2 threads under load, 1.8 s with 1), so the whole
# session runs on one thread; the numbers the tests check do not depend on it.
torch.set_num_threads(1)

# tests/test_devices.py runs a few tests in a subprocess that believes it has a GPU, to show
# that the suite would not route CPU tests to it.
if os.environ.get("PERCEPTCOH_TEST_FAKE_GPU") == "1":
    torch.cuda.is_available = lambda: True


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA device (skipped without one); the "
                                       "only tests that may use it")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def device_of_the_test(request, monkeypatch):
    """A test not marked ``cuda`` sees no GPU, nor do the processes it starts."""
    if request.node.get_closest_marker("cuda") is None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture(scope="session")
def teacher(tmp_path_factory):
    """A digits_cnn teacher trained for 2 short epochs, once per test session (the engine's
    and the cohort's tests share it): its checkpoint's path and its results."""
    output = tmp_path_factory.mktemp("teacher")
    results = train_teacher(tiny(model="digits_cnn", train_subset=512, output_dir=str(output)))
    return output / CHECKPOINT_NAME, results
