"""``deepstyle paint-batch``: paint every image of a folder in the same style(s), over MPI ranks.

    mpirun -n 4 deepstyle paint-batch photos/ wave.jpg -o painted/ --size 512

Every rank loads the network and the style images once, then takes content images one at a
time from a queue that rank 0 keeps (a thread on rank 0 answers the other ranks' requests
while rank 0 paints too), so a rank that finishes early takes the next image. Outputs keep the
input's name (a format other than PNG/JPEG is written as PNG) and are written atomically, so
an output that exists is complete: a rerun skips it, and a killed job resumes where it stopped.
An image that cannot be painted is reported and listed in the summary; the others go on.
Without ``mpirun`` it is one process with a progress bar over the images.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import threading
import time
from dataclasses import dataclass

from . import paint
from .distributed import RankFailed, set_threads_per_rank, world

EXAMPLES = """\
examples:
  deepstyle paint-batch photos/ wave.jpg -o painted/ --size 512 --iterations 300
  mpirun -n 4 deepstyle paint-batch frames/ scream.jpg -o out/ --weights vgg16.pth
  mpirun --hostfile hosts -n 32 deepstyle paint-batch /shared/photos wave.jpg -o /shared/out

A rerun of the same command skips the images whose output exists (--overwrite repaints them).
"""

CONTENT_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
KEPT_SUFFIXES = (".png", ".jpg", ".jpeg")  # the formats outputs can be written in
_REQUEST, _ASSIGN = 1, 2  # message tags: a worker's result and request / the dispatcher's answer
_POLL_SECONDS = 0.005  # how often idle MPI waits look again (instead of spinning on a core)


def add_arguments(parser):
    parser.description = ("Paint every image in CONTENT_DIR in the style of STYLE, into OUT_DIR, "
                          "spread over the ranks when started by mpirun.")
    parser.epilog = EXAMPLES
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.error = _one_line_error
    parser.add_argument("content_dir", metavar="CONTENT_DIR", help="folder of images to repaint")
    parser.add_argument("styles", nargs="+", metavar="STYLE", help="one or more style images")
    parser.add_argument("-o", "--output-dir", required=True, metavar="OUT_DIR",
                        help="folder for the painted images (made if missing)")
    parser.add_argument("--overwrite", action="store_true",
                        help="repaint images whose output exists (default: skip them)")
    paint.add_painting_options(parser)


def _one_line_error(message):
    print(f"deepstyle paint-batch: error: {message}", file=sys.stderr)
    sys.exit(paint.EXIT_BAD_INPUT)


@dataclass(frozen=True)
class Job:
    name: str  # the content file's name
    source: str
    output: str


@dataclass(frozen=True)
class Result:
    name: str
    rank: int
    seconds: float
    error: str | None = None


def plan_jobs(content_dir, output_dir, overwrite=False):
    """(jobs to do, number skipped because their output exists), in file-name order."""
    if not os.path.isdir(content_dir):
        raise paint.BadInput(f"CONTENT_DIR {content_dir!r}: "
                             + ("not a folder" if os.path.exists(content_dir) else "no such folder"))
    names = sorted(name for name in os.listdir(content_dir)
                   if os.path.splitext(name)[1].lower() in CONTENT_SUFFIXES
                   and os.path.isfile(os.path.join(content_dir, name)))
    if not names:
        raise paint.BadInput(f"CONTENT_DIR {content_dir!r}: expected image files "
                             f"({', '.join(CONTENT_SUFFIXES)}), found none")
    outputs = {}
    for name in names:
        stem, suffix = os.path.splitext(name)
        output = name if suffix.lower() in KEPT_SUFFIXES else stem + ".png"
        if output in outputs:
            raise paint.BadInput(f"CONTENT_DIR {content_dir!r}: {outputs[output]!r} and {name!r} would "
                                 f"both be written as {output!r}; rename one")
        outputs[output] = name
    jobs = [Job(name, os.path.join(content_dir, name), os.path.join(output_dir, output))
            for output, name in outputs.items()]
    todo = [job for job in jobs if overwrite or not os.path.exists(job.output)]
    return todo, len(jobs) - len(todo)


class BatchPainter:
    """The network and the style images, loaded once per rank, and the painting of one image."""

    def __init__(self, args, sizes, quiet=False):
        from .image import load_image

        self.largest = max(sizes)
        style_size = max(1, round(self.largest * args.style_scale))
        self.styles = [load_image(path, style_size, what="style image") for path in args.styles]
        init = args.init
        if init not in ("content", "noise"):
            init = load_image(init, self.largest, what="--init image")
        # the network's notes ("no pretrained weights found ...") once, from rank 0
        with contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext():
            self.net = paint._load_net(args)
        self.settings = paint._settings(args, self.net, sizes, init)

    def paint(self, job, on_iteration=None):
        from .image import load_image, save_image
        from .style import Painter

        content = load_image(job.source, self.largest, what="content image")
        image = Painter(self.net, content, self.styles, self.settings).run(on_iteration)
        save_image(job.output, image)


class Report:
    """Rank 0's account of the images: a line per finished image (with a bar redrawn in place
    on a terminal in a one-process run), and the summary."""

    def __init__(self, total, skipped, stream=None):
        self.total, self.skipped = total, skipped
        self.results = []
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.perf_counter()
        self.lock = threading.Lock()  # rank 0's dispatcher thread reports too

    def iteration(self, name, progress):
        """A one-process run on a terminal: where the current image is."""
        if self.tty:
            done = len(self.results)
            bar = "#" * (20 * done // self.total) + "." * (20 - 20 * done // self.total)
            self.stream.write(f"\rimages [{bar}] {done}/{self.total}, {name}: stage {progress.stage + 1}"
                              f" iteration {progress.iteration}/{progress.iterations}\033[K")
            self.stream.flush()

    def finished(self, result, show_rank):
        with self.lock:
            self.results.append(result)
            where = f" on rank {result.rank}" if show_rank else ""
            what = (f"FAILED: {result.error}" if result.error
                    else f"painted in {_seconds(result.seconds)}")
            line = f"[{len(self.results)}/{self.total}] {result.name}{where}: {what}"
            self.stream.write("\r" + line + "\033[K\n" if self.tty else line + "\n")
            self.stream.flush()

    def summary(self):
        failed = [r for r in self.results if r.error]
        lines = [f"painted {len(self.results) - len(failed)} of {self.total} images in "
                 f"{_seconds(time.perf_counter() - self.started)}"
                 + (f"; skipped {self.skipped} already painted" if self.skipped else "")
                 + (f"; {len(failed)} failed:" if failed else "")]
        lines += [f"  {r.name}: {r.error}" for r in sorted(failed, key=lambda r: r.name)]
        return "\n".join(lines)


def _seconds(seconds):
    return f"{seconds:.1f}s" if seconds < 10 else paint._format_seconds(seconds)


def _paint_one(painter, job, rank, on_iteration=None):
    """Paint ``job``; any failure of this one image becomes the result's error."""
    started = time.perf_counter()
    try:
        painter.paint(job, on_iteration)
        error = None
    except MemoryError:
        error = "out of memory; try a smaller --size or --history"
    except Exception as exc:  # one bad image must not stop the others
        error = str(exc) or type(exc).__name__
    return Result(job.name, rank, time.perf_counter() - started, error)


