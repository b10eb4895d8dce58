"""The kernel API of deepstyle: the one door to the compiled kernels.

Conventions follow PyTorch's functional API: float32, NCHW activations, weights shaped
(out_channels, in_channels, kh, kw), ``stride``/``padding`` as an int or an (h, w) pair, output
sizes rounded down (or up with ``ceil_mode``). Every function validates its arguments here, with
errors that name the argument and give the expected and the actual value, computes every output
shape, allocates the outputs with the arrays' own library (NumPy or CuPy) and hands the buffers
to a backend that only fills them: NumPy arrays go to the C++ kernels (``deepstyle._cpu``), CuPy
arrays to the CUDA kernels (``deepstyle._cuda``) when that backend is built. Both backends
export the same function table (``cpp/bind_kernels.h``).

Inputs may be any real numeric array; they are converted to C-contiguous float32, copying only
when needed.

The argument checks are in ``ops_args.py``, the pooling ops in ``ops_pool.py`` (exported here).
"""

from __future__ import annotations

import numpy as np

from . import backend as _backend
from . import _cpu
from .backend import kernels
from .ops_args import (_allocate, _as_float32, _check_ndim, _check_nonempty_maps, _check_output,
                       _check_shape, _flag, _pair, _real)
from .ops_pool import (avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward,
                       pool2d_output_size)

__all__ = [
    "gemm",
    "conv2d",
    "conv2d_backward",
    "conv2d_output_size",
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "pool2d_output_size",
    "gram",
    "gram_backward",
    "relu",
    "relu_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "tanh",
    "tanh_backward",
    "softmax_cross_entropy",
    "sgd_update",
    "adam_update",
]


# --- GEMM -------------------------------------------------------------------------------------


def gemm(a, b, c=None, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
    """``c = alpha * op(a) @ op(b) + beta * c`` with op(m) = m.T where asked.

    Returns a new array when ``c`` is None (``beta`` then has nothing to scale); otherwise
    writes into ``c``, which must be a C-contiguous float32 array of the result's shape, and
    returns it.
    """
    if c is None:
        # The common call (NumPy float32 matrices, bool flags, float alpha and beta), checked and
        # allocated in one step by the kernel module; None for anything else, which the checks
        # below then convert or reject, saying why.
        c = _cpu.gemm_new(a, b, trans_a, trans_b, alpha, beta)
        if c is not None:
            return c
    backend, xp = kernels(a, b, c)
    trans_a, trans_b = _flag(trans_a, "trans_a"), _flag(trans_b, "trans_b")
    a = _as_float32(a, "a")
    b = _as_float32(b, "b")
    _check_ndim(a, 2, "a", "(rows, cols)")
    _check_ndim(b, 2, "b", "(rows, cols)")
    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    k_b, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if k != k_b:
        raise ValueError(
            f"b: inner dimensions do not match: expected op(b) with {k} rows for op(a) of "
            f"shape {m}x{k}, got op(b) of shape {k_b}x{n} "
            f"(a.shape={tuple(a.shape)}, b.shape={tuple(b.shape)}, trans_a={trans_a}, "
            f"trans_b={trans_b})"
        )
    alpha, beta = _real(alpha, "alpha"), _real(beta, "beta")
    if c is None:
        c = xp.empty((m, n), dtype=xp.float32)
        beta = 0.0
    else:
        _check_output(c, xp, (m, n), {"a": a, "b": b})
    backend.gemm(a, b, c, trans_a, trans_b, m, n, k, alpha, beta)
    return c


# --- convolution ------------------------------------------------------------------------------


def conv2d_output_size(input_hw, kernel_hw, stride=1, padding=0):
    """(P, Q) of a convolution, rounding down like PyTorch (the one place this is computed)."""
    return _conv_output_size(input_hw, kernel_hw, _pair(stride, "stride", 1),
                             _pair(padding, "padding", 0))


def _conv_output_size(input_hw, kernel_hw, stride, padding):
    """conv2d_output_size for checked (h, w) pairs (the one place the formula lives)."""
    (h, w), (r, s), (sh, sw), (ph, pw) = input_hw, kernel_hw, stride, padding
    return (h + 2 * ph - r) // sh + 1, (w + 2 * pw - s) // sw + 1


def _conv_args(x, weight, stride, padding):
    x = _as_float32(x, "x")
    weight = _as_float32(weight, "weight")
    _check_ndim(x, 4, "x", "(N, C, H, W)")
    _check_ndim(weight, 4, "weight", "(out_channels, in_channels, kh, kw)")
    stride = _pair(stride, "stride", 1)
    padding = _pair(padding, "padding", 0)
    if weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"weight: expected {x.shape[1]} input channels to match x.shape={tuple(x.shape)}, "
            f"got weight.shape={tuple(weight.shape)}"
        )
    if weight.shape[2] == 0 or weight.shape[3] == 0:
        raise ValueError(f"weight: expected a kernel of at least 1x1, got weight.shape="
                         f"{tuple(weight.shape)}")
    padded = (x.shape[2] + 2 * padding[0], x.shape[3] + 2 * padding[1])
    if weight.shape[2] > padded[0] or weight.shape[3] > padded[1]:
        raise ValueError(
            f"weight: expected a kernel no larger than the padded input {padded} "
            f"(x.shape={tuple(x.shape)}, padding={padding}), got {tuple(weight.shape[2:])}"
        )
    p, q = _conv_output_size(x.shape[2:], weight.shape[2:], stride, padding)
    # Field order of ds::Conv2dShape: N, C, H, W, K, R, S, strides, paddings, P, Q.
    geometry = (*x.shape, weight.shape[0], *weight.shape[2:], *stride, *padding, p, q)
    return x, weight, geometry


