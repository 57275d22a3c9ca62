"""Small datasets that need no download at run time, as torch tensors with a train/test split.

* ``digits``: scikit-learn's bundled ``load_digits`` (1797 8x8 images, 10 classes), pixel
  values scaled to [0, 1], shape ``(N, 1, 8, 8)``.
* ``mnist1d``: MNIST-1D (Greydanus 2020) generated locally by the ``mnist1d`` package with its
  default arguments and a fixed seed (``make_dataset`` never touches the network; its
  ``get_dataset`` would download, so it is not used), shape ``(N, 1, 1, 40)`` so that the
  CNN can use Conv2d with ``1 x k`` kernels.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

DATASETS = ("digits", "mnist1d")


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, ``(channels, height, width)``."""
        return tuple(self.x_train.shape[1:])


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int):
    perm = np.random.default_rng(seed).permutation(len(y))
    n_test = round(len(y) * test_fraction)
    test, train = perm[:n_test], perm[n_test:]
    as_x = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    as_y = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))
    return as_x(x[train]), as_y(y[train]), as_x(x[test]), as_y(y[test])


@lru_cache(maxsize=4)
def load_digits(test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """scikit-learn digits, split by a seeded permutation."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = (bunch.data / 16.0).reshape(-1, 1, 8, 8)
    return Dataset("digits", *_split(x, bunch.target, test_fraction, seed), num_classes=10)


@lru_cache(maxsize=4)
def load_mnist1d(num_samples: int = 5000, seed: int = 42) -> Dataset:
    """MNIST-1D generated locally (80/20 split as the package makes it). The package seeds
    NumPy's global generator; its previous state is restored afterwards."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = num_samples, seed
    state = np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(state)
    to_x = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float32).reshape(-1, 1, 1, 40))
    to_y = lambda a: torch.from_numpy(np.asarray(a, dtype=np.int64))
    return Dataset(
        "mnist1d", to_x(data["x"]), to_y(data["y"]), to_x(data["x_test"]), to_y(data["y_test"]), 10
    )


def load_dataset(name: str, **kwargs) -> Dataset:
    if name == "digits":
        return load_digits(**kwargs)
    if name == "mnist1d":
        return load_mnist1d(**kwargs)
    raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
