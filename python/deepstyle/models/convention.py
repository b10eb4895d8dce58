"""How a network wants its input (``InputConvention``: channel order, value range, per-channel
mean / std), the conventions of the published VGG weights (torchvision's, Caffe's), and the
conversions between (H, W, 3) RGB images in [0, 1] and network inputs."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from ..backend import array_module

_MAX_INPUT_MAGNITUDE = 1e6


@dataclass(frozen=True)
class InputConvention:
    """How a network wants its input: channel order, value range and per-channel mean / std.

    ``mean`` and ``std`` are given in the network's channel order and value range, as the
    weights' authors publish them (Caffe's BGR mean is (103.939, 116.779, 123.68)).
    """

    channel_order: str = "RGB"
    scale: float = 1.0
    mean: tuple = (0.0, 0.0, 0.0)
    std: tuple = (1.0, 1.0, 1.0)
    name: str = "custom"

    def __post_init__(self):
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order: expected 'RGB' or 'BGR', got {self.channel_order!r}")
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float)) or not 0 < self.scale < math.inf:
            raise ValueError(f"scale: expected a positive finite number, got {self.scale!r:.80}")
        for what in ("mean", "std"):
            values = getattr(self, what)
            if not isinstance(values, (tuple, list)) or len(values) != 3 or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                raise ValueError(f"{what}: expected 3 numbers, got {values!r:.80}")
            object.__setattr__(self, what, tuple(float(v) for v in values))
        if not all(math.isfinite(v) for v in self.mean + self.std) or min(self.std) <= 0:
            raise ValueError(f"mean, std: expected finite values, std positive, got {self.mean}, {self.std}")
        # the network input is scale/std * pixel - mean/std: beyond ~1e6 float32 activations overflow
        # (a std of 1e-300 would paint an all-black image with exit status 0)
        extreme = max(max(self.scale, abs(m)) / s for m, s in zip(self.mean, self.std))
        if extreme > _MAX_INPUT_MAGNITUDE:
            raise ValueError(
                f"std: scale/std and mean/std reach {extreme:.3g}, expected at most {_MAX_INPUT_MAGNITUDE:g} "
                f"(got scale {self.scale}, mean {self.mean}, std {self.std})"
            )

    def _affine(self, xp):
        """Per-channel (gain, offset) in the network's channel order: x = gain * rgb01 + offset."""
        gain = xp.asarray([self.scale / s for s in self.std], dtype=xp.float32)
        offset = xp.asarray([-m / s for m, s in zip(self.mean, self.std)], dtype=xp.float32)
        return gain[:, None, None], offset[:, None, None]

    def preprocess(self, image):
        """(H, W, 3) RGB image in [0, 1] -> (1, 3, H, W) float32 network input."""
        xp = array_module(image)
        image = xp.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image: expected an (H, W, 3) RGB array, got shape {tuple(image.shape)}")
        if image.dtype.kind not in "fiu":
            raise TypeError(f"image: expected a real array, got dtype {image.dtype}")
        chw = image.transpose(2, 0, 1)
        if self.channel_order == "BGR":
            chw = chw[::-1]
        gain, offset = self._affine(xp)
        x = xp.empty((1,) + chw.shape, dtype=xp.float32)
        xp.multiply(chw, gain, out=x[0], casting="unsafe")
        x[0] += offset
        return x

    def deprocess(self, x):
        """(1, 3, H, W) or (3, H, W) network input -> (H, W, 3) RGB float32 clipped to [0, 1]."""
        xp = array_module(x)
        x = xp.asarray(x)
        if x.ndim == 4 and x.shape[0] == 1:
            x = x[0]
        if x.ndim != 3 or x.shape[0] != 3:
            raise ValueError(f"x: expected a (1, 3, H, W) or (3, H, W) array, got shape {tuple(x.shape)}")
        gain, offset = self._affine(xp)
        chw = (x - offset) / gain
        if self.channel_order == "BGR":
            chw = chw[::-1]
        return xp.ascontiguousarray(xp.clip(chw.transpose(1, 2, 0), 0.0, 1.0), dtype=xp.float32)

    def to_json(self):
        return json.dumps({"channel_order": self.channel_order, "scale": self.scale,
                           "mean": list(self.mean), "std": list(self.std), "name": self.name})

    @classmethod
    def from_json(cls, text):
        fields = json.loads(text)
        if not isinstance(fields, dict) or not set(fields) <= {"channel_order", "scale", "mean", "std", "name"}:
            raise ValueError("expected an object with channel_order, scale, mean, std and name")
        if not isinstance(fields.get("name", ""), str):
            raise ValueError("name: expected a string")
        return cls(**fields)


TORCHVISION = InputConvention("RGB", 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "torchvision")
CAFFE = InputConvention("BGR", 255.0, (103.939, 116.779, 123.68), (1.0, 1.0, 1.0), "caffe")
IMAGENET_MEAN_RGB_255 = (123.68, 116.779, 103.939)
