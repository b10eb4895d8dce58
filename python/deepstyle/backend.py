"""Which library an array belongs to (NumPy or CuPy) and which compiled kernels serve it.

This is the only module that knows about CuPy: everything above the kernels (``ops``, ``nn``,
the optimisers, the style losses, the models) asks :func:`array_module` for the array's own
module and allocates with it, so the same code runs on either backend. CuPy is imported only
when a CuPy array is seen or the GPU is asked for, never on a CPU-only path.
"""

from __future__ import annotations

import numpy as np

from . import _cpu

__all__ = ["array_module", "kernels", "cuda_available",
           "cuda_unavailable_reason"]

_HOST = (_cpu, np)


def _is_cupy(array):
    return type(array).__module__.startswith("cupy")


def array_module(array):
    """``numpy`` for a NumPy array (or anything that is not a CuPy array), ``cupy`` for CuPy."""
    if type(array) is np.ndarray or not _is_cupy(array):
        return np
    import cupy

    return cupy


def kernels(*arrays):
    """``(kernel module, array module)`` for the arrays (None entries are ignored):
    ``(_cpu, numpy)`` for NumPy, ``(_cuda, cupy)`` for CuPy; mixing both is a TypeError."""
    for array in arrays:  # the common case, kept cheap: a plain loop, no generator
        if type(array) is not np.ndarray and array is not None:
            return _kernels_for_mixed(arrays)
    return _HOST


def _kernels_for_mixed(arrays):
    on_gpu = [_is_cupy(a) for a in arrays if a is not None]
    if not any(on_gpu):
        return _HOST  # lists, scalars, NumPy subclasses: ops converts them with NumPy
    if not all(on_gpu):
        raise TypeError("arrays must all be NumPy arrays or all CuPy arrays, not a mix of both")
    return _cuda_module(), array_module(next(a for a in arrays if a is not None))


def _cuda_module():
    try:
        from . import _cuda
    except ImportError as exc:
        raise RuntimeError(
            "CuPy arrays need the CUDA backend (deepstyle._cuda), which this build does not "
            "include"
        ) from exc
    return _cuda


_cuda_state = None  # (available, why not) once asked


def _probe_cuda():
    try:
        from . import _cuda  # noqa: F401
    except ImportError:
        return False, "this build of deepstyle has no CUDA backend (nvcc was not found)"
    try:
        import cupy
    except ImportError:
        return False, "CuPy is not installed (pip install 'deepstyle[cuda]')"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError without a driver or device
        return False, f"no usable CUDA device ({str(exc).strip() or type(exc).__name__})"
    if count < 1:
        return False, "no CUDA device found"
    return True, ""


def cuda_available() -> bool:
    """True when the CUDA kernels were built, CuPy imports and a CUDA device answers."""
    global _cuda_state
    if _cuda_state is None:
        _cuda_state = _probe_cuda()
    return _cuda_state[0]


def cuda_unavailable_reason() -> str:
    """Why :func:`cuda_available` is False, in a few words ("" when it is True)."""
    cuda_available()
    return _cuda_state[1]
