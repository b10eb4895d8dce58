"""Pooling's two kernel families and its fused ReLU.

Planes of up to 32x32 cells take the plane-lane kernels (cpp/pool_lanes.cpp: one plane per SIMD
lane), larger ones the row kernels (cpp/pool.cpp); the shapes below sit on both sides of that
line, with plane counts that fill no whole block of lanes. ``relu_after`` (max) and
``relu_before`` (average) must give exactly what the separate ReLU and pooling give, and match
the float64 references and finite differences."""

import numpy as np
import pytest

import reference as ref
from deepstyle import nn, ops
from gradcheck import check_gradient

SHAPES = [
    (3, 37, 8, 8),  # pool3's planes, 111 of them: whole blocks of lanes and a partial one
    (1, 17, 16, 16),  # pool2's
    (1, 5, 32, 32),  # pool1's, the largest the lane kernels take
    (1, 2, 33, 35),  # just past it: the row kernels
    (2, 3, 1, 1),  # 1x1 planes
    (1, 20, 5, 7),  # odd sizes, planes smaller than a vector
]
# (kernel, stride, padding, ceil_mode): CIFAR's 3x3/2 ceil, VGG's 2x2/2, overlapping 3x3/1 with
# padding, an odd rectangle, and a window larger than the stride in one axis only
GEOMETRIES = [(3, 2, 0, True), (2, None, 0, False), (3, 1, 1, False),
              ((3, 2), (2, 1), (1, 1), True), ((1, 3), (2, 2), (0, 1), True)]


def fits(shape, geometry):
    kernel, _, padding, _ = geometry
    kernel, padding = ops._pair(kernel, "k", 1), ops._pair(padding, "p", 0)
    return all(k <= size + 2 * p for k, size, p in zip(kernel, shape[2:], padding))


CASES = [(shape, geometry) for shape in SHAPES for geometry in GEOMETRIES if fits(shape, geometry)]


def case_id(case):
    return f"{case[0]}-{case[1]}".replace(" ", "")


