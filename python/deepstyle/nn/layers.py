"""Layers: each has ``forward(x)`` (caching what its backward needs) and ``backward(grad_y)``
(returning ``grad_x``, storing parameter gradients in ``grad_weight`` / ``grad_bias``).

Backward is Lemma 1 of Higham & Higham applied layer by layer: a ``Linear`` layer followed by
an activation turns the incoming delta into ``grad_weight = delta a^T`` (eq. 25),
``grad_bias = delta`` (eq. 24, summed over the batch) and passes ``W^T delta`` on (eq. 23).

The cache holds references to arrays that exist anyway (a layer's input is the previous layer's
output), never copies, and ``backward`` drops it, so one forward/backward pass keeps no more
than the activations alive. Call ``clear()`` after a forward pass that is not followed by a
backward pass to release them early. A second ``backward`` needs a new ``forward``.
"""

from __future__ import annotations

import os

import numpy as np

from .. import ops
from ..backend import array_module, device_module, to_host
from ..image import write_atomically
from . import init


def _float32(x):
    """``x`` as a C-contiguous float32 array of its own library (NumPy or CuPy), copying only
    when it is not one already."""
    if type(x) is np.ndarray and x.dtype == np.float32 and x.flags.c_contiguous:
        return x
    xp = array_module(x)
    return xp.ascontiguousarray(x, dtype=xp.float32)


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


class Layer:
    """Base class: parameters by name, train/eval mode, the trainable flag, save/load."""

    training = True
    trainable = True
    _param_names: tuple[str, ...] = ()

    def forward(self, x):
        raise NotImplementedError

    def backward(self, grad_y):
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    def clear(self):
        """Drop cached activations (after a forward pass that needs no backward)."""
        self._saved = None

    def _take_saved(self):
        """What forward cached for backward, releasing it."""
        saved, self._saved = self._saved, None
        if saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward: no forward pass to go back "
                               f"through (each forward allows one backward)")
        return saved

    def parameters(self):
        """Yield ``(name, array, grad)``; grad is None until a backward pass has computed it
        (and stays None while the layer is frozen)."""
        for name in self._param_names:
            value = getattr(self, name)
            if value is not None:
                yield name, value, getattr(self, "grad_" + name)

    def train(self, mode=True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def to(self, device):
        """Move the parameters to ``device`` ("cpu": NumPy, "cuda": CuPy) in place; returns
        the layer. Cached activations and gradients are dropped."""
        xp = device_module(device)
        self.clear()
        for name in self._param_names:
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, to_host(value) if xp is np else xp.asarray(value))
                setattr(self, "grad_" + name, None)
        return self

    def save(self, path):
        """Write every parameter to ``path`` as an .npz file, atomically."""
        arrays = {name: to_host(value) for name, value, _ in self.parameters()}
        write_atomically(os.fspath(path), lambda f: np.savez(f, **arrays))

    def load(self, path):
        """Read parameters saved by :meth:`save` into this network's arrays, in place.

        Nothing is changed unless every parameter is present with the right shape.
        """
        params = {name: value for name, value, _ in self.parameters()}
        with np.load(os.fspath(path)) as data:
            stored = {name: data[name] for name in data.files}
        for name, value in params.items():
            if name not in stored:
                raise ValueError(f"{path}: parameter {name!r} (shape {value.shape}) is missing "
                                 f"from the file, which has {sorted(stored)}")
            if stored[name].shape != value.shape:
                raise ValueError(f"{path}: parameter {name!r} has shape {stored[name].shape} in "
                                 f"the file, expected {value.shape}")
        unexpected = sorted(set(stored) - set(params))
        if unexpected:
            raise ValueError(f"{path}: the file has parameters this network lacks: {unexpected}")
        for name, value in params.items():
            value[...] = array_module(value).asarray(stored[name])
        return self

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"

    def extra_repr(self):
        return ""


class _Parametric(Layer):
    """A layer with a weight and an optional bias."""

    _param_names = ("weight", "bias")
    grad_weight = None
    grad_bias = None

    def _init_parameters(self, weight_shape, fan_in, fan_out, bias, init_scheme, rng):
        rng = init.as_generator(rng)
        self.weight = init.weight(weight_shape, fan_in, fan_out, init_scheme, rng)
        self.bias = init.bias(weight_shape[0], init_scheme, rng) if bias else None


