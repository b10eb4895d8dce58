"""Several processes working as one over MPI (mpi4py), or one process without MPI.

:func:`world` says where this process stands: its rank, the number of ranks, and the few
collectives the jobs need (``bcast``, ``gather``, ``agree``, in-place ``allreduce_sum``). A
process that was not started by ``mpirun``/``srun`` (or was started as a single rank) gets a
one-rank world and never imports mpi4py, so a single-process run needs no MPI installed.

Faults. MPI has no way to cancel a collective a rank never reaches, so every job keeps two
rules: (1) where a rank may fail on its own (loading a file, a training step), the ranks meet
in a collective that carries the outcome (:meth:`World.agree`, or the failure slots of the
gradient buffer in :mod:`deepstyle.parallel_training`) and all stop together, naming the
failed ranks; (2) anything unexpected elsewhere goes through :meth:`World.abort_on_error`,
which prints the error with the rank and calls ``MPI_Abort``, so ``mpirun`` ends every rank
instead of leaving them waiting.
"""

from __future__ import annotations

import os
import sys
import traceback
from contextlib import contextmanager

__all__ = ["World", "RankFailed", "world", "launched_ranks", "set_threads_per_rank"]

# The variables the common launchers set in every rank: Open MPI's mpirun, MPICH/Intel MPI's
# Hydra and Slurm's PMI, MVAPICH.
_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE")

_INSTALL_HINT = ("install MPI (Debian: apt-get install openmpi-bin libopenmpi-dev) and mpi4py "
                 "(pip install 'deepstyle[mpi]')")


class RankFailed(RuntimeError):
    """One or more ranks failed; every rank raises this together, so none waits forever."""

    def __init__(self, failures, what):
        self.failures = dict(failures)  # rank -> one-line message
        ranks = ", ".join(str(rank) for rank in sorted(self.failures))
        first = self.failures[min(self.failures)]
        plural = "s" if len(self.failures) > 1 else ""
        super().__init__(f"{what} failed on rank{plural} {ranks}: {first}")


def launched_ranks(environ=None):
    """How many ranks the launcher started (1 when no launcher started this process)."""
    environ = os.environ if environ is None else environ
    for name in _SIZE_VARIABLES:
        value = environ.get(name, "")
        if value.isdigit() and int(value) >= 1:
            return int(value)
    return 1


class World:
    """This process's place among ``size`` ranks. ``comm`` is mpi4py's ``COMM_WORLD``, or None
    in a one-rank world, where every collective is the identity."""

    def __init__(self, comm=None):
        self.comm = comm
        self.rank = comm.Get_rank() if comm is not None else 0
        self.size = comm.Get_size() if comm is not None else 1

    @property
    def is_root(self):
        """Rank 0: the one that writes shared outputs (CSVs, plots, checkpoints) and reports."""
        return self.rank == 0

    def describe(self):
        if self.comm is None:
            return "one process (no MPI)"
        from mpi4py import MPI

        library = MPI.Get_library_version().splitlines()[0].split(",")[0].strip()
        return f"{self.size} MPI ranks ({library})"

    def barrier(self):
        if self.comm is not None:
            self.comm.Barrier()

    def bcast(self, value, root=0):
        return value if self.comm is None else self.comm.bcast(value, root=root)

    def gather(self, value, root=0):
        """A list of every rank's ``value`` on ``root`` (None elsewhere)."""
        return [value] if self.comm is None else self.comm.gather(value, root=root)

    def allgather(self, value):
        return [value] if self.comm is None else self.comm.allgather(value)

    def allreduce_sum(self, buffer):
        """Sum ``buffer`` (a NumPy array) over the ranks in place: one ``MPI_Allreduce``."""
        if self.comm is not None:
            from mpi4py import MPI

            self.comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
        return buffer

    def agree(self, error, what):
        """Every rank passes the error it met (an exception or a message) or None; if any rank
        met one, every rank raises :class:`RankFailed` naming them all. A meeting point for
        steps that may fail on some ranks only (reading files, allocating memory)."""
        message = None if error is None else (str(error) or type(error).__name__)
        failures = {rank: text for rank, text in enumerate(self.allgather(message)) if text is not None}
        if failures:
            raise RankFailed(failures, what)

    def abort(self, code=1):
        if self.comm is None:
            sys.exit(code)
        self.comm.Abort(code)

    @contextmanager
    def abort_on_error(self, program="deepstyle"):
        """Turn an exception that escapes on one rank into ``MPI_Abort`` (after printing it with
        the rank), so the other ranks do not wait for it forever. A no-op in a one-rank world."""
        if self.comm is None or self.size == 1:
            yield
            return
        try:
            yield
        except (Exception, KeyboardInterrupt) as exc:  # every escape must abort
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            sys.stderr.write(f"{program}: rank {self.rank} of {self.size} stopped: {detail}; "
                             "ending every rank\n")  # one write: not interleaved with other ranks'
            sys.stderr.flush()
            self.abort(1)


_WORLD = None


def world():
    """The world of this process, made on first use: MPI when a launcher started several ranks,
    else one rank without MPI. Raises RuntimeError with install instructions when ``mpirun``
    started several ranks but mpi4py cannot be imported."""
    global _WORLD
    if _WORLD is None:
        ranks = launched_ranks()
        if ranks == 1:
            _WORLD = World()
        else:
            try:
                from mpi4py import MPI
            except ImportError as exc:  # ImportError also covers a missing libmpi
                raise RuntimeError(f"started as one of {ranks} MPI ranks, but mpi4py cannot be "
                                   f"imported ({exc}); {_INSTALL_HINT}") from None
            _WORLD = World(MPI.COMM_WORLD)
    return _WORLD


def set_threads_per_rank(current):
    """Unless DEEPSTYLE_NUM_THREADS says otherwise, give each rank its share of the cores it
    may run on: ranks that the launcher bound to their own cores keep those, ranks that share
    a set of cores split it (so N ranks on one machine do not oversubscribe it N times)."""
    import deepstyle

    if current.comm is None or os.environ.get("DEEPSTYLE_NUM_THREADS"):
        return deepstyle.get_num_threads()
    from mpi4py import MPI

    mine = sorted(os.sched_getaffinity(0))
    node = current.comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        sharing = sum(1 for cores in node.allgather(mine) if cores == mine)
    finally:
        node.Free()
    deepstyle.set_num_threads(max(1, len(mine) // sharing))
    return deepstyle.get_num_threads()
