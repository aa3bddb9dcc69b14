"""Test-session settings."""

import torch

# The tests run many small tensor operations. On a machine whose cores are shared with other
# processes, OpenMP worker threads that wait for a busy core made them several times slower
# (perception of 4,000 points: 14 s with 2 threads under load, 1.8 s with 1), so the whole
# session runs on one thread; the numbers the tests check do not depend on it.
torch.set_num_threads(1)
