"""Stochastic gradient with momentum and L2 weight decay on weights (not biases), eq. (33)."""

from __future__ import annotations

import math

import numpy as np

from ..backend import array_module


def _check_rate(value, name, low, high=math.inf, low_open=False):
    bad = (isinstance(value, bool) or not isinstance(value, (int, float, np.floating))
           or not math.isfinite(value) or value < low or value >= high
           or (low_open and value == low))
    if bad:
        interval = f"{'(' if low_open else '['}{low}, {high})"
        raise ValueError(f"{name}: expected a number in {interval}, got {value!r}")
    return float(value)


class TrainingDiverged(FloatingPointError):
    """The cost (or a parameter) stopped being finite during training."""

    def __init__(self, step, lr, what):
        self.step, self.lr = step, lr
        super().__init__(f"training diverged at step {step} with learning rate {lr:g}: {what}; "
                         f"try a smaller learning rate")


def is_weight(name):
    """True for parameters that weight decay applies to: weights, not biases (eq. 33)."""
    return name.rsplit(".", 1)[-1] == "weight"


class SGD:
    """``p -= lr * v`` with ``v = momentum * v + grad + weight_decay * p`` (the decay term only
    for weights). PyTorch's convention; momentum 0 gives the plain steps of eqs. (12)-(17).

    Eq. (33)'s regulariser ``lambda/N * sum ||W||^2`` has gradient ``2 lambda/N * W``: pass
    ``weight_decay = 2 * lambda / N``. Parameters whose gradient is None (frozen layers, or no
    backward pass yet) are left alone.
    """

    def __init__(self, net, lr, momentum=0.0, weight_decay=0.0):
        self.net = net
        self.lr = _check_rate(lr, "lr", 0.0, low_open=True)
        self.momentum = _check_rate(momentum, "momentum", 0.0, 1.0)
        self.weight_decay = _check_rate(weight_decay, "weight_decay", 0.0)
        self._velocity = {}

    def step(self, lr=None):
        """One update from the gradients the last backward pass stored."""
        lr = self.lr if lr is None else lr
        for name, value, grad in self.net.parameters():
            if grad is None:
                continue
            if self.weight_decay and is_weight(name):
                grad = grad + np.float32(self.weight_decay) * value
            if self.momentum:
                velocity = self._velocity.get(name)
                if velocity is None:
                    velocity = self._velocity[name] = array_module(value).zeros_like(value)
                velocity *= np.float32(self.momentum)
                velocity += grad
                grad = velocity
            value -= np.float32(lr) * grad
