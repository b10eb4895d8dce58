"""Content, style and TV losses and the assembled objective, against finite differences in
float64 and against the published formulas they normalise like."""

from __future__ import annotations

import numpy as np
import pytest

from deepstyle import ops
from deepstyle.style import Normalisation, StyleObjective, content_loss, style_loss, total_variation
from gradcheck import check_gradient
from test_style_tinynet import TinyNet


def gram64(x):
    f = x.reshape(x.shape[0], x.shape[1], -1)
    return f @ f.transpose(0, 2, 1) / f.shape[2]


def gram64_backward(grad_g, x):
    f = x.reshape(x.shape[0], x.shape[1], -1)
    return ((grad_g + grad_g.transpose(0, 2, 1)) @ f / f.shape[2]).reshape(x.shape)


@pytest.fixture
def float64_gram(monkeypatch):
    """ops.gram is float32 by design; the chain of gradients around it is checked in float64."""
    monkeypatch.setattr(ops, "gram", gram64)
    monkeypatch.setattr(ops, "gram_backward", gram64_backward)


@pytest.mark.parametrize("power", [2.0, 2.5, 3.0])
def test_total_variation_gradient(power):
    x = np.random.default_rng(0).standard_normal((1, 3, 5, 4))
    loss, grad = total_variation(x, power)
    assert loss == pytest.approx(total_variation(x, power)[0])
    check_gradient(lambda z: total_variation(z, power)[0], x, grad, rtol=1e-7)


def test_total_variation_value_is_the_blog_formula():
    x = np.random.default_rng(1).standard_normal((1, 3, 6, 7))
    a = (x[:, :, :-1, :-1] - x[:, :, 1:, :-1]) ** 2
    b = (x[:, :, :-1, :-1] - x[:, :, :-1, 1:]) ** 2
    assert total_variation(x, 2.5)[0] == pytest.approx(np.sum((a + b) ** 1.25), rel=1e-12)
    assert total_variation(np.ones((1, 3, 4, 4)), 2.0)[0] == 0.0


def test_content_loss_gradient():
    rng = np.random.default_rng(2)
    f, p = rng.standard_normal((2, 1, 4, 3, 3))
    loss, grad = content_loss(f, p, 0.3)
    assert loss == pytest.approx(0.3 * np.sum((f - p) ** 2))
    check_gradient(lambda z: content_loss(z, p, 0.3)[0], f, grad, rtol=1e-7)


def test_style_loss_gradient(float64_gram):
    rng = np.random.default_rng(3)
    f = rng.standard_normal((1, 4, 3, 5))
    target = gram64(rng.standard_normal((1, 4, 6, 2)))
    loss, grad = style_loss(f, target, 0.7)
    check_gradient(lambda z: style_loss(z, target, 0.7)[0], f, grad, rtol=1e-7)


def test_style_loss_on_the_float32_kernels_agrees_with_float64():
    rng = np.random.default_rng(4)
    f = rng.standard_normal((1, 8, 6, 5)).astype(np.float32)
    target = gram64(rng.standard_normal((1, 8, 7, 7)))
    loss, grad = style_loss(f, target.astype(np.float32), 0.5)
    diff = gram64(f.astype(np.float64)) - target
    assert loss == pytest.approx(0.5 * np.sum(diff**2), rel=1e-5)
    np.testing.assert_allclose(grad, gram64_backward(diff, f.astype(np.float64)), rtol=1e-4, atol=1e-5)


