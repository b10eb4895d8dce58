"""Training a classifier on a data set: epochs of mini-batches on :func:`optim.run_loop`,
validation after every epoch, a checkpoint after every epoch, test metrics at the end.

A run's randomness comes from one seed, split into independent streams (validation split,
initial weights, data order, dropout, batch flips). The checkpoint after epoch k stores the
weights, the optimiser's velocities and every stream's state, so ``resume=True`` continues with
exactly the numbers an uninterrupted run would have used: the final weights are bit-identical.
Ctrl-C stops inside the current epoch and loses only that epoch.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from .. import nn, optim
from ..allocator import reusing_freed_memory
from ..backend import array_module, device_module
from ..data import Preprocessing, split_validation
from . import checkpoint
from .metrics import RunningMetrics, evaluate
from .models import build_model, cifar_cnn_lr_multipliers, dropout_generators
from .recipes import Recipe

HISTORY_COLUMNS = ("epoch", "lr", "train_cost", "train_top1_error", "train_top5_error",
                   "val_cost", "val_top1_error", "val_top5_error", "seconds")
CHECKPOINT = "checkpoint.npz"


@dataclass
class Run:
    """What a training run produced."""

    net: object
    preprocessing: Preprocessing
    history: list = field(default_factory=list)  # dicts keyed by HISTORY_COLUMNS
    epochs_done: int = 0
    interrupted: bool = False
    seconds: float = 0.0
    test_labels: np.ndarray | None = None
    test_logits: np.ndarray | None = None
    test_images: np.ndarray | None = None  # uint8, for pictures of mistakes


def _as_json(value):
    """``value`` as it reads back from JSON (tuples become lists), for comparing with a
    checkpoint's description."""
    return json.loads(json.dumps(value))


def _streams(seed):
    names = ("split", "init", "order", "dropout", "flip")
    return dict(zip(names, (np.random.default_rng(s) for s in
                            np.random.SeedSequence(seed).spawn(len(names)))))


def preprocessing_for(model, recipe, image_shape):
    pad = 32 if model == "cifar-cnn" and image_shape[-1] < 32 else None
    return Preprocessing(pad_to=pad, mean_image=recipe.mean_image, contrast=recipe.contrast,
                         zca=recipe.zca, standardize=recipe.standardize)


def make_optimizer(model, net, recipe):
    multipliers = cifar_cnn_lr_multipliers if model == "cifar-cnn" else None
    return optim.SGD(net, recipe.phases[0][0], momentum=recipe.momentum,
                     weight_decay=recipe.weight_decay, lr_multipliers=multipliers)


class BatchFlips:
    """MatConvNet's ``getBatch``: the whole batch mirrored left-right with probability 0.5."""

    def __init__(self, rng):
        self.rng = rng

    def __call__(self, x, step):
        return array_module(x).ascontiguousarray(x[..., ::-1]) if self.rng.random() < 0.5 else x


class EpochProgress(optim.Callback):
    """Per epoch: a bar with the running cost, accuracy and images per second, redrawn in place
    on a terminal; into a file a line at least every ``every`` seconds and at each epoch's end."""

    def __init__(self, metrics, epochs, stream=None, every=30.0):
        self.metrics, self.epochs, self.every = metrics, epochs, every
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.began = self.last = time.perf_counter()
        self.images0 = 0

    def max_chunk(self, step):
        return 1  # see every step (a step is milliseconds, the check microseconds)

    def on_start(self, state):
        self.on_epoch_end(state)

    def on_epoch_end(self, state):
        # after validation and checkpoint: the next epoch's rate counts only its own steps
        self.began = self.last = time.perf_counter()

    def after_steps(self, state):
        now = time.perf_counter()
        per = state.steps_per_epoch
        done = state.step - (state.step - 1) // per * per
        end = state.step % per == 0
        if not end and now - self.last < (0.2 if self.tty else self.every):
            return
        self.last = now
        cost, wrong1, _ = self.metrics.summary()
        rate = self.metrics.images / max(now - self.began, 1e-9)
        filled = 20 * done // per
        line = (f"epoch {(state.step - 1) // per + 1}/{self.epochs} "
                f"[{'#' * filled}{'.' * (20 - filled)}] {done}/{per} cost {cost:.4f} "
                f"accuracy {100 * (1 - wrong1):.2f}% {rate:.0f} images/s")
        self.stream.write(("\r" + line + ("\n" if end else "")) if self.tty else line + "\n")
        self.stream.flush()


class EpochEnd(optim.Callback):
    """Validation, the history row, the checkpoint and ``on_epoch(run)`` after each epoch."""

    def __init__(self, trainer):
        self.t = trainer

    def on_epoch_end(self, state):
        self.t.end_epoch(state)


