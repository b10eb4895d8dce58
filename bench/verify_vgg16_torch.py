"""Our pretrained-VGG16 style transfer against PyTorch, on the same weights, layers, loss and input:

    PYTHONPATH=python python bench/verify_vgg16_torch.py [--weights FILE] [--size 128] [--iterations 100]

1. features at every tapped layer (relu1_1 ... relu5_1, relu4_2): max |ours - torch| / max |torch|;
2. the default preset's total loss and its gradient at the content image, against autograd;
3. 100 L-BFGS iterations from the content image, ours against ``torch.optim.LBFGS`` (strong Wolfe,
   the same history size): both final losses, both times, both evaluation counts.

The weights are the file ``deepstyle weights fetch vgg16`` fetched (or --weights); the content and
style are two generated pictures (the demo's), so the script needs nothing but torch and the cache.
PyTorch runs in float32 on the CPU with the same thread count as ours.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

import deepstyle
from deepstyle import models
from deepstyle.painting import settings_for
from deepstyle.style import LBFGS, StyleObjective
from deepstyle.style.demo import demo_content, demo_style
from deepstyle.style.transfer import pixel_scale


def torch_features(torch, weights, arch, taps):
    """A function x -> {tap: tensor}: the VGG built from the same arrays, average pooling."""
    specs = models.arch.layer_specs(arch)
    last = max(taps, key=[name for name, _, _ in specs].index)
    params = {name: (torch.from_numpy(w), torch.from_numpy(b)) for name, (w, b) in weights.layers.items()}

    def forward(x):
        out = {}
        for name, kind, _ in specs:
            if kind == "conv":
                x = torch.nn.functional.conv2d(x, *params[name], padding=1)
            elif kind == "relu":
                x = torch.relu(x)
            else:
                x = torch.nn.functional.avg_pool2d(x, 2)
            if name in taps:
                out[name] = x
            if name == last:
                return out
        return out

    return forward


def torch_objective(torch, forward, settings, content_x, style_x, units):
    """The default preset's loss (relative content and style, TV mean of squares in 0-255 units)."""
    assert settings.normalisation.content == "relative" and settings.normalisation.style == "relative"
    content_layers, style_layers = list(settings.content_layers), dict(settings.style_layers)

    def gram(f):
        _, c, h, w = f.shape
        f = f.reshape(c, h * w)
        return f @ f.T / (h * w)

    with torch.no_grad():
        content_targets = {n: f for n, f in forward(content_x).items() if n in content_layers}
        style_targets = {n: gram(f) for n, f in forward(style_x).items() if n in style_layers}

    def loss(x):
        features = forward(x)
        total = 0.0
        for name in content_layers:
            target = content_targets[name]
            total = total + settings.content_weight * ((features[name] - target) ** 2).sum() / (target ** 2).sum()
        for name, weight in style_layers.items():
            target = style_targets[name]
            diff = gram(features[name]) - target
            total = total + settings.style_weight * weight * (diff ** 2).sum() / (target ** 2).sum()
        scaled = units * x
        corner = scaled[:, :, :-1, :-1]
        tv = ((corner - scaled[:, :, :-1, 1:]) ** 2 + (corner - scaled[:, :, 1:, :-1]) ** 2)
        return total + settings.tv_weight * tv.mean()

    return loss


