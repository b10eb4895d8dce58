import itertools

import numpy as np
import pytest

import reference as ref
import deepstyle
from deepstyle import ops
from gradcheck import check_gradient

KERNELS = [(2, 2), (3, 3), (3, 2), (1, 3)]
STRIDES = [None, 1, 2, (2, 3)]


def paddings(kernel):
    """Every padding PyTorch allows (at most half the kernel), as distinct pairs."""
    return sorted({(ph, pw) for ph in range(kernel[0] // 2 + 1) for pw in range(kernel[1] // 2 + 1)})


OPTIONS = [
    (kernel, stride, padding, ceil_mode)
    for kernel, stride, ceil_mode in itertools.product(KERNELS, STRIDES, [False, True])
    for padding in paddings(kernel)
]


def options_id(options):
    kernel, stride, padding, ceil_mode = options
    return f"k{kernel}-s{stride}-p{padding}-{'ceil' if ceil_mode else 'floor'}".replace(" ", "")


def distinct_values(rng, shape):
    """Values with no ties, spaced far apart compared with a finite-difference step."""
    return (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.01 - 1.0).astype(np.float32)


def pool_case(options, seed, shape=(2, 3, 7, 8)):
    kernel, stride, padding, ceil_mode = options
    rng = np.random.default_rng(seed)
    x = distinct_values(rng, shape)
    out = ref.pool_output_size(shape[2:], kernel, stride, padding, ceil_mode)
    grad_y = rng.standard_normal(shape[:2] + out).astype(np.float32)
    return x, grad_y


@pytest.mark.parametrize("options", OPTIONS, ids=options_id)
def test_max_pool2d_matches_reference(options):
    kernel, stride, padding, ceil_mode = options
    for seed, shape in [(1, (2, 3, 7, 8)), (2, (1, 1, 6, 5))]:
        x, grad_y = pool_case(options, seed, shape)
        y = ops.max_pool2d(x, kernel, stride, padding, ceil_mode)
        np.testing.assert_array_equal(y, ref.max_pool2d(x, kernel, stride, padding, ceil_mode))
        grad_x = ops.max_pool2d_backward(grad_y, x, kernel, stride, padding, ceil_mode)
        expected = ref.max_pool2d_backward(grad_y.astype(np.float64), x, kernel, stride, padding,
                                           ceil_mode)
        ref.assert_close(grad_x, expected, terms=4)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("options", OPTIONS, ids=options_id)
def test_avg_pool2d_matches_reference(options, count_include_pad):
    kernel, stride, padding, ceil_mode = options
    # (1, 2, 9, 37): rows of whole vectors and a remainder in the backward's row adds
    for seed, shape in [(3, (2, 3, 7, 8)), (4, (1, 1, 6, 5)), (5, (1, 2, 9, 37))]:
        x, grad_y = pool_case(options, seed, shape)
        y = ops.avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad)
        expected = ref.avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad)
        ref.assert_close(y, expected, terms=kernel[0] * kernel[1])
        grad_x = ops.avg_pool2d_backward(grad_y, x, kernel, stride, padding, ceil_mode,
                                         count_include_pad)
        expected = ref.avg_pool2d_backward(grad_y.astype(np.float64), x, kernel, stride,
                                           padding, ceil_mode, count_include_pad)
        ref.assert_close(grad_x, expected, terms=kernel[0] * kernel[1])


def test_pool_output_size_follows_pytorch():
    # Ceil mode adds a window over the end of the input...
    assert ops.pool2d_output_size((7, 8), 2, ceil_mode=True) == (4, 4)
    assert ops.pool2d_output_size((7, 8), 2, ceil_mode=False) == (3, 4)
    # ...but drops it when it would start in the right padding (5 + 2*1 - 2 = 5: ceil gives 4
    # windows, the 4th would start at 6 >= 5 + 1).
    assert ops.pool2d_output_size((5, 5), 2, 2, 1, ceil_mode=True) == (3, 3)
    assert ref.pool_output_size((5, 5), 2, 2, 1, ceil_mode=True) == (3, 3)
    assert ops.pool2d_output_size((32, 32), 3, 2, 0, ceil_mode=True) == (16, 16)
    assert ops.pool2d_output_size((32, 32), 3, 2, 0, ceil_mode=False) == (15, 15)
    assert ops.pool2d_output_size((9, 6), (3, 2), (2, 3), (1, 0), ceil_mode=True) == (5, 2)


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_ceil_mode_drops_window_starting_in_padding(count_include_pad):
    rng = np.random.default_rng(5)
    x = distinct_values(rng, (1, 2, 5, 5))
    y = ops.avg_pool2d(x, 2, 2, 1, True, count_include_pad)
    assert y.shape == (1, 2, 3, 3)
    ref.assert_close(y, ref.avg_pool2d(x, 2, 2, 1, True, count_include_pad), terms=4)
    y = ops.max_pool2d(x, 2, 2, 1, True)
    np.testing.assert_array_equal(y, ref.max_pool2d(x, 2, 2, 1, True))
    # Windows start at -1, 1, 3: the dropped fourth would start at 5, in the padding.
    np.testing.assert_array_equal(y[0, :, 2, 2], x[0, :, 3:, 3:].max(axis=(1, 2)))
    np.testing.assert_array_equal(y[0, :, 0, 0], x[0, :, 0, 0])


@pytest.mark.parametrize("size", [32, 16, 8])
def test_matconvnet_cifar_pooling(size):
    """MatConvNet's CIFAR net pools 3x3, stride 2, padding [0 1 0 1], averaging in-bounds
    cells only: here ceil_mode=True with no padding."""
    rng = np.random.default_rng(size)
    x = rng.standard_normal((2, 4, size, size)).astype(np.float32)
    y_max = ops.max_pool2d(x, 3, 2, ceil_mode=True)
    y_avg = ops.avg_pool2d(x, 3, 2, ceil_mode=True)
    assert y_max.shape == y_avg.shape == (2, 4, size // 2, size // 2)
    np.testing.assert_array_equal(y_max, ref.max_pool2d(x, 3, 2, 0, True))
    ref.assert_close(y_avg, ref.avg_pool2d(x, 3, 2, 0, True), terms=9)
    # MatConvNet's own definition, written out: pad the bottom/right by one, average the cells
    # of each 3x3 window that are inside the image.
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (0, 1), (0, 1)), constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))[:, :, ::2, ::2]
    ref.assert_close(y_avg, np.nanmean(windows, axis=(4, 5)), terms=9)
    ref.assert_close(y_max, np.nanmax(windows, axis=(4, 5)))
    grad_y = rng.standard_normal(y_max.shape).astype(np.float32)
    ref.assert_close(ops.max_pool2d_backward(grad_y, x, 3, 2, ceil_mode=True),
                     ref.max_pool2d_backward(grad_y.astype(np.float64), x, 3, 2, 0, True), terms=4)
    ref.assert_close(ops.avg_pool2d_backward(grad_y, x, 3, 2, ceil_mode=True),
                     ref.avg_pool2d_backward(grad_y.astype(np.float64), x, 3, 2, 0, True), terms=9)


