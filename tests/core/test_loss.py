"""PerceptionCoherenceLoss against brute force, its limits, gradients and numerics."""

from __future__ import annotations

import math

import pytest
import torch

import perceptcoh.loss
from perceptcoh import PerceptionCoherenceLoss, dissimilarity, perception_gap
from perceptcoh.dissimilarity import pairwise
from perceptcoh.ranking import exact_ranks, row_scale
from reference import dissimilarity_loops, loss_loops, loss_loops_autograd


def gaussian(n: int, p: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(n, p, dtype=dtype, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("r", [1, 2])
@pytest.mark.parametrize(
    "metric_student, metric_teacher", [("euclidean", "euclidean"), ("cosine", "sqeuclidean")]
)
@pytest.mark.parametrize("teacher_tau", [0.0, 0.2])
def test_loss_matches_loops(r, metric_student, metric_teacher, teacher_tau):
    student, teacher = gaussian(7, 3, seed=0), gaussian(7, 5, seed=1)
    loss = PerceptionCoherenceLoss(
        tau=0.3, metric_teacher=metric_teacher, metric_student=metric_student, r=r,
        teacher_tau=teacher_tau, chunk_size=3,
    )
    expected = loss_loops(
        dissimilarity_loops(student, student, metric_student),
        dissimilarity_loops(teacher, teacher, metric_teacher),
        tau=0.3, r=r, teacher_tau=teacher_tau,
    )
    got = loss(student, teacher)
    assert got.dtype == torch.float64 and got.ndim == 0
    assert math.isclose(float(got), expected, rel_tol=1e-10, abs_tol=1e-12)


def test_loss_with_ties_in_teacher_matches_loops():
    teacher = torch.randint(-2, 3, (9, 2)).double()  # integer grid: tied teacher ranks
    student = gaussian(9, 4, seed=3)
    expected = loss_loops(
        dissimilarity_loops(student, student, "euclidean"),
        dissimilarity_loops(teacher, teacher, "euclidean"),
        tau=0.5, r=2,
    )
    assert math.isclose(float(PerceptionCoherenceLoss(tau=0.5)(student, teacher)), expected,
                        rel_tol=1e-10)


@pytest.mark.parametrize("r", [1, 2])
def test_loss_tends_to_perception_gap_as_tau_goes_to_zero(r):
    student, teacher = gaussian(14, 3, seed=4), gaussian(14, 6, seed=5)
    gap = float(perception_gap(student, teacher, r=r))
    errors = [
        abs(float(PerceptionCoherenceLoss(tau=tau, r=r)(student, teacher)) - gap)
        for tau in (1.0, 1e-1, 1e-2, 1e-8)
    ]
    assert errors[0] > errors[1] > errors[2]
    assert errors[-1] < 1e-12


METRICS = ["euclidean", "sqeuclidean", "cosine"]


@pytest.mark.parametrize("r", [1, 2])
@pytest.mark.parametrize("metric", METRICS)
def test_gradcheck_float64(r, metric):
    """The hand-written backward against finite differences of the public loss: the row
    scale ``s_i`` moves with the features, and the gradient follows it."""
    student, teacher = gaussian(7, 3, seed=6), gaussian(7, 4, seed=7)
    loss = PerceptionCoherenceLoss(tau=0.3, metric_student=metric, r=r, chunk_size=2)
    student.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda features: loss(features, teacher), (student,))


@pytest.mark.parametrize("r", [1, 2])
@pytest.mark.parametrize("metric_student, metric_teacher", [("euclidean", "euclidean"),
                                                            ("sqeuclidean", "cosine"),
                                                            ("cosine", "sqeuclidean")])
@pytest.mark.parametrize("teacher_tau", [0.0, 0.2])
def test_value_and_gradient_equal_autograd_through_the_loop_reference(
        monkeypatch, r, metric_student, metric_teacher, teacher_tau):
    """Autograd through plain loops whose ``s_i`` is not detached, with the sweep forced to
    split every anchor's comparisons into tiles of a few columns (a 40-element budget)."""
    monkeypatch.setitem(perceptcoh.ranking._CHUNK_ELEMENTS, "cpu", 40)
    shapes = spy_on_tiles(monkeypatch)
    student, teacher = gaussian(9, 3, seed=30), gaussian(9, 5, seed=31)
    features = student.clone().requires_grad_(True)
    loss = PerceptionCoherenceLoss(tau=0.3, metric_student=metric_student,
                                   metric_teacher=metric_teacher, r=r, teacher_tau=teacher_tau)
    value = loss(features, teacher)
    value.backward()
    assert all(columns < 9 for _, columns, _ in shapes)
    reference_features = student.clone().requires_grad_(True)
    expected = loss_loops_autograd(reference_features, teacher, metric_student, metric_teacher,
                                   tau=0.3, r=r, teacher_tau=teacher_tau)
    expected.backward()
    assert math.isclose(float(value), float(expected), rel_tol=1e-10)
    torch.testing.assert_close(features.grad, reference_features.grad, rtol=1e-9, atol=1e-12)


def row_gradients(student, teacher, **options):
    """``dL/dD`` of the public loss: its gradient with respect to the student's
    dissimilarity matrix, through a hook on the matrix the loss builds."""
    captured = {}
    original = perceptcoh.loss.pairwise

    def spy(x, y, metric):
        distances = original(x, y, metric)
        if distances.requires_grad:
            captured["distances"] = distances
            distances.register_hook(lambda grad: captured.__setitem__("grad", grad))
        return distances

    perceptcoh.loss.pairwise = spy
    try:
        PerceptionCoherenceLoss(**options)(student, teacher).backward()
    finally:
        perceptcoh.loss.pairwise = original
    return captured["distances"].detach(), captured["grad"]


@pytest.mark.parametrize("r", [1, 2])
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("teacher_tau", [0.0, 0.2])
@pytest.mark.parametrize("tau", [0.03, 0.3])
def test_euler_identity_on_every_row(r, metric, teacher_tau, tau):
    """``L`` is invariant to rescaling a row of ``D``, so ``sum_j D_aj dL/dD_aj = 0``
    (Euler's theorem for a function homogeneous of degree 0), to rounding, on every row."""
    student = gaussian(40, 6, seed=32).requires_grad_(True)
    distances, grad = row_gradients(student, gaussian(40, 10, seed=33), tau=tau, r=r,
                                    metric_student=metric, teacher_tau=teacher_tau)
    terms = distances * grad
    assert grad.abs().sum() > 0
    assert (terms.sum(dim=1).abs() <= 1e-10 * terms.abs().sum(dim=1)).all()


# Not the cosine dissimilarity: it ignores each feature's norm, so its radial part is 0 for
# any loss built on it, a detached scale included, and the test could not fail.
@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean"])
def test_gradient_has_no_radial_part(metric):
    """Scaling the features leaves ``L`` unchanged, so ``sum_n f_n . dL/df_n = 0``: the
    gradient never shrinks or grows the features as a whole."""
    student = gaussian(64, 8, seed=34).requires_grad_(True)
    PerceptionCoherenceLoss(tau=0.1, metric_student=metric)(student, gaussian(64, 16, seed=35)).backward()
    terms = student.detach() * student.grad
    assert float(terms.sum().abs()) <= 1e-10 * float(terms.abs().sum())


@pytest.mark.parametrize("chunk_size", [1, 2, 5])
@pytest.mark.parametrize("teacher_tau", [0.0, 0.1])
def test_chunked_equals_unchunked(chunk_size, teacher_tau):
    teacher = gaussian(11, 6, seed=10, dtype=torch.float32)
    results = []
    for chunk in (chunk_size, None):
        student = gaussian(11, 3, seed=11, dtype=torch.float32).requires_grad_(True)
        value = PerceptionCoherenceLoss(tau=0.1, chunk_size=chunk, teacher_tau=teacher_tau)(
            student, teacher
        )
        value.backward()
        results.append((value.detach(), student.grad))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])


