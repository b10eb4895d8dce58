"""The ``deepstyle paint`` command: a run end to end, interruption and resume, and one clear
line on stderr for every kind of bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from deepstyle import cli, paint
from test_style_tinynet import TinyNet

TINY = ["--content-layers", "act2", "--style-layers", "act1,act2:2"]


class CountingNet(TinyNet):
    """TinyNet that runs ``action`` at its ``at``-th forward pass."""

    def __init__(self, at=None, action=None):
        super().__init__(np.float32)
        self.calls, self.at, self.action = 0, at, action

    def forward(self, x, taps):
        self.calls += 1
        if self.calls == self.at:
            self.action()
        return super().forward(x, taps)


@pytest.fixture
def tiny(monkeypatch):
    """Run the command on the tiny network instead of VGG; returns a setter for a custom net."""
    nets = [CountingNet()]
    monkeypatch.setattr(paint, "_load_net", lambda args: nets[0])
    return nets


@pytest.fixture
def pictures(tmp_path):
    rng = np.random.default_rng(0)
    content = tmp_path / "content.png"
    style = tmp_path / "style.jpg"
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(content)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(style)
    return str(content), str(style)


def paint_main(capsys, *argv):
    try:
        code = cli.main(["paint", *map(str, argv)])
    except SystemExit as exc:  # argparse's own exits
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.err


def assert_one_line_error(code, err, *fragments):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("deepstyle paint: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_a_run_writes_the_image_and_reports_progress(tiny, pictures, tmp_path, capsys):
    content, style = pictures
    out = tmp_path / "out.png"
    code, err = paint_main(capsys, content, style, "-o", out, "--size", 32, "--iterations", 5, *TINY)
    assert code == 0, err
    assert Image.open(out).size == (32, 24)
    assert "memory needed: about" in err and "5/5 loss" in err and "s/it" in err
    assert not os.path.exists(tmp_path / "out.ckpt.npz"), "a finished run leaves no checkpoint"


def test_demo_and_save_every_and_scales(tiny, tmp_path, capsys):
    out = tmp_path / "demo.jpg"
    code, err = paint_main(capsys, "--demo", "-o", out, "--scales", "16,32", "--iterations", 4,
                           "--save-every", 2, *TINY)
    assert code == 0, err
    assert Image.open(out).size == (32, 24)
    names = set(os.listdir(tmp_path))
    assert {"demo-content.png", "demo-style.png", "demo.1.0002.jpg", "demo.2.0004.jpg"} <= names
    assert "stage 2/2" in err


def test_several_styles_blend_and_preserve_colors(tiny, pictures, tmp_path, capsys):
    content, style = pictures
    code, err = paint_main(capsys, content, style, style, "-o", tmp_path / "o.png", "--size", 24,
                           "--iterations", 2, "--style-blend", "1,3", "--preserve-colors", "--init", "noise",
                           *TINY)
    assert code == 0, err
    code, err = paint_main(capsys, content, style, style, "-o", tmp_path / "o.png", "--style-blend", "1", *TINY)
    assert_one_line_error(code, err, "--style-blend", "one weight per style image")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_leaves_the_best_image_and_a_checkpoint_to_resume(tiny, pictures, tmp_path, capsys, signum):
    content, style = pictures
    out = tmp_path / "out.png"
    tiny[0] = CountingNet(at=12, action=lambda: os.kill(os.getpid(), signum))
    args = [content, style, "-o", out, "--size", 32, "--iterations", 30, *TINY]
    code, err = paint_main(capsys, *args)
    assert code == (130 if signum == signal.SIGINT else 143), err
    assert "interrupted" in err and "--resume" in err
    assert Image.open(out).size == (32, 24)
    checkpoint = tmp_path / "out.ckpt.npz"
    with np.load(checkpoint) as saved:
        done = int(saved["iteration"])
    assert 0 < done < 30
    tiny[0] = CountingNet()
    code, err = paint_main(capsys, *args, "--resume")
    assert code == 0, err
    assert f"iteration {done}" in err and "30/30" in err
    assert not checkpoint.exists()


def test_resume_refuses_a_checkpoint_of_another_run(tiny, pictures, tmp_path, capsys):
    content, style = pictures
    out = tmp_path / "out.png"
    code, err = paint_main(capsys, content, style, "-o", out, "--resume", *TINY)
    assert_one_line_error(code, err, "--resume: no checkpoint")
    tiny[0] = CountingNet(at=5, action=lambda: os.kill(os.getpid(), signal.SIGINT))
    assert paint_main(capsys, content, style, "-o", out, "--size", 32, "--iterations", 9, *TINY)[0] == 130
    code, err = paint_main(capsys, content, style, "-o", out, "--size", 24, "--iterations", 9, "--resume", *TINY)
    assert_one_line_error(code, err, "belongs to a different run", "sizes")


def test_bad_images(tiny, pictures, tmp_path, capsys):
    content, style = pictures
    out = tmp_path / "out.png"
    code, err = paint_main(capsys, tmp_path / "missing.jpg", style, "-o", out, *TINY)
    assert_one_line_error(code, err, "content image", "missing.jpg", "no such file")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG not really")
    code, err = paint_main(capsys, content, junk, "-o", out, *TINY)
    assert_one_line_error(code, err, "style image", "junk.png")
    code, err = paint_main(capsys, content, style, "-o", out, "--init", tmp_path / "nope.png", *TINY)
    assert_one_line_error(code, err, "--init image", "no such file")


def test_bad_outputs(tiny, pictures, tmp_path, capsys):
    content, style = pictures
    code, err = paint_main(capsys, content, style, "-o", tmp_path / "no" / "out.png", *TINY)
    assert_one_line_error(code, err, "--output", "does not exist")
    code, err = paint_main(capsys, content, style, "-o", tmp_path / "out.gif", *TINY)
    assert_one_line_error(code, err, "--output", ".png, .jpg or .jpeg")
    (tmp_path / "folder.png").mkdir()
    code, err = paint_main(capsys, content, style, "-o", tmp_path / "folder.png", *TINY)
    assert_one_line_error(code, err, "is a folder")


@pytest.mark.parametrize("option,value,fragment", [
    ("--size", "0", "--size: expected a positive integer"),
    ("--size", "big", "--size: expected a positive integer"),
    ("--iterations", "-3", "--iterations: expected a non-negative integer"),
    ("--scales", "256,,512", "--scales: expected a comma-separated list"),
    ("--style-weight", "nan", "--style-weight: expected a non-negative number"),
    ("--style-scale", "0", "--style-scale: expected a positive number"),
    ("--optimizer", "sgd", "invalid choice"),
    ("--style-layers", "relu1_1:-1", "--style-layers"),
])
def test_bad_option_values(tiny, pictures, tmp_path, capsys, option, value, fragment):
    content, style = pictures
    code, err = paint_main(capsys, content, style, "-o", tmp_path / "o.png", option, value)
    assert_one_line_error(code, err, fragment)


def test_other_bad_requests(tiny, pictures, tmp_path, capsys):
    content, style = pictures
    out = tmp_path / "o.png"
    tiny[0].min_size = 16
    code, err = paint_main(capsys, content, style, "-o", out, "--size", 12, *TINY)
    assert_one_line_error(code, err, "smaller than the network's minimum of 16 px")
    code, err = paint_main(capsys, content, style, "-o", out, "--device", "cuda", *TINY)
    assert_one_line_error(code, err, "--device cuda")
    code, err = paint_main(capsys, content, "-o", out, *TINY)
    assert_one_line_error(code, err, "expected a CONTENT image and at least one STYLE image")
    code, err = paint_main(capsys, "--demo", content, "-o", out, *TINY)
    assert_one_line_error(code, err, "--demo")
    code, err = paint_main(capsys, content, style, "-o", out, "--size", 64, "--scales", "32,64", *TINY)
    assert_one_line_error(code, err, "either --size or --scales")
    code, err = paint_main(capsys, content, style, "-o", out, "--content-layers", "nope")
    assert_one_line_error(code, err, "nope")


def test_unknown_vgg_layer_is_refused_before_loading_anything(pictures, tmp_path, capsys):
    content, style = pictures
    code, err = paint_main(capsys, content, style, "-o", tmp_path / "o.png", "--style-layers", "relu9_1")
    assert_one_line_error(code, err, "relu9_1 not in vgg16")


def test_the_real_command_on_a_random_vgg(pictures, tmp_path):
    """End to end in a subprocess, as a user runs it: random VGG16 weights, a tiny image."""
    content, style = pictures
    out = tmp_path / "real.png"
    env = dict(os.environ, DEEPSTYLE_WEIGHTS="", PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run(
        [sys.executable, "-m", "deepstyle", "paint", content, style, "-o", str(out), "--size", "32",
         "--iterations", "2", "--weights", "random", "--arch", "vgg16", "--style-layers", "relu1_2,relu2_2",
         "--content-layers", "relu2_2"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "VGG16 with random weights" in result.stderr
    assert Image.open(out).size == (32, 24)


def test_help_explains_the_command(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["paint", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for fragment in ("--preserve-colors", "--scales", "examples:", "DEEPSTYLE_WEIGHTS", "--resume"):
        assert fragment in text


def test_demo_pictures_are_deterministic_and_full_of_colour():
    from deepstyle.style.demo import demo_content, demo_style

    content, style = demo_content(64), demo_style(64)
    assert content.shape == (48, 64, 3) and style.shape == (64, 64, 3)
    np.testing.assert_array_equal(style, demo_style(64))
    assert np.abs(demo_style(64, seed=1) - style).max() > 0.5
    for picture in (content, style):
        assert picture.dtype == np.float32 and 0 <= picture.min() and picture.max() <= 1
        assert picture.std(axis=(0, 1)).min() > 0.05, "not a flat picture"


def test_named_vgg_layers_without_weights_run_on_a_random_vgg(pictures, tmp_path, capsys, monkeypatch):
    """The no-weights fallback (multi-scale filters) has no VGG layer names, so layers the user
    names must not be refused: they run on a random-weight VGG, and the user is told."""
    monkeypatch.delenv("DEEPSTYLE_WEIGHTS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    content, style = pictures
    out = tmp_path / "o.png"
    code, err = paint_main(capsys, content, style, "-o", out, "--size", "32", "--iterations", "1",
                           "--style-layers", "relu1_1,relu2_1", "--content-layers", "relu2_1")
    assert code == 0, err
    assert "VGG16 with random weights" in err
    assert out.exists()
