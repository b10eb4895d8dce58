"""Neural style transfer (Gatys et al.): losses, optimisers, presets and the transfer loop."""

from ..backend import array_module
from ..optim.minimize import LBFGS, Adam
from .losses import Normalisation, StyleObjective, content_loss, style_loss, total_variation
from .presets import DEFAULT_PRESET, PRESETS, Preset
from .transfer import Painter, Progress, Settings, estimate_memory

__all__ = [
    "Normalisation", "StyleObjective", "content_loss", "style_loss", "total_variation",
    "LBFGS", "Adam", "array_module", "PRESETS", "DEFAULT_PRESET", "Preset",
    "Painter", "Progress", "Settings", "estimate_memory",
]
