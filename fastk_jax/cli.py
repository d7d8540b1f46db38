"""The ``fastk-jax`` command.

    fastk-jax run CONFIG.toml [--seeds N] [--quick] [--out DIR] [--quiet]
    fastk-jax study NAME [--seeds N] [--quick] [--out DIR] [--quiet] | NAME --export FILE
    fastk-jax studies
    fastk-jax check-bounds [--json] [--quick] [--seed S]
    fastk-jax bench [--json] [--quick] [--seeds S] [--block B] [--workloads LIST] [--scaling [--out DIR]]

Bad input ends in one line on stderr naming the problem, exit status 2, no traceback, and
nothing written; a fault of the machine (a full disk) the same with exit status 1. Every
warning, from fastk-jax or a library it uses, is one line ``fastk-jax: warning: ...``.

Ctrl-C stops a run at any instant, with exit status 130 and a line that says whether results
were written; a run that was stopped never goes on to write them, and the same command resumes
from its checkpoints. The command imports JAX only once it has its signal handler, and a
watchdog thread ends the process ``GRACE_S`` seconds after a Ctrl-C that the main thread cannot
take (it is inside a long compilation, say), or at once on a second Ctrl-C: the run folder is
left as the next run expects it (``io.run_folder``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import select
import signal
import sys
import threading
import time
import warnings

from . import __version__
from .errors import FastkError, ResourceError, one_line
from .io import run_folder

EXIT_BAD_INPUT = 2
EXIT_FAULT = 1  # not the input's fault: a full disk, an I/O error (errors.ResourceError)
EXIT_INTERRUPTED = 130
GRACE_S = 2.0  # after a Ctrl-C, how long the main thread has to stop by itself


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        self.exit(EXIT_BAD_INPUT, f"fastk-jax: error: {message} (see {self.prog} --help)\n")


def _progress_printer(quiet: bool):
    """Progress of a long run on stderr (``engine.progress.TextMeter``), or none with --quiet."""
    if quiet:
        return None
    from .engine.progress import TextMeter

    return TextMeter()


def _say(quiet: bool):
    return (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr))


def _run(args) -> int:
    _state["run"] = True
    from .runner import folder
    from .study import library

    run_folder.check_interrupt()  # a Ctrl-C while JAX was imported
    if args.command == "study" and args.export:
        print(f"wrote {library.export(args.name, args.export)}")
        return 0
    path = args.config if args.command == "run" else library.find(args.name)
    show, say = _progress_printer(args.quiet), _say(args.quiet)

    def progress(p) -> None:  # after every chunk: a safe point to stop at
        run_folder.check_interrupt()
        if show is not None:
            show(p)

    def say_and_check(msg: str) -> None:  # between the steps of a run: the same
        run_folder.check_interrupt()
        say(msg)

    folder.run_file(path, args.out, args.seeds, args.quick, progress=progress, say=say_and_check)
    return 0


def _studies(args) -> int:
    from .study import library

    entries = library.describe()
    width = max(len(name) for name, _ in entries)
    for name, description in entries:
        print(f"{name.ljust(width)}  {description}")
    return 0


def _check_bounds(args) -> int:
    from .engine.devices import check_platform
    from .errors import ConfigError
    from .runner import check_bounds

    check_platform()

    if not 0 <= args.seed <= 2**32 - 1:
        raise ConfigError("--seed", f"must be from 0 to {2**32 - 1}, got {args.seed}")
    checks = check_bounds.run_checks(quick=args.quick, seed=args.seed)
    if args.json:
        from .io.files import finite_json

        print(json.dumps(finite_json([c.as_dict() for c in checks]), allow_nan=False))
    else:
        print(check_bounds.format_table(checks))
    return 0


def _bench(args) -> int:
    from . import bench
    from .engine.devices import check_platform
    from .errors import ConfigError

    check_platform()

    if not args.quick and not 1 <= args.seeds <= 1_000_000:
        raise ConfigError("--seeds", f"must be from 1 to 1000000, got {args.seeds}")
    if args.block is not None and not 1 <= args.block <= 2**16:
        raise ConfigError("--block", f"must be from 1 to {2**16}, got {args.block}")
    if args.scaling:
        quick = {"seeds": (1, 16, 256), "ns": (10, 50), "ds": (50, 100), "configs": (1, 5), "work": 2e10} if args.quick else {}
        out = args.out or "results/bench-scaling"

        def say(point):
            print(
                f"  {point['axis']:5s} n={point['n']:<4d} d={point['d']:<4d} S={point['seeds']:<5d} "
                f"{point['seed_iters_per_s']:12,.0f} seed-iterations/s",
                flush=True,
            )

        result = bench.scaling(out, block=args.block, progress=None if args.json else say, **quick)
        print(json.dumps(result) if args.json else f"wrote {out}/scaling.json, .csv, .png, .pdf")
        return 0
    sizes = {"seeds": 16, "iterations": 60, "reference_iterations": 60} if args.quick else {"seeds": args.seeds}
    report = bench.run(**sizes, block=args.block, **_bench_workloads(args.workloads))
    if args.json:
        print(json.dumps(report))
    else:
        print(bench.format_report(report))
    return 0


def _bench_workloads(names: str | None) -> dict[str, bool]:
    """``--workloads fig3,async`` as ``bench.run``'s switches; Fig. 3 is the report's top level."""
    from . import bench
    from .errors import ConfigError

    if names is None:
        return {}
    chosen = [name.strip() for name in names.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(bench.WORKLOADS))
    if unknown:
        raise ConfigError("--workloads", f"unknown workload {unknown[0]!r}; choose from {', '.join(bench.WORKLOADS)}")
    if "fig3" not in chosen:
        raise ConfigError("--workloads", "must include fig3 (the report's top-level keys)")
    return {"logistic": "logistic" in chosen, "mlp": "mlp" in chosen, "asynchronous": "async" in chosen}


_state = {"run": False}  # whether this command runs a study (for the interrupt message)


def _interrupted_message() -> str:
    """What a Ctrl-C left: the results written, or not (and whether the same command resumes)."""
    written, claimed = run_folder.written(), run_folder.claimed(ever=True)
    if written:
        return f"fastk-jax: interrupted after the results were written to {written[-1]}/"
    if not _state["run"]:
        return "fastk-jax: interrupted"
    if not claimed:
        return "fastk-jax: interrupted before the run started; nothing written"
    out = claimed[-1]
    partial = run_folder.partial_path(out)
    again = (
        f"the same command resumes from the checkpoints in {partial}/"
        if partial.is_dir()
        else "the same command starts it again"
    )
    kept = "it holds what it held before" if out.exists() else "it was not made"
    return f"fastk-jax: interrupted; no results written to {out}/ ({kept}); {again}"


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    text = one_line(str(message).strip())
    print(f"fastk-jax: warning: {text}", file=sys.stderr if file is None else file)


class _OneLine(logging.Handler):
    """Library log records of level WARNING and above (JAX logs some), as one-line warnings."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage().strip().splitlines()
        except Exception:  # noqa: BLE001 (a malformed log call must not stop a run)
            text = [str(record.msg)]
        level = "warning" if record.levelno < logging.ERROR else "error (logged)"
        print(f"fastk-jax: {level}: {one_line(text[0] if text else '')}", file=sys.stderr)


