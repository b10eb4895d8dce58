import numpy as np
import pytest

import reference as ref
from deepstyle import ops
from gradcheck import check_gradient

# name -> (forward, backward, reference forward, reference backward, backward takes the output)
def _late(name):
    """ops.<name>, looked up at each call (the ops_device fixture swaps the module's functions)."""
    return lambda *args, **kwargs: getattr(ops, name)(*args, **kwargs)


ACTIVATIONS = {
    "relu": (_late("relu"), _late("relu_backward"), ref.relu, ref.relu_backward, False),
    "leaky_relu": (_late("leaky_relu"), _late("leaky_relu_backward"), ref.leaky_relu,
                   ref.leaky_relu_backward, False),
    "sigmoid": (_late("sigmoid"), _late("sigmoid_backward"), ref.sigmoid, ref.sigmoid_backward,
                True),
    "tanh": (_late("tanh"), _late("tanh_backward"), ref.tanh, ref.tanh_backward, True),
}

# Every rank, and a size above the threshold where the loops go parallel.
SHAPES = [(7,), (3, 5), (2, 3, 4, 5), (1, 2, 3, 4, 5, 2), (2, 64, 33, 32)]


def inputs(rng, shape, scale=3.0):
    """Values away from 0, where relu's kink would spoil finite differences."""
    x = rng.standard_normal(shape) * scale
    return np.where(np.abs(x) < 1e-3, 0.5, x).astype(np.float32)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_matches_reference(name, shape):
    forward, backward, ref_forward, ref_backward, from_output = ACTIVATIONS[name]
    rng = np.random.default_rng(len(shape))
    x = inputs(rng, shape)
    grad_y = rng.standard_normal(shape).astype(np.float32)
    y = forward(x)
    assert y.shape == shape and y.dtype == np.float32
    ref.assert_close(y, ref_forward(x.astype(np.float64)))
    saved = y if from_output else x
    grad_x = backward(grad_y, saved)
    assert grad_x.shape == shape and grad_x.dtype == np.float32
    ref.assert_close(grad_x, ref_backward(grad_y.astype(np.float64), saved.astype(np.float64)))


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_backward_matches_finite_differences(name):
    forward, backward, ref_forward, _, from_output = ACTIVATIONS[name]
    rng = np.random.default_rng(1)
    x = inputs(rng, (3, 4))
    grad_y = rng.standard_normal((3, 4))

    def loss(v):
        return np.sum(ref_forward(v) * grad_y)

    saved = forward(x) if from_output else x
    check_gradient(loss, x, backward(grad_y, saved), rtol=1e-5)


@pytest.mark.parametrize("slope", [0.0, 0.2, 1.0, -0.5])
def test_leaky_relu_slope(slope):
    rng = np.random.default_rng(2)
    x = inputs(rng, (4, 6))
    grad_y = rng.standard_normal((4, 6))
    ref.assert_close(ops.leaky_relu(x, slope), ref.leaky_relu(x.astype(np.float64), slope))
    grad_x = ops.leaky_relu_backward(grad_y, x, slope)
    ref.assert_close(grad_x, ref.leaky_relu_backward(grad_y, x, slope))
    check_gradient(lambda v: np.sum(ref.leaky_relu(v, slope) * grad_y), x, grad_x, rtol=1e-5)


def test_leaky_relu_default_slope_is_one_hundredth():
    x = np.array([-2.0, 3.0], np.float32)
    np.testing.assert_allclose(ops.leaky_relu(x), [-0.02, 3.0], rtol=1e-7)
    np.testing.assert_allclose(ops.leaky_relu_backward(np.ones(2), x), [0.01, 1.0], rtol=1e-7)


def test_saturating_activations_stay_finite_for_huge_inputs():
    x = np.array([-1e30, -1e4, -100.0, -88.8, 0.0, 88.8, 100.0, 1e4, 1e30, -np.inf, np.inf],
                 dtype=np.float32)
    y = ops.sigmoid(x)
    assert np.all(np.isfinite(y)) and np.all((y >= 0) & (y <= 1))
    ref.assert_close(y, ref.sigmoid(x.astype(np.float64)))
    t = ops.tanh(x)
    assert np.all(np.isfinite(t)) and np.all(np.abs(t) <= 1)
    ref.assert_close(t, np.tanh(x.astype(np.float64)))


def test_relu_at_zero_has_zero_gradient():
    # The subgradient PyTorch picks: relu'(0) = 0.
    x = np.array([-1.0, 0.0, 1.0], np.float32)
    np.testing.assert_array_equal(ops.relu(x), [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(ops.relu_backward(np.full(3, 5.0), x), [0.0, 0.0, 5.0])


def test_activations_keep_zero_dim_and_empty_shapes():
    for forward, *_ in ACTIVATIONS.values():
        assert forward(np.float32(2.0)).shape == ()
        assert forward(np.zeros((0, 3), np.float32)).shape == (0, 3)


def test_activations_accept_other_dtypes_and_views():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 8))
    view = x.T[::2]
    for name, (forward, backward, ref_forward, ref_backward, from_output) in ACTIVATIONS.items():
        y = forward(view)
        ref.assert_close(y, ref_forward(view))
        saved = y if from_output else view
        ref.assert_close(backward(view, saved), ref_backward(view, saved.astype(np.float64)))
    xi = np.arange(-3, 4, dtype=np.int8)
    np.testing.assert_array_equal(ops.relu(xi), [0, 0, 0, 0, 1, 2, 3])


def test_nan_propagates_through_forward_maps():
    x = np.array([np.nan, -1.0, 2.0], np.float32)
    for forward in (ops.relu, ops.leaky_relu, ops.sigmoid, ops.tanh):
        y = forward(x)
        assert np.isnan(y[0]) and np.all(np.isfinite(y[1:])), forward.__name__
