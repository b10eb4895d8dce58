"""Plain NumPy float64 reference implementations of every kernel in deepstyle.ops.

These are the definition of right that the kernels are tested against: short, direct loops or
einsums with PyTorch's conventions (NCHW, weights (K, C, R, S), cross-correlation), written for
clarity, not speed. Every function takes and returns float64 arrays.
"""

from __future__ import annotations

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)


def assert_close(actual, expected, terms=1):
    """float32 ``actual`` against float64 ``expected``, where each output is a sum of ``terms``
    products: rounding error grows like sqrt(terms), so the tolerance does too, measured
    against the largest magnitude of the expected result (cancellation makes small entries
    absolutely, not relatively, accurate)."""
    actual = np.asarray(actual)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"shape {actual.shape} != expected {expected.shape}"
    assert actual.dtype == np.float32, f"dtype {actual.dtype} != float32"
    tol = 16 * EPS32 * (np.sqrt(terms) + 1)
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale)


def _pair(v):
    return (v, v) if np.isscalar(v) else tuple(v)


# --- GEMM ---------------------------------------------------------------------------------------


def gemm(a, b, c=None, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
    op_a = a.T if trans_a else a
    op_b = b.T if trans_b else b
    product = alpha * (op_a.astype(np.float64) @ op_b.astype(np.float64))
    return product if c is None or beta == 0 else product + beta * c


# --- convolution --------------------------------------------------------------------------------


def _pad(x, ph, pw):
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def conv_output_size(hw, rs, stride, padding):
    (h, w), (r, s), (sh, sw), (ph, pw) = hw, rs, _pair(stride), _pair(padding)
    return (h + 2 * ph - r) // sh + 1, (w + 2 * pw - s) // sw + 1


def _taps(x_padded, r, s, sh, sw, p, q):
    """The input cells that kernel tap (r, s) reads for every output cell: (N, C, P, Q)."""
    return x_padded[:, :, r : r + sh * (p - 1) + 1 : sh, s : s + sw * (q - 1) + 1 : sw]


def conv2d(x, weight, bias=None, stride=1, padding=0):
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    k, _, rr, ss = weight.shape
    p, q = conv_output_size(x.shape[2:], (rr, ss), stride, padding)
    xp = _pad(x.astype(np.float64), ph, pw)
    y = np.zeros((x.shape[0], k, p, q))
    for r in range(rr):
        for s in range(ss):
            y += np.einsum("ncpq,kc->nkpq", _taps(xp, r, s, sh, sw, p, q), weight[:, :, r, s])
    if bias is not None:
        y += np.asarray(bias, np.float64)[None, :, None, None]
    return y


def conv2d_backward(grad_y, x, weight, stride=1, padding=0):
    """(grad_x, grad_weight, grad_bias) of sum(conv2d(x, weight, bias) * grad_y)."""
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    _, _, rr, ss = weight.shape
    p, q = grad_y.shape[2:]
    xp = _pad(x.astype(np.float64), ph, pw)
    grad_xp = np.zeros_like(xp)
    grad_w = np.zeros(weight.shape)
    for r in range(rr):
        for s in range(ss):
            grad_w[:, :, r, s] = np.einsum("nkpq,ncpq->kc", grad_y, _taps(xp, r, s, sh, sw, p, q))
            _taps(grad_xp, r, s, sh, sw, p, q)[...] += np.einsum(
                "nkpq,kc->ncpq", grad_y, weight[:, :, r, s]
            )
    grad_x = grad_xp[:, :, ph : ph + x.shape[2], pw : pw + x.shape[3]]
    return grad_x, grad_w, grad_y.sum(axis=(0, 2, 3))


# --- pooling (PyTorch's rules) ------------------------------------------------------------------


def pool_output_size(hw, kernel, stride=None, padding=0, ceil_mode=False):
    kernel = _pair(kernel)
    stride = kernel if stride is None else _pair(stride)
    out = []
    for size, k, s, p in zip(hw, kernel, _pair(stride), _pair(padding)):
        span = size + 2 * p - k
        n = (-(-span // s) if ceil_mode else span // s) + 1
        # PyTorch: in ceil mode the last window must start inside the input or its left padding.
        if ceil_mode and (n - 1) * s >= size + p:
            n -= 1
        out.append(n)
    return tuple(out)


def _windows(x, kernel, stride, padding, ceil_mode):
    """Yield (p, q, rows, cols, padded_area): the window of output cell (p, q) clipped to the
    input as slices, and its area clipped to the padded input (PyTorch's count_include_pad
    divisor)."""
    (kh, kw), (ph, pw) = _pair(kernel), _pair(padding)
    sh, sw = (kh, kw) if stride is None else _pair(stride)
    h, w = x.shape[2:]
    p_out, q_out = pool_output_size((h, w), (kh, kw), (sh, sw), (ph, pw), ceil_mode)
    for p in range(p_out):
        h0 = p * sh - ph
        h1 = min(h0 + kh, h + ph)
        for q in range(q_out):
            w0 = q * sw - pw
            w1 = min(w0 + kw, w + pw)
            rows, cols = slice(max(h0, 0), min(h1, h)), slice(max(w0, 0), min(w1, w))
            yield p, q, rows, cols, (h1 - h0) * (w1 - w0)


def max_pool2d(x, kernel, stride=None, padding=0, ceil_mode=False):
    p_out, q_out = pool_output_size(x.shape[2:], kernel, stride, padding, ceil_mode)
    y = np.empty(x.shape[:2] + (p_out, q_out))
    for p, q, rows, cols, _ in _windows(x, kernel, stride, padding, ceil_mode):
        y[:, :, p, q] = x[:, :, rows, cols].max(axis=(2, 3))
    return y


def max_pool2d_backward(grad_y, x, kernel, stride=None, padding=0, ceil_mode=False):
    """Each output's gradient goes to the first maximum of its window in row-major order, or
    to its last NaN if it has any (PyTorch's rule: a cell wins if greater or NaN)."""
    grad_x = np.zeros(x.shape)
    n, c = np.indices(x.shape[:2])
    for p, q, rows, cols, _ in _windows(x, kernel, stride, padding, ceil_mode):
        window = x[:, :, rows, cols].reshape(*x.shape[:2], -1)
        first_max = np.nan_to_num(window, nan=-np.inf).argmax(axis=2)
        last_nan = window.shape[2] - 1 - np.isnan(window[:, :, ::-1]).argmax(axis=2)
        winner = np.where(np.isnan(window).any(axis=2), last_nan, first_max)
        r, s = np.unravel_index(winner, (rows.stop - rows.start, cols.stop - cols.start))
        np.add.at(grad_x, (n, c, rows.start + r, cols.start + s), grad_y[:, :, p, q])
    return grad_x


def avg_pool2d(x, kernel, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    p_out, q_out = pool_output_size(x.shape[2:], kernel, stride, padding, ceil_mode)
    y = np.empty(x.shape[:2] + (p_out, q_out))
    for p, q, rows, cols, padded_area in _windows(x, kernel, stride, padding, ceil_mode):
        window = x[:, :, rows, cols]
        divisor = padded_area if count_include_pad else window.shape[2] * window.shape[3]
        y[:, :, p, q] = window.sum(axis=(2, 3)) / divisor
    return y


def avg_pool2d_backward(grad_y, x, kernel, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True):
    grad_x = np.zeros(x.shape)
    for p, q, rows, cols, padded_area in _windows(x, kernel, stride, padding, ceil_mode):
        cells = (rows.stop - rows.start) * (cols.stop - cols.start)
        divisor = padded_area if count_include_pad else cells
        grad_x[:, :, rows, cols] += (grad_y[:, :, p, q] / divisor)[:, :, None, None]
    return grad_x


# --- Gram matrices ------------------------------------------------------------------------------


def gram(x):
    n, c, h, w = x.shape
    f = x.astype(np.float64).reshape(n, c, h * w)
    return f @ f.transpose(0, 2, 1) / (h * w)


def gram_backward(grad_g, x):
    n, c, h, w = x.shape
    f = x.astype(np.float64).reshape(n, c, h * w)
    return ((grad_g + grad_g.transpose(0, 2, 1)) @ f / (h * w)).reshape(x.shape)


# --- activations --------------------------------------------------------------------------------


def relu(x):
    return np.maximum(x, 0.0)  # NaN stays NaN


def relu_backward(grad_y, x):
    return np.where(x > 0, grad_y, 0.0)


def leaky_relu(x, slope=0.01):
    return np.where(x > 0, x, slope * x)


def leaky_relu_backward(grad_y, x, slope=0.01):
    return np.where(x > 0, grad_y, slope * grad_y)


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # the same function, without overflow in exp


def sigmoid_backward(grad_y, y):
    return grad_y * y * (1.0 - y)


def tanh(x):
    return np.tanh(x)


def tanh_backward(grad_y, y):
    return grad_y * (1.0 - y * y)


# --- loss ---------------------------------------------------------------------------------------


def softmax_cross_entropy(logits, labels):
    """(mean over rows of -log softmax(logits)[label], its gradient (softmax - onehot) / N)."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_softmax = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    rows = np.arange(len(labels))
    loss = -log_softmax[rows, labels].mean()
    grad = np.exp(log_softmax)
    grad[rows, labels] -= 1.0
    return loss, grad / len(labels)


# --- optimiser updates ----------------------------------------------------------------------------


def sgd_update(param, grad, velocity, lr, momentum, weight_decay):
    """(param, velocity) after SGD's step (velocity None: plain steps)."""
    p, g = param.astype(np.float64), grad.astype(np.float64)
    d = g + weight_decay * p
    if velocity is not None:
        d = momentum * velocity.astype(np.float64) + d
    return p - lr * d, (None if velocity is None else d)


def adam_update(param, grad, m, v, step_size, beta1, beta2, eps, correction2, weight_decay):
    """(param, m, v) after Adam's step."""
    p, g = param.astype(np.float64), grad.astype(np.float64)
    d = g + weight_decay * p
    m = beta1 * m.astype(np.float64) + (1 - beta1) * d
    v = beta2 * v.astype(np.float64) + (1 - beta2) * d * d
    return p - step_size * m / (np.sqrt(v / correction2) + eps), m, v
