"""Image classification (Higham & Higham section 7): the models, their training recipes, the
trainer with checkpoints, metrics, reports, and a classifier for new images."""

from .checkpoint import CheckpointError
from .classifier import Classifier, classify
from .models import MODELS, build_model
from .recipes import Recipe, default_recipe
from .trainer import Run, Trainer

__all__ = ["MODELS", "CheckpointError", "Classifier", "Recipe", "Run", "Trainer", "build_model",
           "classify", "default_recipe"]
