"""A small data-parallel training run, the same code on 1 rank (imported by the tests) and on
N ranks (``mpirun -n N python parallel_training_job.py OUT.npz ...``): a conv net on synthetic
8x8 images, SGD with momentum and weight decay, ``optim.run_loop`` + ``GradientSteps`` with
:class:`deepstyle.parallel_training.DataParallel`. Rank 0 writes the final weights (and, with
``--checkpoint-at``, a checkpoint it can be resumed from with any rank count)."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from deepstyle import nn, optim
from deepstyle.distributed import RankFailed, world
from deepstyle.image import write_atomically
from deepstyle.parallel_training import DataParallel

SAMPLES, CLASSES, SIZE = 120, 3, 8


def data(seed=0):
    """Three classes of 8x8 one-channel images: a bright row, a bright column, a bright corner,
    in noise. Learnable in a few hundred steps, not instantly (the cost keeps moving)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, SAMPLES)
    x = rng.standard_normal((SAMPLES, 1, SIZE, SIZE)).astype(np.float32)
    for i, label in enumerate(labels):
        where = rng.integers(0, SIZE - 2)
        if label == 0:
            x[i, 0, where, :] += 1.5
        elif label == 1:
            x[i, 0, :, where] += 1.5
        else:
            x[i, 0, :3, :3] += 1.5
    return x, labels


def network(seed=1):
    rng = np.random.default_rng(seed)
    return nn.Sequential([
        ("conv", nn.Conv2d(1, 6, 3, padding=1, rng=rng)), ("relu", nn.ReLU()),
        ("pool", nn.AvgPool2d(2)), ("flat", nn.Flatten()),
        ("fc", nn.Linear(6 * 4 * 4, CLASSES, rng=rng)),
    ])


class FailAt:
    """``prepare`` hook that raises at one step on one rank (the fault tests)."""

    def __init__(self, rank, step):
        self.rank, self.step = rank, step

    def __call__(self, x, step):
        if world().rank == self.rank and step == self.step:
            raise ValueError(f"injected failure at step {step}")
        return x


def train(steps, batch_size, *, start_from=None, checkpoint_at=None, checkpoint=None, fail=None,
          seed=2):
    """Run to ``steps`` (from a checkpoint's step with ``start_from``); returns the weights."""
    current = world()
    x, y = data()
    net = network()
    sgd = optim.SGD(net, 0.05, momentum=0.9, weight_decay=1e-3)
    sampler = optim.WithoutReplacement(SAMPLES, batch_size, rng=np.random.default_rng(seed))
    start = 0
    if start_from is not None:
        with np.load(start_from) as saved:
            for name, value, _ in net.parameters():
                value[...] = saved["param/" + name]
            sgd.load_state_dict({k[len("optim/"):]: saved[k] for k in saved.files
                                 if k.startswith("optim/")})
            sampler.rng.bit_generator.state = json.loads(str(saved["rng"]))
            start = int(saved["step"])
    parallel = DataParallel(current, net, batch_size)
    runner = parallel.guard(optim.GradientSteps(net, nn.SoftmaxCrossEntropy(), sgd, x, y,
                                                after_backward=parallel.after_backward,
                                                prepare=FailAt(*fail) if fail else None))

    class Checkpoint(optim.Callback):
        def max_chunk(self, step):
            return checkpoint_at - step if checkpoint_at and step < checkpoint_at else np.inf

        def after_steps(self, state):
            if state.step == checkpoint_at and current.is_root:  # rank 0 alone writes
                save(checkpoint, net, sgd, sampler, state.step)

    if current.is_root:
        print(parallel.describe(), file=sys.stderr)
    net.train()
    optim.run_loop(runner, parallel.shard(sampler), steps, schedule=optim.Constant(sgd.lr),
                   callbacks=[Checkpoint()], start=start)
    return {name: value.copy() for name, value, _ in net.parameters()}


def save(path, net, sgd, sampler, step):
    arrays = {"param/" + name: value for name, value, _ in net.parameters()}
    arrays.update({"optim/" + key: v for key, v in sgd.state_dict().items()})
    arrays.update(step=np.int64(step), rng=np.array(json.dumps(sampler.rng.bit_generator.state)))
    write_atomically(path, lambda stream: np.savez(stream, **arrays))


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--checkpoint-at", type=int)
    parser.add_argument("--checkpoint")
    parser.add_argument("--resume")
    parser.add_argument("--fail", type=int, nargs=2, metavar=("RANK", "STEP"))
    args = parser.parse_args(argv)
    current = world()
    with current.abort_on_error("parallel_training_job"):
        try:
            weights = train(args.steps, args.batch, start_from=args.resume, fail=args.fail,
                            checkpoint_at=args.checkpoint_at, checkpoint=args.checkpoint)
        except RankFailed as exc:
            sys.stderr.write(f"rank {current.rank}: stopped: {exc}\n")  # one write: one line
            return 3
        if current.is_root:
            write_atomically(args.out, lambda stream: np.savez(stream, **weights))
    return 0


if __name__ == "__main__":
    sys.exit(main())