def relative(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", help="VGG16 weights file (default: the cache folder's)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--history", type=int, default=20)
    args = parser.parse_args()
    import torch

    threads = deepstyle.get_num_threads()
    torch.set_num_threads(threads)
    path = args.weights or models.find_weights(None, "vgg16")
    if path is None:
        raise SystemExit("no VGG16 weights: run `deepstyle weights fetch vgg16` or give --weights")
    weights = models.load_weights(path)
    net = models.load_feature_net(arch="vgg16", weights=weights, pooling="avg", last_layer="relu5_1")
    settings = settings_for(net)
    taps = list(dict.fromkeys(list(settings.content_layers) + list(settings.style_layers)))
    content_x = net.preprocess(demo_content(args.size))
    style_x = net.preprocess(demo_style(args.size))
    print(f"weights {path}; {args.size} px content {content_x.shape[2:]}, layers {', '.join(taps)}; "
          f"{threads} threads each; torch {torch.__version__}")

    forward = torch_features(torch, weights, "vgg16", taps)
    ours = net.forward(content_x, taps)
    theirs = forward(torch.from_numpy(content_x))
    worst = max(relative(ours[n], theirs[n].numpy()) for n in taps)
    for name in taps:
        print(f"  {name:8s} features: max |diff| / max |torch| = {relative(ours[name], theirs[name].numpy()):.2e}")
    print(f"features: worst {worst:.2e} (bound 1e-4) {'OK' if worst <= 1e-4 else 'FAIL'}")

    units = 255.0 / pixel_scale(net)
    objective = StyleObjective(net, content_x, [style_x], content_layers=settings.content_layers,
                               style_layers=settings.style_layers, content_weight=settings.content_weight,
                               style_weight=settings.style_weight, tv_weight=settings.tv_weight,
                               normalisation=settings.normalisation, pixel_scale=pixel_scale(net))
    torch_loss = torch_objective(torch, forward, settings, torch.from_numpy(content_x),
                                 torch.from_numpy(style_x), units)
    loss, grad, _ = objective(content_x.copy())
    x = torch.from_numpy(content_x.copy()).requires_grad_(True)
    reference = torch_loss(x)
    reference.backward()
    loss_error = abs(loss - reference.item()) / abs(reference.item())
    grad_error = float(np.linalg.norm(grad - x.grad.numpy()) / np.linalg.norm(x.grad.numpy()))
    print(f"loss at the content image: ours {loss:.6e}, torch {reference.item():.6e}, relative "
          f"difference {loss_error:.1e}; gradient |ours - torch| / |torch| = {grad_error:.1e} (bound 1e-4) "
          f"{'OK' if max(loss_error, grad_error) <= 1e-4 else 'FAIL'}")

    def fun(v):
        value, g, _ = objective(v)
        return value, g

    started, cpu = time.perf_counter(), cpu_seconds()
    optimizer = LBFGS(fun, content_x.copy(), history_size=args.history)
    for _ in range(args.iterations):
        optimizer.step()
        if optimizer.done:
            break
    ours_time, ours_cpu = time.perf_counter() - started, cpu_seconds() - cpu

    x = torch.from_numpy(content_x.copy()).requires_grad_(True)
    lbfgs = torch.optim.LBFGS([x], lr=1, max_iter=args.iterations, max_eval=args.iterations * 20,
                              tolerance_grad=0.0, tolerance_change=0.0, history_size=args.history,
                              line_search_fn="strong_wolfe")
    evaluations = [0]

    def closure():
        lbfgs.zero_grad()
        value = torch_loss(x)
        value.backward()
        evaluations[0] += 1
        return value

    started, cpu = time.perf_counter(), cpu_seconds()
    lbfgs.step(closure)
    torch_time, torch_cpu = time.perf_counter() - started, cpu_seconds() - cpu
    with torch.no_grad():
        torch_final = torch_loss(x).item()
    iterations = lbfgs.state[lbfgs._params[0]]["n_iter"]
    gap = (optimizer.f - torch_final) / torch_final
    print(f"L-BFGS from the content image, history {args.history}:")
    print(f"  ours : {optimizer.f:.6e} after {args.iterations} iterations, {optimizer.evaluations} evaluations, "
          f"{ours_time:.1f} s wall, {ours_cpu:.1f} s CPU")
    print(f"  torch: {torch_final:.6e} after {iterations} iterations, {evaluations[0]} evaluations, "
          f"{torch_time:.1f} s wall, {torch_cpu:.1f} s CPU")
    print(f"  ours / torch loss - 1 = {gap:+.1%} (bound +10%) {'OK' if gap <= 0.10 else 'FAIL'}")


if __name__ == "__main__":
    main()
