"""Read PyTorch ``torch.save`` files (state dicts of tensors) without PyTorch and without risk.

A ``.pth`` file is a pickle, and unpickling runs whatever callables the file names. This reader
uses a restricted unpickler whose ``find_class`` knows only the handful of names that tensor
storage needs, each mapped to a function of ours that merely records where the tensor's bytes
lie; any other global (``os.system``, ``builtins.eval``, a pickled ``nn.Module``...) is refused
before anything from the file is called. Tensors are read lazily: only the ones asked for are
read from disk, so the 400 MB classifier of a torchvision VGG file is never touched.

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
import pickle
import struct
import zipfile

import numpy as np

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


def _checked_ints(values, what):
    if not isinstance(values, (tuple, list)) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values
    ):
        raise ValueError(f"tensor {what} is not a tuple of non-negative ints: {values!r}")
    return tuple(values)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    """Safe stand-in for torch._utils._rebuild_tensor(_v2): records the view, reads nothing."""
    if not isinstance(storage, _Storage):
        raise ValueError(f"tensor refers to something other than a storage: {type(storage).__name__}")
    size = _checked_ints(size, "size")
    stride = _checked_ints(stride, "stride")
    if len(size) != len(stride) or not isinstance(storage_offset, int) or storage_offset < 0:
        raise ValueError(f"tensor view is malformed: offset {storage_offset!r}, size {size}, stride {stride}")
    return LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks, *_ignored):
    return data


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only tensor-storage globals; storages come back as _Storage records."""

    def __init__(self, file, path, legacy):
        super().__init__(file)
        self.path = path
        self.legacy = legacy
        self.storages = {}

    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise WeightsError(
            f"{self.path}: refused to load: the file's pickle asks for '{module}.{name}', which "
            "is not tensor storage (a weights file needs only torch tensors in a dict; loading "
            "anything else could run code from the file)"
        )

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise WeightsError(f"{self.path}: unsupported persistent id {pid!r:.80}")
        if self.legacy:
            if len(pid) != 6:
                raise WeightsError(f"{self.path}: malformed storage record {pid!r:.80}")
            _, storage_type, key, _location, numel, view = pid
        else:
            if len(pid) != 5:
                raise WeightsError(f"{self.path}: malformed storage record {pid!r:.80}")
            _, storage_type, key, _location, numel = pid
            view = None
        if not isinstance(storage_type, _StorageType) or not isinstance(numel, int) or numel < 0:
            raise WeightsError(f"{self.path}: malformed storage record {pid!r:.80}")
        key = str(key)
        root = self.storages.get(key)
        if root is None:
            root = self.storages[key] = _Storage(key, storage_type, numel)
        if view is None:
            return root
        view_key, offset, view_numel = view
        if not (isinstance(offset, int) and isinstance(view_numel, int)) or offset < 0 or offset + view_numel > root.numel:
            raise WeightsError(f"{self.path}: storage view {view!r:.80} lies outside its storage")
        return _Storage(str(view_key), storage_type, view_numel, base=root, offset=offset)


