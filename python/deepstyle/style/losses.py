"""The Gatys et al. objective: content, style (Gram matrix) and total-variation losses.

Each loss returns its value (a Python float, summed in float64) and its gradient with respect to
its input. :class:`StyleObjective` assembles them on a feature network: one forward pass taps
the content and style layers, each tap's gradient is injected in one backward sweep
(``net.backward``), and the TV gradient is added on the image.

Normalisations differ between the published recipes, and their weights only make sense with
their own normalisation, so a preset names its normalisation (see ``presets.py``):

content  ``relative`` sum (F - P)^2 / sum P^2               (deepstyle's default: the same for
                      any network, trained or random, whatever its activations' scale)
         ``sum``      sum (F - P)^2                          (the blog's Keras code)
         ``half``     1/2 sum (F - P)^2                      (Gatys et al. 2015)
         ``mean``     mean (F - P)^2                         (jcjohnson/neural-style)
style    ``relative`` sum (G - A)^2 / sum A^2               (deepstyle's default, as above)
         ``blog``     sum (G - A)^2 * (HW_l / HW_image)^2 / 36  with G = F F^T / HW_l: the blog's
                      sum (F F^T - S S^T)^2 / (4 * 3^2 * (H W)^2), which divides by the image's
                      pixel count and 3 channels rather than the layer's
         ``gatys``    sum (G - A)^2 / (4 C^2)                = 1/(4 N^2 M^2) sum (F F^T - A')^2
         ``mean``     mean (G/C - A/C)^2 = sum (G - A)^2 / C^4  (jcjohnson: Gram / (C H W), MSE)
tv       ``power``    sum over pixels and channels of (dx^2 + dy^2)^(power/2), measured in 0-255
                      pixel units whatever the network's input convention (blog: power 2.5;
                      power 2 halved is jcjohnson's), or its mean over those terms (``tv_mean``,
                      deepstyle's default, so the weight does not depend on the image size)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import ops
from ..backend import array_module

__all__ = [
    "Normalisation",
    "content_loss",
    "style_loss",
    "total_variation",
    "StyleObjective",
    "check_layers",
]


@dataclass(frozen=True)
class Normalisation:
    content: str = "relative"
    style: str = "relative"
    tv_power: float = 2.0
    tv_factor: float = 1.0
    tv_mean: bool = True

    def __post_init__(self):
        if self.content not in ("sum", "half", "mean", "relative"):
            raise ValueError(f"content normalisation: expected 'sum', 'half', 'mean' or 'relative', got {self.content!r}")
        if self.style not in ("blog", "gatys", "mean", "relative"):
            raise ValueError(f"style normalisation: expected 'blog', 'gatys', 'mean' or 'relative', got {self.style!r}")
        if not self.tv_power >= 2.0:  # below 2 the loss has a kink where neighbours are equal
            raise ValueError(f"tv_power: expected a value >= 2, got {self.tv_power!r}")

    def content_scale(self, target):
        if self.content == "relative":
            return 1.0 / max(_sum_squares(target), 1e-30)
        return {"sum": 1.0, "half": 0.5, "mean": 1.0 / target.size}[self.content]

    def style_scale(self, target_gram, shape, image_hw):
        """For a layer whose features have ``shape`` at an image of ``image_hw`` pixels."""
        channels, layer_pixels = shape[1], shape[2] * shape[3]
        if self.style == "relative":
            return 1.0 / max(_sum_squares(target_gram), 1e-30)
        if self.style == "blog":
            return (layer_pixels / (image_hw[0] * image_hw[1])) ** 2 / 36.0
        if self.style == "gatys":
            return 1.0 / (4.0 * channels**2)
        return 1.0 / float(channels) ** 4

    def tv_scale(self, shape):
        """Factor on the TV sum of an image of ``shape`` (N, C, H, W)."""
        terms = shape[0] * shape[1] * (shape[2] - 1) * (shape[3] - 1)
        return self.tv_factor / max(terms, 1) if self.tv_mean else self.tv_factor


def _sum_squares(a):
    xp = array_module(a)
    return float(xp.sum(xp.square(a, dtype=xp.float64)))


def content_loss(features, target, scale):
    """``scale * sum((features - target)^2)`` and its gradient with respect to features."""
    diff = features - target
    loss = scale * _sum_squares(diff)
    diff *= 2.0 * scale  # the gradient, in the array the difference already took
    return loss, diff


def style_loss(features, target_gram, scale):
    """``scale * sum((gram(features) - target_gram)^2)`` and its gradient w.r.t. features."""
    diff = ops.gram(features) - target_gram
    grad_gram = (2.0 * scale) * diff
    return scale * _sum_squares(diff), ops.gram_backward(grad_gram, features)


def total_variation(x, power=2.0):
    """``sum over (i, j) of (dx^2 + dy^2)^(power/2)`` for x (N, C, H, W), with
    dx = x[i, j] - x[i, j+1] and dy = x[i, j] - x[i+1, j] over the (H-1) x (W-1) pixels that
    have both neighbours (the blog's and jcjohnson's crop); returns (loss, grad_x)."""
    xp = array_module(x)
    corner = x[:, :, :-1, :-1]
    dx = corner - x[:, :, :-1, 1:]
    dy = corner - x[:, :, 1:, :-1]
    squared = dx * dx + dy * dy
    half_power = power / 2.0
    if half_power == 1.0:
        loss, slope = float(xp.sum(squared, dtype=xp.float64)), 1.0
    else:
        loss = float(xp.sum(squared.astype(xp.float64) ** half_power))
        slope = half_power * squared ** (half_power - 1.0)
    # d/d corner = 2 slope (dx + dy); the right and lower neighbours get -2 slope dx, -2 slope dy
    ddx, ddy = (2.0 * slope) * dx, (2.0 * slope) * dy
    grad = xp.zeros_like(x)
    grad[:, :, :-1, :-1] += ddx + ddy
    grad[:, :, :-1, 1:] -= ddx
    grad[:, :, 1:, :-1] -= ddy
    return loss, grad


class StyleObjective:
    """Total loss ``alpha * content + beta * sum_l w_l style_l + tv_weight * tv`` of an image
    ``x`` in the network's input space, with its gradient.

    ``content_x`` and every style image are preprocessed network inputs (1, 3, H, W); style
    images may have any size (Gram matrices do not depend on it). ``style_blend`` weighs the
    style images' Gram matrices into one target per layer. ``pixel_scale`` is how many network
    input units one unit of [0, 1] image intensity is, so that TV is measured in 0-255 pixels.
    """

    def __init__(self, net, content_x, style_xs, *, content_layers, style_layers,
                 content_weight, style_weight, tv_weight, normalisation=Normalisation(),
                 style_blend=None, pixel_scale=255.0):
        if not style_xs:
            raise ValueError("style_xs: expected at least one style image, got none")
        blend = _blend_weights(style_blend, len(style_xs))
        self.net = net
        self.content_layers = list(content_layers)
        self.style_layers = dict(style_layers)
        self.content_weight = float(content_weight)
        self.style_weight = float(style_weight)
        self.tv_weight = float(tv_weight)
        self.normalisation = normalisation
        self.image_hw = tuple(content_x.shape[2:])
        self.tv_units = 255.0 / float(pixel_scale)
        self.taps = list(dict.fromkeys(self.content_layers + list(self.style_layers)))
        check_layers(net, self.taps)
        features = net.forward(content_x, self.content_layers)
        self.content_targets = {name: features[name].copy() for name in self.content_layers}
        self.style_targets = {}
        for weight, style_x in zip(blend, style_xs):
            features = net.forward(style_x, list(self.style_layers))
            for name in self.style_layers:
                gram = weight * ops.gram(features[name])
                self.style_targets[name] = self.style_targets.get(name, 0) + gram
        # the targets are fixed: their normalising sums are computed once, not per evaluation
        self._content_scales = {name: normalisation.content_scale(target)
                                for name, target in self.content_targets.items()}
        self._style_scales = {}
        self.evaluations = 0

    def _style_scale(self, name, shape):
        key = (name, tuple(shape))
        if key not in self._style_scales:
            self._style_scales[key] = self.normalisation.style_scale(self.style_targets[name], shape, self.image_hw)
        return self._style_scales[key]

    def __call__(self, x):
        """(total loss, gradient with respect to x, {"content", "style", "tv": weighted parts})."""
        features = self.net.forward(x, self.taps)
        grads = {}
        content = style = 0.0
        # each loss gets its weight folded into its scale, so that its gradient comes out
        # weighted rather than costing another pass over a layer-sized array
        if self.content_weight:
            for name in self.content_layers:
                scale = self.content_weight * self._content_scales[name]
                loss, grad = content_loss(features[name], self.content_targets[name], scale)
                content += loss
                _accumulate(grads, name, grad)
        if self.style_weight:
            for name, layer_weight in self.style_layers.items():
                f = features[name]
                scale = self.style_weight * layer_weight * self._style_scale(name, f.shape)
                loss, grad = style_loss(f, self.style_targets[name], scale)
                style += loss
                _accumulate(grads, name, grad)
        grad_x = self.net.backward(grads) if grads else array_module(x).zeros_like(x)
        tv = 0.0
        if self.tv_weight:
            units = self.tv_units
            loss, grad = total_variation(units * x, self.normalisation.tv_power)
            weight = self.tv_weight * self.normalisation.tv_scale(x.shape)
            tv = weight * loss
            grad_x += (weight * units) * grad  # grad_x is this call's own array
        self.evaluations += 1
        return content + style + tv, grad_x, {"content": content, "style": style, "tv": tv}


def check_layers(net, names):
    """Raise a ValueError naming every one of ``names`` that ``net`` does not have."""
    unknown = [name for name in names if name not in net.layer_names]
    if unknown:
        raise ValueError(f"layers: {', '.join(unknown)} not in the network; it has {', '.join(net.layer_names)}")


def _accumulate(grads, name, grad):
    if name in grads:
        grads[name] += grad  # both are this evaluation's own arrays
    else:
        grads[name] = grad


def _blend_weights(blend, count):
    if blend is None:
        return [1.0 / count] * count
    blend = [float(w) for w in blend]
    if len(blend) != count:
        raise ValueError(f"style_blend: expected {count} weights (one per style image), got {len(blend)}")
    if any(not np.isfinite(w) or w < 0 for w in blend) or sum(blend) <= 0:
        raise ValueError(f"style_blend: expected non-negative weights with a positive sum, got {blend}")
    total = sum(blend)
    return [w / total for w in blend]
