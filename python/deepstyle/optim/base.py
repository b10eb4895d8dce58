"""What every optimiser of network parameters shares: the network, the learning rate with
per-parameter multipliers, and state (velocities, moments) that can be saved and restored.

State lives in arrays made with ``zeros_like`` of each parameter, so it stays in the
parameters' array module (NumPy or CuPy). ``state_dict()`` returns those arrays and the step
count under string keys (what a checkpoint stores); ``load_state_dict`` puts them back, checking
names and shapes first so that a mismatched checkpoint changes nothing.
"""

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


class Optimizer:
    """Base class. ``lr_multipliers`` maps a parameter's name to a factor on the learning rate
    (a dict, or a callable; default 1): MatConvNet's per-parameter ``learningRate``."""

    _slots: tuple[str, ...] = ()  # names of the per-parameter state arrays

    def __init__(self, net, lr, lr_multipliers=None):
        self.net = net
        self.lr = _check_rate(lr, "lr", 0.0, low_open=True)
        self.lr_multipliers = lr_multipliers
        self.steps = 0
        self._state = {slot: {} for slot in self._slots}

    def multiplier(self, name):
        m = self.lr_multipliers
        if m is None:
            return 1.0
        return float(m(name) if callable(m) else m.get(name, 1.0))

    def _buffer(self, slot, name, value):
        buffers = self._state[slot]
        if name not in buffers:
            buffers[name] = array_module(value).zeros_like(value)
        return buffers[name]

    def step(self, lr=None):
        raise NotImplementedError

    def state_dict(self):
        out = {"steps": np.asarray(self.steps)}
        for slot, buffers in self._state.items():
            out.update({f"{slot}/{name}": value for name, value in buffers.items()})
        return out

    def load_state_dict(self, state):
        params = {name: value for name, value, _ in self.net.parameters()}
        loaded = {slot: {} for slot in self._slots}
        for key, value in state.items():
            if key == "steps":
                continue
            slot, _, name = key.partition("/")
            if slot not in loaded or name not in params:
                raise ValueError(f"optimizer state: unexpected entry {key!r}")
            if value.shape != params[name].shape:
                raise ValueError(f"optimizer state: {key!r} has shape {value.shape}, the "
                                 f"parameter has {params[name].shape}")
            # a copy, in the parameter's own array module (to the GPU for CuPy parameters)
            loaded[slot][name] = array_module(params[name]).asarray(
                value.astype(params[name].dtype, copy=True))
        self._state = loaded
        self.steps = int(state.get("steps", 0))