def test_normalisations_match_the_published_formulas():
    rng = np.random.default_rng(5)
    f = rng.standard_normal((1, 6, 4, 5))
    channels, pixels = 6, 20
    image_hw = (8, 10)
    unnormalised = (f.reshape(6, -1) @ f.reshape(6, -1).T)
    other = rng.standard_normal((6, 30))
    other_unnormalised = other @ other.T  # a style layer of another size: 30 pixels
    g, a = unnormalised / pixels, other_unnormalised / 30
    sum_sq = np.sum((g - a) ** 2)
    # Gatys et al.: E = 1/(4 N^2 M^2) sum (G' - A')^2 with G', A' both at this layer's M
    gatys = Normalisation(style="gatys").style_scale(a, f.shape, image_hw) * sum_sq
    assert gatys == pytest.approx(np.sum((unnormalised - a * pixels) ** 2) / (4 * channels**2 * pixels**2))
    # the blog: sum (S - C)^2 / (4 * 3^2 * (image H W)^2) on unnormalised Grams
    blog = Normalisation(style="blog").style_scale(a, f.shape, image_hw) * sum_sq
    assert blog == pytest.approx(np.sum((unnormalised - a * pixels) ** 2) / (36 * 80**2))
    # jcjohnson: Gram / (C H W), then mean squared error over the C x C entries
    mean = Normalisation(style="mean").style_scale(a, f.shape, image_hw) * sum_sq
    assert mean == pytest.approx(np.mean((unnormalised / (channels * pixels) - a / channels) ** 2))
    relative = Normalisation(style="relative").style_scale(a, f.shape, image_hw) * sum_sq
    assert relative == pytest.approx(np.sum((g - a) ** 2) / np.sum(a**2))
    assert Normalisation(content="half").content_scale(f) == 0.5
    assert Normalisation(content="mean").content_scale(f) == 1 / 120
    assert Normalisation(content="relative").content_scale(f) == pytest.approx(1 / np.sum(f**2))
    assert Normalisation(tv_mean=True, tv_factor=0.5).tv_scale((1, 3, 5, 9)) == 0.5 / (3 * 4 * 8)
    with pytest.raises(ValueError, match="style normalisation"):
        Normalisation(style="nope")
    with pytest.raises(ValueError, match="tv_power"):
        Normalisation(tv_power=1.0)


@pytest.mark.parametrize("content,style,tv_power", [("mean", "mean", 2.0), ("half", "gatys", 2.0), ("sum", "blog", 2.5),
                                                    ("relative", "relative", 2.0)])
def test_objective_gradient_matches_finite_differences(float64_gram, content, style, tv_power):
    net = TinyNet()
    rng = np.random.default_rng(6)
    content_x = rng.uniform(-1, 1, (1, 3, 6, 6))
    styles = [rng.uniform(-1, 1, (1, 3, 8, 6)), rng.uniform(-1, 1, (1, 3, 6, 4))]
    objective = StyleObjective(
        net, content_x, styles,
        content_layers=["act2"], style_layers={"act1": 0.5, "act2": 2.0, "conv1": 1.0},
        content_weight=3.0, style_weight=40.0, tv_weight=1e-4,
        normalisation=Normalisation(content=content, style=style, tv_power=tv_power),
        style_blend=[1.0, 3.0], pixel_scale=2.0,
    )
    x = rng.uniform(-1, 1, (1, 3, 6, 6))
    loss, grad, parts = objective(x)
    assert loss == pytest.approx(sum(parts.values()))
    assert min(parts.values()) > 0
    check_gradient(lambda z: objective(z)[0], x, grad, rtol=1e-6)


def test_objective_on_float32_kernels_has_the_right_directional_derivative():
    net = TinyNet(np.float32)
    rng = np.random.default_rng(7)
    content_x = rng.uniform(-1, 1, (1, 3, 10, 10)).astype(np.float32)
    objective = StyleObjective(
        net, content_x, [rng.uniform(-1, 1, (1, 3, 12, 12)).astype(np.float32)],
        content_layers=["act2"], style_layers={"act1": 1.0, "act2": 1.0},
        content_weight=1.0, style_weight=1e3, tv_weight=1e-3, pixel_scale=2.0,
    )
    x = rng.uniform(-1, 1, content_x.shape).astype(np.float32)
    direction = rng.standard_normal(x.shape).astype(np.float32)
    _, grad, _ = objective(x)
    eps = 1e-2
    numeric = (objective(x + eps * direction)[0] - objective(x - eps * direction)[0]) / (2 * eps)
    analytic = float(np.sum(grad.astype(np.float64) * direction))
    assert analytic == pytest.approx(numeric, rel=2e-3)


