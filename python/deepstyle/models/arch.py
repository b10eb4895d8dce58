"""The VGG16/VGG19 convolutional parts as data: layer names, widths, and torchvision's indices.

Simonyan & Zisserman's configurations D (VGG16) and E (VGG19): five blocks of 3x3 convolutions
(padding 1, each followed by a ReLU) with 64, 128, 256, 512, 512 channels, each block ending in a
2x2 pooling of stride 2. Layers are named as in the Caffe/MatConvNet releases: conv1_1, relu1_1,
conv1_2, relu1_2, pool1, conv2_1, ...
"""

from __future__ import annotations

ARCHS = ("vgg16", "vgg19")
BLOCK_DEPTHS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
BLOCK_WIDTHS = (64, 128, 256, 512, 512)


def check_arch(arch):
    if arch not in BLOCK_DEPTHS:
        raise ValueError(f"arch: expected one of {', '.join(ARCHS)}, got {arch!r}")
    return arch


def layer_specs(arch):
    """[(name, kind, (in_channels, out_channels) or None)] for the whole convolutional part."""
    specs = []
    in_channels = 3
    for block, (depth, width) in enumerate(zip(BLOCK_DEPTHS[check_arch(arch)], BLOCK_WIDTHS), start=1):
        for i in range(1, depth + 1):
            specs.append((f"conv{block}_{i}", "conv", (in_channels, width)))
            specs.append((f"relu{block}_{i}", "relu", None))
            in_channels = width
        specs.append((f"pool{block}", "pool", None))
    return specs


def layer_names(arch):
    return [name for name, _, _ in layer_specs(arch)]


def conv_shapes(arch):
    """Ordered {conv name: weight shape (K, C, 3, 3)}."""
    return {name: (c[1], c[0], 3, 3) for name, kind, c in layer_specs(arch) if kind == "conv"}


def torchvision_indices(arch):
    """{features index: conv name}: torchvision's `features` is exactly our layer list (conv,
    ReLU, ..., MaxPool), numbered in one sequence."""
    return {i: name for i, (name, kind, _) in enumerate(layer_specs(arch)) if kind == "conv"}


def pools_before(arch, name):
    """How many 2x2 poolings run before layer ``name``'s output (it included)."""
    count = 0
    for layer, kind, _ in layer_specs(arch):
        if kind == "pool":
            count += 1
        if layer == name:
            return count
    raise ValueError(f"layer: expected a layer of {arch} ({', '.join(layer_names(arch))}), got {name!r}")
