import itertools

import numpy as np
import pytest

import reference as ref
from deepstyle import ops
from gradcheck import check_gradient

# (N, C, H, W), (K, R, S), stride, padding
CASES = [
    ((1, 1, 5, 7), (1, 3, 3), 1, 0),  # batch 1, one channel
    ((2, 3, 9, 6), (4, 3, 2), 1, 1),  # odd, non-square input and kernel
    ((2, 3, 11, 10), (5, 3, 3), 2, 1),  # stride 2 with padding
    ((1, 2, 10, 13), (3, 3, 5), (2, 1), (0, 2)),  # asymmetric stride and padding
    ((3, 4, 7, 9), (2, 2, 3), (1, 3), (1, 0)),
    ((1, 2, 9, 9), (3, 2, 2), 3, 0),  # stride larger than the kernel skips cells
    ((2, 8, 5, 6), (7, 1, 1), 1, 0),  # 1x1: the image is its own im2col matrix
    ((2, 5, 7, 6), (3, 1, 1), 2, 0),  # 1x1 with stride
    ((1, 5, 4, 3), (6, 1, 1), 1, 1),  # 1x1 with padding: a zero border
    ((2, 3, 4, 5), (2, 6, 7), 1, 1),  # kernel as large as the padded input: 1x1 output
    ((1, 3, 5, 5), (4, 5, 5), 1, 0),  # kernel as large as the input
    ((3, 32, 16, 16), (32, 5, 5), 1, 2),  # CIFAR conv2 shape, batch > thread count
    ((1, 3, 32, 32), (32, 5, 5), 1, 2),  # CIFAR conv1 shape, batch 1
    ((2, 1, 28, 28), (32, 5, 5), 1, 2),  # Fashion-MNIST conv1 shape
    ((1, 3, 35, 33), (64, 3, 3), 1, 1),  # VGG conv1_1 on an odd image
    ((2, 3, 96, 88), (64, 3, 3), 1, 1),  # 2**20 outputs of a shallow sum: streamed, 2 images
    ((2, 3, 33, 35), (32, 5, 5), 2, 2),  # an input layer with stride 2
    ((1, 2, 3, 130), (32, 3, 3), 1, (0, 1)),  # an input layer with a single output row
    # Input layers of 64-100 taps (positions in the vector lanes): rows ending in part of a
    # vector, 8 and 16 output channels, paddings from 0 to the kernel size less one.
    ((2, 3, 19, 37), (32, 5, 5), 1, (2, 1)),
    ((1, 4, 20, 21), (16, 4, 4), 1, (3, 0)),
    ((2, 3, 9, 50), (8, 5, 5), 1, (0, 4)),
    ((4, 16, 20, 20), (24, 3, 3), 1, 1),
    ((8, 32, 24, 24), (200, 3, 3), 1, 1),  # spans the GEMM's cache blocks in every direction
]


def case_id(case):
    x_shape, w_shape, stride, padding = case
    return f"x{x_shape}-w{w_shape}-s{stride}-p{padding}".replace(" ", "")


def make_case(case, seed):
    x_shape, (k, r, s), stride, padding = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal((k, x_shape[1], r, s)).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32)
    p, q = ref.conv_output_size(x_shape[2:], (r, s), stride, padding)
    grad_y = rng.standard_normal((x_shape[0], k, p, q)).astype(np.float32)
    return x, w, b, grad_y, stride, padding


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_conv2d_forward_matches_reference(case, with_bias):
    x, w, b, _, stride, padding = make_case(case, 1)
    bias = b if with_bias else None
    y = ops.conv2d(x, w, bias, stride=stride, padding=padding)
    ref.assert_close(y, ref.conv2d(x, w, bias, stride, padding), terms=w[0].size)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_conv2d_backward_matches_reference(case):
    x, w, _, grad_y, stride, padding = make_case(case, 2)
    grad_x, grad_w, grad_b = ops.conv2d_backward(grad_y, x, w, stride=stride, padding=padding)
    ref_x, ref_w, ref_b = ref.conv2d_backward(grad_y.astype(np.float64), x, w, stride, padding)
    n, k, p, q = grad_y.shape
    ref.assert_close(grad_x, ref_x, terms=k * w.shape[2] * w.shape[3])
    ref.assert_close(grad_w, ref_w, terms=n * p * q)
    ref.assert_close(grad_b, ref_b, terms=n * p * q)