def _unpickle(file, path, legacy=False):
    unpickler = _RestrictedUnpickler(file, path, legacy)
    try:
        obj = unpickler.load()
    except WeightsError:
        raise
    except Exception as exc:  # any malformed pickle: truncated stream, bad opcode, bad arguments
        raise WeightsError(f"{path}: corrupt or truncated pickle data ({type(exc).__name__}: {exc})") from exc
    return obj, unpickler.storages


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
        try:
            self._zip = zipfile.ZipFile(self.path)
            names = self._zip.namelist()
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise WeightsError(f"{self.path}: truncated or corrupt zip archive ({exc})") from exc
        pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise WeightsError(f"{self.path}: zip archive has no <name>/data.pkl: not a torch.save file")
        self._prefix = pickles[0][: -len("data.pkl")]
        byteorder = self._read_member("byteorder", optional=True)
        self._byteorder = ">" if byteorder == b"big" else "<"
        data = self._read_member("data.pkl")
        return _unpickle(io.BytesIO(data), self.path)

    def _read_member(self, name, optional=False):
        full = self._prefix + name
        try:
            return self._zip.read(full)
        except KeyError:
            if optional:
                return None
            raise WeightsError(f"{self.path}: zip archive lacks {full}") from None
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise WeightsError(f"{self.path}: corrupt zip member {full} ({exc})") from exc

    def _open_legacy(self):
        self._zip = None
        with open(self.path, "rb") as f:
            if _unpickle(f, self.path)[0] != _LEGACY_MAGIC:
                raise WeightsError(
                    f"{self.path}: not a torch.save file (neither a zip archive nor the legacy "
                    "pickle stream that starts with PyTorch's magic number)"
                )
            protocol, sys_info = (_unpickle(f, self.path)[0] for _ in range(2))
            if protocol != _LEGACY_PROTOCOL or not isinstance(sys_info, dict):
                raise WeightsError(f"{self.path}: unsupported legacy torch.save protocol {protocol!r}")
            self._byteorder = "<" if sys_info.get("little_endian", True) else ">"
            obj, storages = _unpickle(f, self.path, legacy=True)
            keys, _ = _unpickle(f, self.path)
            if not isinstance(keys, list):
                raise WeightsError(f"{self.path}: corrupt storage key list")
            # the raw storages follow in key order, each an int64 count then its bytes
            self._legacy_offsets = {}
            for key in keys:
                storage = storages.get(str(key))
                if storage is None:
                    raise WeightsError(f"{self.path}: storage {key!r} is listed but never used")
                count = f.read(8)
                if len(count) != 8:
                    raise WeightsError(f"{self.path}: truncated before the data of storage {key}")
                (numel,) = struct.unpack(self._byteorder + "q", count)
                if numel != storage.numel:
                    raise WeightsError(f"{self.path}: storage {key} holds {numel} elements, expected {storage.numel}")
                self._legacy_offsets[str(key)] = f.tell()
                f.seek(numel * storage.storage_type.dtype.itemsize, io.SEEK_CUR)
        return obj, storages

    # --- reading one tensor ---

    def _storage_array(self, storage, what):
        root = storage.base or storage
        dtype = root.storage_type.dtype.newbyteorder(self._byteorder)
        nbytes = root.numel * dtype.itemsize
        if self._zip is not None:
            raw = self._read_member(f"data/{root.key}")
        else:
            offset = self._legacy_offsets.get(root.key)
            if offset is None:
                raise WeightsError(f"{self.path}: {what}: storage {root.key} has no data in the file")
            with open(self.path, "rb") as f:
                f.seek(offset)
                raw = f.read(nbytes)
        if len(raw) < nbytes:
            raise WeightsError(
                f"{self.path}: {what}: storage {root.key} is truncated ({len(raw)} bytes, expected {nbytes})"
            )
        array = np.frombuffer(raw, dtype=dtype, count=root.numel)
        return array[storage.offset : storage.offset + storage.numel]

    def read(self, tensor, what):
        """The LazyTensor ``tensor`` as a new C-contiguous float32 array; ``what`` names it in errors."""
        if not isinstance(tensor, LazyTensor):
            raise WeightsError(f"{self.path}: {what} is not a tensor but {type(tensor).__name__}")
        flat = self._storage_array(tensor.storage, what)
        if tensor.storage.storage_type.name == "BFloat16Storage":
            flat = (flat.astype(np.uint32) << 16).view(np.float32)
        if any(s == 0 for s in tensor.size):
            return np.zeros(tensor.size, np.float32)
        last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.size, tensor.stride))
        if last >= flat.size:
            raise WeightsError(
                f"{self.path}: {what}: tensor of size {tensor.size} reads past the end of its storage "
                f"({flat.size} elements)"
            )
        view = np.lib.stride_tricks.as_strided(
            flat[tensor.offset :],
            shape=tensor.size,
            strides=[s * flat.itemsize for s in tensor.stride],
            writeable=False,
        )
        return np.ascontiguousarray(view, dtype=np.float32)