class Trainer:
    """Holds one run's pieces; :meth:`fit` trains. ``meta`` describes the run for checkpoints.

    With ``device="cuda"`` the network, its gradients, the optimiser's state and the
    preprocessed data sets live on the GPU (CuPy) for the whole run; logits come to the host
    for validation and test metrics, parameters and optimiser state for checkpoints. The
    random streams stay on the host, so a GPU run draws the same numbers as a CPU run.
    """

    def __init__(self, model, dataset, recipe: Recipe, *, seed=0, limit=None, out=None,
                 progress=True, stream=None, after_backward=None, on_epoch=None, device="cpu"):
        self.model, self.dataset, self.recipe, self.seed = model, dataset, recipe, seed
        self.out, self.progress, self.stream = out, progress, stream
        self.after_backward, self.on_epoch = after_backward, on_epoch
        self.wrap_steps = None  # e.g. DataParallel.guard: the steps runner, wrapped
        self.rngs = _streams(seed)
        x, y, vx, vy = split_validation(dataset.train_images, dataset.train_labels,
                                        recipe.validation, self.rngs["split"])
        if limit is not None:
            x, y = x[:limit], y[:limit]
        self.pre = preprocessing_for(model, recipe, x.shape)
        self.pre.fit(x)
        self.xp = device_module(device)
        self.train_x, self.train_y = self.xp.asarray(self.pre(x)), self.xp.asarray(y)
        self.val_x, self.val_y = self.xp.asarray(self.pre(vx)), vy
        self.net = build_model(model, self.train_x.shape[1:], len(dataset.classes),
                               dropout=recipe.dropout, hidden=recipe.hidden,
                               rng=self.rngs["init"]).to(device)
        for rng in dropout_generators(self.net):
            rng.bit_generator.state = self.rngs["dropout"].bit_generator.state
        self.dropout_rngs = dropout_generators(self.net)
        self.optimizer = make_optimizer(model, self.net, recipe)
        self.sampler = optim.WithoutReplacement(len(self.train_x), recipe.batch_size,
                                                rng=self.rngs["order"])
        self.flips = BatchFlips(self.rngs["flip"]) if recipe.flip else None
        self.metrics = RunningMetrics()
        self.run = Run(self.net, self.pre)
        self.meta = _as_json({"model": model, "dataset": dataset.name, "classes": list(dataset.classes),
                     "input_shape": list(self.train_x.shape[1:]),
                     "image_shape": list(x.shape[1:]), "recipe": recipe.as_dict(),
                     "seed": seed, "limit": limit})

    # --- checkpoints ---

    def _generators(self):
        # every Dropout layer shares one generator: saved once
        gens = {"order": self.sampler.rng}
        if self.dropout_rngs:
            gens["dropout"] = self.dropout_rngs[0]
        if self.flips is not None:
            gens["flip"] = self.flips.rng
        return gens

    def save_checkpoint(self):
        meta = dict(self.meta, epochs_done=self.run.epochs_done, history=self.run.history,
                    rng={k: g.bit_generator.state for k, g in self._generators().items()})
        checkpoint.save(os.path.join(self.out, CHECKPOINT), meta=meta, net=self.net,
                        optimizer=self.optimizer, preprocessing=self.pre)

    def restore(self, path):
        meta, params, optim_state, _ = checkpoint.load(path)
        for key in ("model", "dataset", "recipe", "seed", "limit"):
            if meta.get(key) != self.meta[key]:
                raise checkpoint.CheckpointError(
                    f"{path}: was made with {key}={meta.get(key)!r}, this run has "
                    f"{self.meta[key]!r}")
        checkpoint.set_parameters(self.net, params, path)
        self.optimizer.load_state_dict(optim_state)
        if self.dropout_rngs:
            for rng in self.dropout_rngs:
                rng.bit_generator.state = meta["rng"]["dropout"]
        for key, gen in self._generators().items():
            if key != "dropout":
                gen.bit_generator.state = meta["rng"][key]
        self.run.history = meta["history"]
        self.run.epochs_done = meta["epochs_done"]

    # --- training ---

    def end_epoch(self, state):
        cost, wrong1, wrong5 = self.metrics.summary()
        self.metrics.reset()
        val = evaluate(self.net, self.val_x, self.val_y)
        self.run.epochs_done = state.epoch
        self.run.history.append(dict(zip(HISTORY_COLUMNS, (
            state.epoch, state.lr, cost, wrong1, wrong5, val[0], val[1], val[2],
            self.seconds_before + time.perf_counter() - self.began))))
        if self.out is not None:
            self.save_checkpoint()
        if self.on_epoch is not None:
            self.on_epoch(self.run)

    def fit(self):
        """Train the remaining epochs; returns the :class:`Run` (with test logits when the
        run finished)."""
        per_epoch = self.sampler.steps_per_epoch
        self.seconds_before = self.run.history[-1]["seconds"] if self.run.history else 0.0
        self.began = time.perf_counter()
        steps = optim.GradientSteps(self.net, nn.SoftmaxCrossEntropy(), self.optimizer,
                                    self.train_x, self.train_y, prepare=self.flips,
                                    after_backward=self.after_backward, on_batch=self.metrics)
        callbacks = [EpochEnd(self)]
        if self.progress:
            callbacks.append(EpochProgress(self.metrics, self.recipe.epochs, self.stream))
        self.net.train()
        if self.wrap_steps is not None:
            steps = self.wrap_steps(steps)
        # every step allocates and frees the same activations and gradients (13 MB for
        # cifar-cnn's first layer at batch 100): reused from the heap, not faulted in afresh
        with reusing_freed_memory():
            state = optim.run_loop(steps, self.sampler, self.recipe.epochs * per_epoch,
                                   schedule=self.recipe.schedule(), callbacks=callbacks,
                                   start=self.run.epochs_done * per_epoch)
        self.run.interrupted = state.interrupted
        self.net.clear()
        self.run.seconds = self.seconds_before + time.perf_counter() - self.began
        if not state.interrupted:
            test_x = self.xp.asarray(self.pre(self.dataset.test_images))
            self.run.test_labels = self.dataset.test_labels
            self.run.test_logits = evaluate(self.net, test_x, self.dataset.test_labels)[3]
            self.run.test_images = self.dataset.test_images
        return self.run
