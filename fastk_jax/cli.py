"""The ``fastk-jax`` command.

    fastk-jax run CONFIG.toml [--seeds N] [--quick] [--out DIR] [--quiet]
    fastk-jax study NAME [--seeds N] [--quick] [--out DIR] [--quiet] | NAME --export FILE
    fastk-jax studies
    fastk-jax check-bounds [--json] [--quick] [--seed S]
    fastk-jax bench [--json] [--quick] [--seeds S] [--block B] [--scaling [--out DIR]]

Bad input ends in one line on stderr naming the problem, exit status 2, no traceback, and
nothing written.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import __version__
from .errors import FastkError

EXIT_BAD_INPUT = 2


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
    from .runner import folder
    from .study import library

    if args.command == "study" and args.export:
        print(f"wrote {library.export(args.name, args.export)}")
        return 0
    path = args.config if args.command == "run" else library.find(args.name)
    folder.run_file(
        path, args.out, args.seeds, args.quick, progress=_progress_printer(args.quiet), say=_say(args.quiet)
    )
    return 0


def _studies(args) -> int:
    from .study import library

    entries = library.describe()
    width = max(len(name) for name, _ in entries)
    for name, description in entries:
        print(f"{name.ljust(width)}  {description}")
    return 0


def _check_bounds(args) -> int:
    from .errors import ConfigError
    from .runner import check_bounds

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
    from .errors import ConfigError

    if not args.quick and not 1 <= args.seeds <= 1_000_000:
        raise ConfigError("--seeds", f"must be from 1 to 1000000, got {args.seeds}")
    if args.block is not None and not 1 <= args.block <= 2**16:
        raise ConfigError("--block", f"must be from 1 to {2**16}, got {args.block}")
    if args.scaling:
        quick = {"seeds": (1, 16, 256), "ns": (10, 50), "ds": (50, 100), "work": 2e10} if args.quick else {}
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
    report = bench.run(**sizes, block=args.block)
    if args.json:
        print(json.dumps(report))
    else:
        print(bench.format_report(report))
    return 0


def main(argv: list[str] | None = None) -> int:
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
    bench.add_argument("--scaling", action="store_true", help="rate against seeds, n and d, with a figure")
    bench.add_argument("--out", help="--scaling's output folder (default results/bench-scaling)")
    bench.set_defaults(handler=_bench)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except FastkError as e:
        print(f"fastk-jax: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(
            "fastk-jax: interrupted; no results written (a study resumes from OUT.partial/ when the same command runs again)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