@contextlib.contextmanager
def _signals_and_warnings():
    """For one command: SIGINT marks the process (``run_folder.interrupt``; the run stops at its
    next safe point), with a watchdog for a main thread that does not get there in time;
    warnings and library log records print as one line. Everything is restored afterwards,
    the interrupt mark included (the command also runs in process, from tests and the API)."""
    run_folder.reset_interrupt()
    _state["run"] = False
    old_show = warnings.showwarning
    warnings.showwarning = _show_warning
    root = logging.getLogger()
    handler = _OneLine(logging.WARNING)
    root.addHandler(handler)
    lastresort, logging.lastResort = logging.lastResort, None
    watch = None
    # a SIGINT ignored by whoever started the command (nohup, a background job) stays ignored
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        watch = _Watchdog()
    try:
        yield watch
    finally:
        if watch is not None:
            watch.stop()
        run_folder.reset_interrupt()  # the message is out: later work in this process starts afresh
        root.removeHandler(handler)
        logging.lastResort = lastresort
        warnings.showwarning = old_show


class _Watchdog:
    """The SIGINT handler (``run_folder.interrupt``: the run stops at its next safe point), and a
    thread woken by every signal (``signal.set_wakeup_fd``: the interpreter writes the signal's
    number there even while the main thread is inside C code). After a Ctrl-C the main thread
    has ``GRACE_S`` seconds to stop by itself; if it has not (a long compilation, a long chunk),
    or on a second Ctrl-C, the thread waits for any swap of a results folder to finish, says
    what was written, and ends the process with status 130."""

    def __init__(self):
        self.reported = False
        self._old_handler = signal.signal(signal.SIGINT, self._on_sigint)
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._old_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        self._stopping = False
        self._thread = threading.Thread(target=self._watch, name="fastk-jax interrupt watchdog", daemon=True)
        self._thread.start()

    @staticmethod
    def _on_sigint(signum, frame) -> None:
        run_folder.interrupt()

    def _watch(self) -> None:
        sigint = signal.SIGINT.to_bytes(1, "little")
        deadline = None
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._read], [], [], timeout)
            if self._stopping:
                return
            if not ready:  # the grace period is over
                break
            data = os.read(self._read, 64)
            if self._stopping or not data:
                return
            hits = data.count(sigint)
            if hits and deadline is not None or hits > 1:
                break  # a second Ctrl-C: now
            if hits:
                deadline = time.monotonic() + GRACE_S
        with run_folder.settled():
            if not self.reported:
                print(_interrupted_message(), file=sys.stderr, flush=True)
            sys.stdout.flush()
            os._exit(EXIT_INTERRUPTED)

    def stop(self) -> None:
        self._stopping = True
        signal.set_wakeup_fd(self._old_fd)
        signal.signal(signal.SIGINT, self._old_handler)
        with contextlib.suppress(OSError):
            os.write(self._write, b"\0")
        self._thread.join(timeout=5)
        os.close(self._read)
        os.close(self._write)


