"""Baseline transfer losses and the loss registry, against slow loop references."""

from __future__ import annotations

import math

import pytest
import torch

from perceptcoh.baselines import (
    PKT,
    CorrelationCongruence,
    FitNet,
    LogitKD,
    RelationalKD,
    SimilarityPreserving,
)
from perceptcoh.loss import PerceptionCoherenceLoss
from perceptcoh.registry import LOGIT_LOSSES, LOSSES, build_loss

B, Q, P = 7, 3, 5


def features(n: int, width: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, width, generator=generator, dtype=dtype)


# ---------------------------------------------------------------- slow references
# Plain Python on lists of floats, written from the papers' formulas, not from the library.


def rows(x: torch.Tensor) -> list[list[float]]:
    return x.detach().double().tolist()


def dot(a: list[float], b: list[float]) -> float:
    return sum(u * v for u, v in zip(a, b))


def norm(a: list[float]) -> float:
    return math.sqrt(dot(a, a))


def unit(a: list[float]) -> list[float]:
    length = norm(a)
    return [0.0] * len(a) if length == 0 else [u / length for u in a]


def affine(weight: list[list[float]], bias: list[float], x: list[float]) -> list[float]:
    return [dot(w, x) + c for w, c in zip(weight, bias)]


def huber(z: float) -> float:
    return 0.5 * z * z if abs(z) < 1 else abs(z) - 0.5


def fitnet_reference(student, teacher, weight, bias) -> float:
    s, t, w, b = rows(student), rows(teacher), rows(weight), bias.detach().double().tolist()
    total = 0.0
    for i in range(len(s)):
        prediction = affine(w, b, s[i])
        for c in range(len(t[i])):
            total += (prediction[c] - t[i][c]) ** 2
    return total / (len(s) * len(t[0]))


def normalised_gram(x: list[list[float]]) -> list[list[float]]:
    n = len(x)
    gram = [[dot(x[i], x[j]) for j in range(n)] for i in range(n)]
    result = []
    for i in range(n):
        length = math.sqrt(sum(g * g for g in gram[i]))
        result.append([g / length for g in gram[i]])
    return result


def sp_reference(student, teacher) -> float:
    gs, gt = normalised_gram(rows(student)), normalised_gram(rows(teacher))
    n = len(gs)
    return sum((gs[i][j] - gt[i][j]) ** 2 for i in range(n) for j in range(n)) / n**2


def taylor_rbf(x: list[float], y: list[float], gamma: float, order: int) -> float:
    c = dot(x, y)
    series = sum((2 * gamma * c) ** power / math.factorial(power) for power in range(order + 1))
    return math.exp(-2 * gamma) * series


def exact_rbf(x: list[float], y: list[float], gamma: float) -> float:
    return math.exp(-gamma * sum((u - v) ** 2 for u, v in zip(x, y)))


def cc_reference(student, teacher, weight, bias, kernel) -> float:
    w, b = rows(weight), bias.detach().double().tolist()
    u = [unit(affine(w, b, s)) for s in rows(student)]
    v = [unit(t) for t in rows(teacher)]
    n = len(u)
    total = 0.0
    for i in range(n):
        for j in range(n):
            total += (kernel(u[i], u[j]) - kernel(v[i], v[j])) ** 2
    return total / n**2


def rkd_distance_reference(student, teacher) -> float:
    def normalised(x):
        n = len(x)
        d = {}
        for i in range(n):
            for j in range(n):
                if i != j:
                    d[i, j] = norm([a - b for a, b in zip(x[i], x[j])])
        mean = sum(d.values()) / len(d)
        return {pair: value / mean for pair, value in d.items()}

    ds, dt = normalised(rows(student)), normalised(rows(teacher))
    return sum(huber(ds[pair] - dt[pair]) for pair in ds) / len(ds)


def rkd_angle_reference(student, teacher) -> float:
    def angle(x, i, j, k):
        if i == j or k == j:
            return 0.0
        e_ji = unit([a - b for a, b in zip(x[i], x[j])])
        e_jk = unit([a - b for a, b in zip(x[k], x[j])])
        return dot(e_ji, e_jk)

    s, t = rows(student), rows(teacher)
    n = len(s)
    total = 0.0
    for i in range(n):
        for j in range(n):
            for k in range(n):
                total += huber(angle(s, i, j, k) - angle(t, i, j, k))
    return total / n**3


