"""deepstyle: hand-written CPU/CUDA deep-learning kernels and Gatys neural style transfer."""

from __future__ import annotations

import numbers
import os
import sys


def _quiet_interrupts_in_the_command() -> None:
    """Ctrl-C while the ``deepstyle`` command is still importing this package (before
    ``cli.main`` can catch it) ends with one line, not a traceback through the imports.
    Only the console script is affected; ``import deepstyle`` elsewhere keeps Python's hook."""
    if os.path.basename(sys.argv[0] if sys.argv else "") != "deepstyle":
        return
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        if issubclass(exc_type, KeyboardInterrupt):
            print("interrupted", file=sys.stderr)
        else:
            previous(exc_type, exc, tb)

    sys.excepthook = hook


_quiet_interrupts_in_the_command()

# How long an idle OpenMP worker spins before it sleeps, unless the user chose (OMP_WAIT_POLICY or
# GOMP_SPINCOUNT). libgomp's default spins up to ~300000 pause loops (milliseconds) after every
# parallel region: on a machine whose cores are all busy, the spinning workers take turns from
# the thread with the work, and a 2-thread training step of cifar-cnn took 3-7x its quiet time,
# burning 3x the CPU. Never spinning (OMP_WAIT_POLICY=passive) costs a futex wake-up per region,
# ~8% of a quiet 2-thread step. 10000 loops (a fraction of a millisecond) bridge the gaps between
# a step's kernels but hand the core back soon after (bench/README.md, "Threads").
_SPIN_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
_BOUNDED_SPIN = "10000"


def _import_kernels_with_bounded_spinning():
    """Imports ``_cpu`` with GOMP_SPINCOUNT set for libgomp, which reads it once as it loads,
    then restores the environment, so child processes see the user's own."""
    if any(name in os.environ for name in _SPIN_VARIABLES):
        from . import _cpu
        return _cpu
    os.environ["GOMP_SPINCOUNT"] = _BOUNDED_SPIN
    try:
        from . import _cpu
    finally:
        del os.environ["GOMP_SPINCOUNT"]
    return _cpu


_cpu = _import_kernels_with_bounded_spinning()

__version__ = "0.1.0"

_THREADS_VARIABLE = "DEEPSTYLE_NUM_THREADS"


# Far beyond any useful oversubscription; a typo like 10**6 would otherwise make OpenMP abort
# the process when it cannot create the threads.
MAX_THREADS = 1024


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in every CPU kernel (default: all cores)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n: expected an integer thread count, got {n!r}")
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(f"n: expected a thread count from 1 to {MAX_THREADS}, got {n!r}")
    _cpu.set_num_threads(int(n))


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
        set_num_threads(int(value))
    except (TypeError, ValueError):
        error = ValueError(
            f"{_THREADS_VARIABLE}: expected an integer thread count from 1 to {MAX_THREADS}, "
            f"got {value!r}"
        )
        _end_in_one_line(error)
        raise error from None


def _end_in_one_line(error):
    """If ``error`` ends the program (``deepstyle info`` with a bad setting), print its one line
    rather than a traceback through the import machinery."""
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        if exc is error:
            print(f"{exc_type.__name__}: {exc}", file=sys.stderr)
        else:
            previous(exc_type, exc, tb)

    sys.excepthook = hook


_threads_from_environment()

from . import ops  # noqa: E402
from . import paint  # noqa: E402  (callable: deepstyle.paint(content, style, **options) -> image)
from .backend import cuda_available  # noqa: E402

__all__ = ["ops", "paint", "set_num_threads", "get_num_threads", "backends", "cuda_available",
           "__version__"]
