"""deepstyle.nn.Sequential (names, parameters, modes, save/load) and the cost functions."""

import os

import numpy as np
import pytest
import reference as ref
from gradcheck import check_gradient

from deepstyle import nn


def small_net(seed=0):
    rng = np.random.default_rng(seed)
    return nn.Sequential([
        ("conv1", nn.Conv2d(1, 2, 3, padding=1, rng=rng)), ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2)), ("flatten", nn.Flatten()), ("drop", nn.Dropout(0.5, rng=rng)),
        ("fc", nn.Linear(8, 3, rng=rng)),
    ])


def test_children_are_named_and_indexable():
    net = small_net()
    assert [name for name, _ in net.named_layers()] == ["conv1", "relu1", "pool1", "flatten",
                                                         "drop", "fc"]
    assert net["fc"] is net[5] and len(net) == 6
    unnamed = nn.Sequential(nn.Linear(2, 2, rng=0), nn.Sigmoid())
    assert [name for name, _ in unnamed.named_layers()] == ["0", "1"]
    with pytest.raises(KeyError, match="no layer named 'conv9'"):
        net["conv9"]


def test_bad_children_are_rejected():
    with pytest.raises(TypeError, match=r"layers\[1\] \('b'\): expected a deepstyle.nn layer"):
        nn.Sequential([("a", nn.ReLU()), ("b", np.zeros(3))])
    with pytest.raises(ValueError, match="unique non-empty name"):
        nn.Sequential([("a", nn.ReLU()), ("a", nn.ReLU())])


def test_parameters_are_named_views_of_the_layers():
    net = small_net()
    params = list(net.parameters())
    assert [name for name, _, _ in params] == ["conv1.weight", "conv1.bias", "fc.weight",
                                               "fc.bias"]
    assert params[0][1] is net["conv1"].weight
    assert all(grad is None for _, _, grad in params)
    x = np.random.default_rng(1).standard_normal((2, 1, 4, 4))
    net.backward(np.ones_like(net.forward(x)))
    assert [g.shape for _, _, g in net.parameters()] == [(2, 1, 3, 3), (2,), (3, 8), (3,)]


def test_nested_sequential_prefixes_names():
    inner = nn.Sequential([("lin", nn.Linear(2, 2, rng=0))])
    outer = nn.Sequential([("block", inner), ("act", nn.Sigmoid())])
    assert [name for name, _, _ in outer.parameters()] == ["block.lin.weight", "block.lin.bias"]


def test_sequential_backward_matches_finite_differences():
    rng = np.random.default_rng(2)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, rng=rng), nn.Tanh(), nn.AvgPool2d(2),
                        nn.Flatten(), nn.Linear(12, 2, rng=rng), nn.Sigmoid())
    x = rng.standard_normal((2, 2, 4, 4))
    g = rng.standard_normal((2, 2))
    w1, b1 = net[0].weight.astype(float), net[0].bias.astype(float)
    w2, b2 = net[4].weight.astype(float), net[4].bias.astype(float)

    def f(v):
        h = ref.avg_pool2d(ref.tanh(ref.conv2d(v, w1, b1, 1, 1)), 2)
        return np.sum(g * ref.sigmoid(h.reshape(2, -1) @ w2.T + b2))

    net.forward(x)
    check_gradient(f, x, net.backward(g.astype(np.float32)), rtol=2e-4)


def test_train_eval_and_trainable_reach_every_layer():
    net = small_net()
    net.eval()
    assert not any(layer.training for layer in net)
    x = np.ones((1, 1, 4, 4))
    np.testing.assert_array_equal(net.forward(x), net.forward(x))  # no dropout noise
    net.train()
    assert all(layer.training for layer in net)
    net.trainable = False
    assert not net.trainable and not net["conv1"].trainable
    net.backward(np.ones_like(net.forward(x)))
    assert all(grad is None for _, _, grad in net.parameters())


def test_save_load_round_trip(tmp_path):
    path = tmp_path / "net.npz"
    a, b = small_net(0), small_net(1)
    a.save(path)
    assert sorted(os.listdir(tmp_path)) == ["net.npz"]  # no temporary file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not the temporary file's 0600
    weight = b["fc"].weight
    b.load(path)
    assert b["fc"].weight is weight  # loaded in place: optimizers keep valid references
    for (na, va, _), (nb, vb, _) in zip(a.parameters(), b.parameters()):
        assert na == nb
        np.testing.assert_array_equal(va, vb)


def test_load_mismatch_names_the_parameter_and_changes_nothing(tmp_path):
    path = tmp_path / "net.npz"
    small_net().save(path)
    other = nn.Sequential([("conv1", nn.Conv2d(1, 2, 3, rng=0)), ("fc", nn.Linear(8, 4, rng=0))])
    before = other["conv1"].weight.copy()
    with pytest.raises(ValueError, match=r"parameter 'fc.weight' has shape \(3, 8\) in the "
                                         r"file, expected \(4, 8\)"):
        other.load(path)
    np.testing.assert_array_equal(other["conv1"].weight, before)
    renamed = nn.Sequential([("conv2", nn.Conv2d(1, 2, 3, rng=0))])
    with pytest.raises(ValueError, match="parameter 'conv2.weight'.*missing"):
        renamed.load(path)
    fewer = nn.Sequential([("conv1", nn.Conv2d(1, 2, 3, rng=0))])
    with pytest.raises(ValueError, match=r"lacks: \['fc.bias', 'fc.weight'\]"):
        fewer.load(path)


def test_quadratic_cost_is_eq9_and_its_gradient():
    rng = np.random.default_rng(0)
    a, y = rng.random((4, 2)), rng.random((4, 2))
    value, grad = nn.QuadraticCost()(a, y)
    expected = np.mean([0.5 * np.sum((y[i] - a[i]) ** 2) for i in range(4)])
    assert value == pytest.approx(expected, rel=1e-12)
    check_gradient(lambda v: nn.QuadraticCost()(v, y)[0], a, grad, rtol=1e-8)
    with pytest.raises(ValueError, match=r"target: expected shape \(4, 2\)"):
        nn.QuadraticCost()(a, y[:3])


def test_softmax_cross_entropy_is_eq32_over_n():
    rng = np.random.default_rng(0)
    v = rng.standard_normal((5, 3))
    labels = np.array([0, 2, 1, 1, 0])
    value, grad = nn.SoftmaxCrossEntropy()(v, labels)

    def eq32_over_n(w):
        log_softmax = w - np.log(np.exp(w).sum(axis=1, keepdims=True))
        return -log_softmax[np.arange(5), labels].sum() / 5

    assert value == pytest.approx(eq32_over_n(v), rel=1e-6)
    check_gradient(eq32_over_n, v, grad, rtol=1e-4)
