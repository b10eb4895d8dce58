"""Reading untrusted weights files with every declared size checked before anything is allocated.

A 1 KB file can declare a 2 GB tensor, a zip member can inflate a thousandfold, an HDF5 dataset
that was never written reads back as gigabytes of fill value, and HDF5 can pull bytes from other
files. The readers here compare every declared shape, size and uncompressed length with what a
VGG layer can need (``MAX_TENSOR_ELEMENTS``: VGG's largest conv weight) before reading, read
only the entries asked for, stream with a cap, and refuse HDF5 external storage and links.
Errors are ``WeightsError`` naming the file, and never format an object read from it.
"""

from __future__ import annotations

import struct
import zipfile
import zlib

import numpy as np

from . import arch as vgg_arch
from .errors import WeightsError

MAX_TENSOR_ELEMENTS = max(int(np.prod(shape)) for shape in vgg_arch.conv_shapes("vgg19").values())
MAX_TEXT_BYTES = 1 << 16  # a convention's JSON, a source name
_CHUNK = 1 << 20
_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)


def describe(obj):
    """A bounded description of an untrusted object: its type, and its value when a short scalar."""
    if isinstance(obj, (bool, int, float)) and not (isinstance(obj, int) and obj.bit_length() > 64):
        return f"{type(obj).__name__} {obj!r}"
    if isinstance(obj, str):
        return f"str {obj[:40]!r}{'...' if len(obj) > 40 else ''}"
    return type(obj).__name__


def _numel(shape):
    count = 1
    for n in shape:
        count *= int(n)
    return count


# --- zip archives (torch.save, .npz) ----------------------------------------------------------


class ZipReader:
    """A zip archive whose members are read with their declared sizes checked and a cap."""

    def __init__(self, path):
        self.path = str(path)
        try:
            self.zip = zipfile.ZipFile(self.path)
            self.infos = {info.filename: info for info in self.zip.infolist()}
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise WeightsError(f"{self.path}: truncated or corrupt zip archive ({str(exc):.200})") from None
        self.names = list(self.infos)

    def open(self, name):
        """The member ``name`` as a stream, after checking it is neither encrypted nor exotic."""
        info = self.infos.get(name)
        if info is None:
            raise WeightsError(f"{self.path}: zip archive lacks {name:.200}")
        if info.flag_bits & 0x1:
            raise WeightsError(f"{self.path}: zip member {name:.200} is encrypted")
        if info.compress_type not in _ZIP_METHODS:
            raise WeightsError(
                f"{self.path}: zip member {name:.200} uses compression method {info.compress_type} "
                "(expected stored, deflate, bzip2 or lzma)"
            )
        try:
            return self.zip.open(info)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as exc:
            raise WeightsError(f"{self.path}: corrupt zip member {name:.200} ({str(exc):.200})") from None

    def read_whole(self, name, cap):
        """All of a small member, refused when it declares more than ``cap`` bytes."""
        size = self.infos[name].file_size if name in self.infos else 0
        if size > cap:
            raise WeightsError(f"{self.path}: zip member {name:.200} declares {size} bytes, expected at most {cap}")
        return self.read_range(name, 0, size)

    def read_range(self, name, start, length, what=None):
        """``length`` bytes of member ``name`` from byte ``start`` (fewer when it is shorter):
        the bytes before ``start`` are inflated and dropped, nothing after is inflated."""
        where = f"{what}: " if what else ""
        with self.open(name) as stream:
            try:
                while start > 0:
                    skipped = stream.read(min(start, _CHUNK))
                    if not skipped:
                        return b""
                    start -= len(skipped)
                return stream.read(length)
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error, ValueError, RuntimeError) as exc:
                raise WeightsError(f"{self.path}: {where}corrupt zip member {name:.200} ({str(exc):.200})") from None


def read_npz(path, max_elements=MAX_TENSOR_ELEMENTS):
    """Every array of an .npz as a dict, each header checked before its data is read: numeric
    arrays of at most ``max_elements`` elements, or a short text (``MAX_TEXT_BYTES``)."""
    archive = ZipReader(path)
    arrays = {}
    for name in archive.names:
        if not name.endswith(".npy"):
            raise WeightsError(f"{path}: .npz member {name:.200} is not an .npy array")
        key = name[: -len(".npy")]
        with archive.open(name) as stream:
            try:
                version = np.lib.format.read_magic(stream)
                header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                          else np.lib.format.read_array_header_2_0)
                shape, fortran_order, dtype = header(stream)
            except Exception as exc:  # numpy raises ValueError, SyntaxError, ... on a bad header
                raise WeightsError(f"{path}: array {key:.100}: unreadable .npy header ({str(exc):.200})") from None
            arrays[key] = _read_npy_data(path, key, stream, shape, fortran_order, dtype, max_elements)
    return arrays


