"""The validation split of section 7.2 and the preprocessing of MatConvNet's ``cnn_cifar.m``.

Every statistic (the mean image, the mean contrast, the whitening matrix, the scale) is computed
from the training images only and then applied unchanged to validation, test and new images.
``cnn_cifar.m`` computes its whitening on 0-255 pixel values, so the floors below (40 for the
contrast, 10 for the square root of an eigenvalue) are in those units, as there.
"""

from __future__ import annotations

import numpy as np

from ..nn.init import as_generator
from .errors import DataError

CONTRAST_FLOOR = 40.0  # cnn_cifar.m: z .* mean(n) ./ max(n, 40)
EIGEN_FLOOR = 10.0  # cnn_cifar.m: V * diag(en ./ max(sqrt(d2), 10)) * V'


def split_validation(images, labels, count, rng):
    """``(train_images, train_labels, val_images, val_labels)``: ``count`` images drawn at random
    (from ``rng``) held out of the training set."""
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) \
            or not 0 <= count < len(images):
        raise DataError(f"--validation: expected a count in [0, {len(images) - 1}], got {count!r}")
    order = as_generator(rng).permutation(len(images))
    keep, held = np.sort(order[count:]), np.sort(order[:count])
    return images[keep], labels[keep], images[held], labels[held]


class Preprocessing:
    """Turns uint8 images (N, C, H, W) into the float32 network input.

    In order, each step optional: zero-pad to ``pad_to`` x ``pad_to`` (Fashion-MNIST's 28x28 to
    the network's 32x32); subtract the training set's mean image; per-image contrast
    normalisation (each image centred and scaled to the training set's mean standard deviation,
    the standard deviation floored at 40); ZCA whitening (eigenvalues' square roots floored at
    10, scaled by the root of the mean eigenvalue to roughly keep the norm); and ``standardize``:
    division by the training data's overall standard deviation.
    """

    STATS = ("mean_image", "mean_contrast", "whitening", "scale")

    def __init__(self, pad_to=None, mean_image=True, contrast=False, zca=False,
                 standardize=False):
        self.pad_to, self.use_mean, self.contrast = pad_to, mean_image, contrast
        self.zca, self.standardize = zca, standardize
        self.mean_image = self.mean_contrast = self.whitening = self.scale = None

    def options(self):
        return {"pad_to": self.pad_to, "mean_image": self.use_mean, "contrast": self.contrast,
                "zca": self.zca, "standardize": self.standardize}

    def _pad(self, images):
        images = np.asarray(images)
        if self.pad_to is None:
            return images.astype(np.float32)
        n, c, h, w = images.shape
        if h > self.pad_to or w > self.pad_to:
            raise DataError(f"images: expected at most {self.pad_to}x{self.pad_to}, got {h}x{w}")
        top, left = (self.pad_to - h) // 2, (self.pad_to - w) // 2
        out = np.zeros((n, c, self.pad_to, self.pad_to), np.float32)
        out[:, :, top:top + h, left:left + w] = images
        return out

    def _contrast(self, z):
        z = z - z.mean(axis=1, keepdims=True)
        spread = z.std(axis=1, ddof=1, keepdims=True)  # MATLAB's std(z, 0, 1)
        if self.mean_contrast is None:
            self.mean_contrast = np.float32(spread.mean())
        return z * (self.mean_contrast / np.maximum(spread, CONTRAST_FLOOR))

    def fit(self, images):
        """Compute the statistics from the training images; returns their preprocessed form."""
        self.mean_image = self.mean_contrast = self.whitening = self.scale = None
        x = self._pad(images)
        if self.use_mean:
            self.mean_image = x.mean(axis=0)
        z = self._flat(x)
        if self.zca:
            covariance = (z.T @ z).astype(np.float64) / len(z)
            eigenvalues, vectors = np.linalg.eigh(covariance)
            eigenvalues = np.maximum(eigenvalues, 0.0)
            gain = np.sqrt(eigenvalues.mean()) / np.maximum(np.sqrt(eigenvalues), EIGEN_FLOOR)
            self.whitening = ((vectors * gain) @ vectors.T).astype(np.float32)
            z = z @ self.whitening
        if self.standardize:
            self.scale = np.float32(1.0 / max(float(z.std()), 1e-12))
            z *= self.scale
        return z.reshape(x.shape)

    def _flat(self, x):
        if self.mean_image is not None:
            x = x - self.mean_image
        z = x.reshape(len(x), -1)
        return self._contrast(z) if self.contrast else z

    def __call__(self, images):
        """Preprocess images (N, C, H, W) with the fitted statistics."""
        if self.use_mean and self.mean_image is None:
            raise RuntimeError("Preprocessing: fit() it on the training images first")
        x = self._pad(images)
        z = self._flat(x)
        if self.whitening is not None:
            z = z @ self.whitening
        if self.scale is not None:
            z = z * self.scale
        return np.ascontiguousarray(z.reshape(x.shape), dtype=np.float32)

    def state(self):
        """The options and statistics as arrays, for a checkpoint (the mean_image option is
        implied by the mean image's presence)."""
        out = {f"preprocess.{k}": np.asarray(v) for k, v in self.options().items()
               if v is not None and k != "mean_image"}
        out.update({f"preprocess.{k}": np.asarray(getattr(self, k)) for k in self.STATS
                    if getattr(self, k) is not None})
        return out

    @classmethod
    def from_state(cls, arrays):
        """The inverse of :meth:`state`."""
        get = {k[len("preprocess."):]: v for k, v in arrays.items() if k.startswith("preprocess.")}
        options = {k: get[k].item() for k in ("pad_to", "contrast", "zca", "standardize")
                   if k in get}
        out = cls(mean_image="mean_image" in get, **options)
        for k in cls.STATS:
            if k in get:
                setattr(out, k, get[k].astype(np.float32) if get[k].ndim else np.float32(get[k]))
        return out