def test_max_pool2d_ties_go_to_first_maximum():
    rng = np.random.default_rng(6)
    x = rng.integers(0, 2, size=(2, 3, 8, 7)).astype(np.float32)  # many ties
    x[0, 0] = 0.0  # whole plane tied
    for kernel, stride, padding, ceil_mode in [(2, None, 0, False), (3, 2, 1, True), (3, 1, 1, False)]:
        grad_y = rng.standard_normal(
            (2, 3) + ref.pool_output_size((8, 7), kernel, stride, padding, ceil_mode)
        ).astype(np.float32)
        grad_x = ops.max_pool2d_backward(grad_y, x, kernel, stride, padding, ceil_mode)
        expected = ref.max_pool2d_backward(grad_y.astype(np.float64), x, kernel, stride, padding,
                                           ceil_mode)
        ref.assert_close(grad_x, expected, terms=9)
    # With every cell tied, non-overlapping 2x2 windows send all gradient to their top-left cell.
    grad_x = ops.max_pool2d_backward(np.ones((1, 1, 2, 2), np.float32), np.zeros((1, 1, 4, 4)), 2)
    np.testing.assert_array_equal(grad_x[0, 0], [[1, 0, 1, 0], [0, 0, 0, 0], [1, 0, 1, 0], [0] * 4])


