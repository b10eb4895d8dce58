"""``deepstyle paint``: neural style transfer from the command line.

The module is also callable: ``deepstyle.paint(content, style, **options) -> image`` is the
library call (see :func:`deepstyle.painting.paint` for the options).

Every problem with the input (a missing or unreadable image, a bad option value, a size too
small for the network, an output that cannot be written) is one line on stderr and exit
status 2 (1 for problems met while running). Ctrl-C or SIGTERM stops the run, writes the best
image so far and a checkpoint next to the output (``OUT.ckpt.npz``), which ``--resume`` picks up.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
import zipfile

import numpy as np

# The options and their checks, and the progress reports, live in their own modules; these
# names are this module's interface too (``deepstyle paint-batch``, the cli, the tests).
from .paint_options import (EXAMPLES, EXIT_BAD_INPUT, EXIT_FAILED, BadInput, add_arguments,
                            add_painting_options, check_painting_options)
from .paint_progress import (EVALUATIONS_PER_ITERATION, ProgressBar, _format_bytes,
                             _format_seconds, expected_seconds)

__all__ = [
    "add_arguments", "run", "add_painting_options", "check_painting_options", "checkpoint_path",
    "BadInput", "ProgressBar", "expected_seconds", "EXAMPLES", "EXIT_BAD_INPUT", "EXIT_FAILED",
    "EVALUATIONS_PER_ITERATION", "MIN_IMAGE_SIDE",
]


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: keep the best image and a checkpoint."""


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
