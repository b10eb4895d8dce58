"""Image classification: the models of section 7, the MatConvNet recipe, optimiser state,
checkpoints and bit-identical resume, and `deepstyle train` / `evaluate` on real Fashion-MNIST."""

import csv
import os

import numpy as np
import pytest

from deepstyle import cli, data, nn, optim
from deepstyle.classify import Classifier, Trainer, checkpoint, default_recipe
from deepstyle.classify.models import build_model, cifar_cnn, cifar_cnn_lr_multipliers
from deepstyle.classify.metrics import confusion_matrix, top_k_wrong

FASHION = "/usr/share/datasets/fashion-mnist"


def test_cifar_cnn_shapes_and_initialisation():
    net = cifar_cnn(3, rng=0)
    a = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    shapes = []
    for name, layer in net.named_layers():
        x = a = layer.forward(a)
        shapes.append((name, x.shape[1:]))
    assert net.backward(np.ones_like(x)) is None  # the first conv skips the images' gradient
    assert net["conv1"].grad_weight is not None
    got = dict(shapes)
    assert got["pool1"] == (32, 16, 16) and got["pool2"] == (32, 8, 8)
    assert got["pool3"] == (64, 4, 4) and got["relu4"] == (64, 1, 1) and got["flatten"] == (10,)
    for name, scale in [("conv1", 0.01), ("conv2", 0.05), ("conv3", 0.05), ("conv4", 0.05),
                        ("fc5", 0.05)]:
        w = net[name].weight
        # the sample standard deviation of n normals is within 5 sigma/sqrt(2n) of sigma
        assert abs(w.std() - scale) < 5 * scale / np.sqrt(2 * w.size), name
        assert not net[name].bias.any()
    assert net["pool2"].count_include_pad is False and net["pool1"].ceil_mode


