"""Feature networks: VGG forward against a float64 NumPy reference, the tapped backward sweep
against float64 finite differences, truncation, random networks, and the no-weights fallback."""

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from deepstyle import models
from deepstyle.models import arch

RNG = np.random.default_rng(1)
SHAPES = arch.conv_shapes("vgg19")
PREFIX = ("conv1_1", "conv1_2", "conv2_1")


def prefix_weights():
    layers = {n: (RNG.standard_normal(SHAPES[n]).astype(np.float32) * np.float32(np.sqrt(2 / np.prod(SHAPES[n][1:]))),
                  RNG.standard_normal(SHAPES[n][0]).astype(np.float32) * np.float32(0.1)) for n in PREFIX}
    return models.Weights(layers, models.TORCHVISION, "test", "prefix.npz")


# --- an independent float64 reference --------------------------------------------------------


def conv_ref(x, w, b):
    windows = sliding_window_view(np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))), (3, 3), axis=(2, 3))
    return np.einsum("nchwrs,kcrs->nkhw", windows, w.astype(np.float64)) + b[None, :, None, None]


def pool_ref(x, pooling):
    n, c, h, w = x.shape
    blocks = x[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2)
    return blocks.mean(axis=(3, 5)) if pooling == "avg" else blocks.max(axis=(3, 5))


