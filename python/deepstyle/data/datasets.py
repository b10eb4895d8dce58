"""Finding and loading the data sets: Fashion-MNIST and MNIST (IDX files) and CIFAR-10.

Without ``data_dir`` the loader looks, in order, in ``$DEEPSTYLE_DATA/<name>``, the user's cache
``$XDG_CACHE_HOME/deepstyle/<name>`` (``~/.cache/deepstyle/<name>``) and the Debian package's
folder (``apt-get install dataset-fashion-mnist`` puts Fashion-MNIST in
/usr/share/datasets/fashion-mnist). When no folder has the files, the error lists the files
needed and the folders searched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from . import cifar
from .errors import DataError
from .idx import read_idx_pair

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
              "t10k-labels-idx1-ubyte")
_CIFAR_PICKLE = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
_CIFAR_BINARY = tuple(name + ".bin" for name in _CIFAR_PICKLE)
_SYSTEM = {"fashion-mnist": "/usr/share/datasets/fashion-mnist", "mnist": "/usr/share/datasets/mnist"}
DATASETS = ("fashion-mnist", "mnist", "cifar10")


@dataclass
class Dataset:
    """Images (N, C, H, W) uint8 with labels (N,) int64, for training and test."""

    name: str
    classes: tuple
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str


def search_folders(name):
    """Where the loader looks for ``name`` when no folder is given, in order."""
    folders = []
    if os.environ.get("DEEPSTYLE_DATA"):
        folders.append(os.path.join(os.environ["DEEPSTYLE_DATA"], name))
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folders.append(os.path.join(cache, "deepstyle", name))
    if name in _SYSTEM:
        folders.append(_SYSTEM[name])
    return folders


def _idx_paths(folder):
    """The four IDX files in ``folder`` (each raw or .gz), or None if one is missing."""
    paths = []
    for stem in _IDX_FILES:
        found = [p for p in (os.path.join(folder, stem), os.path.join(folder, stem + ".gz"))
                 if os.path.isfile(p)]
        if not found:
            return None
        paths.append(found[0])
    return paths


def _cifar_paths(folder):
    """The six batch files in ``folder`` or its official subfolders, and their reader."""
    for sub in ("", "cifar-10-batches-py", "cifar-10-batches-bin"):
        for names, reader in ((_CIFAR_PICKLE, cifar.read_pickle_batch),
                              (_CIFAR_BINARY, cifar.read_binary_batch)):
            paths = [os.path.join(folder, sub, n) for n in names]
            if all(os.path.isfile(p) for p in paths):
                return paths, reader
    return None


def _needed(name):
    if name == "cifar10":
        return (f"{', '.join(_CIFAR_PICKLE)} (the python version, cifar-10-python.tar.gz) or "
                f"{', '.join(_CIFAR_BINARY)} (the binary version)")
    return f"{', '.join(_IDX_FILES)} (each raw or .gz)"


def load_dataset(name, data_dir=None):
    """The data set ``name`` (one of DATASETS) from ``data_dir`` or the default folders."""
    if name not in DATASETS:
        raise DataError(f"dataset: expected one of {', '.join(DATASETS)}, got {name!r}")
    folders = [os.fspath(data_dir)] if data_dir is not None else search_folders(name)
    if data_dir is not None and not os.path.isdir(folders[0]):
        raise DataError(f"--data: {folders[0]} is not a folder")
    for folder in folders:
        if name == "cifar10":
            found = _cifar_paths(folder)
            if found:
                return _load_cifar(found, folder)
        else:
            paths = _idx_paths(folder)
            if paths:
                return _load_idx(name, paths, folder)
    hint = (" (or: apt-get install dataset-fashion-mnist)" if name == "fashion-mnist" else "")
    raise DataError(f"{name}: no data found; it needs the files {_needed(name)} in one of: "
                    f"{', '.join(folders)}{hint}; or point --data at their folder")


def _load_idx(name, paths, folder):
    train_x, train_y = read_idx_pair(paths[0], paths[1])
    test_x, test_y = read_idx_pair(paths[2], paths[3])
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(f"{paths[2]}: test images are {test_x.shape[1:]}, training images "
                        f"{train_x.shape[1:]}")
    for labels, path in ((train_y, paths[1]), (test_y, paths[3])):
        if len(labels) and labels.max() >= 10:
            raise DataError(f"{path}: labels must lie in 0..9, got up to {labels.max()}")
    classes = FASHION_CLASSES if name == "fashion-mnist" else tuple(str(d) for d in range(10))
    return Dataset(name, classes, train_x[:, None], train_y, test_x[:, None], test_y, folder)


def _load_cifar(found, folder):
    paths, reader = found
    parts = [reader(p) for p in paths]
    train_x = np.concatenate([x for x, _ in parts[:5]])
    train_y = np.concatenate([y for _, y in parts[:5]])
    return Dataset("cifar10", cifar.CLASSES, train_x, train_y, parts[5][0], parts[5][1], folder)