SMALL_CASES = [
    ((2, 2, 5, 4), (3, 3, 2), (2, 1), (1, 0)),
    ((1, 3, 4, 4), (2, 3, 3), 1, 1),
    ((2, 1, 6, 5), (2, 1, 1), 2, 0),
    ((1, 2, 3, 4), (2, 5, 4), 1, (1, 0)),  # kernel as large as the padded input
]


@pytest.mark.parametrize("case", SMALL_CASES, ids=case_id)
def test_conv2d_backward_matches_finite_differences(case):
    x, w, b, grad_y, stride, padding = make_case(case, 3)
    x, w, b, gy = (a.astype(np.float64) for a in (x, w, b, grad_y))

    def loss(x=x, w=w, b=b):
        return np.sum(ref.conv2d(x, w, b, stride, padding) * gy)

    grad_x, grad_w, grad_b = ops.conv2d_backward(grad_y, x, w, stride=stride, padding=padding)
    ref_x, ref_w, ref_b = ref.conv2d_backward(gy, x, w, stride, padding)
    for ours, reference, f, at in [
        (grad_x, ref_x, lambda v: loss(x=v), x),
        (grad_w, ref_w, lambda v: loss(w=v), w),
        (grad_b, ref_b, lambda v: loss(b=v), b),
    ]:
        check_gradient(f, at, reference, rtol=1e-7)  # the reference backward is right...
        check_gradient(f, at, ours, rtol=1e-5)  # ...and so is ours, to float32 rounding


@pytest.mark.parametrize(
    "need", [flags for flags in itertools.product([True, False], repeat=3) if any(flags)]
)
def test_conv2d_backward_skips_unneeded_gradients(need):
    x, w, _, grad_y, stride, padding = make_case(CASES[2], 4)
    full = ops.conv2d_backward(grad_y, x, w, stride=stride, padding=padding)
    need_x, need_weight, need_bias = need
    partial = ops.conv2d_backward(grad_y, x, w, stride=stride, padding=padding, need_x=need_x,
                                  need_weight=need_weight, need_bias=need_bias)
    assert len(partial) == 3
    for wanted, got, expected in zip(need, partial, full):
        if wanted:
            np.testing.assert_array_equal(got, expected)
        else:
            assert got is None


def test_conv2d_accepts_other_dtypes_and_views():
    x, w, b, _, stride, padding = make_case(CASES[4], 5)
    expected = ops.conv2d(x, w, b, stride=stride, padding=padding)
    x_view = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)  # F-ish strides
    assert not x_view.flags.c_contiguous
    np.testing.assert_array_equal(ops.conv2d(x_view, w, b, stride, padding), expected)
    y64 = ops.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                     stride=list(stride) if isinstance(stride, tuple) else stride,
                     padding=padding)
    assert y64.dtype == np.float32
    np.testing.assert_array_equal(y64, expected)
    xi = np.arange(2 * 3 * 5 * 4).reshape(2, 3, 5, 4) % 7 - 3  # int64
    wi = np.ones((2, 3, 2, 2), dtype=np.int32)
    ref.assert_close(ops.conv2d(xi, wi), ref.conv2d(xi, wi), terms=12)


def test_conv2d_zero_bias_equals_no_bias():
    x, w, b, _, stride, padding = make_case(CASES[1], 6)
    np.testing.assert_array_equal(
        ops.conv2d(x, w, np.zeros_like(b), stride, padding), ops.conv2d(x, w, None, stride, padding)
    )


