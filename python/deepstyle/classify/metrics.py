"""Classification metrics: top-k errors, evaluation over a data set, the confusion matrix."""

from __future__ import annotations

import numpy as np

from .. import ops
from ..backend import array_module, to_host


def top_k_wrong(logits, labels, k):
    """How many rows do not have their label among the k largest logits (NumPy or CuPy arrays:
    counted where they are)."""
    xp = array_module(logits)
    k = min(k, logits.shape[1])
    label_logit = logits[xp.arange(len(labels)), labels][:, None]
    # the label is in the top k when fewer than k logits beat it (ties count in its favour)
    return int(xp.count_nonzero((logits > label_logit).sum(axis=1) >= k))


def predict_logits(net, inputs, batch_size=500):
    """The network's logits for every input (on the network's device), in evaluation mode,
    batch by batch, as a NumPy array."""
    was_training = net.training
    net.eval()
    try:
        out = [np.array(to_host(net.forward(inputs[i:i + batch_size])))
               for i in range(0, len(inputs), batch_size)]
        net.clear()
    finally:
        net.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def evaluate(net, inputs, labels, batch_size=500):
    """``(cost, top1_error, top5_error, logits)`` over a whole data set (mean softmax log loss,
    fractions of images wrong)."""
    logits = predict_logits(net, inputs, batch_size)
    labels = to_host(labels)
    n = len(labels)
    if n == 0:
        return float("nan"), float("nan"), float("nan"), logits
    cost = sum(ops.softmax_cross_entropy(logits[i:i + batch_size], labels[i:i + batch_size])[0]
               * len(labels[i:i + batch_size]) for i in range(0, n, batch_size)) / n
    return cost, top_k_wrong(logits, labels, 1) / n, top_k_wrong(logits, labels, 5) / n, logits


def confusion_matrix(predicted, labels, classes):
    """counts[i, j]: images of true class j predicted as class i (Figure 13's layout)."""
    counts = np.zeros((classes, classes), np.int64)
    np.add.at(counts, (predicted, labels), 1)
    return counts


class RunningMetrics:
    """Mean cost and top-1/top-5 errors over the training batches of the current epoch (the
    paper's Figure 11 averages them so), fed by GradientSteps' ``on_batch``."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.images = 0
        self.cost_sum = 0.0
        self.wrong1 = self.wrong5 = 0

    def __call__(self, step, cost, logits, labels):
        n = len(labels)
        self.images += n
        self.cost_sum += cost * n
        self.wrong1 += top_k_wrong(logits, labels, 1)
        self.wrong5 += top_k_wrong(logits, labels, 5)

    def summary(self):
        n = max(self.images, 1)
        return self.cost_sum / n, self.wrong1 / n, self.wrong5 / n
