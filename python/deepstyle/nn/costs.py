"""Cost functions: ``cost(output, target) -> (value, grad_output)``."""

from __future__ import annotations

from .. import ops
from ..backend import array_module


class QuadraticCost:
    """Eq. (9): the mean over the N rows of 1/2 ||y - a||^2; its gradient (a - y) / N gives the
    paper's delta^[L] of eq. (22) once multiplied by sigma'(z^[L]) in the last activation's
    backward (the 1/N makes a mini-batch step the mean of eq. (17))."""

    def __call__(self, output, target):
        xp = array_module(output)
        output = xp.asarray(output)
        target = xp.asarray(target)
        if output.ndim != 2 or target.shape != output.shape:
            raise ValueError(f"target: expected shape {output.shape} (2-D, like output), got "
                             f"{target.shape}")
        diff = output - target
        n = output.shape[0]
        return 0.5 * float(xp.vdot(diff, diff)) / n, (diff / n).astype(output.dtype, copy=False)


class SoftmaxCrossEntropy:
    """Eq. (32) divided by N: the mean softmax log loss of logits (N, K) for integer labels."""

    def __call__(self, logits, labels):
        return ops.softmax_cross_entropy(logits, labels)
