"""Image datasets as uint8 tensors on the training device, and on-device augmentation.

As in airbench, a dataset is one ``uint8`` tensor of shape ``(N, C, H, W)`` that lives on
the device the model trains on; a batch is augmented (:func:`augment`) and normalised
(:func:`normalize`) there in a few tensor operations, with no ``DataLoader`` and no
per-sample Python.

Datasets (:data:`DATASETS`):

* ``"cifar10"``, ``"cifar100"``: 50,000 training and 10,000 test 32x32 RGB images. Looked
  for under ``root``, else ``$PERCEPTCOH_DATA``, else ``./data``, in two layouts: the
  offline copies of this project (``cifar100/`` holding ``meta.json``, ``train-0.npz.xz``
  ... ``train-4.npz.xz`` and ``test.npz.xz``; ``cifar10-jpeg/`` holding ``train.zip`` and
  ``test.zip``; or those files directly in ``root``) and torchvision's own
  (``cifar-100-python/``, ``cifar-10-batches-py/``). If neither is there, torchvision
  downloads the original into ``root`` (needs internet). Decoded offline copies are
  cached as ``.npz`` under ``$PERCEPTCOH_CACHE`` (default ``~/.cache/perceptcoh``).
* ``"digits"``: scikit-learn's bundled 8x8 handwritten digits (1,797 grayscale images,
  10 classes), split 75/25 into train and test; needs no download.

The ``mean`` and ``std`` of a dataset are always the per-channel statistics of its
training split (pixel values scaled to ``[0, 1]``), for the test split too, so that both
are normalised alike.

The parts: :mod:`~perceptcoh.engine.data.images` (the device side: :class:`ImageDataset`,
:func:`augment`, :func:`normalize`, the statistics), :mod:`~perceptcoh.engine.data.loader`
(:func:`load_dataset`), the sources :mod:`~perceptcoh.engine.data.cifar` and
:mod:`~perceptcoh.engine.data.digits`, :mod:`~perceptcoh.engine.data.checksums`,
:mod:`~perceptcoh.engine.data.cache` (the disk cache), and
:mod:`~perceptcoh.engine.data.common` (the shared names).
"""

# DEFAULT_ROOT and DEFAULT_CACHE are outside __all__, but importable from here as ever.
from .common import (
    CACHE_ENV,
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    DATA_ENV,
    DATASETS,
    DEFAULT_CACHE,
    DEFAULT_ROOT,
    SPLITS,
    CorruptDataError,
)
from .images import ImageDataset, augment, normalize
from .loader import load_dataset

__all__ = [
    "ImageDataset",
    "CorruptDataError",
    "load_dataset",
    "augment",
    "normalize",
    "DATASETS",
    "SPLITS",
    "DATA_ENV",
    "CACHE_ENV",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
]