def pkt_reference(student, teacher, eps) -> float:
    def probabilities(x):
        u = [unit(a) for a in x]
        n = len(u)
        kernel = [[(dot(u[i], u[j]) + 1) / 2 for j in range(n)] for i in range(n)]
        result = []
        for i in range(n):
            total = sum(kernel[i][k] for k in range(n) if k != i)
            result.append([kernel[i][j] / total for j in range(n)])
        return result

    ps, pt = probabilities(rows(student)), probabilities(rows(teacher))
    n = len(ps)
    total = 0.0
    for i in range(n):
        for j in range(n):
            if j != i:
                total += pt[i][j] * math.log((pt[i][j] + eps) / (ps[i][j] + eps))
    return total / n


def kd_reference(student_logits, teacher_logits, temperature) -> float:
    def softmax(z):
        top = max(z)
        e = [math.exp((v - top) / temperature) for v in z]
        return [v / sum(e) for v in e]

    s, t = rows(student_logits), rows(teacher_logits)
    total = 0.0
    for i in range(len(s)):
        ps, pt = softmax(s[i]), softmax(t[i])
        total += sum(a * math.log(a / b) for a, b in zip(pt, ps))
    return temperature**2 * total / len(s)


# ---------------------------------------------------------------- against the references


def test_fitnet_matches_reference():
    loss = FitNet(Q, P)
    s, t = features(B, Q, 0), features(B, P, 1)
    value = loss(s, t)
    assert value.dtype == torch.float64 and value.ndim == 0
    expected = fitnet_reference(s, t, loss.regressor.weight, loss.regressor.bias)
    assert value.item() == pytest.approx(expected, rel=1e-10)


def test_similarity_preserving_matches_reference():
    s, t = features(B, Q, 2), features(B, P, 3)
    assert SimilarityPreserving()(s, t).item() == pytest.approx(sp_reference(s, t), rel=1e-10)


@pytest.mark.parametrize("gamma, order", [(0.4, 2), (1.0, 1), (0.7, 4)])
def test_correlation_congruence_matches_reference(gamma, order):
    loss = CorrelationCongruence(Q, P, gamma=gamma, order=order)
    s, t = features(B, Q, 4), features(B, P, 5)

    def kernel(x, y):
        return taylor_rbf(x, y, gamma, order)

    expected = cc_reference(s, t, loss.projection.weight, loss.projection.bias, kernel)
    assert loss(s, t).item() == pytest.approx(expected, rel=1e-10)


def test_correlation_congruence_high_order_is_the_rbf_kernel():
    gamma = 0.4
    loss = CorrelationCongruence(Q, P, gamma=gamma, order=25)
    s, t = features(B, Q, 6), features(B, P, 7)

    def kernel(x, y):
        return exact_rbf(x, y, gamma)

    expected = cc_reference(s, t, loss.projection.weight, loss.projection.bias, kernel)
    assert loss(s, t).item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("n", [2, 3, 6])
def test_relational_kd_matches_reference(n):
    s, t = features(n, Q, 8), features(n, P, 9)
    distance = RelationalKD(distance_weight=1.0, angle_weight=0.0)(s, t)
    angle = RelationalKD(distance_weight=0.0, angle_weight=1.0)(s, t)
    both = RelationalKD(distance_weight=25.0, angle_weight=50.0)(s, t)
    expected_distance = rkd_distance_reference(s, t)
    expected_angle = rkd_angle_reference(s, t)
    assert distance.item() == pytest.approx(expected_distance, rel=1e-10, abs=1e-14)
    assert angle.item() == pytest.approx(expected_angle, rel=1e-10, abs=1e-14)
    assert both.item() == pytest.approx(25 * expected_distance + 50 * expected_angle, rel=1e-10)


def test_relational_kd_reference_uses_large_differences_too():
    # Spread-out teacher angles put some differences above 1, on the linear branch of Huber.
    s = features(B, Q, 10)
    t = torch.cat([features(B, P, 11)[:, :1] * 10, features(B, P, 12)[:, 1:] * 0.01], dim=1)
    s = s * torch.tensor([100.0, 0.01, 0.01], dtype=torch.float64)
    loss = RelationalKD(distance_weight=1.0, angle_weight=1.0)
    expected = rkd_distance_reference(s, t) + rkd_angle_reference(s, t)
    assert loss(s, t).item() == pytest.approx(expected, rel=1e-10)


