"""The perception chapter's figures (perceptcoh.book.perception) draw the data
they are given."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from perceptcoh.book import perception  # noqa: E402


def pi_f(x, y):
    t = np.abs(y - x)
    return np.minimum(1, x + t) - np.maximum(0, x - t)


def pi_g(x, y):
    return np.abs(y - x)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_closed_form_figure_draws_the_perceptions_the_ranks_and_the_distribution():
    sample = np.array([0.3, 0.1, 0.5, 0.9])
    ranks_f, ranks_g = np.array([1, 2, 3]) / 3, np.array([3, 1, 2]) / 3
    left, right = perception.closed_form_figure(pi_f, pi_g, sample, ranks_f,
                                                        ranks_g).axes
    ys, teacher = left.lines[0].get_data()
    assert np.allclose(teacher, pi_f(0.3, ys))
    assert np.allclose(left.lines[1].get_ydata(), pi_g(0.3, ys))
    assert np.array_equal(left.collections[0].get_offsets(), np.c_[sample[1:], ranks_f])
    assert np.array_equal(left.collections[1].get_offsets(), np.c_[sample[1:], ranks_g])
    distances, levels = right.lines[1].get_data()
    assert np.allclose(distances, [0.2, 0.2, 0.6]) and np.allclose(levels, [1/3, 2/3, 1])
    assert "n = 4" in left.get_legend().get_texts()[2].get_text()


def test_convergence_figure_draws_mean_and_spread_per_size():
    estimates = np.array([[0.1, 0.3], [0.15, 0.25]])
    ax = perception.convergence_figure([10, 20], estimates, 0.2).axes[0]
    sizes, means = ax.lines[0].get_data()
    assert np.array_equal(sizes, [10, 20]) and np.allclose(means, [0.2, 0.2])
    assert np.allclose(ax.lines[-1].get_ydata(), 0.2)  # the exact value


def test_disagreement_figure_shows_the_difference_of_each_student_on_the_grid():
    figure = perception.disagreement_figure(pi_f, {"a": pi_g, "b": pi_f}, grid=4)
    panels = [ax for ax in figure.axes if ax.images]
    assert [ax.get_title() for ax in panels] == ["a", "b"]
    nodes = (np.arange(4) + 0.5) / 4
    expected = np.abs(pi_f(nodes[:, None], nodes[None, :]) - pi_g(nodes[:, None], nodes))
    assert np.allclose(panels[0].images[0].get_array(), expected)
    assert np.allclose(panels[1].images[0].get_array(), 0)