def test_max_pool2d_handles_infinities_and_negative_values():
    x = np.full((1, 1, 4, 4), -np.inf, dtype=np.float32)
    x[0, 0, 3, 3] = -1e30
    y = ops.max_pool2d(x, 3, 2, padding=1, ceil_mode=True)
    np.testing.assert_array_equal(y, ref.max_pool2d(x.astype(np.float64), 3, 2, 1, True))
    assert y[0, 0, -1, -1] == np.float32(-1e30)  # padding is -inf, not zero


SMALL_OPTIONS = [((3, 2), (2, 1), (1, 1), True), (2, None, 0, False), (3, 2, 1, False)]


@pytest.mark.parametrize("options", SMALL_OPTIONS, ids=options_id)
def test_max_pool2d_backward_matches_finite_differences(options):
    kernel, stride, padding, ceil_mode = options
    x, grad_y = pool_case(options, 7, shape=(1, 2, 5, 4))
    gy = grad_y.astype(np.float64)

    def loss(v):
        return np.sum(ref.max_pool2d(v, kernel, stride, padding, ceil_mode) * gy)

    check_gradient(loss, x, ref.max_pool2d_backward(gy, x, kernel, stride, padding, ceil_mode),
                   rtol=1e-7)
    check_gradient(loss, x, ops.max_pool2d_backward(grad_y, x, kernel, stride, padding, ceil_mode),
                   rtol=1e-5)


@pytest.mark.parametrize("width", [64, 65, 66, 97])
@pytest.mark.parametrize("options", [((2, 2), None, (0, 0), False), ((2, 2), None, (0, 0), True),
                                     ((2, 2), None, (1, 1), True), ((3, 3), 2, (1, 1), False)],
                         ids=options_id)
def test_avg_pool_row_kernels_on_planes_of_vgg_size(options, width, restore_threads):
    """Planes over 1024 cells take the row kernels (2x2/2 unpadded: the backward's paired
    spread and once-written rows), whose output rows end within or after a whole vector."""
    kernel, stride, padding, ceil_mode = options
    x, grad_y = pool_case(options, width, shape=(1, 3, 35, width))
    for count_include_pad in (True, False):
        args = (kernel, stride, padding, ceil_mode, count_include_pad)
        ref.assert_close(ops.avg_pool2d(x, *args), ref.avg_pool2d(x, *args), terms=9)
        expected = ref.avg_pool2d_backward(grad_y.astype(np.float64), x, *args)
        results = []
        for threads in (1, 2):
            deepstyle.set_num_threads(threads)
            results.append(ops.avg_pool2d_backward(grad_y, x, *args))
        ref.assert_close(results[0], expected, terms=9)
        np.testing.assert_array_equal(results[0], results[1])
        masked = ops.avg_pool2d_backward(grad_y, x, *args, relu_before=True)
        np.testing.assert_array_equal(masked, np.where(x > 0, results[0], 0))


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("options", SMALL_OPTIONS, ids=options_id)
def test_avg_pool2d_backward_matches_finite_differences(options, count_include_pad):
    kernel, stride, padding, ceil_mode = options
    args = (kernel, stride, padding, ceil_mode, count_include_pad)
    x, grad_y = pool_case(options, 8, shape=(1, 2, 5, 4))
    gy = grad_y.astype(np.float64)

    def loss(v):
        return np.sum(ref.avg_pool2d(v, *args) * gy)

    check_gradient(loss, x, ref.avg_pool2d_backward(gy, x, *args), rtol=1e-7)
    check_gradient(loss, x, ops.avg_pool2d_backward(grad_y, x, *args), rtol=1e-5)