def rkd_angle_from_differences(student, teacher):
    """L_A from explicit unit difference vectors, all (B, B, B) angles at once: the slow,
    differentiable form that the Gram-matrix kernel replaces."""
    def angles(x):
        units = torch.nn.functional.normalize(x[None, :, :] - x[:, None, :], dim=-1)  # [j, i]: e_ji
        return units @ units.transpose(1, 2)  # [j, i, k]: <e_ji, e_jk>

    total = torch.nn.functional.smooth_l1_loss(angles(student), angles(teacher), reduction="sum", beta=1.0)
    return total / student.shape[0] ** 3


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_relational_kd_angle_kernel_has_the_reference_gradient(chunk_size):
    s = features(B, Q, 40).requires_grad_()
    reference_s = s.detach().clone().requires_grad_()
    t = features(B, P, 41) * 3
    value = RelationalKD(distance_weight=0.0, angle_weight=1.0, chunk_size=chunk_size)(s, t)
    reference = rkd_angle_from_differences(reference_s, t)
    value.backward()
    reference.backward()
    assert value.item() == pytest.approx(rkd_angle_reference(s.detach(), t), rel=1e-10)
    torch.testing.assert_close(value, reference, rtol=1e-12, atol=0)
    torch.testing.assert_close(s.grad, reference_s.grad, rtol=1e-9, atol=1e-14)


def test_relational_kd_angle_kernel_in_float32_survives_a_large_common_offset():
    # Centring the features before the Gram matrix keeps the cancellation in
    # G_ik - G_ij - G_jk + G_jj small although every feature sits far from the origin.
    s, t = features(64, 16, 42) + 100, features(64, 32, 43) - 50
    value32 = RelationalKD(distance_weight=0.0, angle_weight=1.0)(s.float(), t.float())
    assert value32.item() == pytest.approx(rkd_angle_from_differences(s, t).item(), rel=1e-4)


@pytest.mark.parametrize("eps", [1e-7, 1e-2])
def test_pkt_matches_reference(eps):
    s, t = features(B, Q, 13), features(B, P, 14)
    assert PKT(eps=eps)(s, t).item() == pytest.approx(pkt_reference(s, t, eps), rel=1e-10)


@pytest.mark.parametrize("temperature", [1.0, 4.0, 0.5])
def test_logit_kd_matches_reference(temperature):
    s, t = features(B, 10, 15) * 3, features(B, 10, 16) * 3
    value = LogitKD(temperature)(s, t)
    assert value.item() == pytest.approx(kd_reference(s, t, temperature), rel=1e-10)


