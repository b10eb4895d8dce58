"""Single-point stochastic gradient steps on the paper's 2-2-3-2 sigmoid network, side by side:

    PYTHONPATH=python python bench/bench_netbp.py [--steps 20000] [--repeats 3]

- deepstyle layer stack: Sequential(Linear, Sigmoid, ...) + QuadraticCost + optim.SGD, one
  forward/backward/step per point through deepstyle.ops (float32 kernels);
- deepstyle fused: optim.SigmoidNetSGD, the trainer `deepstyle netbp` uses (float64);
- NumPy: Listing 6.1 written out by hand (float64), and the same on preallocated buffers with
  out= arguments;
- PyTorch eager (when importable, one thread): the same hand-written backprop on tensors, and
  autograd with torch.optim.SGD.

Every variant starts from the same weights and visits the same points, so the final costs
(Listing 6.1's scaling) must agree; times are the best of --repeats runs, in us per step.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from deepstyle import netbp, nn, optim

try:
    import torch
except ImportError:
    torch = None

ETA = 0.05


def stack(net, x, y, idx):
    x, y = x.astype(np.float32), y.astype(np.float32)
    cost, sgd = nn.QuadraticCost(), optim.SGD(net, ETA)
    for k in idx:
        _, grad = cost(net.forward(x[k:k + 1]), y[k:k + 1])
        net.backward(grad)
        sgd.step()


def fused(net, x, y, idx):
    optim.SigmoidNetSGD(net, ETA).run(x, y, idx)


def numpy_listing(W, b, x, y, idx):
    W, b = [w.copy() for w in W], [v.copy() for v in b]
    xs, ys = list(x), list(y)
    for k in idx.tolist():
        a1 = xs[k]
        a2 = 1 / (1 + np.exp(-(W[0] @ a1 + b[0])))
        a3 = 1 / (1 + np.exp(-(W[1] @ a2 + b[1])))
        a4 = 1 / (1 + np.exp(-(W[2] @ a3 + b[2])))
        d4 = a4 * (1 - a4) * (a4 - ys[k])
        d3 = a3 * (1 - a3) * (W[2].T @ d4)
        d2 = a2 * (1 - a2) * (W[1].T @ d3)
        W[2] -= ETA * np.outer(d4, a3)
        W[1] -= ETA * np.outer(d3, a2)
        W[0] -= ETA * np.outer(d2, a1)
        b[2] -= ETA * d4
        b[1] -= ETA * d3
        b[0] -= ETA * d2
    return W, b


def numpy_buffers(W, b, x, y, idx):
    """Column vectors in preallocated buffers; every operation writes with out=."""
    W, b = [w.copy() for w in W], [v.copy()[:, None] for v in b]
    xs = [np.ascontiguousarray(p[:, None]) for p in x]
    ys = [np.ascontiguousarray(t[:, None]) for t in y]
    a = [np.empty((w.shape[0], 1)) for w in W]
    d = [np.empty_like(v) for v in a]
    t = [np.empty_like(v) for v in a]
    g = [np.empty_like(w) for w in W]
    for k in idx.tolist():
        prev = xs[k]
        for l in range(3):
            np.matmul(W[l], prev, out=a[l])
            a[l] += b[l]
            np.negative(a[l], out=a[l])
            np.exp(a[l], out=a[l])
            a[l] += 1.0
            np.reciprocal(a[l], out=a[l])
            prev = a[l]
        np.subtract(a[2], ys[k], out=d[2])
        for l in (2, 1, 0):
            if l < 2:
                np.matmul(W[l + 1].T, d[l + 1], out=d[l])
            np.subtract(1.0, a[l], out=t[l])
            t[l] *= a[l]
            d[l] *= t[l]
        for l in range(3):
            d[l] *= -ETA
            np.matmul(d[l], (xs[k] if l == 0 else a[l - 1]).T, out=g[l])
            W[l] += g[l]
            b[l] += d[l]
    return W, [v[:, 0] for v in b]


def torch_manual(W, b, x, y, idx):
    W = [torch.tensor(w) for w in W]
    b = [torch.tensor(v) for v in b]
    xs, ys = list(torch.tensor(x)), list(torch.tensor(y))
    with torch.no_grad():
        for k in idx.tolist():
            a = [xs[k]]
            for Wl, bl in zip(W, b):
                a.append(torch.sigmoid(Wl @ a[-1] + bl))
            d4 = a[3] * (1 - a[3]) * (a[3] - ys[k])
            d3 = a[2] * (1 - a[2]) * (W[2].T @ d4)
            d2 = a[1] * (1 - a[1]) * (W[1].T @ d3)
            for l, dl in zip((2, 1, 0), (d4, d3, d2)):
                W[l] -= ETA * torch.outer(dl, a[l])
                b[l] -= ETA * dl
    return [w.numpy() for w in W], [v.numpy() for v in b]


def torch_autograd(W, b, x, y, idx):
    W = [torch.tensor(w, requires_grad=True) for w in W]
    b = [torch.tensor(v, requires_grad=True) for v in b]
    sgd = torch.optim.SGD(W + b, lr=ETA)
    xs, ys = list(torch.tensor(x)), list(torch.tensor(y))
    for k in idx.tolist():
        a = xs[k]
        for Wl, bl in zip(W, b):
            a = torch.sigmoid(Wl @ a + bl)
        loss = 0.5 * ((a - ys[k]) ** 2).sum()
        sgd.zero_grad()
        loss.backward()
        sgd.step()
    return [w.detach().numpy() for w in W], [v.detach().numpy() for v in b]


def listing_cost(W, b, x, y):
    a = x
    for Wl, bl in zip(W, b):
        a = 1 / (1 + np.exp(-(a @ np.asarray(Wl, float).T + np.asarray(bl, float))))
    return float(np.sum((a - y) ** 2))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    x, y = netbp.paper_points()
    idx = np.random.default_rng(1).integers(0, len(x), args.steps)
    start_net = netbp.paper_network(np.random.default_rng(5000))
    W0 = [start_net[i].weight.astype(float) for i in (0, 2, 4)]
    b0 = [start_net[i].bias.astype(float) for i in (0, 2, 4)]

    def on_our_net(step):
        def run():
            net = netbp.paper_network(np.random.default_rng(5000))
            step(net, x, y, idx)
            return ([net[i].weight for i in (0, 2, 4)], [net[i].bias for i in (0, 2, 4)])
        return run

    variants = [("deepstyle layer stack (Sequential + SGD, float32)", on_our_net(stack)),
                ("deepstyle fused (SigmoidNetSGD, as netbp uses)", on_our_net(fused)),
                ("NumPy, Listing 6.1 by hand (float64)", lambda: numpy_listing(W0, b0, x, y, idx)),
                ("NumPy, preallocated buffers + out=", lambda: numpy_buffers(W0, b0, x, y, idx))]
    if torch is not None:
        torch.set_num_threads(1)
        variants += [("PyTorch eager, manual backprop", lambda: torch_manual(W0, b0, x, y, idx)),
                     ("PyTorch eager, autograd + optim.SGD",
                      lambda: torch_autograd(W0, b0, x, y, idx))]
    else:
        print("(PyTorch not importable: its rows are skipped)")
    print(f"2-2-3-2 sigmoid network, single-point SGD, eta={ETA}, {args.steps} steps, "
          f"best of {args.repeats}; initial cost {listing_cost(W0, b0, x, y):.4f}")
    print(f"{'variant':52s} {'us/step':>9s} {'final cost':>11s}")
    for name, run in variants:
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            W, b = run()
            best = min(best, time.perf_counter() - t0)
        print(f"{name:52s} {1e6 * best / args.steps:9.2f} {listing_cost(W, b, x, y):11.6f}")


if __name__ == "__main__":
    main()
