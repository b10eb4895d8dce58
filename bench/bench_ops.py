"""Times deepstyle.ops against NumPy and PyTorch (CPU, when importable) in one process.

    PYTHONPATH=python python bench/bench_ops.py [--quick] [--threads N] [--only gemm,conv,...]

Every library runs the same shapes with the same thread count; each time is the best of several
repeats (the machine is shared, so the minimum is the least noisy estimate). "speedup" columns are
the other library's time divided by ours: above 1 means deepstyle is faster. NumPy runs only
where it has the operation (matmul for gemm and gram). For NumPy's own best BLAS kernel, run with
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset; the header says which kernel it loaded.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import deepstyle
from deepstyle import ops

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    torch = None


def best_time(fn, quick, clock=time.perf_counter):
    """Best time of fn() in seconds on `clock` after a warm-up call."""
    fn()
    reps, budget = (3, 0.2) if quick else (10, 1.0)
    best, spent, n = float("inf"), 0.0, 0
    while n < reps or (spent < budget and n < 200):
        t0 = clock()
        fn()
        dt = clock() - t0
        best, spent, n = min(best, dt), spent + dt, n + 1
    return best


def rng_array(rng, *shape):
    return rng.standard_normal(shape, dtype=np.float32)


def gemm_cases(rng, quick):
    sizes = [(256, 256, 256), (1024, 1024, 1024), (2048, 2048, 2048), (32, 65536, 75),
             (64, 16384, 800), (512, 1024, 4608), (10, 100, 64)]
    for m, n, k in sizes:
        if quick and m * n * k > 2**31:
            continue
        a, b = rng_array(rng, m, k), rng_array(rng, k, n)
        ta, tb = (torch.from_numpy(a), torch.from_numpy(b)) if torch else (None, None)
        yield ("gemm", f"{m}x{n}x{k}", 2.0 * m * n * k, lambda: ops.gemm(a, b),
               lambda: a @ b, (lambda: ta @ tb) if torch else None)


CIFAR = [  # (name, N, C, H, W, K, R, pad): MatConvNet's CIFAR-10 network at batch 100
    ("cifar1 5x5 3->32", 100, 3, 32, 32, 32, 5, 2),
    ("cifar2 5x5 32->32", 100, 32, 16, 16, 32, 5, 2),
    ("cifar3 5x5 32->64", 100, 32, 8, 8, 64, 5, 2),
    ("cifar4 4x4 64->64", 100, 64, 4, 4, 64, 4, 0),
    ("cifar5 1x1 64->10", 100, 64, 1, 1, 10, 1, 0),
]
VGG = [  # VGG19's conv1_1 ... conv5_1 (3x3, pad 1) on a 256x256 image
    ("vgg conv1_1", 1, 3, 256, 256, 64, 3, 1),
    ("vgg conv2_1", 1, 64, 128, 128, 128, 3, 1),
    ("vgg conv3_1", 1, 128, 64, 64, 256, 3, 1),
    ("vgg conv4_1", 1, 256, 32, 32, 512, 3, 1),
    ("vgg conv5_1", 1, 512, 16, 16, 512, 3, 1),
]


def conv_cases(rng, quick):
    for name, n, c, h, w, k, r, pad in CIFAR + VGG:
        x, wt, b = rng_array(rng, n, c, h, w), rng_array(rng, k, c, r, r), rng_array(rng, k)
        p = h + 2 * pad - r + 1
        gy = rng_array(rng, n, k, p, p)
        flops = 2.0 * n * k * p * p * c * r * r
        yield ("conv2d fwd", name, flops, lambda: ops.conv2d(x, wt, b, padding=pad), None,
               torch_conv_forward(x, wt, b, pad))
        yield ("conv2d bwd x", name, flops,
               lambda: ops.conv2d_backward(gy, x, wt, padding=pad, need_weight=False,
                                           need_bias=False),
               None, torch_conv_backward(gy, x, wt, pad, (True, False, False)))
        yield ("conv2d bwd w+b", name, flops,
               lambda: ops.conv2d_backward(gy, x, wt, padding=pad, need_x=False), None,
               torch_conv_backward(gy, x, wt, pad, (False, True, True)))


def torch_conv_forward(x, w, b, pad):
    if torch is None:
        return None
    tx, tw, tb = map(torch.from_numpy, (x, w, b))
    return lambda: F.conv2d(tx, tw, tb, padding=pad)


def torch_conv_backward(gy, x, w, pad, mask):
    """PyTorch's own convolution backward kernel (what autograd calls), without autograd."""
    if torch is None:
        return None
    tgy, tx, tw = map(torch.from_numpy, (gy, x, w))
    args = (tgy, tx, tw, [w.shape[0]], [1, 1], [pad, pad], [1, 1], False, [0, 0], 1, list(mask))
    return lambda: torch.ops.aten.convolution_backward(*args)


