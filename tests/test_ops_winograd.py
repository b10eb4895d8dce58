"""Winograd F(4x4, 3x3) convolutions (``algo="winograd"``) against the float64 reference.

The transforms add rounding of their own (about 10x that of direct summation on VGG-sized
layers, see bench/README.md), well inside the tolerance of the reference tests, which grows
with the number of products per output."""

import numpy as np
import pytest

import reference as ref
from deepstyle import ops


def winograd_cases(count, seed):
    """Seeded geometries for 3x3 stride-1 kernels: odd sizes, images smaller than a tile or not
    a multiple of it, paddings 0-2 per side, batches > 1, channel counts off the vector width."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        n = int(rng.integers(1, 4))
        c, k = (int(v) for v in rng.integers(1, 41, size=2))
        h, w = (int(v) for v in rng.integers(1, 40, size=2))
        padding = tuple(int(v) for v in rng.integers(0, 3, size=2))
        if h + 2 * padding[0] >= 3 and w + 2 * padding[1] >= 3:
            cases.append(((n, c, h, w), k, padding))
    return cases


def case_id(case):
    return f"x{case[0]}-k{case[1]}-p{case[2]}".replace(" ", "")


def make(case, seed):
    (n, c, h, w), k, padding = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    weight = rng.standard_normal((k, c, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(k).astype(np.float32)
    p, q = h + 2 * padding[0] - 2, w + 2 * padding[1] - 2
    grad_y = rng.standard_normal((n, k, p, q)).astype(np.float32)
    return x, weight, bias, grad_y, padding


@pytest.mark.parametrize("case", winograd_cases(30, 11) + [((2, 17, 70, 53), 33, (1, 1))],
                         ids=case_id)
def test_winograd_matches_reference(case):
    x, weight, bias, grad_y, padding = make(case, 1)
    c, k = x.shape[1], weight.shape[0]
    y = ops.conv2d(x, weight, bias, padding=padding, algo="winograd")
    ref.assert_close(y, ref.conv2d(x, weight, bias, 1, padding), terms=9 * c)
    grad_x, grad_w, grad_b = ops.conv2d_backward(grad_y, x, weight, padding=padding,
                                                 algo="winograd")
    ref_x, ref_w, ref_b = ref.conv2d_backward(grad_y.astype(np.float64), x, weight, 1, padding)
    ref.assert_close(grad_x, ref_x, terms=9 * k)
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


def test_auto_uses_a_correct_algorithm_on_either_side_of_the_switch():
    rng = np.random.default_rng(4)
    for c, hw in [(8, 20), (32, 20), (32, 4)]:
        x = rng.standard_normal((2, c, hw, hw)).astype(np.float32)
        weight = rng.standard_normal((24, c, 3, 3)).astype(np.float32)
        ref.assert_close(ops.conv2d(x, weight, padding=1), ref.conv2d(x, weight, None, 1, 1),
                         terms=9 * c)


@pytest.mark.parametrize("kernel, stride, padding", [(5, 1, 1), (3, 2, 1), (3, 1, 3)])
def test_winograd_rejects_other_geometries(kernel, stride, padding):
    x = np.zeros((1, 2, 9, 9), np.float32)
    weight = np.zeros((2, 2, kernel, kernel), np.float32)
    with pytest.raises(ValueError, match="algo: 'winograd' needs a 3x3 kernel"):
        ops.conv2d(x, weight, stride=stride, padding=padding, algo="winograd")
    grad_y = ops.conv2d(x, weight, stride=stride, padding=padding)
    with pytest.raises(ValueError, match="algo: 'winograd' needs a 3x3 kernel"):
        ops.conv2d_backward(grad_y, x, weight, stride, padding, algo="winograd")


@pytest.mark.parametrize("algo", ["winograd", "auto", "direct"])
@pytest.mark.parametrize("shape", [(1, 16, 5, 0), (2, 16, 0, 3), (1, 16, 0, 0)])
def test_images_with_no_pixels_give_bias_outputs_and_empty_gradients(shape, algo):
    """An empty image under padding 2 still has outputs (the bias); grad_x has no tiles (this
    once divided by zero in the Winograd grad_x blocking: SIGFPE)."""
    rng = np.random.default_rng(5)
    x = np.zeros(shape, np.float32)
    weight = rng.standard_normal((16, shape[1], 3, 3)).astype(np.float32)
    bias = rng.standard_normal(16).astype(np.float32)
    y = ops.conv2d(x, weight, bias, padding=2, algo=algo)
    np.testing.assert_array_equal(y, np.broadcast_to(bias[None, :, None, None], y.shape))
    grad_x, grad_weight, grad_bias = ops.conv2d_backward(np.ones_like(y), x, weight, 1, 2,
                                                         algo=algo)
    assert grad_x.shape == shape
    np.testing.assert_array_equal(grad_weight, np.zeros_like(weight))
    np.testing.assert_allclose(grad_bias, np.full(16, y[:, 0].size, np.float32))


@pytest.mark.parametrize("algo", ["fast", None, "Winograd"])
def test_unknown_algo_is_rejected(algo):
    x, weight = np.zeros((1, 2, 5, 5), np.float32), np.zeros((2, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="algo: expected one of"):
        ops.conv2d(x, weight, algo=algo)
