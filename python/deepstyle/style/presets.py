"""Named recipes: layers, weights and the loss normalisation their weights were tuned with.

VGG layer names: ``convB_I`` is a convolution's output before its ReLU, ``reluB_I`` after.
What Gatys et al. call conv4_2 is, in the Caffe network they used, the rectified response
(Caffe's ReLU runs in place), so the recipes tap ``relu`` layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .losses import Normalisation

__all__ = ["Preset", "PRESETS", "DEFAULT_PRESET"]

GATYS_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    arch: str
    content_layers: tuple
    style_layers: dict = field(hash=False)  # name -> per-layer weight
    content_weight: float
    style_weight: float
    tv_weight: float
    normalisation: Normalisation


def _equal(layers, total=1.0):
    return {name: total / len(layers) for name in layers}


PRESETS = {
    preset.name: preset
    for preset in (
        Preset(
            name="deepstyle",
            summary="the default, tuned on the pretrained VGG16 (`deepstyle weights fetch vgg16`): "
            "content relu4_2, style relu1_1, relu2_1, relu3_1, relu4_1 weighted 10, 10, 0.5, 0.01 "
            "(the shallow layers carry the palette and brush work; the deep ones blot the picture), "
            "each loss relative to its target's size (so the weights mean the same on any network, "
            "pretrained or random), TV as a mean",
            arch="vgg16",
            content_layers=("relu4_2",),
            style_layers={"relu1_1": 10.0, "relu2_1": 10.0, "relu3_1": 0.5, "relu4_1": 0.01},
            content_weight=1.0,
            style_weight=100.0,
            tv_weight=1e-4,
            normalisation=Normalisation(),
        ),
        Preset(
            name="johnson",
            summary="jcjohnson/neural-style defaults: VGG19, content relu4_2, style relu1_1..relu5_1, "
            "content 5, style 100, TV 1e-3, mean-squared (normalised) losses",
            arch="vgg19",
            content_layers=("relu4_2",),
            style_layers=_equal(GATYS_STYLE_LAYERS, total=len(GATYS_STYLE_LAYERS)),
            content_weight=5.0,
            style_weight=100.0,
            tv_weight=1e-3,
            normalisation=Normalisation(content="mean", style="mean", tv_power=2.0, tv_factor=0.5, tv_mean=False),
        ),
        Preset(
            name="gatys",
            summary="Gatys et al. 2015: VGG19, content relu4_2, style relu1_1..relu5_1 weighted 1/5, "
            "1/2 sum-squared content, 1/(4 N^2 M^2) style, alpha/beta = 1e-3, no TV",
            arch="vgg19",
            content_layers=("relu4_2",),
            style_layers=_equal(GATYS_STYLE_LAYERS),
            content_weight=1.0,
            style_weight=1e3,
            tv_weight=0.0,
            normalisation=Normalisation(content="half", style="gatys", tv_power=2.0, tv_mean=False),
        ),
        Preset(
            name="blog",
            summary="the blog's Keras recipe: VGG16, content relu2_2, style relu1_2, relu2_2, relu3_3, "
            "relu4_3, relu5_3 weighted 1/5, content 0.025, style 5, TV 1 on (dx^2 + dy^2)^1.25",
            arch="vgg16",
            content_layers=("relu2_2",),
            style_layers=_equal(("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")),
            content_weight=0.025,
            style_weight=5.0,
            tv_weight=1.0,
            normalisation=Normalisation(content="sum", style="blog", tv_power=2.5, tv_mean=False),
        ),
    )
}

DEFAULT_PRESET = "deepstyle"
