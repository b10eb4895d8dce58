"""Data-parallel training over MPI ranks: every rank holds the whole model and takes its share
of each mini-batch; the gradients are summed with one ``Allreduce`` per step.

How it plugs into :func:`deepstyle.optim.run_loop` (see ``tests/test_parallel_training.py``)::

    parallel = DataParallel(world(), net, batch_size)
    sampler = parallel.shard(WithoutReplacement(n, batch_size, rng=np.random.default_rng(seed)))
    steps = parallel.guard(GradientSteps(net, cost, optimizer, x, y,
                                         after_backward=parallel.after_backward))

* The same seed on every rank gives every rank the same permutation of the data each epoch;
  :meth:`DataParallel.shard` hands each rank its contiguous slice of each global batch (sizes
  differ by at most one when the ranks do not divide the batch).
* Each rank's cost is the mean over its slice; scaling its gradient by slice / batch before the
  sum makes the sum the mean over the global batch, so every rank applies the update a single
  process would (to float32 rounding: the sums are taken in another order).
* All gradients travel in ONE flat float32 buffer (one ``MPI_Allreduce`` per step, not one per
  parameter); its last ``size`` entries are failure flags, so a step that raises on some rank
  makes every rank raise :class:`~deepstyle.distributed.RankFailed` naming it, at that same
  step, instead of leaving the others waiting (:meth:`DataParallel.guard`).
* CuPy gradients are packed on the GPU; the buffer goes to MPI as it is when MPI is CUDA-aware,
  else through a copy in host memory (:attr:`DataParallel.transport` says which).
"""

from __future__ import annotations

import ctypes
import os
import sys

import numpy as np

from .distributed import RankFailed
from .backend import array_module

__all__ = ["DataParallel", "ShardedSampler", "shard_bounds", "mpi_is_cuda_aware", "distribute"]


