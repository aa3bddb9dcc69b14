"""Datasets, on-device augmentation and normalisation.

The real CIFAR copies are read from the project's shared data folder when it is there
(skipped otherwise), each decoded once per session into a temporary cache; the loader's
logic (layouts, labels, cache invalidation, checksums, corrupt files) is also checked on
tiny fake copies written here, which take milliseconds.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import json
import lzma
import os
import shutil
import time
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import perceptcoh.engine.data.loader
from perceptcoh.engine.data import (
    CACHE_ENV,
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    DATA_ENV,
    DATASETS,
    CorruptDataError,
    ImageDataset,
    augment,
    load_dataset,
    normalize,
)

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"
)


@pytest.fixture(scope="module", autouse=True)
def cache_dir(tmp_path_factory):
    """Every test of this module caches into one temporary folder, never ~/.cache. Module
    scope: the environment is restored after this module, before the notebooks run."""
    path = tmp_path_factory.mktemp("perceptcoh-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(path))
        patch.delenv(DATA_ENV, raising=False)
        yield path


def shared(folder: str) -> Path:
    path = SHARED_DATA / folder
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} is absent")
    return path


def load_timed(name: str, split: str, root: Path) -> tuple[ImageDataset, float]:
    start = time.perf_counter()
    dataset = load_dataset(name, split, root, download=False)
    return dataset, time.perf_counter() - start


@pytest.fixture(scope="module")
def real_data(cache_dir):
    """Both CIFAR copies, each split decoded once (for this module) into the temporary cache.

    The two datasets load side by side: xz decompression (CIFAR-100) runs outside the GIL,
    so it overlaps with the JPEG decoding (CIFAR-10), which holds it.
    """

    def load_splits(name: str, folder: str):
        if not (SHARED_DATA / folder).is_dir():
            return None
        train, train_seconds = load_timed(name, "train", SHARED_DATA)
        test, _ = load_timed(name, "test", SHARED_DATA)
        return train, test, train_seconds

    copies = {"cifar100": "cifar100", "cifar10": "cifar10-jpeg"}
    with concurrent.futures.ThreadPoolExecutor(len(copies)) as pool:
        futures = {name: pool.submit(load_splits, name, folder) for name, folder in copies.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="module")
def cifar100(real_data):
    if real_data["cifar100"] is None:
        pytest.skip(f"shared data folder {SHARED_DATA / 'cifar100'} is absent")
    return real_data["cifar100"]


@pytest.fixture(scope="module")
def cifar10(real_data):
    if real_data["cifar10"] is None:
        pytest.skip(f"shared data folder {SHARED_DATA / 'cifar10-jpeg'} is absent")
    return real_data["cifar10"]


def channel_means(images: torch.Tensor) -> list[float]:
    """Per-channel mean / 255, from exact integer sums (bincount is the fast way to them)."""
    values = torch.arange(256, dtype=torch.int64)
    means = []
    for channel in range(images.shape[1]):
        counts = torch.bincount(images[:, channel].reshape(-1), minlength=256)
        means.append(int((counts * values).sum()) / int(counts.sum()) / 255)
    return means


# ---------------------------------------------------------------- digits


def test_digits_shapes_labels_and_ranges():
    train = load_dataset("digits", "train")
    test = load_dataset("digits", "test")
    assert (len(train), len(test)) == (1347, 450)
    for dataset in (train, test):
        assert dataset.images.shape[1:] == (1, 8, 8)
        assert dataset.images.dtype == torch.uint8 and dataset.labels.dtype == torch.int64
        assert dataset.num_classes == 10 and dataset.name == "digits"
        assert dataset.source == "sklearn"
        assert set(dataset.labels.tolist()) == set(range(10))
        assert int(dataset.images.min()) == 0 and int(dataset.images.max()) == 255
        allowed = {round(value * 255 / 16) for value in range(17)}
        assert set(dataset.images.unique().tolist()) <= allowed
    # Stratified: every class has a quarter of its images in the test split (+-1).
    train_counts = torch.bincount(train.labels, minlength=10)
    test_counts = torch.bincount(test.labels, minlength=10)
    quarter = (train_counts + test_counts).double() * 0.25
    assert torch.all((test_counts - quarter).abs() <= 1)


def test_digits_is_the_scikit_learn_data_split_in_two():
    from sklearn.datasets import load_digits

    digits = load_digits()
    expected = sorted(
        (bytes(np.rint(image * 255 / 16).astype(np.uint8).ravel()), int(label))
        for image, label in zip(digits.images, digits.target)
    )
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    got = sorted(
        (bytes(image.numpy().ravel()), int(label))
        for dataset in (train, test)
        for image, label in zip(dataset.images, dataset.labels)
    )
    assert got == expected


def test_digits_is_deterministic_and_uses_train_statistics():
    first, second = load_dataset("digits", "train"), load_dataset("digits", "train")
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    # The returned tensors are copies: changing one load does not change the next.
    first.images.zero_()
    assert torch.equal(load_dataset("digits", "train").images, second.images)
    test = load_dataset("digits", "test")
    pixels = second.images.double() / 255
    assert second.mean == pytest.approx([pixels.mean().item()], abs=1e-12)
    assert second.std == pytest.approx([pixels.std(unbiased=False).item()], abs=1e-12)
    assert test.mean == second.mean and test.std == second.std


def test_dataset_to_subset_and_len():
    dataset = load_dataset("digits", "test", device="cpu")
    moved = dataset.to("cpu")
    assert torch.equal(moved.images, dataset.images) and moved.mean == dataset.mean
    picked = dataset.subset([4, 0, 4])
    assert len(picked) == 3
    assert torch.equal(picked.images[1], dataset.images[0])
    assert torch.equal(picked.labels, dataset.labels[[4, 0, 4]])
    assert picked.mean == dataset.mean and picked.num_classes == 10
    mask = dataset.labels == 3
    assert len(dataset.subset(mask)) == int(mask.sum())
    assert len(dataset.subset(slice(10, 20))) == 10
    assert len(dataset.subset([])) == 0
    with pytest.raises(ValueError, match="indices"):
        dataset.subset([0.5, 1.5])
    assert "digits" in repr(dataset) and len(repr(dataset)) < 300


def test_dataset_checks_its_fields():
    images = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    labels = torch.zeros(4, dtype=torch.int64)
    ImageDataset(images, labels, (0.5,) * 3, (0.2,) * 3, 10, "toy")
    with pytest.raises(TypeError, match="labels"):
        ImageDataset(images, labels.int(), (0.5,) * 3, (0.2,) * 3, 10, "toy")
    with pytest.raises(ValueError, match="labels"):
        ImageDataset(images, labels[:3], (0.5,) * 3, (0.2,) * 3, 10, "toy")
    with pytest.raises(ValueError, match="mean"):
        ImageDataset(images, labels, (0.5,), (0.2,) * 3, 10, "toy")
    with pytest.raises(ValueError, match="std"):
        ImageDataset(images, labels, (0.5,) * 3, (0.2, 0.0, 0.2), 10, "toy")
    with pytest.raises(TypeError, match="images"):
        ImageDataset(images.float(), labels, (0.5,) * 3, (0.2,) * 3, 10, "toy")


# ---------------------------------------------------------------- argument errors


@pytest.mark.parametrize(
    "arguments, argument",
    [(("mnist", "train"), "name"), (("cifar10", "valid"), "split"), (("digits", None), "split")],
)
def test_bad_name_or_split_lists_valid_values(arguments, argument):
    with pytest.raises(ValueError, match=argument) as info:
        load_dataset(*arguments)
    valid = DATASETS if argument == "name" else ("train", "test")
    assert all(value in str(info.value) for value in valid)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_missing_data_explains_how_to_get_it(name, tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(name, "train", tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path) in message  # where it looked
    assert "download=True" in message and DATA_ENV in message  # how to get the data
    assert "cifar100" in message if name == "cifar100" else "cifar10-jpeg" in message


def test_root_defaults_to_the_environment_then_to_data(tmp_path, monkeypatch):
    from_environment = tmp_path / "from-env"
    monkeypatch.setenv(DATA_ENV, str(from_environment))
    with pytest.raises(FileNotFoundError, match="from-env"):
        load_dataset("cifar100", "test", download=False)
    monkeypatch.delenv(DATA_ENV)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"data"):
        load_dataset("cifar100", "test", download=False)


def test_failed_download_is_a_file_not_found_error(tmp_path, monkeypatch):
    import torchvision

    calls = []

    def offline(root, train, download):
        calls.append((root, download))
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(FileNotFoundError, match="download .*failed.*no network") as info:
        load_dataset("cifar10", "test", tmp_path, download=True)
    assert calls == [(str(tmp_path), True)]
    assert isinstance(info.value.__cause__, urllib.error.URLError)


# ---------------------------------------------------------------- fake offline copies


def write_fake_cifar10(folder: Path, per_class: int = 2, seed: int = 0) -> None:
    """A cifar10-jpeg copy in the real layout: train.zip/test.zip of 32x32 JPEGs."""
    generator = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        with zipfile.ZipFile(folder / f"{split}.zip", "w", zipfile.ZIP_STORED) as archive:
            # Written in reverse order: the loader must sort, not trust the archive order.
            for class_name in reversed(CIFAR10_CLASSES):
                for index in range(per_class):
                    pixels = generator.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                    buffer = io.BytesIO()
                    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
                    archive.writestr(f"{split}/{class_name}/{index:04d}.jpg", buffer.getvalue())


def write_fake_cifar100(folder: Path, per_shard: int = 3, seed: int = 0) -> None:
    """A cifar100 copy in the real layout: meta.json and xz-compressed npz shards."""
    generator = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = {"fine_label_names": [str(label) for label in range(100)]}
    (folder / "meta.json").write_text(json.dumps(names))
    shards = [
        (f"train-{shard}", list(range(20 * shard, 20 * shard + per_shard))) for shard in range(5)
    ]
    for stem, labels in shards + [("test", [7, 99, 0])]:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            images=generator.integers(0, 256, (len(labels), 32, 32, 3), dtype=np.uint8),
            fine_labels=np.array(labels, dtype=np.uint8),
            coarse_labels=np.array(labels, dtype=np.uint8) // 5,
        )
        (folder / f"{stem}.npz.xz").write_bytes(lzma.compress(buffer.getvalue()))


def write_checksums(folder: Path) -> None:
    lines = [
        f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}"
        for path in sorted(folder.iterdir())
        if path.suffix in (".zip", ".xz")
    ]
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def test_fake_cifar10_labels_follow_sorted_class_folders(tmp_path):
    write_fake_cifar10(tmp_path / "cifar10-jpeg")
    write_checksums(tmp_path / "cifar10-jpeg")
    test = load_dataset("cifar10", "test", tmp_path, download=False)
    assert test.images.shape == (20, 3, 32, 32) and test.source == "offline-jpeg"
    assert test.labels.tolist() == [label for label in range(10) for _ in range(2)]
    with zipfile.ZipFile(tmp_path / "cifar10-jpeg" / "test.zip") as archive:
        member = archive.read("test/cat/0001.jpg")
    expected = np.asarray(Image.open(io.BytesIO(member)).convert("RGB")).transpose(2, 0, 1)
    assert np.array_equal(test.images[3 * 2 + 1].numpy(), expected)
    # The statistics are the train split's, computed exactly.
    train = load_dataset("cifar10", "train", tmp_path, download=False)
    assert test.mean == train.mean == pytest.approx(channel_means(train.images), abs=1e-12)


def test_fake_cifar100_in_root_itself(tmp_path):
    write_fake_cifar100(tmp_path)
    train = load_dataset("cifar100", "train", tmp_path, download=False)
    test = load_dataset("cifar100", "test", tmp_path, download=False)
    assert train.images.shape == (15, 3, 32, 32) and test.images.shape == (3, 3, 32, 32)
    # Kept in stored order: shard by shard.
    assert train.labels.tolist() == [20 * shard + i for shard in range(5) for i in range(3)]
    assert test.labels.tolist() == [7, 99, 0] and test.num_classes == 100
    with lzma.open(tmp_path / "test.npz.xz") as stream:
        stored = np.load(io.BytesIO(stream.read()))["images"]
    assert np.array_equal(test.images.numpy(), stored.transpose(0, 3, 1, 2))


def test_cache_is_reused_and_invalidated_when_the_source_changes(tmp_path, monkeypatch):
    original_read = perceptcoh.engine.data.loader._read_split
    cache = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(cache))
    folder = tmp_path / "data" / "cifar10-jpeg"
    write_fake_cifar10(folder, seed=1)
    first = load_dataset("cifar10", "test", tmp_path / "data", download=False)
    cached = sorted(path.name for path in cache.iterdir())
    assert any(name.endswith(".npz") and "-test-" in name for name in cached)
    assert any(name.endswith(".json") for name in cached)  # the train statistics
    reads = []
    monkeypatch.setattr(perceptcoh.engine.data.loader, "_read_split",
                               lambda *a: reads.append(a) or original_read(*a))
    in_memory = load_dataset("cifar10", "test", tmp_path / "data", download=False)
    assert reads == [] and torch.equal(in_memory.images, first.images)  # read once a process
    perceptcoh.engine.data.loader._loaded.clear()  # a new process: from the disk cache
    again = load_dataset("cifar10", "test", tmp_path / "data", download=False)
    assert len(reads) == 1 and torch.equal(again.images, first.images)
    # A new copy with other pixels (and another modification time) is decoded again and
    # replaces the stale cache files instead of adding to them.
    write_fake_cifar10(folder, seed=2)
    stamp = time.time() + 10
    for path in folder.iterdir():
        os.utime(path, (stamp, stamp))
    changed = load_dataset("cifar10", "test", tmp_path / "data", download=False)
    assert not torch.equal(changed.images, first.images)
    assert changed.mean != first.mean
    assert len(list(cache.iterdir())) == len(cached)


def test_unwritable_cache_only_warns(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv(CACHE_ENV, str(blocker / "cache"))
    write_fake_cifar100(tmp_path / "cifar100")
    with pytest.warns(UserWarning, match="cache"):
        test = load_dataset("cifar100", "test", tmp_path, download=False)
    assert len(test) == 3


def test_checksum_mismatch_is_reported_as_corruption(tmp_path):
    folder = tmp_path / "cifar100"
    write_fake_cifar100(folder)
    write_checksums(folder)
    shard = folder / "train-2.npz.xz"
    data = bytearray(shard.read_bytes())
    data[-20] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(CorruptDataError, match="train-2.npz.xz.*SHA256.*corrupt"):
        load_dataset("cifar100", "train", tmp_path, download=False)


@pytest.mark.parametrize("name, file_name", [("cifar10", "test.zip"), ("cifar100", "test.npz.xz")])
def test_truncated_fake_file_is_a_corrupt_data_error(name, file_name, tmp_path):
    folder = tmp_path / ("cifar10-jpeg" if name == "cifar10" else "cifar100")
    (write_fake_cifar10 if name == "cifar10" else write_fake_cifar100)(folder)
    path = folder / file_name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CorruptDataError, match="corrupt or incomplete"):
        load_dataset(name, "test", tmp_path, download=False)


def test_incomplete_copy_names_the_missing_files(tmp_path):
    write_fake_cifar100(tmp_path / "cifar100")
    (tmp_path / "cifar100" / "train-3.npz.xz").unlink()
    with pytest.raises(FileNotFoundError, match="train-3.npz.xz"):
        load_dataset("cifar100", "test", tmp_path, download=False)


def write_fake_torchvision_cifar10(root: Path, per_batch: int = 3, seed: int = 0) -> None:
    """torchvision's cifar-10-batches-py layout: pickled dicts of flat CHW rows."""
    import pickle

    generator = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for batch in [f"data_batch_{index}" for index in range(1, 6)] + ["test_batch"]:
        entry = {
            "data": generator.integers(0, 256, (per_batch, 3 * 32 * 32), dtype=np.uint8),
            "labels": generator.integers(0, 10, per_batch).tolist(),
        }
        (folder / batch).write_bytes(pickle.dumps(entry))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list(CIFAR10_CLASSES)}))


