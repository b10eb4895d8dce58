"""deepstyle's GPU paths -- style transfer (L-BFGS included) and training steps -- run end to
end on a GPU stand-in (tests/fake_cupy.py): device arrays that are not NumPy arrays and refuse to
become one, served by the CUDA kernels' own source emulated on the CPU. Any host path on the way
(np.asarray, a NumPy-only helper, the C++ kernels) fails loudly, host copies are counted, and
the results must match the CPU's.

Tolerances: the two backends differ only in the order of float32 sums (the CUDA kernels tile
their reductions differently from the C++ ones), about eps * sqrt(terms) relative per operation.
The losses are sums of squared differences between nearly equal Gram matrices (or features),
which amplifies that by |G| / |G - A| (10-100 here): 1e-3 relative; gradients 1e-4 of their
largest entry. Whole runs are compared only where the optimiser's path is a smooth function of
those numbers (Adam, SGD): L-BFGS's line search branches on them (a cubic step whose radicand
is a difference of two nearly equal numbers chose the interval's midpoint on one backend and its
end on the other, with evaluations equal to 1e-8), so an L-BFGS run on the device is checked
evaluation by evaluation against the CPU objective at the very same points instead.
"""

import numpy as np
import pytest

from deepstyle import nn, optim
from deepstyle.backend import to_host
from deepstyle.models.feature_net import FeatureNet, ReLU
from deepstyle.models.weights import TORCHVISION
from deepstyle.style import Painter, Settings, transfer
from deepstyle.style.losses import StyleObjective


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


LAYERS = dict(content_layers=("relu2_1",),
              style_layers={"relu1_1": 1.0, "relu2_1": 1.0, "relu3_1": 0.5})


def pictures(seed=1):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 1, (15, 20, 3)).astype(np.float32),
            rng.uniform(0, 1, (16, 16, 3)).astype(np.float32))


def paint(device, content, style, **overrides):
    settings = Settings(**LAYERS, sizes=(12, 20), iterations=(4, 3), device=device, **overrides)
    losses = []
    painter = Painter(tiny_vgg(), content, [style], settings)
    image = painter.run(lambda p: losses.append(p.loss))
    return image, losses, painter


def test_painting_with_adam_on_the_gpu_stand_in_matches_the_cpu(fake_gpu):
    content, style = pictures()
    image_cpu, losses_cpu, _ = paint("cpu", content, style, optimizer="adam",
                                     learning_rate=0.02)
    fake_gpu.transfers.update(to_device=0, to_host=0)
    image_gpu, losses_gpu, painter = paint("cuda", content, style, optimizer="adam",
                                           learning_rate=0.02)

    assert isinstance(painter.best_x, fake_gpu.ndarray)  # the loop's image stayed on the device
    assert all(isinstance(p, fake_gpu.ndarray) for _, p, _ in
               (param for layer in painter.net.layers() for param in layer.parameters()))
    # to the host: the previous stage's image at the second stage's start, the result
    assert fake_gpu.transfers["to_host"] == 2
    assert len(losses_gpu) == len(losses_cpu) == 7
    np.testing.assert_allclose(losses_gpu, losses_cpu, rtol=1e-3)
    assert image_gpu.shape == image_cpu.shape == (15, 20, 3)
    # Adam's steps are lr * m / sqrt(v): 1e-3 relative on steps of 0.02 over 7 iterations
    np.testing.assert_allclose(image_gpu, image_cpu, atol=1e-3)
    assert np.abs(image_gpu - content).max() > 1e-2  # it painted something


class RecordingObjective(StyleObjective):
    """StyleObjective that keeps its inputs and every evaluation (host copies, for the test)."""

    made = []

    def __init__(self, net, content_x, style_xs, **options):
        super().__init__(net, content_x, style_xs, **options)
        self.inputs = (to_host(content_x), [to_host(x) for x in style_xs], options)
        self.evaluations_seen = []
        RecordingObjective.made.append(self)

    def __call__(self, x):
        loss, grad, parts = super().__call__(x)
        self.evaluations_seen.append((to_host(x), loss, to_host(grad)))
        return loss, grad, parts


