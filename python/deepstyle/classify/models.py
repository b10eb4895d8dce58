"""The classifiers of ``deepstyle train``: a softmax classifier, a one-hidden-layer ReLU network,
and MatConvNet's CIFAR10-quick network (``cnn_cifar_init.m``) that Higham & Higham section 7.4
trains.

``cifar-cnn`` (shapes for a 32x32 input; Fashion-MNIST's 28x28 is zero-padded to 32x32):

==========  =====================================================  ============  ========
block       layers                                                 output        init
==========  =====================================================  ============  ========
1           conv 5x5 C->32 pad 2, max-pool 3x3/2 + ReLU            32 x 16 x 16  0.01 randn
2           conv 5x5 32->32 pad 2, ReLU + avg-pool 3x3/2           32 x 8 x 8    0.05 randn
3           conv 5x5 32->64 pad 2, ReLU + avg-pool 3x3/2           64 x 4 x 4    0.05 randn
4           conv 4x4 64->64, ReLU                                  64 x 1 x 1    0.05 randn
5           conv 1x1 64->10 (the paper's 10x64 fully connected)    10            0.05 randn
==========  =====================================================  ============  ========

MatConvNet pads its pools by [0 1 0 1] (one row/column at the bottom/right), which for these
sizes is PyTorch's ``ceil_mode=True``; its average pool divides by the cells inside the image,
which ``count_include_pad=False`` (and ceil mode's clipping) gives. Biases start at zero. With
``dropout`` the paper's 81.1% run: p = 0.15 after blocks 1-3, 0.35 after block 4 (inverted
dropout, so evaluation uses every unit unchanged).

"+" marks a ReLU fused with its pooling into one layer (``MaxPool2d(relu_after=True)``, named
``pool1``; ``AvgPool2d(relu_before=True)``, ``pool2`` and ``pool3``): the same arithmetic as the
two layers, in one pass over the data each way.
"""

from __future__ import annotations

import numpy as np

from .. import nn

MODELS = ("linear", "mlp", "cifar-cnn")
_CNN_BLOCKS = [  # (name, in, out, kernel, padding, init scale, pool, dropout p)
    ("conv1", None, 32, 5, 2, 0.01, "max", 0.15),
    ("conv2", 32, 32, 5, 2, 0.05, "avg", 0.15),
    ("conv3", 32, 64, 5, 2, 0.05, "avg", 0.15),
    ("conv4", 64, 64, 4, 0, 0.05, None, 0.35),
]


def cifar_cnn(in_channels, classes=10, dropout=False, rng=None):
    """CIFAR10-quick for (N, in_channels, 32, 32) inputs; returns logits (N, classes)."""
    rng = nn.init.as_generator(rng)
    layers = []
    for name, c_in, c_out, k, pad, scale, pool, p in _CNN_BLOCKS:
        i = name[-1]
        conv = nn.Conv2d(c_in or in_channels, c_out, k, padding=pad, rng=rng)
        conv.weight[...] = scale * rng.standard_normal(conv.weight.shape)
        conv.bias[...] = 0.0
        layers.append((name, conv))
        if pool == "max":
            layers.append((f"pool{i}", nn.MaxPool2d(3, 2, ceil_mode=True, relu_after=True)))
        elif pool == "avg":
            layers.append((f"pool{i}", nn.AvgPool2d(3, 2, ceil_mode=True, count_include_pad=False,
                                                    relu_before=True)))
        else:
            layers.append((f"relu{i}", nn.ReLU()))
        if dropout:
            layers.append((f"drop{i}", nn.Dropout(p, rng=rng)))
    layers[0][1].need_input_grad = False  # the images need no gradient: saves ~10% of a step
    fc = nn.Conv2d(64, classes, 1, rng=rng)
    fc.weight[...] = 0.05 * rng.standard_normal(fc.weight.shape)
    fc.bias[...] = 0.0
    layers += [("fc5", fc), ("flatten", nn.Flatten())]
    return nn.Sequential(layers)


def cifar_cnn_lr_multipliers(name):
    """MatConvNet's per-parameter learning rates: 0.1 for filters and 2 for biases, a tenth of
    that (0.01 and 0.2) in the last layer."""
    base = 0.1 if name.endswith(".weight") else 2.0
    return base * (0.1 if name.startswith("fc5.") else 1.0)


def linear(input_shape, classes=10, rng=None):
    """Softmax classifier: logits = W x + b on the flattened image."""
    features = int(np.prod(input_shape))
    return nn.Sequential([("flatten", nn.Flatten()),
                          ("fc", nn.Linear(features, classes, rng=rng, init="glorot"))])


def mlp(input_shape, classes=10, hidden=256, dropout=False, rng=None):
    """One hidden ReLU layer of ``hidden`` units (dropout 0.35 after it with ``dropout``)."""
    rng = nn.init.as_generator(rng)
    features = int(np.prod(input_shape))
    layers = [("flatten", nn.Flatten()), ("fc1", nn.Linear(features, hidden, rng=rng)),
              ("relu1", nn.ReLU())]
    if dropout:
        layers.append(("drop1", nn.Dropout(0.35, rng=rng)))
    layers.append(("fc2", nn.Linear(hidden, classes, rng=rng, init="glorot")))
    return nn.Sequential(layers)


def build_model(name, input_shape, classes=10, dropout=False, hidden=256, rng=None):
    """The network ``name`` (one of MODELS) for inputs of ``input_shape`` = (C, H, W)."""
    if name == "linear":
        return linear(input_shape, classes, rng)
    if name == "mlp":
        return mlp(input_shape, classes, hidden, dropout, rng)
    if name == "cifar-cnn":
        if tuple(input_shape[1:]) != (32, 32):
            raise ValueError(f"cifar-cnn: expected 32x32 inputs, got {input_shape}")
        return cifar_cnn(input_shape[0], classes, dropout, rng)
    raise ValueError(f"model: expected one of {', '.join(MODELS)}, got {name!r}")


def dropout_generators(net):
    """The random generators of the network's dropout layers (their state goes in checkpoints)."""
    return [layer.rng for _, layer in net.named_layers() if isinstance(layer, nn.Dropout)]
