"""deepstyle: hand-written CPU/CUDA deep-learning kernels and Gatys neural style transfer."""

from __future__ import annotations

import os

from . import _cpu

__version__ = "0.1.0"

_THREADS_VARIABLE = "DEEPSTYLE_NUM_THREADS"


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in every CPU kernel (default: all cores)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive integer thread count, got {n!r}")
    _cpu.set_num_threads(n)


def get_num_threads() -> int:
    """Number of threads the CPU kernels use."""
    return _cpu.get_num_threads()


def backends() -> list[str]:
    """Names of the compiled kernel backends that can run here."""
    names = ["cpu"]
    try:
        from . import _cuda  # noqa: F401

        names.append("cuda")
    except ImportError:
        pass
    return names


def _threads_from_environment() -> None:
    value = os.environ.get(_THREADS_VARIABLE)
    if not value:
        return
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{_THREADS_VARIABLE}: expected a positive integer, got {value!r}")
    set_num_threads(n)


_threads_from_environment()

from . import ops  # noqa: E402

__all__ = ["ops", "set_num_threads", "get_num_threads", "backends", "__version__"]
