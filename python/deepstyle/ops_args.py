"""The argument checks of :mod:`deepstyle.ops` and its op families (``ops_pool``): conversion to
C-contiguous float32, shape and flag checks, output allocation and the (h, w) pairs of strides,
paddings and kernel sizes, each error naming the argument and giving the expected and the
actual value. The names are private to the ops modules (``ops`` imports them)."""

from __future__ import annotations

import numbers

import numpy as np

from .backend import array_module


def _as_float32(array, name):
    """``array`` as a C-contiguous float32 array of its own library (NumPy or CuPy)."""
    if type(array) is np.ndarray and array.dtype == np.float32 and array.flags.c_contiguous:
        return array  # already what the kernels take: skip the checks below (per-call cost)
    xp = array_module(array)
    if not isinstance(array, (np.ndarray, numbers.Number)) and xp is np:
        if isinstance(array, (list, tuple)):
            array = np.asarray(array)
        else:
            raise TypeError(
                f"{name}: expected a NumPy or CuPy array, got {type(array).__name__}"
            )
    dtype = np.dtype(array.dtype) if hasattr(array, "dtype") else np.asarray(array).dtype
    if dtype.kind not in "fiu":
        raise TypeError(
            f"{name}: expected a real (floating-point or integer) array, got dtype {dtype}"
        )
    # asarray, not ascontiguousarray, which would turn a 0-d array into shape (1,)
    return xp.asarray(array, dtype=xp.float32, order="C")


def _check_ndim(array, ndim, name, layout):
    if array.ndim != ndim:
        raise ValueError(
            f"{name}: expected a {ndim}-D array {layout}, got {array.ndim}-D with shape "
            f"{tuple(array.shape)}"
        )


def _check_shape(array, shape, name):
    if tuple(array.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(array.shape)}")


def _check_nonempty_maps(x):
    """x must be (N, C, H, W) with H, W >= 1: a window or a mean over no cells is undefined."""
    _check_ndim(x, 4, "x", "(N, C, H, W)")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(
            f"x: expected feature maps of at least 1x1, got x.shape={tuple(x.shape)}"
        )


def _real(value, name):
    if type(value) is float:  # the common case, kept cheap (isinstance of an ABC is not)
        return value
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a real number, got {value!r:.80}")
    try:
        return float(value)
    except OverflowError:  # an int or Fraction beyond float's range (about 1.8e308)
        raise ValueError(f"{name}: expected a real number within float range, got one too "
                         f"large to convert ({type(value).__name__})") from None


def _flag(value, name):
    """A yes/no option: True or False only (a string such as 'no' would otherwise be true)."""
    if value is True or value is False:
        return value
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r:.80}")
    return bool(value)


# Strides, paddings and kernel sizes beyond this describe no array that fits in memory, and
# the kernels' int64 size arithmetic (padded sizes, window positions) stays exact below it.
_MAX_GEOMETRY = 1 << 40


def _allocate(xp, shape, cause):
    """A new float32 array of ``shape``, or a ValueError that starts with ``cause`` (the
    argument that made it that large, and its value)."""
    try:
        return xp.empty(shape, dtype=xp.float32)
    except (ValueError, MemoryError):
        count = 1
        for n in shape:
            count *= n
        raise ValueError(f"{cause}: expected a result that can be allocated, got one of shape "
                         f"{tuple(shape)} ({count * 4} bytes)") from None


def _check_output(c, xp, shape, inputs, name="c"):
    """``c`` (the argument ``name``) must be a writeable C-contiguous float32 array of
    ``shape`` that none of the ``inputs`` overlaps (the kernel reads them while it writes c)."""
    if not isinstance(c, xp.ndarray):
        raise TypeError(f"{name}: expected a writeable C-contiguous float32 array, got "
                        f"{type(c).__name__}")
    writeable = getattr(c.flags, "writeable", True)  # CuPy arrays are always writeable
    if c.dtype != xp.float32 or not c.flags.c_contiguous or not writeable:
        raise TypeError(
            f"{name}: expected a writeable C-contiguous float32 array, got dtype {c.dtype}, "
            f"c_contiguous={c.flags.c_contiguous}, writeable={writeable}"
        )
    _check_shape(c, shape, name)
    for other, array in inputs.items():
        if xp.shares_memory(c, array):
            raise ValueError(f"{name}: must not share memory with {other}")


def _pair(value, name, minimum):
    """An int or an (h, w) pair of ints, each at least ``minimum``, as a tuple (h, w)."""
    if type(value) is int and minimum <= value <= _MAX_GEOMETRY:  # the common cases, kept cheap
        return value, value
    if (type(value) is tuple and len(value) == 2 and type(value[0]) is int
            and type(value[1]) is int and minimum <= min(value) and max(value) <= _MAX_GEOMETRY):
        return value
    if isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, bool) for v in value)
    ):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name}: expected an int or a pair of ints (h, w), got {value!r:.80}")
    if min(pair) < minimum:
        kind = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name}: expected {kind} values, got {value!r}")
    if max(pair) > _MAX_GEOMETRY:
        raise ValueError(f"{name}: expected values of at most 2**40, got {value!r}")
    return pair
