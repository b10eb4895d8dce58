"""deepstyle.nn layers: every backward against float64 finite differences of a float64 reference
forward, the frozen-layer path, cache release, dropout, initialisation and argument errors."""

import numpy as np
import pytest
import reference as ref
from gradcheck import check_gradient

from deepstyle import nn

RTOL = 2e-4  # float32 analytic gradients against float64 finite differences


def _rand(rng, *shape):
    return rng.standard_normal(shape)


def _check_layer(layer, x, reference_forward, params=()):
    """Gradient of sum(g * layer(x)) with respect to x and each named parameter, against
    finite differences of the float64 ``reference_forward(x, **params)``."""
    rng = np.random.default_rng(1)
    y = layer.forward(x.astype(np.float32))
    g = rng.standard_normal(y.shape)
    values = {name: getattr(layer, name).astype(np.float64) for name in params}
    np.testing.assert_allclose(y, reference_forward(x, **values), rtol=1e-4, atol=1e-5)
    grad_x = layer.backward(g.astype(np.float32))
    check_gradient(lambda v: np.sum(g * reference_forward(v, **values)), x, grad_x, rtol=RTOL)
    for name in params:
        def f(v, name=name):
            return np.sum(g * reference_forward(x, **{**values, name: v}))
        check_gradient(f, values[name], getattr(layer, "grad_" + name), rtol=RTOL)


def test_linear_gradients_are_lemma1():
    rng = np.random.default_rng(0)
    layer = nn.Linear(4, 3, rng=rng)
    layer.bias[...] = rng.standard_normal(3)
    _check_layer(layer, _rand(rng, 5, 4), lambda x, weight, bias: x @ weight.T + bias,
                 params=("weight", "bias"))


@pytest.mark.parametrize("stride, padding, bias", [(1, 0, True), (2, 1, True), (1, 1, False)])
def test_conv2d_gradients(stride, padding, bias):
    rng = np.random.default_rng(0)
    layer = nn.Conv2d(2, 3, 3, stride=stride, padding=padding, bias=bias, rng=rng)
    if bias:
        layer.bias[...] = rng.standard_normal(3)
    params = ("weight", "bias") if bias else ("weight",)

    def forward(x, weight, bias=None):
        return ref.conv2d(x, weight, bias, stride, padding)

    _check_layer(layer, _rand(rng, 2, 2, 5, 6), forward, params)


@pytest.mark.parametrize("layer, forward", [
    (nn.ReLU(), ref.relu),
    (nn.LeakyReLU(), ref.leaky_relu),
    (nn.LeakyReLU(0.2), lambda x: ref.leaky_relu(x, 0.2)),
    (nn.Sigmoid(), ref.sigmoid),
    (nn.Tanh(), ref.tanh),
    (nn.MaxPool2d(2), lambda x: ref.max_pool2d(x, 2)),
    (nn.MaxPool2d(3, 2, 1, ceil_mode=True), lambda x: ref.max_pool2d(x, 3, 2, 1, True)),
    (nn.AvgPool2d(2), lambda x: ref.avg_pool2d(x, 2)),
    (nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
     lambda x: ref.avg_pool2d(x, 3, 2, 1, True, False)),
    (nn.Flatten(), lambda x: x.reshape(x.shape[0], -1)),
], ids=lambda v: repr(v) if isinstance(v, nn.Layer) else "")
def test_parameter_free_layer_gradients(layer, forward):
    rng = np.random.default_rng(0)
    x = _rand(rng, 2, 3, 5, 5)
    x[np.abs(x) < 1e-2] = 0.5  # keep finite differences away from ReLU's kink
    _check_layer(layer, x, forward)


def test_leaky_relu_default_slope_is_001():
    assert nn.LeakyReLU().negative_slope == 0.01
    np.testing.assert_allclose(nn.LeakyReLU().forward(np.array([-2.0, 3.0])), [-0.02, 3.0])


def test_frozen_conv_computes_input_gradient_only():
    rng = np.random.default_rng(0)
    layer = nn.Conv2d(2, 3, 3, padding=1, rng=rng)
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    g = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)
    layer.forward(x)
    expected = layer.backward(g)
    layer.trainable = False
    layer.forward(x)
    grad_x = layer.backward(g)
    np.testing.assert_array_equal(grad_x, expected)
    assert layer.grad_weight is None and layer.grad_bias is None


