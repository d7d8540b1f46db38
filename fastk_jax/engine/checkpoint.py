"""Checkpoints: a simulation's state on disk, so that a killed run resumes where it stopped.

A study's checkpoints live in one folder (``registry.run_file`` uses ``OUT.partial/`` beside
the output folder ``OUT`` and removes it once the results are written), one file per *slot*
(a compiled group of configurations: ``group-0.npz``, ...). A file holds the engine's state
after a whole chunk of iterations, for every call of the chunk program (one unless the memory
guard splits the runs): the flattened leaves of each call's ``engine.Carry`` (PRNG keys as their raw ``key_data``), and a JSON manifest (the
chunks done, timings, and the *key*: a hash of everything that determines the results). Arrays
and JSON only: no pickle.

**Atomic.** A checkpoint is written to a temporary file in the same folder, flushed and
fsynced, then renamed over the previous one (``os.replace``), so a process killed at any
moment leaves the previous checkpoint or the new one, never half of one.

**Never damaged.** A checkpoint's manifest holds a content hash of its arrays (as results.npz
does, ``files.content_hash``); ``load`` ignores (with a warning) a file whose arrays do not
match it, a file that is not a checkpoint, and a folder in a checkpoint's place. A write that
fails (a full disk) removes its temporary file, keeps the previous checkpoint, and ends in a
one-line error (``errors.from_os_error``).

**Never stale.** ``load`` returns a checkpoint only if its key is the one asked for; the
engine's key hashes the problem's arrays, the configurations' arrays, the static settings,
every run parameter, the run layout (block size, devices, calls), the device platform and the package versions. A file
with another key, or one that cannot be read, is ignored (with a warning) and overwritten.

**Cadence.** A slot saves after a chunk when ``every_s`` seconds have passed since its last
save (0: after every chunk), and always when its simulation finishes; so a kill loses at most
``every_s`` seconds of work plus one chunk.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ..errors import ConfigError, from_os_error
from ..io.files import content_hash

FORMAT = "fastk-jax checkpoint 2"  # 2: with the content hash
DEFAULT_EVERY_S = 30.0


def fingerprint(*parts: Any) -> str:
    """sha256 over ``parts``: JSON-able values (canonical JSON) and pytrees of arrays (their
    structure, static fields included (a problem's loss: a user's function by its repr, so a
    lambda, whose repr holds its address, never matches another process and is recomputed),
    then each leaf's dtype, shape and bytes, in tree order; PRNG keys by their key data)."""
    h = hashlib.sha256()
    for part in parts:
        leaves = jax.tree.leaves(part)
        if all(isinstance(x, (str, int, float, bool, type(None))) for x in leaves):
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
            continue
        h.update(str(jax.tree.structure(part)).encode())
        for x in leaves:
            if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
                x = jax.random.key_data(x)
            a = np.ascontiguousarray(np.asarray(x))
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable, where the platform can fsync a folder (else skip)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover (platforms without directory fds)
        return
    with contextlib.suppress(OSError):  # some file systems refuse fsync on a folder: best effort
        os.fsync(fd)
    os.close(fd)


def partial_folder(out: Path) -> Path:
    """Where the run writing into ``out`` keeps its checkpoints: ``OUT.partial/`` beside it."""
    return out.parent / f"{out.name}.partial"


def cadence(every_s: float | str | None = None) -> float | None:
    """Seconds between checkpoints: ``every_s``, else ``$FASTK_CHECKPOINT_EVERY_S``, else 30;
    None for "off" (no checkpoints), 0 for after every chunk. Anything but a finite number of
    seconds >= 0 or "off" is refused (ConfigError naming the variable): nan would mean never
    and a negative number always, silently."""
    every = os.environ.get("FASTK_CHECKPOINT_EVERY_S", "30") if every_s is None else every_s
    if str(every).strip().lower() == "off":
        return None
    try:
        seconds = float(every)
    except (TypeError, ValueError):
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ConfigError(
            "FASTK_CHECKPOINT_EVERY_S", f"must be a finite number of seconds >= 0 or 'off', got {str(every)!r}"
        )
    return seconds


def write_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez ``arrays`` to ``path`` atomically: a temporary file beside it, fsynced, renamed.
    If anything fails, the temporary file (and a folder made for it, left empty) is removed and
    whatever was at ``path`` stays; the exception is raised."""
    made = not path.parent.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(OSError):
                Path(tmp).unlink(missing_ok=True)
        if made:
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # only if empty
        raise
    _fsync_dir(path.parent)


class Slot:
    """One simulation's checkpoint file, ``folder/name.npz``."""

    def __init__(self, folder: str | Path, name: str, every_s: float = DEFAULT_EVERY_S):
        self.path = Path(folder) / f"{name}.npz"
        self.every_s = float(every_s)
        self.saves = 0  # checkpoints written by this process
        self.save_s = 0.0  # seconds spent writing them
        self._last = time.monotonic()

    def due(self) -> bool:
        """Whether ``every_s`` seconds have passed since the last save (or since the slot was made)."""
        return time.monotonic() - self._last >= self.every_s

    def save(self, key: str, batches: list[list[np.ndarray]], manifest: dict[str, Any]) -> None:
        """Write every batch's leaves and ``manifest`` (JSON) under ``key``. Only process 0 of a
        multi-host run writes (the others hold the same gathered state)."""
        if jax.process_index() != 0:
            return
        started = time.perf_counter()
        arrays = {f"b{b}_{i}": np.asarray(leaf) for b, leaves in enumerate(batches) for i, leaf in enumerate(leaves)}
        meta = {"format": FORMAT, "key": key, "batches": len(batches), "leaves": len(batches[0]), **manifest}
        meta["sha256"] = content_hash(arrays)
        arrays["manifest"] = np.asarray(json.dumps(meta, sort_keys=True))
        try:
            if self.path.is_dir():  # not a checkpoint (load said so): it is in fastk-jax's own folder
                shutil.rmtree(self.path)
            write_atomic(self.path, arrays)
        except OSError as e:
            raise from_os_error(
                e,
                f"cannot write checkpoint {self.path}",
                "the checkpoints written before are kept, and the same command resumes from them",
            ) from None
        self.saves += 1
        self.save_s += time.perf_counter() - started
        self._last = time.monotonic()

    def load(self, key: str) -> tuple[list[list[np.ndarray]], dict[str, Any]] | None:
        """The batches' leaves and the manifest saved under ``key``, or None (no file, another
        key, or a file that is unreadable, does not match its content hash or is not a
        checkpoint: warned about, and overwritten by the next save)."""
        if not self.path.exists():
            return None
        if self.path.is_dir():
            warnings.warn(f"checkpoint {self.path} is a folder, not a checkpoint; starting over", stacklevel=3)
            return None
        try:
            with np.load(self.path, allow_pickle=False) as f:
                meta = json.loads(str(f["manifest"]))
                if meta.get("format") != FORMAT or meta.get("key") != key:
                    warnings.warn(
                        f"checkpoint {self.path} was made for another configuration or version; starting over",
                        stacklevel=3,
                    )
                    return None
                arrays = {name: f[name] for name in f.files if name != "manifest"}
            batches = [[arrays[f"b{b}_{i}"] for i in range(meta["leaves"])] for b in range(meta["batches"])]
        except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError, zipfile.BadZipFile) as e:
            warnings.warn(f"checkpoint {self.path} is unreadable ({type(e).__name__}); starting over", stacklevel=3)
            return None
        if content_hash(arrays) != meta.get("sha256"):
            warnings.warn(
                f"checkpoint {self.path} does not match its content hash (damaged or edited); starting over",
                stacklevel=3,
            )
            return None
        return batches, meta


class Store:
    """A folder of checkpoint slots (created on the first save)."""

    def __init__(self, folder: str | Path, every_s: float = DEFAULT_EVERY_S):
        self.folder = Path(folder)
        self.every_s = float(every_s)

    def slot(self, name: str) -> Slot:
        return Slot(self.folder, name, self.every_s)