def _read_npy_data(path, key, stream, shape, fortran_order, dtype, max_elements):
    if dtype.fields is not None or dtype.hasobject or dtype.kind not in "fiubU":
        raise WeightsError(f"{path}: array {key:.100}: unsupported dtype {str(dtype):.100} (expected plain numbers)")
    numel = _numel(shape)
    if dtype.kind == "U" and numel * dtype.itemsize > MAX_TEXT_BYTES:
        raise WeightsError(f"{path}: array {key:.100}: text of {numel * dtype.itemsize} bytes, expected at most {MAX_TEXT_BYTES}")
    if numel > max_elements:
        raise WeightsError(
            f"{path}: array {key:.100}: shape {shape} has {numel} elements, more than any VGG layer holds ({max_elements})"
        )
    nbytes = numel * dtype.itemsize
    try:
        data = stream.read(nbytes)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{path}: array {key:.100}: corrupt zip member ({str(exc):.200})") from None
    if len(data) != nbytes:
        raise WeightsError(f"{path}: array {key:.100}: truncated ({len(data)} bytes, expected {nbytes})")
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran_order else "C")


# --- HDF5 (Keras) ----------------------------------------------------------------------------

_MAX_HDF5_LINKS = 100_000


def check_hdf5_links(h5file, path):
    """Refuse a file with external links anywhere in it (they read other files' bytes)."""
    import h5py

    count = 0

    def visit(name, link):  # a non-None return stops the visit (an exception would not get through)
        nonlocal count
        count += 1
        if isinstance(link, h5py.ExternalLink):
            return f"{path}: {name[:200]} is an external link to another file (refused)"
        if count > _MAX_HDF5_LINKS:
            return f"{path}: holds more than {_MAX_HDF5_LINKS} objects: not a weights file"
        return None

    problem = h5file.visititems_links(visit)
    if problem is not None:
        raise WeightsError(problem)


def read_hdf5_dataset(path, dataset, what, max_elements=MAX_TENSOR_ELEMENTS):
    """A dataset's values, after checking it is plain numbers stored in this file and small
    enough (a never-written chunked dataset reads back at its full declared size)."""
    if dataset.is_virtual or dataset.external:
        raise WeightsError(f"{path}: {what}: stored in another file (external or virtual dataset; refused)")
    dtype = dataset.dtype
    if dtype.fields is not None or dtype.kind not in "fiub":
        raise WeightsError(f"{path}: {what}: unsupported dtype {str(dtype):.100} (expected plain numbers)")
    shape = dataset.shape
    if shape is None:
        raise WeightsError(f"{path}: {what}: an empty dataset")
    numel = _numel(shape)
    if numel > max_elements:
        raise WeightsError(
            f"{path}: {what}: shape {shape} has {numel} elements, more than any VGG layer holds ({max_elements})"
        )
    return np.asarray(dataset[()])


# --- MATLAB v5 (MatConvNet) ------------------------------------------------------------------

MAX_MAT_VARIABLE_BYTES = 1 << 30  # MatConvNet's VGG19 'layers', classifier included, is 575 MB
_MI_MATRIX, _MI_COMPRESSED = 14, 15


def check_mat_sizes(path, names, cap=None):
    """Refuse a MATLAB v5 file in which a compressed variable among ``names`` inflates to more
    than ``cap`` bytes (counted by streaming, nothing kept). Variables not in ``names`` are left
    alone: the reader is then told to skip them."""
    cap = MAX_MAT_VARIABLE_BYTES if cap is None else cap
    with open(path, "rb") as f:
        header = f.read(128)
        if len(header) < 128:
            return  # too short for a variable: the reader says what is wrong
        order = "<" if header[126:128] == b"IM" else ">"
        while True:
            tag = f.read(8)
            if len(tag) < 8:
                return
            kind, nbytes = struct.unpack(order + "II", tag)
            if kind == _MI_COMPRESSED and _compressed_name(f, nbytes, order) in names:
                _check_inflated_size(path, f, nbytes, cap)
            f.seek(f.tell() + nbytes + (0 if kind == _MI_COMPRESSED else -nbytes % 8))


def _compressed_name(f, nbytes, order):
    """The name of the compressed variable at f's position (f is left where it was)."""
    start = f.tell()
    inflater = zlib.decompressobj()
    try:
        head = inflater.decompress(f.read(min(nbytes, 4096)), 1024)
    except zlib.error:
        return None
    finally:
        f.seek(start)
    # miMATRIX tag (8), array flags (16), dimensions (8 + padded), then the name element
    try:
        dims_bytes = struct.unpack_from(order + "I", head, 28)[0]
        at = 32 + dims_bytes + (-dims_bytes % 8)
        kind = struct.unpack_from(order + "I", head, at)[0]
        if kind >> 16:  # small data element: size in the upper half, data in the next 4 bytes
            return head[at + 4 : at + 4 + (kind >> 16)].decode("latin-1")
        size = struct.unpack_from(order + "I", head, at + 4)[0]
        return head[at + 8 : at + 8 + size].decode("latin-1")
    except struct.error:
        return None


def _check_inflated_size(path, f, nbytes, cap):
    start = f.tell()
    inflater = zlib.decompressobj()
    total, left = 0, nbytes
    try:
        while left > 0 or inflater.unconsumed_tail:
            data = inflater.unconsumed_tail or f.read(min(left, _CHUNK))
            if not inflater.unconsumed_tail:
                if not data:
                    break
                left -= len(data)
            total += len(inflater.decompress(data, _CHUNK))
            if total > cap:
                raise WeightsError(
                    f"{path}: a compressed variable inflates to more than {cap} bytes (VGG19 needs about 575 MB)"
                )
            if inflater.eof:
                break
    except zlib.error:
        pass  # the reader reports the damage
    finally:
        f.seek(start)
