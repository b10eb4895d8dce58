"""CIFAR-10 in both official layouts: the Python pickle batches and the binary version.

* ``cifar-10-batches-py``: ``data_batch_1`` ... ``data_batch_5`` and ``test_batch``, each a
  pickled dict whose ``data`` is a (10000, 3072) uint8 array (the planes R, G, B of a 32x32
  image per row) and whose ``labels`` is a list of 10000 ints. Unpickling runs whatever the file
  names, so these are read by a restricted unpickler that resolves only the three NumPy names an
  array pickle needs -- each mapped to a stand-in of ours that records the bytes, never to NumPy's
  own functions -- and refuses every other global before anything from the file is called. (The
  weights reader in ``models/pth.py`` works the same way for torch tensors; its table of names
  is torch's, so the two share the idea, not the code.)
* ``cifar-10-batches-bin``: ``data_batch_1.bin`` ... ``data_batch_5.bin`` and ``test_batch.bin``,
  10000 records of one label byte followed by the 3072 pixel bytes.
"""

from __future__ import annotations

import io
import os
import pickle

import numpy as np

from .errors import DataError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")
IMAGES_PER_BATCH = 10_000
PIXELS = 3 * 32 * 32
_SIMPLE_DTYPES = {"u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f4", "f8", "b1"}


class _NdarrayClass:
    """Stands in for numpy.ndarray as the first argument of _reconstruct."""


class _DtypeStub:
    """Stands in for numpy.dtype(spec, align, copy); BUILD then sets the byte order."""

    def __init__(self, spec, *_ignored):
        if not isinstance(spec, str) or spec not in _SIMPLE_DTYPES:
            raise ValueError(f"unsupported array element type {spec!r:.40}")
        self.spec, self.order = spec, "<"

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.order = "<" if state[1] in ("|", "=") else state[1]

    def numpy(self):
        return np.dtype(self.order + self.spec)


class _ArrayStub:
    """Stands in for the empty array _reconstruct makes; BUILD fills it from the raw bytes."""

    array = None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5):
            raise ValueError("malformed array state")
        _version, shape, dtype, fortran, raw = state
        if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)
                and isinstance(dtype, _DtypeStub) and isinstance(raw, (bytes, str))):
            raise ValueError(f"malformed array state (shape {shape!r:.40})")
        raw = raw.encode("latin1") if isinstance(raw, str) else raw
        dtype = dtype.numpy()
        count = int(np.prod(shape, dtype=np.int64))
        if len(raw) != count * dtype.itemsize:
            raise ValueError(f"array of shape {shape} needs {count * dtype.itemsize} bytes, "
                             f"the file holds {len(raw)}")
        array = np.frombuffer(raw, dtype).reshape(shape[::-1] if fortran else shape)
        self.array = array.T if fortran else array


def _reconstruct(cls, shape, typecode):
    if cls is not _NdarrayClass:
        raise ValueError("_reconstruct of something other than an ndarray")
    return _ArrayStub()


def _latin1_bytes(text, encoding):
    """Python 3's protocol-2 pickles spell bytes as _codecs.encode(str, 'latin1')."""
    if not isinstance(text, str) or encoding != "latin1":
        raise ValueError("_codecs.encode other than of a str to latin1")
    return text.encode("latin1")


_ALLOWED = {("numpy", "ndarray"): _NdarrayClass, ("numpy", "dtype"): _DtypeStub,
            ("_codecs", "encode"): _latin1_bytes}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_module, "_reconstruct")] = _reconstruct


class _BatchUnpickler(pickle.Unpickler):
    def __init__(self, file, path):
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DataError(f"{self.path}: refused to load: the pickle asks for "
                            f"'{module}.{name}', which a CIFAR-10 batch (a dict of an array and "
                            f"lists) never needs; loading it could run code from the file") from None


def _field(batch, name):
    for key in (name.encode(), name):
        if key in batch:
            return batch[key]
    return None


def read_pickle_batch(path):
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 from one python-version batch file."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(io.BytesIO(f.read()), path).load()
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except Exception as exc:  # a truncated stream, a bad opcode, a stand-in refusing its input
        raise DataError(f"{path}: corrupt or truncated CIFAR-10 batch ({type(exc).__name__}: "
                        f"{exc})") from None
    data = _field(batch, "data") if isinstance(batch, dict) else None
    labels = _field(batch, "labels") if isinstance(batch, dict) else None
    if not isinstance(data, _ArrayStub) or not isinstance(labels, list):
        raise DataError(f"{path}: expected a dict with 'data' (an array) and 'labels' (a list), "
                        f"got {type(batch).__name__}")
    return _checked(path, data.array, labels)


def _checked(path, data, labels):
    # every official batch holds IMAGES_PER_BATCH images: fewer is a damaged file
    if data.shape != (IMAGES_PER_BATCH, PIXELS) or data.dtype != np.uint8:
        raise DataError(f"{path}: expected uint8 data of shape ({IMAGES_PER_BATCH}, {PIXELS}), got "
                        f"{data.dtype} {data.shape}")
    labels = np.asarray(labels)
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise DataError(f"{path}: expected {len(data)} integer labels, got {labels.shape} "
                        f"{labels.dtype}")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise DataError(f"{path}: labels must lie in 0..9, got {labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def read_binary_batch(path):
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 from one binary-version batch file."""
    path = os.fspath(path)
    record, count = 1 + PIXELS, IMAGES_PER_BATCH
    expected = count * record
    try:
        size = os.path.getsize(path)
        if size != expected:
            raise DataError(f"{path}: wrong length: expected {expected} bytes "
                            f"({count} records of {record}), got {size}")
        raw = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: unreadable ({exc.strerror})") from None
    if raw.size != expected:
        raise DataError(f"{path}: truncated while reading: expected {expected} bytes, got "
                        f"{raw.size}")
    raw = raw.reshape(count, record)
    return _checked(path, raw[:, 1:], raw[:, 0])


def write_pickle_batch(path, images, labels):
    """Write a python-version batch as the official files are made (for tests)."""
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"test", b"labels": [int(v) for v in labels],
                     b"data": np.ascontiguousarray(images, np.uint8).reshape(len(images), -1),
                     b"filenames": [b"x.png"] * len(labels)}, f, protocol=2)


def write_binary_batch(path, images, labels):
    """Write a binary-version batch (for tests)."""
    rows = np.ascontiguousarray(images, np.uint8).reshape(len(images), -1)
    np.column_stack([np.asarray(labels, np.uint8), rows]).tofile(path)
