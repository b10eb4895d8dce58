"""Stochastic gradient with momentum and L2 weight decay on weights (not biases), eq. (33),
and Adam; both on network parameters, with per-parameter learning-rate multipliers. Each
parameter's update is one fused kernel (``ops.sgd_update`` / ``ops.adam_update``) on the
parameters' own backend."""

from __future__ import annotations

from .. import ops
from .base import Optimizer, _check_rate


class TrainingDiverged(FloatingPointError):
    """The cost (or a parameter) stopped being finite during training."""

    def __init__(self, step, lr, what):
        self.step, self.lr = step, lr
        super().__init__(f"training diverged at step {step} with learning rate {lr:g}: {what}; "
                         f"try a smaller learning rate")


def is_weight(name):
    """True for parameters that weight decay applies to: weights, not biases (eq. 33)."""
    return name.rsplit(".", 1)[-1] == "weight"


class SGD(Optimizer):
    """``p -= lr * mu_p * v`` with ``v = momentum * v + grad + weight_decay * p`` (the decay term
    only for weights), ``mu_p`` the parameter's learning-rate multiplier. PyTorch's convention;
    momentum 0 gives the plain steps of eqs. (12)-(17). MatConvNet's form
    ``m = momentum * m - (grad + decay * w)``, ``w += lr * mu * m`` is the same update with
    ``m = -v``.

    Eq. (33)'s regulariser ``lambda/N * sum ||W||^2`` has gradient ``2 lambda/N * W``: pass
    ``weight_decay = 2 * lambda / N``. Parameters whose gradient is None (frozen layers, or no
    backward pass yet) are left alone.
    """

    _slots = ("velocity",)

    def __init__(self, net, lr, momentum=0.0, weight_decay=0.0, lr_multipliers=None):
        super().__init__(net, lr, lr_multipliers)
        self.momentum = _check_rate(momentum, "momentum", 0.0, 1.0)
        self.weight_decay = _check_rate(weight_decay, "weight_decay", 0.0)

    def step(self, lr=None):
        """One update from the gradients the last backward pass stored."""
        lr = self.lr if lr is None else lr
        for name, value, grad in self.net.parameters():
            if grad is None:
                continue
            velocity = self._buffer("velocity", name, value) if self.momentum else None
            ops.sgd_update(value, grad, velocity, lr=lr * self.multiplier(name),
                           momentum=self.momentum,
                           weight_decay=self.weight_decay if is_weight(name) else 0.0)
        self.steps += 1


class Adam(Optimizer):
    """Kingma & Ba's Adam on network parameters, with bias-corrected moments; weight decay (on
    weights only) is added to the gradient, as in PyTorch's ``Adam(weight_decay=...)``."""

    _slots = ("m", "v")

    def __init__(self, net, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                 lr_multipliers=None):
        super().__init__(net, lr, lr_multipliers)
        self.beta1 = _check_rate(beta1, "beta1", 0.0, 1.0)
        self.beta2 = _check_rate(beta2, "beta2", 0.0, 1.0)
        self.eps = _check_rate(eps, "eps", 0.0, low_open=True)
        self.weight_decay = _check_rate(weight_decay, "weight_decay", 0.0)

    def step(self, lr=None):
        lr = self.lr if lr is None else lr
        self.steps += 1
        correction1 = 1.0 - self.beta1 ** self.steps
        correction2 = 1.0 - self.beta2 ** self.steps
        for name, value, grad in self.net.parameters():
            if grad is None:
                continue
            ops.adam_update(value, grad, self._buffer("m", name, value),
                            self._buffer("v", name, value),
                            step_size=lr * self.multiplier(name) / correction1,
                            beta1=self.beta1, beta2=self.beta2, eps=self.eps,
                            correction2=correction2,
                            weight_decay=self.weight_decay if is_weight(name) else 0.0)
