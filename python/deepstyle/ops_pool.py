"""The pooling ops of :mod:`deepstyle.ops` (max and average pooling, forward and backward, and
their output size), exported there; the conventions are ``ops``'s."""

from __future__ import annotations

import numpy as np

from .backend import kernels
from .ops_args import _allocate, _as_float32, _check_nonempty_maps, _check_shape, _flag, _pair


def pool2d_output_size(input_hw, kernel_size, stride=None, padding=0, ceil_mode=False):
    """(P, Q) of a pooling, exactly as PyTorch computes it (including ceil mode's rule that
    the last window must start inside the input or its left padding)."""
    kernel = _pair(kernel_size, "kernel_size", 1)
    stride = kernel if stride is None else _pair(stride, "stride", 1)
    padding = _pair(padding, "padding", 0)
    out = []
    for size, k, s, p in zip(input_hw, kernel, stride, padding):
        span = size + 2 * p - k
        n = (span + (s - 1 if ceil_mode else 0)) // s + 1
        if ceil_mode and (n - 1) * s >= size + p:
            n -= 1
        out.append(n)
    return tuple(out)


# _pool_args' geometries of plain int arguments by (x.shape, kernel_size, stride, padding,
# ceil_mode): checking them anew cost 2 us a call, a tenth of VGG's 2x2 max-pool backward on
# 512 planes of 32x32 at 2 threads.
_GEOMETRIES = {}
_MAX_GEOMETRIES = 64


def _pool_args(x, kernel_size, stride, padding, ceil_mode):
    """x as float32, and the ds::Pool2dShape fields of its pooling, checked."""
    _flag(ceil_mode, "ceil_mode")
    x = _as_float32(x, "x")
    plain = (type(kernel_size) is int and type(padding) is int
             and (stride is None or type(stride) is int))
    if not plain:
        return x, _pool_geometry(x, kernel_size, stride, padding, ceil_mode)
    key = (x.shape, kernel_size, stride, padding, bool(ceil_mode))
    geometry = _GEOMETRIES.get(key)
    if geometry is None:
        geometry = _pool_geometry(x, kernel_size, stride, padding, ceil_mode)
        if len(_GEOMETRIES) >= _MAX_GEOMETRIES:
            _GEOMETRIES.clear()
        _GEOMETRIES[key] = geometry
    return x, geometry


def _pool_geometry(x, kernel_size, stride, padding, ceil_mode):
    _check_nonempty_maps(x)
    kernel = _pair(kernel_size, "kernel_size", 1)
    stride = kernel if stride is None else _pair(stride, "stride", 1)
    padding = _pair(padding, "padding", 0)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(
            f"padding: expected at most half the kernel size {kernel}, got {padding}"
        )
    padded = (x.shape[2] + 2 * padding[0], x.shape[3] + 2 * padding[1])
    if kernel[0] > padded[0] or kernel[1] > padded[1]:
        raise ValueError(
            f"kernel_size: expected a kernel no larger than the padded input {padded} "
            f"(x.shape={tuple(x.shape)}, padding={padding}), got {kernel}"
        )
    out = pool2d_output_size(x.shape[2:], kernel, stride, padding, ceil_mode)
    # Field order of ds::Pool2dShape: N, C, H, W, kernel, stride, padding, P, Q.
    return (*x.shape, *kernel, *stride, *padding, *out)


def _pool_output(x, geometry, xp):
    return _allocate(xp, (*x.shape[:2], *geometry[-2:]), "x")


