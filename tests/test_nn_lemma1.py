"""Lemma 1 on the paper's 2-2-3-2 sigmoid network: the layer stack's backward pass gives exactly
the deltas and partial derivatives of eqs. (22)-(25), written out here by hand in float64."""

import numpy as np
import pytest
from gradcheck import check_gradient

from deepstyle import netbp, nn


def sigma(z):
    return 1.0 / (1.0 + np.exp(-z))


def lemma1(W, b, x, y):
    """Eqs. (7)-(8) forward and (22)-(25) backward for one point; returns dC/dW, dC/db."""
    a = [x]
    z = []
    for Wl, bl in zip(W, b):
        z.append(Wl @ a[-1] + bl)
        a.append(sigma(z[-1]))
    sigma_prime = [sigma(zl) * (1 - sigma(zl)) for zl in z]  # eq. (2)
    delta = [None] * len(W)
    delta[-1] = sigma_prime[-1] * (a[-1] - y)  # eq. (22)
    for l in range(len(W) - 2, -1, -1):
        delta[l] = sigma_prime[l] * (W[l + 1].T @ delta[l + 1])  # eq. (23)
    grad_b = delta  # eq. (24)
    grad_W = [np.outer(delta[l], a[l]) for l in range(len(W))]  # eq. (25)
    return grad_W, grad_b


def params64(net):
    linears = [net[i] for i in (0, 2, 4)]
    return ([l.weight.astype(np.float64) for l in linears],
            [l.bias.astype(np.float64) for l in linears])


def net_gradients(net, x, y):
    out = net.forward(x.astype(np.float32))
    _, grad = nn.QuadraticCost()(out, y.astype(np.float32))
    net.backward(grad)
    linears = [net[i] for i in (0, 2, 4)]
    return [l.grad_weight for l in linears], [l.grad_bias for l in linears]


def test_paper_network_shape():
    net = netbp.paper_network(np.random.default_rng(0))
    shapes = [value.shape for _, value, _ in net.parameters()]
    assert shapes == [(2, 2), (2,), (3, 2), (3,), (2, 3), (2,)]
    assert sum(np.prod(s) for s in shapes) == 23  # "in terms of its 23 parameters"


@pytest.mark.parametrize("point", range(10))
def test_single_point_backward_is_lemma1(point):
    net = netbp.paper_network(np.random.default_rng(point))
    x, y = netbp.paper_points()
    W, b = params64(net)
    expected_W, expected_b = lemma1(W, b, x[point], y[point])
    got_W, got_b = net_gradients(net, x[point:point + 1], y[point:point + 1])
    for got, expected in zip(got_W + got_b, expected_W + expected_b):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_batch_backward_is_the_mean_of_lemma1_gradients():
    """Eq. (14): the gradient of eq. (9) is the mean of the per-point gradients."""
    net = netbp.paper_network(np.random.default_rng(7))
    x, y = netbp.paper_points()
    W, b = params64(net)
    per_point = [lemma1(W, b, xi, yi) for xi, yi in zip(x, y)]
    got_W, got_b = net_gradients(net, x, y)
    for l in range(3):
        np.testing.assert_allclose(got_W[l], np.mean([g[0][l] for g in per_point], axis=0),
                                   rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(got_b[l], np.mean([g[1][l] for g in per_point], axis=0),
                                   rtol=1e-5, atol=1e-7)


def test_lemma1_formulas_match_finite_differences_of_eq9():
    """The hand-written formulas themselves, against float64 differences of the cost (9)."""
    rng = np.random.default_rng(3)
    W = [0.5 * rng.standard_normal(s) for s in [(2, 2), (3, 2), (2, 3)]]
    b = [0.5 * rng.standard_normal(n) for n in (2, 3, 2)]
    x, y = netbp.paper_points()

    def cost(W, b):
        total = 0.0
        for xi, yi in zip(x, y):
            a = xi
            for Wl, bl in zip(W, b):
                a = sigma(Wl @ a + bl)
            total += 0.5 * np.sum((yi - a) ** 2)
        return total / len(x)

    per_point = [lemma1(W, b, xi, yi) for xi, yi in zip(x, y)]
    for l in range(3):
        grad_W = np.mean([g[0][l] for g in per_point], axis=0)
        grad_b = np.mean([g[1][l] for g in per_point], axis=0)
        check_gradient(lambda v: cost(W[:l] + [v] + W[l + 1:], b), W[l], grad_W, rtol=1e-7)
        check_gradient(lambda v: cost(W, b[:l] + [v] + b[l + 1:]), b[l], grad_b, rtol=1e-7)
