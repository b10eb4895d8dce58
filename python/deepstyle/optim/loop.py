"""The training loop: one loop for every trainer, with callbacks for what happens around it.

:func:`run_loop` runs ``total`` steps in chunks: a chunk ends at an epoch boundary and wherever
a callback asks (``max_chunk``); after each chunk the callbacks see the state (``after_steps``),
at each epoch's end ``on_epoch_end``, and at the very end ``on_end`` -- also after Ctrl-C, which
stops the loop after the current step and sets ``state.interrupted``. What one step does is the
``steps`` object's business:

* :class:`GradientSteps`: forward, cost, backward, an optional ``after_backward(net)`` hook (a
  data-parallel trainer averages the gradients of its workers there), ``optimizer.step(lr)``;
* an optimiser's own fused loop (``optimizer.fused_steps(...)``, as netbp's SigmoidNetSGD).

:func:`train` is this loop with a cost recorder and a progress bar (netbp's use);
``deepstyle.train`` builds the classifier's epochs, validation and checkpoints on the same loop.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ..allocator import reusing_freed_memory
from ..backend import array_module
from .schedules import Constant
from .sgd import TrainingDiverged


@dataclass
class LoopState:
    """Where a run stands: ``step`` steps done of ``total``, ``steps_per_epoch`` to an epoch."""

    step: int
    total: int
    steps_per_epoch: int
    lr: float = 0.0
    interrupted: bool = False
    seconds: float = 0.0

    @property
    def epoch(self):
        """The number of whole epochs done."""
        return self.step // self.steps_per_epoch


class Callback:
    """Hooks of :func:`run_loop`; each does nothing unless overridden."""

    def max_chunk(self, step):
        """How many steps may run from ``step`` before this callback must see the state."""
        return math.inf

    def on_start(self, state):
        pass

    def after_steps(self, state):
        pass

    def on_epoch_end(self, state):
        pass

    def on_end(self, state):
        pass


class GradientSteps:
    """Steps of forward, cost, backward, ``after_backward(net)``, ``optimizer.step(lr)``, one per
    row of index batches. ``prepare(x, step)`` may change a batch before it goes in (the batch
    flips of the CIFAR recipe); ``on_batch(step, cost, output, target)`` sees each result (the
    classifier's running metrics). ``position`` is the next step's number, also after Ctrl-C.
    Inputs and targets on the GPU (CuPy) are indexed there: the batch's row numbers go over."""

    def __init__(self, net, cost, optimizer, inputs, targets, *, after_backward=None,
                 prepare=None, on_batch=None):
        self.net, self.cost, self.optimizer = net, cost, optimizer
        self.inputs, self.targets = inputs, targets
        self.after_backward, self.prepare, self.on_batch = after_backward, prepare, on_batch
        self.position = 0
        self._rows = array_module(inputs).asarray  # row numbers, where the data is

    def __call__(self, batches, lr, first_step):
        self.position = first_step
        for step, idx in enumerate(batches, first_step):
            idx = self._rows(idx)
            x, target = self.inputs[idx], self.targets[idx]
            if self.prepare is not None:
                x = self.prepare(x, step)
            output = self.net.forward(x)
            value, grad = self.cost(output, target)
            if not math.isfinite(value):
                self.net.clear()
                raise TrainingDiverged(step, lr, f"the cost is {value}")
            self.net.backward(grad)
            if self.after_backward is not None:
                self.after_backward(self.net)
            self.optimizer.step(lr)
            self.position = step + 1
            if self.on_batch is not None:
                self.on_batch(step, value, output, target)


def run_loop(steps, sampler, total, *, schedule, callbacks=(), start=0):
    """Run steps ``start`` .. ``total - 1`` (see the module's docstring); returns the state.

    The steps run inside :func:`~deepstyle.allocator.reusing_freed_memory`: every step frees
    and allocates the same activations and gradients, which glibc would otherwise map and
    fault in afresh (cifar-cnn on a Zen 4, median step 72.5 -> 63.5 ms at 1 thread, 42.9 ->
    35.9 ms at 2, where the threads' page faults contend).
    """
    state = LoopState(start, total, sampler.steps_per_epoch)
    began = time.perf_counter()
    for callback in callbacks:
        callback.on_start(state)
    try:
        with reusing_freed_memory():
            _run_steps(steps, sampler, total, schedule, callbacks, state)
    except KeyboardInterrupt:
        state.interrupted = True
    finally:
        state.seconds = time.perf_counter() - began
        for callback in callbacks:
            callback.on_end(state)
    return state


def _run_steps(steps, sampler, total, schedule, callbacks, state):
    while state.step < total:
        step, per_epoch = state.step, state.steps_per_epoch
        state.lr = schedule(step // per_epoch)
        chunk = min([total - step, per_epoch - step % per_epoch]
                    + [c.max_chunk(step) for c in callbacks])
        try:
            steps(sampler.indices(int(chunk)), state.lr, step)
        finally:
            state.step = steps.position
        for callback in callbacks:
            callback.after_steps(state)
        if state.step % per_epoch == 0:
            for callback in callbacks:
                callback.on_epoch_end(state)


# --- train(): the loop with a cost recorder and a progress bar (netbp) ---------------------------


@dataclass
class History:
    """What :func:`train` recorded: the cost every ``record_every`` steps (and at the end)."""

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


class _CostRecorder(Callback):
    """The cost on all training points (and on ``validation``) at step 0, every
    ``record_every`` steps and at the end; drives the progress bar."""

    def __init__(self, net, cost, inputs, targets, validation, record_every, schedule, bar,
                 history):
        self.net, self.cost, self.inputs, self.targets = net, cost, inputs, targets
        self.validation, self.every, self.schedule = validation, record_every, schedule
        self.bar, self.history = bar, history
        self.progress_chunk = max(1, bar.total // 200)

    def max_chunk(self, step):
        return min(self.every - step % self.every, self.progress_chunk)

    def record(self, state, lr):
        h = self.history
        h.steps.append(state.step)
        h.learning_rate.append(lr)
        h.train_cost.append(evaluate(self.net, self.cost, self.inputs, self.targets))
        if self.validation is not None:
            h.validation_cost.append(evaluate(self.net, self.cost, *self.validation))
        if not math.isfinite(h.train_cost[-1]):
            raise TrainingDiverged(state.step, h.learning_rate[-1],
                                   f"the training cost is {h.train_cost[-1]}")
        self.bar.update(state.step, h.train_cost[-1])

    def on_start(self, state):
        self.record(state, self.schedule(state.epoch))

    def after_steps(self, state):
        if state.step % self.every == 0 or state.step == state.total:
            self.record(state, state.lr)  # the rate of the steps just taken
        else:
            self.bar.update(state.step)

    def on_end(self, state):
        self.bar.close()
        h = self.history
        h.steps_done, h.interrupted, h.seconds = state.step, state.interrupted, state.seconds
        if state.interrupted:
            # keep what was learned (a step cut short may be partly applied: harmless for SGD)
            self.net.clear()
            if h.steps[-1] != state.step:
                self.record(state, self.schedule(state.epoch))


def train(net, cost, inputs, targets, optimizer, sampler, *, steps=None, epochs=None,
          schedule=None, record_every=None, validation=None, progress=True):
    """Train ``net`` in place and return a :class:`History`.

    Each step takes the batch ``sampler`` gives, runs forward, ``cost``, backward and
    ``optimizer.step``; an optimizer with a fused loop of its own (``fused_steps``, e.g.
    :class:`SigmoidNetSGD`) runs whole chunks of steps there instead. Give ``steps`` or
    ``epochs`` (an epoch is ``sampler.steps_per_epoch`` steps). ``schedule`` maps the epoch to
    a learning rate (default: the optimizer's). The training cost (and the cost on
    ``validation = (inputs, targets)``) is recorded at step 0, every ``record_every`` steps and
    at the end. Ctrl-C stops after the current step and keeps what was learned
    (``History.interrupted``); a non-finite cost raises :class:`TrainingDiverged` naming the
    step and learning rate.
    """
    if (steps is None) == (epochs is None):
        raise ValueError(f"steps, epochs: expected exactly one of them, got steps={steps!r}, "
                         f"epochs={epochs!r}")
    total = steps if steps is not None else epochs * sampler.steps_per_epoch
    if isinstance(total, bool) or not isinstance(total, (int, np.integer)) or total < 0:
        raise ValueError(f"steps: expected a non-negative integer, got {total!r}")
    record_every = record_every or max(1, total // 100)
    if isinstance(record_every, bool) or not isinstance(record_every, (int, np.integer)) \
            or record_every < 1:
        raise ValueError(f"record_every: expected a positive integer, got {record_every!r}")
    schedule = schedule or Constant(optimizer.lr)
    fused = getattr(optimizer, "fused_steps", None)
    runner = (fused(cost, inputs, targets, sampler.batch_size) if fused is not None
              else GradientSteps(net, cost, optimizer, inputs, targets))
    history = History()
    recorder = _CostRecorder(net, cost, inputs, targets, validation, record_every, schedule,
                             Progress(total, enabled=progress), history)
    net.train()
    run_loop(runner, sampler, int(total), schedule=schedule, callbacks=[recorder])
    return history