def test_conv2d_output_size_rounds_down():
    assert ops.conv2d_output_size((11, 10), (3, 3), 2, 1) == (6, 5)
    assert ops.conv2d_output_size((10, 13), (3, 5), (2, 1), (0, 2)) == (4, 13)
    assert ops.conv2d_output_size((32, 32), (5, 5), 1, 2) == (32, 32)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_conv2d_matches_torch(torch_single_threaded, case):
    torch = torch_single_threaded
    x, w, b, grad_y, stride, padding = make_case(case, 7)
    xt, wt, bt = (torch.from_numpy(a).requires_grad_(True) for a in (x, w, b))
    yt = torch.nn.functional.conv2d(xt, wt, bt, stride, padding)
    grads = torch.autograd.grad(yt, (xt, wt, bt), torch.from_numpy(grad_y))
    ours = (ops.conv2d(x, w, b, stride, padding),
            *ops.conv2d_backward(grad_y, x, w, stride, padding))
    for got, expected in zip(ours, (yt, *grads)):
        expected = expected.detach().numpy().astype(np.float64)
        scale = np.abs(expected).max()
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * scale)


def test_conv2d_of_known_values():
    x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    ones = np.ones((1, 1, 2, 2), np.float32)
    np.testing.assert_array_equal(ops.conv2d(x, ones)[0, 0], [[8, 12], [20, 24]])
    # Padding 1, stride 2: windows over padded rows/cols -1..0 and 1..2.
    np.testing.assert_array_equal(ops.conv2d(x, ones, stride=2, padding=1)[0, 0], [[0, 3], [9, 24]])
    np.testing.assert_array_equal(ref.conv2d(x, ones, None, 2, 1)[0, 0], [[0, 3], [9, 24]])
    # Cross-correlation, not convolution: the kernel is not flipped.
    corner = np.zeros((1, 1, 2, 2), np.float32)
    corner[0, 0, 0, 0] = 1.0
    np.testing.assert_array_equal(ops.conv2d(x, corner)[0, 0], [[0, 1], [3, 4]])


def random_cases(count, seed, max_stride=3):
    """Seeded random geometries, each dimension from 1 up, strides 1..max_stride and paddings
    0..3 in each direction independently (paddings beyond the kernel included)."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        n, c, h, w, k = rng.integers(1, [4, 6, 13, 13, 7])
        r, s = rng.integers(1, 6, size=2)
        stride = tuple(int(v) for v in rng.integers(1, max_stride + 1, size=2))
        padding = tuple(int(v) for v in rng.integers(0, 4, size=2))
        if r <= h + 2 * padding[0] and s <= w + 2 * padding[1]:
            cases.append(((int(n), int(c), int(h), int(w)), (int(k), int(r), int(s)), stride,
                          padding))
    return cases


@pytest.mark.parametrize("case", random_cases(40, 2024) + random_cases(25, 5, max_stride=1),
                         ids=case_id)
def test_conv2d_random_geometries_match_reference(case):
    x, w, b, grad_y, stride, padding = make_case(case, 8)
    ref.assert_close(ops.conv2d(x, w, b, stride, padding), ref.conv2d(x, w, b, stride, padding),
                     terms=w[0].size)
    grad_x, grad_w, grad_b = ops.conv2d_backward(grad_y, x, w, stride, padding)
    ref_x, ref_w, ref_b = ref.conv2d_backward(grad_y.astype(np.float64), x, w, stride, padding)
    n, k, p, q = grad_y.shape
    ref.assert_close(grad_x, ref_x, terms=k * w.shape[2] * w.shape[3])
    ref.assert_close(grad_w, ref_w, terms=n * p * q)
    ref.assert_close(grad_b, ref_b, terms=n * p * q)


def direct_kernel_cases(count, seed, input_layer=False, whole_blocks=False):
    """Seeded random stride-1 geometries for the direct kernels of 32/64 output channels
    (forward, grad_x through the flipped forward, grad_weight): kernel widths 1-7 (the 3- and
    5-wide ones have their own code), rows of at least 8 positions whose length need not be a
    multiple of 8, paddings from 0 to the kernel size less one, and enough taps for the
    forward's direct kernel (C*R*S >= 256) or not. With input_layer, 1-4 input channels
    (C*R*S <= 100) on images of more than 256 output positions, whose grad_weight sums rows
    cut into fixed ranges that need not align with images. With whole_blocks, rows of whole
    blocks of 8 positions and at most 2 columns of padding, whose grad_weight reads x itself
    (no zero-framed copy) and skips the padding's products."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        k = int(rng.choice([32, 64]))
        r, s = (int(v) for v in rng.integers(1, 8, size=2))
        padding = (int(rng.integers(0, r)), int(rng.integers(0, min(s, 3) if whole_blocks else s)))
        h = int(rng.integers(max(1, r - 2 * padding[0]), 41 if input_layer else 17))
        w = int(rng.integers(max(1, 8 + s - 1 - 2 * padding[1]), 49 if input_layer else 21))
        c = int(rng.integers(1, 5 if input_layer else 40))
        p, q = ref.conv_output_size((h, w), (r, s), 1, padding)
        wanted = c * r * s <= 100 and p * q > 256 if input_layer else p * q <= 256
        if q >= 8 and wanted and (q % 8 == 0 or not whole_blocks):
            cases.append(((int(rng.integers(1, 4)), c, h, w), (k, r, s), 1, padding))
    return cases


