"""Listing 6.1 of Higham & Higham -- a 2-2-3-2 sigmoid network trained by
single-point stochastic gradient on ten points in the unit square -- with its Figures 7, 8 and 9,
and the nonlinear least-squares fits of Figures 4 and 5; the command is ``commands/netbp.py``.

The cost reported is Listing 6.1's scaling of eq. (6): the sum over the points of
||y - F(x)||^2, i.e. 2N times the mean cost of eq. (9), which starts near 5 for 0.5*randn
weights.
"""

from __future__ import annotations

import copy

import numpy as np

from . import nn
from .reporting import save_figure

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
