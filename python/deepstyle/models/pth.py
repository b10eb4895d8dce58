"""Read PyTorch ``torch.save`` files (state dicts of tensors) without PyTorch and without risk.

A ``.pth`` file is a pickle, and unpickling runs whatever callables the file names. This reader
uses a restricted unpickler whose ``find_class`` knows only the handful of names that tensor
storage needs, each mapped to a function of ours that merely records where the tensor's bytes
lie; any other global (``os.system``, ``builtins.eval``, a pickled ``nn.Module``...) is refused
before anything from the file is called, and the pickle runs in a bounded interpreter of our own
(``pickle_vm``: limits on objects, nesting, keys and what may be modified). Tensors are read lazily: only the ones asked for are
read from disk, so the 400 MB classifier of a torchvision VGG file is never touched, and each
view (offset, size, stride) is checked against its storage at the moment it is read, with its
size bounded before a byte is allocated.

Two layouts exist:

* zip (PyTorch >= 1.6): ``<stem>/data.pkl`` holds the pickle, ``<stem>/data/<key>`` the raw bytes
  of each storage, ``<stem>/byteorder`` (optional) says "little" or "big";
* legacy (what torchvision's 2017 VGG files use): one stream of pickles -- a magic number, the
  protocol version 1001, a system-info dict, the object, the sorted list of storage keys -- then
  each storage as an int64 element count followed by its raw bytes.
"""

from __future__ import annotations

import collections
import io
import os
import struct

import numpy as np

from . import pickle_vm
from .bounded import MAX_TENSOR_ELEMENTS, ZipReader, describe
from .errors import WeightsError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# torch.<Name>Storage -> element dtype (BFloat16 has no NumPy type: read as uint16, widened later)
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": np.uint16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    """Stands in for ``torch.FloatStorage`` and friends inside the pickle."""

    __slots__ = ("name", "dtype")

    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    """Where a storage's bytes lie: resolved to an array only when a tensor of it is read."""

    __slots__ = ("key", "storage_type", "numel", "base", "offset")

    def __init__(self, key, storage_type, numel, base=None, offset=0):
        self.key = key
        self.storage_type = storage_type
        self.numel = numel
        self.base = base  # legacy storage views point into a root storage
        self.offset = offset


class LazyTensor:
    """A tensor of the file, not yet read: storage, element offset, size and stride."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride

    @property
    def shape(self):
        return self.size


_MAX_DIMS = 8
_MAX_INDEX = 1 << 62  # any offset, size or stride beyond this is not a real tensor's


def _is_index(value):
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _MAX_INDEX


def _checked_view(storage, offset, size, stride):
    """The view's (offset, size, stride), or ValueError when it is not a plain tensor view."""
    if not isinstance(storage, _Storage):
        raise ValueError(f"tensor refers to a {describe(storage)}, not a storage")
    for what, values in (("size", size), ("stride", stride)):
        if not isinstance(values, tuple) or len(values) > _MAX_DIMS or not all(_is_index(v) for v in values):
            raise ValueError(f"tensor {what} is not a tuple of at most {_MAX_DIMS} non-negative ints")
    if len(size) != len(stride) or not _is_index(offset):
        raise ValueError(f"tensor view is malformed: offset {describe(offset)}, {len(size)} sizes, {len(stride)} strides")
    return offset, size, stride


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    """Safe stand-in for torch._utils._rebuild_tensor(_v2): records the view, reads nothing."""
    if isinstance(size, list):  # some writers store torch.Size as a list
        size = tuple(size)
    if isinstance(stride, list):
        stride = tuple(stride)
    return LazyTensor(storage, *_checked_view(storage, storage_offset, size, stride))


