"""The README's side-by-side pictures: content | style | pretrained VGG16 | random network.

    PYTHONPATH=python python scripts/readme_pictures.py OUT.jpg CONTENT STYLE [CONTENT STYLE ...] \
        [--size 256] [--tile 192]

One row per (content, style) pair, each painted twice with the library call's defaults at
--size: once on the pretrained VGG16 in the cache folder (`deepstyle weights fetch vgg16`) and
once on the no-weights fallback (random multi-scale filters). Prints each run's time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from PIL import Image

import deepstyle
from deepstyle import models
from deepstyle.image import fit_size, load_image, resize_image, write_atomically


def tile(image, height):
    shape = fit_size(image.shape[:2], 10**6)  # aspect ratio only
    width = max(1, round(height * shape[1] / shape[0]))
    return resize_image(image, (height, width))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output")
    parser.add_argument("pairs", nargs="+", metavar="CONTENT STYLE")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--tile", type=int, default=192)
    args = parser.parse_args()
    if len(args.pairs) % 2:
        parser.error("expected CONTENT STYLE pairs")
    pretrained = models.find_weights(None, "vgg16")
    if pretrained is None:
        parser.error("no pretrained VGG16: run `deepstyle weights fetch vgg16` first")
    rows = []
    for content, style in zip(args.pairs[::2], args.pairs[1::2]):
        panels = [load_image(content, args.size), load_image(style, args.size)]
        for weights in (pretrained, "random-multiscale"):
            started = time.perf_counter()
            panels.append(deepstyle.paint(content, style, size=args.size, weights=weights))
            print(f"{content} in the style of {style}, {weights}: {time.perf_counter() - started:.0f} s")
        rows.append(np.concatenate([tile(p, args.tile) for p in panels], axis=1))
    width = max(row.shape[1] for row in rows)
    rows = [np.pad(row, ((0, 4), (0, width - row.shape[1]), (0, 0)), constant_values=1.0) for row in rows]
    picture = Image.fromarray((np.concatenate(rows)[:-4] * 255 + 0.5).astype(np.uint8))
    write_atomically(args.output, lambda stream: picture.save(stream, "JPEG", quality=85))


if __name__ == "__main__":
    main()