def main(argv: list[str] | None = None) -> int:
    with _signals_and_warnings() as watch:
        try:
            code = _main(argv)
        except KeyboardInterrupt:
            code = EXIT_INTERRUPTED
        except BaseException:  # after a Ctrl-C, whatever a library made of it is the interrupt
            if not run_folder.interrupted():
                raise
            code = EXIT_INTERRUPTED
        if code != EXIT_INTERRUPTED and not run_folder.interrupted():
            return code
        if watch is not None:
            watch.reported = True
        print(_interrupted_message(), file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED


def console() -> None:
    """The ``fastk-jax`` command: ``main``, and after a Ctrl-C an exit that skips the teardown
    of JAX's runtime (which can take long, or crash, after an interrupted compilation)."""
    code = main()
    if code == EXIT_INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _main(argv: list[str] | None) -> int:
    parser = _Parser(prog="fastk-jax", description="Monte Carlo studies of distributed SGD with stragglers.")
    parser.add_argument("--version", action="version", version=f"fastk-jax {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run a study described in a TOML file")
    run.add_argument("config", help="the study's TOML file, e.g. studies/adaptive-fig3.toml")
    named = sub.add_parser("study", help="run a registered study by name (see `fastk-jax studies`)")
    named.add_argument("name", help="e.g. adaptive-fig3")
    named.add_argument("--export", metavar="FILE", help="copy the study's TOML file to FILE (or into a folder) to edit")
    for p in (run, named):
        p.add_argument("--seeds", type=int, help="number of seeds (overrides run.seeds)")
        p.add_argument("--quick", action="store_true", help="a short version (under a minute on 2 CPU cores)")
        p.add_argument("--out", help="output folder (default results/NAME)")
        p.add_argument("--quiet", action="store_true", help="no progress output")
        p.set_defaults(handler=_run)
    sub.add_parser("studies", help="list the registered studies").set_defaults(handler=_studies)
    check = sub.add_parser("check-bounds", help="theory against simulation, claim by claim")
    check.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    check.add_argument("--quick", action="store_true", help="fewer samples (seconds, not minutes)")
    check.add_argument("--seed", type=int, default=0, help="Monte Carlo seed (default 0)")
    check.set_defaults(handler=_check_bounds)
    bench = sub.add_parser("bench", help="the engine against the NumPy reference (Fig. 3 and logistic workloads)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument("--quick", action="store_true", help="a small run (seconds)")
    bench.add_argument("--seeds", type=int, default=1024, help="engine seeds per policy (default 1024)")
    bench.add_argument("--block", type=int, help="runs per block (default: the platform's, engine.default_block)")
    bench.add_argument(
        "--workloads", help="the parts to measure, comma-separated from fig3,logistic,mlp,async (default: all)"
    )
    bench.add_argument("--scaling", action="store_true", help="rate against seeds, n and d, with a figure")
    bench.add_argument("--out", help="--scaling's output folder (default results/bench-scaling)")
    bench.set_defaults(handler=_bench)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ResourceError as e:
        print(f"fastk-jax: error: {e}", file=sys.stderr)
        return EXIT_FAULT
    except FastkError as e:
        print(f"fastk-jax: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    console()
