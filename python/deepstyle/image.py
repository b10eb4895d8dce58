"""Image files in and out, as float32 H x W x 3 RGB arrays in [0, 1].

Loading accepts whatever Pillow reads and converts it to RGB sensibly: grayscale is replicated,
transparency is composited onto white (what a viewer shows), palette and CMYK images go
through Pillow's own conversions, 16-bit and float images are rescaled from their range.
Saving is atomic: a temporary file in the output's folder, then ``os.replace``, so a reader or
a kill never sees half an image. Problems raise :class:`ImageError` with one line that names
the file and says what is wrong.
"""

from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np

__all__ = [
    "ImageError",
    "load_image",
    "save_image",
    "write_atomically",
    "resize_image",
    "fit_size",
    "rgb_to_yiq",
    "yiq_to_rgb",
]

_SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


class ImageError(ValueError):
    """An image file that cannot be read or written; the message names the file."""


def _pillow():
    from PIL import Image

    return Image


def _to_rgb(picture):
    """A Pillow image of any mode as an RGB Pillow image."""
    Image = _pillow()
    if picture.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(picture, dtype=np.float64)
        bad = values.size - int(np.isfinite(values).sum())
        if bad:
            raise ValueError(f"holds {bad} NaN or infinite pixel values (expected finite numbers)")
        # the range the values were stored in: 16-bit unless they evidently are 8-bit or [0, 1]
        peak = float(values.max(initial=0.0))
        if picture.mode.startswith("I;16") or 255.0 < peak <= 65535.0:
            top = 65535.0
        elif picture.mode == "F" and peak <= 1.0:
            top = 1.0
        else:
            top = 255.0 if peak <= 255.0 else peak
        gray = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if picture.mode == "P":
        picture = picture.convert("RGBA")
    if picture.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = picture.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return picture.convert("RGB")


def load_image(path, size=None, *, what="image"):
    """Read ``path`` as float32 RGB (H, W, 3) in [0, 1]; with ``size``, resize so that the
    longer side is ``size`` pixels, keeping the aspect ratio. ``what`` names the file's role
    in error messages ("content image", "style image")."""
    Image = _pillow()
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ImageError(f"{what} {path!r}: no such file")
    if os.path.isdir(path):
        raise ImageError(f"{what} {path!r}: is a folder, not an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we say it in one line
            with Image.open(path) as picture:
                rgb = _to_rgb(_decoded(picture, size, f"{what} {path!r}"))
    except ImageError:
        raise
    except PermissionError:
        raise ImageError(f"{what} {path!r}: permission denied") from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"{what} {path!r}: not an image format Pillow can read") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{what} {path!r}: refused to decode it ({exc})") from None
    except MemoryError:
        raise ImageError(f"{what} {path!r}: out of memory while decoding it") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data
        raise ImageError(f"{what} {path!r}: cannot decode it ({str(exc):.200})") from None
    image = np.asarray(rgb, dtype=np.float32)
    image /= 255.0
    if size is not None:
        image = resize_image(image, fit_size(image.shape[:2], size))
    return image


# Pillow's default decompression-bomb threshold (89.5 Mpx, a 3 bytes a pixel image of 256 MB),
# fixed here so that a program that lifted Pillow's limit does not lift ours
MAX_PIXELS = 1024 * 1024 * 1024 // 4 // 3