def test_lbfgs_painting_on_the_gpu_stand_in_evaluates_as_the_cpu(fake_gpu, monkeypatch):
    """Two stages of L-BFGS on the device: every evaluation it made (loss and gradient) equals
    the CPU objective's at the same point, and the loss went down."""
    monkeypatch.setattr(transfer, "StyleObjective", RecordingObjective)
    monkeypatch.setattr(RecordingObjective, "made", [])
    content, style = pictures()
    _, losses, painter = paint("cuda", content, style)
    assert isinstance(painter.best_x, fake_gpu.ndarray)
    assert len(losses) == 7 and losses[3] < losses[0] and losses[6] < losses[4]
    assert len(RecordingObjective.made) == 2  # one objective per stage
    cpu_net = tiny_vgg()
    for objective in RecordingObjective.made:
        content_x, style_xs, options = objective.inputs
        on_cpu = StyleObjective(cpu_net, content_x, style_xs, **options)
        assert len(objective.evaluations_seen) >= 4
        for x, loss, grad in objective.evaluations_seen:
            loss_cpu, grad_cpu, _ = on_cpu(x)
            np.testing.assert_allclose(loss, loss_cpu, rtol=1e-3)
            np.testing.assert_allclose(grad, grad_cpu, atol=1e-4 * np.abs(grad_cpu).max())


def small_classifier(seed=0):
    rng = np.random.default_rng(seed)
    return nn.Sequential([("conv1", nn.Conv2d(1, 4, 3, padding=1, rng=rng)), ("relu1", nn.ReLU()),
                          ("pool1", nn.MaxPool2d(2)), ("flatten", nn.Flatten()),
                          ("fc2", nn.Linear(4 * 5 * 5, 10, rng=rng))])


def test_training_steps_on_the_gpu_stand_in_match_the_cpu(fake_gpu):
    """SGD with momentum, weight decay and per-parameter rates, and Adam, through conv, ReLU,
    max pooling (ceil mode) and a linear layer: the same weights after a few steps."""
    rng = np.random.default_rng(2)
    images = rng.standard_normal((30, 1, 9, 9)).astype(np.float32)
    labels = rng.integers(0, 10, 30)
    results = {}
    for device in ("cpu", "cuda"):
        for make in (lambda net: optim.SGD(net, 0.05, momentum=0.9, weight_decay=0.01,
                                           lr_multipliers={"fc2.bias": 2.0}),
                     lambda net: optim.Adam(net, 0.01, weight_decay=0.01)):
            net = small_classifier().to(device)
            net["pool1"].ceil_mode = True  # 9 -> 5: windows that hang over the edge
            xp = fake_gpu if device == "cuda" else np
            steps = optim.GradientSteps(net, nn.SoftmaxCrossEntropy(), make(net),
                                        xp.asarray(images), xp.asarray(labels))
            steps(np.random.default_rng(3).permutation(30).reshape(6, 5), 0.05, 0)
            if device == "cuda":
                assert all(isinstance(value, fake_gpu.ndarray) for _, value, _ in net.parameters())
            results.setdefault(device, []).append(
                {name: to_host(value) for name, value, _ in net.parameters()})
    for on_cpu, on_gpu in zip(results["cpu"], results["cuda"]):
        for name in on_cpu:
            # six steps of sums of at most 100 float32 products: ~1e-6 relative each
            np.testing.assert_allclose(on_gpu[name], on_cpu[name], rtol=1e-4, atol=1e-5,
                                       err_msg=name)