def _rebuild_parameter(data, requires_grad, backward_hooks, *_ignored):
    return data


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _StorageRecords:
    """find_class and persistent_load for one pickle; storages come back as _Storage records."""

    def __init__(self, path, legacy):
        self.path = path
        self.legacy = legacy
        self.storages = {}

    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise WeightsError(
            f"{self.path}: refused to load: the file's pickle asks for '{module:.100}.{name:.100}', which "
            "is not tensor storage (a weights file needs only torch tensors in a dict; loading "
            "anything else could run code from the file)"
        )

    def persistent_load(self, pid):
        fields = 6 if self.legacy else 5
        if not isinstance(pid, tuple) or len(pid) != fields or pid[0] != "storage":
            raise WeightsError(f"{self.path}: unsupported persistent id (a {describe(pid)})")
        _, storage_type, key, location, numel = pid[:5]
        view = pid[5] if self.legacy else None
        if (not isinstance(storage_type, _StorageType) or not _is_key(key) or not isinstance(location, str)
                or not _is_index(numel) or not (view is None or isinstance(view, tuple))):
            raise WeightsError(f"{self.path}: malformed storage record (a {describe(pid)})")
        key = str(key)
        root = self.storages.get(key)
        if root is None:
            root = self.storages[key] = _Storage(key, storage_type, numel)
        elif root.storage_type is not storage_type and root.storage_type.name != storage_type.name:
            raise WeightsError(f"{self.path}: storage {key:.40} is declared with two element types")
        if view is None:
            return root
        if len(view) != 3 or not _is_key(view[0]) or not _is_index(view[1]) or not _is_index(view[2]) \
                or view[1] + view[2] > root.numel:
            raise WeightsError(f"{self.path}: storage view of {key:.40} lies outside its storage")
        _, offset, view_numel = view
        return _Storage(str(view[0]), storage_type, view_numel, base=root, offset=offset)


def _is_key(value):
    return (isinstance(value, str) and len(value) <= 200) or _is_index(value)


class _BoundedReader:
    """A file wrapper for the pickle: no read or line longer than what is left of ``limit`` bytes,
    so a declared string length of 4 GB is an error, not a 4 GB allocation."""

    def __init__(self, file, limit):
        self.file = file
        self.left = limit

    def read(self, n):
        if n > self.left:
            raise ValueError(f"pickle declares {n} bytes where at most {self.left} remain")
        data = self.file.read(n)
        self.left -= len(data)
        return data

    def readline(self):
        line = self.file.readline(min(self.left, pickle_vm.MAX_STRING))
        self.left -= len(line)
        return line

    def tell(self):
        return self.file.tell()


def _unpickle(file, path, limit, legacy=False):
    records = _StorageRecords(path, legacy)
    try:
        obj = pickle_vm.load(_BoundedReader(file, limit), records.find_class, records.persistent_load,
                             tuple(_ALLOWED_GLOBALS.values()))
    except WeightsError:
        raise
    except pickle_vm.PickleRefused as exc:
        raise WeightsError(f"{path}: refused to load: {exc}") from None
    except Exception as exc:  # any malformed pickle: truncated stream, bad opcode, bad arguments
        raise WeightsError(f"{path}: corrupt or truncated pickle data ({type(exc).__name__}: {str(exc):.200})") from None
    return obj, records.storages


_MAX_PICKLE_BYTES = 16 << 20  # a VGG19 state dict's pickle is about 10 KB