class Linear(_Parametric):
    """``y = x W^T + b`` for x (N, in_features): the paper's ``W a + b`` applied to each row.

    ``init`` is "he" (default), "glorot" or "paper" (0.5*randn weights and biases).
    """

    def __init__(self, in_features, out_features, bias=True, rng=None, init="he"):
        self.in_features = _positive_int(in_features, "in_features")
        self.out_features = _positive_int(out_features, "out_features")
        self._init_parameters((self.out_features, self.in_features), self.in_features,
                              self.out_features, bias, init, rng)
        self._saved = None

    def forward(self, x):
        x = _float32(x)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"x: expected shape (N, {self.in_features}), got {x.shape}")
        y = ops.gemm(x, self.weight, trans_b=True)
        if self.bias is not None:
            y += self.bias
        self._saved = x
        return y

    def backward(self, grad_y):
        x = self._take_saved()
        grad_y = _float32(grad_y)
        if self.trainable:
            self.grad_weight = ops.gemm(grad_y, x, trans_a=True)  # eq. (25): delta a^T
            if self.bias is not None:
                self.grad_bias = grad_y.sum(axis=0)  # eq. (24)
        else:
            self.grad_weight = self.grad_bias = None
        return ops.gemm(grad_y, self.weight)  # W^T delta, as in eq. (23)

    def extra_repr(self):
        return (f"{self.in_features}, {self.out_features}, bias={self.bias is not None}")


class Conv2d(_Parametric):
    """2-D convolution, weight (out_channels, in_channels, k, k), bias (out_channels,).

    ``init`` is "he" (default), "glorot" or "paper". A frozen layer (``trainable = False``)
    computes only the input gradient in backward; a first layer, whose input is the data,
    needs none: ``need_input_grad = False`` skips it (backward then returns None).
    """

    need_input_grad = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 rng=None, init="he"):
        self.in_channels = _positive_int(in_channels, "in_channels")
        self.out_channels = _positive_int(out_channels, "out_channels")
        kh, kw = ops._pair(kernel_size, "kernel_size", 1)
        self.kernel_size = (kh, kw)
        self.stride = ops._pair(stride, "stride", 1)
        self.padding = ops._pair(padding, "padding", 0)
        fan_in, fan_out = self.in_channels * kh * kw, self.out_channels * kh * kw
        self._init_parameters((self.out_channels, self.in_channels, kh, kw), fan_in, fan_out,
                              bias, init, rng)
        self._saved = None

    def forward(self, x):
        self._saved = x = _float32(x)
        return ops.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def backward(self, grad_y):
        x = self._take_saved()
        learn = self.trainable
        grad_x, grad_w, grad_b = ops.conv2d_backward(
            grad_y, x, self.weight, self.stride, self.padding, need_x=self.need_input_grad,
            need_weight=learn, need_bias=learn and self.bias is not None)
        self.grad_weight, self.grad_bias = grad_w, grad_b
        return grad_x

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}")


class ReLU(Layer):
    """max(x, 0), eq. (31)."""

    _saved = None

    def forward(self, x):
        self._saved = x = _float32(x)
        return ops.relu(x)

    def backward(self, grad_y):
        x = self._take_saved()
        return ops.relu_backward(grad_y, x)


