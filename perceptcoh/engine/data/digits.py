"""The ``"digits"`` source: scikit-learn's bundled 8x8 handwritten digits (1,797 grayscale
images, 10 classes), split 75/25 into train and test, stratified by class; no download."""

from __future__ import annotations

import numpy as np

from .images import channel_statistics

__all__ = ["read_digits"]

_DIGITS_SEED = 0
_DIGITS_TEST_FRACTION = 0.25


def read_digits(split: str) -> tuple[np.ndarray, np.ndarray, tuple, tuple]:
    """``(images uint8 (N, 1, 8, 8), labels int64 (N,), mean, std)`` of ``split``, the
    statistics those of the training split; fresh arrays, which callers may modify."""
    images, labels = _digits_split(split)
    mean, std = channel_statistics(_digits_split("train")[0])
    # Copies: torch.from_numpy would otherwise share (and let callers mutate) the cache.
    return images.copy(), labels.copy(), mean, std


_digits_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _digits_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    if split not in _digits_cache:
        try:
            from sklearn.datasets import load_digits
            from sklearn.model_selection import train_test_split
        except ImportError as error:
            raise ImportError(
                "the 'digits' dataset needs scikit-learn: pip install scikit-learn"
            ) from error
        digits = load_digits()
        # Values are integers 0..16; spread them over the uint8 range like the CIFAR pixels.
        images = np.rint(digits.images * (255 / 16)).astype(np.uint8)[:, None, :, :]
        labels = digits.target.astype(np.int64)
        train, test = train_test_split(
            np.arange(len(labels)),
            test_size=_DIGITS_TEST_FRACTION,
            random_state=_DIGITS_SEED,
            stratify=labels,
        )
        for name, index in (("train", train), ("test", test)):
            _digits_cache[name] = (np.ascontiguousarray(images[index]), labels[index])
    return _digits_cache[split]