def signed_values(rng, shape, zeros=True):
    """Distinct values of both signs (ties only at 0, where the ReLU's edge is), spaced far
    apart compared with a finite-difference step."""
    n = int(np.prod(shape))
    x = (rng.permutation(n) - n // 2) * (1.0 / n) + 0.25 / n
    if zeros:
        x[rng.random(n) < 0.1] = 0.0
    return x.reshape(shape).astype(np.float32)


def terms(geometry):
    return int(np.prod(ops._pair(geometry[0], "k", 1)))


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_both_kernel_families_match_reference(case):
    shape, geometry = case
    rng = np.random.default_rng(sum(shape))
    x = signed_values(rng, shape, zeros=False)
    y, indices = ops.max_pool2d(x, *geometry, return_indices=True)
    np.testing.assert_array_equal(y, ref.max_pool2d(x, *geometry))
    np.testing.assert_array_equal(ops.max_pool2d(x, *geometry), y)
    grad_y = rng.standard_normal(y.shape).astype(np.float32)
    expected = ref.max_pool2d_backward(grad_y.astype(np.float64), x, *geometry)
    ref.assert_close(ops.max_pool2d_backward(grad_y, x, *geometry), expected, terms=terms(geometry))
    ref.assert_close(ops.max_pool2d_backward(grad_y, x, *geometry, indices=indices), expected,
                     terms=terms(geometry))
    for include in (True, False):
        args = (*geometry, include)
        ref.assert_close(ops.avg_pool2d(x, *args), ref.avg_pool2d(x, *args), terms=terms(geometry))
        ref.assert_close(ops.avg_pool2d_backward(grad_y, x, *args),
                         ref.avg_pool2d_backward(grad_y.astype(np.float64), x, *args),
                         terms=terms(geometry))


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_fused_relu_is_exactly_the_composition(case):
    shape, geometry = case
    rng = np.random.default_rng(sum(shape) + 1)
    x = signed_values(rng, shape)
    x.flat[::13] = np.nan  # NaN passes a ReLU and wins a max
    pooled, indices = ops.max_pool2d(x, *geometry, return_indices=True)
    y = ops.relu(pooled)
    grad_y = rng.standard_normal(y.shape).astype(np.float32)
    expected = ops.max_pool2d_backward(ops.relu_backward(grad_y, pooled), x, *geometry)
    fused, fused_indices = ops.max_pool2d(x, *geometry, return_indices=True, relu_after=True)
    np.testing.assert_array_equal(fused, y)
    np.testing.assert_array_equal(fused_indices, indices)
    np.testing.assert_array_equal(ops.max_pool2d(x, *geometry, relu_after=True), y)
    np.testing.assert_array_equal(
        ops.max_pool2d_backward(grad_y, x, *geometry, relu_after=True), expected)
    np.testing.assert_array_equal(
        ops.max_pool2d_backward(grad_y, x, *geometry, indices=indices, relu_after=True, y=fused),
        expected)
    for include in (True, False):
        args = (*geometry, include)
        relu_x = ops.relu(x)
        np.testing.assert_array_equal(ops.avg_pool2d(x, *args, relu_before=True),
                                      ops.avg_pool2d(relu_x, *args))
        grad_y = rng.standard_normal(y.shape).astype(np.float32)
        np.testing.assert_array_equal(
            ops.avg_pool2d_backward(grad_y, x, *args, relu_before=True),
            ops.relu_backward(ops.avg_pool2d_backward(grad_y, relu_x, *args), x))


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_fused_relu_matches_reference(case):
    shape, geometry = case
    rng = np.random.default_rng(sum(shape) + 2)
    x = signed_values(rng, shape)
    relu_x = np.maximum(x, 0.0)
    y = ops.max_pool2d(x, *geometry, relu_after=True)
    np.testing.assert_array_equal(y, np.maximum(ref.max_pool2d(x, *geometry), 0))
    grad_y = rng.standard_normal(y.shape).astype(np.float32)
    masked = np.where(ref.max_pool2d(x, *geometry) > 0, grad_y.astype(np.float64), 0.0)
    ref.assert_close(ops.max_pool2d_backward(grad_y, x, *geometry, relu_after=True),
                     ref.max_pool2d_backward(masked, x, *geometry), terms=terms(geometry))
    args = (*geometry, False)
    ref.assert_close(ops.avg_pool2d(x, *args, relu_before=True), ref.avg_pool2d(relu_x, *args),
                     terms=terms(geometry))
    ref.assert_close(ops.avg_pool2d_backward(grad_y, x, *args, relu_before=True),
                     (x > 0) * ref.avg_pool2d_backward(grad_y.astype(np.float64), x, *args),
                     terms=terms(geometry))


@pytest.mark.parametrize("geometry", [(3, 2, 0, True), (2, None, 0, False), (3, 1, 1, False)])
def test_fused_relu_backward_matches_finite_differences(geometry):
    rng = np.random.default_rng(3)
    x = signed_values(rng, (1, 3, 5, 6), zeros=False)  # no value within a step of the kink
    y = ops.max_pool2d(x, *geometry)
    gy = rng.standard_normal(y.shape)
    grad_y = gy.astype(np.float32)

    def max_loss(v):
        return np.sum(np.maximum(ref.max_pool2d(v, *geometry), 0) * gy)

    def avg_loss(v):
        return np.sum(ref.avg_pool2d(np.maximum(v, 0), *geometry, False) * gy)

    check_gradient(max_loss, x, ops.max_pool2d_backward(grad_y, x, *geometry, relu_after=True))
    _, indices = ops.max_pool2d(x, *geometry, return_indices=True)
    check_gradient(max_loss, x, ops.max_pool2d_backward(
        grad_y, x, *geometry, indices=indices, relu_after=True,
        y=ops.max_pool2d(x, *geometry, relu_after=True)))
    check_gradient(avg_loss, x, ops.avg_pool2d_backward(grad_y, x, *geometry, False,
                                                        relu_before=True))


def test_fused_max_backward_with_indices_needs_y():
    x = np.ones((1, 1, 4, 4), np.float32)
    y, indices = ops.max_pool2d(x, 2, return_indices=True, relu_after=True)
    with pytest.raises(TypeError, match="y: expected the forward's output"):
        ops.max_pool2d_backward(y, x, 2, indices=indices, relu_after=True)
    with pytest.raises(ValueError, match="y: expected shape"):
        ops.max_pool2d_backward(y, x, 2, indices=indices, relu_after=True, y=y[:, :, :1])
    with pytest.raises(TypeError, match="relu_before: expected True or False"):
        ops.avg_pool2d(x, 2, relu_before="yes")


@pytest.mark.parametrize("shape", [(4, 32, 16, 16), (2, 4, 33, 34)], ids=str)
def test_fused_layers_are_the_separate_layers(shape):
    rng = np.random.default_rng(4)
    x = signed_values(rng, shape)
    pairs = [(nn.MaxPool2d(3, 2, ceil_mode=True, relu_after=True),
              [nn.MaxPool2d(3, 2, ceil_mode=True), nn.ReLU()]),
             (nn.AvgPool2d(3, 2, ceil_mode=True, count_include_pad=False, relu_before=True),
              [nn.ReLU(), nn.AvgPool2d(3, 2, ceil_mode=True, count_include_pad=False)])]
    for fused, separate in pairs:
        separate = nn.Sequential(*separate)
        y = fused.forward(x)
        np.testing.assert_array_equal(y, separate.forward(x))
        grad_y = rng.standard_normal(y.shape).astype(np.float32)
        np.testing.assert_array_equal(fused.backward(grad_y), separate.backward(grad_y))
    assert "relu_after=True" in repr(pairs[0][0]) and "relu_before=True" in repr(pairs[1][0])
