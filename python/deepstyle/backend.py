"""Which library an array belongs to (NumPy or CuPy) and which compiled kernels serve it.

This is the only module that knows about CuPy: everything above the kernels (``ops``, ``nn``,
the optimisers, the style losses, the models) asks :func:`array_module` for the array's own
module and allocates with it, so the same code runs on either backend. CuPy is imported only
when a CuPy array is seen or the GPU is asked for, never on a CPU-only path.
"""

from __future__ import annotations

import numpy as np

from . import _cpu

__all__ = ["array_module", "kernels", "cuda_available", "cuda_unavailable_reason",
           "device_module", "to_host"]

_HOST = (_cpu, np)

# A test's stand-in for CuPy (``serve_device_with``): (its array type, its module), or None.
_stand_in = None


def serve_device_with(array_type, module):
    """For the tests only: arrays of ``array_type`` count as GPU arrays of the array module
    ``module`` and run on the CUDA kernels emulated on the CPU (``deepstyle._cuda_emulated``),
    and ``device_module("cuda")`` answers ``module``; None undoes it. This is how CI runs the
    GPU paths (paint, training) without a GPU: see tests/fake_cupy.py."""
    global _stand_in
    _stand_in = None if array_type is None else (array_type, module)


def _is_stand_in(array):
    return _stand_in is not None and type(array) is _stand_in[0]


def _is_cupy(array):
    return type(array).__module__.startswith("cupy")


def _on_device(array):
    return _is_cupy(array) or _is_stand_in(array)


def array_module(array):
    """``numpy`` for a NumPy array (or anything that is not a CuPy array), ``cupy`` for CuPy."""
    if type(array) is np.ndarray:
        return np
    if _is_stand_in(array):
        return _stand_in[1]
    if not _is_cupy(array):
        return np
    import cupy

    return cupy


def device_module(device):
    """The array module of ``device``: numpy for "cpu", cupy for "cuda" (a RuntimeError saying
    why when no GPU can be used)."""
    if device == "cpu":
        return np
    if device != "cuda":
        raise ValueError(f"device: expected 'cpu' or 'cuda', got {device!r}")
    if _stand_in is not None:
        return _stand_in[1]
    if not cuda_available():
        raise RuntimeError(cuda_unavailable_reason())
    import cupy

    return cupy


def free_device_memory(device):
    """Bytes free on the GPU of ``device`` ("cuda"), or None when unknown (or "cpu")."""
    if device == "cpu":
        return None
    try:
        return int(device_module(device).cuda.runtime.memGetInfo()[0])
    except Exception:  # a stand-in without the call, a driver that does not answer
        return None


def to_host(array):
    """``array`` as a NumPy array: itself when it is one, else copied from the GPU (other
    values, such as None or numbers, pass through)."""
    return array.get() if _on_device(array) else array


def kernels(*arrays):
    """``(kernel module, array module)`` for the arrays (None entries are ignored):
    ``(_cpu, numpy)`` for NumPy, ``(_cuda, cupy)`` for CuPy; mixing both is a TypeError."""
    for array in arrays:  # the common case, kept cheap: a plain loop, no generator
        if type(array) is not np.ndarray and array is not None:
            return _kernels_for_mixed(arrays)
    return _HOST


def _kernels_for_mixed(arrays):
    # lists, tuples and numbers belong to no device: ops converts them with the arrays' module
    arrays = [a for a in arrays if a is not None and not isinstance(a, (list, tuple, int, float))]
    on_gpu = [_on_device(a) for a in arrays]
    if not any(on_gpu):
        return _HOST  # NumPy subclasses and the like: ops converts them with NumPy
    if not all(on_gpu):
        raise TypeError("arrays must all be NumPy arrays or all CuPy arrays, not a mix of both")
    first = arrays[0]
    if _is_stand_in(first):
        from . import _cuda_emulated

        return _cuda_emulated, _stand_in[1]
    return _cuda_module(), array_module(first)


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
