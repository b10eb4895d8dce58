"""A stand-in for CuPy, so that CI runs deepstyle's GPU paths (paint, training) without a GPU.

Its arrays (:class:`ndarray`) keep their data in host memory, in a private NumPy array, but they
are not NumPy arrays and refuse to act as one: ``np.asarray(a)`` raises (as CuPy's does), NumPy
functions and ufuncs on them raise, arithmetic or indexing that mixes them with NumPy arrays
raises, and ``np.ndarray`` type checks fail. Only :meth:`ndarray.get` / :func:`asnumpy` copy to
the host and :func:`asarray` of host data copies to the "device"; both are counted in
``transfers``. deepstyle routes these arrays (``backend.serve_device_with``) to
``deepstyle._cuda_emulated``, the CUDA kernels' own source compiled for the CPU, which reads them
through ``__cuda_array_interface__`` with the same checks as the real ``_cuda`` reads CuPy arrays.

What a run on it proves: the code touches its arrays only through their array module and the
CUDA kernels (an accidental host path -- ``np.asarray``, a NumPy-only helper, the ``_cpu``
kernels -- fails loudly), host transfers happen only where counted, and the CUDA kernels give
the CPU's results along the whole path. What it cannot prove: real CuPy's behaviour beyond the
API subset below (each function here exists in CuPy with these semantics; a new use fails
here first -- add it only after checking CuPy has it), streams and asynchrony, device memory
limits, and speed.
"""

from __future__ import annotations

import operator
import types

import numpy as np

# CuPy uses NumPy's scalar types and dtypes.
float32, float64, int32, int64, bool_ = np.float32, np.float64, np.int32, np.int64, np.bool_

transfers = {"to_device": 0, "to_host": 0}

# The "device" memory cupy.cuda.runtime.memGetInfo() reports: (free, total) bytes; a test may
# shrink it to see deepstyle refuse a run that would not fit.
device_memory = [16 << 30, 16 << 30]
cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(memGetInfo=lambda: tuple(device_memory)))


def _unwrap(value):
    """The host data behind a device array; scalars and non-array values pass; NumPy arrays
    (host memory where device memory is expected) are an error."""
    if isinstance(value, ndarray):
        return value._data
    if isinstance(value, np.ndarray):
        raise TypeError(f"fake_cupy: a NumPy array (shape {value.shape}) where a device array "
                        f"is expected; move it with asarray() first")
    if isinstance(value, (tuple, list)):
        return type(value)(_unwrap(v) for v in value)
    return value


def _wrap(result):
    if isinstance(result, np.ndarray):
        return ndarray(result)
    if isinstance(result, np.generic):  # CuPy's reductions give 0-d arrays, not scalars
        return ndarray(np.asarray(result))
    return result