def pool_cases(rng, quick):
    shapes = [("3x3/2 ceil (100,32,32,32)", (100, 32, 32, 32), 3, 2, True),  # CIFAR pool1
              ("3x3/2 ceil (100,32,16,16)", (100, 32, 16, 16), 3, 2, True),  # pool2
              ("3x3/2 ceil (100,64,8,8)", (100, 64, 8, 8), 3, 2, True),  # pool3
              ("2x2/2 (1,64,256,256)", (1, 64, 256, 256), 2, 2, False),
              ("2x2/2 (1,512,32,32)", (1, 512, 32, 32), 2, 2, False)]
    for name, shape, k, s, ceil in shapes:
        x = rng_array(rng, *shape)
        y = ops.max_pool2d(x, k, s, ceil_mode=ceil)
        gy = rng_array(rng, *y.shape)
        tx = torch.from_numpy(x) if torch else None
        tgy = torch.from_numpy(gy) if torch else None
        _, indices = ops.max_pool2d(x, k, s, ceil_mode=ceil, return_indices=True)
        yield ("max_pool fwd", name, None, lambda: ops.max_pool2d(x, k, s, ceil_mode=ceil), None,
               (lambda: F.max_pool2d(tx, k, s, ceil_mode=ceil)) if torch else None)
        yield ("max_pool fwd+idx", name, None,
               lambda: ops.max_pool2d(x, k, s, ceil_mode=ceil, return_indices=True), None,
               (lambda: F.max_pool2d(tx, k, s, ceil_mode=ceil, return_indices=True))
               if torch else None)
        yield ("max_pool bwd idx", name, None,
               lambda: ops.max_pool2d_backward(gy, x, k, s, ceil_mode=ceil, indices=indices), None,
               torch_max_pool_backward(tx, tgy, k, s, ceil))
        yield ("max_pool bwd x", name, None,
               lambda: ops.max_pool2d_backward(gy, x, k, s, ceil_mode=ceil), None,
               torch_max_pool_backward(tx, tgy, k, s, ceil))
        yield ("avg_pool fwd", name, None, lambda: ops.avg_pool2d(x, k, s, ceil_mode=ceil), None,
               (lambda: F.avg_pool2d(tx, k, s, ceil_mode=ceil)) if torch else None)
        yield ("avg_pool bwd", name, None,
               lambda: ops.avg_pool2d_backward(gy, x, k, s, ceil_mode=ceil), None,
               (lambda: torch.ops.aten.avg_pool2d_backward(tgy, tx, [k, k], [s, s], [0, 0], ceil,
                                                           True, None)) if torch else None)


def torch_max_pool_backward(tx, tgy, k, s, ceil):
    if torch is None:
        return None
    _, indices = F.max_pool2d(tx, k, s, ceil_mode=ceil, return_indices=True)
    # PyTorch's backward needs the forward's indices; the forward is timed separately.
    return lambda: torch.ops.aten.max_pool2d_with_indices_backward(
        tgy, tx, [k, k], [s, s], [0, 0], [1, 1], ceil, indices)


GRAM_LAYERS = [("relu1_1", 64, 1), ("relu2_1", 128, 2), ("relu3_1", 256, 4),
               ("relu4_1", 512, 8), ("relu5_1", 512, 16)]  # VGG19: channels, downsampling


def gram_cases(rng, quick):
    shapes = [(f"vgg {layer} {c}x{size // down}^2", c, (size // down) ** 2)
              for size in (256, 512) for layer, c, down in GRAM_LAYERS]
    for name, c, hw in shapes:
        side = int(hw**0.5)
        x = rng_array(rng, 1, c, side, side)
        gg = rng_array(rng, 1, c, c)
        f = x.reshape(c, hw)
        tf = torch.from_numpy(f) if torch else None
        flops = 2.0 * c * c * hw
        yield ("gram fwd", name, flops, lambda: ops.gram(x), lambda: (f @ f.T) / hw,
               (lambda: (tf @ tf.T) / hw) if torch else None)
        g2 = gg[0] + gg[0].T
        tg2 = torch.from_numpy(g2) if torch else None
        yield ("gram bwd", name, flops, lambda: ops.gram_backward(gg, x), lambda: (g2 @ f) / hw,
               (lambda: (tg2 @ tf) / hw) if torch else None)


GROUPS = {"gemm": gemm_cases, "conv": conv_cases, "pool": pool_cases, "gram": gram_cases}


def blas_kernel():
    from threadpoolctl import threadpool_info

    infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return ", ".join(f"{i.get('internal_api')} {i.get('architecture')}" for i in infos) or "none"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and no huge shapes")
    parser.add_argument("--threads", type=int, default=deepstyle.get_num_threads())
    parser.add_argument("--only", default=",".join(GROUPS), help="comma-separated groups")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time by process CPU time instead of wall time: robust to other "
                             "load on a shared machine, but meaningful only with --threads 1")
    args = parser.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    deepstyle.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # OpenBLAS would run on every core: a NumPy column at the wrong count
        parser.error("NumPy's BLAS threads are set through threadpoolctl, which is not "
                     "installed: pip install threadpoolctl")
    threadpool_limits(args.threads)
    rng = np.random.default_rng(0)
    print(f"deepstyle {deepstyle.__version__}, {args.threads} threads, "
          f"{'CPU' if args.cpu_time else 'wall'} time; NumPy {np.__version__} "
          f"({blas_kernel()}); PyTorch {torch.__version__ if torch else 'not installed'}")
    header = (f"| {'op':<16} | {'shape':<26} | {'ours ms':>9} | {'GFLOP/s':>7} | {'NumPy ms':>9} "
              f"| {'speedup':>7} | {'torch ms':>9} | {'speedup':>7} |")
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for group in args.only.split(","):
        for op, shape, flops, ours, np_fn, torch_fn in GROUPS[group](rng, args.quick):
            t_ours = best_time(ours, args.quick, clock)
            t_np = best_time(np_fn, args.quick, clock) if np_fn else None
            t_torch = best_time(torch_fn, args.quick, clock) if torch_fn else None

            def cell(t, width=9):
                return f"{t * 1e3:{width}.3f}" if t is not None else f"{'-':>{width}}"

            def ratio(t):
                return f"{t / t_ours:7.2f}" if t is not None else f"{'-':>7}"

            gflops = f"{flops / t_ours * 1e-9:7.1f}" if flops else f"{'-':>7}"
            print(f"| {op:<16} | {shape:<26} | {cell(t_ours)} | {gflops} | {cell(t_np)} "
                  f"| {ratio(t_np)} | {cell(t_torch)} | {ratio(t_torch)} |", flush=True)


if __name__ == "__main__":
    main()
