"""``deepstyle train MODEL``: train a classifier on Fashion-MNIST, MNIST or CIFAR-10 (Higham &
Higham section 7) and write its history, Figure 11, the test confusion matrix and mistakes."""

from __future__ import annotations

import argparse
import os
import sys

from .. import reporting
from ..backend import device_module
from ..classify import checkpoint, report
from ..classify.models import MODELS
from ..classify.recipes import default_recipe
from ..classify.trainer import CHECKPOINT, Trainer
from ..data import DATASETS, DataError, load_dataset
from ..distributed import RankFailed, World, launched_ranks, set_threads_per_rank, world
from ..parallel_training import distribute

_RECIPE_SWITCHES = {  # option -> (recipe field, help)
    "flip": "horizontal flip of the whole batch with probability 0.5 (default: on for cifar-cnn)",
    "mean_image": "subtract the training set's mean image (default: on)",
    "contrast": "per-image contrast normalisation (default: on for cifar-cnn)",
    "zca": "ZCA whitening computed on the training set (default: on for cifar-cnn)",
    "standardize": "divide by the training data's standard deviation (default: on for linear, mlp)",
}


def add_arguments(parser):
    parser.add_argument("model", choices=MODELS, help="the network to train")
    parser.add_argument("--dataset", choices=DATASETS, default="fashion-mnist",
                        help="default: fashion-mnist")
    parser.add_argument("--data", metavar="DIR", help="folder with the data set's files "
                        "(default: $DEEPSTYLE_DATA/NAME, ~/.cache/deepstyle/NAME, /usr/share/datasets/NAME)")
    parser.add_argument("--epochs", type=int, help="epochs (default: the model's recipe: "
                        "linear 8, mlp 20, cifar-cnn 45); the learning-rate phases scale along")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: train-MODEL)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    parser.add_argument("--dropout", action="store_true",
                        help="dropout as in the paper's 81.1%% run (cifar-cnn: 0.15 after blocks "
                             "1-3, 0.35 after block 4; mlp: 0.35 after the hidden layer)")
    parser.add_argument("--batch-size", type=int, help="mini-batch size (default 100)")
    parser.add_argument("--lr", type=float, help="first learning rate (later phases keep their "
                        "ratio to it; default: linear, mlp 0.01, cifar-cnn 0.05)")
    parser.add_argument("--hidden", type=int, help="mlp hidden units (default 256)")
    parser.add_argument("--validation", type=int, help="training images held out for "
                        "validation (default 5000)")
    parser.add_argument("--limit", type=int, metavar="N",
                        help="train on only N images (for quick trials)")
    for name, text in _RECIPE_SWITCHES.items():
        parser.add_argument("--" + name.replace("_", "-"), action=argparse.BooleanOptionalAction,
                            default=None, help=text)
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where training runs: cpu (default) or cuda, a GPU through CuPy "
                             "(pip install 'deepstyle[cuda]')")
    parser.add_argument("--distributed", action="store_true",
                        help="data-parallel over the ranks mpirun started (mpirun -n N deepstyle "
                             "train ... --distributed): each rank takes its slice of every batch, "
                             "one Allreduce per step sums the gradients, rank 0 writes the outputs")


def recipe_from(args):
    recipe = default_recipe(args.model)
    if args.epochs is not None:
        recipe = recipe.with_epochs(args.epochs)
    if args.lr is not None:
        if not args.lr > 0:
            raise ValueError(f"--lr: expected a positive learning rate, got {args.lr}")
        first = recipe.phases[0][0]
        recipe.phases = [(lr * args.lr / first, n) for lr, n in recipe.phases]
    for name in ("batch_size", "hidden", "validation"):
        value = getattr(args, name)
        if value is not None:
            if value < (0 if name == "validation" else 1):
                kind = "a non-negative" if name == "validation" else "a positive"
                raise ValueError(f"--{name.replace('_', '-')}: expected {kind} integer, "
                                 f"got {value}")
            setattr(recipe, name, value)
    for name in _RECIPE_SWITCHES:
        if getattr(args, name) is not None:
            setattr(recipe, name, getattr(args, name))
    recipe.dropout = args.dropout
    if args.seed < 0:
        raise ValueError(f"--seed: expected a non-negative integer, got {args.seed}")
    if args.limit is not None and args.limit < recipe.batch_size:
        raise ValueError(f"--limit: expected at least the batch size ({recipe.batch_size}), "
                         f"got {args.limit}")
    return recipe


def _world(args):
    """The ranks to train over: all of mpirun's with --distributed, else this process alone."""
    ranks = launched_ranks()
    if args.distributed:
        return world()
    if ranks > 1:
        raise ValueError(f"started as one of {ranks} MPI ranks: add --distributed to train "
                         "together (each rank alone would write the same files)")
    return World()


def run(args):
    name = "deepstyle train"
    try:
        current = _world(args)
    except (ValueError, RuntimeError) as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    with current.abort_on_error(name):
        return _run(args, current, name)


def _run(args, current, name):
    root = current.is_root
    try:
        try:
            device_module(args.device)
        except RuntimeError as exc:
            raise ValueError(f"--device {args.device}: {exc}; use --device cpu") from None
        recipe = recipe_from(args)
        out = args.out or f"train-{args.model}"
        resume_from = os.path.join(out, CHECKPOINT)
        if args.resume and not os.path.exists(resume_from):
            raise ValueError(f"--resume: no checkpoint {resume_from} to continue from")
        dataset = load_dataset(args.dataset, args.data)
        os.makedirs(out, exist_ok=True)
        plt = reporting.pyplot()
        title = f"{args.model} on {dataset.name}"

        def on_epoch(run):
            report.write_history(out, run.history, plt, title)

        trainer = Trainer(args.model, dataset, recipe, seed=args.seed, limit=args.limit,
                          out=out, progress=not args.quiet, on_epoch=on_epoch,
                          device=args.device)
        if args.resume:
            trainer.restore(resume_from)
            if root:
                print(f"resuming after epoch {trainer.run.epochs_done} of {recipe.epochs}")
        if args.distributed:
            set_threads_per_rank(current)
            parallel = distribute(trainer, current)
            if root:
                print(parallel.describe(), file=sys.stderr)
        result = trainer.fit()
    except RankFailed as exc:  # a step failed on some rank: every rank stopped at that step
        if root:
            print(f"{name}: error: {exc}; the last checkpoint is in {out} (--resume continues)",
                  file=sys.stderr)
        return 1
    except (ValueError, DataError, checkpoint.CheckpointError) as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 1
    if not root:
        return 130 if result.interrupted else 0
    if result.interrupted:
        print(f"interrupted: {result.epochs_done} epochs are in {os.path.join(out, CHECKPOINT)}; "
              f"run the same command with --resume to continue", file=sys.stderr)
        return 130
    accuracy, _, files = report.write_test_report(out, dataset.classes, result.test_labels,
                                                  result.test_logits, result.test_images, plt)
    last = result.history[-1] if result.history else None
    if last:
        print(f"{result.epochs_done} epochs in {result.seconds:.0f} s; last epoch: training "
              f"error {100 * last['train_top1_error']:.2f}%, validation error "
              f"{100 * last['val_top1_error']:.2f}%")
    print(f"test accuracy: {100 * accuracy:.2f}% ({len(result.test_labels)} images)")
    written = [os.path.join(out, "history.csv"), os.path.join(out, CHECKPOINT)] + files
    print("wrote " + ", ".join(written))
    if plt is None:
        print(reporting.PLOT_HINT, file=sys.stderr)
    return 0
