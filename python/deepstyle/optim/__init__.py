"""Training: stochastic gradient (section 4) and Adam on network parameters, L-BFGS and Adam on
one array (``minimize``), the sampling schemes, schedules and the training loop."""

from .base import Optimizer
from .fused import SigmoidNetSGD
from .loop import Callback, GradientSteps, History, LoopState, Progress, evaluate, run_loop, train
from .minimize import LBFGS
from .sampling import WithoutReplacement, WithReplacement
from .schedules import Constant, PiecewiseConstant, cifar_recipe
from .sgd import SGD, Adam, TrainingDiverged

__all__ = [
    "Optimizer", "SGD", "Adam", "LBFGS", "SigmoidNetSGD", "TrainingDiverged", "WithReplacement",
    "WithoutReplacement", "Constant", "PiecewiseConstant", "cifar_recipe", "train", "evaluate",
    "History", "Progress", "Callback", "GradientSteps", "LoopState", "run_loop",
]
