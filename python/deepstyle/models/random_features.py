"""Feature networks with random weights, for when no pretrained weights are at hand.

Two kinds, both seeded and deterministic:

* ``random-vgg`` (He, Wang & Hopcroft 2016, "A powerful generative model using random weights
  for the deep image representation"): the VGG architecture with Gaussian weights. Each
  convolution is rescaled so that its output has unit RMS on a fixed calibration image, so every
  layer carries signal of the same size however deep it is and the per-layer loss weights of the
  VGG recipes keep their meaning. Layer names are VGG's.
* ``random-multiscale`` (Ustyuzhaninov, Brendel, Gatys & Bethge 2017, "What does it take to
  generate natural textures?"): one layer of random filters of sizes 3, 5, 7, 11, 15, 23, 37 and
  55 pixels, each followed by a ReLU; the Gram matrices of these maps describe a texture. Sizes
  above 8 are computed on a 2x, 4x or 8x average-pooled image with an odd kernel of about
  size / factor (e.g. 55 -> 7x7 on a 1/8 image): the same receptive fields at a fraction of the
  cost of a 55x55 convolution. Taps are ``conv_k<size>`` and ``relu_k<size>``.

The calibration image is 1/f ("pink") noise: its power spectrum is that of natural images, so
the scales set on it hold for photographs and paintings.
"""

from __future__ import annotations

import numpy as np

from .. import nn
from .feature_net import add_tap_gradient, check_input, check_taps
from .weights import TORCHVISION

MULTISCALE_SIZES = (3, 5, 7, 11, 15, 23, 37, 55)
MULTISCALE_CHANNELS = 128
CALIBRATION_SIZE = 128


def pink_noise_image(size, seed=0):
    """(size, size, 3) float32 image in [0, 1] whose spectrum falls off as 1/f, like photographs'."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    falloff = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / size)
    spectrum = rng.standard_normal((3, size, size // 2 + 1)) + 1j * rng.standard_normal((3, size, size // 2 + 1))
    image = np.fft.irfft2(spectrum * falloff, s=(size, size)).transpose(1, 2, 0)
    image = (image - image.mean(axis=(0, 1))) / image.std(axis=(0, 1))
    return np.clip(0.5 + 0.2 * image, 0.0, 1.0).astype(np.float32)


def _calibration_input(convention, seed):
    return convention.preprocess(pink_noise_image(CALIBRATION_SIZE, seed))


def _rescale(conv, output):
    """Scale ``conv``'s weights (biases are zero) so that ``output`` -- its response -- has unit RMS."""
    rms = float(np.sqrt(np.mean(np.square(output, dtype=np.float64))))
    if rms > 0:
        conv.weight *= np.float32(1.0 / rms)
        output *= np.float32(1.0 / rms)
    return output


def calibrate_chain(layers, x):
    """Rescale every Conv2d of a chain of (name, layer), in order, on the input ``x``."""
    for _, layer in layers:
        y = layer.forward(x)
        layer.clear()
        if isinstance(layer, nn.Conv2d):
            y = _rescale(layer, y)
        x = y


# --- the multi-scale single-layer network ----------------------------------------------------


def _branch_geometry(size):
    """(pooling factor, kernel size) emulating a ``size`` x ``size`` filter (see the module doc)."""
    factor = 1
    while size / factor > 8:
        factor *= 2
    kernel = int(round(size / factor))
    return factor, kernel if kernel % 2 else kernel + (1 if size / factor > kernel else -1)


class MultiScaleNet:
    """Parallel branches (optional avg-pool, conv k x k, ReLU) on the same input; taps per branch."""

    def __init__(self, sizes=MULTISCALE_SIZES, channels=MULTISCALE_CHANNELS, seed=0, convention=TORCHVISION):
        rng = np.random.default_rng(seed)
        self.convention = convention
        self._branches = {}
        for size in sizes:
            factor, kernel = _branch_geometry(size)
            pool = nn.AvgPool2d(factor) if factor > 1 else None
            conv = nn.Conv2d(3, channels, kernel, padding=kernel // 2, bias=False, rng=rng)
            conv.trainable = False
            self._branches[size] = (factor, pool, conv, nn.ReLU())
        self.layer_names = [f"{kind}_k{size}" for size in sizes for kind in ("conv", "relu")]
        self.default_layers = {
            "content": ("relu_k3",),
            "style": tuple(f"relu_k{size}" for size in sizes),
        }
        sizes_text = ",".join(map(str, sizes))
        self.description = (f"random multi-scale filters (sizes {sizes_text}, {channels} each, seed {seed}; "
                            "Ustyuzhaninov et al. 2017)")
        self._saved = {}
        self._calibrate(_calibration_input(convention, seed))

    def __repr__(self):
        return f"<MultiScaleNet {self.description}>"

    @property
    def min_size(self):
        return max(factor for factor, *_ in self._branches.values())

    def preprocess(self, image):
        return self.convention.preprocess(image)

    def deprocess(self, x):
        return self.convention.deprocess(x)

    def _calibrate(self, x):
        for factor, pool, conv, _ in self._branches.values():
            _rescale(conv, conv.forward(pool.forward(x) if pool else x))
            conv.clear()
            if pool:
                pool.clear()

    def forward(self, x, taps):
        taps = check_taps(taps, self.layer_names)
        if not taps:
            raise ValueError("taps: expected at least one layer name, got none")
        sizes = sorted({int(name.split("_k")[1]) for name in taps})
        check_input(x, max(self._branches[s][0] for s in sizes), ", ".join(taps))
        self._release()
        features = {}
        for size in sizes:
            _, pool, conv, relu = self._branches[size]
            pre = conv.forward(pool.forward(x) if pool else x)
            post = relu.forward(pre)
            for kind, value in (("conv", pre), ("relu", post)):
                if f"{kind}_k{size}" in taps:
                    features[f"{kind}_k{size}"] = value
            self._saved[size] = post.shape
        return features

    def backward(self, grads):
        if not self._saved:
            raise RuntimeError("backward: no forward pass to go back through (call forward first)")
        check_taps(list(grads), self.layer_names, "grads")
        grad_x = None
        for name in grads:
            if int(name.split("_k")[1]) not in self._saved:
                raise ValueError(f"grads: {name} was not tapped by the last forward pass")
        for size, shape in self._saved.items():
            _, pool, conv, relu = self._branches[size]
            post, pre = grads.get(f"relu_k{size}"), grads.get(f"conv_k{size}")
            if post is None and pre is None:
                for layer in (pool, conv, relu):
                    if layer:
                        layer.clear()
                continue
            grad = None
            if post is not None:
                grad = relu.backward(add_tap_gradient(None, post, f"relu_k{size}", shape))
            else:
                relu.clear()
            if pre is not None:
                grad = add_tap_gradient(grad, pre, f"conv_k{size}", shape)
            grad = conv.backward(grad)
            if pool:
                grad = pool.backward(grad)
            if grad_x is None:
                grad_x = grad
            else:
                grad_x += grad
        self._saved = {}
        return grad_x

    def _release(self):
        for size in self._saved:
            for layer in self._branches[size][1:]:
                if layer:
                    layer.clear()
        self._saved = {}


def calibrate_random_vgg(layers, convention, seed):
    """Rescale randomly initialised VGG ``layers`` (see the module doc) in place."""
    calibrate_chain(layers, _calibration_input(convention, seed))