def _decoded(picture, size, name):
    """``picture`` decoded, its declared size checked first; with ``size`` (the longer side the
    run needs), decoded at reduced scale where the format allows it (JPEG's draft mode) and
    reduced by whole factors before any float conversion, so memory follows the run's size."""
    width, height = picture.size
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"{name}: declares {width}x{height} = {width * height} pixels, more than the {MAX_PIXELS} "
            "this reader decodes; shrink the file first"
        )
    if size is None:
        picture.load()
        return picture
    target_h, target_w = fit_size((height, width), size)
    if picture.format == "JPEG":
        picture.draft(picture.mode, (target_w, target_h))
    picture.load()
    factor = min(picture.width // target_w, picture.height // target_h)
    if factor < 2:
        return picture
    if picture.mode not in _REDUCIBLE_MODES:
        picture = picture.convert("RGBA" if "A" in picture.mode or picture.mode == "P" else "RGB")
    return picture.reduce(factor)


_REDUCIBLE_MODES = ("L", "LA", "RGB", "RGBA", "I", "F")


def fit_size(shape_hw, longer_side):
    """(height, width) with the longer side ``longer_side``, keeping the aspect ratio of
    ``shape_hw`` (each side at least 1 pixel)."""
    if isinstance(longer_side, bool) or not isinstance(longer_side, (int, np.integer)) or longer_side < 1:
        raise ValueError(f"longer_side: expected a positive integer, got {longer_side!r}")
    h, w = shape_hw
    scale = longer_side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def resize_image(image, shape_hw):
    """``image`` (H, W, 3) float in [0, 1] resampled to ``shape_hw`` = (height, width):
    Lanczos when shrinking (no aliasing), bicubic when enlarging. Works in float32 per channel,
    so no 8-bit rounding creeps into intermediate stages."""
    Image = _pillow()
    h, w = int(shape_hw[0]), int(shape_hw[1])
    if (h, w) == image.shape[:2]:
        return np.array(image, dtype=np.float32)
    shrinking = h * w < image.shape[0] * image.shape[1]
    method = Image.Resampling.LANCZOS if shrinking else Image.Resampling.BICUBIC
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c], dtype=np.float32), "F")
                   .resize((w, h), method))
        for c in range(image.shape[2])
    ]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)


def save_image(path, image, *, what="output"):
    """Write ``image`` (H, W, 3) float in [0, 1] to ``path`` (.png, .jpg or .jpeg) atomically."""
    Image = _pillow()
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in _SAVE_FORMATS:
        raise ImageError(
            f"{what} {path!r}: expected a .png, .jpg or .jpeg file name, got {suffix or 'no extension'!r}"
        )
    pixels = np.clip(np.asarray(image, dtype=np.float64) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    picture = Image.fromarray(pixels, "RGB")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ImageError(f"{what} {path!r}: folder {folder!r} does not exist")
    try:
        write_atomically(path, lambda stream: picture.save(stream, format=_SAVE_FORMATS[suffix]))
    except OSError as exc:
        raise ImageError(f"{what} {path!r}: cannot write it ({exc.strerror or exc})") from None


def write_atomically(path, write):
    """Call ``write(stream)`` on a temporary file next to ``path``, flush it to disk, then rename it
    to ``path``: readers see the old file or the whole new one, never a part, even after a power
    cut. The file gets the usual permissions (0666 less the umask), not the temporary file's
    private 0600. The temporary file is named after this process, so a later write to the same
    folder removes what a killed process (kill -9) left behind."""
    folder = os.path.dirname(os.path.abspath(path))
    _remove_orphaned_temporaries(folder)
    handle, temporary = tempfile.mkstemp(prefix=f"{_TEMPORARY_PREFIX}{os.getpid()}-",
                                         suffix=os.path.splitext(path)[1], dir=folder)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        # an interrupt can land after os.replace has moved the file: then there is nothing to remove
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(folder)


_TEMPORARY_PREFIX = ".tmp-deepstyle-"


def _umask():
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _fsync_folder(folder):
    """Make the rename itself durable (best effort: some file systems refuse to sync a folder)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def _remove_orphaned_temporaries(folder):
    """Remove temporaries of write_atomically whose process no longer exists."""
    try:
        names = [n for n in os.listdir(folder) if n.startswith(_TEMPORARY_PREFIX)]
    except OSError:
        return
    for name in names:
        pid = name[len(_TEMPORARY_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or _process_exists(int(pid)):
            continue
        try:
            os.unlink(os.path.join(folder, name))
        except OSError:
            pass


def _process_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


# YIQ (NTSC): Y is luminance, I and Q carry the colour; used to keep a content image's colours.
_RGB_TO_YIQ = np.array(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]]
)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


def rgb_to_yiq(image):
    """(H, W, 3) RGB -> (H, W, 3) YIQ."""
    return (np.asarray(image, dtype=np.float64) @ _RGB_TO_YIQ.T).astype(np.float32)


def yiq_to_rgb(image):
    """(H, W, 3) YIQ -> (H, W, 3) RGB (not clipped)."""
    return (np.asarray(image, dtype=np.float64) @ _YIQ_TO_RGB.T).astype(np.float32)