def test_a_training_run_on_the_gpu_stand_in_matches_the_cpu(fake_gpu, tmp_path):
    """deepstyle train's Trainer with device="cuda": epochs of mini-batches with dropout (masks
    drawn on the host, as on the CPU), validation, checkpoints and the test logits."""
    from deepstyle.classify import Trainer, checkpoint
    from test_train import synthetic, tiny_recipe

    recipe = tiny_recipe("mlp", 2)
    recipe.hidden = 24
    runs = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        out.mkdir()
        runs[device] = Trainer("mlp", synthetic(n=120), recipe, seed=5, out=str(out),
                               progress=False, device=device).fit()
    cpu, gpu = runs["cpu"], runs["cuda"]
    assert all(isinstance(value, fake_gpu.ndarray) for _, value, _ in gpu.net.parameters())
    assert gpu.epochs_done == cpu.epochs_done == 2
    for row_gpu, row_cpu in zip(gpu.history, cpu.history):
        for key in ("train_cost", "val_cost"):
            np.testing.assert_allclose(row_gpu[key], row_cpu[key], rtol=1e-4, err_msg=key)
    np.testing.assert_allclose(gpu.test_logits, cpu.test_logits, rtol=1e-4, atol=1e-4)
    _, params_gpu, optim_gpu, _ = checkpoint.load(tmp_path / "cuda" / "checkpoint.npz")
    _, params_cpu, optim_cpu, _ = checkpoint.load(tmp_path / "cpu" / "checkpoint.npz")
    for name in params_cpu:
        np.testing.assert_allclose(params_gpu[name], params_cpu[name], rtol=1e-4, atol=1e-5)
    for name in optim_cpu:
        np.testing.assert_allclose(optim_gpu[name], optim_cpu[name], rtol=1e-4, atol=1e-5)
    # a checkpoint (written from host copies) resumes onto the device
    again = Trainer("mlp", synthetic(n=120), recipe, seed=5, progress=False, device="cuda")
    again.restore(tmp_path / "cuda" / "checkpoint.npz")
    state = again.optimizer.state_dict()
    assert state and all(isinstance(v, fake_gpu.ndarray) for k, v in state.items() if k != "steps")
    assert all(isinstance(value, fake_gpu.ndarray) for _, value, _ in again.net.parameters())
    np.testing.assert_array_equal(to_host(again.net["fc1"].weight), params_gpu["fc1.weight"])


def test_the_paint_command_with_device_cuda(fake_gpu, tmp_path, monkeypatch, capsys):
    """`deepstyle paint --device cuda` end to end on the stand-in: snapshots and the checkpoint
    (written from the device mid-run), then the result, equal to the CPU command's."""
    from deepstyle import cli, paint as paint_command
    from deepstyle.image import load_image, save_image

    monkeypatch.setattr(paint_command, "_load_net", lambda args: tiny_vgg())
    rng = np.random.default_rng(4)
    save_image(str(tmp_path / "content.png"), rng.uniform(0, 1, (20, 24, 3)).astype(np.float32))
    save_image(str(tmp_path / "style.png"), rng.uniform(0, 1, (20, 20, 3)).astype(np.float32))
    images = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.png"
        assert cli.main(["paint", str(tmp_path / "content.png"), str(tmp_path / "style.png"),
                         "-o", str(out), "--size", "20", "--iterations", "4", "--save-every", "2",
                         "--content-layers", "relu2_1", "--style-layers", "relu1_1,relu2_1",
                         "--optimizer", "adam", "--device", device]) == 0, capsys.readouterr().err
        assert (tmp_path / f"{device}.1.0002.png").exists()
        images[device] = load_image(str(out))
    # 8-bit files of images that agree to 1e-3 (Adam: see the module's docstring): one level
    assert np.abs(images["cuda"] - images["cpu"]).max() <= 1.5 / 255


def test_paint_device_cuda_checks_the_gpus_free_memory(fake_gpu, tmp_path, monkeypatch, capsys):
    from deepstyle import cli, paint as paint_command
    from deepstyle.image import save_image

    monkeypatch.setattr(paint_command, "_load_net", lambda args: tiny_vgg())
    monkeypatch.setattr(fake_gpu, "device_memory", [100 << 10, 16 << 30])  # 100 KiB free
    picture = np.random.default_rng(5).uniform(0, 1, (40, 40, 3)).astype(np.float32)
    save_image(str(tmp_path / "content.png"), picture)
    assert cli.main(["paint", str(tmp_path / "content.png"), str(tmp_path / "content.png"),
                     "-o", str(tmp_path / "out.png"), "--size", "40", "--content-layers",
                     "relu2_1", "--style-layers", "relu1_1", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "of GPU memory available" in err[0] and "--size" in err[0], err


def test_the_train_command_with_device_cuda(fake_gpu, tmp_path, capsys):
    from deepstyle import cli
    from test_train import write_synthetic_idx

    write_synthetic_idx(tmp_path, n=150)
    outputs = {}
    for device in ("cpu", "cuda"):
        assert cli.main(["train", "linear", "--data", str(tmp_path), "--epochs", "2",
                         "--batch-size", "50", "--validation", "50", "--quiet",
                         "--out", str(tmp_path / device), "--device", device]) == 0
        outputs[device] = capsys.readouterr().out
    accuracy = [line for line in outputs["cpu"].splitlines() if line.startswith("test accuracy")]
    assert accuracy and accuracy[0] in outputs["cuda"]
