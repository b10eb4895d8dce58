"""VGG19's 3x3 convolutions by Winograd F(4x4, 3x3) against the direct kernel and PyTorch:

    PYTHONPATH=python python bench/bench_winograd.py [--size 512] [--threads 1] [--cpu-time]
                                                     [--accuracy]

For every distinct convolution of VGG19 up to conv5_1 on a size x size image (batch 1), the best
time of the forward pass and of grad_x with algo="direct", algo="winograd" and PyTorch CPU
(when importable), in one process on the same arrays. With --accuracy, also the largest error of
each algorithm against a float64 reference, relative to the largest reference value, on ReLU'd
inputs and He-scaled weights (the float64 reference is slow: use --size 256 or less).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import deepstyle
from deepstyle import ops

try:
    import torch
except ImportError:
    torch = None

LAYERS = [  # name, in channels, out channels, image side as a fraction of the input
    ("conv1_2", 64, 64, 1), ("conv2_1", 64, 128, 2), ("conv2_2", 128, 128, 2),
    ("conv3_1", 128, 256, 4), ("conv3_2", 256, 256, 4), ("conv4_1", 256, 512, 8),
    ("conv4_2", 512, 512, 8), ("conv5_1", 512, 512, 16),
]


def best_ms(fn, clock, reps=5):
    fn()
    best = float("inf")
    for _ in range(reps):
        start = clock()
        fn()
        best = min(best, clock() - start)
    return best * 1e3


def reference(x, w):
    """float64 3x3 convolution with padding 1."""
    h, wd = x.shape[2:]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    y = np.zeros((x.shape[0], w.shape[0], h, wd))
    for r in range(3):
        for s in range(3):
            y += np.einsum("nchw,kc->nkhw", xp[:, :, r:r + h, s:s + wd],
                           w[:, :, r, s].astype(np.float64), optimize=True)
    return y


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cpu-time", action="store_true")
    parser.add_argument("--accuracy", action="store_true")
    args = parser.parse_args()
    deepstyle.set_num_threads(args.threads)
    if torch:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.cpu_time else time.perf_counter
    print(f"VGG19 3x3 convolutions at {args.size}², {args.threads} threads, "
          f"{'CPU' if args.cpu_time else 'wall'} time, best of 5 (ms); speedup = direct / winograd")
    print("| layer   | shape             | fwd direct | fwd wino | speedup | fwd torch "
          "| gx direct | gx wino | speedup | gx torch |" + (" err wino / direct |" if args.accuracy else ""))
    print("|---------|-------------------|------------|----------|---------|-----------"
          "|-----------|---------|---------|----------|" + ("-------------------|" if args.accuracy else ""))
    rng = np.random.default_rng(0)
    for name, c, k, scale in LAYERS:
        side = args.size // scale
        x = np.maximum(rng.standard_normal((1, c, side, side)), 0).astype(np.float32)
        w = (rng.standard_normal((k, c, 3, 3)) * np.sqrt(2 / (9 * c))).astype(np.float32)
        gy = rng.standard_normal((1, k, side, side)).astype(np.float32)
        times = {}
        for algo in ("direct", "winograd"):
            times["fwd", algo] = best_ms(lambda: ops.conv2d(x, w, padding=1, algo=algo), clock)
            times["gx", algo] = best_ms(lambda: ops.conv2d_backward(
                gy, x, w, padding=1, need_weight=False, need_bias=False, algo=algo), clock)
        if torch:
            tx, tw, tgy = map(torch.from_numpy, (x, w, gy))
            times["fwd", "torch"] = best_ms(
                lambda: torch.nn.functional.conv2d(tx, tw, padding=1), clock)
            args_bwd = (tgy, tx, tw, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                        [True, False, False])
            times["gx", "torch"] = best_ms(
                lambda: torch.ops.aten.convolution_backward(*args_bwd), clock)
        cells = []
        for op in ("fwd", "gx"):
            cells += [f"{times[op, 'direct']:.2f}", f"{times[op, 'winograd']:.2f}",
                      f"{times[op, 'direct'] / times[op, 'winograd']:.2f}",
                      f"{times[op, 'torch']:.2f}" if torch else "-"]
        row = f"| {name} | {f'{c}->{k} {side}x{side}':17} | " + " | ".join(cells) + " |"
        if args.accuracy:
            expected = reference(x, w)
            scale_ref = np.abs(expected).max()
            errors = [np.abs(ops.conv2d(x, w, padding=1, algo=a) - expected).max() / scale_ref
                      for a in ("winograd", "direct")]
            row += f" {errors[0]:.1e} / {errors[1]:.1e} |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
