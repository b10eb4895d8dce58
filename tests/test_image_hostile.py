"""Hostile images (bombs, non-finite pixels) and a hostile world for the writer (interrupts,
kill -9 leftovers, full disks): one clear line, bounded memory, nothing half-written."""

from __future__ import annotations

import errno
import json
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from deepstyle import cli, image, models, paint
from deepstyle.image import ImageError, load_image, save_image
from test_paint import TINY, paint_main, pictures, tiny  # noqa: F401  (fixtures)


def png_declaring(path, width, height, rows=0):
    """A PNG whose header declares width x height (8-bit RGB) but whose data holds ``rows`` rows
    of black: a few dozen bytes that a naive reader turns into width*height*3 bytes and more."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    inflater = zlib.compressobj(1)
    body = b"".join(inflater.compress(b"\0" * (1 + 3 * width)) for _ in range(rows)) + inflater.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


LOADER = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
from deepstyle.image import load_image
results = {}
for path, size in json.loads(sys.argv[1]):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        shape, outcome = list(load_image(path, size).shape), "ok"
    except ValueError as exc:
        shape, outcome = None, str(exc)
    except BaseException as exc:
        shape, outcome = None, "CRASH " + repr(exc)[:300]
    results[path] = (outcome, shape, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
print(json.dumps(results))
"""


def test_image_bombs_are_checked_before_decoding_and_decoded_at_reduced_scale(tmp_path, run_python_limited):
    run_python = run_python_limited
    tiny_declaring_huge = png_declaring(tmp_path / "declares-1e8.png", 10000, 10000)
    pillow_bomb = png_declaring(tmp_path / "30000.png", 30000, 30000)
    # a real 18 Mpx picture (all black, 6 KB): decoding it is fine, converting it whole to float is not
    large = png_declaring(tmp_path / "large.png", 6000, 3000, rows=3000)
    cases = [(str(tiny_declaring_huge), 64), (str(pillow_bomb), 64), (str(large), 64)]
    result = run_python("-c", LOADER, json.dumps(cases))
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads(result.stdout)
    for path in (tiny_declaring_huge, pillow_bomb):
        outcome, _, grown = results[str(path)]
        assert outcome.startswith(f"image {str(path)!r}: declares") or "refused to decode" in outcome, outcome
        assert "\n" not in outcome and grown < 30, (outcome, grown)
    outcome, shape, grown = results[str(large)]
    assert outcome == "ok" and shape == [32, 64, 3]
    assert grown < 18e6 * 3 / 2**20 + 40, grown  # the 8-bit decode, not float copies of it


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_pixels_are_refused(tmp_path, bad):
    values = np.full((8, 8), 0.5, np.float32)
    values[3, 4] = bad
    path = tmp_path / "float.tiff"
    Image.fromarray(values, "F").save(path)
    with pytest.raises(ImageError, match=r"content image .*float\.tiff.*1 NaN or infinite pixel"):
        load_image(path, what="content image")
    with pytest.raises(ImageError, match="NaN or infinite"):
        load_image(path, 4, what="content image")


def test_reduced_decoding_matches_the_full_decode_closely(tmp_path):
    rng = np.random.default_rng(1)
    smooth = np.kron(rng.uniform(0, 255, (12, 16, 3)), np.ones((50, 50, 1))).astype(np.uint8)  # 600 x 800
    for name in ("big.png", "big.jpg"):
        Image.fromarray(smooth).save(tmp_path / name, quality=95)
        reduced = load_image(tmp_path / name, 80)
        full = image.resize_image(load_image(tmp_path / name), (60, 80))
        assert reduced.shape == full.shape == (60, 80, 3)
        # both are low-pass versions of the same picture: they agree except at the block edges
        assert np.median(np.abs(reduced - full)) < 0.02


# --- the atomic writer --------------------------------------------------------------------------


def test_interrupt_right_after_the_rename_keeps_the_file_and_the_interrupt(tmp_path, monkeypatch):
    real_replace = os.replace

    def replace_then_interrupt(src, dst):
        real_replace(src, dst)
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", replace_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_image(tmp_path / "out.png", np.zeros((4, 4, 3)))
    assert sorted(os.listdir(tmp_path)) == ["out.png"]


def test_the_data_reaches_the_disk_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    save_image(tmp_path / "out.png", np.zeros((4, 4, 3)))
    assert events[:2] == ["fsync", "replace"]