def spy_on_tiles(monkeypatch) -> list[tuple[int, int, int]]:
    shapes = []
    original = perceptcoh.loss.tile_sigmoids

    def spy(scaled, low, high, out):
        tile = original(scaled, low, high, out)
        shapes.append(tuple(tile.shape))
        return tile

    monkeypatch.setattr(perceptcoh.loss, "tile_sigmoids", spy)
    return shapes


@pytest.mark.parametrize("batch", [256, 1024])
def test_tiles_stay_within_the_budget_and_cover_every_comparison_once(monkeypatch, batch):
    shapes = spy_on_tiles(monkeypatch)
    student = torch.randn(batch, 8, requires_grad=True)
    PerceptionCoherenceLoss()(student, torch.randn(batch, 16)).backward()
    budget = perceptcoh.ranking._CHUNK_ELEMENTS["cpu"]
    assert all(rows * columns * k <= budget and k == batch for rows, columns, k in shapes)
    assert sum(rows * columns for rows, columns, _ in shapes) == batch * batch
    if batch * batch > budget:  # never a (chunk, B, B) tensor: a row of anchors is split
        assert all(columns < batch for _, columns, _ in shapes)


@pytest.mark.parametrize("r", [1, 2])
@pytest.mark.parametrize("chunk_size", [None, 2])
def test_column_tiles_keep_value_and_gradient(monkeypatch, r, chunk_size):
    """A budget of 40 elements splits each anchor's comparisons (13 x 13) into tiles of a
    few columns: the value must equal the loop reference and the gradient autograd's through
    the explicit (B, B, B) form, in float64."""
    monkeypatch.setitem(perceptcoh.ranking._CHUNK_ELEMENTS, "cpu", 40)
    shapes = spy_on_tiles(monkeypatch)
    student, teacher = gaussian(13, 3, seed=20), gaussian(13, 5, seed=21)
    student.requires_grad_(True)
    value = PerceptionCoherenceLoss(tau=0.3, r=r, chunk_size=chunk_size)(student, teacher)
    value.backward()
    assert all(columns < 13 for _, columns, _ in shapes)
    expected = loss_loops(dissimilarity_loops(student.detach(), student.detach(), "euclidean"),
                          dissimilarity_loops(teacher, teacher, "euclidean"), tau=0.3, r=r)
    assert math.isclose(float(value), expected, rel_tol=1e-10)

    self_index = torch.arange(13)
    features = student.detach().clone().requires_grad_(True)
    distances = pairwise(features, features, "euclidean")
    scaled = (distances[:, :, None] - distances[:, None, :]) / (
        0.3 * row_scale(distances, self_index)[:, None, None]
    )
    mask = ~torch.eye(13, dtype=torch.bool)
    counted = mask[:, None, :] & mask[None, :, :]
    soft = (1 + (torch.sigmoid(scaled) * counted).sum(-1)) / 12
    target = exact_ranks(pairwise(teacher, teacher, "euclidean"), self_index)
    ((soft - target)[mask].abs() ** r).mean().backward()
    torch.testing.assert_close(student.grad, features.grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 4e-7), (torch.float64, 1e-14)])
