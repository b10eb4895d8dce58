"""``deepstyle evaluate CHECKPOINT``: a trained classifier's test accuracy, confusion matrix and
misclassified images."""

from __future__ import annotations

import os
import sys

from .. import reporting
from ..classify import checkpoint, report
from ..classify.classifier import Classifier
from ..classify.metrics import predict_logits
from ..data import DataError, load_dataset


def add_arguments(parser):
    parser.add_argument("checkpoint", help="a checkpoint.npz written by deepstyle train")
    parser.add_argument("--data", metavar="DIR", help="folder with the data set's files "
                        "(default: the usual places, as for deepstyle train)")
    parser.add_argument("--out", metavar="DIR",
                        help="where to write the confusion matrix and mistakes (default: the "
                             "checkpoint's folder)")


def run(args):
    try:
        classifier = Classifier.load(args.checkpoint)
        meta = checkpoint.load(args.checkpoint)[0]
        dataset = load_dataset(meta["dataset"], args.data)
        out = args.out or os.path.dirname(os.path.abspath(args.checkpoint))
        os.makedirs(out, exist_ok=True)
        logits = predict_logits(classifier.net, classifier.preprocessing(dataset.test_images))
        plt = reporting.pyplot()
        accuracy, _, files = report.write_test_report(out, dataset.classes, dataset.test_labels,
                                                      logits, dataset.test_images, plt)
    except (ValueError, DataError) as exc:
        print(f"deepstyle evaluate: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"deepstyle evaluate: error: {exc}", file=sys.stderr)
        return 1
    print(f"{meta['model']} on {meta['dataset']} after {meta['epochs_done']} epochs: test "
          f"accuracy {100 * accuracy:.2f}% ({len(dataset.test_labels)} images)")
    print("wrote " + ", ".join(files))
    if plt is None:
        print(reporting.PLOT_HINT, file=sys.stderr)
    return 0