def test_leftovers_of_killed_writers_are_cleaned_by_the_next_write(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / f"{image._TEMPORARY_PREFIX}{dead.pid}-abc.png"
    live = tmp_path / f"{image._TEMPORARY_PREFIX}{os.getpid()}-def.png"  # a concurrent writer's: kept
    orphan.write_bytes(b"half")
    live.write_bytes(b"half")
    save_image(tmp_path / "out.png", np.zeros((4, 4, 3)))
    assert sorted(os.listdir(tmp_path)) == sorted(["out.png", live.name])


def test_a_kill_9_during_a_write_leaves_only_a_temporary_the_next_run_removes(tmp_path, run_python):
    code = ("import os, signal, numpy as np; from deepstyle import image\n"
            "image.write_atomically(os.path.join(%r, 'out.png'), lambda s: (s.write(b'x'), os.kill(os.getpid(), signal.SIGKILL)))"
            % str(tmp_path))
    assert run_python("-c", code).returncode == -9
    assert [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")] and "out.png" not in os.listdir(tmp_path)
    save_image(tmp_path / "other.png", np.zeros((4, 4, 3)))
    assert os.listdir(tmp_path) == ["other.png"]


def test_saved_weights_get_the_usual_file_mode(tmp_path):
    layers = {"conv1_1": (np.zeros((64, 3, 3, 3), np.float32), np.zeros(64, np.float32))}
    saved = os.umask(0o022)
    try:
        models.save_weights(models.Weights(layers, models.CAFFE, "Keras", "x"), tmp_path / "w.npz")
    finally:
        os.umask(saved)
    assert os.stat(tmp_path / "w.npz").st_mode & 0o777 == 0o644


# --- full disks and early interrupts in the command ----------------------------------------------


def test_failing_snapshots_warn_once_and_the_run_goes_on(tiny, pictures, tmp_path, capsys, monkeypatch):  # noqa: F811
    real = image.write_atomically

    def disk_full_for_snapshots(path, write):
        if ".1.00" in os.path.basename(path) or path.endswith(".ckpt.npz"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, write)

    monkeypatch.setattr(image, "write_atomically", disk_full_for_snapshots)
    content, style = pictures
    out = tmp_path / "out.png"
    code, err = paint_main(capsys, content, style, "-o", out, "--size", 32, "--iterations", 6,
                           "--save-every", 2, *TINY)
    assert code == 0, err
    assert err.count("warning:") == 1 and "No space left on device" in err and "out.1.0002.png" in err
    assert os.path.exists(out)


def test_a_failing_final_save_names_the_file(tiny, pictures, tmp_path, capsys, monkeypatch):  # noqa: F811
    def disk_full(path, write):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(image, "write_atomically", disk_full)
    content, style = pictures
    out = tmp_path / "out.png"
    code, err = paint_main(capsys, content, style, "-o", out, "--size", 32, "--iterations", 2, *TINY)
    assert code != 0 and "Traceback" not in err
    assert f"{str(out)!r}: cannot write it (No space left on device)" in err


def test_a_full_disk_is_noticed_before_painting(tiny, pictures, tmp_path, capsys, monkeypatch):  # noqa: F811
    class Full:
        f_bavail, f_frsize = 1, 4096

    monkeypatch.setattr(os, "statvfs", lambda folder: Full())
    content, style = pictures
    code, err = paint_main(capsys, content, style, "-o", tmp_path / "out.png", "--size", 32, *TINY)
    assert code == 2 and "free in" in err and "Traceback" not in err


def test_ctrl_c_while_the_commands_are_still_loading_prints_one_line(monkeypatch, capsys):
    def interrupted(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.importlib, "import_module", interrupted)
    assert cli.main(["paint", "--demo"]) == 130
    assert capsys.readouterr().err == "interrupted\n"
    assert paint  # the module under test is importable on its own


def test_ctrl_c_while_the_command_imports_the_package_prints_one_line(tmp_path):
    """The console script imports the package before ``cli.main`` runs: an interrupt there must
    not print a traceback (simulated by raising it right after the import, uncaught)."""
    script = tmp_path / "deepstyle"
    script.write_text("import deepstyle\nraise KeyboardInterrupt\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.returncode != 0
    assert result.stderr.strip() == "interrupted", result.stderr