def test_torchvision_layout_is_preferred_to_the_jpeg_copy(tmp_path, monkeypatch):
    import pickle

    import torchvision

    write_fake_torchvision_cifar10(tmp_path)
    write_fake_cifar10(tmp_path / "cifar10-jpeg")
    # The fake batches cannot match torchvision's MD5s: first they are reported as corrupt,
    with pytest.raises(CorruptDataError, match="cifar-10-batches-py"):
        load_dataset("cifar10", "test", tmp_path, download=False)
    # then, with the check waved through, read.
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args: True)
    test = load_dataset("cifar10", "test", tmp_path, download=False)
    train = load_dataset("cifar10", "train", tmp_path, download=False)
    assert test.source == train.source == "torchvision"
    stored = pickle.loads((tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes())
    assert np.array_equal(test.images.numpy(), stored["data"].reshape(-1, 3, 32, 32))
    assert test.labels.tolist() == stored["labels"]
    assert train.images.shape == (15, 3, 32, 32)
    assert test.mean == train.mean == pytest.approx(channel_means(train.images), abs=1e-12)


# ---------------------------------------------------------------- the real offline copies


@pytest.mark.parametrize(
    "name, folder, file_name",
    [("cifar100", "cifar100", "test.npz.xz"), ("cifar10", "cifar10-jpeg", "test.zip")],
)
def test_truncated_real_file_is_a_corrupt_data_error(name, folder, file_name, tmp_path):
    source = shared(folder)
    copy = tmp_path / folder
    copy.mkdir()
    if (source / "meta.json").is_file():
        shutil.copy(source / "meta.json", copy)
    with open(source / file_name, "rb") as stream:
        (copy / file_name).write_bytes(stream.read(1 << 20))
    with pytest.raises(CorruptDataError, match="corrupt or incomplete"):
        load_dataset(name, "test", tmp_path, download=False)
    # With the checksums alongside, the mismatch is caught before decoding.
    shutil.copy(source / "SHA256SUMS", copy)
    with pytest.raises(CorruptDataError, match="SHA256"):
        load_dataset(name, "test", tmp_path, download=False)


def test_cifar100_offline_copy(cifar100):
    train, test, _ = cifar100
    assert train.images.shape == (50000, 3, 32, 32) and test.images.shape == (10000, 3, 32, 32)
    assert train.images.dtype == test.images.dtype == torch.uint8
    assert train.source == "offline-npz" and train.num_classes == 100
    assert torch.equal(torch.bincount(train.labels, minlength=100), torch.full((100,), 500))
    assert torch.equal(torch.bincount(test.labels, minlength=100), torch.full((100,), 100))
    assert train.mean == pytest.approx(CIFAR100_MEAN, abs=1e-3)
    assert train.std == pytest.approx(CIFAR100_STD, abs=1e-3)
    assert train.mean == pytest.approx(channel_means(train.images), abs=1e-12)
    assert test.mean == train.mean and test.std == train.std


def test_cifar10_jpeg_copy(cifar10):
    train, test, _ = cifar10
    assert train.images.shape == (50000, 3, 32, 32) and test.images.shape == (10000, 3, 32, 32)
    assert train.images.dtype == test.images.dtype == torch.uint8
    assert train.source == "offline-jpeg" and train.num_classes == 10
    assert torch.equal(torch.bincount(train.labels, minlength=10), torch.full((10,), 5000))
    assert torch.equal(torch.bincount(test.labels, minlength=10), torch.full((10,), 1000))
    # JPEG re-encoding moves the statistics a little off the original release's.
    assert train.mean == pytest.approx(CIFAR10_MEAN, abs=5e-3)
    assert train.std == pytest.approx(CIFAR10_STD, abs=5e-3)
    assert test.mean == train.mean and test.std == train.std
    with zipfile.ZipFile(SHARED_DATA / "cifar10-jpeg" / "test.zip") as archive:
        member = archive.read("test/cat/0000.jpg")
    expected = np.asarray(Image.open(io.BytesIO(member)).convert("RGB")).transpose(2, 0, 1)
    assert np.array_equal(test.images[3 * 1000].numpy(), expected)


@pytest.mark.parametrize("name", ["cifar100", "cifar10"])
def test_second_load_comes_from_the_cache(name, request, cache_dir):
    train, _, decode_seconds = request.getfixturevalue(name)
    perceptcoh.engine.data.loader._loaded.clear()  # as a new process would: from the disk cache
    again, seconds = load_timed(name, "train", SHARED_DATA)
    assert torch.equal(again.images, train.images) and torch.equal(again.labels, train.labels)
    assert again.mean == train.mean
    assert seconds < max(decode_seconds / 3, 0.5)
    assert any(path.name.startswith(f"{name}-offline") for path in cache_dir.iterdir())


# ---------------------------------------------------------------- augment


def candidate_views(image: torch.Tensor, padding: int) -> list[tuple[int, int, bool, torch.Tensor]]:
    """Every crop of the zero-padded image, flipped or not: a slow loop reference."""
    _, height, width = image.shape
    padded = F.pad(image, (padding,) * 4)
    views = []
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            crop = padded[:, dy : dy + height, dx : dx + width]
            views.append((dy, dx, False, crop))
            views.append((dy, dx, True, crop.flip(-1)))
    return views


def test_augment_crops_and_flips_are_real():
    generator = torch.Generator().manual_seed(0)
    # Values 1..255: a zero in the output can only come from the padding.
    images = torch.randint(1, 256, (64, 3, 8, 6), dtype=torch.uint8, generator=generator)
    original = images.clone()
    out = augment(images, padding=2, generator=torch.Generator().manual_seed(1))
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(images, original)
    seen = set()
    for image, augmented in zip(images, out):
        matches = [
            (dy, dx, flip)
            for dy, dx, flip, view in candidate_views(image, 2)
            if torch.equal(view, augmented)
        ]
        assert len(matches) == 1
        seen.add(matches[0])
    offsets = {(dy, dx) for dy, dx, _ in seen}
    assert len(offsets) > 10 and {flip for _, _, flip in seen} == {False, True}
    assert any(dy != 2 or dx != 2 for dy, dx in offsets)  # some images really moved


def test_augment_shift_of_a_known_image():
    image = torch.arange(1, 17, dtype=torch.uint8).view(1, 1, 4, 4)
    # padding 1 and a single image: 9 offsets x 2 flips, all found in 400 draws.
    generator = torch.Generator().manual_seed(0)
    outputs = {
        tuple(augment(image, padding=1, generator=generator).flatten().tolist())
        for _ in range(400)
    }
    assert len(outputs) == 18
    shifted_down_right = torch.zeros(4, 4, dtype=torch.uint8)
    shifted_down_right[1:, 1:] = image[0, 0, :3, :3]
    assert tuple(shifted_down_right.flatten().tolist()) in outputs
    assert tuple(image.flip(-1).flatten().tolist()) in outputs


def test_augment_is_deterministic_with_a_seeded_generator():
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    first = augment(images, generator=torch.Generator().manual_seed(5))
    second = augment(images, generator=torch.Generator().manual_seed(5))
    other = augment(images, generator=torch.Generator().manual_seed(6))
    assert torch.equal(first, second) and not torch.equal(first, other)


def test_augment_without_padding_or_flip_is_the_identity():
    images = torch.randint(0, 256, (5, 3, 7, 7), dtype=torch.uint8)
    assert torch.equal(augment(images, padding=0, flip=False), images)
    flipped = augment(images, padding=0, flip=True, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) or torch.equal(a, b.flip(-1)) for a, b in zip(flipped, images))


