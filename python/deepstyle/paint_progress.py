"""What ``deepstyle paint`` and ``deepstyle paint-batch`` say while they run: the progress bar,
the expected run time, byte counts and durations in words. The paint module exports them."""

from __future__ import annotations

import sys
import time


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