@pytest.mark.parametrize("spread", [1.0, 40.0, 400.0])  # 400: wider than the product form
def test_tile_sigmoids_match_the_sigmoid_of_differences(dtype, atol, spread):
    from perceptcoh.ranking import tile_sigmoids

    scaled = spread * torch.rand(3, 50, dtype=dtype, generator=torch.Generator().manual_seed(22))
    exact = scaled.double()  # the sigmoid of the exact differences of the given values
    expected = torch.sigmoid(exact[:, 10:30, None] - exact[:, None, :])
    got = tile_sigmoids(scaled, 10, 30, torch.empty(3 * 20 * 50, dtype=dtype))
    assert got.shape == (3, 20, 50) and got.dtype == dtype
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=atol)


def test_gradient_reaches_student_only():
    student = torch.randn(10, 3, requires_grad=True)
    teacher = torch.randn(10, 7, requires_grad=True)
    PerceptionCoherenceLoss()(student, teacher).backward()
    assert teacher.grad is None
    assert student.grad is not None and torch.isfinite(student.grad).all()
    assert student.grad.abs().sum() > 0


def test_loss_is_invariant_to_rescaling_and_moving_either_side():
    student, teacher = gaussian(12, 3, seed=12), gaussian(12, 9, seed=13)
    loss = PerceptionCoherenceLoss(tau=0.05)
    base = float(loss(student, teacher))
    rotation, _ = torch.linalg.qr(gaussian(3, 3, seed=14))
    assert math.isclose(float(loss(7.5 * student @ rotation + 2.0, teacher)), base, rel_tol=1e-9)
    assert math.isclose(float(loss(student, 0.01 * teacher - 4.0)), base, rel_tol=1e-9)


