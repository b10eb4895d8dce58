"""2-thread scaling of deepstyle's kernels on the CIFAR-10 and VGG layers (issue 11's goal:
2 threads at least 1.8x as fast as 1), with PyTorch's scaling beside it:

    PYTHONPATH=python python bench/bench_scaling.py [--only conv,pool] [--rounds 6]

Each operation is timed by the wall clock, best of several repeats, at 1 and at 2 threads
alternately for --rounds rounds in one process (the best of each count is kept), so that a
change in the machine's load hits both counts. Wall-clock scaling means something only on an
otherwise idle machine: the load average before and after is printed, and a run under load
understates the scaling (a busy core slows the 2-thread time, not the 1-thread one). Even idle,
the 2-core VMs this was measured on have slow stretches of a few tenths of a second: with 3
rounds, Winograd grad_x of cifar2 came out at 1.69x in one run and 1.93x when its 1- and
2-thread calls alternated 80 times (Zen 4, Dec 2026), hence 6 rounds by default.

Each count's calls are repeated back to back (bench_ops.best_time): alternating 1- and 2-thread
calls one by one would leave every input in the first core's L2 for each 2-thread call (a
trivially parallel ReLU then "scales" 1.0-1.2x at every size from 0.25 to 64 MB; repeated,
1.8-2.2x).
The operations run inside ``reusing_freed_memory()``, as the training and painting loops run
them, so a result is reused heap memory rather than pages mapped and faulted in afresh (the
max-pool backward on (100,32,16,16), whose 3.2 MB result is then fault-bound: 1.27x fresh, 1.85x
reused, Zen 4); ``--fresh-memory`` measures outside it.

"scaling" is the best 1-thread time over the best 2-thread time; "rounds min-median" gives the
lowest and the median of each round's own ratio, whose spread shows how far this machine's
stretches moved the result (on the 2-vCPU VMs, where the second vCPU can drop out for a tenth
of a second or more, a row's rounds ranged from 1.0x to 2.0x).
"""

from __future__ import annotations

import argparse
import os
import statistics

import numpy as np

import deepstyle
from deepstyle.allocator import reusing_freed_memory
from bench_ops import GROUPS, best_time, torch

THREADS = (1, 2)


def set_threads(n):
    deepstyle.set_num_threads(n)
    if torch is not None:
        torch.set_num_threads(n)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="conv,pool", help="comma-separated groups of bench_ops")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--fresh-memory", action="store_true",
                        help="map every result afresh (glibc's default), not reusing freed memory")
    args = parser.parse_args()
    if not args.fresh_memory:
        reusing_freed_memory().__enter__()  # for the rest of this process, as bench_train does
    print(f"deepstyle {deepstyle.__version__}, PyTorch {torch.__version__ if torch else '-'}; "
          f"wall time, best of {args.rounds} alternating rounds at 1 and 2 threads; "
          f"{'fresh' if args.fresh_memory else 'reused'} result memory; "
          f"load average {os.getloadavg()[0]:.2f}")
    header = (f"| {'op':<16} | {'shape':<26} | {'ours 1 thr ms':>13} | {'ours 2 thr ms':>13} "
              f"| {'scaling':>7} | {'rounds min-median':>17} | {'torch scaling':>13} |")
    print(header)
    print("|" + "|".join("-" * len(cell) for cell in header.split("|")[1:-1]) + "|")
    rng = np.random.default_rng(0)
    for group in args.only.split(","):
        for op, shape, _, ours, _, torch_fn in GROUPS[group](rng, True):
            best, rounds = {}, []
            for _ in range(args.rounds):
                this_round = {}
                for n in THREADS:
                    set_threads(n)
                    for impl, fn in (("ours", ours), ("torch", torch_fn)):
                        if fn is not None:
                            t = this_round[impl, n] = best_time(fn, True)
                            best[impl, n] = min(best.get((impl, n), t), t)
                rounds.append(this_round["ours", 1] / this_round["ours", 2])
            torch_scaling = (f"{best['torch', 1] / best['torch', 2]:13.2f}"
                             if ("torch", 1) in best else f"{'-':>13}")
            spread = f"{min(rounds):.2f}-{statistics.median(rounds):.2f}"
            print(f"| {op:<16} | {shape:<26} | {best['ours', 1] * 1e3:13.3f} "
                  f"| {best['ours', 2] * 1e3:13.3f} | {best['ours', 1] / best['ours', 2]:7.2f} "
                  f"| {spread:>17} | {torch_scaling} |", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
