"""Weight initialisation, always from a ``numpy.random.Generator`` so that runs are reproducible.

- ``paper``: every weight and bias drawn as ``0.5 * randn`` (Higham & Higham, Listing 6.1).
- ``he``: weights ``randn * sqrt(2 / fan_in)`` (suits ReLU networks), zero biases.
- ``glorot``: weights uniform on ``[-a, a]`` with ``a = sqrt(6 / (fan_in + fan_out))`` (suits
  sigmoid/tanh networks), zero biases.
"""

from __future__ import annotations

import numbers

import numpy as np

SCHEMES = ("paper", "he", "glorot")


def as_generator(rng):
    """A Generator from ``rng``: a Generator (used as is), an int seed, or None (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, numbers.Integral) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng: expected a numpy.random.Generator, an int seed or None, got "
                    f"{type(rng).__name__}")


def weight(shape, fan_in, fan_out, scheme, rng):
    """A float32 weight array of ``shape`` drawn by ``scheme`` (one of SCHEMES)."""
    rng = as_generator(rng)
    if scheme == "paper":
        w = 0.5 * rng.standard_normal(shape)
    elif scheme == "he":
        w = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
    elif scheme == "glorot":
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-limit, limit, shape)
    else:
        raise ValueError(f"init: expected one of {SCHEMES}, got {scheme!r}")
    return w.astype(np.float32)


def bias(size, scheme, rng):
    """A float32 bias vector: ``0.5 * randn`` for the paper's scheme, zeros otherwise."""
    if scheme == "paper":
        return (0.5 * as_generator(rng).standard_normal(size)).astype(np.float32)
    if scheme not in SCHEMES:
        raise ValueError(f"init: expected one of {SCHEMES}, got {scheme!r}")
    return np.zeros(size, dtype=np.float32)