class ndarray:  # noqa: N801 -- CuPy's name
    """A device array: see the module's docstring."""

    __slots__ = ("_data",)
    __array_ufunc__ = None  # NumPy's operators and ufuncs hand over to ours, or fail
    __hash__ = None

    def __init__(self, data):
        self._data = data

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed (fake_cupy device "
                        "array): use .get()")

    def __array_function__(self, func, types_, args, kwargs):
        raise TypeError(f"numpy.{func.__name__} on a fake_cupy device array: use the array's "
                        f"own module")

    @property
    def __cuda_array_interface__(self):
        d = self._data
        return {"shape": d.shape, "typestr": d.dtype.str, "data": (d.ctypes.data, False),
                "strides": None if d.flags.c_contiguous else d.strides, "version": 3}

    shape = property(lambda self: self._data.shape)
    ndim = property(lambda self: self._data.ndim)
    size = property(lambda self: self._data.size)
    dtype = property(lambda self: self._data.dtype)
    nbytes = property(lambda self: self._data.nbytes)
    strides = property(lambda self: self._data.strides)
    T = property(lambda self: ndarray(self._data.T))

    @property
    def flags(self):
        return types.SimpleNamespace(c_contiguous=self._data.flags.c_contiguous,
                                     f_contiguous=self._data.flags.f_contiguous)

    def get(self):
        """A NumPy copy on the host."""
        transfers["to_host"] += 1
        return self._data.copy()

    def item(self):
        return self._data.item()

    def __float__(self):
        return float(self._data)

    def __int__(self):
        return int(self._data)

    def __bool__(self):
        return bool(self._data)

    def __len__(self):
        return len(self._data)

    def __repr__(self):
        return f"fake_cupy.ndarray(shape={self.shape}, dtype={self.dtype})"

    def __getitem__(self, key):
        return _wrap(self._data[_unwrap(key)])

    def __setitem__(self, key, value):
        self._data[_unwrap(key)] = _unwrap(value)

    def __neg__(self):
        return ndarray(-self._data)

    def __abs__(self):
        return ndarray(abs(self._data))

    def copy(self):
        return ndarray(self._data.copy())

    def ravel(self):
        return ndarray(self._data.ravel())

    def reshape(self, *shape):
        return ndarray(self._data.reshape(*shape))

    def transpose(self, *axes):
        return ndarray(self._data.transpose(*axes))

    def astype(self, dtype, copy=True):
        return ndarray(self._data.astype(dtype, copy=copy))

    def fill(self, value):
        self._data.fill(value)



def _reduction(name):
    def method(self, *args, **kwargs):
        return _wrap(getattr(self._data, name)(*args, **kwargs))
    method.__name__ = name
    return method


for _name in ("sum", "max", "min", "mean", "std", "argmax"):
    setattr(ndarray, _name, _reduction(_name))


def _binary(op, reflected=False):
    def method(self, other):
        if isinstance(other, np.ndarray):  # CuPy raises too: no silent host-device mix
            return NotImplemented if reflected else _mix_error(op)
        a, b = (_unwrap(other), self._data) if reflected else (self._data, _unwrap(other))
        return _wrap(op(a, b))
    return method


def _inplace(op):
    def method(self, other):
        op(self._data, _unwrap(other))
        return self
    return method


def _mix_error(op):
    raise TypeError(f"fake_cupy: {op.__name__} of a device array and a NumPy array")


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "and", "or"):
    _op = getattr(operator, _name.rstrip("_") + ("_" if _name in ("and", "or") else ""))
    setattr(ndarray, f"__{_name}__", _binary(_op))
    setattr(ndarray, f"__r{_name}__", _binary(_op, reflected=True))
    setattr(ndarray, f"__i{_name}__", _inplace(getattr(operator, f"i{_name}")))
for _name in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(ndarray, f"__{_name}__", _binary(getattr(operator, _name)))


# --- the module's functions: the subset of CuPy's API that deepstyle uses --------------------


def asarray(a, dtype=None, order=None):
    """A device array of ``a``: itself when nothing changes, else a converted copy; host data
    (NumPy arrays, lists, scalars) is copied to the device."""
    if isinstance(a, ndarray):
        data = np.asarray(a._data, dtype=dtype, order=order)
        return a if data is a._data else ndarray(data)
    if isinstance(a, np.ndarray):
        transfers["to_device"] += 1
    return ndarray(np.array(a, dtype=dtype, order=order or "K", copy=True))


def asnumpy(a):
    return a.get() if isinstance(a, ndarray) else np.asarray(a)


def _device_only(name):
    function = getattr(np, name)

    def call(*args, **kwargs):
        kwargs = {k: _unwrap(v) for k, v in kwargs.items()}
        return _wrap(function(*_unwrap(args), **kwargs))
    call.__name__ = name
    return call


for _name in ("ascontiguousarray", "empty", "zeros", "ones", "full", "empty_like", "zeros_like",
              "ones_like", "arange", "sqrt", "square", "abs", "exp", "log", "clip", "maximum",
              "minimum", "multiply", "sum", "vdot", "dot", "concatenate", "stack", "where",
              "argmax", "count_nonzero", "shares_memory"):
    globals()[_name] = _device_only(_name)


del _name, _op
