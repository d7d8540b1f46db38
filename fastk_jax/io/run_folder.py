"""The run folder OUT: one run at a time, writability probed for real, new results swapped in
whole, and what a killed run left behind cleaned up by the next.

Everything lives beside OUT and is named after it:

* ``OUT.lock``: the lock, a file made with ``O_CREAT | O_EXCL`` that holds the pid of the run
  that owns OUT (and an ``flock`` on it, so that the kernel frees it when that process dies). A
  second run into the same OUT stops with one line while the first is alive; a lock whose
  process is dead is taken over.
* ``OUT.partial/``: the run's checkpoints (``engine.checkpoint``), removed once the results are in.
* ``.OUT.xxxxxxxx/``: a results folder being written (staging).
* ``.OUT.fastk-new/``: a complete results folder, ready to be swapped in.
* ``.OUT.fastk-old/``: the results being replaced (an empty folder when there were none).
* ``.OUT.xxxxxxxx-p``: a probe file (``check_writable``), there for an instant.

**Commit** (``commit``): the staging folder, complete and fsynced, is renamed ``.OUT.fastk-new``;
OUT is renamed ``.OUT.fastk-old`` (or an empty one is made); ``.OUT.fastk-new`` is renamed OUT;
then ``OUT.partial/`` and ``.OUT.fastk-old`` are removed, in that order. Each rename is atomic,
so at every instant OUT holds the old results, nothing (between the two renames), or the new
results, never a mix of files from two runs.

**Recovery** (``claim``, under the lock, before a run starts): ``.OUT.fastk-new`` means a commit
was killed before its last rename; its results are complete, so the commit is finished (rolled
forward). ``.OUT.fastk-old`` without it means the swap was done and the clean-up was not:
``OUT.partial/`` and ``.OUT.fastk-old`` are removed. Staging folders, checkpoint temporary
files and probe files of killed runs are removed. A run killed at any instant therefore leaves
a state that the next run of the same command completes, bit-identically.

**Interrupts.** ``interrupt`` is what the CLI's SIGINT handler calls: it marks the process
interrupted, and the run raises KeyboardInterrupt at its next safe point (``check_interrupt``);
an interrupted process never starts a swap, and a Ctrl-C during one (Python's own handler, from
the Python API) takes effect once it is done. ``written`` and ``claimed`` say what to tell the user.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from ..errors import FastkError, from_os_error

try:
    import fcntl
except ImportError:  # pragma: no cover (not POSIX: the pid alone decides whether a lock is stale)
    fcntl = None

NEW, OLD, PROBE = ".fastk-new", ".fastk-old", "-p"  # probe: ``.OUT.xxxxxxxx-p``

_held: dict[Path, tuple[int, int]] = {}  # lock path -> (file descriptor, depth) of the locks this process holds
_claimed: list[Path] = []  # output folders this process holds now
_ever: list[Path] = []  # output folders this process has claimed (for the interrupt message)
_written: list[Path] = []  # output folders this process has committed results into
_swap = threading.RLock()  # held during a swap: the CLI's watchdog waits for it before it ends the process
_flags = {"interrupted": False}  # a plain flag: a signal handler sets it between any two bytecodes


def lock_path(out: Path) -> Path:
    return out.parent / f"{out.name}.lock"


def partial_path(out: Path) -> Path:
    return out.parent / f"{out.name}.partial"  # the same as engine.checkpoint.partial_folder


def _aside(out: Path, suffix: str) -> Path:
    return out.parent / f".{out.name}{suffix}"


def check_writable(out: Path) -> None:
    """Raise a one-line FastkError unless OUT is, or can be made as, a folder that fastk-jax
    can write, with room in its parent folder's name length for the files beside it: probed by
    really creating (and removing) a file, since permission bits do not say what a file system
    refuses (/proc, a read-only mount, root on a foreign mount)."""
    out = Path(out)
    try:
        if out.exists() and not out.is_dir():
            raise FastkError(f"output folder {out} exists and is not a folder")
        partial = partial_path(out)
        if partial.exists() and not partial.is_dir():
            raise FastkError(
                f"{partial} exists and is not a folder: fastk-jax keeps a run's checkpoints there; remove it"
            )
        existing = out.parent
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise FastkError(f"cannot write output folder {out}: {existing} is not a folder")
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            raise FastkError(f"output folder name {out.name!r} is too long for the file system") from None
        raise from_os_error(e, f"cannot use output folder {out}") from None
    # a name of its own (runs probe at once) at least as long as any fastk-jax puts beside OUT,
    # in the deepest folder that exists
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=PROBE, dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            raise FastkError(f"output folder name {out.name!r} is too long for the file system") from None
        raise from_os_error(e, f"cannot write output folder {out}: {existing} refuses new files") from None


@contextlib.contextmanager
def claim(out: str | Path) -> Iterator[Path]:
    """Hold OUT for one run: probe it (``check_writable``), take ``OUT.lock`` (one line and no
    change to anything when another live run holds it), finish or clean up what killed runs
    left (``recover``), and release the lock at the end. Reentrant within a process; under
    ``jax.distributed`` only process 0 locks (the others write nothing)."""
    out = Path(out)
    check_writable(out)
    if _process_index() != 0:  # pragma: no cover (multi-host only)
        yield out
        return
    lock = lock_path(out)
    key = lock.absolute()
    if key in _held:
        fd, depth = _held[key]
        _held[key] = (fd, depth + 1)
        try:
            yield out
        finally:
            fd, depth = _held[key]
            _held[key] = (fd, depth - 1)
        return
    made = _make_parents(out.parent)
    try:
        fd = _lock(lock, out)
    except BaseException:
        for folder in made:  # leave nothing behind: the run did not start
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    _held[key] = (fd, 1)
    _claimed.append(out)
    _ever.append(out)
    try:
        recover(out)
        yield out
    finally:
        _claimed.remove(out)
        del _held[key]
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)
        for folder in made:  # the parents made for a run that wrote nothing (bad data, say)
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty


def _process_index() -> int:
    import jax

    return jax.process_index()


def _make_parents(folder: Path) -> list[Path]:
    """Make ``folder`` and its missing parents; the ones made, deepest first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    try:
        for f in reversed(missing):
            f.mkdir()
    except OSError as e:
        raise from_os_error(e, f"cannot make output folder {f}") from None
    return missing


