"""The library call behind ``deepstyle paint``: ``deepstyle.paint(content, style, **options)``.

>>> import deepstyle
>>> from deepstyle.image import save_image
>>> image = deepstyle.paint("photo.jpg", "wave.jpg")          # (H, W, 3) float32 RGB in [0, 1]
>>> save_image("out.png", image)

It picks the network and the defaults exactly as the command does (``choose_network``,
``default_schedule``): the pretrained VGG16 when ``deepstyle weights fetch vgg16`` has put it in
the cache folder (else a VGG19 found there), else the random multi-scale network, saying so once.
"""

from __future__ import annotations

import os
import sys

import numpy as np

__all__ = ["paint", "choose_network", "default_schedule", "settings_for", "FETCH_HINT"]

FETCH_HINT = "get the pretrained VGG16 with: deepstyle weights fetch vgg16"

# Coarse to fine: the coarse stage finds the composition cheaply, the fine stage adds detail
# from the upsampled result. Counts chosen where the pictures stopped changing (docs/paint.md).
DEFAULT_SIZE = 512
DEFAULT_STAGE_ITERATIONS = (150, 60)


def default_schedule(size=DEFAULT_SIZE):
    """(sizes, iterations per stage) of the default run at ``size`` px: a stage at half the size
    first when that is at least 256 px (at 128 px, relu4_2 is 16 x 16 and holds too little of
    the content: the style took over the astronaut's portrait)."""
    if size // 2 >= 256:
        return (size // 2, size), DEFAULT_STAGE_ITERATIONS
    return (size,), DEFAULT_STAGE_ITERATIONS[0]


_said = set()  # messages already printed: a notebook painting many pictures hears each once


def _say(message):
    if message not in _said:
        _said.add(message)
        print(f"deepstyle: {message}", file=sys.stderr)


def choose_network(weights=None, arch=None, preset=None, content_layers=None, style_layers=None,
                   pooling="avg", say=_say):
    """The feature network for a run.

    ``weights``: a path, a loaded ``Weights``, "random"/"random-vgg"/"random-multiscale", or None
    for the pretrained file ``deepstyle weights`` put in the cache folder (VGG16 first, else
    VGG19). ``arch`` None follows the weights, then the preset. ``content_layers`` and
    ``style_layers``: the VGG layers the user named (None: the preset's). With no pretrained weights the random multi-scale network
    is used, with its own layers, unless the user named layers, an architecture or max pooling:
    a random VGG honours those.
    """
    from . import models
    from .style import DEFAULT_PRESET, PRESETS

    preset = PRESETS[preset or DEFAULT_PRESET]
    if weights == "random-multiscale":
        if pooling != "avg":
            raise ValueError("pooling: the random multi-scale network has no pooling layers; drop "
                             "--pooling max, or use --weights random (a random VGG) or pretrained weights")
        return models.load_feature_net(weights=weights)
    named = bool(content_layers or style_layers) or arch is not None or pooling != "avg"
    if weights is None:
        weights = models.find_weights(None, arch or preset.arch)
        if weights is None and arch is None:  # the pretrained network there is, VGG16 or VGG19
            weights = models.default_weights()
    is_random = isinstance(weights, str) and weights.startswith("random") and not os.path.exists(weights)
    if weights is not None and not is_random and not isinstance(weights, models.Weights):
        weights = models.load_weights(weights)
    if isinstance(weights, models.Weights):  # a file holding a prefix only: its standard name tells
        arch = arch or weights.arch or _arch_of_standard_name(weights.path)
    arch = arch or preset.arch
    order = models.layer_names(arch)
    wanted = list(content_layers or preset.content_layers) + list(style_layers or preset.style_layers)
    unknown = [name for name in wanted if name not in order]
    if unknown:
        raise ValueError(f"layers: {', '.join(unknown)} not in {arch}; it has {', '.join(order)}")
    if weights is None and not named:
        say("no pretrained VGG weights found; using a random-weight network (random-multiscale): it "
            f"carries colour and brush texture but little structure; {FETCH_HINT}")
        return models.load_feature_net(weights="random-multiscale")
    if weights is None:
        say(f"no {arch.upper()} weights found; the named layers, architecture or pooling run on a "
            f"{arch.upper()} with random weights; {FETCH_HINT}")
        weights = "random"
    last = max(wanted, key=order.index)
    return models.load_feature_net(arch=arch, weights=weights, pooling=pooling, last_layer=last)


def _arch_of_standard_name(path):
    from .models.weights import STANDARD_FILES

    return next((arch for arch, names in STANDARD_FILES.items() if os.path.basename(path) in names), None)


def settings_for(net, preset=None, **overrides):
    """``Settings`` of ``preset`` with ``overrides``; a network without VGG layer names (the
    multi-scale one) brings its own layers unless the caller named some."""
    from .style import DEFAULT_PRESET, Settings

    defaults = getattr(net, "default_layers", None)
    if defaults:
        if overrides.get("content_layers") is None:
            overrides["content_layers"] = tuple(defaults["content"])
        if overrides.get("style_layers") is None:
            overrides["style_layers"] = {name: 1.0 / len(defaults["style"]) for name in defaults["style"]}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    return Settings.from_preset(preset or DEFAULT_PRESET, **overrides)


def paint(content, style, *, size=None, scales=None, iterations=None, preset=None, weights=None,
          arch=None, pooling="avg", progress=None, **options):
    """Paint ``content`` in the style of ``style``; returns an (H, W, 3) float32 RGB image in [0, 1].

    ``content`` and ``style`` are image paths or (H, W, 3) RGB arrays (floats in [0, 1] or uint8);
    ``style`` may be a list of them (blended by ``style_blend``). ``size`` is the longer side of
    the result (default 512, painted coarse to fine as 256 then 512 with 150 and 60 L-BFGS
    iterations, about 4 minutes on 2 cores); ``scales`` lists the stages yourself (e.g.
    ``(256, 512, 1024)``) and ``iterations`` is one count for every stage or one per stage.
    ``preset`` is "deepstyle" (default), "johnson", "gatys" or "blog"; ``weights``, ``arch`` and
    ``pooling`` pick the network as ``choose_network`` does. Further ``options`` are
    :class:`deepstyle.style.Settings` fields: content_weight, style_weight, tv_weight,
    content_layers, style_layers ({name: weight}), style_blend, style_scale, preserve_colors,
    optimizer ("lbfgs"/"adam"), history, learning_rate, tol, init ("content", "noise" or an image),
    seed (for the noise init), device ("cpu" or "cuda": the whole loop on a GPU through CuPy).
    ``progress(p)`` is called after every iteration with a
    :class:`deepstyle.style.Progress`.
    """
    from .image import load_image
    from .style import Painter, Settings

    unknown = sorted(set(options) - set(Settings.__dataclass_fields__) - {"sizes"})
    if unknown or "sizes" in options:
        raise TypeError(f"paint: unexpected option(s) {', '.join(unknown or ['sizes'])} "
                        f"(use size= or scales=; see help(deepstyle.paint))")
    if size is not None and scales is not None:
        raise ValueError("size, scales: give one of them, not both")
    if scales is not None:
        sizes = tuple(int(s) for s in scales)
        iterations = iterations if iterations is not None else DEFAULT_STAGE_ITERATIONS[0]
    else:
        sizes, default_iterations = default_schedule(size or DEFAULT_SIZE)
        iterations = iterations if iterations is not None else default_iterations
    if isinstance(iterations, (list, tuple)):
        iterations = tuple(int(n) for n in iterations)
    largest = max(sizes)
    content = _as_image(content, largest, "content", load_image)
    styles = style if isinstance(style, (list, tuple)) else [style]
    scale = options.get("style_scale", 1.0)
    styles = [_as_image(s, max(1, round(largest * scale)), f"style {i + 1}", load_image)
              for i, s in enumerate(styles)]
    net = choose_network(weights, arch, preset, options.get("content_layers"), options.get("style_layers"),
                         pooling)
    if "init" in options and not isinstance(options["init"], str):
        options["init"] = _as_image(options["init"], largest, "init", load_image)
    for name in ("content_layers", "style_blend"):
        if options.get(name) is not None:
            options[name] = tuple(options[name])
    settings = settings_for(net, preset, sizes=sizes, iterations=iterations, **options)
    return Painter(net, content, styles, settings).run(progress)


def _as_image(value, size, what, load_image):
    from .image import fit_size, resize_image

    if isinstance(value, (str, bytes)) or hasattr(value, "__fspath__"):
        return load_image(value, size, what=f"{what} image")
    image = np.asarray(value)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{what}: expected an (H, W, 3) RGB image or a path, got shape {image.shape}")
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / 255.0
    elif image.dtype.kind != "f" or not np.isfinite(image).all() or image.min() < 0 or image.max() > 1:
        raise ValueError(f"{what}: expected uint8 values or floats in [0, 1], got dtype {image.dtype} "
                         f"in [{image.min()}, {image.max()}]")
    image = np.asarray(image, np.float32)
    return resize_image(image, fit_size(image.shape[:2], size))