def test_style_blend_weighs_the_gram_targets():
    net = TinyNet()
    rng = np.random.default_rng(8)
    content_x = rng.uniform(-1, 1, (1, 3, 4, 4))
    s1, s2 = rng.uniform(-1, 1, (2, 1, 3, 6, 6))
    blended = StyleObjective(net, content_x, [s1, s2], content_layers=["act2"], style_layers={"act1": 1},
                             content_weight=1, style_weight=1, tv_weight=0, style_blend=[1, 3])
    g1 = ops.gram(net.forward(s1, ["act1"])["act1"])
    g2 = ops.gram(net.forward(s2, ["act1"])["act1"])
    np.testing.assert_allclose(blended.style_targets["act1"], 0.25 * g1 + 0.75 * g2, rtol=1e-6)
    with pytest.raises(ValueError, match="style_blend: expected 2 weights"):
        StyleObjective(net, content_x, [s1, s2], content_layers=["act2"], style_layers={"act1": 1},
                       content_weight=1, style_weight=1, tv_weight=0, style_blend=[1])
    with pytest.raises(ValueError, match="layers: relu9_9 not in the network"):
        StyleObjective(net, content_x, [s1], content_layers=["relu9_9"], style_layers={"act1": 1},
                       content_weight=1, style_weight=1, tv_weight=0)


def test_objective_through_a_real_vgg_has_the_right_directional_derivative():
    """The same check through deepstyle.models' VGG (random weights, float32 kernels, ReLU
    kinks): the taps' gradients injected in one backward sweep add up to the loss's slope."""
    from deepstyle import models

    net = models.load_feature_net("vgg16", weights="random", pooling="avg", last_layer="relu2_2")
    rng = np.random.default_rng(9)
    content_x, style_x, x = (net.preprocess(rng.uniform(0, 1, (16, 20, 3)).astype(np.float32)) for _ in range(3))
    objective = StyleObjective(
        net, content_x, [style_x], content_layers=["relu2_2"],
        style_layers={"relu1_1": 0.5, "conv1_2": 1.0, "relu2_2": 1.0},
        content_weight=1.0, style_weight=10.0, tv_weight=1e-3,
    )
    _, grad, _ = objective(x)
    direction = rng.standard_normal(x.shape).astype(np.float32)
    eps = 1e-3
    numeric = (objective(x + eps * direction)[0] - objective(x - eps * direction)[0]) / (2 * eps)
    assert float(np.sum(grad.astype(np.float64) * direction)) == pytest.approx(numeric, rel=1e-2)


def test_objective_results_held_across_calls_stay_intact():
    """The losses and the sweep write into arrays of their own (in place): what one call
    returned, its input and the objective's targets must survive the next calls."""
    from deepstyle import models

    net = models.load_feature_net("vgg16", weights="random", pooling="avg", last_layer="relu2_2")
    rng = np.random.default_rng(10)
    content_x, style_x, x1, x2 = (net.preprocess(rng.uniform(0, 1, (16, 20, 3)).astype(np.float32)) for _ in range(4))
    objective = StyleObjective(
        net, content_x, [style_x], content_layers=["relu2_2"], style_layers={"relu1_1": 0.5, "relu2_2": 1.0},
        content_weight=1.0, style_weight=10.0, tv_weight=1e-3,
    )
    held = [x1.copy(), objective.content_targets["relu2_2"].copy(), objective.style_targets["relu1_1"].copy()]
    loss1, grad1, _ = objective(x1)
    grad1_copy = grad1.copy()
    objective(x2)
    loss1_again, grad1_again, _ = objective(x1)
    assert loss1_again == loss1
    np.testing.assert_array_equal(grad1, grad1_copy)
    np.testing.assert_array_equal(grad1_again, grad1_copy)
    for before, now in zip(held, [x1, objective.content_targets["relu2_2"], objective.style_targets["relu1_1"]]):
        np.testing.assert_array_equal(before, now)