def test_logit_kd_gradient_is_temperature_times_probability_difference():
    temperature = 3.0
    s, t = features(B, 10, 17).requires_grad_(), features(B, 10, 18)
    LogitKD(temperature)(s, t).backward()
    expected = temperature * (
        torch.softmax(s.detach() / temperature, 1) - torch.softmax(t / temperature, 1)
    ) / B
    torch.testing.assert_close(s.grad, expected, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- identities


def test_relational_losses_are_zero_for_identical_features():
    x = features(B, P, 19)
    assert SimilarityPreserving()(x, x).item() == pytest.approx(0, abs=1e-12)
    assert PKT()(x, x).item() == pytest.approx(0, abs=1e-12)
    rkd = RelationalKD()
    assert rkd.distance_term(x, x).item() == pytest.approx(0, abs=1e-12)
    assert rkd(x, x).item() == pytest.approx(0, abs=1e-10)
    cc = CorrelationCongruence(P, P)
    with torch.no_grad():
        cc.projection.weight.copy_(torch.eye(P))
        cc.projection.bias.zero_()
    assert cc(x, x).item() == pytest.approx(0, abs=1e-12)
    fitnet = FitNet(P, P)
    with torch.no_grad():
        fitnet.regressor.weight.copy_(torch.eye(P))
        fitnet.regressor.bias.zero_()
    assert fitnet(x, x).item() == pytest.approx(0, abs=1e-12)


def test_logit_kd_is_zero_for_identical_logits():
    z = features(B, 10, 20)
    assert LogitKD()(z, z).item() == pytest.approx(0, abs=1e-12)
    # Softmax ignores a shift of all logits of a sample.
    assert LogitKD()(z + 5.0, z).item() == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("scale", [1e-3, 0.5, 70.0])
def test_relational_kd_is_invariant_to_scaling_the_student(scale):
    s, t = features(B, Q, 21), features(B, P, 22)
    rkd = RelationalKD()
    assert rkd.distance_term(s * scale, t).item() == pytest.approx(
        rkd.distance_term(s, t).item(), rel=1e-10
    )
    assert rkd(s * scale, t).item() == pytest.approx(rkd(s, t).item(), rel=1e-10)


def test_pkt_and_sp_are_invariant_to_scaling_the_student():
    s, t = features(B, Q, 23), features(B, P, 24)
    assert PKT()(s * 9.0, t).item() == pytest.approx(PKT()(s, t).item(), rel=1e-9)
    assert SimilarityPreserving()(s * 9.0, t).item() == pytest.approx(
        SimilarityPreserving()(s, t).item(), rel=1e-10
    )


def test_relational_kd_with_collapsed_student_is_finite():
    s = torch.ones(B, Q, dtype=torch.float64, requires_grad=True)
    loss = RelationalKD()(s, features(B, P, 25))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()


# ---------------------------------------------------------------- gradients


def feature_losses():
    return [
        FitNet(Q, P),
        SimilarityPreserving(),
        CorrelationCongruence(Q, P),
        RelationalKD(),
        RelationalKD(chunk_size=2),
        PKT(),
    ]


@pytest.mark.parametrize("loss", feature_losses(), ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradient_reaches_student_and_parameters_not_teacher(loss, dtype):
    s = features(B, Q, 26, dtype).requires_grad_()
    t = features(B, P, 27, dtype).requires_grad_()
    value = loss(s, t)
    assert value.dtype == dtype and value.ndim == 0
    value.backward()
    assert t.grad is None
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    for name, parameter in loss.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all() and parameter.grad.abs().sum() > 0, name
        assert parameter.dtype == torch.float32, name


def test_logit_kd_gradient_reaches_student_only():
    s = features(B, 10, 28).requires_grad_()
    t = features(B, 10, 29).requires_grad_()
    LogitKD()(s, t).backward()
    assert t.grad is None and s.grad is not None and s.grad.abs().sum() > 0


def test_parameters_follow_float64_inputs_without_casting_the_module():
    loss = FitNet(Q, P)
    s, t = features(B, Q, 30), features(B, P, 31)
    value = loss(s, t)
    value.backward()
    assert value.dtype == torch.float64
    assert loss.regressor.weight.grad.dtype == torch.float32


def test_gradient_matches_finite_differences():
    s = features(5, Q, 32).requires_grad_()
    t = features(5, P, 33)
    losses = [
        FitNet(Q, P).double(),
        SimilarityPreserving(),
        CorrelationCongruence(Q, P).double(),
        RelationalKD(chunk_size=2),
        PKT(),
    ]
    for loss in losses:
        assert torch.autograd.gradcheck(lambda x: loss(x, t), (s,), eps=1e-6, atol=1e-5), loss


# ---------------------------------------------------------------- RKD chunking


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 4, None])
def test_chunked_relational_kd_equals_unchunked(chunk_size):
    n = 9
    s_whole = features(n, Q, 34).requires_grad_()
    s_chunked = s_whole.detach().clone().requires_grad_()
    t = features(n, P, 35)
    whole = RelationalKD(chunk_size=n)(s_whole, t)
    chunked = RelationalKD(chunk_size=chunk_size)(s_chunked, t)
    torch.testing.assert_close(chunked, whole, rtol=1e-12, atol=1e-14)
    whole.backward()
    chunked.backward()
    torch.testing.assert_close(s_chunked.grad, s_whole.grad, rtol=1e-10, atol=1e-14)
    with torch.no_grad():
        no_grad_value = RelationalKD(chunk_size=chunk_size)(s_chunked, t)
    torch.testing.assert_close(no_grad_value, whole.detach())


