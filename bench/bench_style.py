"""One L-BFGS function evaluation of style transfer, deepstyle against PyTorch on the CPU:

    PYTHONPATH=python python bench/bench_style.py [--sizes 256,512] [--evals 3] [--threads 2]

An evaluation is what every L-BFGS iteration pays at least once: a forward pass of the image
through VGG19 up to relu5_1 (average pooling, random weights: the speed does not depend on
them), the content loss at relu4_2, Gram-matrix style losses at relu1_1 ... relu5_1, TV, and
the backward pass to the image (weights frozen). Each implementation runs in its own
subprocess, so its peak resident memory (ru_maxrss, everything the process held: libraries,
weights, activations) is its own. deepstyle evaluates as ``Painter.run`` does, inside
``reusing_freed_memory()`` (freed activations are reused, not mapped afresh). Times are the
best of --evals evaluations after one warm-up (the machine is shared: the minimum is the least
disturbed), wall and CPU time each.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

CONTENT_LAYER = "relu4_2"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def images(size):
    rng = np.random.default_rng(0)
    return [rng.uniform(0, 1, (size, size, 3)).astype(np.float32) for _ in range(3)]


def setup_deepstyle(size, threads):
    """Build the network and the objective; return a function doing one evaluation."""
    del threads  # set through DEEPSTYLE_NUM_THREADS by measure()
    from deepstyle import models
    from deepstyle.allocator import reusing_freed_memory
    from deepstyle.style import Normalisation, StyleObjective

    reusing_freed_memory().__enter__()  # as in Painter.run; this process ends inside it

    content, style, start = images(size)
    net = models.load_feature_net("vgg19", weights="random-vgg", pooling="avg", last_layer="relu5_1")
    objective = StyleObjective(
        net, net.preprocess(content), [net.preprocess(style)],
        content_layers=[CONTENT_LAYER], style_layers={name: 0.2 for name in STYLE_LAYERS},
        content_weight=1.0, style_weight=10.0, tv_weight=1e-5, normalisation=Normalisation(),
    )
    x = net.preprocess(start)
    return lambda: objective(x)


def setup_torch(size, threads):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    widths = [64, 64, "P", 128, 128, "P", 256, 256, 256, 256, "P", 512, 512, 512, 512, "P", 512]
    layers, names, channels, block, index = [], [], 3, 1, 1
    for width in widths:
        if width == "P":
            layers.append(torch.nn.AvgPool2d(2))
            names.append(f"pool{block}")
            block, index = block + 1, 1
            continue
        layers += [torch.nn.Conv2d(channels, width, 3, padding=1), torch.nn.ReLU()]
        names += [f"conv{block}_{index}", f"relu{block}_{index}"]
        channels, index = width, index + 1
    net = torch.nn.Sequential(*layers).requires_grad_(False)

    def features(x):
        taps = {}
        for name, layer in zip(names, net):
            x = layer(x)
            taps[name] = x
        return taps

    def gram(f):
        flat = f.reshape(f.shape[1], -1)
        return flat @ flat.T / flat.shape[1]

    content, style, start = (torch.from_numpy(im.transpose(2, 0, 1)[None].copy()) for im in images(size))
    with torch.no_grad():
        target = features(content)[CONTENT_LAYER]
        grams = {name: gram(f) for name, f in features(style).items() if name in STYLE_LAYERS}
    x = start.clone().requires_grad_(True)

    def evaluate():
        x.grad = None
        taps = features(x)
        loss = F.mse_loss(taps[CONTENT_LAYER], target, reduction="sum") / target.square().sum()
        for name in STYLE_LAYERS:
            loss = loss + 0.2 * 10.0 * ((gram(taps[name]) - grams[name]).square().sum() / grams[name].square().sum())
        tv = ((x[:, :, :-1, :-1] - x[:, :, :-1, 1:]) ** 2 + (x[:, :, :-1, :-1] - x[:, :, 1:, :-1]) ** 2).mean()
        loss = loss + 1e-5 * tv
        loss.backward()
        return float(loss)

    return evaluate


def measure(impl, size, evals, threads):
    env = dict(os.environ, DEEPSTYLE_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, __file__, "--child", impl, str(size), str(evals), str(threads)],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{impl} at {size}: failed\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_main(impl, size, evals, threads):
    evaluate = {"deepstyle": setup_deepstyle, "torch": setup_torch}[impl](size, threads)
    evaluate()  # warm-up
    best_wall = best_cpu = float("inf")
    for _ in range(evals):
        wall, cpu = time.perf_counter(), _cpu_seconds()
        evaluate()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, _cpu_seconds() - cpu)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    print(json.dumps({"seconds": best_wall, "cpu_seconds": best_cpu, "rss_gib": rss}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--evals", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        impl, size, evals, threads = args.child
        child_main(impl, int(size), int(evals), int(threads))
        return
    try:
        import torch  # noqa: F401

        impls = ["deepstyle", "torch"]
    except ImportError:
        impls = ["deepstyle"]
        print("PyTorch is not installed: timing deepstyle alone", file=sys.stderr)
    print(f"one L-BFGS evaluation, VGG19 to relu5_1, avg pooling, {args.threads} threads, "
          f"best of {args.evals} after a warm-up")
    print("wall s/eval, CPU s/eval (all threads; steadier than wall time on a shared machine), peak RSS")
    print(f"{'size':>8} " + " ".join(f"{impl + ' wall':>15} {impl + ' CPU':>14} {impl + ' peak':>15}" for impl in impls))
    for size in [int(s) for s in args.sizes.split(",")]:
        results = [measure(impl, size, args.evals, args.threads) for impl in impls]
        cells = " ".join(f"{r['seconds']:>15.3f} {r['cpu_seconds']:>14.3f} {r['rss_gib']:>11.2f} GiB" for r in results)
        print(f"{size:>6}^2 {cells}", flush=True)


if __name__ == "__main__":
    main()
