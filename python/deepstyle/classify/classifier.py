"""Classifying images with a trained network: ``Classifier.load(checkpoint).classify(image)``."""

from __future__ import annotations

import numpy as np

from . import checkpoint
from .metrics import predict_logits
from .models import build_model


def softmax(logits):
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z.astype(np.float64))
    return e / e.sum(axis=1, keepdims=True)


class Classifier:
    """A trained network with its preprocessing and class names."""

    def __init__(self, net, preprocessing, classes, image_shape):
        self.net, self.preprocessing = net, preprocessing
        self.classes, self.image_shape = list(classes), tuple(image_shape)  # (C, H, W)
        self.net.eval()

    @classmethod
    def load(cls, path):
        meta, params, _, pre = checkpoint.load(path)
        recipe = meta["recipe"]
        net = build_model(meta["model"], meta["input_shape"], len(meta["classes"]),
                          dropout=recipe["dropout"], hidden=recipe["hidden"], rng=0)
        checkpoint.set_parameters(net, params, path)
        return cls(net, pre, meta["classes"], meta["image_shape"])

    def as_batch(self, images):
        """Images as the (N, C, H, W) array of 0-255 values the network was trained on: a PIL
        image (converted to grey or RGB and resized), a list of them, or an array (H, W),
        (H, W, C), (N, H, W) for one channel or (N, C, H, W)."""
        c, h, w = self.image_shape
        if isinstance(images, (list, tuple)):
            return np.concatenate([self.as_batch(image) for image in images])
        if hasattr(images, "convert") and hasattr(images, "resize"):  # a PIL image
            picture = images.convert("L" if c == 1 else "RGB").resize((w, h))
            images = np.asarray(picture, dtype=np.float32)
        x = np.asarray(images, dtype=np.float32)
        if x.ndim == 2 and c == 1:
            x = x[None, None]
        elif x.ndim == 3 and x.shape[-1] == c and x.shape[:2] == (h, w):
            x = np.transpose(x, (2, 0, 1))[None]
        elif x.ndim == 3 and c == 1:
            x = x[:, None]
        if x.ndim != 4 or x.shape[1:] != (c, h, w):
            raise ValueError(f"images: expected {c}x{h}x{w} images (one as (H, W[, C]), several "
                             f"as (N, C, H, W)) or PIL images, got an array of shape "
                             f"{np.shape(images)}")
        return x

    def probabilities(self, images):
        """Class probabilities (N, classes)."""
        return softmax(predict_logits(self.net, self.preprocessing(self.as_batch(images))))

    def classify(self, images):
        """``[(class name, probability), ...]``, one per image."""
        p = self.probabilities(images)
        best = p.argmax(axis=1)
        return [(self.classes[k], float(p[i, k])) for i, k in enumerate(best)]


def classify(checkpoint_path, images):
    """The most likely class of each image and its probability, from a training checkpoint."""
    return Classifier.load(checkpoint_path).classify(images)
