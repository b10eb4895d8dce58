"""Crafted weights files, one per class of attack: each is refused in one line naming the file,
fast, and without allocating more than the layer it claims to hold. Loads run in a subprocess
under a 4 GB address-space limit, with the growth of its peak resident memory recorded."""

from __future__ import annotations

import io
import json
import struct
import zipfile

import numpy as np
import pytest

from deepstyle.models import WeightsError, bounded, load_weights
from test_weights import (_global, _int, _ints, _str, tensor_dict_pickle, torchvision_state, vgg_prefix,
                          write_pth_legacy, write_pth_zip)

LOADER = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
from deepstyle.models import load_weights
results = {}
for path in sys.argv[1:]:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        load_weights(path)
        outcome, message = "ok", ""
    except ValueError as exc:
        outcome, message = type(exc).__name__, str(exc)
    except BaseException as exc:
        outcome, message = type(exc).__name__, repr(exc)[:300]
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    results[path] = (outcome, message, grown)
print(json.dumps(results))
"""

MAX_GROWTH_MB = 60  # the largest legitimate read below is one conv1_2 layer (147 KB)
BOMB_BYTES = 100 << 20  # what a zip bomb inflates to: reading it whole would show as growth


def load_limited(run_python, paths):
    result = run_python("-c", LOADER, *map(str, paths))
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def _long(n):
    data = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data


def tower(depth, first_memo=0):
    """A tuple of depth ``depth`` whose levels share their parts: (t, t) of (t, t) of ... --
    hashing, printing or comparing it naively takes 2**depth steps."""
    out = b"K\x01\x85" + b"r" + struct.pack("<I", first_memo)
    for level in range(1, depth):
        get = b"j" + struct.pack("<I", first_memo + level - 1)
        out += b"0" + get + get + b"\x86" + b"r" + struct.pack("<I", first_memo + level)
    return out


def one_tensor_pickle(suffix=b"", size=(64, 3, 3, 3), stride=(27, 9, 3, 1), numel=1728, offset=0):
    """An OrderedDict {features.0.weight: tensor, features.0.bias: a good tensor} whose weight is
    followed by ``suffix`` opcodes."""
    storage = b"(" + _str("storage") + _global("torch", "FloatStorage") + _str("0") + _str("cpu") + _long(numel) + b"tQ"
    ints = lambda values: b"(" + b"".join(_long(v) for v in values) + b"t"  # noqa: E731
    tensor = _global("torch._utils", "_rebuild_tensor_v2") + b"(" + storage + _long(offset) + ints(size) \
        + ints(stride) + b"\x89" + _global("collections", "OrderedDict") + b")RtR"
    prefix = b"\x80\x02" + _global("collections", "OrderedDict") + b")R("
    bias = tensor_dict_pickle([("features.0.bias", "1", 64, 0, (64,), (1,))], legacy=False)[len(prefix):-2]
    return b"\x80\x02" + _global("collections", "OrderedDict") + b")R" + _str("features.0.weight") + tensor \
        + suffix + b"s" + bias + b"s."


def pth_with_pickle(path, data, blob=b"\0" * 6912):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("a/data.pkl", data)
        z.writestr("a/data/0", blob)
        z.writestr("a/data/1", b"\0" * 256)
    return path


def deflated_zeros_member(z, name, nbytes, prefix=b""):
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with z.open(info, "w", force_zip64=True) as member:
        member.write(prefix)
        chunk = b"\0" * (1 << 22)
        for _ in range(nbytes // len(chunk)):
            member.write(chunk)
        member.write(chunk[: nbytes % len(chunk)])


def patched_zip(path, field, value):
    """Rewrite a header field of every member (local header offset, central offset, size)."""
    data = bytearray(path.read_bytes())
    offsets = {"method": (8, 10), "flags": (6, 8)}[field]
    for signature, offset in zip((b"PK\x03\x04", b"PK\x01\x02"), offsets):
        at = data.find(signature)
        while at >= 0:
            struct.pack_into("<H", data, at + offset, value)
            at = data.find(signature, at + 4)
    path.write_bytes(bytes(data))
    return path


def crafted_pth_files(tmp_path):
    """name -> (path, a fragment the error must contain); an empty fragment means it must load."""
    files = {}
    set_state = lambda key, value: b"N}" + _str(key) + value + b"s\x86b"  # noqa: E731  (None, {key: value}) BUILD
    files["build-stride"] = (one_tensor_pickle(set_state("stride", _ints((-10**9, 1, 1, 1)))), "BUILD on a LazyTensor")
    files["build-offset"] = (one_tensor_pickle(set_state("offset", _int(-1000))), "BUILD on a LazyTensor")
    files["setitem-on-tensor"] = (one_tensor_pickle(_str("stride") + _int(0) + b"s"), "modifies a LazyTensor")
    files["tower-key"] = (b"\x80\x02}" + tower(60) + b"K\x00s.", "levels deep")
    files["shallow-tower-key"] = (b"\x80\x02}" + tower(30) + b"K\x00s.", "tuple as a dict key")
    files["tower-persistent-id"] = (b"\x80\x02" + tower(60) + b"Q.", "levels deep")
    storage_key = b"(" + _str("storage") + _global("torch", "FloatStorage") + tower(30, 10) + _str("cpu") + _int(9) + b"tQ."
    files["tower-storage-key"] = (b"\x80\x02" + storage_key, "malformed storage record")
    files["stride-zero-giant"] = (one_tensor_pickle(size=(23170, 23170), stride=(0, 0)), "more than any VGG layer")
    files["size-2-70"] = (one_tensor_pickle(size=(2**70,), stride=(1,)), "non-negative ints")
    files["offset-outside"] = (one_tensor_pickle(offset=10**6), "past the end of its storage")
    files["spread-out"] = (one_tensor_pickle(size=(64, 3, 3, 3), stride=(10**6, 1, 1, 1), numel=10**8), "spread over")
    files["object-bomb"] = (b"\x80\x02]" + b"(" + b"N" * 300_000 + b"e.", "more than 200000 objects")
    files["frozenset"] = (b"\x80\x04\x8f(K\x01\x90.", "opcode EMPTY_SET")
    paths = {}
    for name, (data, expected) in files.items():
        paths[name] = (pth_with_pickle(tmp_path / f"{name}.pth", data), expected)
    # storages declared far larger than the file, and zip members that inflate far beyond their use
    legacy = tmp_path / "legacy-huge-numel.pth"
    write_pth_legacy(legacy, torchvision_state(vgg_prefix(("conv1_1",))),
                     pickle_bytes=one_tensor_pickle(numel=10**12).replace(b"tQ", b"NtQ"))
    paths["legacy-huge-numel"] = (legacy, "holds 1728 elements, expected 1000000000000")
    bomb = tmp_path / "storage-bomb.pth"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a/data.pkl", one_tensor_pickle(numel=BOMB_BYTES // 4 + 1728, offset=BOMB_BYTES // 4))
        deflated_zeros_member(z, "a/data/0", BOMB_BYTES + 6912)
        z.writestr("a/data/1", b"\0" * 256)
    paths["storage-bomb"] = (bomb, "")  # valid: only the tensor's 7 KB are kept
    byteorder = tmp_path / "byteorder-bomb.pth"
    with zipfile.ZipFile(byteorder, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a/data.pkl", one_tensor_pickle())
        deflated_zeros_member(z, "a/byteorder", BOMB_BYTES)
        z.writestr("a/data/0", b"\0" * 6912)
        z.writestr("a/data/1", b"\0" * 256)
    paths["byteorder-bomb"] = (byteorder, "expected at most 16")
    for field, value, expected in (("method", 98, "compression method 98"), ("flags", 1, "is encrypted")):
        path = tmp_path / f"zip-{field}.pth"
        write_pth_zip(path, torchvision_state(vgg_prefix(("conv1_1",))))
        paths[f"zip-{field}"] = (patched_zip(path, field, value), expected)
    return paths


def write_npz(path, arrays):
    """An .npz from raw (name, header dict, data bytes), written member by member."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, array in arrays.items():
            if isinstance(array, np.ndarray):
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, array, allow_pickle=False)
                z.writestr(name + ".npy", buffer.getvalue())
            else:
                header, data = array
                buffer = io.BytesIO()
                np.lib.format.write_array_header_1_0(buffer, header)
                z.writestr(name + ".npy", buffer.getvalue() + data)
    return path


