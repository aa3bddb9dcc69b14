"""Test-session settings."""

import pytest
import torch

from digits_runs import tiny
from perceptcoh.engine import CHECKPOINT_NAME, train_teacher

# The tests run many small tensor operations. On a machine whose cores are shared with other
# processes, OpenMP worker threads that wait for a busy core made them several times slower
# (perception of 4,000 points: 14 s with 2 threads under load, 1.8 s with 1), so the whole
# session runs on one thread; the numbers the tests check do not depend on it.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def teacher(tmp_path_factory):
    """A digits_cnn teacher trained for 2 short epochs, once per test session (the engine's
    and the cohort's tests share it): its checkpoint's path and its results."""
    output = tmp_path_factory.mktemp("teacher")
    results = train_teacher(tiny(model="digits_cnn", train_subset=512, output_dir=str(output)))
    return output / CHECKPOINT_NAME, results
