"""Weight loaders: every format written here in its real layout, read back and checked; damaged,
malicious and mismatched files refused with errors naming the file and the layer."""

import collections
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

from deepstyle import models
from deepstyle.models import WeightsError, arch

RNG = np.random.default_rng(0)
SHAPES = arch.conv_shapes("vgg19")


def vgg_prefix(names=("conv1_1", "conv1_2", "conv2_1")):
    """Random VGG-shaped conv weights for the first few layers (tiny files, real shapes)."""
    return {n: (RNG.standard_normal(SHAPES[n]).astype(np.float32),
                RNG.standard_normal(SHAPES[n][0]).astype(np.float32)) for n in names}


def torchvision_state(layers, arch_name="vgg19"):
    index = {name: i for i, name in arch.torchvision_indices(arch_name).items()}
    state = collections.OrderedDict()
    for name, (w, b) in layers.items():
        state[f"features.{index[name]}.weight"] = w
        state[f"features.{index[name]}.bias"] = b
    return state


# --- torch.save layouts, assembled opcode by opcode (protocol 2, as torch writes them) ------


def _str(s):
    data = s.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _int(n):
    return b"J" + struct.pack("<i", n)


def _global(module, name):
    return b"c" + f"{module}\n{name}\n".encode()


def _ints(values):
    return b"(" + b"".join(_int(v) for v in values) + b"t"


def tensor_dict_pickle(entries, legacy):
    """OrderedDict of torch tensors; entries: (key, storage key, storage numel, offset, size, stride)."""
    out = b"\x80\x02" + _global("collections", "OrderedDict") + b")R("
    for key, storage_key, numel, offset, size, stride in entries:
        storage = b"(" + _str("storage") + _global("torch", "FloatStorage") + _str(storage_key) + _str("cpu") + _int(numel)
        storage += (b"N" if legacy else b"") + b"tQ"
        out += _str(key) + _global("torch._utils", "_rebuild_tensor_v2")
        out += b"(" + storage + _int(offset) + _ints(size) + _ints(stride) + b"\x89"
        out += _global("collections", "OrderedDict") + b")R" + b"tR"
    return out + b"u."


