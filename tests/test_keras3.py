"""Keras 3 .weights.h5 files, written here in both VGG layouts (HED's nested blocks with its heads,
and the flat functional model), read back through load_weights (format told by content)."""

import numpy as np
import pytest

from deepstyle import models
from deepstyle.models import WeightsError, arch

h5py = pytest.importorskip("h5py")

RNG = np.random.default_rng(7)
SHAPES = arch.conv_shapes("vgg16")


def random_layers(names):
    return {n: (RNG.standard_normal(SHAPES[n]).astype(np.float32),
                RNG.standard_normal(SHAPES[n][0]).astype(np.float32)) for n in names}


def write_nested(path, layers, heads=True):
    """HED's layout: block{b}/layers/conv2d, conv2d_1, conv2d_2 ... with vars/0 HWIO, vars/1 bias."""
    with h5py.File(path, "w") as f:
        for name, (w, b) in layers.items():
            block, index = int(name[4]), int(name[6])
            layer = "conv2d" if index == 1 else f"conv2d_{index - 1}"
            group = f.create_group(f"block{block}/layers/{layer}/vars")
            group["0"] = w.transpose(2, 3, 1, 0)
            group["1"] = b
            f.require_group(f"block{block}/layers/max_pooling2d/vars")
            f.require_group(f"block{block}/vars")
        if heads:
            for i in range(1, 6):
                f[f"dsn{i}/vars/0"] = np.zeros((1, 1, 64, 1), np.float32)
                f[f"dsn{i}/vars/1"] = np.zeros(1, np.float32)
            f.create_group("vars")


def assert_same(weights, layers):
    assert list(weights.layers) == list(layers)
    for name, (w, b) in layers.items():
        np.testing.assert_array_equal(weights.layers[name][0], w)
        np.testing.assert_array_equal(weights.layers[name][1], b)


def test_nested_layout_with_hed_heads(tmp_path):
    layers = random_layers(["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3"])
    path = tmp_path / "model.bin"  # content, not name
    write_nested(path, layers)
    weights = models.load_weights(path)
    assert_same(weights, layers)
    assert weights.convention == models.CAFFE and weights.source == "Keras 3"
    assert weights.arch is None  # a prefix up to conv3_3 fits both VGGs


def test_nested_layout_tells_vgg16_and_builds_a_network(tmp_path):
    layers = random_layers(["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1"])
    write_nested(tmp_path / "w.weights.h5", layers)
    weights = models.load_weights(tmp_path / "w.weights.h5")
    assert weights.arch == "vgg16"
    net = models.load_feature_net(arch=None, weights=weights, last_layer="relu4_1")
    image = RNG.uniform(0, 1, (16, 16, 3)).astype(np.float32)
    features = net.forward(net.preprocess(image), ["relu1_1"])
    # relu1_1 by hand: BGR, 0-255 minus the Caffe mean, then the first conv
    x = (image[..., ::-1] * 255.0 - np.array([103.939, 116.779, 123.68])).transpose(2, 0, 1)
    w, b = layers["conv1_1"]
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    expected = np.zeros((64, 16, 16))
    for r in range(3):
        for s in range(3):
            expected += np.einsum("kc,chw->khw", w[:, :, r, s], padded[:, r:r + 16, s:s + 16])
    expected = np.maximum(expected + b[:, None, None], 0)
    np.testing.assert_allclose(features["relu1_1"][0], expected, rtol=1e-4, atol=1e-3)


def test_flat_functional_layout(tmp_path):
    layers = random_layers(["conv1_1", "conv1_2", "conv2_1"])
    with h5py.File(tmp_path / "vgg.weights.h5", "w") as f:
        for name, (w, b) in layers.items():
            group = f.create_group(f"layers/block{name[4]}_conv{name[6]}/vars")
            group["0"] = w.transpose(2, 3, 1, 0)
            group["1"] = b
        f.create_group("layers/block1_pool/vars")
    assert_same(models.load_weights(tmp_path / "vgg.weights.h5"), layers)


def test_wrong_shapes_and_missing_vars_name_the_layer(tmp_path):
    layers = random_layers(["conv1_1", "conv1_2"])
    write_nested(tmp_path / "a.h5", layers)
    with h5py.File(tmp_path / "a.h5", "r+") as f:
        del f["block1/layers/conv2d_1/vars/0"]
        f["block1/layers/conv2d_1/vars/0"] = np.zeros((3, 3, 64, 32), np.float32)
    with pytest.raises(WeightsError, match=r"a\.h5: layer conv1_2 \(block1/layers/conv2d_1/vars/0\): "
                                           r"expected shape \(3, 3, 64, 64\), got \(3, 3, 64, 32\)"):
        models.load_weights(tmp_path / "a.h5")
    write_nested(tmp_path / "b.h5", layers)
    with h5py.File(tmp_path / "b.h5", "r+") as f:
        del f["block1/layers/conv2d/vars/1"]
    with pytest.raises(WeightsError, match=r"b\.h5: layer conv1_1 .*no dataset vars/1"):
        models.load_weights(tmp_path / "b.h5")
    with h5py.File(tmp_path / "c.h5", "w") as f:
        for i in range(6):  # block1 with six convolutions
            f[f"block1/layers/conv2d_{i}/vars/0"] = np.zeros((3, 3, 3, 64), np.float32)
    with pytest.raises(WeightsError, match=r"c\.h5: layer conv1_3 .*not a VGG convolution"):
        models.load_weights(tmp_path / "c.h5")


def test_truncated_keras3_file_is_one_line(tmp_path):
    write_nested(tmp_path / "full.h5", random_layers(["conv1_1", "conv1_2", "conv2_1"]))
    data = (tmp_path / "full.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=r"cut\.h5: "):
        models.load_weights(tmp_path / "cut.h5")