def test_chunked_relational_kd_does_not_keep_the_angles_for_backward():
    n, chunk = 20, 4
    s = features(n, Q, 36).requires_grad_()
    t = features(n, P, 37)
    saved: list[int] = []

    def pack(tensor):
        saved.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = RelationalKD(distance_weight=0.0, chunk_size=chunk)(s, t)
    loss.backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()
    # Without checkpointing each chunk would save its (chunk, n, n) angle matrices.
    assert max(saved) < chunk * n * n


# ---------------------------------------------------------------- bf16 autocast


@pytest.mark.parametrize("loss", feature_losses(), ids=lambda m: type(m).__name__)
def test_bf16_autocast_is_computed_in_float32(loss):
    generator = torch.Generator().manual_seed(38)
    torch.manual_seed(38)  # the projection's initialisation, whatever ran before
    projection = torch.nn.Linear(4, Q)
    x = torch.randn(B, 4, generator=generator)
    t = torch.randn(B, P, generator=generator)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        s = projection(x)
        value = loss(s, t.bfloat16())
    assert s.dtype == torch.bfloat16
    assert value.dtype == torch.float32 and torch.isfinite(value)
    # Same bf16-rounded inputs without autocast: equal if nothing inside ran in bf16.
    torch.testing.assert_close(value, loss(s.float(), t.bfloat16().float()), rtol=1e-5, atol=1e-6)
    # And close to the float32 pipeline.
    full = loss(projection(x), t)
    assert value.item() == pytest.approx(full.item(), rel=5e-2, abs=1e-3)


def test_bf16_autocast_logit_kd():
    s, t = features(B, 10, 39, torch.float32) * 3, features(B, 10, 40, torch.float32) * 3
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = LogitKD()(s.bfloat16(), t.bfloat16())
    assert value.dtype == torch.float32 and torch.isfinite(value)
    torch.testing.assert_close(value, LogitKD()(s.bfloat16().float(), t.bfloat16().float()))
    assert value.item() == pytest.approx(LogitKD()(s, t).item(), rel=5e-2)


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("loss", feature_losses(), ids=lambda m: type(m).__name__)
def test_bad_features_raise_naming_the_argument(loss):
    s, t = features(B, Q, 41), features(B, P, 42)
    with pytest.raises(ValueError, match="student_features"):
        loss(s[0], t)
    with pytest.raises(ValueError, match="teacher_features"):
        loss(s, t[None])
    with pytest.raises(TypeError, match="student_features"):
        loss(s.long(), t)
    with pytest.raises(TypeError, match="teacher_features"):
        loss(s, t.int())
    with pytest.raises(TypeError, match="teacher_features"):
        loss(s, t.tolist())
    bad = s.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="student_features"):
        loss(bad, t)
    bad = t.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="teacher_features"):
        loss(s, bad)
    with pytest.raises(ValueError, match="student_features and teacher_features"):
        loss(s, t[:-1])


@pytest.mark.parametrize("loss", feature_losses()[1:], ids=lambda m: type(m).__name__)
def test_relational_losses_need_two_samples(loss):
    with pytest.raises(ValueError, match="student_features needs at least 2"):
        loss(features(1, Q, 43), features(1, P, 44))


def test_fitnet_takes_a_single_sample():
    assert torch.isfinite(FitNet(Q, P)(features(1, Q, 45), features(1, P, 46)))


@pytest.mark.parametrize("loss_class", [FitNet, CorrelationCongruence])
def test_wrong_widths_raise(loss_class):
    loss = loss_class(Q, P)
    with pytest.raises(ValueError, match="student_features must have student_dim=3"):
        loss(features(B, Q + 1, 47), features(B, P, 48))
    with pytest.raises(ValueError, match="teacher_features must have teacher_dim=5"):
        loss(features(B, Q, 47), features(B, P - 1, 48))


def test_bad_logits_raise_naming_the_argument():
    loss = LogitKD()
    s, t = features(B, 10, 49), features(B, 10, 50)
    with pytest.raises(ValueError, match="student_logits"):
        loss(s[0], t)
    with pytest.raises(TypeError, match="teacher_logits"):
        loss(s, t.long())
    with pytest.raises(ValueError, match="student_logits and teacher_logits.*samples"):
        loss(s, t[:3])
    with pytest.raises(ValueError, match="student_logits and teacher_logits.*classes"):
        loss(s, t[:, :5])
    bad = t.clone()
    bad[1, 1] = float("nan")
    with pytest.raises(ValueError, match="teacher_logits"):
        loss(s, bad)