_CONV_ALGOS = {"auto": 0, "direct": 1, "winograd": 2}  # ds::ConvAlgo


def _conv_algo(algo, geometry):
    """The kernels' code for ``algo``; "winograd" needs stride 1 and a 3x3 kernel with padding
    <= 2 or a 5x5 one with padding <= 4 (grad_x pads by kernel - 1 - padding)."""
    if not isinstance(algo, str) or algo not in _CONV_ALGOS:
        raise ValueError(f"algo: expected one of {sorted(_CONV_ALGOS)}, got {algo!r}")
    kernel, stride, padding = geometry[5:7], geometry[7:9], geometry[9:11]
    if algo == "winograd" and (kernel not in ((3, 3), (5, 5)) or stride != (1, 1)
                               or max(padding) > kernel[0] - 1):
        raise ValueError(
            f"algo: 'winograd' needs stride 1 and a 3x3 kernel with padding at most 2 or a 5x5 "
            f"kernel with padding at most 4, got kernel {kernel}, stride {stride}, padding "
            f"{padding}"
        )
    return _CONV_ALGOS[algo]


def conv2d(x, weight, bias=None, stride=1, padding=0, *, algo="auto"):
    """2-D convolution (cross-correlation, as in PyTorch): x (N, C, H, W), weight (K, C, R, S),
    bias (K,) or None -> (N, K, P, Q).

    ``algo`` picks the algorithm: "auto" (on the CPU, Winograd F(4x4, 3x3) for 3x3 stride-1
    layers with enough channels and tiles, F(2x2, 5x5) likewise for 5x5 ones, else direct),
    "direct", or "winograd" (stride 1, 3x3 kernels with padding at most 2 or 5x5 ones with
    padding at most 4; its rounding error is up to about 10x direct summation's). The CUDA
    kernels have one algorithm for every value.
    """
    backend, xp = kernels(x, weight, bias)
    x, weight, geometry = _conv_args(x, weight, stride, padding)
    code = _conv_algo(algo, geometry)
    if bias is not None:
        bias = _as_float32(bias, "bias")
        _check_shape(bias, (weight.shape[0],), "bias")
    y = _allocate(xp, (x.shape[0], weight.shape[0], *geometry[-2:]),
                  f"padding: with padding={geometry[9:11]}" if max(geometry[9:11]) else "weight")
    backend.conv2d_forward(x, weight, bias, y, geometry, code)
    return y