def _lock(lock: Path, out: Path) -> int:
    """The file descriptor of ``lock``, made or taken over from a dead run, with our pid in it."""
    for _ in range(20):  # each turn ends in success, refusal, or a race lost to another run
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
        except FileExistsError:
            fd = _take_over(lock, out)
            if fd is None:
                continue
        except OSError as e:
            raise from_os_error(e, f"cannot write output folder {out}: cannot make {lock}") from None
        else:
            if fcntl is not None:
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody else has it open yet
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as e:
            os.close(fd)
            raise from_os_error(e, f"cannot write output folder {out}: cannot write {lock}") from None
        return fd
    raise FastkError(f"cannot take {lock}: other runs keep taking it")  # pragma: no cover


def _take_over(lock: Path, out: Path) -> int | None:
    """``lock`` (which exists) opened and locked if its run is dead; None if it went away
    meanwhile (try again); FastkError if its run is alive."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise from_os_error(e, f"cannot write output folder {out}: cannot open {lock}") from None
    pid = _read_pid(fd)
    alive = _alive(pid)
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alive = False  # the kernel freed the flock: its holder is gone, whatever its pid says now
        except BlockingIOError:
            alive = True
        except OSError:  # a file system without flock: the pid decides
            alive = _alive(pid)
    if alive and pid != os.getpid():
        os.close(fd)
        who = f"pid {pid}" if pid else "a process that is starting"
        raise FastkError(
            f"{out} is in use by another fastk-jax run ({who}, {lock}): wait for it to finish "
            "(or remove the lock file if no such run is going on)"
        )
    try:  # still the same file? (the owner may have released it, and a third run made a new one)
        same = os.stat(lock).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        same = False
    if not same:
        os.close(fd)
        return None
    return fd


def _read_pid(fd: int) -> int:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0)
    except (OSError, ValueError):
        return 0


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def recover(out: Path) -> None:
    """Finish or clean up what runs killed inside ``commit`` left beside OUT (see the module
    docstring): called under the lock."""
    new, old, partial = _aside(out, NEW), _aside(out, OLD), partial_path(out)
    try:
        if new.is_dir():  # killed before the last rename: the new results are complete
            if out.exists():
                if old.exists():
                    shutil.rmtree(old)
                os.rename(out, old)
            elif not old.exists():
                old.mkdir()
            os.rename(new, out)
        if old.exists():  # the swap is done; its clean-up is not
            if not out.exists() and any(old.iterdir()):  # pragma: no cover (not a state commit makes)
                os.rename(old, out)
            else:
                shutil.rmtree(partial, ignore_errors=True)
                shutil.rmtree(old)
        remove_stale_staging(out)
        if partial.is_dir():  # checkpoint temporaries of killed writes (engine.checkpoint.write_atomic)
            for tmp in partial.rglob(".*.tmp"):
                tmp.unlink(missing_ok=True)
    except OSError as e:
        raise from_os_error(e, f"cannot clean up beside output folder {out}") from None


def remove_stale_staging(out: Path) -> None:
    """Remove staging folders a killed ``save`` of ``out`` left (``.NAME.xxxxxxxx`` beside it),
    and probe files of killed ``check_writable`` calls (``.NAME.xxxxxxxx-p``)."""
    staging = re.compile(rf"\.{re.escape(out.name)}\.[a-z0-9_]{{8}}")
    probe = re.compile(rf"\.{re.escape(out.name)}\.[a-z0-9_]{{8}}{re.escape(PROBE)}")
    for entry in out.parent.iterdir():
        if staging.fullmatch(entry.name) and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        elif probe.fullmatch(entry.name) and entry.is_file():
            entry.unlink(missing_ok=True)


def commit(out: Path, staging: Path, checkpoints: Path | None = None) -> None:
    """Swap the complete folder ``staging`` (beside OUT) in as OUT, then remove the old results
    and ``checkpoints`` (see the module docstring). Raises KeyboardInterrupt, changing nothing,
    if the process was interrupted."""
    new, old = _aside(out, NEW), _aside(out, OLD)
    _fsync_tree(staging)
    with _swap, _sigint_held() as held:
        check_interrupt()
        os.rename(staging, new)
        if out.exists():
            os.rename(out, old)
        else:
            old.mkdir()
        os.rename(new, out)
        _written.append(out)
        _fsync_dir(out.parent)
    if checkpoints is not None:
        shutil.rmtree(checkpoints, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    if held:  # a Ctrl-C during the swap: it is done and cleaned up, now stop
        raise KeyboardInterrupt
    check_interrupt()


@contextlib.contextmanager
def _sigint_held() -> Iterator[list[int]]:
    """Python's own SIGINT handler (the Python API; the CLI's never raises) held off during the
    swap: the signals that came meanwhile are in the list yielded, for the caller to raise
    KeyboardInterrupt once the swap is done."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield got
        return
    old = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    try:
        yield got
    finally:
        signal.signal(signal.SIGINT, old)