def reference_features(x, weights, pooling, taps):
    features = {}
    for name, kind, _ in arch.layer_specs("vgg19"):
        if kind == "conv":
            x = conv_ref(x, *weights.layers[name])
        elif kind == "relu":
            x = np.maximum(x, 0)
        else:
            x = pool_ref(x, pooling)
        features[name] = x
        if all(t in features for t in taps):
            return features


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_vgg_forward_matches_reference(pooling):
    weights = prefix_weights()
    net = models.load_feature_net("vgg19", weights=weights, pooling=pooling, last_layer="relu2_1")
    assert net.layer_names == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1", "conv2_1", "relu2_1"]
    x = RNG.standard_normal((1, 3, 11, 14)).astype(np.float32)
    taps = ["conv1_2", "pool1", "relu2_1"]
    ours = net.forward(x, taps)
    ref = reference_features(x.astype(np.float64), weights, pooling, taps)
    assert set(ours) == set(taps)
    for name in taps:
        np.testing.assert_allclose(ours[name], ref[name], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_tapped_backward_matches_float64_finite_differences(pooling):
    weights = prefix_weights()
    net = models.load_feature_net("vgg19", weights=weights, pooling=pooling, last_layer="relu2_1")
    x = RNG.standard_normal((1, 3, 10, 12))
    taps = ["relu1_1", "conv1_2", "pool1", "relu2_1"]
    shapes = {name: f.shape for name, f in reference_features(x, weights, pooling, taps).items() if name in taps}
    grads = {name: RNG.standard_normal(shape) for name, shape in shapes.items()}

    def loss(image):  # L = sum over taps of <g_t, f_t(image)>, whose gradient the sweep computes
        feats = reference_features(image, weights, pooling, taps)
        return sum(float(np.sum(grads[t] * feats[t])) for t in taps)

    net.forward(x.astype(np.float32), taps)
    grad_x = net.backward({name: g.astype(np.float32) for name, g in grads.items()})
    assert grad_x.shape == x.shape
    eps = 1e-5
    for _ in range(3):
        v = RNG.standard_normal(x.shape)
        numeric = (loss(x + eps * v) - loss(x - eps * v)) / (2 * eps)
        assert np.sum(grad_x * v) == pytest.approx(numeric, rel=2e-3)


def test_backward_from_a_subset_of_taps_and_cache_release():
    net = models.load_feature_net("vgg19", weights=prefix_weights(), last_layer="relu2_1")
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    feats = net.forward(x, ["relu1_1", "relu2_1"])
    g = RNG.standard_normal(feats["relu1_1"].shape).astype(np.float32)
    g_copy = g.copy()
    only_shallow = net.backward({"relu1_1": g})
    np.testing.assert_array_equal(g, g_copy)  # the caller's gradient is not written to
    assert all(getattr(layer, "_saved", None) is None for _, layer in net._layers)
    net.forward(x, ["relu1_1"])
    np.testing.assert_allclose(net.backward({"relu1_1": g}), only_shallow, rtol=1e-6)
    with pytest.raises(RuntimeError, match="call forward first"):
        net.backward({"relu1_1": g})


def test_in_place_relus_leave_every_array_a_caller_holds_intact():
    # the ReLUs rectify untapped convolution outputs and the sweep's own gradients in place:
    # tapped pre-activations, returned features, the input and the caller's gradients must
    # survive that, across calls of different sizes
    weights = prefix_weights()
    net = models.load_feature_net("vgg19", weights=weights, last_layer="relu2_1")
    taps = ["conv1_1", "relu1_1", "relu1_2", "relu2_1"]
    held = []
    for shape in [(1, 3, 9, 11), (1, 3, 6, 7), (1, 3, 9, 11)]:
        rng = np.random.default_rng(shape)  # the same image and gradients for the same size
        x = rng.standard_normal(shape).astype(np.float32)
        x_copy = x.copy()
        feats = net.forward(x, taps)
        ref = reference_features(x.astype(np.float64), weights, "avg", taps)
        for name in taps:
            np.testing.assert_allclose(feats[name], ref[name], rtol=1e-4, atol=1e-4)
        assert feats["conv1_1"].min() < 0  # the pre-activation, not rectified under the tap
        grads = {name: rng.standard_normal(feats[name].shape).astype(np.float32) for name in ("relu1_2", "relu2_1")}
        grads_copy = {name: g.copy() for name, g in grads.items()}
        grad_x = net.backward(grads)
        np.testing.assert_array_equal(x, x_copy)
        for name in grads:
            np.testing.assert_array_equal(grads[name], grads_copy[name])
        held.append((feats, {name: f.copy() for name, f in feats.items()}, grad_x, grad_x.copy()))
    for feats, feats_copy, grad_x, grad_copy in held:  # nothing returned earlier was reused
        for name in taps:
            np.testing.assert_array_equal(feats[name], feats_copy[name])
        np.testing.assert_array_equal(grad_x, grad_copy)
    np.testing.assert_array_equal(held[0][2], held[2][2])  # same image, same size: same gradient


def test_layers_after_the_deepest_tap_do_not_run():
    net = models.load_feature_net("vgg19", weights=prefix_weights(), last_layer="relu2_1")

    def boom(x):
        raise AssertionError("a layer after the deepest tap ran")

    dict(net._layers)["conv2_1"].forward = boom
    net.forward(np.zeros((1, 3, 4, 4), np.float32), ["relu1_2"])
    assert net.backward({"relu1_2": np.ones((1, 64, 4, 4), np.float32)}).shape == (1, 3, 4, 4)


def test_bad_taps_sizes_and_gradients_are_clear_errors():
    net = models.load_feature_net("vgg19", weights=prefix_weights(), last_layer="relu2_1")
    assert net.min_size == 2
    with pytest.raises(ValueError, match=r"taps: 'relu5_1' not in the network"):
        net.forward(np.zeros((1, 3, 8, 8), np.float32), ["relu5_1"])
    with pytest.raises(ValueError, match=r"x: expected height and width of at least 2 pixels for layers up to relu2_1, got 1x5"):
        net.forward(np.zeros((1, 3, 1, 5), np.float32), ["relu2_1"])
    with pytest.raises(ValueError, match=r"x: expected a \(N, 3, H, W\)"):
        net.forward(np.zeros((3, 8, 8), np.float32), ["relu1_1"])
    net.forward(np.zeros((1, 3, 8, 8), np.float32), ["relu1_1"])
    with pytest.raises(ValueError, match=r"grads\['relu1_1'\]: expected shape \(1, 64, 8, 8\)"):
        net.backward({"relu1_1": np.zeros((1, 64, 4, 4), np.float32)})
    with pytest.raises(ValueError, match="last_layer: expected a layer of vgg16"):
        models.load_feature_net("vgg16", weights="random-vgg", last_layer="conv3_4")
    with pytest.raises(ValueError, match="pooling: expected 'avg' or 'max'"):
        models.load_feature_net(weights="random-vgg", pooling="median")
    with pytest.raises(ValueError, match="arch: expected one of vgg16, vgg19"):
        models.load_feature_net(arch="vgg11")


def test_arch_none_follows_the_weights():
    weights = prefix_weights()
    weights.arch = "vgg16"
    net = models.load_feature_net(arch=None, weights=weights, last_layer="relu1_2")
    assert net.description.startswith("VGG16")
    with pytest.raises(models.WeightsError, match="holds VGG16 weights, but arch='vgg19'"):
        models.load_feature_net(arch="vgg19", weights=weights, last_layer="relu1_2")
    with pytest.raises(ValueError, match="weights: expected a path, None, 'random'"):
        models.load_feature_net(weights="random-forest")


def test_layer_names_and_min_size():
    assert len(models.layer_names("vgg19")) == 16 * 2 + 5 and len(models.layer_names("vgg16")) == 13 * 2 + 5
    assert models.layer_names("vgg16")[-3:] == ["conv5_3", "relu5_3", "pool5"]
    net = models.load_feature_net("vgg16", weights="random-vgg", last_layer="relu3_1", pooling="max")
    assert net.layer_names[-1] == "relu3_1" and net.min_size == 4
    assert "random" in net.description and "max pooling" in net.description
    assert net.default_layers is None  # VGG names: the style presets choose


# --- random networks --------------------------------------------------------------------------


def test_random_vgg_is_seeded_and_calibrated():
    a = models.load_feature_net(weights="random-vgg", last_layer="relu3_1", seed=3)
    b = models.load_feature_net(weights="random-vgg", last_layer="relu3_1", seed=3)
    c = models.load_feature_net(weights="random-vgg", last_layer="relu3_1", seed=4)
    wa, wb, wc = (dict(n._layers)["conv3_1"].weight for n in (a, b, c))
    np.testing.assert_array_equal(wa, wb)
    assert not np.allclose(wa, wc)
    convs = [n for n in a.layer_names if n.startswith("conv")]
    calibration = a.preprocess(models.random_features.pink_noise_image(128, seed=3))
    for name, f in a.forward(calibration, convs).items():
        assert np.sqrt(np.mean(f.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3), name
    other = a.preprocess(models.random_features.pink_noise_image(96, seed=11))
    for name, f in a.forward(other, convs).items():
        assert 0.3 < np.sqrt(np.mean(f.astype(np.float64) ** 2)) < 3.0, name


def test_random_multiscale_forward_backward():
    net = models.load_feature_net(weights="random-multiscale", seed=2)
    assert net.layer_names[:2] == ["conv_k3", "relu_k3"] and net.min_size == 8
    assert set(net.default_layers["style"]) <= set(net.layer_names)
    x = RNG.standard_normal((1, 3, 16, 24))
    taps = ["relu_k5", "conv_k15", "relu_k55"]
    feats = net.forward(x.astype(np.float32), taps)
    assert feats["relu_k55"].shape == (1, 128, 2, 3) and feats["conv_k15"].shape == (1, 128, 8, 12)
    grads = {name: RNG.standard_normal(f.shape) for name, f in feats.items()}
    grad_x = net.backward({n: g.astype(np.float32) for n, g in grads.items()})

    def low_pass_half(image):  # [1 2 1] x [1 2 1] / 16 on each channel, stride 2, zero padding 1
        binomial = np.outer([1, 2, 1], [1, 2, 1]) / 16
        windows = sliding_window_view(np.pad(image, ((0, 0), (0, 0), (1, 1), (1, 1))), (3, 3), axis=(2, 3))
        return np.einsum("nchwrs,rs->nchw", windows[:, :, ::2, ::2], binomial)

    def branch(image, size, relu):
        conv = net._branches[size].conv
        for _ in net._branches[size].pools:
            image = low_pass_half(image)
        k = conv.weight.shape[-1]
        windows = sliding_window_view(np.pad(image, ((0, 0), (0, 0), (k // 2,) * 2, (k // 2,) * 2)), (k, k), axis=(2, 3))
        y = np.einsum("nchwrs,kcrs->nkhw", windows, conv.weight.astype(np.float64))
        return np.maximum(y, 0) if relu else y

    def loss(image):
        return sum(float(np.sum(grads[name] * branch(image, int(name.split("_k")[1]), name.startswith("relu"))))
                   for name in taps)

    eps = 1e-5
    for _ in range(2):
        v = RNG.standard_normal(x.shape)
        numeric = (loss(x + eps * v) - loss(x - eps * v)) / (2 * eps)
        assert np.sum(grad_x * v) == pytest.approx(numeric, rel=2e-3)
    again = models.load_feature_net(weights="random-multiscale", seed=2)
    np.testing.assert_array_equal(again._branches[55].conv.weight, net._branches[55].conv.weight)
    with pytest.raises(ValueError, match="at least 8 pixels"):
        net.forward(np.zeros((1, 3, 7, 7), np.float32), ["relu_k55"])


# --- finding weights or falling back ----------------------------------------------------------


def test_fallback_to_random_is_announced_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("DEEPSTYLE_WEIGHTS", raising=False)
    monkeypatch.setattr(models, "_told_about_fallback", False)
    first = models.load_feature_net(weights=None, last_layer="relu1_1")
    second = models.load_feature_net(weights=None, last_layer="relu1_1")
    err = capsys.readouterr().err
    assert err.count("no VGG19 weights found") == 1 and models.DEFAULT_RANDOM in err
    assert first.description == second.description and "random" in first.description
    assert first.layer_names[0] == "conv_k3"  # the default random network is the multi-scale one
    assert models.load_feature_net(weights="random", last_layer="relu1_1").layer_names == ["conv1_1", "relu1_1"]


def test_weights_found_in_cache_are_used(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("DEEPSTYLE_WEIGHTS", raising=False)
    (tmp_path / "deepstyle").mkdir()
    weights = prefix_weights()
    models.save_weights(weights, tmp_path / "deepstyle" / "vgg19.npz")
    net = models.load_feature_net(weights=None, last_layer="relu2_1")
    assert "vgg19.npz" in net.description
    x = RNG.standard_normal((1, 3, 6, 6)).astype(np.float32)
    expected = reference_features(x.astype(np.float64), weights, "avg", ["relu2_1"])["relu2_1"]
    np.testing.assert_allclose(net.forward(x, ["relu2_1"])["relu2_1"], expected, rtol=1e-4, atol=1e-4)
