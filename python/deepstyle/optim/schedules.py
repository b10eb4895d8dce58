"""Learning-rate schedules: callables mapping the (0-based) epoch to a learning rate."""

from __future__ import annotations

from .sgd import _check_rate


class Constant:
    def __init__(self, lr):
        self.lr = _check_rate(lr, "lr", 0.0, low_open=True)

    def __call__(self, epoch):
        return self.lr

    def __repr__(self):
        return f"Constant({self.lr})"


class PiecewiseConstant:
    """``PiecewiseConstant([(0.05, 30), (0.005, 10), (0.0005, 5)])``: 0.05 for 30 epochs, then
    0.005 for 10, then 0.0005 for 5 (and after that, the last rate)."""

    def __init__(self, phases):
        phases = list(phases)
        if not phases:
            raise ValueError("phases: expected at least one (lr, epochs) pair, got none")
        self.phases = []
        for i, phase in enumerate(phases):
            if not (isinstance(phase, (tuple, list)) and len(phase) == 2):
                raise ValueError(f"phases[{i}]: expected an (lr, epochs) pair, got {phase!r}")
            lr, epochs = phase
            if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
                raise ValueError(f"phases[{i}]: expected a positive integer epoch count, got "
                                 f"{epochs!r}")
            self.phases.append((_check_rate(lr, f"phases[{i}] lr", 0.0, low_open=True), epochs))
        self.epochs = sum(epochs for _, epochs in self.phases)

    def __call__(self, epoch):
        for lr, epochs in self.phases:
            if epoch < epochs:
                return lr
            epoch -= epochs
        return self.phases[-1][0]

    def __repr__(self):
        return f"PiecewiseConstant({self.phases})"


def cifar_recipe():
    """The CIFAR-10 schedule of section 7.4: 0.05 x 30 epochs, 0.005 x 10, 0.0005 x 5."""
    return PiecewiseConstant([(0.05, 30), (0.005, 10), (0.0005, 5)])
