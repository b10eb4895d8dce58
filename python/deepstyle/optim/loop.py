"""The training loop: sample, step, record the cost, show progress, stop cleanly."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ..nn.costs import QuadraticCost
from .fused import SigmoidNetSGD
from .schedules import Constant
from .sgd import TrainingDiverged


@dataclass
class History:
    """What a training run recorded: the cost every ``record_every`` steps (and at the end)."""

    steps: list = field(default_factory=list)
    train_cost: list = field(default_factory=list)
    validation_cost: list = field(default_factory=list)
    learning_rate: list = field(default_factory=list)
    steps_done: int = 0
    interrupted: bool = False
    seconds: float = 0.0


def evaluate(net, cost, inputs, targets, batch_size=1024):
    """The mean cost over all points, in evaluation mode (no dropout), batch by batch."""
    was_training = net.training
    net.eval()
    try:
        n = len(inputs)
        total = 0.0
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            value, _ = cost(net.forward(inputs[start:stop]), targets[start:stop])
            total += value * (stop - start)
        net.clear()
        return total / n
    finally:
        net.train(was_training)


class Progress:
    """A one-line progress bar on stderr, redrawn at most ten times a second (on a terminal)
    or every 10% (into a file)."""

    def __init__(self, total, enabled=True, stream=None):
        self.total, self.enabled = total, enabled
        self.stream = stream or sys.stderr
        self.tty = self.enabled and self.stream.isatty()
        self.start = self.last = time.perf_counter()
        self.last_tenth = -1

    def update(self, done, cost=None):
        if not self.enabled:
            return
        now = time.perf_counter()
        tenth = 10 * done // max(self.total, 1)
        if self.tty and now - self.last < 0.1 and done < self.total:
            return
        if not self.tty and tenth == self.last_tenth:
            return
        self.last, self.last_tenth = now, tenth
        filled = 30 * done // max(self.total, 1)
        line = (f"[{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total} steps "
                f"{now - self.start:6.1f}s" + ("" if cost is None else f"  cost {cost:.4g}"))
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        self.stream.flush()

    def close(self):
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _generic_steps(net, cost, optimizer, inputs, targets, batches, lr, history):
    for step, idx in enumerate(batches, history.steps_done):
        value, grad = cost(net.forward(inputs[idx]), targets[idx])
        if not math.isfinite(value):
            raise TrainingDiverged(step, lr, f"the cost is {value}")
        net.backward(grad)
        optimizer.step(lr)
        history.steps_done = step + 1


def train(net, cost, inputs, targets, optimizer, sampler, *, steps=None, epochs=None,
          schedule=None, record_every=None, validation=None, progress=True):
    """Train ``net`` in place and return a :class:`History`.

    Each step takes the batch ``sampler`` gives, runs forward, ``cost``, backward and
    ``optimizer.step``; with a :class:`SigmoidNetSGD` optimizer whole runs of single-point steps
    go through its fused loop instead. Give ``steps`` or ``epochs`` (an epoch is
    ``sampler.steps_per_epoch`` steps). ``schedule`` maps the epoch to a learning rate (default:
    the optimizer's). The training cost (and the cost on ``validation = (inputs, targets)``)
    is recorded at step 0, every ``record_every`` steps and at the end. Ctrl-C stops after
    the current step and keeps what was learned (``History.interrupted``); a non-finite cost
    raises :class:`TrainingDiverged` naming the step and learning rate.
    """
    if (steps is None) == (epochs is None):
        raise ValueError(f"steps, epochs: expected exactly one of them, got steps={steps!r}, "
                         f"epochs={epochs!r}")
    per_epoch = sampler.steps_per_epoch
    total = steps if steps is not None else epochs * per_epoch
    if isinstance(total, bool) or not isinstance(total, (int, np.integer)) or total < 0:
        raise ValueError(f"steps: expected a non-negative integer, got {total!r}")
    record_every = record_every or max(1, total // 100)
    if isinstance(record_every, bool) or not isinstance(record_every, (int, np.integer)) \
            or record_every < 1:
        raise ValueError(f"record_every: expected a positive integer, got {record_every!r}")
    schedule = schedule or Constant(optimizer.lr)
    fused = isinstance(optimizer, SigmoidNetSGD)
    if fused and sampler.batch_size != 1:
        raise ValueError(f"sampler: the fused single-point trainer needs batch_size 1, got "
                         f"{sampler.batch_size}")
    if fused and not isinstance(cost, QuadraticCost):
        raise ValueError(f"cost: the fused trainer minimises QuadraticCost, got "
                         f"{type(cost).__name__}")

    history = History()
    bar = Progress(total, enabled=progress)

    def record(step, lr):
        history.steps.append(step)
        history.learning_rate.append(lr)
        history.train_cost.append(evaluate(net, cost, inputs, targets))
        if validation is not None:
            history.validation_cost.append(evaluate(net, cost, *validation))
        if not math.isfinite(history.train_cost[-1]):
            raise TrainingDiverged(step, lr, f"the training cost is {history.train_cost[-1]}")
        bar.update(step, history.train_cost[-1])

    start = time.perf_counter()
    net.train()
    record(0, schedule(0))
    try:
        while history.steps_done < total:
            step = history.steps_done
            lr = schedule(step // per_epoch)
            # a chunk ends at the next recording, epoch boundary or progress tick
            chunk = min(total - step, record_every - step % record_every,
                        per_epoch - step % per_epoch, max(1, total // 200))
            batches = sampler.indices(chunk)
            if fused:
                try:
                    optimizer.run(inputs, targets, batches, lr, first_step=step)
                finally:
                    history.steps_done = optimizer.position
                if not optimizer.finite():
                    raise TrainingDiverged(step + chunk, lr, "a parameter is no longer finite")
            else:
                _generic_steps(net, cost, optimizer, inputs, targets, batches, lr, history)
            step = history.steps_done
            if step % record_every == 0 or step == total:
                record(step, lr)
            else:
                bar.update(step)
    except KeyboardInterrupt:
        # keep what was learned (a step cut short may be partly applied: harmless for SGD)
        history.interrupted = True
        net.clear()
        step = history.steps_done
        if history.steps[-1] != step:
            record(step, schedule(step // per_epoch))
    finally:
        bar.close()
        history.seconds = time.perf_counter() - start
    return history
