"""Training throughput of MatConvNet's CIFAR10-quick network (``cifar-cnn``), deepstyle against
the identical network in PyTorch on the CPU:

    PYTHONPATH=python python bench/bench_train.py [--threads 1,2] [--steps 10] [--rounds 3]

A step is what ``deepstyle train cifar-cnn`` does per mini-batch of 100 32x32x3 images:
forward, softmax log loss, backward, and the MatConvNet SGD update (momentum 0.9, weight decay
1e-4, per-parameter learning-rate multipliers; PyTorch: the same in four parameter groups).
Each measurement runs in its own subprocess (one thread count, one implementation), and the
two implementations alternate for --rounds rounds so that a change in the machine's load hits
both; the best round counts. Reported: images per second (wall clock) and CPU seconds per step
(all threads together), whose ratio to the wall time shows how much of the cores a run got.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

BATCH = 100


def batches(steps, channels):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((steps, BATCH, channels, 32, 32)).astype(np.float32) * 50
    y = rng.integers(0, 10, (steps, BATCH))
    return x, y


def setup_deepstyle(channels):
    from deepstyle import nn, optim
    from deepstyle.classify.models import cifar_cnn, cifar_cnn_lr_multipliers

    net = cifar_cnn(channels, rng=0)
    sgd = optim.SGD(net, 0.05, momentum=0.9, weight_decay=1e-4,
                    lr_multipliers=cifar_cnn_lr_multipliers)
    cost = nn.SoftmaxCrossEntropy()
    # As deepstyle's training loop (optim.run_loop) runs its steps: freed activations reused.
    from deepstyle.allocator import reusing_freed_memory
    reusing_freed_memory().__enter__()  # for the rest of this measuring subprocess

    def step(x, y):
        value, grad = cost(net.forward(x), y)
        net.backward(grad)
        sgd.step()
        return value

    return step


def setup_torch(channels):
    import torch
    from torch import nn

    torch.manual_seed(0)
    avg = dict(kernel_size=3, stride=2, ceil_mode=True, count_include_pad=False)
    net = nn.Sequential(
        nn.Conv2d(channels, 32, 5, padding=2), nn.MaxPool2d(3, 2, ceil_mode=True), nn.ReLU(),
        nn.Conv2d(32, 32, 5, padding=2), nn.ReLU(), nn.AvgPool2d(**avg),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.AvgPool2d(**avg),
        nn.Conv2d(64, 64, 4), nn.ReLU(), nn.Conv2d(64, 10, 1), nn.Flatten())
    convs = [m for m in net if isinstance(m, nn.Conv2d)]
    groups = [{"params": [c.weight for c in convs[:-1]], "lr": 0.005, "weight_decay": 1e-4},
              {"params": [c.bias for c in convs[:-1]], "lr": 0.1, "weight_decay": 0.0},
              {"params": [convs[-1].weight], "lr": 0.0005, "weight_decay": 1e-4},
              {"params": [convs[-1].bias], "lr": 0.01, "weight_decay": 0.0}]
    sgd = torch.optim.SGD(groups, lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def step(x, y):
        sgd.zero_grad(set_to_none=True)
        loss = loss_fn(net(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        sgd.step()
        return float(loss)

    return step


def measure(impl, steps, channels):
    """In this process: warm up, then time ``steps`` steps; prints JSON."""
    x, y = batches(steps + 3, channels)
    if impl == "torch":
        import torch

        torch.set_num_threads(int(os.environ["DEEPSTYLE_NUM_THREADS"]))
        step = setup_torch(channels)
    else:
        step = setup_deepstyle(channels)
    for i in range(3):
        step(x[i], y[i])
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(3, steps + 3):
        step(x[i], y[i])
    print(json.dumps({"wall": (time.perf_counter() - wall) / steps,
                      "cpu": (time.process_time() - cpu) / steps}))


def openmp_waiting():
    """The OpenMP wait setting both implementations run under: the user's OMP_WAIT_POLICY or
    GOMP_SPINCOUNT, else the bounded spin deepstyle gives its own kernels (PyTorch's libgomp
    would otherwise spin for milliseconds after each region and lose badly on a busy machine)."""
    import deepstyle

    chosen = {k: os.environ[k] for k in deepstyle._SPIN_VARIABLES if k in os.environ}
    return chosen or {"GOMP_SPINCOUNT": deepstyle._BOUNDED_SPIN}


def run(impl, threads, steps, channels):
    env = dict(os.environ, DEEPSTYLE_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               **openmp_waiting())
    out = subprocess.run([sys.executable, __file__, "--child", impl, "--steps", str(steps),
                          "--channels", str(channels)], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--channels", type=int, default=3, help="3: CIFAR-10, 1: Fashion-MNIST")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return measure(args.child, args.steps, args.channels)
    import torch

    print(f"cifar-cnn training step, batch {BATCH} of {args.channels}x32x32, {args.steps} steps "
          f"per round, best of {args.rounds} alternating rounds; torch {torch.__version__}; "
          f"{' '.join(f'{k}={v}' for k, v in openmp_waiting().items())}")
    print(f"{'threads':>7} {'impl':>9} {'ms/step':>8} {'images/s':>9} {'CPU s/step':>11}")
    for threads in [int(t) for t in args.threads.split(",")]:
        best = {}
        for _ in range(args.rounds):
            for impl in ("deepstyle", "torch"):
                r = run(impl, threads, args.steps, args.channels)
                if impl not in best or r["wall"] < best[impl]["wall"]:
                    best[impl] = r
        for impl, r in best.items():
            print(f"{threads:>7} {impl:>9} {1e3 * r['wall']:8.1f} {BATCH / r['wall']:9.0f} "
                  f"{r['cpu']:11.3f}")
        print(f"{threads:>7} deepstyle/torch throughput: "
              f"{best['torch']['wall'] / best['deepstyle']['wall']:.2f}x (wall), "
              f"{best['torch']['cpu'] / best['deepstyle']['cpu']:.2f}x (CPU time)")


if __name__ == "__main__":
    sys.exit(main())