class _Queue:
    """The next job index, taken under a lock (rank 0's painter and its dispatcher thread)."""

    def __init__(self, count):
        self.next, self.count, self.lock = 0, count, threading.Lock()

    def take(self):
        with self.lock:
            if self.next >= self.count:
                return None
            self.next += 1
            return self.next - 1


def _dispatch(comm, queue, jobs, report):
    """Rank 0: answer each worker's request (which carries its last result) with the next job
    index, or None when there is none left, until every worker has had its None."""
    from mpi4py import MPI

    status = MPI.Status()
    working = comm.Get_size() - 1
    while working:
        if not comm.Iprobe(source=MPI.ANY_SOURCE, tag=_REQUEST, status=status):
            time.sleep(_POLL_SECONDS)
            continue
        source = status.Get_source()
        result = comm.recv(source=source, tag=_REQUEST)
        if result is not None:
            report.finished(result, show_rank=True)
        index = queue.take()
        comm.send(index, dest=source, tag=_ASSIGN)
        working -= index is None


def _dispatch_or_abort(current, *args):
    with current.abort_on_error("deepstyle paint-batch (dispatcher)"):
        _dispatch(current.comm, *args)


def _work(current, painter, jobs):
    """A rank other than 0: ask for jobs, paint them, and hand the results back."""
    result = None
    while True:
        current.comm.send(result, dest=0, tag=_REQUEST)
        index = current.comm.recv(source=0, tag=_ASSIGN)
        if index is None:
            return
        result = _paint_one(painter, jobs[index], current.rank)