def conv2d_backward(grad_y, x, weight, stride=1, padding=0, *, need_x=True, need_weight=True,
                    need_bias=True, algo="auto"):
    """Gradients of :func:`conv2d`: ``(grad_x, grad_weight, grad_bias)``.

    A gradient that is not needed (``need_x=False`` etc.) is returned as None and not computed,
    which saves a GEMM per image when, say, only the input gradient is wanted. ``algo`` picks
    the algorithm of grad_x as in :func:`conv2d` (grad_weight is always direct).
    """
    backend, xp = kernels(grad_y, x, weight)
    need_x, need_weight = _flag(need_x, "need_x"), _flag(need_weight, "need_weight")
    need_bias = _flag(need_bias, "need_bias")
    x, weight, geometry = _conv_args(x, weight, stride, padding)
    code = _conv_algo(algo, geometry)
    grad_y = _as_float32(grad_y, "grad_y")
    _check_shape(grad_y, (x.shape[0], weight.shape[0], *geometry[-2:]), "grad_y")
    grad_x = xp.empty(x.shape, dtype=xp.float32) if need_x else None
    grad_weight = xp.empty(weight.shape, dtype=xp.float32) if need_weight else None
    grad_bias = xp.empty(weight.shape[:1], dtype=xp.float32) if need_bias else None
    backend.conv2d_backward(grad_y, x, weight, grad_x, grad_weight, grad_bias, geometry, code)
    return grad_x, grad_weight, grad_bias


# --- Gram matrices ----------------------------------------------------------------------------


def gram(x):
    """Gram matrices of feature maps: x (N, C, H, W) -> (N, C, C), ``F @ F.T / (H*W)`` with
    F = x reshaped to (N, C, H*W)."""
    backend, xp = kernels(x)
    x = _as_float32(x, "x")
    _check_nonempty_maps(x)
    n, c, h, w = x.shape
    g = xp.empty((n, c, c), dtype=xp.float32)
    backend.gram_forward(x, g, n, c, h * w)
    return g


def gram_backward(grad_g, x):
    """Gradient of :func:`gram` with respect to x."""
    backend, xp = kernels(grad_g, x)
    x = _as_float32(x, "x")
    _check_nonempty_maps(x)
    grad_g = _as_float32(grad_g, "grad_g")
    n, c, h, w = x.shape
    _check_shape(grad_g, (n, c, c), "grad_g")
    grad_x = xp.empty(x.shape, dtype=xp.float32)
    backend.gram_backward(grad_g, x, grad_x, n, c, h * w)
    return grad_x


# --- activations ------------------------------------------------------------------------------


def _elementwise(kernel, x, *scalars):
    """y = f(x) by the backend function named ``kernel``."""
    backend, xp = kernels(x)
    x = _as_float32(x, "x")
    y = xp.empty_like(x)
    getattr(backend, kernel)(x, y, x.size, *scalars)
    return y


def _elementwise_backward(kernel, grad_y, saved, saved_name, *scalars):
    """grad_x from grad_y and the saved forward input or output, by the function ``kernel``."""
    backend, xp = kernels(grad_y, saved)
    saved = _as_float32(saved, saved_name)
    grad_y = _as_float32(grad_y, "grad_y")
    _check_shape(grad_y, saved.shape, "grad_y")
    grad_x = xp.empty_like(saved)
    getattr(backend, kernel)(grad_y, saved, grad_x, saved.size, *scalars)
    return grad_x


def relu(x):
    """max(x, 0)."""
    return _elementwise("relu_forward", x)


def relu_backward(grad_y, x):
    """grad_y where x > 0, else 0."""
    return _elementwise_backward("relu_backward", grad_y, x, "x")


def leaky_relu(x, negative_slope=0.01):
    """x where x > 0, else negative_slope * x."""
    return _elementwise("leaky_relu_forward", x, _real(negative_slope, "negative_slope"))


def leaky_relu_backward(grad_y, x, negative_slope=0.01):
    """grad_y where x > 0, else negative_slope * grad_y."""
    slope = _real(negative_slope, "negative_slope")
    return _elementwise_backward("leaky_relu_backward", grad_y, x, "x", slope)


def sigmoid(x):
    """1 / (1 + exp(-x))."""
    return _elementwise("sigmoid_forward", x)


def sigmoid_backward(grad_y, y):
    """grad_y * y * (1 - y), from the forward output y."""
    return _elementwise_backward("sigmoid_backward", grad_y, y, "y")


def tanh(x):
    """Hyperbolic tangent."""
    return _elementwise("tanh_forward", x)


def tanh_backward(grad_y, y):
    """grad_y * (1 - y**2), from the forward output y."""
    return _elementwise_backward("tanh_backward", grad_y, y, "y")


# --- optimiser updates ------------------------------------------------------------------------
# In place, one pass over each parameter: what SGD and Adam would otherwise do in four to eight
# array expressions, each a pass over memory and a temporary.


