"""IDX files, the format of MNIST and Fashion-MNIST, raw or gzip-compressed.

An IDX file is a 4-byte magic number -- two zero bytes, a type code, the number of dimensions --
then each dimension as a big-endian uint32, then the elements, big-endian, row-major. The reader
checks the magic number and that the file holds exactly the elements the header announces: a
truncated download or a file with trailing bytes is an error naming the file, never a silently
short data set.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

from .errors import DataError

_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CHUNK = 1 << 24  # read in pieces so that a lying header cannot make us allocate its claim


def _open(path):
    with open(path, "rb") as probe:
        compressed = probe.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if compressed else open(path, "rb")


def _read_exactly(stream, size, path, what):
    parts, got = [], 0
    while got < size:
        part = stream.read(min(_CHUNK, size - got))
        if not part:
            raise DataError(f"{path}: truncated: expected {size} bytes of {what}, got {got}")
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def read_idx(path):
    """The array stored in the IDX file ``path`` (native byte order), gzip or raw."""
    path = os.fspath(path)
    try:
        with _open(path) as stream:
            magic = _read_exactly(stream, 4, path, "magic number")
            if magic[:2] != b"\0\0" or magic[2] not in _TYPES or not 1 <= magic[3] <= 4:
                raise DataError(f"{path}: bad magic number 0x{magic.hex()}: expected 0x0000TTNN "
                                f"(an IDX file: type TT in {sorted(_TYPES)}, 1-4 dimensions)")
            dtype = np.dtype(_TYPES[magic[2]])
            shape = struct.unpack(f">{magic[3]}I", _read_exactly(stream, 4 * magic[3], path,
                                                                  "dimensions"))
            size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            data = _read_exactly(stream, size, path, f"data for shape {shape}")
            if stream.read(1):
                raise DataError(f"{path}: wrong length: the header announces shape {shape} "
                                f"({size} bytes of data) but more bytes follow")
    except (OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, FileNotFoundError):
            raise DataError(f"{path}: no such file") from None
        raise DataError(f"{path}: unreadable or corrupt ({exc})") from None
    return np.frombuffer(data, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx_pair(images_path, labels_path):
    """Images (N, H, W) uint8 and labels (N,) int64 from two IDX files that must agree."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{images_path}: expected 3-D uint8 images (N, H, W), got "
                        f"{images.ndim}-D {images.dtype}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataError(f"{labels_path}: expected 1-D uint8 labels, got {labels.ndim}-D "
                        f"{labels.dtype}")
    if len(labels) != len(images):
        raise DataError(f"{labels_path}: {len(labels)} labels for the {len(images)} images of "
                        f"{images_path}")
    return images, labels.astype(np.int64)


def write_idx(path, array):
    """Write ``array`` as an IDX file (gzip-compressed when ``path`` ends in .gz); for tests
    and for users converting their own data."""
    array = np.asarray(array)
    codes = {np.dtype(t).newbyteorder("="): code for code, t in _TYPES.items()}
    code = codes[array.dtype]
    body = (bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
            + array.astype(array.dtype.newbyteorder(">")).tobytes())
    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(body)