def convention_json(**changes):
    fields = {"channel_order": "RGB", "scale": 1.0, "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2], "name": "x"}
    fields.update(changes)
    return json.dumps(fields)


def crafted_npz_files(tmp_path):
    layer = {"conv1_1.weight": np.zeros((64, 3, 3, 3), np.float32), "conv1_1.bias": np.zeros(64, np.float32)}
    files = {
        "npz-giant-header": ({"input_convention": np.array(convention_json()),
                              "conv1_1.weight": ({"descr": "<f4", "fortran_order": False, "shape": (10**5, 10**5)}, b""),
                              "conv1_1.bias": layer["conv1_1.bias"]}, "more than any VGG layer"),
        "npz-structured": ({"input_convention": np.array(convention_json()),
                            "conv1_1.weight": np.zeros(4, [("a", "<f4"), ("b", "<i4")]),
                            "conv1_1.bias": layer["conv1_1.bias"]}, "unsupported dtype"),
        "npz-nan-mean": ({"input_convention": np.array(convention_json(mean=[float("nan"), 0, 0])), **layer},
                         "finite"),
        "npz-tiny-std": ({"input_convention": np.array(convention_json(std=[1e-300, 1, 1])), **layer}, "at most"),
        "npz-inf-scale": ({"input_convention": np.array(convention_json(scale=float("inf"))), **layer}, "scale"),
        "npz-nested-json": ({"input_convention": np.array("[" * 5000 + "]" * 5000), **layer}, "RecursionError"),
        "npz-json-list": ({"input_convention": np.array("[1, 2]"), **layer}, "expected an object"),
        "npz-text-weight": ({"input_convention": np.array(convention_json()), "conv1_1.weight": np.array("x"),
                             "conv1_1.bias": layer["conv1_1.bias"]}, "expected numbers"),
    }
    paths = {name: (write_npz(tmp_path / f"{name}.npz", arrays), expected)
             for name, (arrays, expected) in files.items()}
    bomb = tmp_path / "npz-zip-bomb.npz"
    write_npz(bomb, {"input_convention": np.array(convention_json()), **layer})
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (64, 64, 3, 3)})
    with zipfile.ZipFile(bomb, "a") as z:  # a 147 KB array followed by 100 MB nobody asked for
        deflated_zeros_member(z, "conv1_2.weight.npy", BOMB_BYTES, prefix=header.getvalue())
    paths["npz-zip-bomb"] = (bomb, "has conv1_2.weight but no conv1_2.bias")
    return paths


