"""The CUDA kernels' own source, compiled for the CPU over cuda/emulation.h
(deepstyle._cuda_emulated: one OS thread per CUDA thread, a barrier for __syncthreads, shared
arrays per block), run through deepstyle.ops on small awkward shapes -- not multiples of the
64 x 64 x 16 GEMM tile, strides and paddings at the edges, ceil mode -- against the float64
references, and, where the arithmetic is the same (max pooling, activations), against the C++
kernels exactly. This is what checks the CUDA indexing, tiling, bounds and synchronisation on
every CI run, without a GPU; CI also runs it under AddressSanitizer + UBSan (scripts/sanitize.sh).

Shapes stay small: every CUDA thread is an OS thread here.
"""

import numpy as np
import pytest

import reference as ref
from deepstyle import backend, ops
from test_ops_activations import ACTIVATIONS  # the same table of maps and references


@pytest.fixture
def emulated(monkeypatch):
    """NumPy arrays go to the emulated CUDA kernels instead of the C++ ones for this test."""
    try:
        from deepstyle import _cuda_emulated
    except ImportError:
        pytest.skip("deepstyle._cuda_emulated was not built (DEEPSTYLE_CUDA_EMULATION=OFF)")
    monkeypatch.setattr(backend, "_HOST", (_cuda_emulated, np))
    return _cuda_emulated


def on_cpu(fn, *args, **kwargs):
    """The same call on the C++ kernels (inside a test that has the emulated ones active)."""
    from deepstyle import _cpu

    saved = backend._HOST
    backend._HOST = (_cpu, np)
    try:
        return fn(*args, **kwargs)
    finally:
        backend._HOST = saved


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# (M, N, K): below, at and across the 64 x 64 tile and the 16-deep K slice; zero sizes
GEMM_SHAPES = [(1, 1, 1), (37, 53, 29), (64, 64, 16), (65, 3, 17), (5, 70, 33), (3, 4, 0),
               (0, 5, 3)]


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("mnk", GEMM_SHAPES, ids=str)
def test_gemm(emulated, mnk, trans_a, trans_b):
    m, n, k = mnk
    rng = np.random.default_rng(m * 10000 + n * 100 + k)
    a = rand(rng, k, m) if trans_a else rand(rng, m, k)
    b = rand(rng, n, k) if trans_b else rand(rng, k, n)
    c = ops.gemm(a, b, trans_a=trans_a, trans_b=trans_b)
    ref.assert_close(c, ref.gemm(a, b, trans_a=trans_a, trans_b=trans_b), terms=max(k, 1))


def test_gemm_alpha_beta_accumulate(emulated):
    rng = np.random.default_rng(3)
    a, b, c0 = rand(rng, 19, 23), rand(rng, 23, 66), rand(rng, 19, 66)
    c = c0.copy()
    ops.gemm(a, b, c, alpha=-0.5, beta=2.0)
    ref.assert_close(c, ref.gemm(a, b, c0.astype(np.float64), alpha=-0.5, beta=2.0), terms=24)


def test_gemm_beta_zero_ignores_nan_in_c(emulated):
    rng = np.random.default_rng(4)
    a, b = rand(rng, 3, 5), rand(rng, 5, 4)
    c = np.full((3, 4), np.nan, np.float32)
    ops.gemm(a, b, c, beta=0.0)
    ref.assert_close(c, ref.gemm(a, b), terms=5)


# (N, C, H, W), (K, R, S), stride, padding
CONV_CASES = [
    ((1, 1, 5, 7), (1, 3, 3), 1, 0),
    ((2, 3, 9, 6), (4, 3, 2), 1, 1),
    ((2, 3, 11, 10), (5, 3, 3), 2, 1),
    ((1, 2, 10, 13), (3, 3, 5), (2, 1), (0, 2)),
    ((1, 2, 9, 9), (3, 2, 2), 3, 0),  # stride larger than the kernel: skipped cells
    ((2, 5, 7, 6), (3, 1, 1), 2, 0),
    ((2, 3, 4, 5), (2, 6, 7), 1, 1),  # kernel as large as the padded input
    ((1, 9, 6, 5), (67, 2, 2), 1, 1),  # more output channels than one tile
]


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv2d_forward_and_backward(emulated, case):
    x_shape, (k, r, s), stride, padding = case
    rng = np.random.default_rng(sum(x_shape) + k)
    x, w, b = rand(rng, *x_shape), rand(rng, k, x_shape[1], r, s), rand(rng, k)
    y = ops.conv2d(x, w, b, stride=stride, padding=padding)
    ref.assert_close(y, ref.conv2d(x, w, b, stride, padding), terms=w[0].size)
    grad_y = rand(rng, *y.shape)
    grads = ops.conv2d_backward(grad_y, x, w, stride=stride, padding=padding)
    expected = ref.conv2d_backward(grad_y.astype(np.float64), x, w, stride, padding)
    n, _, p, q = y.shape
    for got, want, terms in zip(grads, expected, (k * r * s, n * p * q, n * p * q)):
        ref.assert_close(got, want, terms=terms)