def shard_bounds(batch_size, ranks):
    """``[(start, stop)]`` of each rank's contiguous slice of a batch (as ``np.array_split``)."""
    if ranks > batch_size:
        raise ValueError(f"batch_size: expected at least one example per rank ({ranks} ranks), "
                         f"got {batch_size}")
    edges = [batch_size * r // ranks for r in range(ranks + 1)]
    return list(zip(edges[:-1], edges[1:]))


class ShardedSampler:
    """``sampler``'s batches cut to one rank's slice; its epochs, generator and state are the
    wrapped sampler's, so checkpoints that save ``sampler.rng`` work unchanged."""

    def __init__(self, sampler, start, stop):
        self.sampler, self.start, self.stop = sampler, start, stop

    def indices(self, steps):
        return self.sampler.indices(steps)[:, self.start:self.stop]

    def __getattr__(self, name):  # batch_size, steps_per_epoch, rng, n
        return getattr(self.sampler, name)


def mpi_is_cuda_aware():
    """Whether the MPI library takes GPU buffers (Open MPI's ``MPIX_Query_cuda_support``);
    ``DEEPSTYLE_MPI_CUDA_AWARE=0/1`` overrides the answer."""
    forced = os.environ.get("DEEPSTYLE_MPI_CUDA_AWARE")
    if forced in ("0", "1"):
        return forced == "1"
    try:
        return bool(ctypes.CDLL(None).MPIX_Query_cuda_support())
    except (AttributeError, OSError):  # not Open MPI, or not loaded: assume host memory only
        return False


class DataParallel:
    """The gradient exchange of one data-parallel run of ``net`` at global ``batch_size``."""

    def __init__(self, world, net, batch_size):
        self.world, self.net = world, net
        self.bounds = shard_bounds(batch_size, world.size)
        start, stop = self.bounds[world.rank]
        self.scale = (stop - start) / batch_size
        self.batch_size = batch_size
        self.shapes = [(name, value.shape, value.size) for name, value, _ in net.parameters()]
        self.count = sum(size for _, _, size in self.shapes)
        self.xp = array_module(next(iter(net.parameters()))[1]) if self.shapes else np
        on_gpu = self.xp is not np
        self.transport = ("device" if on_gpu and world.size > 1 and mpi_is_cuda_aware()
                          else "host, staged from the GPU" if on_gpu else "host")
        self.buffer = self.xp.zeros(self.count + world.size, np.float32)
        self.host = np.zeros(self.buffer.size, np.float32) if self.transport.startswith("host,") else None

    def shard(self, sampler):
        """This rank's slice of each of ``sampler``'s global batches."""
        if sampler.batch_size != self.batch_size:
            raise ValueError(f"sampler: expected batches of {self.batch_size}, got {sampler.batch_size}")
        return ShardedSampler(sampler, *self.bounds[self.world.rank])

    def describe(self):
        """One line for the log: ranks, the split of the batch, the buffer and where it lives."""
        parts = "+".join(str(stop - start) for start, stop in self.bounds)
        size = self.buffer.size * 4
        return (f"data-parallel over {self.world.describe()}: global batch {self.batch_size} = "
                f"{parts}; gradients summed by one Allreduce per step of one flat float32 buffer "
                f"({self.count:,} values, {size / 2**20:.2f} MiB) in {self.transport} memory")

    def after_backward(self, net):
        """The hook between backward and the optimiser's step: every rank's gradients replaced
        by the mean over the global batch."""
        self._exchange(net, failed=False)

    def fail(self, error):
        """This rank's step raised ``error``: say so on stderr, then join the step's exchange
        with the failure flag set; every rank (this one too) raises RankFailed."""
        message = f"{type(error).__name__}: {error}"
        # one write, so that mpirun does not interleave it with other ranks' lines
        sys.stderr.write(f"deepstyle: rank {self.world.rank} of {self.world.size}: {message}\n")
        sys.stderr.flush()
        self._exchange(None, failed=True, message=message)

    def guard(self, steps):
        """Wrap a steps runner (e.g. ``GradientSteps``) so that an exception in a step on any
        rank stops every rank at that step with RankFailed (and no rank waits forever)."""

        def run(batches, lr, first_step):
            try:
                steps(batches, lr, first_step)
            except RankFailed:
                raise
            except Exception as exc:  # everything a step can raise, divergence included
                self.fail(exc)
            finally:
                run.position = steps.position

        run.position = steps.position
        return run

    def _exchange(self, net, failed, message=""):
        buffer, rank = self.buffer, self.world.rank
        buffer[self.count:] = 0
        if failed:
            buffer[:self.count] = 0
            buffer[self.count + rank] = 1
        else:
            self._pack(net)
        self._allreduce()
        flags = np.asarray(buffer[self.count:].get() if self.xp is not np else buffer[self.count:])
        if flags.any():
            failures = {int(r): "its error is printed above" for r in np.flatnonzero(flags)}
            if failed:
                failures[rank] = message
            raise RankFailed(failures, "a training step")
        if net is not None:
            self._unpack(net)

    def _pack(self, net):
        offset = 0
        for (name, shape, size), (pname, value, grad) in zip(self.shapes, net.parameters()):
            if pname != name or grad is None:
                raise RuntimeError(f"parameter {pname!r}: expected a gradient (the network changed "
                                   f"or was not run backward since DataParallel was made)")
            self.xp.multiply(grad.reshape(-1), np.float32(self.scale), out=self.buffer[offset:offset + size])
            offset += size

    def _unpack(self, net):
        offset = 0
        for (_, shape, size), (_, _, grad) in zip(self.shapes, net.parameters()):
            grad[...] = self.buffer[offset:offset + size].reshape(shape)
            offset += size

    def _allreduce(self):
        if self.world.size == 1:
            return
        if self.host is None:  # NumPy, or CuPy with a CUDA-aware MPI
            if self.xp is not np:
                self.xp.cuda.get_current_stream().synchronize()
            self.world.allreduce_sum(self.buffer)
        else:
            self.buffer.get(out=self.host)
            self.world.allreduce_sum(self.host)
            self.buffer.set(self.host)


def distribute(trainer, world):
    """Make a :class:`deepstyle.classify.Trainer` (after any ``restore``) this rank's part of a
    data-parallel run: its slice of each batch, the gradient exchange, a clean stop of every
    rank when a step fails on one, dropout masks of its own (its generator jumped ahead by the
    rank, far from every other rank's), and outputs -- checkpoints, history, progress -- from
    rank 0 alone. The batch flips draw from the shared seed, the same on every rank, as in one
    process. Returns the :class:`DataParallel`."""
    parallel = DataParallel(world, trainer.net, trainer.recipe.batch_size)
    trainer.sampler = parallel.shard(trainer.sampler)
    trainer.after_backward = parallel.after_backward
    trainer.wrap_steps = parallel.guard
    for generator in {id(g): g for g in trainer.dropout_rngs}.values():
        generator.bit_generator.state = generator.bit_generator.jumped(world.rank).state
    if not world.is_root:
        trainer.out = trainer.on_epoch = None
        trainer.progress = False
    _sum_epoch_metrics(trainer, world)
    return parallel


def _sum_epoch_metrics(trainer, world):
    """Before each epoch's record (history, plots), the running training metrics summed over
    the ranks: the cost and errors of the whole epoch, not of rank 0's slices. (The progress
    bar, drawn by rank 0 alone between these meetings, shows its own slices.)"""
    end_epoch, metrics = trainer.end_epoch, trainer.metrics

    def end_epoch_with_every_ranks_metrics(state):
        totals = np.array([metrics.images, metrics.cost_sum, metrics.wrong1, metrics.wrong5],
                          np.float64)
        world.allreduce_sum(totals)
        metrics.images, metrics.cost_sum = int(totals[0]), float(totals[1])
        metrics.wrong1, metrics.wrong5 = int(totals[2]), int(totals[3])
        end_epoch(state)

    trainer.end_epoch = end_epoch_with_every_ranks_metrics
