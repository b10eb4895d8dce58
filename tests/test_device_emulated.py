"""deepstyle's GPU paths -- style transfer (L-BFGS included) and training steps -- run end to
end on a GPU stand-in (tests/fake_cupy.py): device arrays that are not NumPy arrays and refuse to
become one, served by the CUDA kernels' own source emulated on the CPU. Any host path on the way
(np.asarray, a NumPy-only helper, the C++ kernels) fails loudly, host copies are counted, and
the results must match the same run on the CPU.

Tolerances: the two runs differ only in the order of float32 sums (the CUDA kernels tile their
reductions differently from the C++ ones), about eps * sqrt(terms) relative per operation. The
losses are sums of squared differences between nearly equal Gram matrices (or features), which
amplifies that by |G| / |G - A| (10-100 here): 1e-3 relative. The images move by the L-BFGS
steps, each a sum of gradients accurate to ~1e-5 relative, and a few iterations keep that order
(the line search makes the same choices): 1e-3 absolute, a quarter of a grey level of 255
(measured here: 3.4e-5 and 4e-6).
"""

import numpy as np
import pytest

from deepstyle import nn
from deepstyle.models.feature_net import FeatureNet, ReLU
from deepstyle.models.weights import TORCHVISION
from deepstyle.style import Painter, Settings


def tiny_vgg(seed=0):
    """A VGG-like feature network small enough for the emulated kernels (each CUDA thread is an
    OS thread there): conv-relu, average pool, conv-relu, max pool, conv-relu."""
    rng = np.random.default_rng(seed)
    layers = [("conv1_1", nn.Conv2d(3, 6, 3, padding=1, rng=rng)), ("relu1_1", ReLU()),
              ("pool1", nn.AvgPool2d(2)),
              ("conv2_1", nn.Conv2d(6, 8, 3, padding=1, rng=rng)), ("relu2_1", ReLU()),
              ("pool2", nn.MaxPool2d(2)),
              ("conv3_1", nn.Conv2d(8, 8, 3, padding=1, rng=rng)), ("relu3_1", ReLU())]
    return FeatureNet(layers, TORCHVISION, "tiny VGG-like test network",
                      {"conv1_1": 1, "relu1_1": 1, "pool1": 2, "conv2_1": 2, "relu2_1": 2,
                       "pool2": 4, "conv3_1": 4, "relu3_1": 4})


def paint(device, content, style, **overrides):
    settings = Settings(content_layers=("relu2_1",),
                        style_layers={"relu1_1": 1.0, "relu2_1": 1.0, "relu3_1": 0.5},
                        sizes=(12, 20), iterations=(4, 3), device=device, **overrides)
    losses = []
    painter = Painter(tiny_vgg(), content, [style], settings)
    image = painter.run(lambda p: losses.append(p.loss))
    return image, losses, painter


def test_painting_on_the_gpu_stand_in_matches_the_cpu(fake_gpu):
    rng = np.random.default_rng(1)
    content = rng.uniform(0, 1, (15, 20, 3)).astype(np.float32)
    style = rng.uniform(0, 1, (16, 16, 3)).astype(np.float32)
    image_cpu, losses_cpu, _ = paint("cpu", content, style)
    fake_gpu.transfers.update(to_device=0, to_host=0)
    image_gpu, losses_gpu, painter = paint("cuda", content, style)

    assert isinstance(painter.best_x, fake_gpu.ndarray)  # the loop's image stayed on the device
    assert all(isinstance(p, fake_gpu.ndarray) for _, p, _ in
               (param for layer in painter.net.layers() for param in layer.parameters()))
    # to the host: the previous stage's image at the second stage's start, the result
    assert fake_gpu.transfers["to_host"] == 2
    assert len(losses_gpu) == len(losses_cpu) == 7
    np.testing.assert_allclose(losses_gpu, losses_cpu, rtol=1e-3)
    assert image_gpu.shape == image_cpu.shape == (15, 20, 3)
    np.testing.assert_allclose(image_gpu, image_cpu, atol=1e-3)
    assert np.abs(image_gpu - content).max() > 1e-2  # it painted something
