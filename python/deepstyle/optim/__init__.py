"""Training: stochastic gradient (section 4), its sampling schemes, schedules and the loop."""

from .fused import SigmoidNetSGD
from .loop import Callback, GradientSteps, History, LoopState, Progress, evaluate, run_loop, train
from .sampling import WithoutReplacement, WithReplacement
from .schedules import Constant, PiecewiseConstant, cifar_recipe
from .base import Optimizer
from .sgd import SGD, Adam, TrainingDiverged

__all__ = [
    "Optimizer", "SGD", "Adam", "SigmoidNetSGD", "TrainingDiverged", "WithReplacement", "WithoutReplacement",
    "Constant", "PiecewiseConstant", "cifar_recipe", "train", "evaluate", "History", "Progress",
    "Callback", "GradientSteps", "LoopState", "run_loop",
]