def test_frozen_linear_has_no_parameter_gradients():
    layer = nn.Linear(3, 2, rng=0)
    layer.trainable = False
    layer.forward(np.ones((4, 3)))
    assert layer.backward(np.ones((4, 2), np.float32)).shape == (4, 3)
    assert layer.grad_weight is None and layer.grad_bias is None


def test_forward_keeps_no_copies_and_backward_releases_the_cache():
    x = np.ones((1, 2, 4, 4), np.float32)
    for layer in [nn.Conv2d(2, 2, 3, rng=0), nn.ReLU(), nn.MaxPool2d(2)]:
        y = layer.forward(x)
        saved = layer._saved  # MaxPool2d also keeps its argmax indices, which are new
        assert (saved[0] if isinstance(saved, tuple) else saved) is x  # not a copy
        layer.backward(np.ones_like(y))
        assert layer._saved is None
    sigmoid = nn.Sigmoid()
    y = sigmoid.forward(x)
    assert sigmoid._saved is y
    sigmoid.clear()
    assert sigmoid._saved is None


def test_dropout_is_inverted_and_off_in_eval_mode():
    drop = nn.Dropout(0.25, rng=0)
    x = np.ones((200, 500), np.float32)
    y = drop.forward(x)
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.75)  # survivors scaled: expectation unchanged
    grad = drop.backward(np.ones_like(x))
    np.testing.assert_array_equal(grad, y)  # same mask, same scale
    drop.eval()
    np.testing.assert_array_equal(drop.forward(x), x)
    np.testing.assert_array_equal(drop.backward(x), x)


def test_dropout_rejects_bad_probability():
    for p in [-0.1, 1.0, 2, "0.5"]:
        with pytest.raises(ValueError, match="p: expected a drop probability"):
            nn.Dropout(p)


def test_linear_rejects_wrong_input_shape():
    layer = nn.Linear(3, 2, rng=0)
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 3\), got \(4, 5\)"):
        layer.forward(np.ones((4, 5)))
    with pytest.raises(ValueError, match="in_features: expected a positive integer"):
        nn.Linear(0, 2)


def test_conv2d_channel_mismatch_names_weight():
    with pytest.raises(ValueError, match="weight: expected 2 input channels"):
        nn.Conv2d(3, 4, 3, rng=0).forward(np.ones((1, 2, 5, 5)))


def test_initialisation_schemes_are_seeded_and_scaled():
    def weights(init, seed):
        return nn.Linear(400, 300, rng=np.random.default_rng(seed), init=init)

    np.testing.assert_array_equal(weights("he", 3).weight, weights("he", 3).weight)
    assert not np.array_equal(weights("he", 3).weight, weights("he", 4).weight)
    paper = weights("paper", 0)
    assert abs(paper.weight.std() - 0.5) < 0.01 and abs(paper.bias.std() - 0.5) < 0.05
    he = weights("he", 0)
    assert abs(he.weight.std() - np.sqrt(2 / 400)) < 0.002 and not he.bias.any()
    glorot = weights("glorot", 0)
    limit = np.sqrt(6 / 700)
    assert np.abs(glorot.weight).max() <= limit and np.abs(glorot.weight).max() > 0.99 * limit
    conv = nn.Conv2d(8, 16, 3, rng=0)  # fan_in = 8 * 3 * 3
    assert abs(conv.weight.std() - np.sqrt(2 / 72)) < 0.01
    assert conv.weight.dtype == np.float32
    with pytest.raises(ValueError, match="init: expected one of"):
        nn.Linear(2, 2, init="xavier")
    with pytest.raises(TypeError, match="rng: expected a numpy.random.Generator"):
        nn.Linear(2, 2, rng="seed")


@pytest.mark.parametrize("layer", [nn.Linear(2, 2, rng=0), nn.Sigmoid(), nn.Flatten(),
                                   nn.Dropout(0.5, rng=0)], ids=repr)
def test_backward_needs_its_own_forward(layer):
    x = np.ones((3, 2), np.float32)
    with pytest.raises(RuntimeError, match="backward: no forward pass to go back through"):
        layer.backward(x)
    layer.backward(layer.forward(x))
    with pytest.raises(RuntimeError, match="each forward allows one backward"):
        layer.backward(x)
    layer.eval()
    layer.backward(layer.forward(x))  # evaluation mode still allows a backward pass
