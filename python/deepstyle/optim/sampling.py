"""Which training points each step uses: the sampling schemes of section 4.

``indices(steps)`` returns the next ``steps`` index batches as a (steps, batch_size) array, drawn
in one call so that the cost of the random number generator is spread over many steps.
"""

from __future__ import annotations

import numpy as np

from ..nn.init import as_generator


def _check_sizes(n, batch_size):
    for value, name in ((n, "n"), (batch_size, "batch_size")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(n), int(batch_size)


class WithReplacement:
    """Every index drawn uniformly and independently: eq. (15) for one point per step,
    eq. (17) for mini-batches of ``batch_size``. An epoch is ``n // batch_size`` steps."""

    def __init__(self, n, batch_size=1, rng=None):
        self.n, self.batch_size = _check_sizes(n, batch_size)
        self.rng = as_generator(rng)
        self.steps_per_epoch = max(1, self.n // self.batch_size)

    def indices(self, steps):
        return self.rng.integers(0, self.n, size=(steps, self.batch_size))


class WithoutReplacement:
    """Shuffled epochs: each epoch visits the points in a fresh random order, ``batch_size`` at
    a time -- eq. (16) for one point per step, distinct mini-batches otherwise. When
    ``batch_size`` does not divide n, the last ``n % batch_size`` points of each shuffle sit
    that epoch out."""

    def __init__(self, n, batch_size=1, rng=None):
        self.n, self.batch_size = _check_sizes(n, batch_size)
        if self.batch_size > self.n:
            raise ValueError(f"batch_size: expected at most n={self.n} without replacement, "
                             f"got {self.batch_size}")
        self.rng = as_generator(rng)
        self.steps_per_epoch = self.n // self.batch_size
        self._pending = np.empty((0, self.batch_size), dtype=np.int64)

    def indices(self, steps):
        short = steps - len(self._pending)
        if short > 0:
            epochs = -(-short // self.steps_per_epoch)
            orders = self.rng.permuted(np.tile(np.arange(self.n), (epochs, 1)), axis=1)
            used = self.steps_per_epoch * self.batch_size
            batches = orders[:, :used].reshape(-1, self.batch_size)
            self._pending = np.concatenate([self._pending, batches])
        out, self._pending = self._pending[:steps], self._pending[steps:]
        return out
