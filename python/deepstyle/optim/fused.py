"""Fused single-point stochastic gradient for small sigmoid networks (the paper's netbp).

For a 2-2-3-2 network a step is ~100 multiply-adds, so any per-call overhead (argument checks,
array allocation, even one NumPy ufunc call, ~0.3 us each) dominates. This trainer therefore
checks the network once, then runs the pseudocode at the end of section 5 on plain Python
floats (float64): no array calls at all inside the loop, about 9 us per step here against 25 us
for NumPy on preallocated buffers. It suits networks of a few dozen units; larger ones are
better served by the generic layer-by-layer loop, whose array kernels then do real work.
"""

from __future__ import annotations

import math
from operator import mul

import numpy as np

from ..nn.container import Sequential
from ..nn.costs import QuadraticCost
from ..nn.layers import Linear, Sigmoid
from .sgd import TrainingDiverged, _check_rate


class SigmoidNetSGD:
    """Single-point steps ``p -= lr * grad C_x(p)`` (eqs. 15/16) for ``net``, a Sequential of
    Linear layers each followed by Sigmoid, with the quadratic cost of eq. (13).

    The trainer holds the parameters in float64 while it trains (float32 would round away the
    tiny late updates of a long run); :meth:`write_back` copies them into the network's arrays,
    and :meth:`run` does so after every call.
    """

    def __init__(self, net, lr):
        layers = list(net) if isinstance(net, Sequential) else None
        linears = [] if layers is None else layers[0::2]
        shape_ok = (layers is not None and len(layers) >= 2 and len(layers) % 2 == 0
                    and all(isinstance(l, Linear) and l.bias is not None for l in linears)
                    and all(isinstance(l, Sigmoid) for l in layers[1::2]))
        if not shape_ok:
            raise TypeError(f"net: expected a Sequential of (Linear with bias, Sigmoid) pairs, "
                            f"got {net!r}")
        for before, after in zip(linears, linears[1:]):
            if after.in_features != before.out_features:
                raise ValueError(f"net: a Linear layer with {before.out_features} outputs "
                                 f"feeds one with {after.in_features} inputs")
        self.lr = _check_rate(lr, "lr", 0.0, low_open=True)
        self._linears = linears
        self._weights = [l.weight.astype(np.float64).tolist() for l in linears]
        self._biases = [l.bias.astype(np.float64).tolist() for l in linears]
        self._data = (None, None, None, None)
        self.position = 0

    def _as_lists(self, inputs, targets):
        # Converted once per data set: run() is called in chunks on the same arrays.
        if self._data[0] is not inputs or self._data[1] is not targets:
            n_in, n_out = self._linears[0].in_features, self._linears[-1].out_features
            x, y = np.asarray(inputs), np.asarray(targets)
            if x.ndim != 2 or x.shape[1] != n_in:
                raise ValueError(f"inputs: expected shape (N, {n_in}), got {x.shape}")
            if y.shape != (x.shape[0], n_out):
                raise ValueError(f"targets: expected shape ({x.shape[0]}, {n_out}), got "
                                 f"{y.shape}")
            self._data = (inputs, targets, x.astype(float).tolist(), y.astype(float).tolist())
        return self._data[2], self._data[3]

    def run(self, inputs, targets, indices, lr=None, first_step=0):
        """One step per entry of ``indices`` (rows of inputs/targets), then write back.

        A sigmoid argument beyond exp's range (z < -709) means the weights have blown up: that
        raises TrainingDiverged naming the step (counted from ``first_step``). ``position``
        tells how far it got (the next step's number), also after a KeyboardInterrupt.
        """
        lr = self.lr if lr is None else lr
        self.position = first_step
        xs, ys = self._as_lists(inputs, targets)
        layers = list(zip(self._weights, self._biases))
        last = len(layers) - 1
        exp = math.exp
        indices = np.asarray(indices).ravel()
        if indices.size and (indices.min() < 0 or indices.max() >= len(xs)):
            raise ValueError(f"indices: expected row numbers in [0, {len(xs) - 1}], got values "
                             f"from {indices.min()} to {indices.max()}")
        try:
            for step, k in enumerate(indices.tolist(), first_step):
                # forward: a[l] = sigma(W a[l-1] + b), eqs. (7)-(8)
                a = xs[k]
                activations = [a]
                for weights, biases in layers:
                    a = [1.0 / (1.0 + exp(-sum(map(mul, row, a), b)))
                         for row, b in zip(weights, biases)]
                    activations.append(a)
                # delta^[L] of eq. (22), scaled by lr so that the updates below are plain sums
                delta = [lr * (aj - yj) * aj * (1.0 - aj) for aj, yj in zip(a, ys[k])]
                for l in range(last, -1, -1):
                    weights, biases = layers[l]
                    a_prev = activations[l]
                    if l:  # eq. (23) needs W^[l] before its update
                        back = [sum(map(mul, column, delta)) for column in zip(*weights)]
                    for j, (row, dj) in enumerate(zip(weights, delta)):
                        row[:] = [w - dj * ak for w, ak in zip(row, a_prev)]  # eq. (25)
                        biases[j] -= dj  # eq. (24)
                    if l:
                        delta = [g * ak * (1.0 - ak) for g, ak in zip(back, a_prev)]
                self.position = step + 1
        except OverflowError:
            raise TrainingDiverged(step, lr, "a sigmoid argument overflowed exp") from None
        finally:
            self.write_back()

    def fused_steps(self, cost, inputs, targets, batch_size):
        """The step runner :func:`deepstyle.optim.train` uses instead of layer-by-layer steps:
        ``runner(batches, lr, first_step)`` runs a chunk here, ``runner.position`` says how far
        it got, and a chunk that leaves a parameter non-finite raises TrainingDiverged."""
        if batch_size != 1:
            raise ValueError(f"sampler: the fused single-point trainer needs batch_size 1, got "
                             f"{batch_size}")
        if not isinstance(cost, QuadraticCost):
            raise ValueError(f"cost: the fused trainer minimises QuadraticCost, got "
                             f"{type(cost).__name__}")
        return _FusedSteps(self, inputs, targets)

    def write_back(self):
        """Copy the float64 parameters into the network's (float32) weight and bias arrays."""
        for layer, weights, biases in zip(self._linears, self._weights, self._biases):
            layer.weight[...] = weights
            layer.bias[...] = biases

    def finite(self):
        """True while every parameter is finite."""
        return all(math.isfinite(v) for rows in self._weights for row in rows for v in row) \
            and all(math.isfinite(v) for biases in self._biases for v in biases)


class _FusedSteps:
    def __init__(self, trainer, inputs, targets):
        self.trainer, self.inputs, self.targets = trainer, inputs, targets

    @property
    def position(self):
        return self.trainer.position

    def __call__(self, batches, lr, first_step):
        self.trainer.run(self.inputs, self.targets, batches, lr, first_step=first_step)
        if not self.trainer.finite():
            raise TrainingDiverged(first_step + len(batches), lr,
                                   "a parameter is no longer finite")
