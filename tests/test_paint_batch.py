"""``deepstyle paint-batch``: one process (in this interpreter, on the tiny test network) and
2-3 MPI ranks (under mpirun, on a small random VGG): every image painted once, same names,
a bad image listed without stopping the rest, a rerun that skips what is done."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from deepstyle import cli, paint, paint_batch
from mpirun import mpirun, needs_mpi
from test_paint import TINY, CountingNet

# A VGG16 with random weights up to relu2_1 at 32 px: small enough for 3 ranks on 2 cores.
SMALL_VGG = ["--size", "32", "--iterations", "2", "--weights", "random", "--arch", "vgg16",
             "--content-layers", "relu1_2", "--style-layers", "relu1_1,relu2_1"]


@pytest.fixture
def folder(tmp_path):
    """content/ with four good images (one a BMP) and one that is not an image; a style."""
    rng = np.random.default_rng(1)
    content = tmp_path / "content"
    content.mkdir()
    for name, shape in [("a.png", (20, 28)), ("b.jpg", (24, 24)), ("c.bmp", (28, 20)), ("d.png", (16, 32))]:
        Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(content / name)
    (content / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (content / "notes.txt").write_text("not an image suffix: ignored")
    style = tmp_path / "style.png"
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(style)
    return content, style, tmp_path / "out"


GOOD_OUTPUTS = {"a.png", "b.jpg", "c.png", "d.png"}


def batch_main(capsys, *argv):
    try:
        code = cli.main(["paint-batch", *map(str, argv)])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(paint, "_load_net", lambda args: CountingNet())


def test_one_process_paints_every_image_and_lists_the_failure(tiny, folder, capsys):
    content, style, out = folder
    code, err = batch_main(capsys, content, style, "-o", out, "--size", 24, "--iterations", 2, *TINY)
    assert code == 1, err  # one image failed
    assert set(os.listdir(out)) == GOOD_OUTPUTS, "same names (BMP as PNG), nothing half-written"
    assert Image.open(out / "a.png").size == (24, 17)
    assert "painting 5 images (0 already done) with one process" in err
    assert "[5/5]" in err and "painted 4 of 5 images" in err and "1 failed:" in err
    assert "  broken.jpg: content image" in err.splitlines()[-1]

    code, err = batch_main(capsys, content, style, "-o", out, "--size", 24, "--iterations", 2, *TINY)
    assert code == 1 and "painting 1 image (4 already done)" in err and "skipped 4 already painted" in err

    os.remove(content / "broken.jpg")
    before = os.path.getmtime(out / "a.png")
    code, err = batch_main(capsys, content, style, "-o", out, "--size", 24, "--iterations", 2, *TINY)
    assert code == 0 and "painting 0 images (4 already done)" in err
    code, err = batch_main(capsys, content, style, "-o", out, "--size", 24, "--iterations", 2,
                           "--overwrite", *TINY)
    assert code == 0 and "painted 4 of 4 images" in err
    assert os.path.getmtime(out / "a.png") >= before


def test_ctrl_c_keeps_the_finished_images_and_a_rerun_paints_the_rest(monkeypatch, folder, capsys):
    content, style, out = folder
    os.remove(content / "broken.jpg")
    monkeypatch.setattr(paint, "_load_net", lambda args: CountingNet())
    painted = paint_batch.BatchPainter.paint

    def interrupted_in_the_second_image(self, job, on_iteration=None):
        if job.name != "a.png":
            raise KeyboardInterrupt
        painted(self, job, on_iteration)

    monkeypatch.setattr(paint_batch.BatchPainter, "paint", interrupted_in_the_second_image)
    code, err = batch_main(capsys, content, style, "-o", out, "--size", 24, "--iterations", 2, *TINY)
    assert code == 130 and "interrupted: 1 of 4 images done" in err, err
    assert os.listdir(out) == ["a.png"], "the image being painted is not written"
    monkeypatch.setattr(paint_batch.BatchPainter, "paint", painted)
    code, err = batch_main(capsys, content, style, "-o", out, "--size", 24, "--iterations", 2, *TINY)
    assert code == 0 and "painting 3 images (1 already done)" in err
    assert set(os.listdir(out)) == GOOD_OUTPUTS


def one_line_error(code, err, *fragments):
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("deepstyle paint-batch: error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_bad_input_is_one_line(tiny, folder, tmp_path, capsys):
    content, style, out = folder
    one_line_error(*batch_main(capsys, tmp_path / "nowhere", style, "-o", out), "CONTENT_DIR", "no such folder")
    one_line_error(*batch_main(capsys, style, style, "-o", out), "CONTENT_DIR", "not a folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(*batch_main(capsys, empty, style, "-o", out), "expected image files", "found none")
    one_line_error(*batch_main(capsys, content, tmp_path / "no.png", "-o", out), "style image", "no such file")
    one_line_error(*batch_main(capsys, content, style, "-o", out, "--size", "-2"), "--size")
    one_line_error(*batch_main(capsys, content, style, "-o", out, "--style-blend", "1,2"), "--style-blend")
    one_line_error(*batch_main(capsys, content, style), "-o/--output-dir")
    Image.open(content / "c.bmp").save(content / "c.png")
    one_line_error(*batch_main(capsys, content, style, "-o", out), "'c.bmp' and 'c.png'", "rename one")
    (tmp_path / "file").write_text("")
    one_line_error(*batch_main(capsys, content, style, "-o", tmp_path / "file"), "file")


@needs_mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_share_the_images_and_a_rerun_skips_them(folder, ranks):
    content, style, out = folder
    result = mpirun(ranks, "-m", "deepstyle", "paint-batch", content, style, "-o", out, *SMALL_VGG)
    assert result.returncode != 0, "one image failed"
    err = result.stderr
    assert f"with {ranks} MPI ranks" in err and "1 thread each" in err, err
    assert set(os.listdir(out)) == GOOD_OUTPUTS, err
    finished = [line for line in err.splitlines() if line.startswith("[")]
    assert len(finished) == 5 and "painted 4 of 5 images" in err and "  broken.jpg: content image" in err
    ranks_used = {line.split(" on rank ")[1].split(":")[0] for line in finished}
    assert ranks_used <= {str(r) for r in range(ranks)}

    os.remove(content / "broken.jpg")
    result = mpirun(ranks, "-m", "deepstyle", "paint-batch", content, style, "-o", out, *SMALL_VGG)
    assert result.returncode == 0, result.stderr
    assert "painting 0 images (4 already done)" in result.stderr


@needs_mpi
def test_bad_input_under_mpi_stops_every_rank_with_one_line(folder, tmp_path):
    content, style, out = folder
    result = mpirun(2, "-m", "deepstyle", "paint-batch", content, tmp_path / "missing.png", "-o", out,
                    *SMALL_VGG)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("deepstyle")]
    assert len(errors) == 1 and "style image" in errors[0] and "no such file" in errors[0], result.stderr
