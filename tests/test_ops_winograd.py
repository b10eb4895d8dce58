"""Winograd F(4x4, 3x3) and F(2x2, 5x5) convolutions (``algo="winograd"``) against the float64
reference.

The transforms add rounding of their own (about 10x that of direct summation on VGG-sized
layers, 2-5x on CIFAR's 5x5 layers, see bench/README.md), well inside the tolerance of the
reference tests, which grows with the number of products per output."""

import numpy as np
import pytest

import reference as ref
from deepstyle import ops


def winograd_cases(count, seed, r=3):
    """Seeded geometries for r x r stride-1 kernels: odd sizes, images smaller than a tile or not
    a multiple of it (1x1 included), paddings 0 to r - 1 per side, batches > 1, channel counts
    off the vector width and above the 16 of the automatic choice."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        n = int(rng.integers(1, 4))
        c, k = (int(v) for v in rng.integers(1, 41, size=2))
        h, w = (int(v) for v in rng.integers(1, 40, size=2))
        padding = tuple(int(v) for v in rng.integers(0, r, size=2))
        if h + 2 * padding[0] >= r and w + 2 * padding[1] >= r:
            cases.append(((n, c, h, w), k, r, padding))
    return cases


def case_id(case):
    return f"x{case[0]}-k{case[1]}-r{case[2]}-p{case[3]}".replace(" ", "")


def make(case, seed):
    (n, c, h, w), k, r, padding = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    weight = rng.standard_normal((k, c, r, r)).astype(np.float32)
    bias = rng.standard_normal(k).astype(np.float32)
    p, q = h + 2 * padding[0] - (r - 1), w + 2 * padding[1] - (r - 1)
    grad_y = rng.standard_normal((n, k, p, q)).astype(np.float32)
    return x, weight, bias, grad_y, padding


CASES_5X5 = winograd_cases(30, 12, r=5) + [
    ((2, 17, 1, 1), 20, 5, (4, 4)),  # one pixel: every tap but the centre's reads padding
    ((3, 16, 2, 3), 16, 5, (2, 3)),  # smaller than a 2x2 output tile's 6x6 patch
    ((4, 32, 16, 16), 32, 5, (2, 2)),  # cifar-cnn's conv2 (several tile rows per lane group)
    ((2, 32, 8, 8), 64, 5, (2, 2)),  # conv3
    ((1, 19, 37, 29), 18, 5, (0, 4)),
    # Whole tile rows of 8 or 4 tiles per lane group (AVX-512's shortcut), at other paddings:
    ((2, 6, 9, 20), 5, 5, (1, 0)),  # 4 x 8 tiles an image, no padding across
    ((3, 7, 7, 11), 9, 5, (2, 0)),  # 4 x 4
    ((1, 5, 10, 4), 6, 5, (1, 4)),  # 4 x 4, a 4-wide image inside 4 columns of padding a side
]


@pytest.mark.parametrize("case", winograd_cases(30, 11) + [((2, 17, 70, 53), 33, 3, (1, 1))]
                         + CASES_5X5, ids=case_id)
def test_winograd_matches_reference(case):
    x, weight, bias, grad_y, padding = make(case, 1)
    c, k, taps = x.shape[1], weight.shape[0], weight[0, 0].size
    y = ops.conv2d(x, weight, bias, padding=padding, algo="winograd")
    ref.assert_close(y, ref.conv2d(x, weight, bias, 1, padding), terms=taps * c)
    grad_x, grad_w, grad_b = ops.conv2d_backward(grad_y, x, weight, padding=padding,
                                                 algo="winograd")
    ref_x, ref_w, ref_b = ref.conv2d_backward(grad_y.astype(np.float64), x, weight, 1, padding)
    ref.assert_close(grad_x, ref_x, terms=taps * k)
    n, _, p, q = grad_y.shape
    ref.assert_close(grad_w, ref_w, terms=n * p * q)  # grad_weight stays direct
    ref.assert_close(grad_b, ref_b, terms=n * p * q)


def test_winograd_close_to_direct_on_a_vgg_sized_layer():
    # Many tiles (several blocks of tile panels) and 128 channels: the error of the transforms
    # relative to the largest output stays within the tolerance of 9 * 128 products.
    rng = np.random.default_rng(3)
    x = np.maximum(rng.standard_normal((1, 128, 64, 64)), 0).astype(np.float32)
    weight = (rng.standard_normal((128, 128, 3, 3)) / np.sqrt(9 * 128)).astype(np.float32)
    expected = ref.conv2d(x, weight, None, 1, 1)
    for algo in ("winograd", "direct"):
        ref.assert_close(ops.conv2d(x, weight, padding=1, algo=algo), expected, terms=9 * 128)


@pytest.mark.parametrize("r, padding, shapes", [
    (3, 1, [(8, 24, 20), (32, 24, 20), (32, 24, 4)]),
    # cifar-cnn: Fashion-MNIST's one-channel first layer (direct), conv2 and conv3 at batch 100
    # and small batches.
    (5, 2, [(1, 32, 32), (3, 32, 16), (32, 32, 16), (32, 64, 8), (16, 16, 3), (8, 32, 16)]),
])
def test_auto_uses_a_correct_algorithm_on_either_side_of_the_switch(r, padding, shapes):
    rng = np.random.default_rng(4)
    for c, k, hw in shapes:
        n = 10 if hw >= 8 else 2
        x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
        weight = rng.standard_normal((k, c, r, r)).astype(np.float32)
        y = ops.conv2d(x, weight, padding=padding)
        ref.assert_close(y, ref.conv2d(x, weight, None, 1, padding), terms=r * r * c)
        grad_y = rng.standard_normal(y.shape).astype(np.float32)
        grad_x = ops.conv2d_backward(grad_y, x, weight, 1, padding, need_weight=False,
                                     need_bias=False)[0]
        ref.assert_close(grad_x, ref.conv2d_backward(grad_y.astype(np.float64), x, weight, 1,
                                                     padding)[0], terms=r * r * k)


def test_auto_takes_winograd_from_16_tiles_whatever_the_filter_size():
    """VGG's conv5_1 on a 256x256 image is 16 tiles of 4x4 with filters too large for any
    cache; Winograd still ran in 0.53-0.78x direct's time there (winograd_pays_off), 9 tiles
    not always."""
    rng = np.random.default_rng(6)
    weight = (rng.standard_normal((256, 256, 3, 3)) / 48).astype(np.float32)
    for hw, expected in ((16, "winograd"), (12, "direct")):
        x = rng.standard_normal((1, 256, hw, hw)).astype(np.float32)
        auto = ops.conv2d(x, weight, padding=1)
        np.testing.assert_array_equal(auto, ops.conv2d(x, weight, padding=1, algo=expected))
        grad_x = ops.conv2d_backward(x, x, weight, 1, 1, need_weight=False, need_bias=False)[0]
        np.testing.assert_array_equal(grad_x, ops.conv2d_backward(
            x, x, weight, 1, 1, need_weight=False, need_bias=False, algo=expected)[0])


@pytest.mark.parametrize("kernel, stride, padding",
                         [(5, 1, 5), (3, 2, 1), (3, 1, 3), (5, 2, 2), (7, 1, 3), (1, 1, 0)])
def test_winograd_rejects_other_geometries(kernel, stride, padding):
    x = np.zeros((1, 2, 9, 9), np.float32)
    weight = np.zeros((2, 2, kernel, kernel), np.float32)
    message = "algo: 'winograd' needs stride 1 and a 3x3 kernel with padding at most 2 or a 5x5"
    with pytest.raises(ValueError, match=message):
        ops.conv2d(x, weight, stride=stride, padding=padding, algo="winograd")
    grad_y = ops.conv2d(x, weight, stride=stride, padding=padding)
    with pytest.raises(ValueError, match=message):
        ops.conv2d_backward(grad_y, x, weight, stride, padding, algo="winograd")


@pytest.mark.parametrize("algo", ["winograd", "auto", "direct"])
@pytest.mark.parametrize("r", [3, 5])
@pytest.mark.parametrize("shape", [(1, 16, 5, 0), (2, 16, 0, 3), (1, 16, 0, 0)])
def test_images_with_no_pixels_give_bias_outputs_and_empty_gradients(shape, r, algo):
    """An empty image under padding r - 1 still has outputs (the bias); grad_x has no tiles
    (this once divided by zero in the Winograd grad_x blocking: SIGFPE)."""
    rng = np.random.default_rng(5)
    x = np.zeros(shape, np.float32)
    weight = rng.standard_normal((16, shape[1], r, r)).astype(np.float32)
    bias = rng.standard_normal(16).astype(np.float32)
    y = ops.conv2d(x, weight, bias, padding=r - 1, algo=algo)
    np.testing.assert_array_equal(y, np.broadcast_to(bias[None, :, None, None], y.shape))
    grad_x, grad_weight, grad_bias = ops.conv2d_backward(np.ones_like(y), x, weight, 1, r - 1,
                                                         algo=algo)
    assert grad_x.shape == shape
    np.testing.assert_array_equal(grad_weight, np.zeros_like(weight))
    np.testing.assert_allclose(grad_bias, np.full(16, y[:, 0].size, np.float32))


@pytest.mark.parametrize("algo", ["fast", None, "Winograd"])
def test_unknown_algo_is_rejected(algo):
    x, weight = np.zeros((1, 2, 5, 5), np.float32), np.zeros((2, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="algo: expected one of"):
        ops.conv2d(x, weight, algo=algo)


OUT_OF_MEMORY = r"""
import resource
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
import numpy as np
import deepstyle
from deepstyle import ops
deepstyle.set_num_threads(1)
# 600000 input channels, one filter: the transformed filters (0.7 GB) fit; a block's transformed
# input (48 tiles x 36 x 600000 floats, 4.1 GB) does not. 17 one-pixel images padded by 4 give
# 153 tiles (4 blocks), enough for each thread to take whole blocks with buffers of its own.
x = np.ones((17, 600000, 1, 1), np.float32)
weight = np.ones((1, 600000, 5, 5), np.float32)
try:
    ops.conv2d(x, weight, padding=4, algo="winograd")
except MemoryError:
    print("MemoryError")
"""


def test_a_block_too_large_for_memory_is_a_memory_error(run_python_limited):
    """The buffers of a call are allocated before its parallel region: a std::bad_alloc thrown
    inside one would end the process (std::terminate) instead of raising MemoryError."""
    result = run_python_limited("-c", OUT_OF_MEMORY)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "MemoryError"