@pytest.mark.parametrize(
    "build, error, name",
    [
        (lambda: LogitKD(temperature=0), ValueError, "temperature"),
        (lambda: LogitKD(temperature=-1.0), ValueError, "temperature"),
        (lambda: LogitKD(temperature="4"), TypeError, "temperature"),
        (lambda: PKT(eps=0), ValueError, "eps"),
        (lambda: CorrelationCongruence(Q, P, gamma=0), ValueError, "gamma"),
        (lambda: CorrelationCongruence(Q, P, gamma=float("inf")), ValueError, "gamma"),
        (lambda: CorrelationCongruence(Q, P, order=0), ValueError, "order"),
        (lambda: CorrelationCongruence(Q, P, order=1.5), TypeError, "order"),
        (lambda: CorrelationCongruence(0, P), ValueError, "student_dim"),
        (lambda: FitNet(Q, 0), ValueError, "teacher_dim"),
        (lambda: FitNet("3", P), TypeError, "student_dim"),
        (lambda: FitNet(Q, True), TypeError, "teacher_dim"),
        (lambda: RelationalKD(distance_weight=-1), ValueError, "distance_weight"),
        (lambda: RelationalKD(angle_weight=float("nan")), ValueError, "angle_weight"),
        (lambda: RelationalKD(distance_weight=0, angle_weight=0), ValueError, "both be 0"),
        (lambda: RelationalKD(chunk_size=0), ValueError, "chunk_size"),
    ],
)
def test_bad_hyper_parameters_raise(build, error, name):
    with pytest.raises(error, match=name):
        build()


# ---------------------------------------------------------------- registry


def test_registry_names_and_classes():
    assert set(LOSSES) == {"pc", "fitnet", "sp", "cc", "rkd", "pkt", "kd", "crd"}
    assert LOSSES["pc"] is PerceptionCoherenceLoss
    assert LOGIT_LOSSES == frozenset({"kd"}) and LOGIT_LOSSES <= set(LOSSES)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_registered_loss_builds_and_runs(name):
    from perceptcoh.registry import SPECS

    loss = build_loss(name, student_dim=Q, teacher_dim=P, dataset_size=4 * B)
    assert isinstance(loss, LOSSES[name])
    if name in LOGIT_LOSSES:
        s, t = features(B, 10, 51).requires_grad_(), features(B, 10, 52)
    else:
        s, t = features(B, Q, 51).requires_grad_(), features(B, P, 52)
    indices = (torch.arange(B) * 3,) if SPECS[name].indexed else ()
    value = loss(s, t, *indices)
    value.backward()
    assert value.ndim == 0 and torch.isfinite(value) and s.grad is not None


def test_build_loss_fitnet_with_dims():
    loss = build_loss("fitnet", student_dim=3, teacher_dim=5)
    assert isinstance(loss, FitNet) and loss.regressor.weight.shape == (5, 3)


def test_build_loss_forwards_options_and_ignores_unused_dims():
    assert build_loss("kd", temperature=2.0).temperature == 2.0
    assert build_loss("rkd", student_dim=3, angle_weight=0.0).angle_weight == 0.0
    assert build_loss("pc", tau=0.3, teacher_dim=5).tau == 0.3
    assert build_loss("cc", student_dim=3, teacher_dim=5, order=3).order == 3


def test_build_loss_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="unknown loss 'vid'.*fitnet.*pkt"):
        build_loss("vid")
    with pytest.raises(TypeError, match="name"):
        build_loss(3)


@pytest.mark.parametrize(
    "name, dims, missing",
    [
        ("fitnet", {"student_dim": 3}, "teacher_dim"),
        ("fitnet", {"teacher_dim": 5}, "student_dim"),
        ("cc", {}, "student_dim"),
    ],
)
def test_build_loss_missing_dims_raise(name, dims, missing):
    with pytest.raises(ValueError, match=missing):
        build_loss(name, **dims)


def test_build_loss_unknown_option_raises():
    with pytest.raises(TypeError, match="'kd' has no option 'tau'"):
        build_loss("kd", tau=0.1)


def test_build_loss_hyper_parameter_errors_come_through():
    with pytest.raises(ValueError, match="temperature"):
        build_loss("kd", temperature=0)