@pytest.mark.parametrize("case", direct_kernel_cases(16, 77) + direct_kernel_cases(12, 78, True)
                         + direct_kernel_cases(12, 79, whole_blocks=True)
                         + direct_kernel_cases(6, 80, True, whole_blocks=True), ids=case_id)
def test_conv2d_direct_kernels_match_reference(case):
    x, w, b, grad_y, stride, padding = make_case(case, 10)
    ref.assert_close(ops.conv2d(x, w, b, stride, padding), ref.conv2d(x, w, b, stride, padding),
                     terms=w[0].size)
    grad_x, grad_w, grad_b = ops.conv2d_backward(grad_y, x, w, stride, padding, algo="direct")
    ref_x, ref_w, ref_b = ref.conv2d_backward(grad_y.astype(np.float64), x, w, stride, padding)
    n, k, p, q = grad_y.shape
    ref.assert_close(grad_x, ref_x, terms=k * w.shape[2] * w.shape[3])
    ref.assert_close(grad_w, ref_w, terms=n * p * q)
    ref.assert_close(grad_b, ref_b, terms=n * p * q)


def input_layer_cases(count, seed):
    """Seeded random input layers for the forward kernel with output positions in the vector
    lanes (64-100 taps, output channels a multiple of 8, rows of at least 16 positions): 5-wide
    kernels (unrolled) and other widths, batch 1-3, rows ending in part of a vector or in a
    whole one, paddings from 0 to the kernel size less one."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        r, s = int(rng.integers(3, 8)), 5 if len(cases) % 2 == 0 else int(rng.integers(3, 8))
        c, k = int(rng.integers(1, 5)), 8 * int(rng.integers(1, 9))
        padding = (int(rng.integers(0, r)), int(rng.integers(0, s)))
        q = int(rng.choice([16, 32, 48]) + rng.integers(0, 2) * rng.integers(1, 16))  # row length
        w = q + s - 1 - 2 * padding[1]
        h = int(rng.integers(max(1, r - 2 * padding[0]), 12))
        if 64 <= c * r * s <= 100:
            cases.append(((int(rng.integers(1, 4)), c, h, w), (k, r, s), 1, padding))
    return cases


@pytest.mark.parametrize("case", input_layer_cases(12, 81), ids=case_id)
def test_conv2d_input_layer_rows_match_reference(case):
    x, w, b, _, stride, padding = make_case(case, 11)
    ref.assert_close(ops.conv2d(x, w, b, stride, padding), ref.conv2d(x, w, b, stride, padding),
                     terms=w[0].size)


def test_conv2d_leaves_inputs_unchanged():
    x, w, b, grad_y, stride, padding = make_case(CASES[2], 9)
    saved = [a.copy() for a in (x, w, b, grad_y)]
    ops.conv2d(x, w, b, stride, padding)
    ops.conv2d_backward(grad_y, x, w, stride, padding)
    for before, after in zip(saved, (x, w, b, grad_y)):
        np.testing.assert_array_equal(before, after)
