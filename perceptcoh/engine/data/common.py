"""The names every part of :mod:`perceptcoh.engine.data` shares: the datasets and their
classes, the splits, the environment variables and default folders, the published CIFAR
statistics, and the error a damaged file raises."""

from __future__ import annotations

__all__ = [
    "DATASETS",
    "SPLITS",
    "DATA_ENV",
    "CACHE_ENV",
    "DEFAULT_ROOT",
    "DEFAULT_CACHE",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "NUM_CLASSES",
    "CorruptDataError",
]

DATASETS = ("cifar10", "cifar100", "digits")
SPLITS = ("train", "test")
DATA_ENV = "PERCEPTCOH_DATA"
CACHE_ENV = "PERCEPTCOH_CACHE"
DEFAULT_ROOT = "./data"
DEFAULT_CACHE = "~/.cache/perceptcoh"

# Known per-channel statistics of the CIFAR training sets (original pixels), for reference
# and for the tests; the loaders compute them from the data rather than trusting these.
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "digits": 10}


class CorruptDataError(RuntimeError):
    """A dataset file exists but cannot be read, or its checksum does not match."""
