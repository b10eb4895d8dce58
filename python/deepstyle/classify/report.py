"""The files of a training run: the per-epoch table and Figure 11, and on the test set the
confusion matrix (Figures 13-14) and a grid of misclassified images (Figure 15)."""

from __future__ import annotations

import os

import numpy as np

from .. import reporting
from .metrics import confusion_matrix
from .trainer import HISTORY_COLUMNS


def write_history(out, history, plt, title=""):
    """history.csv and (with matplotlib) training.png; returns the files written."""
    files = [os.path.join(out, "history.csv")]
    reporting.write_csv(files[0], HISTORY_COLUMNS,
                        ([row[c] for c in HISTORY_COLUMNS] for row in history))
    if plt is not None and history:
        files.append(os.path.join(out, "training.png"))
        reporting.plot_training_curves(plt, history, files[-1], title)
    return files


def write_test_report(out, classes, labels, logits, images, plt, seed=0, shown=16):
    """confusion.csv/.png and misclassified.png; returns ``(accuracy, counts, files)``."""
    predicted = logits.argmax(axis=1)
    counts = confusion_matrix(predicted, labels, len(classes))
    accuracy = float(np.mean(predicted == labels)) if len(labels) else float("nan")
    files = [os.path.join(out, "confusion.csv")]
    reporting.write_confusion_csv(files[0], counts, classes)
    if plt is not None:
        files.append(os.path.join(out, "confusion.png"))
        reporting.plot_confusion(plt, counts, classes, files[-1])
        wrong = np.flatnonzero(predicted != labels)
        if len(wrong):
            pick = np.sort(np.random.default_rng(seed).choice(wrong, min(shown, len(wrong)),
                                                              replace=False))
            captions = [f"output: {classes[predicted[i]]}\ntarget: {classes[labels[i]]}"
                        for i in pick]
            files.append(os.path.join(out, "misclassified.png"))
            reporting.plot_image_grid(plt, images[pick], captions, files[-1])
    return accuracy, counts, files