@pytest.mark.parametrize("r, padding", [(3, 1), (5, 2), (5, 4)])
def test_conv2d_algo_is_a_cpu_choice(emulated, r, padding):
    """The CUDA kernels have one algorithm: algo="winograd" (accepted for 3x3 and 5x5 stride-1
    geometries) runs it exactly as "direct" does."""
    rng = np.random.default_rng(r + padding)
    x, w = rand(rng, 2, 3, 7, 6), rand(rng, 4, 3, r, r)
    y = {algo: ops.conv2d(x, w, padding=padding, algo=algo) for algo in ("direct", "winograd")}
    np.testing.assert_array_equal(y["winograd"], y["direct"])
    ref.assert_close(y["winograd"], ref.conv2d(x, w, None, 1, padding), terms=w[0].size)
    grad_y = rand(rng, *y["direct"].shape)
    grads = {algo: ops.conv2d_backward(grad_y, x, w, 1, padding, algo=algo)
             for algo in ("direct", "winograd")}
    for got, want in zip(grads["winograd"], grads["direct"]):
        np.testing.assert_array_equal(got, want)


def test_conv2d_backward_only_what_is_needed(emulated):
    rng = np.random.default_rng(5)
    x, w = rand(rng, 1, 2, 5, 5), rand(rng, 3, 2, 3, 3)
    grad_y = rand(rng, 1, 3, 3, 3)
    grad_x, grad_w, grad_b = ops.conv2d_backward(grad_y, x, w, need_x=False, need_bias=False)
    assert grad_x is None and grad_b is None
    ref.assert_close(grad_w, ref.conv2d_backward(grad_y.astype(np.float64), x, w)[1], terms=9)


# (N, C, H, W), kernel, stride, padding, ceil_mode
POOL_CASES = [
    ((1, 2, 7, 8), 2, None, 0, False),
    ((1, 2, 7, 8), 2, None, 0, True),
    ((2, 1, 9, 6), (3, 2), (2, 3), (1, 0), True),
    ((1, 3, 5, 5), 3, 1, 1, False),  # overlapping windows
    ((1, 1, 6, 11), (2, 4), (1, 3), (1, 2), True),
    ((1, 1, 4, 4), 1, 3, 0, False),  # stride past the kernel: cells no window covers
]


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_max_pool_matches_the_cpu_exactly(emulated, case):
    x_shape, kernel, stride, padding, ceil_mode = case
    rng = np.random.default_rng(sum(x_shape))
    x = rand(rng, *x_shape)
    x[0, 0, 0, :2] = x[0, 0, 1, 0]  # ties: the first maximum wins
    args = (kernel, stride, padding, ceil_mode)
    y = ops.max_pool2d(x, *args)
    np.testing.assert_array_equal(y, on_cpu(ops.max_pool2d, x, *args))
    np.testing.assert_array_equal(y, ref.max_pool2d(x, *args).astype(np.float32))
    grad_y = rand(rng, *y.shape)
    grad_x = ops.max_pool2d_backward(grad_y, x, *args)
    np.testing.assert_allclose(grad_x, on_cpu(ops.max_pool2d_backward, grad_y, x, *args),
                               rtol=0, atol=8 * ref.EPS32 * float(np.abs(grad_y).max()))
    ref.assert_close(grad_x, ref.max_pool2d_backward(grad_y.astype(np.float64), x, *args),
                     terms=4)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_avg_pool(emulated, case, count_include_pad):
    x_shape, kernel, stride, padding, ceil_mode = case
    rng = np.random.default_rng(sum(x_shape) + 1)
    x = rand(rng, *x_shape)
    args = (kernel, stride, padding, ceil_mode, count_include_pad)
    y = ops.avg_pool2d(x, *args)
    terms = int(np.prod(ops._pair(kernel, "kernel", 1)))
    ref.assert_close(y, ref.avg_pool2d(x, *args), terms=terms)
    grad_y = rand(rng, *y.shape)
    ref.assert_close(ops.avg_pool2d_backward(grad_y, x, *args),
                     ref.avg_pool2d_backward(grad_y.astype(np.float64), x, *args), terms=terms)


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_pool_with_fused_relu(emulated, case):
    x_shape, kernel, stride, padding, ceil_mode = case
    rng = np.random.default_rng(sum(x_shape) + 2)
    x = rand(rng, *x_shape)
    x[0, 0, 0, :2] = 0.0  # ReLU's edge
    args = (kernel, stride, padding, ceil_mode)
    y = ops.max_pool2d(x, *args, relu_after=True)
    np.testing.assert_array_equal(y, on_cpu(ops.max_pool2d, x, *args, relu_after=True))
    grad_y = rand(rng, *y.shape)
    grad_x = ops.max_pool2d_backward(grad_y, x, *args, relu_after=True)
    np.testing.assert_allclose(grad_x, on_cpu(ops.max_pool2d_backward, grad_y, x, *args,
                                              relu_after=True),
                               rtol=0, atol=8 * ref.EPS32 * float(np.abs(grad_y).max()))
    masked = np.where(y > 0, grad_y.astype(np.float64), 0.0)
    ref.assert_close(grad_x, ref.max_pool2d_backward(masked, x, *args), terms=4)
    relu_x = np.maximum(x, 0)
    terms = int(np.prod(ops._pair(kernel, "kernel", 1)))
    for include in (True, False):
        ref.assert_close(ops.avg_pool2d(x, *args, include, relu_before=True),
                         ref.avg_pool2d(relu_x, *args, include), terms=terms)
        ref.assert_close(ops.avg_pool2d_backward(grad_y, x, *args, include, relu_before=True),
                         (x > 0) * ref.avg_pool2d_backward(grad_y.astype(np.float64), x, *args,
                                                           include), terms=terms)