def test_loss_is_permutation_invariant():
    student, teacher = gaussian(12, 3, seed=15), gaussian(12, 5, seed=16)
    order = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    loss = PerceptionCoherenceLoss(tau=0.2)
    assert math.isclose(float(loss(student[order], teacher[order])), float(loss(student, teacher)),
                        rel_tol=1e-12)


def test_bf16_autocast_is_safe():
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 8)
    inputs, teacher = torch.randn(64, 16), torch.randn(64, 32)
    loss = PerceptionCoherenceLoss(tau=0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        student = layer(inputs)
        assert student.dtype == torch.bfloat16
        value = loss(student, teacher.bfloat16())
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())
    # the ranking part ran in float32 on the bf16 values: same number as outside autocast
    expected = loss(student.detach().float(), teacher.bfloat16().float())
    torch.testing.assert_close(value.detach(), expected)


def test_collapsed_student_gives_finite_loss_and_gradient():
    student = torch.zeros(6, 2, requires_grad=True)
    value = PerceptionCoherenceLoss()(student, torch.randn(6, 3))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(student.grad).all()


def test_training_steps_reduce_the_perception_gap():
    torch.manual_seed(0)
    teacher = torch.randn(96, 32)
    student_net = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    optimizer = torch.optim.Adam(student_net.parameters(), lr=1e-2)
    loss = PerceptionCoherenceLoss(tau=0.05)
    before = float(perception_gap(student_net(teacher).detach(), teacher))
    for _ in range(60):
        optimizer.zero_grad()
        loss(student_net(teacher), teacher).backward()
        optimizer.step()
    after = float(perception_gap(student_net(teacher).detach(), teacher))
    assert after < 0.7 * before


@pytest.mark.cuda
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_cuda_matches_cpu(metric):
    from perceptcoh import perception

    student_cpu = torch.randn(300, 16, dtype=torch.float64, requires_grad=True)
    teacher_cpu = torch.randn(300, 64, dtype=torch.float64)
    student_gpu = student_cpu.detach().cuda().requires_grad_(True)
    loss = PerceptionCoherenceLoss(tau=0.1, metric_student=metric)
    value_cpu, value_gpu = loss(student_cpu, teacher_cpu), loss(student_gpu, teacher_cpu.cuda())
    value_cpu.backward()
    value_gpu.backward()
    torch.testing.assert_close(value_gpu.cpu(), value_cpu)
    torch.testing.assert_close(student_gpu.grad.cpu(), student_cpu.grad)
    assert torch.equal(perception(teacher_cpu.cuda()).cpu(), perception(teacher_cpu))
    torch.testing.assert_close(
        dissimilarity(teacher_cpu.cuda(), metric=metric).cpu(), dissimilarity(teacher_cpu, metric=metric)
    )


@pytest.mark.cuda
def test_cuda_default_loss_never_waits_for_the_device():
    student = torch.randn(64, 8, device="cuda", requires_grad=True)
    teacher = torch.randn(64, 32, device="cuda")
    loss = PerceptionCoherenceLoss()  # default arguments, finite check included
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss(student, teacher).backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()
    assert torch.isfinite(student.grad).all()


@pytest.mark.cuda
def test_cuda_finite_check_fails_on_the_device():
    import subprocess
    import sys

    # A device-side assertion poisons the CUDA context, so it runs in a process of its own.
    script = (
        "import torch\n"
        "from perceptcoh import PerceptionCoherenceLoss\n"
        "teacher = torch.randn(8, 4, device='cuda')\n"
        "teacher[0, 0] = float('nan')\n"
        "PerceptionCoherenceLoss()(torch.randn(8, 2, device='cuda'), teacher)\n"
        "torch.cuda.synchronize()\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode != 0 and "assert" in result.stderr.lower(), result.stderr
