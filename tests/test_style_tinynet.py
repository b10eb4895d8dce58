"""A tiny stand-in feature network for the style-transfer tests, and a check of its backward.

It has the interface of ``deepstyle.models`` feature networks (layer_names, preprocess,
deprocess, forward(x, taps), backward(grads), min_size) but is plain NumPy in the input's
dtype, with smooth activations, so that float64 finite differences through it are exact to
~1e-9 and the style losses can be checked tightly.
"""

from __future__ import annotations

import numpy as np

from gradcheck import check_gradient


def _conv3x3(x, w):
    """Same-padded 3x3 cross-correlation of x (1, C, H, W) with w (K, C, 3, 3)."""
    _, _, h, wd = x.shape
    padded = np.pad(x[0], ((0, 0), (1, 1), (1, 1)))
    patches = np.stack([padded[:, r:r + h, s:s + wd] for r in range(3) for s in range(3)], axis=1)
    return np.einsum("kcp,cphw->khw", w.reshape(w.shape[0], w.shape[1], 9), patches)[None]


def _conv3x3_backward(grad_y, x, w):
    _, c, h, wd = x.shape
    grad_padded = np.zeros((c, h + 2, wd + 2), dtype=grad_y.dtype)
    for r in range(3):
        for s in range(3):
            grad_padded[:, r:r + h, s:s + wd] += np.einsum("kc,khw->chw", w[:, :, r, s], grad_y[0])
    return grad_padded[None, :, 1:-1, 1:-1]


class TinyNet:
    """conv1 (3x3, 3->4) act1 (tanh) pool1 (2x2 average) conv2 (3x3, 4->6) act2 (tanh)."""

    layer_names = ["conv1", "act1", "pool1", "conv2", "act2"]
    min_size = 2
    description = "tiny test network"

    def __init__(self, dtype=np.float64, seed=0):
        rng = np.random.default_rng(seed)
        self.dtype = dtype
        self.w1 = (rng.standard_normal((4, 3, 3, 3)) * 0.4).astype(dtype)
        self.w2 = (rng.standard_normal((6, 4, 3, 3)) * 0.3).astype(dtype)
        self.cache = None

    def preprocess(self, image):
        return (np.asarray(image, self.dtype).transpose(2, 0, 1)[None] * 2.0 - 1.0).astype(self.dtype)

    def deprocess(self, x):
        return np.clip((np.asarray(x[0], np.float32).transpose(1, 2, 0) + 1.0) / 2.0, 0.0, 1.0)

    def forward(self, x, taps):
        x = np.asarray(x, self.dtype)
        h, w = x.shape[2] // 2 * 2, x.shape[3] // 2 * 2
        conv1 = _conv3x3(x, self.w1)
        act1 = np.tanh(conv1)
        pool1 = act1[:, :, :h, :w].reshape(1, 4, h // 2, 2, w // 2, 2).mean(axis=(3, 5))
        conv2 = _conv3x3(pool1, self.w2)
        act2 = np.tanh(conv2)
        acts = dict(zip(self.layer_names, (conv1, act1, pool1, conv2, act2)))
        self.cache = (x, acts)
        return {name: acts[name] for name in taps}

    def backward(self, grads):
        x, acts = self.cache
        zero = {name: 0.0 for name in self.layer_names}
        g = {**zero, **grads}
        grad = g["act2"]
        grad = grad * (1.0 - acts["act2"] ** 2) + g["conv2"]
        grad = _conv3x3_backward(grad, acts["pool1"], self.w2) + g["pool1"]
        up = np.repeat(np.repeat(grad, 2, axis=2), 2, axis=3) / 4.0
        grad_act1 = np.zeros_like(acts["act1"])
        grad_act1[:, :, : up.shape[2], : up.shape[3]] = up
        grad = (grad_act1 + g["act1"]) * (1.0 - acts["act1"] ** 2) + g["conv1"]
        return _conv3x3_backward(grad, x, self.w1).astype(self.dtype)


def test_tinynet_backward_matches_finite_differences():
    net = TinyNet()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 3, 5, 6))
    weights = {name: rng.standard_normal(net.forward(x, [name])[name].shape) for name in ("act2", "pool1", "conv1")}

    def f(x):
        feats = net.forward(x, list(weights))
        return sum(float(np.sum(weights[n] * feats[n])) for n in weights)

    net.forward(x, list(weights))
    check_gradient(f, x, net.backward(weights), rtol=1e-7)