def _plain_host_arrays(arrays):
    """True when ``arrays`` are distinct writeable C-contiguous float32 NumPy arrays of one
    shape, each owning its memory, so that none can overlap another: the common case, checked
    at a fraction of the general path's cost (a training step updates every parameter)."""
    shape = arrays[0].shape if type(arrays[0]) is np.ndarray else None
    for a in arrays:
        if (type(a) is not np.ndarray or a.base is not None or a.dtype != np.float32
                or a.shape != shape or not a.flags.c_contiguous or not a.flags.writeable):
            return False
    return len({id(a) for a in arrays}) == len(arrays)


def _update_buffers(param, grad, states):
    """Checked ``(backend, param, grad)`` for an in-place update of ``param`` and its optimiser
    ``states`` ({name: array or None}): all writeable C-contiguous float32 arrays of param's
    shape, none overlapping another; grad is converted like any input."""
    if _plain_host_arrays([param, grad, *(s for s in states.values() if s is not None)]):
        return _backend._HOST[0], param, grad  # the NumPy arrays' kernels
    backend, xp = kernels(param, grad, *states.values())
    _check_output(param, xp, getattr(param, "shape", ()), {}, "param")  # type checked first
    grad = _as_float32(grad, "grad")
    _check_shape(grad, param.shape, "grad")
    written = {"param": param}
    for name, state in states.items():
        if state is not None:
            _check_output(state, xp, param.shape, {**written, "grad": grad}, name)
            written[name] = state
    if xp.shares_memory(param, grad):
        raise ValueError("grad: must not share memory with param")
    return backend, param, grad


def sgd_update(param, grad, velocity=None, *, lr, momentum=0.0, weight_decay=0.0):
    """SGD's step, in place: ``d = grad + weight_decay * param``; with a ``velocity`` buffer
    ``velocity = momentum * velocity + d`` and ``d = velocity``; then ``param -= lr * d``.

    ``param`` and ``velocity`` are writeable C-contiguous float32 arrays of one shape; returns
    param."""
    backend, param, grad = _update_buffers(param, grad, {"velocity": velocity})
    backend.sgd_update(param, grad, velocity, param.size, _scalar(lr, "lr"),
                       _scalar(momentum, "momentum"), _scalar(weight_decay, "weight_decay"))
    return param


def adam_update(param, grad, m, v, *, step_size, beta1, beta2, eps, correction2,
                weight_decay=0.0):
    """Adam's step, in place: ``d = grad + weight_decay * param``,
    ``m = beta1 m + (1 - beta1) d``, ``v = beta2 v + (1 - beta2) d^2``,
    ``param -= step_size * m / (sqrt(v / correction2) + eps)``: bias-corrected when
    ``step_size = lr / (1 - beta1**t)`` and ``correction2 = 1 - beta2**t``. Returns param."""
    backend, param, grad = _update_buffers(param, grad, {"m": m, "v": v})
    correction2 = _scalar(correction2, "correction2")
    if not correction2 > 0:
        raise ValueError(f"correction2: expected a positive number, got {correction2!r}")
    backend.adam_update(param, grad, m, v, param.size, _scalar(step_size, "step_size"),
                        _scalar(beta1, "beta1"), _scalar(beta2, "beta2"), _scalar(eps, "eps"),
                        correction2, _scalar(weight_decay, "weight_decay"))
    return param


def _scalar(value, name):
    """_real, with Python floats (what the optimisers pass) let through at no cost."""
    return value if type(value) is float else _real(value, name)


# --- loss -------------------------------------------------------------------------------------


def softmax_cross_entropy(logits, labels):
    """Mean softmax cross-entropy over the batch and its gradient: ``(loss, grad_logits)``.

    logits (N, K) float; labels (N,) integer class indices in [0, K).
    """
    backend, xp = kernels(logits, labels)
    logits = _as_float32(logits, "logits")
    _check_ndim(logits, 2, "logits", "(N, classes)")
    labels = xp.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels: expected integer class indices, got dtype {labels.dtype}")
    _check_shape(labels, (logits.shape[0],), "labels")
    if logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(f"logits: expected at least one row and one class, got shape "
                         f"{tuple(logits.shape)}")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= logits.shape[1]:
        bad = low if low < 0 else high
        raise ValueError(
            f"labels: expected class indices in [0, {logits.shape[1] - 1}], got {bad}"
        )
    grad = xp.empty_like(logits)
    labels = xp.ascontiguousarray(labels, dtype=xp.int64)
    loss = backend.softmax_cross_entropy(logits, labels, grad, *logits.shape)
    return float(loss), grad