class LeakyReLU(Layer):
    """x for x > 0, else negative_slope * x."""

    _saved = None

    def __init__(self, negative_slope=0.01):
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        self._saved = x = _float32(x)
        return ops.leaky_relu(x, self.negative_slope)

    def backward(self, grad_y):
        x = self._take_saved()
        return ops.leaky_relu_backward(grad_y, x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class _ActivationOfOutput(Layer):
    """An elementwise activation whose derivative comes from its output y, which it caches."""

    _saved = None
    _function = _derivative = None  # ops functions, set by subclasses

    def forward(self, x):
        self._saved = y = type(self)._function(x)
        return y

    def backward(self, grad_y):
        return type(self)._derivative(grad_y, self._take_saved())


class Sigmoid(_ActivationOfOutput):
    """The paper's sigma(x) = 1 / (1 + exp(-x)), eq. (1); backward uses sigma' = y (1 - y), eq. (2)."""

    _function, _derivative = ops.sigmoid, ops.sigmoid_backward


class Tanh(_ActivationOfOutput):
    """Hyperbolic tangent; backward uses 1 - y**2."""

    _function, _derivative = ops.tanh, ops.tanh_backward


class _Pool(Layer):
    _saved = None

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        self.kernel_size = ops._pair(kernel_size, "kernel_size", 1)
        self.stride = self.kernel_size if stride is None else ops._pair(stride, "stride", 1)
        self.padding = ops._pair(padding, "padding", 0)
        self.ceil_mode = bool(ceil_mode)

    def _geometry(self):
        return self.kernel_size, self.stride, self.padding, self.ceil_mode

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, ceil_mode={self.ceil_mode}")


class MaxPool2d(_Pool):
    """Max pooling with PyTorch's semantics (padding counts as -inf). On NumPy arrays the
    forward keeps the argmax indices (int32, a quarter of the input for 2x2 windows), so that
    the backward is a scatter rather than a second search.

    ``relu_after=True`` is ``MaxPool2d`` followed by ``ReLU`` as one layer (one pass over the
    data each way, no ReLU output in memory)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, relu_after=False):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.relu_after = bool(relu_after)

    def forward(self, x):
        x = _float32(x)
        if type(x) is not np.ndarray:  # CuPy: the backward finds the maxima again
            self._saved = x, None, None
            return ops.max_pool2d(x, *self._geometry(), relu_after=self.relu_after)
        y, indices = ops.max_pool2d(x, *self._geometry(), return_indices=True,
                                    relu_after=self.relu_after)
        # the fused ReLU's backward masks by y's sign (y is the next layer's input anyway)
        self._saved = x, indices, y if self.relu_after else None
        return y

    def backward(self, grad_y):
        x, indices, y = self._take_saved()
        return ops.max_pool2d_backward(grad_y, x, *self._geometry(), indices=indices,
                                       relu_after=self.relu_after, y=y)

    def extra_repr(self):
        return super().extra_repr() + (", relu_after=True" if self.relu_after else "")


class AvgPool2d(_Pool):
    """Average pooling with PyTorch's divisor rules.

    ``relu_before=True`` is ``ReLU`` followed by ``AvgPool2d`` as one layer: the ReLU is applied
    as the windows are read and its backward (grad where x > 0) as grad_x is written."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, relu_before=False):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.count_include_pad = bool(count_include_pad)
        self.relu_before = bool(relu_before)

    def forward(self, x):
        self._saved = x = _float32(x)
        return ops.avg_pool2d(x, *self._geometry(), self.count_include_pad,
                              relu_before=self.relu_before)

    def backward(self, grad_y):
        x = self._take_saved()
        return ops.avg_pool2d_backward(grad_y, x, *self._geometry(), self.count_include_pad,
                                       relu_before=self.relu_before)

    def extra_repr(self):
        return (super().extra_repr() + f", count_include_pad={self.count_include_pad}"
                + (", relu_before=True" if self.relu_before else ""))


class Dropout(Layer):
    """Inverted dropout: in training each unit is zeroed with probability p and the survivors
    scaled by 1/(1-p), so that at evaluation every unit is active and nothing is rescaled."""

    _saved = None

    def __init__(self, p=0.5, rng=None):
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ValueError(f"p: expected a drop probability in [0, 1), got {p!r}")
        self.p = float(p)
        self.rng = init.as_generator(rng)

    def forward(self, x):
        x = _float32(x)
        if not self.training or self.p == 0.0:
            self._saved = ()  # nothing to scale by, but a backward may follow
            return x
        scale = np.float32(1.0 / (1.0 - self.p))
        mask = (self.rng.random(x.shape, dtype=np.float32) >= self.p) * scale
        self._saved = mask = array_module(x).asarray(mask)  # drawn on the host: one generator
        return x * mask

    def backward(self, grad_y):
        mask = self._take_saved()
        grad_y = _float32(grad_y)
        return grad_y if isinstance(mask, tuple) else grad_y * mask

    def extra_repr(self):
        return f"p={self.p}"


class Flatten(Layer):
    """(N, ...) -> (N, prod(...)), a view when the input is contiguous."""

    _saved = None

    def forward(self, x):
        x = _float32(x)
        self._saved = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_y):
        shape = self._take_saved()
        return _float32(grad_y).reshape(shape)
