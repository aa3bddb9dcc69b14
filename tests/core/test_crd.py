"""CRD against a slow loop reference: value, gradients, memory updates, normalisation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from perceptcoh import CRD, build_loss


def gaussian(n: int, p: int, seed: int) -> torch.Tensor:
    return torch.randn(n, p, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def make(dataset_size: int = 20, **options) -> CRD:
    torch.manual_seed(0)
    loss = CRD(student_dim=3, teacher_dim=5, dataset_size=dataset_size, feat_dim=4, nce_k=6,
               **options)
    return loss.double()


def loop_loss(loss: CRD, student, teacher, indices, contrast, normalisers):
    """RepDistiller's CRD written out one sample and one contrast at a time."""
    total = 0.0
    noise = loss.nce_k / loss.dataset_size
    for i in range(len(indices)):
        u = F.normalize(loss.embed_student(student[i]), dim=0)
        v = F.normalize(loss.embed_teacher(teacher[i].detach()), dim=0)
        for side, (embedding, memory) in enumerate(((u, loss.memory_teacher),
                                                    (v, loss.memory_student))):
            for k, position in enumerate(contrast[i].tolist()):
                o = torch.exp(torch.dot(memory[position], embedding) / loss.nce_t)
                o = o / normalisers[side]
                if k == 0:
                    total = total - torch.log(o / (o + noise + 1e-7))
                else:
                    total = total - torch.log(noise / (o + noise + 1e-7))
    return total / len(indices)


def first_normalisers(loss: CRD, student, teacher, contrast) -> list[torch.Tensor]:
    with torch.no_grad():
        u = F.normalize(loss.embed_student(student), dim=1)
        v = F.normalize(loss.embed_teacher(teacher), dim=1)
        scores_s = torch.exp((loss.memory_teacher[contrast] @ u[:, :, None]).squeeze(2) / loss.nce_t)
        scores_t = torch.exp((loss.memory_student[contrast] @ v[:, :, None]).squeeze(2) / loss.nce_t)
    return [scores_s.mean() * loss.dataset_size, scores_t.mean() * loss.dataset_size]


# 20 memory rows score densely (20 <= (K + 1) * D = 28), 40 by gathering the contrasted rows.
@pytest.mark.parametrize("dataset_size", [20, 40])
def test_value_and_gradients_match_the_loop_reference(dataset_size):
    loss = make(dataset_size)
    student = gaussian(5, 3, seed=1).requires_grad_(True)
    teacher = gaussian(5, 5, seed=2)
    indices = torch.tensor([3, 0, 17, 9, 11])
    contrast = torch.cat([indices[:, None], loss.negatives(5, torch.device("cpu"))], dim=1)
    reference_loss = make(dataset_size)  # same heads and memories: same seeds
    normalisers = first_normalisers(reference_loss, student.detach(), teacher, contrast)
    expected = loop_loss(reference_loss, student, teacher, indices, contrast, normalisers)
    value = loss(student, teacher, indices)
    assert math.isclose(float(value.detach()), float(expected.detach()), rel_tol=1e-12)
    (student_grad, *head_grads) = torch.autograd.grad(
        value, [student, loss.embed_student.weight, loss.embed_teacher.weight])
    (expected_student, *expected_heads) = torch.autograd.grad(
        expected, [student, reference_loss.embed_student.weight,
                   reference_loss.embed_teacher.weight])
    torch.testing.assert_close(student_grad, expected_student, rtol=1e-10, atol=1e-12)
    for got, want in zip(head_grads, expected_heads):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_memories_move_to_the_new_embeddings_and_the_normalisers_stay():
    loss = make(nce_m=0.25)
    student, teacher = gaussian(4, 3, seed=3), gaussian(4, 5, seed=4)
    indices = torch.tensor([1, 5, 6, 19])
    before_student, before_teacher = loss.memory_student.clone(), loss.memory_teacher.clone()
    loss(student, teacher, indices)
    z = loss.normalisers.clone()
    assert (z > 0).all()
    u = F.normalize(loss.embed_student(student), dim=1).detach()
    v = F.normalize(loss.embed_teacher(teacher), dim=1).detach()
    for memory, before, embedding in ((loss.memory_student, before_student, u),
                                      (loss.memory_teacher, before_teacher, v)):
        expected = F.normalize(0.25 * before[indices] + 0.75 * embedding, dim=1)
        torch.testing.assert_close(memory[indices], expected)
        untouched = torch.ones(20, dtype=torch.bool)
        untouched[indices] = False
        assert torch.equal(memory[untouched], before[untouched])
    loss(gaussian(4, 3, seed=5), gaussian(4, 5, seed=6), torch.tensor([0, 2, 3, 4]))
    assert torch.equal(loss.normalisers, z)  # set once, on the first call


