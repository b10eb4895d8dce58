"""Convolutions by Winograd (F(4x4, 3x3), F(2x2, 5x5)) against the direct kernel and PyTorch:

    PYTHONPATH=python python bench/bench_winograd.py [--size 512] [--threads 1] [--cpu-time]
                                                     [--accuracy] [--cifar [--batch 100]]

For every distinct convolution of VGG19 up to conv5_1 on a size x size image (batch 1), or with
--cifar the 5x5 layers of cifar-cnn that take 16 or more channels (conv2 32->32 on 16x16, conv3
32->64 on 8x8, padding 2) at the given batch, the best time of the forward pass and of grad_x
with algo="direct", algo="winograd" and PyTorch CPU (when importable), in one process on the
same arrays. With --accuracy, also the largest error of each algorithm against a float64
reference, relative to the largest reference value, forward and grad_x, on ReLU'd inputs and
He-scaled weights (the float64 reference is slow: use --size 256 or less).
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

VGG_LAYERS = [  # name, in channels, out channels, image side as a fraction of the input
    ("conv1_2", 64, 64, 1), ("conv2_1", 64, 128, 2), ("conv2_2", 128, 128, 2),
    ("conv3_1", 128, 256, 4), ("conv3_2", 256, 256, 4), ("conv4_1", 256, 512, 8),
    ("conv4_2", 512, 512, 8), ("conv5_1", 512, 512, 16),
]
CIFAR_LAYERS = [("conv2", 32, 32, 16), ("conv3", 32, 64, 8)]  # name, in, out, image side


def best_ms(fn, clock, reps=5):
    fn()
    best = float("inf")
    for _ in range(reps):
        start = clock()
        fn()
        best = min(best, clock() - start)
    return best * 1e3


def reference(x, w, pad):
    """float64 stride-1 convolution (cross-correlation) with the given padding."""
    r, (h, wd) = w.shape[2], x.shape[2:]
    p, q = h + 2 * pad - r + 1, wd + 2 * pad - r + 1
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    y = np.zeros((x.shape[0], w.shape[0], p, q))
    for a in range(r):
        for b in range(r):
            y += np.einsum("nchw,kc->nkhw", xp[:, :, a:a + p, b:b + q],
                           w[:, :, a, b].astype(np.float64), optimize=True)
    return y


def layers(args):
    """(name, N, C, K, side, kernel, padding) of the chosen network's layers."""
    if args.cifar:
        return [(name, args.batch, c, k, side, 5, 2) for name, c, k, side in CIFAR_LAYERS]
    return [(name, 1, c, k, args.size // scale, 3, 1) for name, c, k, scale in VGG_LAYERS]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cpu-time", action="store_true")
    parser.add_argument("--accuracy", action="store_true")
    parser.add_argument("--cifar", action="store_true", help="cifar-cnn's 5x5 layers instead")
    parser.add_argument("--batch", type=int, default=100, help="batch of the --cifar layers")
    args = parser.parse_args()
    deepstyle.set_num_threads(args.threads)
    if torch:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.cpu_time else time.perf_counter
    what = (f"cifar-cnn 5x5 convolutions at batch {args.batch}" if args.cifar
            else f"VGG19 3x3 convolutions at {args.size}²")
    print(f"{what}, {args.threads} threads, {'CPU' if args.cpu_time else 'wall'} time, best of 5 "
          "(ms); speedup = direct / winograd")
    errors_head = " fwd err wino / direct | gx err wino / direct |"
    print("| layer   | shape             | fwd direct | fwd wino | speedup | fwd torch "
          "| gx direct | gx wino | speedup | gx torch |" + (errors_head if args.accuracy else ""))
    print("|---------|-------------------|------------|----------|---------|-----------"
          "|-----------|---------|---------|----------|"
          + ("-----------------------|----------------------|" if args.accuracy else ""))
    rng = np.random.default_rng(0)
    for name, n, c, k, side, r, pad in layers(args):
        x = np.maximum(rng.standard_normal((n, c, side, side)), 0).astype(np.float32)
        w = (rng.standard_normal((k, c, r, r)) * np.sqrt(2 / (r * r * c))).astype(np.float32)
        gy = rng.standard_normal((n, k, side, side)).astype(np.float32)
        times = {}
        for algo in ("direct", "winograd"):
            times["fwd", algo] = best_ms(lambda: ops.conv2d(x, w, padding=pad, algo=algo), clock)
            times["gx", algo] = best_ms(lambda: ops.conv2d_backward(
                gy, x, w, padding=pad, need_weight=False, need_bias=False, algo=algo), clock)
        if torch:
            tx, tw, tgy = map(torch.from_numpy, (x, w, gy))
            times["fwd", "torch"] = best_ms(
                lambda: torch.nn.functional.conv2d(tx, tw, padding=pad), clock)
            args_bwd = (tgy, tx, tw, None, [1, 1], [pad, pad], [1, 1], False, [0, 0], 1,
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
            # grad_x is the convolution of grad_y with the flipped, transposed filters.
            w_t = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
            for op, expected in (("fwd", reference(x, w, pad)),
                                 ("gx", reference(gy, w_t, r - 1 - pad))):
                def run(algo):
                    if op == "fwd":
                        return ops.conv2d(x, w, padding=pad, algo=algo)
                    return ops.conv2d_backward(gy, x, w, padding=pad, need_weight=False,
                                               need_bias=False, algo=algo)[0]
                scale_ref = np.abs(expected).max()
                errors = [np.abs(run(a) - expected).max() / scale_ref
                          for a in ("winograd", "direct")]
                row += f" {errors[0]:.1e} / {errors[1]:.1e} |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
