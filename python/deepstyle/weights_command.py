"""``deepstyle weights``: list the known pretrained weights and fetch them into the cache folder."""

from __future__ import annotations

import sys
import time

from .models.fetch import SOURCES, FetchError, fetch, file_status

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


def add_arguments(parser):
    parser.description = (
        "Pretrained VGG weights for `deepstyle paint`. `list` shows the known sources, which are in "
        "the cache folder and verified, and which file paint uses; `fetch NAME` downloads one, "
        "checks its sha256 and writes it atomically into the cache folder."
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    list_parser = actions.add_parser("list", help="the known weights, what is present, and what paint uses")
    fetch_parser = actions.add_parser("fetch", help="download and verify weights into the cache folder")
    fetch_parser.add_argument("name", metavar="NAME", choices=list(SOURCES),
                              help=f"one of {', '.join(SOURCES)} (vgg16 is the default paint network)")
    for action in (list_parser, fetch_parser):
        action.add_argument("--dir", metavar="DIR", help="folder to use instead of the cache folder")


def run(args):
    from .models import cache_dir

    directory = getattr(args, "dir", None) or cache_dir()
    try:
        if args.action == "fetch":
            return _fetch(SOURCES[args.name], directory)
        return _list(directory)
    except FetchError as exc:
        print(f"deepstyle weights: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except ValueError as exc:  # a bad $DEEPSTYLE_WEIGHTS
        print(f"deepstyle weights: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _list(directory):
    from .models import default_weights

    print(f"cache folder: {directory}")
    for source in SOURCES.values():
        path, state = file_status(source, directory)
        size = f", {path.stat().st_size / 2**20:.0f} MiB" if state != "absent" else ""
        print(f"  {source.name:<18} {state}{size}: {source.filename}")
        print(f"  {'':<18} {source.summary}")
    chosen = default_weights()
    if chosen is None:
        print("paint uses: no pretrained weights found, so a random-weight network "
              "(get the pretrained VGG16 with: deepstyle weights fetch vgg16)")
    else:
        print(f"paint uses: {chosen}")
    return 0


def _fetch(source, directory):
    import importlib.util

    if source.filename.endswith(".h5") and importlib.util.find_spec("h5py") is None:
        print(f"deepstyle weights: error: {source.name} is an HDF5 file and reading it needs h5py: "
              "pip install h5py (or 'deepstyle[h5]'), then fetch again", file=sys.stderr)
        return EXIT_BAD_INPUT
    progress = _Progress(source.name)
    started = time.monotonic()
    path, fetched = fetch(source, directory, progress)
    progress.finish()
    if fetched:
        print(f"fetched {source.name} into {path} (sha256 verified) in {time.monotonic() - started:.0f} s",
              file=sys.stderr)
    else:
        print(f"{source.name}: already present and verified: {path}", file=sys.stderr)
    return 0


class _Progress:
    """A download bar on stderr: redrawn in place on a terminal, a line every 10 s otherwise."""

    def __init__(self, name, stream=None):
        self.name = name
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last = 0.0
        self.drawn = False

    def __call__(self, done, total):
        now = time.monotonic()
        if not self.tty and now - self.last < 10 and done != total:
            return
        self.last = now
        mib = done / 2**20
        if total:
            filled = 30 * done // total
            line = f"{self.name} [{'#' * filled}{'.' * (30 - filled)}] {mib:.1f}/{total / 2**20:.1f} MiB"
        else:
            line = f"{self.name} {mib:.1f} MiB"
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()
        self.drawn = True

    def finish(self):
        if self.tty and self.drawn:
            self.stream.write("\n")
