"""Data sets for ``deepstyle train``: readers for IDX (MNIST, Fashion-MNIST) and CIFAR-10 files,
the validation split and the preprocessing of MatConvNet's CIFAR example."""

from .cifar import read_binary_batch, read_pickle_batch
from .datasets import DATASETS, Dataset, load_dataset, search_folders
from .errors import DataError
from .idx import read_idx, read_idx_pair, write_idx
from .preprocess import Preprocessing, split_validation

__all__ = [
    "DATASETS", "DataError", "Dataset", "Preprocessing", "load_dataset", "read_binary_batch",
    "read_idx", "read_idx_pair", "read_pickle_batch", "search_folders", "split_validation",
    "write_idx",
]