def test_pool_larger_batch_matches_reference():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((5, 16, 17, 15)).astype(np.float32)
    grad_y = rng.standard_normal((5, 16, 9, 8)).astype(np.float32)
    np.testing.assert_array_equal(ops.max_pool2d(x, 3, 2, 1), ref.max_pool2d(x, 3, 2, 1))
    ref.assert_close(ops.max_pool2d_backward(grad_y, x, 3, 2, 1),
                     ref.max_pool2d_backward(grad_y.astype(np.float64), x, 3, 2, 1), terms=4)
    ref.assert_close(ops.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
                     ref.avg_pool2d(x, 3, 2, 1, count_include_pad=False), terms=9)
    ref.assert_close(ops.avg_pool2d_backward(grad_y, x, 3, 2, 1, count_include_pad=False),
                     ref.avg_pool2d_backward(grad_y.astype(np.float64), x, 3, 2, 1,
                                             count_include_pad=False), terms=9)


def test_pool_accepts_other_dtypes_and_views():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 3, 9, 8))
    view = x[:, ::-1, ::1, :]
    expected = ops.max_pool2d(np.ascontiguousarray(view, dtype=np.float32), 2)
    np.testing.assert_array_equal(ops.max_pool2d(view, 2), expected)
    xi = rng.integers(-50, 50, size=(1, 2, 6, 6)).astype(np.int16)
    np.testing.assert_array_equal(ops.avg_pool2d(xi, 2), ref.avg_pool2d(xi.astype(np.float64), 2))


