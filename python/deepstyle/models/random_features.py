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
  above 8 are computed on an image blurred and downsampled 2x, 4x or 8x, with an odd kernel
  of about size / factor (e.g. 55 -> 7x7 at 1/8): about the same receptive fields at a fraction
  of the cost of a 55x55 convolution. Taps are ``conv_k<size>`` and ``relu_k<size>``.

The calibration image is 1/f ("pink") noise: its power spectrum is that of natural images, so
the scales set on it hold for photographs and paintings.
"""

from __future__ import annotations

import numpy as np

from .. import nn
from .feature_net import ConventionIO, ReLU, add_tap_gradient, check_input, check_taps
from .convention import TORCHVISION

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


def _binomial_halving():
    """A frozen stride-2 convolution applying the 3x3 binomial filter to each RGB channel alone."""
    conv = nn.Conv2d(3, 3, 3, stride=2, padding=1, bias=False)
    taps = np.array([1.0, 2.0, 1.0]) / 4
    conv.weight[...] = 0
    for c in range(3):
        conv.weight[c, c] = np.outer(taps, taps)
    conv.trainable = False
    return conv


class _Branch:
    """Low-pass and downsample by ``factor``, then a random k x k convolution and a ReLU.

    The downsampling is a cascade of 2x binomial filters ([1 2 1] x [1 2 1] / 16, stride 2): at
    stride 2 every input pixel gets the same total weight, so the gradient sent back to the image
    is even. A factor x factor box pooling printed its block grid on the synthesised images, and
    overlapping 3x3 averages a finer grid (their pixels get weights 1/9 and 2/9 in turn).
    """

    def __init__(self, size, channels, rng):
        self.factor, kernel = _branch_geometry(size)
        self.pools = [_binomial_halving() for _ in range(self.factor.bit_length() - 1)]
        self.conv = nn.Conv2d(3, channels, kernel, padding=kernel // 2, bias=False, rng=rng)
        self.conv.trainable = False
        self.relu = ReLU()

    def forward(self, x):
        for pool in self.pools:
            x = pool.forward(x)
        pre = self.conv.forward(x)
        return pre, self.relu.forward(pre)

    def backward(self, grad_post, grad_pre, names, shape):
        grad = None
        if grad_post is not None:
            grad = self.relu.backward(add_tap_gradient(None, grad_post, names[1], shape))
        else:
            self.relu.clear()
        if grad_pre is not None:
            grad = add_tap_gradient(grad, grad_pre, names[0], shape)
        grad = self.conv.backward(grad)
        for pool in reversed(self.pools):
            grad = pool.backward(grad)
        return grad

    def clear(self):
        for layer in self.pools + [self.conv, self.relu]:
            layer.clear()


class MultiScaleNet(ConventionIO):
    """Parallel branches on the same input, one per filter size; taps conv_k<size>, relu_k<size>."""

    def __init__(self, sizes=MULTISCALE_SIZES, channels=MULTISCALE_CHANNELS, seed=0, convention=TORCHVISION):
        rng = np.random.default_rng(seed)
        self.convention = convention
        self._branches = {size: _Branch(size, channels, rng) for size in sizes}
        self.layer_names = [f"{kind}_k{size}" for size in sizes for kind in ("conv", "relu")]
        self.default_layers = {
            "content": ("relu_k3",),
            "style": tuple(f"relu_k{size}" for size in sizes),
        }
        sizes_text = ",".join(map(str, sizes))
        self.description = (f"random multi-scale filters (sizes {sizes_text}, {channels} each, seed {seed}; "
                            "Ustyuzhaninov et al. 2017)")
        self._shapes = {}  # size -> activation shape, for the branches the last forward ran
        x = _calibration_input(convention, seed)
        for branch in self._branches.values():
            _rescale(branch.conv, branch.forward(x)[0])
            branch.clear()

    def __repr__(self):
        return f"<MultiScaleNet {self.description}>"

    def layers(self):
        """Every layer of every branch."""
        return [layer for branch in self._branches.values()
                for layer in branch.pools + [branch.conv, branch.relu]]

    @property
    def min_size(self):
        """Below this the coarsest branch would see less than one pixel of its own."""
        return max(branch.factor for branch in self._branches.values())

    def forward(self, x, taps):
        taps = check_taps(taps, self.layer_names)
        sizes = sorted({_size_of(name) for name in taps})
        check_input(x, max(self._branches[s].factor for s in sizes), ", ".join(taps))
        self.clear()
        features = {}
        for size in sizes:
            pre, post = self._branches[size].forward(x)
            for name, value in ((f"conv_k{size}", pre), (f"relu_k{size}", post)):
                if name in taps:
                    features[name] = value
            self._shapes[size] = pre.shape
        return features

    def backward(self, grads):
        if not self._shapes:
            raise RuntimeError("backward: no forward pass to go back through (call forward first)")
        check_taps(list(grads), self.layer_names, "grads")
        stale = [name for name in grads if _size_of(name) not in self._shapes]
        if stale:
            raise ValueError(f"grads: {', '.join(stale)} were not tapped by the last forward pass")
        grad_x = None
        for size, shape in self._shapes.items():
            names = (f"conv_k{size}", f"relu_k{size}")
            branch = self._branches[size]
            if not any(name in grads for name in names):
                branch.clear()
                continue
            grad = branch.backward(grads.get(names[1]), grads.get(names[0]), names, shape)
            if grad_x is None:
                grad_x = grad
            else:
                grad_x += grad
        self._shapes = {}
        return grad_x

    def clear(self):
        """Drop the activations kept for backward (after a forward that needs none)."""
        for size in self._shapes:
            self._branches[size].clear()
        self._shapes = {}


def _size_of(name):
    return int(name.split("_k")[1])


def calibrate_random_vgg(layers, convention, seed):
    """Rescale randomly initialised VGG ``layers`` (see the module doc) in place."""
    calibrate_chain(layers, _calibration_input(convention, seed))

