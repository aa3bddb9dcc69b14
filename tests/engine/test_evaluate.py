"""Evaluation functions against brute-force references (loops) on tiny inputs."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from perceptcoh.engine import evaluate, feature_metrics
from perceptcoh.engine.data import ImageDataset, normalize
from perceptcoh.dissimilarity import pairwise
from perceptcoh.models import build_model


def tiny_dataset(n: int = 37, seed: int = 0) -> ImageDataset:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 8, 8), generator=generator, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,), generator=generator)
    return ImageDataset(images, labels, (0.4,), (0.3,), 10, "digits")


def tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("digits_mlp", 10, feature_dim=5)


def test_top1_and_features_match_one_sample_at_a_time():
    dataset, model = tiny_dataset(), tiny_model()
    model.train()
    correct, features = 0, []
    with torch.no_grad():
        for index in range(len(dataset)):
            image = dataset.images[index].float() / 255
            x = ((image - 0.4) / 0.3)[None]
            sample_features, logits = model.eval()(x)
            features.append(sample_features[0])
            correct += int(logits[0].argmax()) == int(dataset.labels[index])
    model.train()
    accuracy = evaluate.top1_accuracy(model, dataset, batch_size=8)
    assert accuracy == pytest.approx(correct / len(dataset))
    extracted, labels = evaluate.extract_features(model, dataset, batch_size=5)
    torch.testing.assert_close(extracted, torch.stack(features), rtol=1e-5, atol=1e-6)
    assert torch.equal(labels, dataset.labels)
    assert model.training  # the mode is restored
    assert not extracted.requires_grad and extracted.dtype == torch.float32
    # Usable in autograd afterwards (not inference tensors).
    (extracted * torch.ones(1, requires_grad=True)).sum().backward()


def test_feature_extraction_uses_batch_normalisation_in_eval_mode():
    model = build_model("digits_cnn", 10)
    dataset = tiny_dataset(9)
    model.train()
    features, _ = evaluate.extract_features(model, dataset, batch_size=4)
    with torch.no_grad():
        expected, _ = model.eval()(normalize(dataset.images, dataset.mean, dataset.std))
    torch.testing.assert_close(features, expected, rtol=1e-5, atol=1e-5)


def test_linear_probe_matches_scikit_learn():
    linear_model = pytest.importorskip("sklearn.linear_model")
    generator = torch.Generator().manual_seed(1)
    centres = torch.randn(3, 4, generator=generator, dtype=torch.float64) * 2
    train_labels = torch.arange(60) % 3
    train = centres[train_labels] + torch.randn(60, 4, generator=generator, dtype=torch.float64)
    train[:, 2] *= 50  # standardisation must undo scale differences
    test_labels = torch.arange(30) % 3
    test = centres[test_labels] + torch.randn(30, 4, generator=generator, dtype=torch.float64)
    test[:, 2] *= 50
    l2 = 1e-2
    weight, bias, mean, std = feature_metrics.fit_linear_probe(train, train_labels, 3, l2=l2)
    torch.testing.assert_close(mean, train.mean(0))
    standardised_train = ((train - mean) / std).numpy()
    standardised_test = ((test - mean) / std).numpy()
    reference = linear_model.LogisticRegression(C=1 / (l2 * 60), tol=1e-10, max_iter=10_000)
    reference.fit(standardised_train, train_labels.numpy())
    ours = torch.softmax(torch.from_numpy(standardised_test) @ weight.T + bias, dim=1)
    theirs = torch.from_numpy(reference.predict_proba(standardised_test))
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)
    accuracy = feature_metrics.linear_probe_accuracy(train, train_labels, test, test_labels, l2=l2)
    assert accuracy == pytest.approx(reference.score(standardised_test, test_labels.numpy()))


@pytest.mark.parametrize("threads", [1, 2])
def test_the_linear_probe_is_bit_for_bit_repeatable_on_a_cpu(threads):
    """Issue 25, item 4: the probe (float32 L-BFGS, 500 iterations) of the same features is
    the same to the last bit when fitted again, from a copy at another memory alignment,
    with 1 or 2 threads. Probes of identical students that differ between two saved tables
    therefore come from where the tables were computed (another CPU's BLAS kernels order
    the sums differently), not from the probe."""
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(3000, 64, generator=generator)
    labels = torch.randint(0, 20, (3000,), generator=generator)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        first = feature_metrics.fit_linear_probe(features, labels, 20)
        buffer = torch.empty(features.numel() + 1)
        shifted = buffer[1:].view_as(features)  # 4 bytes off the allocator's alignment
        shifted.copy_(features)
        assert shifted.data_ptr() % 64 != features.data_ptr() % 64
        again = feature_metrics.fit_linear_probe(shifted, labels, 20)
    finally:
        torch.set_num_threads(previous)
    for a, b in zip(first, again):
        assert torch.equal(a, b)


def test_linear_probe_ignores_constant_features_and_separates_classes():
    labels = torch.arange(40) % 4
    features = torch.cat([torch.nn.functional.one_hot(labels, 4).float(),
                          torch.full((40, 1), 3.0)], dim=1)
    assert feature_metrics.linear_probe_accuracy(features, labels, features, labels) == 1.0


def reference_knn(train, train_labels, test, test_labels, k, metric):
    def distance(a, b):
        if metric == "euclidean":
            return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))
        dot = sum(x * y for x, y in zip(a, b))
        return 1 - dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))

    correct = 0
    for point, label in zip(test.tolist(), test_labels.tolist()):
        ranked = sorted(range(len(train)), key=lambda j: distance(point, train[j].tolist()))
        neighbours = [train_labels[j].item() for j in ranked[:k]]
        votes = {c: neighbours.count(c) for c in set(neighbours)}
        best = max(votes.values())
        tied = [c for c in votes if votes[c] == best]
        # tie: the class whose nearest member comes first
        prediction = min(tied, key=neighbours.index)
        correct += prediction == label
    return correct / len(test)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("k", [1, 4, 5, 30])
def test_knn_accuracy_matches_loops(metric, k):
    generator = torch.Generator().manual_seed(k)
    train = torch.randn(30, 3, generator=generator, dtype=torch.float64)
    test = torch.randn(15, 3, generator=generator, dtype=torch.float64)
    train_labels = torch.randint(0, 4, (30,), generator=generator)
    test_labels = torch.randint(0, 4, (15,), generator=generator)
    expected = reference_knn(train, train_labels, test, test_labels, k, metric)
    for chunk_size in (None, 1, 4):
        got = feature_metrics.knn_accuracy(train, train_labels, test, test_labels, k,
                                           metric=metric, chunk_size=chunk_size)
        assert got == pytest.approx(expected)


def test_knn_vote_tie_goes_to_the_nearest_class():
    train = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    train_labels = torch.tensor([2, 1, 1, 2])  # k = 4: two votes each, class 2 is nearest
    query = torch.zeros(1, 1)
    assert feature_metrics.knn_accuracy(train, train_labels, query, torch.tensor([2]), 4) == 1.0
    assert feature_metrics.knn_accuracy(train, train_labels, query, torch.tensor([1]), 4) == 0.0


def reference_map(features, labels, metric):
    n = len(features)
    distances = pairwise(features, features, metric)
    labels = labels.tolist()
    precisions = []
    for i in range(n):
        others = sorted((j for j in range(n) if j != i), key=lambda j: (float(distances[i, j]), j))
        relevant = [labels[j] == labels[i] for j in others]
        if not any(relevant):
            continue
        hits, total = 0, 0.0
        for position, is_relevant in enumerate(relevant, start=1):
            if is_relevant:
                hits += 1
                total += hits / position
        precisions.append(total / sum(relevant))
    return sum(precisions) / len(precisions)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_retrieval_map_matches_loops_and_scikit_learn(metric):
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(23, 4, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 3, (23,), generator=generator)
    labels[0] = 7  # a query with no relevant point is left out of the mean
    expected = reference_map(features, labels, metric)
    for chunk_size in (None, 1, 5):
        got = feature_metrics.retrieval_map(features, labels, metric=metric, chunk_size=chunk_size)
        assert got == pytest.approx(expected, rel=1e-12)
    metrics = pytest.importorskip("sklearn.metrics")
    distances = pairwise(features, features, metric)
    per_query = []
    for i in range(1, 23):
        mask = torch.arange(23) != i
        per_query.append(metrics.average_precision_score(
            (labels[mask] == labels[i]).numpy(), -distances[i, mask].numpy()))
    assert expected == pytest.approx(sum(per_query) / len(per_query), rel=1e-12)


def test_retrieval_map_is_one_for_separated_classes():
    labels = torch.arange(12) % 3
    features = labels[:, None].double() * 10 + torch.linspace(0, 1, 12)[:, None].double()
    assert feature_metrics.retrieval_map(features, labels) == pytest.approx(1.0)


def loop_gap_and_concordance(teacher, student, r):
    n = len(teacher)
    dt = pairwise(teacher, teacher, "euclidean").tolist()
    ds = pairwise(student, student, "euclidean").tolist()

    def rank(d, i, j):
        return sum(1 for k in range(n) if k != i and d[i][k] <= d[i][j]) / (n - 1)

    gap = sum(abs(rank(dt, i, j) - rank(ds, i, j)) ** r
              for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    sign = lambda x: (x > 0) - (x < 0)  # noqa: E731
    agree = [sign(dt[i][j] - dt[i][k]) == sign(ds[i][j] - ds[i][k])
             for i, j, k in itertools.permutations(range(n), 3)]
    return gap, sum(agree) / len(agree)


def test_transfer_metrics_match_loops():
    generator = torch.Generator().manual_seed(4)
    teacher = torch.randn(9, 5, generator=generator, dtype=torch.float64)
    student = teacher[:, :2] + 0.3 * torch.randn(9, 2, generator=generator, dtype=torch.float64)
    metrics = feature_metrics.transfer_metrics(student, teacher, max_points=None, k=3)
    for r in (1, 2):
        gap, concordance = loop_gap_and_concordance(teacher, student, r)
        assert metrics[f"perception_gap_r{r}"] == pytest.approx(gap)
    assert metrics["triplet_concordance"] == pytest.approx(concordance)
    assert metrics["gap_points"] == metrics["triplet_points"] == 9
    assert 0 <= metrics["knn_agreement"] <= 1
    # A coherent student (a scaled rotation) scores perfectly.
    rotation, _ = torch.linalg.qr(torch.randn(5, 5, generator=generator, dtype=torch.float64))
    perfect = feature_metrics.transfer_metrics(3 * teacher @ rotation, teacher, max_points=None,
                                               k=3)
    assert perfect["perception_gap_r1"] == pytest.approx(0, abs=1e-12)
    assert perfect["triplet_concordance"] == pytest.approx(1)
    assert perfect["knn_agreement"] == pytest.approx(1)


def test_transfer_metrics_subsample_is_seeded():
    generator = torch.Generator().manual_seed(5)
    teacher = torch.randn(40, 3, generator=generator)
    student = torch.randn(40, 2, generator=generator)
    sizes = dict(max_points=12, gap_max_points=20, seed=1)
    first = feature_metrics.transfer_metrics(student, teacher, **sizes)
    assert first == feature_metrics.transfer_metrics(student, teacher, **sizes)
    assert (first["triplet_points"], first["gap_points"]) == (12, 20)
    sample = torch.randperm(40, generator=torch.Generator().manual_seed(1))[:12]
    _, concordance = loop_gap_and_concordance(teacher[sample].double(),
                                              student[sample].double(), 1)
    assert first["triplet_concordance"] == pytest.approx(concordance, abs=1e-6)


def test_evaluate_models_reports_every_metric():
    student, teacher = tiny_model(0), build_model("digits_cnn", 10)
    train, test = tiny_dataset(40, seed=1), tiny_dataset(20, seed=2)
    metrics = evaluate.evaluate_models(student, test, train_set=train, teacher=teacher, k=5,
                                       max_points=10)
    expected = {"top1", "linear_probe_top1", "knn_top1", "retrieval_map", "teacher_top1",
                "teacher_linear_probe_top1", "teacher_knn_top1", "teacher_retrieval_map",
                "perception_gap_r1", "perception_gap_r2", "triplet_concordance",
                "knn_agreement", "gap_points", "triplet_points"}
    assert set(metrics) == expected
    assert metrics["top1"] == pytest.approx(evaluate.top1_accuracy(student, test))
    assert all(math.isfinite(value) for value in metrics.values())
    without = evaluate.evaluate_models(student, test, classifier=False)
    assert set(without) == {"retrieval_map"}


def test_the_feature_metrics_stay_importable_from_evaluate():
    """The book imports the probes from perceptcoh.engine.evaluate, where they were."""
    for name in feature_metrics.__all__:
        assert getattr(evaluate, name) is getattr(feature_metrics, name)


def test_bad_inputs_raise_clear_errors():
    features, labels = torch.randn(5, 2), torch.arange(5)
    with pytest.raises(ValueError, match="k must be"):
        feature_metrics.knn_accuracy(features, labels, features, labels, k=6)
    with pytest.raises(ValueError, match="labels must be"):
        feature_metrics.retrieval_map(features, labels[:4])
    with pytest.raises(TypeError, match="integers"):
        feature_metrics.retrieval_map(features, labels.float())
    with pytest.raises(ValueError, match="same number of features"):
        feature_metrics.linear_probe_accuracy(features, labels, torch.randn(5, 3), labels)
    with pytest.raises(ValueError, match="batch_size"):
        evaluate.top1_accuracy(tiny_model(), tiny_dataset(), batch_size=0)
