"""Reusing freed memory while a painting runs, instead of asking the OS for new pages.

glibc's malloc maps every block above its mmap threshold (at most 32 MiB) afresh and unmaps
it when freed. An L-BFGS evaluation at 512 px allocates and frees activations and gradients of
up to 64 MiB, so the kernel faulted in and zeroed about a gigabyte of pages per evaluation:
10-15% of its CPU time. Inside :func:`reusing_freed_memory` blocks of up to 1 GiB come from the
heap and stay there when freed, for the next evaluation; on leaving, glibc gets back the
thresholds its own adjustment would have reached (32 MiB, 64 MiB) and the free memory goes back
to the OS. With another C library it does nothing.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

from . import _cpu

__all__ = ["reusing_freed_memory"]

_lock = threading.Lock()
_depth = 0  # nested or concurrent users: the setting is the process's, restored by the last


@contextmanager
def reusing_freed_memory():
    """Context in which freed large blocks stay in the process (see the module doc)."""
    global _depth
    with _lock:
        if _depth == 0:
            _cpu.keep_freed_memory(True)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _cpu.keep_freed_memory(False)