# --- PyTorch as a second oracle, where it is installed --------------------------------------------


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_pool_matches_torch(torch_single_threaded, count_include_pad):
    torch = torch_single_threaded
    functional = torch.nn.functional
    rng = np.random.default_rng(11)
    for options in OPTIONS:
        kernel, stride, padding, ceil_mode = options
        x, grad_y = pool_case(options, 12, shape=(2, 3, 7, 8))
        xt = torch.from_numpy(x).requires_grad_(True)
        torch_stride = kernel if stride is None else stride
        y_max = functional.max_pool2d(xt, kernel, torch_stride, padding, ceil_mode=ceil_mode)
        (grad_max,) = torch.autograd.grad(y_max, xt, torch.from_numpy(grad_y))
        np.testing.assert_array_equal(ops.max_pool2d(x, *options), y_max.detach().numpy())
        np.testing.assert_allclose(ops.max_pool2d_backward(grad_y, x, *options), grad_max.numpy(),
                                   rtol=1e-6, atol=1e-6)
        y_avg = functional.avg_pool2d(xt, kernel, torch_stride, padding, ceil_mode=ceil_mode,
                                      count_include_pad=count_include_pad)
        (grad_avg,) = torch.autograd.grad(y_avg, xt, torch.from_numpy(grad_y))
        np.testing.assert_allclose(ops.avg_pool2d(x, *options, count_include_pad),
                                   y_avg.detach().numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(
            ops.avg_pool2d_backward(grad_y, x, *options, count_include_pad), grad_avg.numpy(),
            rtol=1e-6, atol=1e-6,
        )
    # Ties: PyTorch sends the gradient to the first maximum too.
    x = rng.integers(0, 2, size=(2, 3, 8, 7)).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_(True)
    y = functional.max_pool2d(xt, 3, 1, 1)
    (grad,) = torch.autograd.grad(y, xt, torch.ones_like(y))
    np.testing.assert_array_equal(
        ops.max_pool2d_backward(np.ones(y.shape, np.float32), x, 3, 1, 1), grad.numpy()
    )


def test_pool_of_known_values():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(ops.max_pool2d(x, 2)[0, 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(ops.avg_pool2d(x, 2)[0, 0], [[2.5, 4.5], [10.5, 12.5]])
    x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    # 2x2 windows, stride 2, padding 1: they cover 1, 2, 2 and 4 cells of the input.
    np.testing.assert_array_equal(ops.avg_pool2d(x, 2, 2, 1)[0, 0], [[0, 0.75], [2.25, 6]])
    np.testing.assert_array_equal(ops.avg_pool2d(x, 2, 2, 1, count_include_pad=False)[0, 0],
                                  [[0, 1.5], [4.5, 6]])
    np.testing.assert_array_equal(ops.max_pool2d(-x, 2, 2, 1)[0, 0], [[0, -1], [-3, -4]])


@pytest.mark.parametrize("hw,kernel,padding", [((3, 4), (3, 4), 0), ((2, 2), (4, 4), 1),
                                               ((3, 2), (5, 2), (1, 0))])
def test_pool_kernel_as_large_as_padded_input(hw, kernel, padding):
    rng = np.random.default_rng(13)
    x = distinct_values(rng, (2, 3, *hw))
    grad_y = np.ones((2, 3, 1, 1), np.float32)  # one window covers everything: global pooling
    for count_include_pad in (True, False):
        args = (kernel, None, padding, False, count_include_pad)
        y = ops.avg_pool2d(x, *args)
        assert y.shape == (2, 3, 1, 1)
        ref.assert_close(y, ref.avg_pool2d(x, *args), terms=16)
        ref.assert_close(ops.avg_pool2d_backward(grad_y, x, *args),
                         ref.avg_pool2d_backward(grad_y.astype(np.float64), x, *args))
    y = ops.max_pool2d(x, kernel, None, padding)
    np.testing.assert_array_equal(y[:, :, 0, 0], x.max(axis=(2, 3)))
    np.testing.assert_array_equal(ops.max_pool2d_backward(grad_y, x, kernel, None, padding),
                                  ref.max_pool2d_backward(grad_y, x, kernel, None, padding))


def random_options(count, seed):
    """Seeded random pooling geometries on small odd inputs: (x shape, options, count_include_pad)."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        shape = tuple(int(v) for v in rng.integers(1, [3, 4, 10, 10]))
        kernel = tuple(int(v) for v in rng.integers(1, 5, size=2))
        stride = None if rng.random() < 0.3 else tuple(int(v) for v in rng.integers(1, 4, size=2))
        padding = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
        if all(k <= size + 2 * p for k, size, p in zip(kernel, shape[2:], padding)):
            cases.append((shape, (kernel, stride, padding, bool(rng.random() < 0.5)),
                          bool(rng.random() < 0.5)))
    return cases


@pytest.mark.parametrize("shape,options,count_include_pad", random_options(40, 7))
def test_pool_random_geometries_match_reference(shape, options, count_include_pad):
    x, grad_y = pool_case(options, 14, shape)
    np.testing.assert_array_equal(ops.max_pool2d(x, *options), ref.max_pool2d(x, *options))
    ref.assert_close(ops.max_pool2d_backward(grad_y, x, *options),
                     ref.max_pool2d_backward(grad_y.astype(np.float64), x, *options), terms=16)
    args = (*options, count_include_pad)
    ref.assert_close(ops.avg_pool2d(x, *args), ref.avg_pool2d(x, *args), terms=16)
    ref.assert_close(ops.avg_pool2d_backward(grad_y, x, *args),
                     ref.avg_pool2d_backward(grad_y.astype(np.float64), x, *args), terms=16)


def test_pool_leaves_inputs_unchanged():
    options = ((3, 3), 2, (1, 1), True)
    x, grad_y = pool_case(options, 15)
    saved_x, saved_grad = x.copy(), grad_y.copy()
    ops.max_pool2d(x, *options)
    ops.max_pool2d_backward(grad_y, x, *options)
    ops.avg_pool2d(x, *options)
    ops.avg_pool2d_backward(grad_y, x, *options)
    np.testing.assert_array_equal(x, saved_x)
    np.testing.assert_array_equal(grad_y, saved_grad)


def nan_case():
    rng = np.random.default_rng(16)
    x = distinct_values(rng, (2, 3, 7, 8))
    x[rng.random(x.shape) < 0.15] = np.nan  # some windows with one NaN, some with several
    options = ((3, 3), 1, (1, 1), False)
    grad_y = rng.standard_normal((2, 3, 7, 8)).astype(np.float32)
    return x, grad_y, options


def test_max_pool2d_nan_wins_like_pytorch():
    x, grad_y, options = nan_case()
    y = ops.max_pool2d(x, *options)
    np.testing.assert_array_equal(y, ref.max_pool2d(x, *options))  # NaN where a window has one
    assert np.isnan(y).any() and not np.isnan(y).all()
    ref.assert_close(ops.max_pool2d_backward(grad_y, x, *options),
                     ref.max_pool2d_backward(grad_y.astype(np.float64), x, *options), terms=9)


def test_max_pool2d_nan_matches_torch(torch_single_threaded):
    torch = torch_single_threaded
    x, grad_y, (kernel, stride, padding, ceil_mode) = nan_case()
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = torch.nn.functional.max_pool2d(xt, kernel, stride, padding, ceil_mode=ceil_mode)
    (grad,) = torch.autograd.grad(yt, xt, torch.from_numpy(grad_y))
    ref_grad = ref.max_pool2d_backward(grad_y.astype(np.float64), x, kernel, stride, padding)
    np.testing.assert_allclose(ref_grad, grad.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kernel, stride", [(2, 2), (2, (2, 3)), (3, 3), ((2, 3), (2, 3))])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_max_pool2d_disjoint_windows_on_wide_rows(kernel, stride, ceil_mode):
    """Disjoint windows (stride >= kernel) take a row-at-a-time backward path; rows wider than
    one SIMD block (and not a multiple of it) must route every gradient like the reference."""
    rng = np.random.default_rng(17)
    x = rng.standard_normal((1, 2, 9, 70)).astype(np.float32)
    y = ops.max_pool2d(x, kernel, stride, ceil_mode=ceil_mode)
    np.testing.assert_array_equal(y, ref.max_pool2d(x, kernel, stride, ceil_mode=ceil_mode))
    grad_y = rng.standard_normal(y.shape).astype(np.float32)
    ref.assert_close(ops.max_pool2d_backward(grad_y, x, kernel, stride, ceil_mode=ceil_mode),
                     ref.max_pool2d_backward(grad_y.astype(np.float64), x, kernel, stride,
                                             ceil_mode=ceil_mode), terms=4)


# --- max pooling with indices -------------------------------------------------------------------

INDEX_CASES = [
    ((2, 3, 8, 64), 2, None, 0, False),  # VGG's 2x2/2 tiling the input: the row-pair routing
    ((2, 3, 8, 10), 2, None, 0, False),  # ... with rows shorter than a vector: the scatter
    ((1, 2, 9, 7), 2, None, 0, False),  # 2x2/2 leaving a row and a column out
    ((1, 2, 9, 7), 2, None, 0, True),  # ... and ceil mode: clipped windows
    ((3, 4, 32, 32), 3, 2, 1, True),  # CIFAR's overlapping 3x3/2
    ((1, 1, 40, 37), 2, 2, 0, False),  # more columns than a vector, with a tail
    ((2, 2, 7, 6), (3, 2), (1, 2), (1, 1), False),
]


@pytest.mark.parametrize("case", INDEX_CASES, ids=str)
def test_max_pool_indices_give_the_same_forward_and_backward(case):
    shape, kernel, stride, padding, ceil_mode = case
    rng = np.random.default_rng(5)
    # Few distinct values: ties everywhere, so the tie rule matters.
    x = rng.integers(-2, 3, shape).astype(np.float32)
    y, indices = ops.max_pool2d(x, kernel, stride, padding, ceil_mode, return_indices=True)
    np.testing.assert_array_equal(y, ops.max_pool2d(x, kernel, stride, padding, ceil_mode))
    assert indices.dtype == np.int32 and indices.shape == y.shape
    flat = x.reshape(*x.shape[:2], -1)
    np.testing.assert_array_equal(np.take_along_axis(flat, indices.reshape(*y.shape[:2], -1), 2),
                                  y.reshape(*y.shape[:2], -1))
    grad_y = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_array_equal(
        ops.max_pool2d_backward(grad_y, x, kernel, stride, padding, ceil_mode, indices=indices),
        ops.max_pool2d_backward(grad_y, x, kernel, stride, padding, ceil_mode))


@pytest.mark.usefixtures("restore_threads")
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("geometry", [(2, None, 0, False), (3, 2, 1, True)])
def test_max_pool_backward_finds_a_bad_index_in_any_share_of_planes(geometry, threads):
    # Planes enough to be split across threads; one bad index, in the last plane or the first.
    deepstyle.set_num_threads(threads)
    x = np.random.default_rng(8).standard_normal((2, 40, 32, 32)).astype(np.float32)
    y, indices = ops.max_pool2d(x, *geometry, return_indices=True)
    for at, value in [((-1, -1, -1, -1), 32 * 32), ((0, 0, 0, 0), -1)]:
        bad = indices.copy()
        bad[at] = value
        with pytest.raises(ValueError, match="indices: expected the argmax"):
            ops.max_pool2d_backward(np.ones_like(y), x, *geometry, indices=bad)
    np.testing.assert_array_equal(
        ops.max_pool2d_backward(y, x, *geometry, indices=indices),
        ops.max_pool2d_backward(y, x, *geometry))


def test_max_pool_indices_match_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(6).integers(-2, 3, (2, 3, 11, 12)).astype(np.float32)
    x[0, 0, 0, :4] = np.nan  # NaN wins, the last one
    for kernel, stride, padding, ceil_mode in [(2, 2, 0, False), (3, 2, 1, True)]:
        _, ours = ops.max_pool2d(x, kernel, stride, padding, ceil_mode, return_indices=True)
        _, theirs = torch.nn.functional.max_pool2d(torch.from_numpy(x), kernel, stride, padding,
                                                   ceil_mode=ceil_mode, return_indices=True)
        np.testing.assert_array_equal(ours, theirs.numpy())


@pytest.mark.parametrize("geometry, bad, error, message", [
    ((2, None, 0, False), lambda i: i.astype(np.int64), TypeError, "indices: expected dtype int32"),
    ((2, None, 0, False), lambda i: i[:, :, :1], ValueError, "indices: expected shape"),
    ((2, None, 0, False), lambda i: list(i), TypeError, "indices: expected a NumPy array"),
    ((2, None, 0, False), lambda i: i + 2, ValueError, "indices: expected the argmax"),
    ((3, 2, 1, True), lambda i: i * 0 + 64, ValueError, "indices: expected the argmax"),
    ((3, 2, 1, True), lambda i: i * 0 - 1, ValueError, "indices: expected the argmax"),
])
def test_max_pool_backward_rejects_bad_indices(geometry, bad, error, message):
    # 2x2/2 tiling the input in rows of whole vectors of windows (32x32 planes) checks that each
    # index is in its window; otherwise each must be inside the plane, 8x8 here (memory safety:
    # the scatter writes there).
    hw = 32 if geometry[0] == 2 else 8
    x = np.random.default_rng(7).standard_normal((1, 2, hw, hw)).astype(np.float32)
    y, indices = ops.max_pool2d(x, *geometry, return_indices=True)
    with pytest.raises(error, match=message):
        ops.max_pool2d_backward(np.ones_like(y), x, *geometry, indices=bad(indices))


def test_pool_geometry_kept_for_plain_ints_only():
    # A geometry checked once is kept for the same shape and int arguments; values equal to
    # those ints but of other types (2.0, True, 1 for ceil_mode) must still be refused.
    x = np.random.default_rng(9).standard_normal((1, 2, 6, 6)).astype(np.float32)
    np.testing.assert_array_equal(ops.max_pool2d(x, 2, 2, 1, True),
                                  ref.max_pool2d(x, 2, 2, 1, True))
    for args in [(2.0, 2, 1, True), (2, True, 1, True), (2, 2, 1.0, True), (2, 2, 1, 1)]:
        with pytest.raises(TypeError):
            ops.max_pool2d(x, *args)
    wide = np.random.default_rng(10).standard_normal((1, 2, 6, 9)).astype(np.float32)
    np.testing.assert_array_equal(ops.max_pool2d(wide, 2, 2, 1, True),
                                  ref.max_pool2d(wide, 2, 2, 1, True))