def matconvnet_pool(x, op):
    """MatConvNet's 3x3 stride-2 pooling with padding [0 1 0 1], over in-bounds cells only."""
    n, c, h, w = x.shape
    out_h, out_w = (h + 1 - 3) // 2 + 1, (w + 1 - 3) // 2 + 1
    y = np.empty((n, c, out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            y[:, :, i, j] = op(x[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3], axis=(2, 3))
    return y


@pytest.mark.parametrize("size", [32, 16, 8, 7])
def test_pooling_is_matconvnets(size):
    x = np.random.default_rng(size).standard_normal((2, 3, size, size)).astype(np.float32)
    net = cifar_cnn(3, rng=0)
    relu = np.maximum(x, 0)  # pool1 is max-pool + ReLU, pool2 ReLU + avg-pool (fused)
    np.testing.assert_allclose(net["pool1"].forward(x), matconvnet_pool(relu, np.max), rtol=1e-6)
    np.testing.assert_allclose(net["pool2"].forward(x), matconvnet_pool(relu, np.mean), rtol=1e-5,
                               atol=1e-6)


def test_dropout_placement():
    names = [name for name, _ in cifar_cnn(1, dropout=True, rng=0).named_layers()]
    drops = {n: names.index(n) for n in names if n.startswith("drop")}
    assert [names[i - 1] for i in drops.values()] == ["pool1", "pool2", "pool3", "relu4"]
    ps = [layer.p for name, layer in cifar_cnn(1, dropout=True, rng=0).named_layers()
          if name.startswith("drop")]
    assert ps == [0.15, 0.15, 0.15, 0.35]


def test_lr_multipliers_are_matconvnets():
    assert [cifar_cnn_lr_multipliers(n) for n in ("conv1.weight", "conv3.bias", "fc5.weight",
                                                   "fc5.bias")] == [0.1, 2.0, 0.1 * 0.1, 0.2]


def test_sgd_is_matconvnets_momentum_form():
    """m = 0.9 m - (g + lambda w), w += eta mu m, in float64, over a learning-rate change."""
    rng = np.random.default_rng(0)
    net = nn.Sequential([("fc", nn.Linear(4, 3, rng=rng))])
    sgd = optim.SGD(net, 0.05, momentum=0.9, weight_decay=1e-2,
                    lr_multipliers={"fc.weight": 0.1, "fc.bias": 2.0})
    w, b = net["fc"].weight.astype(float), net["fc"].bias.astype(float)
    mw, mb = np.zeros_like(w), np.zeros_like(b)
    for step, eta in enumerate([0.05, 0.05, 0.005, 0.005]):
        gw, gb = rng.standard_normal(w.shape), rng.standard_normal(b.shape)
        net["fc"].grad_weight, net["fc"].grad_bias = gw.astype(np.float32), gb.astype(np.float32)
        sgd.step(eta)
        mw, mb = 0.9 * mw - (gw + 1e-2 * w), 0.9 * mb - gb
        w, b = w + eta * 0.1 * mw, b + eta * 2.0 * mb
    np.testing.assert_allclose(net["fc"].weight, w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net["fc"].bias, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", [lambda n: optim.SGD(n, 0.1, momentum=0.9, weight_decay=1e-3),
                                  lambda n: optim.Adam(n, 0.01, weight_decay=1e-3)])
def test_optimizer_state_round_trip_continues_identically(make):
    def run(net, opt, grads):
        for gw, gb in grads:
            net["fc"].grad_weight, net["fc"].grad_bias = gw, gb
            opt.step()

    rng = np.random.default_rng(0)
    grads = [(rng.standard_normal((3, 4)).astype(np.float32),
              rng.standard_normal(3).astype(np.float32)) for _ in range(6)]
    a = nn.Sequential([("fc", nn.Linear(4, 3, rng=1))])
    b = nn.Sequential([("fc", nn.Linear(4, 3, rng=1))])
    opt_a, opt_b = make(a), make(b)
    run(a, opt_a, grads)
    run(b, opt_b, grads[:3])
    state = {k: v.copy() for k, v in opt_b.state_dict().items()}
    opt_c = make(b)
    opt_c.load_state_dict(state)
    run(b, opt_c, grads[3:])
    np.testing.assert_array_equal(a["fc"].weight, b["fc"].weight)
    with pytest.raises(ValueError, match="optimizer state: 'velocity/fc.weight' has shape|"
                                         "optimizer state: 'm/fc.weight' has shape"):
        make(nn.Sequential([("fc", nn.Linear(5, 3))])).load_state_dict(state)


def test_recipe_defaults_and_shortening():
    r = default_recipe("cifar-cnn")
    assert r.phases == [(0.05, 30), (0.005, 10), (0.0005, 5)] and r.epochs == 45
    assert (r.batch_size, r.momentum, r.weight_decay, r.flip, r.contrast, r.zca) == \
        (100, 0.9, 1e-4, True, True, True)
    assert r.with_epochs(45).phases == r.phases
    assert r.with_epochs(9).phases == [(0.05, 6), (0.005, 2), (0.0005, 1)]
    assert r.with_epochs(1).phases == [(0.05, 1)]
    schedule = r.schedule()
    assert [schedule(e) for e in (0, 29, 30, 39, 40, 44)] == [0.05, 0.05, 0.005, 0.005,
                                                              0.0005, 0.0005]


def test_top_k_and_confusion():
    logits = np.array([[3.0, 2, 1, 0], [0, 1, 2, 3], [1, 1, 1, 1]])
    labels = np.array([0, 0, 3])
    assert top_k_wrong(logits, labels, 1) == 1 and top_k_wrong(logits, labels, 3) == 1
    assert top_k_wrong(logits, labels, 4) == 0
    counts = confusion_matrix(np.array([0, 3, 3]), labels, 4)
    assert counts[0, 0] == 1 and counts[3, 0] == 1 and counts[3, 3] == 1 and counts.sum() == 3


def synthetic(n=240, seed=0, size=28):
    """Ten classes of noisy images, each class a bright square in its own place."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = rng.integers(0, 60, (n, 1, size, size))
    for i, k in enumerate(labels):
        r, c = 2 + 8 * (k // 4), 2 + 6 * (k % 4)
        images[i, 0, r:r + 6, c:c + 5] += 150
    images = images.astype(np.uint8)
    return data.Dataset("fashion-mnist", data.datasets.FASHION_CLASSES, images, labels,
                        images[:50], labels[:50], "memory")


def write_synthetic_idx(directory, n):
    """:func:`synthetic` as the four Fashion-MNIST IDX files in ``directory`` (for the commands)."""
    from deepstyle.data.idx import write_idx

    d = synthetic(n=n)
    for part, x, y in (("train", d.train_images, d.train_labels),
                       ("t10k", d.test_images, d.test_labels)):
        write_idx(str(directory / f"{part}-images-idx3-ubyte"), x[:, 0])
        write_idx(str(directory / f"{part}-labels-idx1-ubyte"), y.astype(np.uint8))


def tiny_recipe(model="cifar-cnn", epochs=3):
    r = default_recipe(model).with_epochs(epochs)
    r.batch_size, r.validation, r.dropout, r.zca = 40, 40, True, False
    return r


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    """Interrupted in epoch 2 (after epoch 1's checkpoint), resumed: the same final weights,
    optimiser state and history as a run that was never stopped (dropout and flips on)."""
    d = synthetic()
    full = Trainer("cifar-cnn", d, tiny_recipe(), seed=3, out=str(tmp_path / "a"), progress=False)
    os.makedirs(tmp_path / "a")
    os.makedirs(tmp_path / "b")
    done = full.fit()
    assert not done.interrupted and done.epochs_done == 3

    steps = []

    def stop_in_epoch_two(net):
        steps.append(1)
        if len(steps) == 7:  # 5 steps per epoch: the second step of epoch 2
            raise KeyboardInterrupt

    cut = Trainer("cifar-cnn", d, tiny_recipe(), seed=3, out=str(tmp_path / "b"),
                  progress=False, after_backward=stop_in_epoch_two)
    assert cut.fit().interrupted
    again = Trainer("cifar-cnn", d, tiny_recipe(), seed=3, out=str(tmp_path / "b"),
                    progress=False)
    again.restore(str(tmp_path / "b" / "checkpoint.npz"))
    assert again.run.epochs_done == 1
    resumed = again.fit()
    for (name, x, _), (_, y, _) in zip(full.net.parameters(), again.net.parameters()):
        np.testing.assert_array_equal(x, y, err_msg=name)
    for key, value in full.optimizer.state_dict().items():
        np.testing.assert_array_equal(value, again.optimizer.state_dict()[key])
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in done.history]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"} for row in resumed.history]
    np.testing.assert_array_equal(done.test_logits, resumed.test_logits)


def test_resume_refuses_another_runs_checkpoint(tmp_path):
    d = synthetic(n=120)
    Trainer("linear", d, tiny_recipe("linear", 1), out=str(tmp_path), progress=False).fit()
    other = Trainer("linear", d, tiny_recipe("linear", 1), seed=9, out=str(tmp_path),
                    progress=False)
    with pytest.raises(checkpoint.CheckpointError, match="was made with seed=0, this run has 9"):
        other.restore(str(tmp_path / "checkpoint.npz"))


def test_classifier_takes_arrays_and_pil_images(tmp_path):
    from PIL import Image

    d = synthetic()
    Trainer("mlp", d, tiny_recipe("mlp", 4), out=str(tmp_path), progress=False).fit()
    clf = Classifier.load(tmp_path / "checkpoint.npz")
    image = d.train_images[3, 0]
    by_array = clf.classify(image)
    by_pil = clf.classify(Image.fromarray(image))
    batch = clf.classify(d.train_images[:20])
    assert by_array == by_pil and by_array[0] == batch[3]
    assert sum(name == d.classes[k] for (name, _), k in zip(batch, d.train_labels[:20])) >= 15
    with pytest.raises(ValueError, match=r"images: expected 1x28x28 images"):
        clf.classify(np.zeros((5, 5)))


needs_fashion = pytest.mark.skipif(not os.path.isdir(FASHION),
                                   reason="apt-get install dataset-fashion-mnist")


@needs_fashion
def test_train_command_on_real_fashion_mnist(tmp_path, capsys):
    """One epoch of the MLP on 5000 real images: far above chance (10%) on the full test set,
    and every report file written; then `evaluate` reads the checkpoint back."""
    out = tmp_path / "run"
    assert cli.main(["train", "mlp", "--data", FASHION, "--epochs", "1", "--limit", "5000",
                     "--validation", "1000", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    accuracy = float(text.split("test accuracy: ")[1].split("%")[0])
    assert accuracy > 70.0, text
    rows = list(csv.DictReader(open(out / "history.csv")))
    assert len(rows) == 1 and float(rows[0]["val_top1_error"]) < 0.35
    for name in ("checkpoint.npz", "confusion.csv", "confusion.png", "misclassified.png",
                 "training.png"):
        assert (out / name).stat().st_size > 100, name
    confusion = list(csv.reader(open(out / "confusion.csv")))
    assert confusion[-1][-1] == f"{accuracy:.1f}%"
    assert cli.main(["evaluate", str(out / "checkpoint.npz"), "--data", FASHION,
                     "--out", str(tmp_path / "eval")]) == 0
    assert f"test accuracy {accuracy:.2f}%" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "--epochs: expected a positive integer, got 0"),
    (["--limit", "10"], "--limit: expected at least the batch size (100), got 10"),
    (["--lr", "-1"], "--lr: expected a positive learning rate"),
    (["--seed", "-1"], "--seed: expected a non-negative integer, got -1"),
    (["--validation", "-1"], "--validation: expected a non-negative integer, got -1"),
    (["--batch-size", "0"], "--batch-size: expected a positive integer, got 0"),
    (["--resume"], "--resume: no checkpoint"),
    (["--data", "/nonexistent"], "--data: /nonexistent is not a folder"),
])
def test_train_command_errors(tmp_path, capsys, args, message):
    assert cli.main(["train", "linear", "--out", str(tmp_path)] + args) == 2
    assert message in capsys.readouterr().err


def test_evaluate_command_errors(tmp_path, capsys):
    bad = tmp_path / "checkpoint.npz"
    bad.write_bytes(b"not a zip")
    assert cli.main(["evaluate", str(bad)]) == 2
    assert f"{bad}: not a readable checkpoint" in capsys.readouterr().err
    np.savez(bad, x=np.zeros(2))
    assert cli.main(["evaluate", str(bad)]) == 2
    assert "not a deepstyle train checkpoint" in capsys.readouterr().err


def test_ctrl_c_keeps_finished_epochs_and_resume_finishes(tmp_path, capsys, monkeypatch):
    from deepstyle.classify import trainer

    write_synthetic_idx(tmp_path, n=300)
    args = ["train", "linear", "--data", str(tmp_path), "--epochs", "3", "--batch-size", "50",
            "--validation", "50", "--out", str(tmp_path / "run"), "--quiet"]
    batches = []
    real = trainer.RunningMetrics.__call__

    def interrupt_in_epoch_two(self, *a):
        batches.append(1)
        if len(batches) == 7:  # 5 batches per epoch
            raise KeyboardInterrupt
        return real(self, *a)

    monkeypatch.setattr(trainer.RunningMetrics, "__call__", interrupt_in_epoch_two)
    assert cli.main(args) == 130
    assert "interrupted: 1 epochs are in" in capsys.readouterr().err
    monkeypatch.setattr(trainer.RunningMetrics, "__call__", real)
    assert cli.main(args + ["--resume"]) == 0
    out = capsys.readouterr().out
    assert "resuming after epoch 1 of 3" in out and "test accuracy" in out
    assert len(list(csv.DictReader(open(tmp_path / "run" / "history.csv")))) == 3


def test_cifar10_files_train_the_cnn_end_to_end(tmp_path, capsys, monkeypatch):
    """The binary CIFAR-10 layout through `deepstyle train cifar-cnn --dataset cifar10`: colour
    32x32 inputs and the reports (without ZCA: a 3072x3072 eigendecomposition takes a minute;
    test_zca_whitens_with_floored_eigenvalues covers it)."""
    from deepstyle.data import cifar

    monkeypatch.setattr(cifar, "IMAGES_PER_BATCH", 100)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        cifar.write_binary_batch(str(tmp_path / (name + ".bin")),
                                 rng.integers(0, 256, (100, 3, 32, 32)), rng.integers(0, 10, 100))
    out = tmp_path / "run"
    assert cli.main(["train", "cifar-cnn", "--dataset", "cifar10", "--data", str(tmp_path),
                     "--epochs", "1", "--validation", "100", "--no-zca", "--out", str(out),
                     "--quiet"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    clf = Classifier.load(out / "checkpoint.npz")
    assert clf.image_shape == (3, 32, 32) and clf.classes[9] == "truck"
    assert len(clf.classify(rng.integers(0, 256, (32, 32, 3)).astype(np.uint8))) == 1
