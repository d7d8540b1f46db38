"""A cache of logistic regression's F* on disk, so that a re-run does not repeat Newton's method.

F* of a logistic problem (``core.problems.logistic_optimum``) takes about 4 minutes on all
60,000 MNIST images, and a study computes it before it can tell whether its results are
already complete. ``optimum`` computes it once per content and keeps it in a small file:

* where: ``$FASTK_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/fastk-jax``, else
  ``~/.cache/fastk-jax`` (``cache_dir``); one file ``f_star-KEY.json`` per problem;
* the key (``optimum_key``): sha256 of the rows and targets (dtype, shape and bytes), ``reg``,
  ``OPTIMUM_VERSION`` of the routine and the NumPy version (its BLAS sets F*'s last bits),
  so any change of data, classes (they are the targets), weight or code is a miss. The value
  is F* as the exact float (``float.hex``), so a hit gives the bits a computation gives, and
  a study's fingerprint (which covers F*) is the same either way;
* the cache never fails a run: a file that cannot be read, parsed or written is ignored
  (computed again, a miss), and writes go through a temporary file and a rename, so a killed
  or concurrent run leaves either no file or a whole one.

Progress: when the computation has run for more than a second, a line per class goes to
``say`` (the CLI's stderr, silent with --quiet), with the time elapsed and left.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..core.problems import OPTIMUM_VERSION, logistic_optimum
from ..engine.progress import duration

QUIET_S = 1.0  # no progress lines before the computation has run this long


def cache_dir() -> Path:
    """The cache folder: ``$FASTK_CACHE_DIR``, else ``$XDG_CACHE_HOME/fastk-jax``, else
    ``~/.cache/fastk-jax`` (not created here)."""
    if os.environ.get("FASTK_CACHE_DIR"):
        return Path(os.environ["FASTK_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fastk-jax"


def optimum_key(x: np.ndarray, targets: np.ndarray, reg: float) -> str:
    """sha256 (hex) of what F* depends on: the rows, the targets, reg and the routine's version."""
    h = hashlib.sha256(f"logistic_optimum {OPTIMUM_VERSION} numpy {np.__version__} reg {float(reg).hex()}\0".encode())
    for a in (x, targets):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str} {a.shape}\0".encode())
        h.update(a.data)
    return h.hexdigest()


def _read(path: Path, key: str) -> float | None:
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
        value = float.fromhex(entry["f_star"]) if entry.get("key") == key else None
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None  # missing, unreadable or corrupt: computed again
    return value if value is not None and np.isfinite(value) else None


def _write(path: Path, key: str, value: float) -> None:
    text = json.dumps({"key": key, "f_star": float(value).hex(), "value": float(value), "version": OPTIMUM_VERSION})
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
        os.replace(tmp, path)
        tmp = None
    except OSError:
        pass  # a read-only or full cache costs the next run the computation, nothing else
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):  # already renamed into place, or never made
                os.unlink(tmp)


def optimum(x: np.ndarray, targets: np.ndarray, reg: float, say: Callable[[str], None] | None = None) -> float:
    """F* of logistic regression on rows ``x`` (m, d) with targets (m, C): from the cache, or by
    ``logistic_optimum`` (and then stored). ``say`` receives the progress lines."""
    key = optimum_key(x, targets, reg)
    path = cache_dir() / f"f_star-{key[:32]}.json"
    cached = _read(path, key)
    if cached is not None:
        return cached
    started = time.perf_counter()
    told = False

    def progress(done: int, classes: int, iterations: int) -> None:
        nonlocal told
        elapsed = time.perf_counter() - started
        if say is None or elapsed < QUIET_S:
            return
        if not told:
            say(f"fastk-jax: computing F* by Newton's method on {x.shape[0]} x {x.shape[1]} rows, {classes} classes "
                f"(cached in {path.parent}/ for the next run)")
            told = True
        left = f", ~{duration(elapsed / done * (classes - done))} left" if done < classes else ""
        say(f"  F*: class {done}/{classes} ({iterations} Newton steps), {duration(elapsed)} elapsed{left}")

    value, _ = logistic_optimum(x, targets, reg, progress=progress)
    _write(path, key, value)
    return value