def test_max_pool_nan_wins(emulated):
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    x[0, 0, 0, 1] = np.nan
    np.testing.assert_array_equal(ops.max_pool2d(x, 2), on_cpu(ops.max_pool2d, x, 2))


# (N, C, H, W): C across the 64-row tile (the mirrored off-diagonal tiles), HW not a multiple of 16
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 5, 3, 7), (1, 70, 3, 3)], ids=str)
def test_gram(emulated, shape):
    rng = np.random.default_rng(sum(shape))
    x = rand(rng, *shape)
    n, c, h, w = shape
    ref.assert_close(ops.gram(x), ref.gram(x), terms=h * w)
    grad_g = rand(rng, n, c, c)
    ref.assert_close(ops.gram_backward(grad_g, x),
                     ref.gram_backward(grad_g.astype(np.float64), x), terms=2 * c)


def test_gram_is_exactly_symmetric(emulated):
    g = ops.gram(rand(np.random.default_rng(6), 1, 70, 5, 5))
    np.testing.assert_array_equal(g, g.transpose(0, 2, 1))


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activations(emulated, name):
    forward, backward, ref_forward, ref_backward, from_output = ACTIVATIONS[name]
    rng = np.random.default_rng(7)
    x = rand(rng, 3, 5, 67) * 4  # 1005 elements: several blocks, a partial last one
    x.flat[:3] = [0.0, -0.0, 90.0]
    y = forward(x)
    ref.assert_close(y, ref_forward(x.astype(np.float64)), terms=4)
    grad_y = rand(rng, *x.shape)
    saved = y if from_output else x
    ref.assert_close(backward(grad_y, saved),
                     ref_backward(grad_y.astype(np.float64), saved.astype(np.float64)), terms=4)


@pytest.mark.parametrize("shape", [(1, 1), (3, 10), (300, 7)], ids=str)  # rows > block threads
def test_softmax_cross_entropy(emulated, shape):
    rng = np.random.default_rng(shape[0])
    logits = rand(rng, *shape) * 10
    labels = rng.integers(0, shape[1], shape[0])
    loss, grad = ops.softmax_cross_entropy(logits, labels)
    ref_loss, ref_grad = ref.softmax_cross_entropy(logits, labels)
    assert abs(loss - ref_loss) <= 64 * ref.EPS32 * max(1.0, abs(ref_loss))
    ref.assert_close(grad, ref_grad, terms=shape[1])


@pytest.mark.parametrize("shape", [(0,), (1,), (3, 5, 67)], ids=str)  # 1005: a partial last block
def test_optimiser_updates(emulated, shape):
    """The CUDA twins of test_ops_updates: the same formulas (cpp/updates.h) in the kernels."""
    import test_ops_updates as updates

    for momentum, weight_decay in [(0.0, 0.0), (0.9, 5e-4)]:
        updates.test_sgd_update(shape, momentum, weight_decay)
    updates.test_adam_update(shape, 7, 0.01)


def test_direct_calls_check_buffers(emulated):
    """The emulated module shares the bindings' checks: a wrong-sized buffer is an error."""
    with pytest.raises(ValueError):
        emulated.relu_backward(np.zeros(3, np.float32), np.zeros(4, np.float32),
                               np.zeros(4, np.float32), 4)