def _pool_grad(grad_y, x, geometry):
    grad_y = _as_float32(grad_y, "grad_y")
    _check_shape(grad_y, (*x.shape[:2], *geometry[-2:]), "grad_y")
    return grad_y


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, *,
               return_indices=False, relu_after=False):
    """Max pooling; stride defaults to the kernel size, padding counts as -inf.

    With ``return_indices`` (NumPy arrays only), returns ``(y, indices)``: int32 indices of
    y's shape, each the position ``h * W + w`` in its (H, W) plane of the maximum that
    :func:`max_pool2d_backward` routes the gradient to (PyTorch's convention and tie rule);
    passing them to the backward makes it a scatter instead of a search.

    ``relu_after``: ``relu(max_pool2d(x))`` in one pass (the indices stay the max-pool's).
    """
    backend, xp = kernels(x)
    x, geometry = _pool_args(x, kernel_size, stride, padding, ceil_mode)
    relu_after = _flag(relu_after, "relu_after")
    y = _pool_output(x, geometry, xp)
    if not return_indices:
        backend.max_pool2d_forward(x, y, geometry, relu_after)
        return y
    if xp is not np:
        raise NotImplementedError("max_pool2d: return_indices is implemented for NumPy arrays "
                                  "only")
    indices = np.empty(y.shape, dtype=np.int32)
    backend.max_pool2d_forward_indices(x, y, indices, geometry, relu_after)
    return y, indices


def max_pool2d_backward(grad_y, x, kernel_size, stride=None, padding=0, ceil_mode=False, *,
                        indices=None, relu_after=False, y=None):
    """Gradient of :func:`max_pool2d` with respect to x (to the first maximum of each window;
    with ``relu_after``, only where that maximum is above 0).

    ``indices`` from ``max_pool2d(..., return_indices=True)`` on the same x and geometry skip
    finding the maxima again (x then only gives the shape); with ``relu_after`` they need ``y``,
    that forward's output, whose sign is the ReLU's mask.
    """
    backend, xp = kernels(grad_y, x)
    x, geometry = _pool_args(x, kernel_size, stride, padding, ceil_mode)
    relu_after = _flag(relu_after, "relu_after")
    grad_y = _pool_grad(grad_y, x, geometry)
    grad_x = xp.empty(x.shape, dtype=xp.float32)
    if indices is None:
        backend.max_pool2d_backward(grad_y, x, grad_x, geometry, relu_after)
        return grad_x
    if xp is not np or type(indices) is not np.ndarray:
        raise TypeError(f"indices: expected a NumPy array with NumPy grad_y and x, got "
                        f"{type(indices).__name__}")
    if indices.dtype != np.int32:
        raise TypeError(f"indices: expected dtype int32 (from max_pool2d(..., "
                        f"return_indices=True)), got {indices.dtype}")
    _check_shape(indices, grad_y.shape, "indices")
    if relu_after:
        if y is None:
            raise TypeError("y: expected the forward's output with relu_after and indices, "
                            "got None")
        y = _as_float32(y, "y")
        _check_shape(y, grad_y.shape, "y")
    backend.max_pool2d_backward_indices(grad_y, np.ascontiguousarray(indices), grad_x, geometry,
                                        y if relu_after else None)
    return grad_x


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               *, relu_before=False):
    """Average pooling with PyTorch's divisor rules for padding and ceil mode.

    ``relu_before``: ``avg_pool2d(relu(x))`` in one pass, without relu(x) in memory.
    """
    backend, xp = kernels(x)
    x, geometry = _pool_args(x, kernel_size, stride, padding, ceil_mode)
    y = _pool_output(x, geometry, xp)
    backend.avg_pool2d_forward(x, y, geometry, _flag(count_include_pad, "count_include_pad"),
                               _flag(relu_before, "relu_before"))
    return y


def avg_pool2d_backward(grad_y, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, *, relu_before=False):
    """Gradient of :func:`avg_pool2d` with respect to x (x gives only the shape, unless
    ``relu_before``: then the gradient is kept only where x > 0)."""
    backend, xp = kernels(grad_y, x)
    x, geometry = _pool_args(x, kernel_size, stride, padding, ceil_mode)
    relu_x = x if _flag(relu_before, "relu_before") else None
    grad_x = xp.empty(x.shape, dtype=xp.float32)
    backend.avg_pool2d_backward(_pool_grad(grad_y, x, geometry), grad_x, geometry,
                                _flag(count_include_pad, "count_include_pad"), relu_x)
    return grad_x
