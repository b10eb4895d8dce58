"""Image loading (every Pillow mode to RGB), resizing, atomic saving and clear errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from deepstyle.image import ImageError, fit_size, load_image, resize_image, rgb_to_yiq, save_image, yiq_to_rgb


def write(tmp_path, name, picture, **options):
    path = tmp_path / name
    picture.save(path, **options)
    return str(path)


def test_rgb_png_round_trips_exactly(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    image = load_image(write(tmp_path, "a.png", Image.fromarray(pixels)))
    assert image.dtype == np.float32 and image.shape == (5, 7, 3)
    np.testing.assert_array_equal(np.round(image * 255).astype(np.uint8), pixels)
    out = str(tmp_path / "b.png")
    save_image(out, image)
    np.testing.assert_array_equal(np.asarray(Image.open(out)), pixels)


def test_grayscale_is_replicated(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    image = load_image(write(tmp_path, "g.png", Image.fromarray(gray, "L")))
    for c in range(3):
        np.testing.assert_allclose(image[..., c], gray / 255.0, atol=1e-7)


def test_transparency_is_composited_on_white(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (0, 0, 255, 0)  # fully transparent: white
    rgba[1, 0] = (0, 0, 0, 128)  # half-transparent black: mid grey
    image = load_image(write(tmp_path, "t.png", Image.fromarray(rgba, "RGBA")))
    np.testing.assert_allclose(image[0, 0], [1, 0, 0])
    np.testing.assert_allclose(image[0, 1], [1, 1, 1])
    np.testing.assert_allclose(image[1, 0], [127 / 255] * 3, atol=1.5 / 255)


def test_palette_cmyk_and_16_bit(tmp_path):
    rgb = Image.fromarray(np.random.default_rng(1).integers(0, 256, (6, 6, 3), dtype=np.uint8))
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    np.testing.assert_allclose(load_image(write(tmp_path, "p.png", palette)),
                               np.asarray(palette.convert("RGB")) / 255.0, atol=1e-7)
    cmyk = Image.new("CMYK", (3, 3), (0, 255, 255, 0))  # pure red in CMYK
    np.testing.assert_allclose(load_image(write(tmp_path, "c.jpg", cmyk, quality=100))[1, 1], [1, 0, 0], atol=0.02)
    deep = Image.fromarray(np.full((2, 2), 65535 // 2, np.uint16))
    assert deep.mode.startswith("I;16")
    np.testing.assert_allclose(load_image(write(tmp_path, "d.png", deep)), 0.5, atol=1 / 255)


@pytest.mark.parametrize("shape,size,expected", [((300, 400), 100, (75, 100)), ((400, 300), 100, (100, 75)),
                                                 ((10, 10), 32, (32, 32)), ((1000, 3), 100, (100, 1))])
def test_resize_keeps_the_aspect_ratio(tmp_path, shape, size, expected):
    assert fit_size(shape, size) == expected
    path = write(tmp_path, "r.png", Image.new("RGB", shape[::-1], (10, 200, 30)))
    image = load_image(path, size)
    assert image.shape == expected + (3,)
    np.testing.assert_allclose(image, np.broadcast_to([10 / 255, 200 / 255, 30 / 255], image.shape), atol=1e-5)


def test_resize_is_smooth_not_nearest():
    ramp = np.repeat(np.linspace(0, 1, 64, dtype=np.float32)[None, :, None], 3, axis=2).repeat(4, axis=0)
    small = resize_image(ramp, (4, 16))
    assert np.all(np.diff(small[0, :, 0]) > 0)
    assert small.min() >= 0 and small.max() <= 1


def test_errors_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(ImageError, match=r"content image '.*nope.png': no such file"):
        load_image(tmp_path / "nope.png", what="content image")
    with pytest.raises(ImageError, match="is a folder"):
        load_image(tmp_path)
    junk = tmp_path / "junk.jpg"
    junk.write_text("not an image")
    with pytest.raises(ImageError, match="not an image format Pillow can read"):
        load_image(junk)
    good = write(tmp_path, "good.png", Image.new("RGB", (64, 64), (1, 2, 3)))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(open(good, "rb").read()[:60])
    with pytest.raises(ImageError, match="truncated.png"):
        load_image(truncated)
    image = np.zeros((2, 2, 3), np.float32)
    with pytest.raises(ImageError, match="expected a .png, .jpg or .jpeg"):
        save_image(tmp_path / "out.gif", image)
    with pytest.raises(ImageError, match="does not exist"):
        save_image(tmp_path / "missing" / "out.png", image)


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path):
    out = tmp_path / "out.jpg"
    save_image(out, np.full((4, 4, 3), 0.5, np.float32))
    assert sorted(os.listdir(tmp_path)) == ["out.jpg"]
    assert Image.open(out).format == "JPEG"
    assert os.stat(out).st_mode & 0o044, "readable by others, like any file the user writes"

    class Boom(Exception):
        pass

    def explode(*args, **kwargs):
        raise Boom

    import PIL.Image

    original = PIL.Image.Image.save
    PIL.Image.Image.save = explode
    try:
        with pytest.raises(Boom):
            save_image(out, np.zeros((4, 4, 3), np.float32))
    finally:
        PIL.Image.Image.save = original
    assert sorted(os.listdir(tmp_path)) == ["out.jpg"], "the old file stays whole, no temporary is left"
    assert np.asarray(Image.open(out)).mean() > 100


def test_yiq_round_trip_and_luminance():
    rgb = np.random.default_rng(2).uniform(0, 1, (3, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(yiq_to_rgb(rgb_to_yiq(rgb)), rgb, atol=1e-6)
    gray = np.full((1, 1, 3), 0.25, np.float32)
    np.testing.assert_allclose(rgb_to_yiq(gray)[0, 0], [0.25, 0, 0], atol=1e-6)