def _entries(state):
    entries, blobs = [], {}
    for i, (key, array) in enumerate(state.items()):
        array = np.ascontiguousarray(array, np.float32)
        strides = [s // 4 for s in array.strides]
        entries.append((key, str(i), array.size, 0, array.shape, strides))
        blobs[str(i)] = array.tobytes()
    return entries, blobs


def write_pth_zip(path, state, stem="archive", pickle_bytes=None):
    entries, blobs = _entries(state)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{stem}/data.pkl", pickle_bytes or tensor_dict_pickle(entries, legacy=False))
        z.writestr(f"{stem}/byteorder", "little")
        for key, blob in blobs.items():
            z.writestr(f"{stem}/data/{key}", blob)
        z.writestr(f"{stem}/version", "3\n")


def write_pth_legacy(path, state, pickle_bytes=None):
    entries, blobs = _entries(state)
    with open(path, "wb") as f:
        f.write(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2))
        f.write(pickle.dumps(1001, protocol=2))
        f.write(pickle.dumps({"protocol_version": 1001, "little_endian": True,
                              "type_sizes": {"short": 2, "int": 4, "long": 8}}, protocol=2))
        f.write(pickle_bytes or tensor_dict_pickle(entries, legacy=True))
        f.write(pickle.dumps(sorted(blobs), protocol=2))
        for key in sorted(blobs):
            f.write(struct.pack("<q", len(blobs[key]) // 4) + blobs[key])


def assert_layers_equal(weights, layers):
    assert list(weights.layers) == list(layers)
    for name, (w, b) in layers.items():
        np.testing.assert_array_equal(weights.layers[name][0], w)
        np.testing.assert_array_equal(weights.layers[name][1], b)
        assert weights.layers[name][0].dtype == np.float32


@pytest.mark.parametrize("writer", [write_pth_zip, write_pth_legacy])
def test_torchvision_layouts_load_without_torch(tmp_path, writer):
    layers = vgg_prefix()
    path = tmp_path / "anything.h5"  # the name is ignored: the content says torch
    writer(path, torchvision_state(layers))
    weights = models.load_weights(path)
    assert_layers_equal(weights, layers)
    assert weights.convention == models.TORCHVISION
    assert weights.arch is None  # conv1_1..conv2_1 are the same in VGG16 and VGG19
    assert "torchvision" in weights.description and str(path) in weights.description


def test_torchvision_arch_told_by_feature_indices(tmp_path):
    layers = vgg_prefix(("conv1_1",))
    # VGG16's conv4_1 sits at features.17, VGG19's conv3_4 at features.16 (same shape: 256->256
    # is conv3_x; use a 256-channel weight at 16 to look like VGG19)
    w16 = RNG.standard_normal((256, 256, 3, 3)).astype(np.float32)
    state = torchvision_state(layers)
    state["features.16.weight"], state["features.16.bias"] = w16, np.zeros(256, np.float32)
    path = tmp_path / "v.pth"
    write_pth_zip(path, state)
    weights = models.load_weights(path)
    assert weights.arch == "vgg19" and "conv3_4" in weights.layers
    with pytest.raises(WeightsError, match=r"holds VGG19 weights, but arch='vgg16'"):
        weights.check("vgg16", ["conv1_1"])


def test_strided_and_offset_tensor_views(tmp_path):
    base = RNG.standard_normal(64 * 3 * 3 * 3 + 10).astype(np.float32)
    w = base[10:].reshape(3, 3, 3, 64).transpose(3, 2, 0, 1)  # non-contiguous view at offset 10
    b = RNG.standard_normal(64).astype(np.float32)
    entries = [("features.0.weight", "0", base.size, 10, w.shape, [s // 4 for s in w.strides]),
               ("features.0.bias", "1", 64, 0, (64,), (1,))]
    path = tmp_path / "views.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x/data.pkl", tensor_dict_pickle(entries, legacy=False))
        z.writestr("x/data/0", base.tobytes())
        z.writestr("x/data/1", b.tobytes())
    weights = models.load_weights(path)
    np.testing.assert_array_equal(weights.layers["conv1_1"][0], w)


def test_against_torch_save(tmp_path):
    torch = pytest.importorskip("torch")
    layers = vgg_prefix()
    state = collections.OrderedDict((k, torch.from_numpy(v.copy())) for k, v in torchvision_state(layers).items())
    state["features.0.weight"] = state["features.0.weight"].permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)
    state["classifier.0.weight"] = torch.zeros(4, 4)
    for legacy in (False, True):
        path = tmp_path / f"torch-{legacy}.pth"
        torch.save(state, path, _use_new_zipfile_serialization=not legacy)
        assert_layers_equal(models.load_weights(path), layers)
    torch.save(state, tmp_path / "p4.pth", _use_new_zipfile_serialization=False, pickle_protocol=4)
    assert_layers_equal(models.load_weights(tmp_path / "p4.pth"), layers)
    params = collections.OrderedDict((k, torch.nn.Parameter(v)) for k, v in state.items())
    torch.save({"state_dict": params}, tmp_path / "wrapped.pth")
    assert_layers_equal(models.load_weights(tmp_path / "wrapped.pth"), layers)


# --- malicious, damaged, mismatched ------------------------------------------------------------


def _evil_pickle(marker):
    return b"\x80\x02" + _global("os", "system") + _str(f"touch {marker}") + b"\x85R."


@pytest.mark.parametrize("writer", [write_pth_zip, write_pth_legacy])
def test_malicious_pickle_is_refused_without_running(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    writer(path, torchvision_state(vgg_prefix(("conv1_1",))), pickle_bytes=_evil_pickle(marker))
    with pytest.raises(WeightsError, match=r"evil\.pth: refused to load.*'os\.system'"):
        models.load_weights(path)
    assert not marker.exists()


def test_malicious_global_inside_a_tensor_is_refused(tmp_path):
    entries, _ = _entries(torchvision_state(vgg_prefix(("conv1_1",))))
    data = tensor_dict_pickle(entries, legacy=False).replace(
        _global("torch", "FloatStorage"), _global("builtins", "eval"))
    path = tmp_path / "evil2.pth"
    write_pth_zip(path, torchvision_state(vgg_prefix(("conv1_1",))), pickle_bytes=data)
    with pytest.raises(WeightsError, match="'builtins.eval'"):
        models.load_weights(path)


def test_truncated_files_name_the_file(tmp_path):
    path = tmp_path / "full.pth"
    write_pth_zip(path, torchvision_state(vgg_prefix()))
    data = path.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=r"cut\.pth: truncated or corrupt zip"):
        models.load_weights(cut)
    legacy = tmp_path / "legacy.pth"
    write_pth_legacy(legacy, torchvision_state(vgg_prefix()))
    data = legacy.read_bytes()
    for size, message in ((40, "corrupt or truncated pickle"), (len(data) - 100, r"layer conv2_1 .*truncated")):
        (tmp_path / "short.pth").write_bytes(data[:size])
        with pytest.raises(WeightsError, match=message):
            models.load_weights(tmp_path / "short.pth")


def test_storage_shorter_than_tensor_names_the_layer(tmp_path):
    layers = vgg_prefix(("conv1_1", "conv1_2"))
    entries, blobs = _entries(torchvision_state(layers))
    path = tmp_path / "short.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("a/data.pkl", tensor_dict_pickle(entries, legacy=False))
        for key, blob in blobs.items():
            z.writestr(f"a/data/{key}", blob[: len(blob) // 2] if key == "2" else blob)
    with pytest.raises(WeightsError, match=r"short\.pth: layer conv1_2 \(features\.2\.weight\).*truncated"):
        models.load_weights(path)


def test_wrong_shapes_name_file_and_layer(tmp_path):
    layers = vgg_prefix(("conv1_1", "conv1_2"))
    layers["conv1_2"] = (np.zeros((64, 64, 5, 5), np.float32), np.zeros(64, np.float32))
    path = tmp_path / "bad.pth"
    write_pth_zip(path, torchvision_state(layers))
    with pytest.raises(WeightsError, match=r"bad\.pth: layer conv1_2: expected weight \(64, 64, 3, 3\)"):
        models.load_feature_net("vgg19", weights=str(path), last_layer="relu1_2")
    # a file holding only a prefix serves a shallow network, and names what a deeper one lacks
    assert models.load_feature_net("vgg19", weights=str(path), last_layer="relu1_1").layer_names == ["conv1_1", "relu1_1"]
    good = tmp_path / "good.pth"
    write_pth_zip(good, torchvision_state(vgg_prefix(("conv1_1", "conv1_2"))))
    with pytest.raises(WeightsError, match=r"good\.pth: layer conv2_1: missing"):
        models.load_feature_net("vgg19", weights=str(good), last_layer="conv2_1")


def test_a_plain_pickle_is_not_taken_for_weights(tmp_path):
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(WeightsError, match=r"list\.pkl: not a torch\.save file"):
        models.load_weights(tmp_path / "list.pkl")


def test_unknown_and_unreadable_files(tmp_path):
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(WeightsError, match=r"text\.pth: unknown weights format"):
        models.load_weights(tmp_path / "text.pth")
    with pytest.raises(WeightsError, match=r"missing\.pth: cannot read"):
        models.load_weights(tmp_path / "missing.pth")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("readme.txt", "x")
    with pytest.raises(WeightsError, match="neither a torch.save file nor an .npz"):
        models.load_weights(tmp_path / "other.zip")


# --- MatConvNet, Keras, npz -------------------------------------------------------------------


def _matconvnet_layers(layers):
    cells = []
    for name, (w, b) in layers.items():
        weights = np.empty((1, 2), dtype=object)
        weights[0, 0] = w.transpose(2, 3, 1, 0)  # (K, C, h, w) -> MatConvNet's (h, w, in, out)
        weights[0, 1] = b.reshape(-1, 1)
        cells.append({"name": name, "type": "conv", "weights": weights, "pad": np.ones((1, 4)),
                      "stride": np.ones((1, 2))})
        cells.append({"name": name.replace("conv", "relu"), "type": "relu"})
    cells.append({"name": "fc6", "type": "conv", "weights": np.empty((1, 2), dtype=object)})
    cells[-1]["weights"][0, 0] = np.zeros((7, 7, 2, 3), np.float32)
    cells[-1]["weights"][0, 1] = np.zeros((3, 1), np.float32)
    array = np.empty((1, len(cells)), dtype=object)
    for i, cell in enumerate(cells):
        array[0, i] = cell
    return array


@pytest.mark.parametrize("layout", ["meta", "top-level"])
def test_matconvnet_mat(tmp_path, layout):
    scipy_io = pytest.importorskip("scipy.io")
    layers = vgg_prefix()
    average = np.broadcast_to(np.array([120.0, 110.0, 100.0]), (4, 4, 3))
    normalization = {"averageImage": average, "imageSize": np.array([224, 224, 3])}
    content = {"layers": _matconvnet_layers(layers)}
    if layout == "meta":
        content["meta"] = {"normalization": normalization}
    else:
        content["normalization"] = normalization
    path = tmp_path / "net.bin"
    scipy_io.savemat(path, content)
    weights = models.load_weights(path)
    assert_layers_equal(weights, layers)
    assert weights.source == "MatConvNet"
    assert weights.convention.channel_order == "RGB" and weights.convention.scale == 255.0
    np.testing.assert_allclose(weights.convention.mean, (120.0, 110.0, 100.0))


@pytest.mark.parametrize("naming", ["keras1", "keras2"])
def test_keras_h5(tmp_path, naming):
    h5py = pytest.importorskip("h5py")
    layers = vgg_prefix()
    path = tmp_path / "weights.pth"  # content, not name
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"input_1"] + [f"block{n[4]}_conv{n[6]}".encode() for n in layers]
        f.create_group("input_1").attrs["weight_names"] = []
        for name, (w, b) in layers.items():
            group_name = f"block{name[4]}_conv{name[6]}"
            group = f.create_group(group_name)
            if naming == "keras1":
                keys = [f"{group_name}_W_1:0", f"{group_name}_b_1:0"]
            else:
                keys = [f"{group_name}/kernel:0", f"{group_name}/bias:0"]
            group.attrs["weight_names"] = [k.encode() for k in keys]
            group[keys[0]] = w.transpose(2, 3, 1, 0)  # HWIO
            group[keys[1]] = b
    weights = models.load_weights(path)
    assert_layers_equal(weights, layers)
    assert weights.convention == models.CAFFE


def test_npz_round_trip_keeps_convention(tmp_path):
    layers = vgg_prefix()
    weights = models.Weights(layers, models.CAFFE, "Keras", "x.h5")
    path = tmp_path / "vgg19.npz"
    models.save_weights(weights, path)
    loaded = models.load_weights(path)
    assert_layers_equal(loaded, layers)
    assert loaded.convention == models.CAFFE
    assert loaded.source == "deepstyle (from Keras)"
    assert [p.name for p in tmp_path.iterdir()] == ["vgg19.npz"]  # no temporary left behind


def test_npz_without_convention_or_with_odd_arrays(tmp_path):
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(WeightsError, match="without 'input_convention'"):
        models.load_weights(tmp_path / "plain.npz")
    np.savez(tmp_path / "odd.npz", input_convention=np.array(models.TORCHVISION.to_json()),
             **{"conv9_9.weight": np.zeros((1, 1, 3, 3)), "conv9_9.bias": np.zeros(1)})
    with pytest.raises(WeightsError, match=r"odd\.npz: layer conv9_9: not a VGG convolution"):
        models.load_weights(tmp_path / "odd.npz")


# --- conventions and finding files ------------------------------------------------------------


@pytest.mark.parametrize("convention", [models.TORCHVISION, models.CAFFE])
def test_conventions_preprocess_and_invert(convention):
    image = RNG.uniform(0, 1, (5, 7, 3)).astype(np.float32)
    x = convention.preprocess(image)
    assert x.shape == (1, 3, 5, 7) and x.dtype == np.float32 and x.flags.c_contiguous
    order = [2, 1, 0] if convention.channel_order == "BGR" else [0, 1, 2]
    for c in range(3):
        expected = (image[:, :, order[c]] * convention.scale - convention.mean[c]) / convention.std[c]
        np.testing.assert_allclose(x[0, c], expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(convention.deprocess(x), image, atol=1e-5)
    assert convention.deprocess(x + 1e4).max() == 1.0
    with pytest.raises(ValueError, match=r"image: expected an \(H, W, 3\)"):
        convention.preprocess(image[:, :, :2])


def test_find_weights_order(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DEEPSTYLE_WEIGHTS", raising=False)
    assert models.find_weights() is None
    cache = tmp_path / "cache" / "deepstyle"
    cache.mkdir(parents=True)
    (cache / "imagenet-vgg-verydeep-19.mat").write_bytes(b"x")
    assert models.find_weights() == cache / "imagenet-vgg-verydeep-19.mat"
    assert models.find_weights(arch="vgg16") is None
    explicit = tmp_path / "mine.pth"
    explicit.write_bytes(b"x")
    monkeypatch.setenv("DEEPSTYLE_WEIGHTS", str(explicit))
    assert models.find_weights() == explicit
    assert models.find_weights(cache / "imagenet-vgg-verydeep-19.mat") == cache / "imagenet-vgg-verydeep-19.mat"
    monkeypatch.setenv("DEEPSTYLE_WEIGHTS", str(tmp_path / "nope.pth"))
    with pytest.raises(WeightsError, match=r"DEEPSTYLE_WEIGHTS=.*nope\.pth: no such file"):
        models.find_weights()
    monkeypatch.setenv("DEEPSTYLE_WEIGHTS", str(cache))
    assert models.find_weights() == cache / "imagenet-vgg-verydeep-19.mat"
    os.remove(cache / "imagenet-vgg-verydeep-19.mat")
    with pytest.raises(WeightsError, match="directory holds none of"):
        models.find_weights()


def test_truncated_mat_and_h5_and_missing_h5py(tmp_path, monkeypatch):
    scipy_io = pytest.importorskip("scipy.io")
    h5py = pytest.importorskip("h5py")
    scipy_io.savemat(tmp_path / "full.mat", {"layers": _matconvnet_layers(vgg_prefix())})
    data = (tmp_path / "full.mat").read_bytes()
    (tmp_path / "cut.mat").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=r"cut\.mat: corrupt or truncated \.mat file"):
        models.load_weights(tmp_path / "cut.mat")
    with h5py.File(tmp_path / "full.h5", "w") as f:
        f["block1_conv1/block1_conv1_W_1:0"] = np.zeros((3, 3, 3, 64), np.float32)
        f["block1_conv1/block1_conv1_b_1:0"] = np.zeros(64, np.float32)
    data = (tmp_path / "full.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[:1200])
    with pytest.raises(WeightsError, match=r"cut\.h5: corrupt or truncated HDF5"):
        models.load_weights(tmp_path / "cut.h5")
    monkeypatch.setitem(__import__("sys").modules, "h5py", None)
    with pytest.raises(WeightsError, match=r"full\.h5: reading Keras \.h5 weights needs h5py"):
        models.load_weights(tmp_path / "full.h5")
