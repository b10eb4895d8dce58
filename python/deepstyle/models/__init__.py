"""Feature networks for style transfer: VGG16/VGG19 with pretrained or random weights.

>>> from deepstyle import models
>>> net = models.load_feature_net(arch="vgg19", weights=None, pooling="avg", last_layer="relu5_1")
>>> x = net.preprocess(image)             # (H, W, 3) RGB in [0, 1] -> (1, 3, H, W), weights' convention
>>> feats = net.forward(x, ["relu1_1", "relu4_2"])
>>> grad_x = net.backward({"relu1_1": g1, "relu4_2": g2})   # one sweep; weights frozen
>>> image = net.deprocess(x)

``weights`` is a path to a weights file (format told by content; see ``weights``), a loaded
``Weights``, None (search ``$DEEPSTYLE_WEIGHTS`` and the cache directory, else fall back to
the DEFAULT_RANDOM network and say so once on stderr), "random" or "random-vgg" (the VGG asked
for, with random weights: same layers and cost as the pretrained one), or "random-multiscale".
"""

from __future__ import annotations

import os
import sys

from . import arch as _arch
from .errors import WeightsError
from .feature_net import FeatureNet
from .random_features import MultiScaleNet
from .vgg import POOLINGS, check_pooling, vgg_net
from .convention import CAFFE, TORCHVISION, InputConvention
from .weights import Weights, cache_dir, detect_format, find_weights, load_weights, save_weights

__all__ = [
    "load_feature_net", "load_weights", "save_weights", "find_weights", "detect_format", "cache_dir",
    "InputConvention", "Weights", "WeightsError", "FeatureNet", "MultiScaleNet", "TORCHVISION", "CAFFE",
    "ARCHS", "POOLINGS", "RANDOM_KINDS", "DEFAULT_RANDOM", "layer_names", "default_weights",
]

ARCHS = _arch.ARCHS
RANDOM_KINDS = ("random-vgg", "random-multiscale")
DEFAULT_RANDOM = "random-multiscale"  # chosen by looking at the results: see docs/models.md
_told_about_fallback = False


def layer_names(arch="vgg19"):
    """Every tap-able layer name of the full VGG ``arch``, in order."""
    return _arch.layer_names(arch)


def default_weights():
    """The pretrained file paint uses when given none: the first of VGG16's then VGG19's standard
    files found through $DEEPSTYLE_WEIGHTS or the cache folder; None when there is none."""
    for arch in ("vgg16", "vgg19"):
        found = find_weights(None, arch)
        if found is not None:
            return found
    return None


def load_feature_net(arch="vgg19", weights=None, pooling="avg", last_layer="relu5_1", seed=0):
    """A feature network (see the module doc); layers after ``last_layer`` are not built.

    ``arch=None`` takes the architecture from the weights file (VGG19 when it does not tell).
    Random networks are drawn from ``seed``; "random-multiscale" ignores ``arch``, ``pooling``
    and ``last_layer`` (it is one layer of parallel filters).
    """
    if arch is not None:
        _arch.check_arch(arch)
    check_pooling(pooling)
    if weights is None:
        weights = find_weights(None, arch or "vgg19")
        if weights is None:
            _tell_fallback(arch or "vgg19")
            weights = DEFAULT_RANDOM
    if isinstance(weights, str) and weights == "random":  # random weights for the VGG asked for
        weights = "random-vgg"
    random_kind = isinstance(weights, str) and weights in RANDOM_KINDS
    if isinstance(weights, str) and weights.startswith("random") and not random_kind and not os.path.exists(weights):
        raise ValueError(f"weights: expected a path, None, 'random' or one of {', '.join(RANDOM_KINDS)}, got {weights!r}")
    if not random_kind and not isinstance(weights, Weights):
        weights = load_weights(weights)
    arch = arch or (weights.arch if isinstance(weights, Weights) else None) or "vgg19"
    names = _arch.layer_names(arch)
    if last_layer not in names:
        raise ValueError(f"last_layer: expected a layer of {arch} ({', '.join(names)}), got {last_layer!r}")
    if weights == "random-multiscale":
        return MultiScaleNet(seed=seed)
    if weights == "random-vgg":
        description = (f"{arch.upper()} with random weights (seed {seed}, rescaled to unit activations; "
                       f"He et al. 2016), {pooling} pooling")
        return vgg_net(arch, last_layer, pooling, None, TORCHVISION, description, seed)
    weights.check(arch, [name for name in names[: names.index(last_layer) + 1] if name.startswith("conv")])
    description = f"{arch.upper()}, {weights.description}, {pooling} pooling"
    return vgg_net(arch, last_layer, pooling, weights.layers, weights.convention, description)


def _tell_fallback(arch):
    global _told_about_fallback
    if not _told_about_fallback:
        _told_about_fallback = True
        print(
            f"deepstyle: no {arch.upper()} weights found (--weights, $DEEPSTYLE_WEIGHTS, {cache_dir()}); "
            f"using a random-weight network ({DEFAULT_RANDOM}) instead; the published results use "
            "pretrained VGG weights (see docs/models.md for the files it reads)",
            file=sys.stderr,
        )
