"""The toy transfer of perceptcoh.engine.feature_norms: one norm per step, the same run for
the same seed, and the same start for two transfers of one seed."""

import numpy as np

from perceptcoh import PerceptionCoherenceLoss
from perceptcoh.engine.feature_norms import train_toy_student


def mse_to_targets(features, targets):
    return (features - targets.repeat(1, 2)[:, :16]).square().mean()


def test_a_run_is_one_norm_per_step_and_repeats_exactly_for_its_seed():
    norms = train_toy_student(mse_to_targets, seed=3, steps=6, batch_size=8)
    assert norms.shape == (6,) and np.all(norms > 0)
    assert np.array_equal(norms, train_toy_student(mse_to_targets, seed=3, steps=6,
                                                   batch_size=8))
    assert not np.array_equal(norms, train_toy_student(mse_to_targets, seed=4, steps=6,
                                                       batch_size=8))


def test_two_transfers_of_one_seed_start_from_the_same_weights_and_batch():
    loss = PerceptionCoherenceLoss(tau=0.1)
    pc = train_toy_student(loss, seed=0, steps=3, batch_size=8)
    mse = train_toy_student(mse_to_targets, seed=0, steps=3, batch_size=8)
    assert pc[0] == mse[0] and pc[1] != mse[1]
