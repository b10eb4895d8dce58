"""The style-transfer loop: stages of increasing size, each an optimisation of the image.

:class:`Painter` owns the run. Each stage resizes the content (and the style images, times
``style_scale``) so that the longer side is the stage's size, builds a :class:`StyleObjective`
and runs L-BFGS or Adam on the image in the network's input space, starting from the content,
noise, a given image, or the previous stage's result upsampled. It keeps the lowest-loss image
seen, so an interrupted run can still hand back its best picture, and its state is a small
dict of arrays (:meth:`Painter.state`) that a new Painter can resume from.

With ``device="cuda"`` the network's weights, the images, the losses and the optimiser's state
live on the GPU (CuPy arrays) for the whole loop; images are decoded, resized and converted on
the host once per stage, and the best image comes back to the host only when asked for
(:meth:`Painter.image`, :meth:`Painter.state`: the result, snapshots, checkpoints).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from ..allocator import reusing_freed_memory
from ..backend import device_module, to_host
from ..image import fit_size, resize_image, rgb_to_yiq, yiq_to_rgb
from .losses import Normalisation, StyleObjective, check_layers
from ..optim.minimize import LBFGS, Adam
from .presets import DEFAULT_PRESET, PRESETS

__all__ = ["Settings", "Progress", "Painter", "estimate_memory", "deepest_layer"]


@dataclass(frozen=True)
class Settings:
    """Everything a run needs besides the images and the network. ``sizes`` lists the longer
    side of each stage, coarse to fine; ``iterations`` is per stage (one count for all, or one
    per stage: coarse stages are cheap, so they can run longer); ``learning_rate`` (Adam)
    is in [0, 1] image units per step. ``device`` is "cpu" or "cuda" (where the loop runs)."""

    content_layers: tuple = PRESETS[DEFAULT_PRESET].content_layers
    style_layers: dict = field(default_factory=lambda: dict(PRESETS[DEFAULT_PRESET].style_layers))
    content_weight: float = PRESETS[DEFAULT_PRESET].content_weight
    style_weight: float = PRESETS[DEFAULT_PRESET].style_weight
    tv_weight: float = PRESETS[DEFAULT_PRESET].tv_weight
    normalisation: Normalisation = PRESETS[DEFAULT_PRESET].normalisation
    sizes: tuple = (512,)
    iterations: int | tuple = 500
    optimizer: str = "lbfgs"
    history: int = 20
    learning_rate: float = 0.01
    tol: float | None = None
    init: object = "content"  # "content", "noise" or an (H, W, 3) image in [0, 1]
    seed: int | None = None
    style_blend: tuple | None = None
    style_scale: float = 1.0
    preserve_colors: bool = False
    device: str = "cpu"

    def stage_iterations(self, stage):
        """Iterations of stage ``stage`` (0-based)."""
        if isinstance(self.iterations, tuple):
            return self.iterations[stage] if len(self.iterations) > 1 else self.iterations[0]
        return self.iterations

    @classmethod
    def from_preset(cls, name, **overrides):
        preset = PRESETS[name]
        base = cls(
            content_layers=preset.content_layers,
            style_layers=dict(preset.style_layers),
            content_weight=preset.content_weight,
            style_weight=preset.style_weight,
            tv_weight=preset.tv_weight,
            normalisation=preset.normalisation,
        )
        return replace(base, **overrides)

    def __post_init__(self):
        if self.optimizer not in ("lbfgs", "adam"):
            raise ValueError(f"optimizer: expected 'lbfgs' or 'adam', got {self.optimizer!r}")
        if not self.sizes or any(not isinstance(s, int) or s < 1 for s in self.sizes):
            raise ValueError(f"sizes: expected positive integer sizes, got {self.sizes!r}")
        counts = self.iterations if isinstance(self.iterations, tuple) else (self.iterations,)
        if (not all(isinstance(n, int) and n >= 0 for n in counts)
                or len(counts) not in (1, len(self.sizes))):
            raise ValueError(f"iterations: expected a non-negative integer or one per stage "
                             f"({len(self.sizes)}), got {self.iterations!r}")
        for name in ("content_weight", "style_weight", "tv_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: expected a non-negative number, got {value!r}")
        if not (math.isfinite(self.style_scale) and self.style_scale > 0):
            raise ValueError(f"style_scale: expected a positive number, got {self.style_scale!r}")
        if not self.style_layers and not self.content_layers:
            raise ValueError("layers: expected at least one content or style layer")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device: expected 'cpu' or 'cuda', got {self.device!r}")
        if isinstance(self.init, str) and self.init not in ("content", "noise"):
            raise ValueError(f"init: expected 'content', 'noise' or an image, got {self.init!r}")


@dataclass
class Progress:
    """What the loop reports after each iteration."""

    stage: int  # 0-based
    stages: int
    size: tuple  # (height, width) of this stage
    iteration: int  # iterations done in this stage
    iterations: int
    loss: float  # lowest loss so far in this stage
    parts: dict  # its weighted content / style / tv parts
    evaluations: int  # loss-and-gradient evaluations in this stage
    seconds_per_iteration: float
    message: str = ""  # why the optimiser stopped early, when it did


def deepest_layer(net, names):
    """The name among ``names`` that comes last in ``net.layer_names``."""
    order = {name: i for i, name in enumerate(net.layer_names)}
    return max(names, key=lambda name: order[name])


def pixel_scale(net):
    """Network input units per unit of [0, 1] image intensity (255 for Caffe's convention)."""
    zeros, ones = np.zeros((8, 8, 3), np.float32), np.ones((8, 8, 3), np.float32)
    return float(np.mean(np.abs(net.preprocess(ones) - net.preprocess(zeros))))


def estimate_memory(net, shape_hw, taps, *, optimizer="lbfgs", history=20, probe=32):
    """Bytes a run at ``shape_hw`` needs, by part: every activation up to the deepest tap
    (the forward pass keeps them for the backward pass), two of the largest in flight during
    the backward pass, and the optimiser's image-sized buffers. Activation shapes come from a
    forward pass on a ``probe`` x ``probe`` image, scaled to the requested size."""
    last = deepest_layer(net, taps)
    names = net.layer_names[: net.layer_names.index(last) + 1]
    features = net.forward(net.preprocess(np.zeros((probe, probe, 3), np.float32)), names)
    clear = getattr(net, "clear", None)
    if clear is not None:
        clear()
    h, w = shape_hw
    sizes = []
    for name in names:
        _, channels, fh, fw = features[name].shape
        sizes.append(channels * max(1, round(fh * h / probe)) * max(1, round(fw * w / probe)))
    image = 3 * h * w
    buffers = 2 * history + 4 if optimizer == "lbfgs" else 5
    parts = {
        "activations": 4 * sum(sizes),
        "gradients": 4 * 2 * max(sizes),
        "optimizer": 4 * buffers * image,
    }
    parts["total"] = sum(parts.values())
    return parts


class Painter:
    """One style-transfer run of ``content`` (H, W, 3 in [0, 1], full resolution) in the style
    of ``styles`` (a list of such images) on feature network ``net``.

    ``resume`` is a dict from :meth:`state` (arrays ``x``, ``stage``, ``iteration``): the run
    starts at that stage and iteration from that image.
    """

    def __init__(self, net, content, styles, settings, resume=None):
        if not styles:
            raise ValueError("styles: expected at least one style image, got none")
        self.xp = device_module(settings.device)
        # a network without to() (a duck-typed NumPy one, as in the tests) runs where it is
        self.net = net.to(settings.device) if hasattr(net, "to") else net
        self.content = np.asarray(content, np.float32)
        self.styles = [np.asarray(s, np.float32) for s in styles]
        self.settings = settings
        self.pixel_scale = pixel_scale(net)
        self.shapes = [fit_size(self.content.shape[:2], size) for size in settings.sizes]
        self.taps = list(settings.content_layers) + list(settings.style_layers)
        check_layers(net, self.taps)
        self._check_sizes()
        self.stage = 0
        self.iteration = 0
        self.best_x = None
        self.best_loss = math.inf
        self.best_parts = {}
        if resume is not None:
            self._resume(resume)

    def _check_sizes(self):
        minimum = int(getattr(self.net, "min_size", 1))
        for shape in self.shapes:
            if min(shape) < minimum:
                raise ValueError(
                    f"size: the content image at {shape[1]}x{shape[0]} px is smaller than the "
                    f"network's minimum of {minimum} px on each side; use a larger --size"
                )
        for index, style in enumerate(self.styles):
            for size in self.settings.sizes:
                shape = fit_size(style.shape[:2], max(1, round(size * self.settings.style_scale)))
                if min(shape) < minimum:
                    raise ValueError(
                        f"style_scale: style image {index + 1} at {shape[1]}x{shape[0]} px is smaller "
                        f"than the network's minimum of {minimum} px; raise --style-scale or --size"
                    )

    def _resume(self, state):
        stage, iteration = int(state["stage"]), int(state["iteration"])
        if not 0 <= stage < len(self.shapes):
            raise ValueError(f"resume: checkpoint stage {stage} is not among this run's {len(self.shapes)} stages")
        x = np.asarray(state["x"], np.float32)
        if x.ndim != 4 or x.shape[:2] != (1, 3):
            raise ValueError(f"resume: expected a checkpoint image of shape (1, 3, H, W), got {x.shape}")
        # an image of another size (a run stopped between stages) is resized like a stage's start
        self.stage, self.iteration, self.best_x = stage, iteration, x

    # --- images --------------------------------------------------------------------------

    def _content_at(self, shape):
        content = resize_image(self.content, shape)
        if self.settings.preserve_colors:
            return _gray(rgb_to_yiq(content)[..., 0])
        return content

    def _style_at(self, style, size, content_at_size):
        shape = fit_size(style.shape[:2], max(1, round(size * self.settings.style_scale)))
        style = resize_image(style, shape)
        if self.settings.preserve_colors:
            # luminance-only transfer (Gatys et al. 2016): match the style's luminance
            # statistics to the content's, so only texture, not brightness, is transferred
            y_style = rgb_to_yiq(style)[..., 0]
            y_content = content_at_size[..., 0]
            y_style = (y_style - y_style.mean()) / max(float(y_style.std()), 1e-6)
            return _gray(np.clip(y_style * y_content.std() + y_content.mean(), 0.0, 1.0))
        return style

    def _initial_image(self, shape, content_at_size):
        """The stage's starting point in network space, on the host."""
        if self.best_x is not None and self.best_x.shape[2:] == shape:  # resuming
            return to_host(self.best_x).copy()
        if self.best_x is not None:  # the previous stage's result
            image = self.net.deprocess(to_host(self.best_x))
            return self.net.preprocess(resize_image(image, shape))
        init = self.settings.init
        if isinstance(init, str) and init == "content":
            return self.net.preprocess(content_at_size)
        if isinstance(init, str) and init == "noise":
            rng = np.random.default_rng(self.settings.seed)
            return self.net.preprocess(rng.uniform(0.0, 1.0, shape + (3,)).astype(np.float32))
        image = resize_image(np.asarray(init, np.float32), shape)
        if self.settings.preserve_colors:
            image = _gray(rgb_to_yiq(image)[..., 0])
        return self.net.preprocess(image)

    def image(self):
        """The best image so far as (H, W, 3) RGB in [0, 1], with the content's colours put
        back when ``preserve_colors`` is set; None before the first evaluation."""
        if self.best_x is None:
            return None
        image = self.net.deprocess(to_host(self.best_x))
        if not self.settings.preserve_colors:
            return image
        content = rgb_to_yiq(resize_image(self.content, image.shape[:2]))
        content[..., 0] = rgb_to_yiq(image)[..., 0]
        return np.clip(yiq_to_rgb(content), 0.0, 1.0)

    def state(self):
        """Arrays to resume from: the best image (network space), stage and iterations done."""
        return {"x": to_host(self.best_x), "stage": np.int64(self.stage), "iteration": np.int64(self.iteration)}

    # --- the loop ------------------------------------------------------------------------

    def run(self, on_iteration=None):
        """Run the remaining stages; ``on_iteration(progress)`` after every iteration.
        Returns the final image (see :meth:`image`). Each evaluation frees and allocates the
        same large arrays again: they are reused rather than mapped afresh while it runs."""
        with reusing_freed_memory():
            return self._run_stages(on_iteration)

    def _run_stages(self, on_iteration):
        settings, on_device = self.settings, self.xp.asarray
        while self.stage < len(self.shapes):
            shape = self.shapes[self.stage]
            content = self._content_at(shape)
            styles = [self._style_at(s, settings.sizes[self.stage], content) for s in self.styles]
            objective = StyleObjective(
                self.net,
                on_device(self.net.preprocess(content)),
                [on_device(self.net.preprocess(s)) for s in styles],
                content_layers=settings.content_layers,
                style_layers=settings.style_layers,
                content_weight=settings.content_weight,
                style_weight=settings.style_weight,
                tv_weight=settings.tv_weight,
                normalisation=settings.normalisation,
                style_blend=settings.style_blend,
                pixel_scale=self.pixel_scale,
            )
            x0 = on_device(self._initial_image(shape, content))
            self.best_loss, self.best_parts = math.inf, {}

            def fun(x):
                loss, grad, parts = objective(x)
                if loss < self.best_loss:
                    self.best_loss, self.best_parts, self.best_x = loss, parts, x.copy()
                return loss, grad

            self.best_x = x0.copy()
            optimizer = self._optimizer(fun, x0)
            started = time.perf_counter()
            done_before = self.iteration
            iterations = settings.stage_iterations(self.stage)
            while self.iteration < iterations and not optimizer.done:
                optimizer.step()
                self.iteration += 1
                if on_iteration is not None:
                    elapsed = time.perf_counter() - started
                    on_iteration(Progress(
                        stage=self.stage, stages=len(self.shapes), size=shape,
                        iteration=self.iteration, iterations=iterations,
                        loss=self.best_loss, parts=dict(self.best_parts),
                        evaluations=objective.evaluations,
                        seconds_per_iteration=elapsed / (self.iteration - done_before),
                        message=optimizer.message,
                    ))
            self.stage += 1
            self.iteration = 0
        self.stage = len(self.shapes) - 1
        self.iteration = settings.stage_iterations(self.stage)
        return self.image()

    def _optimizer(self, fun, x0):
        settings = self.settings
        if settings.optimizer == "lbfgs":
            return LBFGS(fun, x0, history_size=settings.history, tol=settings.tol)
        return Adam(fun, x0, learning_rate=settings.learning_rate * self.pixel_scale, tol=settings.tol)


def _gray(luminance):
    return np.repeat(np.clip(luminance, 0.0, 1.0)[..., None], 3, axis=2).astype(np.float32)
