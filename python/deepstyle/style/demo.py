"""Two pictures made from nothing, so that ``deepstyle paint --demo`` runs on every machine: a
landscape to paint (content) and a canvas of swirling brush strokes to paint it with (style)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = ["demo_content", "demo_style"]


def demo_content(size=256):
    """A landscape, ``size`` x 3/4 size: sky, sun, mountains, a lake, a house and trees."""
    w, h = size, max(1, size * 3 // 4)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    sky = np.stack([0.35 + 0.5 * y, 0.55 + 0.35 * y, 0.95 - 0.1 * y], axis=-1)
    image = Image.fromarray((np.clip(sky, 0, 1) * 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    s = size / 256.0

    def xy(*points):
        return [(px * s, py * s) for px, py in points]

    draw.ellipse(xy((180, 22), (218, 60)), fill=(255, 214, 90))
    ridge = [(px, 110 + 28 * np.sin(px / 23.0) + 12 * np.sin(px / 7.0 + 1)) for px in range(0, 257, 4)]
    draw.polygon(xy((0, 192), *ridge, (256, 192)), fill=(96, 104, 140))
    hills = [(px, 135 + 12 * np.sin(px / 31.0 + 2)) for px in range(0, 257, 4)]
    draw.polygon(xy((0, 192), *hills, (256, 192)), fill=(70, 140, 60))
    draw.rectangle(xy((0, 160), (256, 192)), fill=(40, 90, 160))  # the lake
    draw.rectangle(xy((40, 118), (84, 150)), fill=(230, 220, 200))  # the house
    draw.polygon(xy((34, 120), (62, 96), (90, 120)), fill=(180, 50, 40))
    draw.rectangle(xy((56, 132), (68, 150)), fill=(90, 60, 40))
    for tx in (120, 140, 205, 228):
        draw.rectangle(xy((tx - 2, 138), (tx + 2, 154)), fill=(80, 55, 30))
        draw.ellipse(xy((tx - 11, 112), (tx + 11, 142)), fill=(30, 100, 40))
    for i in range(6):  # ripples
        draw.line(xy((20 + 40 * i, 170 + 3 * (i % 3)), (44 + 40 * i, 170 + 3 * (i % 3))), fill=(150, 190, 230), width=max(1, round(s)))
    return np.asarray(image, np.float32) / 255.0


def demo_style(size=256, seed=0):
    """Brush strokes following a swirling flow field in a night-sky palette (size x size)."""
    rng = np.random.default_rng(seed)
    palette = np.array([(20, 40, 110), (40, 80, 170), (70, 130, 200), (240, 210, 80),
                        (250, 240, 190), (30, 110, 120), (10, 20, 60)], dtype=float)
    image = Image.new("RGB", (size, size), (25, 45, 100))
    draw = ImageDraw.Draw(image)
    centres = rng.uniform(0, size, (4, 2))
    for _ in range(int(2.2 * size * size / 100)):
        p = rng.uniform(0, size, 2)
        colour = palette[rng.integers(len(palette))] + rng.normal(0, 12, 3)
        points = [tuple(p)]
        for _ in range(6):
            angle = sum(np.arctan2(*(p - c)[::-1]) + np.pi / 2 for c in centres[:2]) / 2
            angle += 0.8 * np.sin(p[0] / size * 7) * np.cos(p[1] / size * 5)
            p = p + size / 80 * np.array([np.cos(angle), np.sin(angle)])
            points.append(tuple(p))
        width = max(1, int(rng.integers(2, 5) * size / 256))
        draw.line(points, fill=tuple(int(v) for v in np.clip(colour, 0, 255)), width=width)
    image = image.filter(ImageFilter.SMOOTH)
    return np.asarray(image, np.float32) / 255.0