def test_negatives_are_reproducible_and_resume_with_the_state_dict():
    loss = make(seed=7)
    draws = []
    for _ in range(3):
        draws.append(loss.negatives(4, torch.device("cpu")))
        loss(gaussian(4, 3, seed=8), gaussian(4, 5, seed=9), torch.tensor([0, 1, 2, 3]))
    assert not torch.equal(draws[0], draws[1])
    assert all(((d >= 0) & (d < 20)).all() for d in draws)
    resumed = make(seed=7)
    resumed.load_state_dict(loss.state_dict())
    assert resumed.calls == 3
    assert torch.equal(resumed.negatives(4, torch.device("cpu")),
                       loss.negatives(4, torch.device("cpu")))


def test_the_registry_builds_it_sized_from_the_networks_and_the_data():
    loss = build_loss("crd", student_dim=3, teacher_dim=5, dataset_size=50, nce_k=8)
    assert loss.memory_student.shape == (50, 128) and loss.embed_teacher.in_features == 5
    with pytest.raises(ValueError, match="dataset_size"):
        build_loss("crd", student_dim=3, teacher_dim=5)


@pytest.mark.parametrize("arguments, message", [
    ({"dataset_size": 0}, "dataset_size"),
    ({"nce_k": 0}, "nce_k"),
    ({"nce_t": 0.0}, "nce_t"),
    ({"nce_m": 1.0}, "nce_m"),
])
def test_bad_arguments_name_themselves(arguments, message):
    with pytest.raises(ValueError, match=message):
        CRD(**{"student_dim": 3, "teacher_dim": 5, "dataset_size": 20, **arguments})


def test_bad_indices_and_widths_are_refused():
    loss = make()
    student, teacher = gaussian(4, 3, seed=1), gaussian(4, 5, seed=2)
    with pytest.raises(ValueError, match="indices"):
        loss(student, teacher, torch.tensor([0.0, 1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="teacher_dim"):
        loss(student, gaussian(4, 6, seed=3), torch.arange(4))


def test_students_learn_to_find_their_own_teacher_memory():
    """On synthetic data (512 points, teacher features a ReLU of a random map), a small
    student trained on CRD alone comes to match its own image's teacher memory much better
    than the average memory. The loss first rises while the memories fill with embeddings
    (values of different epochs are scored against different memories), then falls."""
    torch.manual_seed(0)
    inputs = torch.randn(512, 20)
    teacher = torch.relu(inputs @ torch.randn(20, 32))
    student = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(),
                                  torch.nn.Linear(64, 16))
    loss = CRD(16, 32, 512, nce_k=128)
    optimizer = torch.optim.SGD([*student.parameters(), *loss.parameters()], lr=0.05,
                                momentum=0.9)

    def margin() -> float:
        with torch.no_grad():
            unit = F.normalize(loss.embed_student(student(inputs)), dim=1)
            similarity = unit @ loss.memory_teacher.T
            return float(similarity.diagonal().mean() - similarity.mean())

    margins, losses = [], []
    generator = torch.Generator().manual_seed(1)
    for _ in range(15):
        order, total = torch.randperm(512, generator=generator), 0.0
        for start in range(0, 512, 64):
            batch = order[start : start + 64]
            value = loss(student(inputs[batch]), teacher[batch], batch)
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            total += float(value.detach())
        margins.append(margin())
        losses.append(total / 8)
    assert margins[-1] > 5 * margins[0] and margins[-1] > 0.1, margins
    assert losses[-1] < 0.7 * max(losses), losses
