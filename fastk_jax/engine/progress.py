"""Progress of a long simulation: a report after each chunk, and meters that show it.

The engine calls a *progress callback* with a ``Progress`` after every chunk of iterations. A
meter is such a callback with a ``close`` (diffrax's ``AbstractProgressMeter`` in miniature):
``TextMeter`` draws the command line's bar on stderr, ``TqdmMeter`` a tqdm bar (in a notebook,
``tqdm.auto`` picks the widget). ``meter("text" | "tqdm" | None | callable)`` makes one from
what a user passes to ``fastk_jax.run(progress=...)``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import NamedTuple

from ..errors import ConfigError


class Progress(NamedTuple):
    """Passed to the progress callback after each chunk."""

    fraction: float  # of the work, by the slowest run
    iterations: int
    elapsed_s: float
    remaining_s: float  # estimate; nan before the first chunk


ProgressCallback = Callable[[Progress], None]


def share_progress(progress: ProgressCallback | None, offset: float, share: float):
    """A callback for one part of a larger job (the part is ``share`` of it, from ``offset``):
    forwards each report to ``progress`` with the fraction of the whole job."""
    if progress is None:
        return None
    return lambda p: progress(p._replace(fraction=offset + share * p.fraction))


def duration(seconds: float) -> str:
    """``seconds`` as "42 s", "3 min 05 s" or "2 h 07 min"."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class TextMeter:
    """A bar on ``stream`` (default stderr) with the time elapsed and an estimate of the time
    left: redrawn in place on a terminal, a line every 10% otherwise (logs, CI). The work is
    chunks of one compiled program, so the rate is steady once the first chunk (which
    compiles) is done."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.printed = -1.0

    def __call__(self, p: Progress) -> None:
        step = 0.0 if self.tty else 0.1
        if p.fraction < 1.0 and p.fraction - self.printed < step:
            return
        self.printed = p.fraction
        filled = round(24 * p.fraction)
        bar = "#" * filled + "-" * (24 - filled)
        left = "" if math.isnan(p.remaining_s) or p.fraction >= 1.0 else f", ~{duration(p.remaining_s)} left"
        line = f"  [{bar}] {100 * p.fraction:5.1f}%  {duration(p.elapsed_s)} elapsed{left}"
        self.stream.write(("\r" + line.ljust(72)) if self.tty else line + "\n")
        if self.tty and p.fraction >= 1.0:
            self.stream.write("\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and 0 <= self.printed < 1.0:
            self.stream.write("\n")
            self.stream.flush()


class TqdmMeter:
    """A tqdm bar from 0 to 100 (% of the work); needs the optional ``tqdm`` package."""

    def __init__(self, **tqdm_options):
        try:
            from tqdm.auto import tqdm
        except ImportError:
            raise ConfigError("progress", "progress='tqdm' needs the tqdm package (pip install tqdm)") from None
        self.bar = tqdm(total=100.0, unit="%", bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}<{remaining}]",
                        **tqdm_options)

    def __call__(self, p: Progress) -> None:
        self.bar.update(100.0 * p.fraction - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def meter(progress) -> ProgressCallback | None:
    """A progress callback from what a user passes: None or False (none), "text" or True
    (``TextMeter``), "tqdm" (``TqdmMeter``) or any callable taking a ``Progress``."""
    if progress is None or progress is False:
        return None
    if progress is True or progress == "text":
        return TextMeter()
    if progress == "tqdm":
        return TqdmMeter()
    if callable(progress):
        return progress
    raise ConfigError("progress", f"must be None, 'text', 'tqdm' or a callable, got {progress!r}")


def close(progress) -> None:
    """Close a meter (a plain callback has nothing to close)."""
    getattr(progress, "close", lambda: None)()
