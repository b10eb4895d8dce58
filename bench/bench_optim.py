"""One optimiser step over a network's parameters, side by side:

    PYTHONPATH=python python bench/bench_optim.py [--cpu-time] [--threads 1] [--repeats 7]

- deepstyle: optim.SGD (momentum 0.9, weight decay 5e-4 on weights, the cifar-cnn rate
  multipliers) and optim.Adam, each parameter one fused kernel (ops.sgd_update / adam_update);
- NumPy expressions: the same updates as the array expressions the optimisers ran before the
  fused kernels (a pass over memory and a temporary per operation);
- PyTorch (when importable): torch.optim.SGD / Adam with foreach=True, the same settings.

Parameter sets: cifar-cnn (145k floats in 10 arrays, the training bench's network) and one
VGG-sized layer (512 x 512 x 3 x 3 = 2.4M floats). Times are the best of --repeats runs of
--steps steps, in us per step; every variant starts from the same values and must end at the
same parameters (checked).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import deepstyle
from deepstyle import optim
from deepstyle.classify.models import cifar_cnn, cifar_cnn_lr_multipliers
from deepstyle.optim.sgd import is_weight

try:
    import torch
except ImportError:
    torch = None

LR, MOMENTUM, DECAY = 0.05, 0.9, 5e-4


class Params:
    """Stands in for a network: named parameters with fixed gradients."""

    def __init__(self, arrays, rng):
        self.values = {name: a.copy() for name, a in arrays.items()}
        self.grads = {name: rng.standard_normal(a.shape).astype(np.float32) * 0.01
                      for name, a in arrays.items()}

    def parameters(self):
        for name, value in self.values.items():
            yield name, value, self.grads[name]


def numpy_sgd(params, multipliers, steps):
    velocity = {name: np.zeros_like(v) for name, v, _ in params.parameters()}
    for _ in range(steps):
        for name, value, grad in params.parameters():
            if is_weight(name):
                grad = grad + np.float32(DECAY) * value
            v = velocity[name]
            v *= np.float32(MOMENTUM)
            v += grad
            value -= np.float32(LR * multipliers(name)) * v


def numpy_adam(params, multipliers, steps, b1=0.9, b2=0.999, eps=1e-8):
    m = {name: np.zeros_like(v) for name, v, _ in params.parameters()}
    s = {name: np.zeros_like(v) for name, v, _ in params.parameters()}
    for t in range(1, steps + 1):
        c1, c2 = 1.0 - b1**t, 1.0 - b2**t
        for name, value, grad in params.parameters():
            if is_weight(name):
                grad = grad + np.float32(DECAY) * value
            mm, vv = m[name], s[name]
            mm *= np.float32(b1)
            mm += np.float32(1 - b1) * grad
            vv *= np.float32(b2)
            vv += np.float32(1 - b2) * grad * grad
            root = np.sqrt(vv / np.float32(c2))
            value -= np.float32(LR * multipliers(name) / c1) * mm / (root + np.float32(eps))


def deepstyle_step(kind, params, multipliers, steps):
    if kind == "sgd":
        opt = optim.SGD(params, LR, momentum=MOMENTUM, weight_decay=DECAY,
                        lr_multipliers=multipliers)
    else:
        opt = optim.Adam(params, LR, weight_decay=DECAY, lr_multipliers=multipliers)
    for _ in range(steps):
        opt.step()


def torch_step(kind, params, multipliers, steps):
    groups = []
    for name, value, grad in params.parameters():
        tensor = torch.from_numpy(value)
        tensor.grad = torch.from_numpy(grad)
        groups.append({"params": [tensor], "lr": LR * multipliers(name),
                       "weight_decay": DECAY if is_weight(name) else 0.0})
    if kind == "sgd":
        opt = torch.optim.SGD(groups, lr=LR, momentum=MOMENTUM, foreach=True)
    else:
        opt = torch.optim.Adam(groups, lr=LR, foreach=True)
    for _ in range(steps):
        opt.step()


def best_time(fn, arrays, repeats, clock):
    """(best seconds of fn(params) over fresh parameter sets, the last run's parameters)."""
    best = float("inf")
    for _ in range(repeats):
        params = Params(arrays, np.random.default_rng(1))
        start = clock()
        fn(params)
        best = min(best, clock() - start)
    return best, params.values


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cpu-time", action="store_true", help="process CPU time, not wall")
    args = parser.parse_args()
    deepstyle.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.cpu_time else time.perf_counter
    rng = np.random.default_rng(0)
    cifar = {name: v for name, v, _ in cifar_cnn(3, rng=0).parameters()}
    sets = {
        "cifar-cnn (145k)": (cifar, cifar_cnn_lr_multipliers),
        "VGG conv 512x512x3x3 (2.4M)": (
            {"conv.weight": rng.standard_normal((512, 512, 3, 3)).astype(np.float32) * 0.01},
            lambda name: 1.0),
    }
    print(f"threads {args.threads}, {'CPU' if args.cpu_time else 'wall'} time, best of "
          f"{args.repeats} x {args.steps} steps, us per step")
    print(f"{'parameters':30s} {'update':5s} {'deepstyle':>10s} {'NumPy':>10s} {'PyTorch':>10s}"
          f" {'NumPy/ds':>9s} {'torch/ds':>9s}")
    for label, (arrays, multipliers) in sets.items():
        for kind, numpy_fn in (("sgd", numpy_sgd), ("adam", numpy_adam)):
            variants = {"deepstyle": lambda p: deepstyle_step(kind, p, multipliers, args.steps),
                        "NumPy": lambda p: numpy_fn(p, multipliers, args.steps)}
            if torch is not None:
                variants["PyTorch"] = lambda p: torch_step(kind, p, multipliers, args.steps)
            times, finals = {}, {}
            for name, fn in variants.items():
                seconds, finals[name] = best_time(fn, arrays, args.repeats, clock)
                times[name] = seconds / args.steps * 1e6
            for name in finals:  # same update, float32 rounding apart
                for key, value in finals[name].items():
                    np.testing.assert_allclose(value, finals["deepstyle"][key], rtol=1e-4,
                                               atol=1e-5, err_msg=f"{name} {key}")
            ds, npy, tch = times["deepstyle"], times["NumPy"], times.get("PyTorch", float("nan"))
            print(f"{label:30s} {kind:5s} {ds:10.1f} {npy:10.1f} {tch:10.1f} {npy / ds:9.2f}"
                  f" {tch / ds:9.2f}")


if __name__ == "__main__":
    main()
