"""The loss chapter's figures and speed table (perceptcoh.book.loss): each draws
the data it is given, the pushed pairs' arrows are the gradient's row, and the benchmark is
found, run and tabulated."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from perceptcoh import PerceptionCoherenceLoss, perception  # noqa: E402
from perceptcoh.book import loss  # noqa: E402
from perceptcoh.book.loss import train_toy_student  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_temperature_figure_draws_one_panel_per_temperature_and_the_errors():
    ranks = torch.rand(5, 5, dtype=torch.float64)
    soft = {1.0: ranks / 2, 0.1: ranks}
    taus, errors = np.array([1.0, 0.1, 0.01]), np.array([0.5, 1e-3, 0.0])
    figure = loss.temperature_figure(ranks, soft, taus, errors)
    axes = figure.axes
    assert len(axes) == 3 and [ax.get_title() for ax in axes[:2]] == ["tau = 1", "tau = 0.1"]
    off = ~np.eye(5, dtype=bool)
    points = axes[0].collections[0].get_offsets()
    assert np.array_equal(points[:, 0], ranks.numpy()[off])
    assert np.array_equal(points[:, 1], ranks.numpy()[off] / 2)
    x, y = axes[2].lines[0].get_data()
    assert np.array_equal(x, taus) and np.array_equal(y, [0.5, 1e-3, 1e-16])  # 0 at 1e-16


def test_feature_norms_figure_draws_one_line_per_seed_with_zero_at_1e_8():
    norms = {"detached s_i": np.array([[1.0, 0.0], [1.0, 0.5]]),
             "exact (library)": np.array([[1.0, 1.1], [1.0, 0.9]])}
    figure = loss.feature_norms_figure(norms)
    lines = figure.axes[0].lines
    assert len(lines) == 4
    assert np.array_equal(lines[0].get_ydata(), [1.0, 1e-8])
    assert [text.get_text() for text in figure.axes[0].get_legend().get_texts()] == \
        list(norms)


def test_pushed_pairs_arrows_are_the_anchors_row_of_the_gradient():
    generator = torch.Generator().manual_seed(0)
    teacher = torch.rand(8, 2, dtype=torch.float64, generator=generator)
    student = teacher + 0.1 * torch.randn(8, 2, dtype=torch.float64, generator=generator)
    gradient = torch.randn(8, 8, dtype=torch.float64, generator=generator)
    anchor = 3
    length, wrong = loss.pushed_pairs_figure(teacher, student, gradient, anchor)
    others = [j for j in range(8) if j != anchor]
    # each arrow is a unit direction times -dL/dD_aj
    assert np.allclose(length, gradient[anchor, others].abs().numpy())
    assert np.array_equal(wrong, (perception(teacher) != perception(student))[anchor, others])
    assert len(plt.gcf().axes) == 2


def test_benchmark_script_loads_the_repository_benchmark_or_says_what_is_missing(tmp_path):
    loss_speed = loss.benchmark_script("loss_speed")
    assert callable(loss_speed.naive_loss) and loss_speed.TAU == 0.1
    with pytest.raises(FileNotFoundError, match="clone of the repository"):
        loss.benchmark_script("loss_speed", folder=tmp_path)


def test_run_benchmark_passes_the_arguments_and_threads_and_reads_the_json(tmp_path):
    script = tmp_path / "echo_benchmark.py"
    script.write_text(
        "import json, os, sys\n"
        "arguments = sys.argv[1:]\n"
        "path = arguments[arguments.index('--json') + 1]\n"
        "json.dump({'arguments': arguments, 'threads': os.environ['OMP_NUM_THREADS']},\n"
        "          open(path, 'w'))\n")
    document = loss.run_benchmark(script, "--batch-sizes", "8", threads=1)
    assert document["threads"] == "1"
    assert document["arguments"][:2] == ["--batch-sizes", "8"]
    failing = tmp_path / "failing.py"
    failing.write_text("raise SystemExit('no')\n")
    with pytest.raises(Exception):
        loss.run_benchmark(failing)


def test_speed_table_shows_times_speed_up_and_memory_with_the_machine_in_the_caption():
    document = {"provenance": {"torch": "2.9.1", "cpu_threads": 1}, "student_dim": 64,
                "teacher_dim": 256, "tau": 0.1,
                "rows": [{"batch": 128, "ours": {"seconds": 0.01, "peak_bytes": 2**20},
                          "naive": {"seconds": 0.03, "peak_bytes": 5 * 2**20}}]}
    html = loss.speed_table(document)
    cells = [cell.split("<")[0] for cell in html.split("<td>")[1:]]
    assert cells == ["128", "10.0", "30.0", "3.0x", "1.0", "5.0"]
    assert "torch 2.9.1, 1 CPU thread, student 64-d, teacher 256-d, tau 0.1" in html


# The toy transfer: one norm per step, the same run for the same seed, and the same start
# for two transfers of one seed.


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


def test_the_toy_student_trains_with_the_laptop_recipes_sgd_settings():
    """Read from the plan and the engine's defaults, not typed (issue 25, item 7)."""
    from perceptcoh.engine import TrainConfig
    from perceptcoh.engine.plans import SCALES

    settings = loss.laptop_sgd()
    config = TrainConfig(**{**SCALES["laptop"]["student"], "model": "resnet8"})
    assert settings == {"lr": config.lr, "momentum": config.momentum,
                        "weight_decay": config.weight_decay}