def crafted_mat_files(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    from test_weights import _matconvnet_layers

    paths = {}
    path = tmp_path / "mat-unused-bomb.mat"
    scipy_io.savemat(path, {"unused": np.zeros(BOMB_BYTES // 4, np.float32), "layers": _matconvnet_layers(vgg_prefix(("conv1_1",)))},
                     do_compression=True)
    paths["mat-unused-bomb"] = (path, "")
    for name, layers in (("mat-layers-numbers", np.arange(5.0)), ("mat-layers-text", "conv")):
        scipy_io.savemat(tmp_path / f"{name}.mat", {"layers": layers})
        paths[name] = (tmp_path / f"{name}.mat", "not a list of MatConvNet layer structs")
    return paths


def crafted_h5_files(tmp_path):
    h5py = pytest.importorskip("h5py")
    paths = {}
    with h5py.File(tmp_path / "h5-unwritten.h5", "w") as f:
        f.create_dataset("block1_conv1/kernel", shape=(3, 3, 30000, 30000), dtype="f4", chunks=(1, 1, 64, 64))
        f["block1_conv1/bias"] = np.zeros(64, np.float32)
    paths["h5-unwritten"] = (tmp_path / "h5-unwritten.h5", "more than any VGG layer")
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(1728, dtype=np.float32).tobytes())
    with h5py.File(tmp_path / "h5-external.h5", "w") as f:
        f.create_dataset("block1_conv1/kernel", shape=(3, 3, 3, 64), dtype="f4", external=[(str(secret), 0, 6912)])
        f["block1_conv1/bias"] = np.zeros(64, np.float32)
    paths["h5-external"] = (tmp_path / "h5-external.h5", "stored in another file")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["kernel"] = np.zeros((3, 3, 3, 64), np.float32)
    with h5py.File(tmp_path / "h5-link.h5", "w") as f:
        f["block1_conv1/kernel"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "kernel")
        f["block1_conv1/bias"] = np.zeros(64, np.float32)
    paths["h5-link"] = (tmp_path / "h5-link.h5", "external link")
    with h5py.File(tmp_path / "h5-compound.h5", "w") as f:
        f["block1_conv1/kernel"] = np.zeros((3, 3, 3, 64), [("a", "<f4"), ("b", "<f4")])
        f["block1_conv1/bias"] = np.zeros(64, np.float32)
    paths["h5-compound"] = (tmp_path / "h5-compound.h5", "unsupported dtype")
    return paths


@pytest.mark.parametrize("family", [crafted_pth_files, crafted_npz_files, crafted_mat_files, crafted_h5_files])
def test_crafted_files_are_refused_in_one_line_within_bounded_memory(tmp_path, run_python_limited, family):
    files = family(tmp_path)
    results = load_limited(run_python_limited, [path for path, _ in files.values()])
    for name, (path, expected) in files.items():
        outcome, message, grown = results[str(path)]
        if expected:
            assert outcome == "WeightsError", (name, outcome, message)
            assert message.startswith(str(path)) and expected in message, (name, message)
            assert "\n" not in message and len(message) < 600, (name, message)
        else:
            assert outcome == "ok", (name, outcome, message)
        assert grown < MAX_GROWTH_MB, (name, grown)


def test_needed_mat_variable_inflating_beyond_the_cap_is_refused(tmp_path, monkeypatch):
    scipy_io = pytest.importorskip("scipy.io")
    from test_weights import _matconvnet_layers

    scipy_io.savemat(tmp_path / "big.mat", {"layers": _matconvnet_layers(vgg_prefix(("conv1_1", "conv1_2")))},
                     do_compression=True)
    monkeypatch.setattr(bounded, "MAX_MAT_VARIABLE_BYTES", 50_000)
    with pytest.raises(WeightsError, match=r"big\.mat: a compressed variable inflates to more than 50000 bytes"):
        load_weights(tmp_path / "big.mat")


def test_tensor_views_are_checked_when_read_not_only_when_built(tmp_path):
    """Even a LazyTensor changed after unpickling (the BUILD attack's effect) never reads outside."""
    from deepstyle.models.pth import TorchFile

    path = write_pth_zip(tmp_path / "ok.pth", torchvision_state(vgg_prefix(("conv1_1",)))) or tmp_path / "ok.pth"
    data = TorchFile(path)
    tensor = data.obj["features.0.weight"]
    for attribute, value, expected in (("stride", (-10**9, 1, 1, 1), "non-negative"), ("offset", -1000, "malformed"),
                                       ("size", (65, 3, 3, 3), "past the end")):
        saved = getattr(tensor, attribute)
        setattr(tensor, attribute, value)
        with pytest.raises(WeightsError, match=expected):
            data.read(tensor, "layer conv1_1")
        setattr(tensor, attribute, saved)
    assert data.read(tensor, "layer conv1_1").shape == (64, 3, 3, 3)


def test_bfloat16_and_big_endian_storages_still_read(tmp_path):
    values = np.linspace(-2, 2, 1728, dtype=np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype("<u2")
    data = tensor_dict_pickle([("features.0.weight", "0", 1728, 0, (64, 3, 3, 3), (27, 9, 3, 1))], legacy=False)
    path = tmp_path / "bf16.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("a/data.pkl", data.replace(b"FloatStorage", b"BFloat16Storage"))
        z.writestr("a/data/0", bf16.tobytes())
    from deepstyle.models.pth import TorchFile

    file = TorchFile(path)
    read = file.read(file.obj["features.0.weight"], "w")
    np.testing.assert_array_equal(read.reshape(-1), (bf16.astype(np.uint32) << 16).view(np.float32))
