"""Neural-network layers over ``deepstyle.ops``: forward/backward by hand, Lemma 1 style."""

from .container import Sequential
from .costs import QuadraticCost, SoftmaxCrossEntropy
from .layers import (AvgPool2d, Conv2d, Dropout, Flatten, Layer, LeakyReLU, Linear, MaxPool2d,
                     ReLU, Sigmoid, Tanh)

__all__ = [
    "Layer", "Sequential", "Linear", "Conv2d", "ReLU", "LeakyReLU", "Sigmoid", "Tanh",
    "MaxPool2d", "AvgPool2d", "Dropout", "Flatten", "QuadraticCost", "SoftmaxCrossEntropy",
]
