"""``deepstyle netbp``: Listing 6.1's experiment (the library is ``deepstyle.netbp``), with
Figures 7, 8 and (``--extra-point``) 9, and (``--lsq``) the least-squares fits of Figures 4-5."""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np

from .. import nn, optim
from ..netbp import (accuracy, fit_least_squares, listing_cost, paper_network, paper_points,
                     plot_cost, plot_regions, region_grid)
from ..reporting import PLOT_HINT, write_csv
from ..reporting import pyplot as _pyplot  # a module global: tests replace it


def add_arguments(parser):
    parser.add_argument("--out", default="netbp-out", metavar="DIR",
                        help="output directory (default: ./netbp-out)")
    parser.add_argument("--seed", type=int, default=5000,
                        help="seed of the random generator for weights and sampling "
                             "(default 5000, as Listing 6.1's rng(5000))")
    parser.add_argument("--iterations", type=int, default=1_000_000,
                        help="stochastic gradient steps (default 1e6)")
    parser.add_argument("--eta", type=float, default=0.05, help="learning rate (default 0.05)")
    parser.add_argument("--record-every", type=int, default=10_000, metavar="STEPS",
                        help="record the cost every STEPS steps (default 1e4, as Figure 7)")
    parser.add_argument("--extra-point", action="store_true",
                        help="also train on the ten points plus (0.3, 0.7) in category B "
                             "(Figure 9); its files end in -extra")
    parser.add_argument("--lsq", action="store_true",
                        help="also fit by nonlinear least squares (scipy) and draw that region "
                             "beside the stochastic gradient one (Figures 4 and 5)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _argument_error(args):
    """What is wrong with the options, or None."""
    if args.iterations < 0:
        return f"--iterations: expected a non-negative integer, got {args.iterations}"
    if not args.eta > 0 or not np.isfinite(args.eta):
        return f"--eta: expected a positive learning rate, got {args.eta}"
    if args.record_every < 1:
        return f"--record-every: expected a positive integer, got {args.record_every}"
    if args.lsq and importlib.util.find_spec("scipy") is None:
        return "--lsq needs scipy: pip install 'deepstyle[scipy]'"
    return None


def experiment(args, extra_point, plt):
    """Train on the paper's points (plus the extra one), write the files, return a summary."""
    suffix = "-extra" if extra_point else ""
    x, y = paper_points(extra_point)
    rng = np.random.default_rng(args.seed)
    net = paper_network(rng)
    lsq_net = fit_least_squares(net, x, y) if args.lsq else None
    trainer = optim.SigmoidNetSGD(net, args.eta)
    history = optim.train(net, nn.QuadraticCost(), x.astype(np.float32), y.astype(np.float32),
                          trainer, optim.WithReplacement(len(x), rng=rng),
                          steps=args.iterations, record_every=args.record_every,
                          progress=not args.quiet)
    scale = 2 * len(x)  # eq. (9) -> Listing 6.1's sum of squared errors
    costs = [scale * c for c in history.train_cost]
    out = args.out
    write_csv(os.path.join(out, f"cost{suffix}.csv"), ["step", "cost"],
              zip(history.steps, costs))
    outputs = net.forward(x)
    write_csv(os.path.join(out, f"points{suffix}.csv"), ["x1", "x2", "category", "F1", "F2"],
              [(float(p[0]), float(p[1]), "A" if t[0] > t[1] else "B", float(o[0]), float(o[1]))
               for p, t, o in zip(x, y, outputs)])
    t, margin = region_grid(net, 101)
    write_csv(os.path.join(out, f"region{suffix}.csv"), ["x1", "x2", "F1_minus_F2"],
              [(float(a), float(b), float(margin[j, i]))
               for j, b in enumerate(t) for i, a in enumerate(t)])
    net.save(os.path.join(out, f"netbp{suffix}.npz"))
    summary = {
        "points": len(x), "steps": history.steps_done, "seconds": history.seconds,
        "initial_cost": costs[0], "final_cost": costs[-1], "accuracy": accuracy(net, x, y),
        "interrupted": history.interrupted, "files": [],
    }
    if lsq_net is not None:
        summary["lsq_cost"] = listing_cost(lsq_net, x, y)
        summary["lsq_accuracy"] = accuracy(lsq_net, x, y)
    if plt is not None:
        cost_png = os.path.join(out, f"cost{suffix}.png")
        region_png = os.path.join(out, f"region{suffix}.png")
        plot_cost(plt, history.steps, costs, cost_png,
                  f"netbp: {len(x)} points, eta={args.eta:g}, {history.steps_done:,} steps")
        panels = [(f"stochastic gradient ({history.steps_done:,} steps)", net)]
        if lsq_net is not None:
            panels.append(("nonlinear least squares", lsq_net))
        plot_regions(plt, panels, x, y, region_png)
        summary["files"] = [cost_png, region_png]
    return summary


def run(args):
    error = _argument_error(args)
    if error:
        print(f"deepstyle netbp: error: {error}", file=sys.stderr)
        return 2
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as exc:
        print(f"deepstyle netbp: error: --out: cannot create {args.out!r} ({exc.strerror})",
              file=sys.stderr)
        return 2
    plt = _pyplot()
    interrupted = False
    for extra_point in [False, True] if args.extra_point else [False]:
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported below
                s = experiment(args, extra_point, plt)
        except optim.TrainingDiverged as exc:
            print(f"deepstyle netbp: error: {exc} (--eta {args.eta:g})", file=sys.stderr)
            return 1
        label = f"{s['points']} points"
        print(f"{label}: cost (sum of squared errors, as Listing 6.1; 2N x eq. (9)) "
              f"{s['initial_cost']:.4g} -> {s['final_cost']:.4g} after "
              f"{s['steps']:,} steps in {s['seconds']:.1f} s "
              f"({1e6 * s['seconds'] / max(s['steps'], 1):.2f} us/step incl. recording); "
              f"{round(s['accuracy'] * s['points'])}/{s['points']} classified correctly")
        if "lsq_cost" in s:
            print(f"{label}: least squares cost {s['lsq_cost']:.4g}; "
                  f"{round(s['lsq_accuracy'] * s['points'])}/{s['points']} classified correctly")
        for path in s["files"]:
            print(f"wrote {path}")
        if s["interrupted"]:
            interrupted = True
            print("interrupted: the files hold what was learned up to then", file=sys.stderr)
            break
    print(f"wrote CSV files and parameters into {args.out}")
    if plt is None:
        print(PLOT_HINT, file=sys.stderr)
    return 130 if interrupted else 0
