"""VGG16/VGG19 convolutional parts from deepstyle.nn layers, truncated after the deepest layer needed."""

from __future__ import annotations

import numpy as np

from .. import nn
from . import arch as vgg_arch
from .feature_net import FeatureNet, ReLU
from .random_features import calibrate_random_vgg

POOLINGS = ("avg", "max")


def check_pooling(pooling):
    if pooling not in POOLINGS:
        raise ValueError(f"pooling: expected 'avg' or 'max', got {pooling!r}")
    return pooling


def vgg_layers(arch, last_layer, pooling, weights=None, rng=None):
    """[(name, layer)] of ``arch`` up to and including ``last_layer``.

    ``weights`` maps conv names to (weight, bias) arrays, used as they are (no copy); without
    it, convolutions get He-initialised random weights drawn from ``rng``.
    """
    names = vgg_arch.layer_names(arch)
    if last_layer not in names:
        raise ValueError(f"last_layer: expected a layer of {arch} ({', '.join(names)}), got {last_layer!r}")
    check_pooling(pooling)
    layers = []
    for name, kind, channels in vgg_arch.layer_specs(arch):
        if kind == "conv":
            layer = nn.Conv2d(*channels, 3, padding=1, rng=rng)
            if weights is not None:
                layer.weight, layer.bias = weights[name]
        elif kind == "relu":
            layer = ReLU()
        else:  # Gatys et al. replace max by average pooling: smoother gradients, nicer images
            layer = nn.AvgPool2d(2) if pooling == "avg" else nn.MaxPool2d(2)
        layers.append((name, layer))
        if name == last_layer:
            return layers


def vgg_net(arch, last_layer, pooling, weights, convention, description, seed=0):
    """A FeatureNet of ``arch`` up to ``last_layer``; ``weights=None`` gives random-vgg weights
    drawn from ``seed`` and calibrated to unit activations (see random_features)."""
    layers = vgg_layers(arch, last_layer, pooling, weights, np.random.default_rng(seed))
    if weights is None:
        calibrate_random_vgg(layers, convention, seed)
    downsampling = {name: 2 ** vgg_arch.pools_before(arch, name) for name, _ in layers}
    return FeatureNet(layers, convention, description, downsampling)
