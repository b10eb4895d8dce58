"""``deepstyle netbp``: Listing 6.1 of Higham & Higham -- a 2-2-3-2 sigmoid network trained by
single-point stochastic gradient on ten points in the unit square -- with its Figures 7, 8 and
(``--extra-point``) 9, and (``--lsq``) the nonlinear least-squares fits of Figures 4 and 5.

The cost reported is Listing 6.1's scaling of eq. (6): the sum over the points of
||y - F(x)||^2, i.e. 2N times the mean cost of eq. (9), which starts near 5 for 0.5*randn
weights.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import sys

import numpy as np

from . import nn, optim
from .reporting import PLOT_HINT, save_figure, write_csv
from .reporting import pyplot as _pyplot  # a module global: tests replace it

# Listing 6.1: the ten points; the first five are category A, the last five category B.
X1 = [0.1, 0.3, 0.1, 0.6, 0.4, 0.6, 0.5, 0.9, 0.4, 0.7]
X2 = [0.1, 0.4, 0.5, 0.9, 0.2, 0.3, 0.6, 0.2, 0.4, 0.6]
EXTRA_POINT = (0.3, 0.7)  # category B, Figures 5 and 9


def paper_points(extra_point=False):
    """Inputs (N, 2) and targets (N, 2) of eq. (5): [1, 0] for category A, [0, 1] for B."""
    x = np.column_stack([X1, X2])
    y = np.repeat([[1.0, 0.0], [0.0, 1.0]], 5, axis=0)
    if extra_point:
        x = np.vstack([x, EXTRA_POINT])
        y = np.vstack([y, [0.0, 1.0]])
    return x, y


def paper_network(rng):
    """The 2-2-3-2 sigmoid network of Figure 3, every weight and bias 0.5*randn."""
    layers = []
    for i, (n_in, n_out) in enumerate([(2, 2), (2, 3), (3, 2)], start=2):
        layers += [(f"layer{i}", nn.Linear(n_in, n_out, rng=rng, init="paper")),
                   (f"sigma{i}", nn.Sigmoid())]
    return nn.Sequential(layers)


def listing_cost(net, x, y):
    """Listing 6.1's cost: sum over points of ||y - F(x)||^2 (= 2N times eq. (9))."""
    return float(np.sum((net.forward(x).astype(np.float64) - y) ** 2))


def accuracy(net, x, y):
    """Fraction of points on the right side of F1(x) > F2(x)."""
    out = net.forward(x)
    return float(np.mean((out[:, 0] > out[:, 1]) == (y[:, 0] > y[:, 1])))


# --- output files -----------------------------------------------------------------------------


def region_grid(net, size=201):
    """F1 - F2 over a size x size grid on [0, 1]^2 (rows: x2, columns: x1)."""
    t = np.linspace(0.0, 1.0, size)
    g1, g2 = np.meshgrid(t, t)
    out = net.forward(np.column_stack([g1.ravel(), g2.ravel()]))
    return t, (out[:, 0] - out[:, 1]).reshape(size, size)


def plot_cost(plt, steps, costs, path, title):
    """Figure 7: the cost on a log scale against the iteration number."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(steps, costs, "b-")
    ax.set_xlabel("Iteration Number")
    ax.set_ylabel("Value of cost function")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    save_figure(plt, fig, path)


def plot_regions(plt, panels, x, y, path):
    """Figures 4/5/8/9: F1(x) > F2(x) shaded, category A as circles, B as crosses."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5), squeeze=False)
    for ax, (title, net) in zip(axes[0], panels):
        t, margin = region_grid(net)
        ax.contourf(t, t, margin, levels=[0.0, np.inf], colors=["0.85"])
        ax.contour(t, t, margin, levels=[0.0], colors=["0.4"], linewidths=1)
        a = y[:, 0] > y[:, 1]
        ax.plot(x[a, 0], x[a, 1], "ro", ms=10, mfc="none", mew=2)
        ax.plot(x[~a, 0], x[~a, 1], "bx", ms=10, mew=2)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_title(title)
    fig.tight_layout()
    save_figure(plt, fig, path)


# --- nonlinear least squares (Figures 4 and 5) -------------------------------------------------


def fit_least_squares(net, x, y):
    """Minimise eq. (6) over the 23 parameters with scipy.optimize.least_squares (the
    counterpart of MATLAB's lsqnonlin), starting from ``net``'s parameters; returns a new
    network holding the fit."""
    from scipy.optimize import least_squares

    shapes = [value.shape for _, value, _ in net.parameters()]
    start = np.concatenate([value.ravel() for _, value, _ in net.parameters()]).astype(float)

    def unpack(p):
        out, offset = [], 0
        for shape in shapes:
            size = int(np.prod(shape))
            out.append(p[offset:offset + size].reshape(shape))
            offset += size
        return out

    def residuals(p):
        a = x
        params = unpack(p)
        for w, b in zip(params[0::2], params[1::2]):
            a = 1.0 / (1.0 + np.exp(-(a @ w.T + b)))
        return (a - y).ravel()

    result = least_squares(residuals, start)
    fitted = copy.deepcopy(net)
    for (_, value, _), fit in zip(fitted.parameters(), unpack(result.x)):
        value[...] = fit
    return fitted


# --- the command ------------------------------------------------------------------------------


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