def _deal(current, painter, jobs, report):
    """Paint ``jobs`` over the ranks; rank 0's ``report`` collects every result."""
    queue = _Queue(len(jobs))
    if current.comm is None:
        while (index := queue.take()) is not None:
            job = jobs[index]
            report.finished(_paint_one(painter, job, 0, lambda p: report.iteration(job.name, p)),
                            show_rank=False)
        return
    from mpi4py import MPI

    if not current.is_root:
        _work(current, painter, jobs)
    elif MPI.Query_thread() >= MPI.THREAD_SERIALIZED:  # rank 0 paints while a thread deals
        dispatcher = threading.Thread(target=_dispatch_or_abort, args=(current, queue, jobs, report),
                                      daemon=True)
        dispatcher.start()
        while (index := queue.take()) is not None:
            report.finished(_paint_one(painter, jobs[index], 0), show_rank=True)
        dispatcher.join()
    else:  # an MPI without thread support: rank 0 only deals
        _dispatch(current.comm, queue, jobs, report)
    _wait_for_every_rank(current.comm)


def _wait_for_every_rank(comm):
    """A barrier that sleeps between looks: ranks done early do not spin on a core that the
    ranks still painting could use."""
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(_POLL_SECONDS)


def run(args):
    try:
        current = world()
    except RuntimeError as exc:
        print(f"deepstyle paint-batch: error: {exc}", file=sys.stderr)
        return paint.EXIT_BAD_INPUT
    with current.abort_on_error("deepstyle paint-batch"):
        return _run(args, current)


def _run(args, current):
    error, jobs, skipped = None, [], 0
    try:
        sizes = paint.check_painting_options(args, style_count=len(args.styles))
        os.makedirs(args.output_dir, exist_ok=True)  # every rank: it may be a node-local folder
        jobs, skipped = plan_jobs(args.content_dir, args.output_dir, args.overwrite)
        painter = BatchPainter(args, sizes, quiet=not current.is_root) if jobs else None
    except MemoryError:
        error = "out of memory loading the network; try fewer ranks per machine"
    except (ValueError, OSError) as exc:
        error = exc
    try:
        current.agree(error, "setting up")
    except RankFailed as exc:
        if current.is_root:
            everywhere = len(exc.failures) == current.size  # the same bad input, usually
            print("deepstyle paint-batch: error: " + (exc.failures[0] if everywhere else str(exc)), file=sys.stderr)
        return paint.EXIT_BAD_INPUT
    threads = set_threads_per_rank(current)
    report = Report(len(jobs), skipped) if current.is_root else None
    if current.is_root:
        print(f"painting {len(jobs)} image{'s' * (len(jobs) != 1)} ({skipped} already done) with {current.describe()}, "
              f"{threads} thread{'s' * (threads > 1)} each; network: "
              f"{painter.net.description if painter else '-'}", file=sys.stderr)
    if jobs:
        try:
            _deal(current, painter, jobs, report)
        except KeyboardInterrupt:
            if current.comm is not None:
                raise  # abort_on_error ends every rank
            print(f"\ninterrupted: {len(report.results)} of {len(jobs)} images done; run the same "
                  "command again to paint the rest", file=sys.stderr)
            return 130
    if not current.is_root:
        return 0
    print(report.summary(), file=sys.stderr)
    return paint.EXIT_FAILED if any(r.error for r in report.results) else 0