def test_augment_checks_its_arguments():
    with pytest.raises(TypeError, match="images"):
        augment(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="images"):
        augment(torch.zeros(3, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="padding"):
        augment(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), padding=-1)


# ---------------------------------------------------------------- normalize


def test_normalize_values_dtype_and_memory_format():
    images = torch.randint(0, 256, (4, 3, 5, 6), dtype=torch.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    mean_column = torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1)
    std_column = torch.tensor(std, dtype=torch.float64).view(1, 3, 1, 1)
    expected = (images.double() / 255 - mean_column) / std_column
    out = normalize(images, mean, std)
    assert out.dtype == torch.float32 and out.shape == images.shape
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    assert torch.allclose(out.double(), expected, atol=1e-6, rtol=0)
    plain = normalize(images, mean, std, channels_last=False, dtype=torch.float64)
    assert plain.dtype == torch.float64 and plain.is_contiguous()
    assert torch.allclose(plain, expected, atol=1e-12, rtol=0)
    half = normalize(images, mean, std, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16
    assert torch.allclose(half.double(), expected, atol=2e-2, rtol=1e-2)
    # A channels_last input is read correctly too (the augment output, for instance).
    channels_last_input = images.contiguous(memory_format=torch.channels_last)
    assert torch.equal(normalize(channels_last_input, mean, std), out)
    # Statistics given as tensors (already on the device) give the same result.
    assert torch.equal(normalize(images, torch.tensor(mean), torch.tensor(std)), out)


def test_normalize_with_dataset_statistics():
    dataset = load_dataset("digits", "train")
    out = normalize(dataset.images, dataset.mean, dataset.std, dtype=torch.float64)
    assert abs(out.mean().item()) < 1e-9 and abs(out.std(unbiased=False).item() - 1) < 1e-9


def test_normalize_checks_its_arguments():
    images = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match="mean"):
        normalize(images, (0.5,), (0.2, 0.2, 0.2))
    with pytest.raises(ValueError, match="std"):
        normalize(images, (0.5,) * 3, (0.2, 0.0, 0.2))
    with pytest.raises(TypeError, match="images"):
        normalize(images.float(), (0.5,) * 3, (0.2,) * 3)
    with pytest.raises(ValueError, match="mean"):
        normalize(images, torch.zeros(2), torch.ones(3))
    with pytest.raises(TypeError, match="dtype"):
        normalize(images, (0.5,) * 3, (0.2,) * 3, dtype=torch.int32)
