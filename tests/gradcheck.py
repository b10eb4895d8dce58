"""Finite-difference gradient checks in float64, for any test file.

``numerical_gradient(f, x)`` differentiates a scalar function of an array by central
differences; ``check_gradient(f, x, analytic)`` compares an analytic gradient with it. With
float64 and a step of 1e-6 the differences are accurate to about 1e-8 relative, so the checks
can be tight: a wrong gradient is off by far more than that.
"""

from __future__ import annotations

import numpy as np


def numerical_gradient(f, x, eps=1e-6):
    """d f(x) / dx by central differences; ``f`` maps a float64 array like ``x`` to a scalar.
    ``x`` is perturbed in place one entry at a time and restored."""
    x = np.asarray(x)
    assert x.dtype == np.float64, "finite differences need float64 to be accurate"
    grad = np.zeros_like(x)
    flat_x, flat_grad = x.reshape(-1), grad.reshape(-1)  # views: x must be contiguous
    assert np.shares_memory(flat_x, x)
    for i in range(flat_x.size):
        saved = flat_x[i]
        flat_x[i] = saved + eps
        f_plus = float(f(x))
        flat_x[i] = saved - eps
        f_minus = float(f(x))
        flat_x[i] = saved
        flat_grad[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def check_gradient(f, x, analytic, rtol=1e-5, eps=1e-6):
    """Assert that ``analytic`` is the gradient of scalar ``f`` at ``x`` (float64): entries
    agree within ``rtol`` of the gradient's largest magnitude. Use rtol around 1e-4 for an
    analytic gradient computed in float32, 1e-6 for one computed in float64."""
    x = np.array(x, dtype=np.float64)  # a private copy to perturb
    numeric = numerical_gradient(f, x, eps)
    analytic = np.asarray(analytic, dtype=np.float64)
    assert analytic.shape == numeric.shape, f"gradient shape {analytic.shape} != {numeric.shape}"
    scale = float(np.max(np.abs(numeric), initial=0.0))
    assert scale > 1e-9, "the numerical gradient is zero: the check would prove nothing"
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=rtol * scale)
    return numeric