class TorchFile:
    """The object stored in a torch.save file, with tensors as LazyTensor; ``read`` loads one."""

    def __init__(self, path):
        self.path = str(path)
        with open(self.path, "rb") as f:
            head = f.read(4)
        if head.startswith(b"PK"):
            self.obj, self._storages = self._open_zip()
        else:
            self.obj, self._storages = self._open_legacy()

    # --- the two layouts ---

    def _open_zip(self):
        self._zip = ZipReader(self.path)
        pickles = [n for n in self._zip.names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise WeightsError(f"{self.path}: zip archive has no <name>/data.pkl: not a torch.save file")
        self._prefix = pickles[0][: -len("data.pkl")]
        byteorder = self._read_member("byteorder", 16, optional=True)
        self._byteorder = ">" if byteorder == b"big" else "<"
        data = self._read_member("data.pkl", _MAX_PICKLE_BYTES)
        return _unpickle(io.BytesIO(data), self.path, len(data))

    def _read_member(self, name, cap, optional=False):
        full = self._prefix + name
        if optional and full not in self._zip.names:
            return None
        return self._zip.read_whole(full, cap)

    def _open_legacy(self):
        self._zip = None
        self._file_size = os.path.getsize(self.path)
        with open(self.path, "rb") as f:
            limit = min(self._file_size, _MAX_PICKLE_BYTES)

            def next_pickle(legacy=False):
                nonlocal limit
                start = f.tell()
                result = _unpickle(f, self.path, limit, legacy)
                limit -= f.tell() - start
                return result

            if next_pickle()[0] != _LEGACY_MAGIC:
                raise WeightsError(
                    f"{self.path}: not a torch.save file (neither a zip archive nor the legacy "
                    "pickle stream that starts with PyTorch's magic number)"
                )
            protocol, sys_info = (next_pickle()[0] for _ in range(2))
            if protocol != _LEGACY_PROTOCOL or not isinstance(sys_info, dict):
                raise WeightsError(f"{self.path}: unsupported legacy torch.save protocol ({describe(protocol)})")
            self._byteorder = "<" if sys_info.get("little_endian", True) else ">"
            obj, storages = next_pickle(legacy=True)
            keys, _ = next_pickle()
            if not isinstance(keys, list) or not all(_is_key(k) for k in keys):
                raise WeightsError(f"{self.path}: corrupt storage key list")
            # the raw storages follow in key order, each an int64 count then its bytes
            self._legacy_offsets = {}
            for key in keys:
                storage = storages.get(str(key))
                if storage is None:
                    raise WeightsError(f"{self.path}: storage {key!r:.40} is listed but never used")
                count = f.read(8)
                if len(count) != 8:
                    raise WeightsError(f"{self.path}: truncated before the data of storage {key!r:.40}")
                (numel,) = struct.unpack(self._byteorder + "q", count)
                if numel != storage.numel:
                    raise WeightsError(
                        f"{self.path}: storage {key!r:.40} holds {numel} elements, expected {storage.numel}"
                    )
                self._legacy_offsets[str(key)] = f.tell()
                f.seek(numel * storage.storage_type.dtype.itemsize, io.SEEK_CUR)
        return obj, storages

    # --- reading one tensor ---

    def _read_elements(self, root, start, stop, what):
        """Elements [start, stop) of the root storage ``root`` as a flat array (only those read)."""
        dtype = root.storage_type.dtype.newbyteorder(self._byteorder)
        itemsize = dtype.itemsize
        if self._zip is not None:
            raw = self._zip.read_range(f"{self._prefix}data/{root.key}", start * itemsize,
                                       (stop - start) * itemsize, what)
        else:
            offset = self._legacy_offsets.get(root.key)
            if offset is None:
                raise WeightsError(f"{self.path}: {what}: storage {root.key:.40} has no data in the file")
            available = max(0, self._file_size - offset - start * itemsize)
            with open(self.path, "rb") as f:
                f.seek(offset + start * itemsize)
                raw = f.read(min((stop - start) * itemsize, available))
        if len(raw) < (stop - start) * itemsize:
            raise WeightsError(
                f"{self.path}: {what}: storage {root.key:.40} is truncated ({len(raw)} bytes, "
                f"expected {(stop - start) * itemsize})"
            )
        return np.frombuffer(raw, dtype=dtype)

    def read(self, tensor, what, max_elements=MAX_TENSOR_ELEMENTS):
        """The LazyTensor ``tensor`` as a new C-contiguous float32 array; ``what`` names it in errors.

        The view is checked here, where it is used: inside its storage, at most ``max_elements``
        elements, spanning at most ``max_elements`` storage elements (only that span is read)."""
        if not isinstance(tensor, LazyTensor):
            raise WeightsError(f"{self.path}: {what} is not a tensor but a {describe(tensor)}")
        try:
            offset, size, stride = _checked_view(tensor.storage, tensor.offset, tensor.size, tensor.stride)
        except ValueError as exc:
            raise WeightsError(f"{self.path}: {what}: {exc}") from None
        numel = 1
        for n in size:
            numel *= n
        if numel > max_elements:
            raise WeightsError(
                f"{self.path}: {what}: tensor of size {size} has {numel} elements, more than any VGG "
                f"layer holds ({max_elements})"
            )
        if numel == 0:
            return np.zeros(size, np.float32)
        span = sum((n - 1) * s for n, s in zip(size, stride)) + 1
        storage = tensor.storage
        if offset + span > storage.numel:
            raise WeightsError(
                f"{self.path}: {what}: tensor of size {size} reads past the end of its storage "
                f"({storage.numel} elements)"
            )
        if span > max_elements:
            raise WeightsError(
                f"{self.path}: {what}: tensor of size {size} is spread over {span} storage elements "
                f"(at most {max_elements} are read for one layer)"
            )
        root = storage.base or storage
        start = storage.offset + offset
        if storage.base is not None and storage.offset + storage.numel > root.numel:
            raise WeightsError(f"{self.path}: {what}: storage view lies outside its storage")
        flat = self._read_elements(root, start, start + span, what)
        if storage.storage_type.name == "BFloat16Storage":
            flat = (flat.astype(np.uint32) << 16).view(np.float32)
        view = np.lib.stride_tricks.as_strided(
            flat, shape=size, strides=[s * flat.itemsize for s in stride], writeable=False
        )
        return np.ascontiguousarray(view, dtype=np.float32)
