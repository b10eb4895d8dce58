"""The default training recipe of each model, and how ``--epochs`` shortens one.

``cifar-cnn`` follows MatConvNet's ``cnn_cifar.m`` / ``cnn_train.m``: mini-batches of 100 in a
fresh random order each epoch, momentum 0.9, weight decay 1e-4 (on filters; biases are not
decayed, eq. 33), learning rate 0.05 / 0.005 / 0.0005 for 30 / 10 / 5 epochs with the
per-parameter multipliers of :func:`~deepstyle.classify.models.cifar_cnn_lr_multipliers`, a
horizontal flip of the whole batch with probability 0.5, and as preprocessing the training
set's mean image subtracted, per-image contrast normalisation and ZCA whitening.
``linear`` and ``mlp`` train on standardised pixels (mean image subtracted, divided by the
training data's standard deviation) with momentum SGD, the rate cut tenfold for the last
quarter of the epochs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..optim import PiecewiseConstant


@dataclass
class Recipe:
    phases: list  # [(learning rate, epochs), ...]
    batch_size: int = 100
    momentum: float = 0.9
    weight_decay: float = 1e-4
    flip: bool = False
    mean_image: bool = True
    contrast: bool = False
    zca: bool = False
    standardize: bool = False
    dropout: bool = False
    hidden: int = 256
    validation: int = 5000

    @property
    def epochs(self):
        return sum(n for _, n in self.phases)

    def schedule(self):
        return PiecewiseConstant([tuple(p) for p in self.phases])

    def with_epochs(self, epochs):
        """The same recipe over ``epochs`` epochs, each phase scaled in proportion (phases that
        shrink to nothing are dropped; the first one always keeps at least one epoch)."""
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"--epochs: expected a positive integer, got {epochs!r}")
        total, done, running, phases = self.epochs, 0, 0, []
        for lr, n in self.phases:
            running += n
            end = round(epochs * running / total)
            end = max(end, 1) if not phases else end
            if end > done:
                phases.append((lr, end - done))
                done = end
        return dataclasses.replace(self, phases=phases)

    def as_dict(self):
        return dataclasses.asdict(self)


DEFAULTS = {
    "linear": Recipe(phases=[(0.01, 6), (0.001, 2)], standardize=True),
    "mlp": Recipe(phases=[(0.01, 15), (0.001, 5)], standardize=True),
    "cifar-cnn": Recipe(phases=[(0.05, 30), (0.005, 10), (0.0005, 5)], flip=True,
                        contrast=True, zca=True),
}


def default_recipe(model):
    return dataclasses.replace(DEFAULTS[model])
