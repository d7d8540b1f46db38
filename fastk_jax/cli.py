"""The ``fastk-jax`` command.

    fastk-jax run CONFIG.toml [--seeds N] [--out DIR] [--quiet]

Bad input ends in one line on stderr naming the problem, exit status 2, no traceback, and
nothing written.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from . import __version__
from .errors import FastkError

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        self.exit(EXIT_BAD_INPUT, f"fastk-jax: error: {message} (see {self.prog} --help)\n")


def _progress_printer(quiet: bool):
    if quiet:
        return None
    tty = sys.stderr.isatty()
    last = {"printed": -1.0}

    def show(p) -> None:
        step = 0.0 if tty else 0.1  # without a terminal, a line every 10%
        if p.fraction < 1.0 and p.fraction - last["printed"] < step:
            return
        last["printed"] = p.fraction
        left = "" if p.remaining_s != p.remaining_s else f", about {p.remaining_s:.0f} s left"
        line = f"  {100 * p.fraction:5.1f}%  {p.iterations} iterations, {p.elapsed_s:.0f} s{left}"
        sys.stderr.write(("\r" + line.ljust(70)) if tty else line + "\n")
        if tty and p.fraction >= 1.0:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def _run(args) -> int:
    from . import plotting, results, study

    s = study.load_study(args.config, seeds=args.seeds)
    out = Path(args.out) if args.out else Path("results") / s.name
    results.check_writable(out)
    say = (lambda *a: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepared = study.prepare(s)  # loads the data: bad data fails here, before any output
        say(f"fastk-jax: {s.name}: {len(prepared.labels)} configurations x {s.run['seeds']} seeds")
        started = time.perf_counter()
        labels, sim = study.run_study(s, progress=_progress_printer(args.quiet), prepared=prepared)
        wall = time.perf_counter() - started
    for w in caught:
        print(f"fastk-jax: warning: {w.message}", file=sys.stderr)

    res = results.from_simulation(labels, sim, s.problem["n_workers"], s.delays["mean"], s.run["seeds"])
    for label, count in zip(labels, res.diverged):
        if count:
            print(
                f"fastk-jax: warning: {label}: {count} of {s.run['seeds']} runs diverged; they are left out of the curves",
                file=sys.stderr,
            )
    summary = {
        "name": s.name,
        "seeds": s.run["seeds"],
        "iterations": sim.iterations,
        "wall_s": round(wall, 3),
        "compile_s": round(sim.compile_s, 3),
        "initial_error": sim.initial_error,
        "configurations": [
            {
                "label": str(label),
                "final_error": float(res.bands["error"].mean[c, -1]),
                "final_error_half_width": float(res.bands["error"].half_width[c, -1]),
                "final_k": float(res.bands["k"].mean[c, -1]),
                "diverged": int(res.diverged[c]),
            }
            for c, label in enumerate(labels)
        ],
        "versions": _versions(),
    }

    def figure(folder: Path) -> None:
        plotting.save_figure(plotting.error_vs_time(res, title=s.name), folder / "figure")

    results.save(out, res, s.as_dict(), summary, figures=[figure])
    say(
        f"fastk-jax: wrote {out}/results.npz, config.json, summary.json, figure.png, figure.pdf ({wall:.1f} s, {sim.compile_s:.1f} s compiling)"
    )
    for c in summary["configurations"]:
        say(f"  {c['label']:<24} final error {c['final_error']:.4g} +- {c['final_error_half_width']:.2g}")
    return 0


def _versions() -> dict[str, str]:
    import jax
    import numpy as np
    import optax

    from . import __version__

    return {"fastk_jax": __version__, "jax": jax.__version__, "optax": optax.__version__, "numpy": np.__version__}


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="fastk-jax", description="Monte Carlo studies of distributed SGD with stragglers.")
    parser.add_argument("--version", action="version", version=f"fastk-jax {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run a study described in a TOML file")
    run.add_argument("config", help="the study's TOML file, e.g. studies/adaptive-fig3.toml")
    run.add_argument("--seeds", type=int, help="number of seeds (overrides run.seeds)")
    run.add_argument("--out", help="output folder (default results/NAME)")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except FastkError as e:
        print(f"fastk-jax: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("fastk-jax: interrupted; nothing written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