def _fsync_tree(folder: Path) -> None:
    """Flush ``folder``'s files and the folder itself to disk, so that a power cut after the
    swap cannot leave OUT with empty files (best effort where a file system refuses)."""
    for f in folder.iterdir():
        if f.is_file():
            with contextlib.suppress(OSError):
                fd = os.open(f, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover (platforms without directory fds)
        return
    with contextlib.suppress(OSError):
        os.fsync(fd)
    os.close(fd)


def interrupt() -> None:
    """What the CLI's SIGINT handler calls: mark the process interrupted. It never raises
    (KeyboardInterrupt raised at an arbitrary instant can be swallowed by a garbage collector
    callback, or turned into an ImportError inside an extension's import); the run raises it
    itself at its next safe point (``check_interrupt``: between chunks, between steps, before
    a swap), and the CLI's watchdog ends a process that does not get there in time."""
    _flags["interrupted"] = True


def interrupted() -> bool:
    return _flags["interrupted"]


def check_interrupt() -> None:
    """Raise KeyboardInterrupt if the process was interrupted (``interrupt``)."""
    if _flags["interrupted"]:
        raise KeyboardInterrupt


def reset_interrupt() -> None:
    """Forget an interrupt and what was written (the CLI, called in process, starts each command afresh)."""
    _flags["interrupted"] = False
    _written.clear()
    _ever.clear()


@contextlib.contextmanager
def settled(timeout_s: float = 30.0) -> Iterator[None]:
    """Wait (at most ``timeout_s``) for a swap under way to finish, and hold off new ones: what
    a watchdog that ends the process takes first, so that what it says about OUT is true."""
    got = _swap.acquire(timeout=timeout_s)
    try:
        yield
    finally:
        if got:
            _swap.release()


def written() -> list[Path]:
    """Output folders this process has committed results into."""
    return list(_written)


def claimed(ever: bool = False) -> list[Path]:
    """Output folders this process holds now (``ever``: has held)."""
    return list(_ever if ever else _claimed)
