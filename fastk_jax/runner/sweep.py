"""Sweeps: a study file with a ``[sweep]`` table runs the study at every point of a grid.

::

    [sweep]
    eps = 10.0          # error level: time and communication to reach it
    deadline = 4000.0   # time at which the error is read
    metric = "error"    # optional: the recorded metric eps and deadline read (default: the tracked
                        # one); for test_accuracy, time to eps is the time to reach at least eps
    [sweep.axes]        # field path = values; the grid is their product, in this order
    "policy[0].thresh" = [2, 5, 10, 20, 40]
    "policy[0].burnin" = [50, 200, 800]
    [sweep.plot]        # optional: a metric against one axis (lines) or two (heat map)
    metric = "time_to_eps"
    x = "policy[0].thresh"
    y = "policy[0].burnin"
    [sweep.quick]       # optional: what --quick changes (eps, deadline, axes, cases)

A field path names a study field: ``problem.n_workers``, ``delays.rate`` (``delays[i].rate``
for one of several ``[[delays]]``), ``run.eta``, ``run.batch_size``, ``policy[i].k`` or
``policy.thresh`` (every policy). Each grid point is the base study with those fields set,
resolved and checked like any study. Fields that fix the grids (``run.time_horizon``,
``run.seeds``, ...) cannot be swept: every row shares them.

How it runs: the configurations of all points that share a problem (same data, same n) form
one batch, and ``execute.run_configurations`` runs a batch's configurations of one compiled
shape in one vmapped call; batches run in turn. A configuration that several points share
(a fixed-k reference beside a swept adaptive policy) runs once. The iteration grid is common
to all batches.

Output: ``sweep.csv``, a tidy table with a row per grid point and configuration (the axis
values, the label, time to reach eps with its band bracket, error at the deadline and at the
horizon with 95% half-widths, communication to eps, diverged runs); ``results.npz`` with the
same columns and each row's curves; ``summary.json``; the figure.
"""

from __future__ import annotations

import copy
import csv
import io
import itertools
import json
import math
import re
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .. import engine, study
from ..analysis import metrics, results
from ..core.problems import METRICS as problem_metrics
from ..engine import checkpoint
from ..errors import ConfigError, FastkError
from ..io import files, run_folder
from ..study import fields
from ..study.build import NO_STEP_LIMIT, Configuration, build_problem, check_step_size, configurations
from ..versions import versions
from . import execute

FIXED_RUN_FIELDS = (
    "time_horizon",
    "iterations",
    "seeds",
    "seed",
    "grid_points",
    "chunk",
    "divergence_factor",
    "staleness_bins",
)
COLUMNS = (
    "time_to_eps",
    "time_to_eps_low",
    "time_to_eps_high",
    "error_at_deadline",
    "error_at_deadline_half_width",
    "final_error",
    "final_error_half_width",
    "downloads_to_eps",
    "communication_to_eps",
    "diverged",
    "time_per_iteration",
    "mean_delay",
)
METRICS = (  # what a sweep figure can show (plotting.SWEEP_METRICS names them)
    "time_to_eps",
    "error_at_deadline",
    "final_error",
    "downloads_to_eps",
    "communication_to_eps",
    "diverged",
    "time_per_iteration",
    "time_to_eps_over_best_fixed",
    "error_at_deadline_over_best_fixed",
)
_PATH = re.compile(r"^(problem|delays|run|policy)(?:\[(\d+)\])?(?:\.([A-Za-z_][A-Za-z0-9_]*))?$")


class Axis(NamedTuple):
    path: str  # as written, e.g. "policy[0].thresh"
    values: list


class Sweep(NamedTuple):
    """A resolved sweep: the base study's raw tables, the axes and what to read off each row."""

    name: str
    description: str
    base: dict  # the study tables, without [sweep]
    axes: list[Axis]
    cases: list[dict]  # [[sweep.case]]: label, field overrides, eps, deadline (none: one case)
    eps: float
    deadline: float
    plot: dict
    quick: bool
    seeds: int | None
    metric: str | None = None  # the metric eps and the deadline read (None: the tracked one)


def _scalar(v: Any) -> bool:
    return isinstance(v, (int, float, str, bool))


def _check_path(path: str, raw: dict, where: str = "sweep.axes") -> None:
    m = _PATH.match(path)
    if not m:
        raise ConfigError(
            f"{where}.{path}",
            "must name a field as section.field or section[i].field, or a whole section (problem, delays, run, policy)",
        )
    section, index, field = m.group(1), m.group(2), m.group(3)
    if section == "run" and (field is None or field in FIXED_RUN_FIELDS):
        what = "[run] holds" if field is None else f"run.{field}"
        raise ConfigError(f"{where}.{path}", f"{what} fixes the grids every row shares and cannot be swept")
    if section in ("problem", "run") and index is not None:
        raise ConfigError(f"{where}.{path}", f"[{section}] is one table: write {section}.FIELD")
    entries = raw.get(section)
    if index is not None and (not isinstance(entries, list) or int(index) >= len(entries)):
        count = len(entries) if isinstance(entries, list) else 0
        raise ConfigError(f"{where}.{path}", f"the study has {count} [[{section}]] tables")


def _set(raw: dict, path: str, value: Any) -> None:
    """Set the field ``path`` of a parsed study (a copy) to ``value`` (a whole section or
    [[section]] entry when the path names no field)."""
    section, index, field = _PATH.match(path).groups()
    if field is None:
        if index is None:
            raw[section] = copy.deepcopy(value)
        else:
            raw[section][int(index)] = copy.deepcopy(value)
        return
    entries = raw.setdefault(section, {})
    if isinstance(entries, list):
        targets = entries if index is None else [entries[int(index)]]
    else:
        targets = [entries]
    for t in targets:
        if isinstance(t, dict):
            t[field] = value


def _number(table: dict, key: str, where: str, quick: dict) -> float:
    source = quick if key in quick else table
    return float(fields.number(source, key, where, strict_low=0))


def resolve(raw: dict, quick: bool = False, seeds: int | None = None, default_name: str = "sweep") -> Sweep:
    """Check a parsed sweep file (the study part is checked point by point in ``points``)."""
    t = raw.get("sweep")
    if not isinstance(t, dict):
        raise ConfigError("sweep", "must be a table")
    fields.no_extra(t, {"eps", "deadline", "axes", "case", "plot", "quick", "metric"}, "sweep")
    q = t.get("quick", {})
    if not isinstance(q, dict):
        raise ConfigError("sweep.quick", "must be a table of eps, deadline and axes")
    fields.no_extra(q, {"eps", "deadline", "axes", "cases"}, "sweep.quick")
    q = q if quick else {}
    base = {k: v for k, v in raw.items() if k != "sweep"}
    cases = _resolve_cases(t.get("case", []), base)
    if "cases" in q:  # --quick runs only these cases
        keep = q["cases"]
        known = [c["label"] for c in cases]
        if not isinstance(keep, list) or not keep or any(k not in known for k in keep):
            raise ConfigError("sweep.quick.cases", f"must be a list of case labels from {known}, got {keep!r}")
        cases = [c for c in cases if c["label"] in keep]
    for case in cases if quick else []:  # --quick's eps and deadline (shorter runs) win over the cases'
        for key in ("eps", "deadline"):
            if key in q:
                case.pop(key, None)
    axes_table = q.get("axes", t.get("axes", {}))
    if not isinstance(axes_table, dict) or not (axes_table or cases):
        raise ConfigError("sweep.axes", "needs at least one field = [values] (or [[sweep.case]] tables)")
    axes = []
    for path, values in axes_table.items():
        _check_path(path, base)
        if not isinstance(values, list) or not values or not all(map(_scalar, values)):
            raise ConfigError(f"sweep.axes.{path}", f"must be a non-empty list of numbers or strings, got {values!r}")
        if len(set(map(repr, values))) != len(values):
            raise ConfigError(f"sweep.axes.{path}", f"values must be distinct, got {values}")
        axes.append(Axis(path, list(values)))
    if len({a.path for a in axes}) != len(axes):
        raise ConfigError("sweep.axes", "an axis appears twice")
    plot = _resolve_plot(t.get("plot", {}), axes, cases)
    return Sweep(
        name=fields.string(raw, "name", "config", default_name),
        description=fields.string(raw, "description", "config", ""),
        base=base,
        axes=axes,
        cases=cases,
        eps=_number(t, "eps", "sweep", q),
        deadline=_number(t, "deadline", "sweep", q),
        plot=plot,
        quick=quick,
        seeds=seeds,
        metric=fields.string(t, "metric", "sweep", None, choices=tuple(problem_metrics)),
    )


def _resolve_cases(entries: Any, base: dict) -> list[dict]:
    """[[sweep.case]] tables: named sets of field overrides (``"problem" = {...}`` replaces a
    whole section), each with its own eps and deadline if given; the grid is cases x axes."""
    if not isinstance(entries, list) or not all(isinstance(c, dict) for c in entries):
        raise ConfigError("sweep.case", "must be [[sweep.case]] tables")
    cases = []
    for i, c in enumerate(entries):
        where = f"sweep.case[{i}]"
        label = fields.string(c, "label", where)
        overrides = {k: v for k, v in c.items() if k not in ("label", "eps", "deadline")}
        for path in overrides:
            _check_path(path, base, where)
        case = {"label": label, "fields": overrides}
        for key in ("eps", "deadline"):
            if key in c:
                case[key] = float(fields.number(c, key, where, strict_low=0))
        cases.append(case)
    labels = [c["label"] for c in cases]
    if len(set(labels)) != len(labels):
        raise ConfigError("sweep.case", f"labels must be distinct, got {labels}")
    return cases


BAR_COLUMNS = ("case", "cluster", "policy", "label")


def _resolve_plot(t: Any, axes: list[Axis], cases: list[dict]) -> dict:
    if not isinstance(t, dict):
        raise ConfigError("sweep.plot", "must be a table")
    fields.no_extra(t, {"metric", "x", "y", "kind"}, "sweep.plot")
    kind = fields.string(t, "kind", "sweep.plot", "bars" if not axes else "lines", choices=("lines", "bars"))
    if kind == "bars":  # a bar per policy, grouped by cluster, a panel per case
        return {"kind": kind, "metric": fields.string(t, "metric", "sweep.plot", "time_to_eps", choices=METRICS)}
    if not axes:
        raise ConfigError("sweep.plot.kind", "lines and heat maps need [sweep.axes]; a sweep of cases draws bars")
    paths = tuple(a.path for a in axes)
    out = {
        "kind": kind,
        "metric": fields.string(t, "metric", "sweep.plot", "time_to_eps", choices=METRICS),
        "x": fields.string(t, "x", "sweep.plot", paths[0], choices=paths),
    }
    if "y" in t:
        out["y"] = fields.string(t, "y", "sweep.plot", choices=paths)
        if out["y"] == out["x"]:
            raise ConfigError("sweep.plot.y", "must differ from sweep.plot.x")
    return out


class Point(NamedTuple):
    values: dict[str, Any]  # axis path -> value
    study: study.Study
    case: dict  # its [[sweep.case]] ({"label": ""} without cases)


def points(sweep: Sweep) -> list[Point]:
    """Every grid point's study, resolved and checked; a bad point names its values."""
    out = []
    for case, combo in itertools.product(sweep.cases or [None], itertools.product(*(a.values for a in sweep.axes))):
        values = dict(zip((a.path for a in sweep.axes), combo))
        raw = copy.deepcopy(sweep.base)
        for path, value in (case["fields"] if case else {}).items():
            _set(raw, path, value)
        for path, value in values.items():
            _set(raw, path, value)
        try:
            s = study.resolve(raw, seeds=sweep.seeds, default_name=sweep.name, quick=sweep.quick)
        except ConfigError as e:
            where = ", ".join(([f"case {case['label']!r}"] if case else []) + [f"{p}={v!r}" for p, v in values.items()])
            raise ConfigError(e.field, f"at sweep point {where}: {e.problem}") from None
        out.append(Point(values, s, case or {"label": "", "fields": {}}))
    first = out[0].study.run
    for p in out:
        deadline = p.case.get("deadline", sweep.deadline)
        if p.study.run.time_horizon < deadline:
            raise ConfigError("sweep.deadline", f"{deadline:g} is after run.time_horizon={first.time_horizon:g}")
        if any(getattr(p.study.run, f) != getattr(first, f) for f in FIXED_RUN_FIELDS):
            raise ConfigError("sweep.axes", "the points do not share run.time_horizon, seeds and grids")
    return out


def _key(conf: Configuration, s: study.Study) -> str:
    """What determines a configuration's runs: equal keys run once."""
    run = {k: v for k, v in s.resolved["run"].items() if k != "eta"}
    policy = {k: v for k, v in conf.fields().items() if k not in ("label", "delays")}
    delays = {k: v for k, v in s.resolved["delays"][s.delays.index(conf.delays)].items() if k != "label"}
    return json.dumps([s.resolved["problem"], delays, run, policy], sort_keys=True, default=str)


class Row(NamedTuple):
    values: dict[str, Any]
    label: str
    unique: int  # index of the configuration that produced it
    case: str
    policy: str  # the [[policy]] label
    cluster: str  # the [delays] label
    eps: float
    deadline: float
    fixed_k: bool  # a fixed-k policy: one of the curves of the envelope


def run_sweep(
    sweep: Sweep,
    progress: Callable[[engine.Progress], None] | None = None,
    say: Callable[[str], None] = lambda msg: None,
    checkpoint: Path | None = None,
    checkpoint_every_s: float = 30.0,
) -> tuple[list[Row], results.Results, dict]:
    """Run every distinct configuration of every point; return the rows, the distinct
    configurations' results (on one time grid) and timings. ``checkpoint``: a folder where each
    batch checkpoints (``batch-B/``, every ``checkpoint_every_s`` seconds) and resumes from, as a
    study does."""
    pts = points(sweep)
    problems: dict[str, Any] = {}  # problem table (JSON) -> built problem
    unique: dict[str, int] = {}
    confs: list[Configuration] = []
    batch_of: list[str] = []
    rows = []
    for p in pts:
        pkey = json.dumps(p.study.resolved["problem"], sort_keys=True)
        new_problem = pkey not in problems
        if new_problem:
            problems[pkey] = build_problem(p.study.problem, say)
        problem = problems[pkey]
        if check_step_size(p.study, problem) is None and new_problem:
            say(f"fastk-jax: note: {NO_STEP_LIMIT.format(kind=p.study.problem.kind)}")
        for conf in configurations(p.study, problem):
            key = _key(conf, p.study)
            if key not in unique:
                unique[key] = len(confs)
                confs.append(conf)
                batch_of.append(pkey)
            rows.append(
                Row(
                    p.values,
                    conf.label,
                    unique[key],
                    p.case["label"],
                    p.study.label_of(conf.policy),
                    conf.delays.label or conf.delays.law,
                    p.case.get("eps", sweep.eps),
                    p.case.get("deadline", sweep.deadline),
                    conf.policy.kind == "fixed",
                )
            )
    run = pts[0].study.run
    iterations = execute.iterations_needed(confs, run)
    batches = list(dict.fromkeys(batch_of))
    say(
        f"fastk-jax: {sweep.name}: {len(pts)} grid points, {len(confs)} distinct configurations x {run.seeds} seeds "
        f"in {len(batches)} batch{'es' if len(batches) > 1 else ''}"
    )
    parts, order, compile_s = [], [], 0.0
    for b, pkey in enumerate(batches):
        members = [c for c, k in enumerate(batch_of) if k == pkey]

        batch = [confs[c] for c in members]
        where = {} if checkpoint is None else {"checkpoint": Path(checkpoint) / f"batch-{b}"}
        sim, ran = execute.run_all(
            problems[pkey],
            batch,
            run,
            engine.share_progress(progress, b / len(batches), 1 / len(batches)),
            iterations,
            checkpoint_every_s=checkpoint_every_s,
            **where,
        )
        compile_s += sim.compile_s
        n = json.loads(pkey)["n_workers"]
        parts.append(
            execute.from_simulation(
                [c.label for c in ran], sim, n, [c.mean_delay for c in ran], run.seeds, tuple(c.fields() for c in ran)
            )
        )
        order += members
    res = _stack(parts, np.argsort(order))
    return rows, res, {"iterations": iterations, "compile_s": compile_s, "batches": len(batches), "points": len(pts)}


def _stack(parts: list[results.Results], index: np.ndarray) -> results.Results:
    """Results of batches on one time grid as one, rows in ``index`` order. Error levels
    (``reach_*``) depend on each problem's initial error, so they are kept only when equal."""
    first = parts[0]

    def cat(*xs):
        return np.concatenate(xs, axis=0)[index]

    same_levels = all(np.array_equal(p.levels, first.levels) for p in parts)
    bands = {
        name: type(b)(*(cat(*(getattr(p.bands[name], f) for p in parts)) for f in b._fields))
        for name, b in first.bands.items()
        if same_levels or not name.startswith("reach_")
    }
    tpi = first.time_per_iteration
    fields = [c for p in parts for c in p.configurations]
    return results.Results(
        labels=cat(*(p.labels for p in parts)),
        n_workers=first.n_workers,
        mean_delay=cat(*(p.mean_delay for p in parts)),
        time_grid=first.time_grid,
        iteration_grid=first.iteration_grid,
        bands=bands,
        diverged=cat(*(p.diverged for p in parts)),
        seeds=first.seeds,
        time_per_iteration=type(tpi)(*(cat(*(getattr(p.time_per_iteration, f) for p in parts)) for f in tpi._fields)),
        staleness=cat(*(p.staleness for p in parts)),
        levels=first.levels if same_levels else np.zeros(0),
        configurations=tuple(fields[i] for i in index) if fields else (),
    )


def table(sweep: Sweep, rows: list[Row], res: results.Results) -> dict[str, np.ndarray]:
    """The tidy table: ``case`` (with [[sweep.case]]), a column per axis, ``label``, ``policy``,
    ``cluster``, then ``COLUMNS`` and the regrets; a row per grid point and configuration.
    Times are on the simulated clock (``mean_delay`` gives each row's unit).

    Regrets against the best fixed k in hindsight: ``time_to_eps_over_best_fixed`` is the row's
    time to reach eps over the soonest any fixed-k row of its point and cluster reaches it (the
    time the lower envelope of the fixed-k curves reaches it), ``error_at_deadline_over_best_fixed``
    its error at the deadline over the smallest of theirs (the envelope there). NaN where either
    is missing."""
    index = np.array([row.unique for row in rows])
    per_row: dict[str, np.ndarray] = {name: np.full(len(rows), np.nan) for name in COLUMNS}
    metric = sweep.metric or res.metric
    if metric not in res.metrics:
        raise ConfigError("sweep.metric", f"{metric!r} is not recorded; run.metrics: {', '.join(res.metrics)}")
    err = res.bands[metric]
    for eps, deadline in {(row.eps, row.deadline) for row in rows}:
        mine = np.array([(row.eps, row.deadline) == (eps, deadline) for row in rows])
        r, at = metrics.reach(res, eps, metric), metrics.at_time(res, deadline, metric)
        per_conf = {
            "time_to_eps": r.time,
            "time_to_eps_low": r.earliest,
            "time_to_eps_high": r.latest,
            "error_at_deadline": at.mean,
            "error_at_deadline_half_width": at.half_width,
            "final_error": err.mean[:, -1],
            "final_error_half_width": err.half_width[:, -1],
            "downloads_to_eps": r.downloads,
            "communication_to_eps": r.total,
            "diverged": res.diverged,
            "time_per_iteration": res.time_per_iteration.mean,
            "mean_delay": res.mean_delay,
        }
        for name in COLUMNS:
            per_row[name][mine] = np.asarray(per_conf[name], np.float64)[index[mine]]
    out: dict[str, np.ndarray] = {}
    if sweep.cases:
        out["case"] = np.array([row.case for row in rows], dtype=str)
    for axis in sweep.axes:
        out[axis.path] = np.array([row.values[axis.path] for row in rows])
    for name in ("label", "policy", "cluster"):
        out[name] = np.array([getattr(row, name) for row in rows], dtype=str)
    for name in COLUMNS:
        out[name] = per_row[name].astype(int) if name == "diverged" else per_row[name]
    for name in ("time_to_eps", "error_at_deadline"):
        out[f"{name}_over_best_fixed"] = _over_best_fixed(rows, per_row[name])
    return out


def _over_best_fixed(rows: list[Row], values: np.ndarray) -> np.ndarray:
    """Each row's value over the smallest value of the fixed-k rows of its point and cluster."""
    groups: dict[tuple, list[int]] = {}
    for r, row in enumerate(rows):
        groups.setdefault((row.case, json.dumps(row.values, sort_keys=True), row.cluster), []).append(r)
    out = np.full(len(rows), np.nan)
    for members in groups.values():
        fixed = [values[r] for r in members if rows[r].fixed_k and np.isfinite(values[r])]
        if fixed:
            best = min(fixed)
            with np.errstate(divide="ignore", invalid="ignore"):
                out[members] = values[members] / best
    return out


def to_csv(columns: dict[str, np.ndarray]) -> str:
    """CSV text of a table: numbers to 8 significant digits, NaN (never reached) as empty."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for values in zip(*columns.values()):
        writer.writerow(_cell(v) for v in values)
    return buf.getvalue()


def _cell(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v)).lower()
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return "" if not math.isfinite(v) else format(float(v), ".8g")
    return str(v)


def run_file(
    raw: dict,
    default_name: str,
    out: str | Path | None,
    seeds: int | None,
    quick: bool,
    progress=None,
    say: Callable[[str], None] = lambda msg: None,
) -> Path:
    """Run a parsed sweep file and write sweep.csv, results.npz, config.json, summary.json and the figure."""

    sweep = resolve(raw, quick=quick, seeds=seeds, default_name=default_name)
    out = Path(out) if out else Path("results") / sweep.name
    with run_folder.claim(out):  # one run at a time; what killed runs left is finished or removed
        return _run_into(raw, sweep, out, quick, progress, say)


def _run_into(raw: dict, sweep: Sweep, out: Path, quick: bool, progress, say) -> Path:
    from ..analysis import plotting

    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        partial, every = checkpoint.partial_folder(out), checkpoint.cadence()
        if partial.is_dir():
            say(f"fastk-jax: resuming from the checkpoints in {partial}/")
        rows, res, timing = run_sweep(
            sweep, progress, say, checkpoint=None if every is None else partial, checkpoint_every_s=every or 0.0
        )
    wall = time.perf_counter() - started
    for message in dict.fromkeys(str(w.message) for w in caught):
        print(f"fastk-jax: warning: {message}", file=sys.stderr)
    columns = table(sweep, rows, res)
    for c, count in enumerate(res.diverged):
        if count:
            at = next(row.values for row in rows if row.unique == c)
            where = ", ".join(f"{p}={v!r}" for p, v in at.items())
            print(
                f"fastk-jax: warning: {res.labels[c]} at {where}: {count} of {res.seeds} runs diverged; "
                "left out of the curves",
                file=sys.stderr,
            )
    diverged_rows = int(np.count_nonzero(columns["diverged"]))
    arrays = {f"table/{k}": v for k, v in columns.items()}
    arrays |= {
        "row_configuration": np.array([row.unique for row in rows]),
        "time_grid": res.time_grid,
        "labels": res.labels,
        "mean_delay": res.mean_delay,
        "diverged": res.diverged,
        "seeds": np.asarray(res.seeds),
    }
    for name in (*res.metrics, "k", "downloads", "fetches"):
        b = res.bands[name]
        arrays[f"{name}_mean"], arrays[f"{name}_half_width"], arrays[f"{name}_runs"] = b.mean, b.half_width, b.runs
    # labels that the axes change (a fixed reference beside a swept policy is one configuration)
    varying = [lab for lab in dict.fromkeys(columns["label"].tolist()) if len(_configurations_of(rows, lab)) > 1]
    shown = np.isin(columns["label"], varying) if varying and "y" in sweep.plot else np.ones(len(rows), bool)

    summary = {
        "name": sweep.name,
        "quick": quick,
        "eps": sweep.eps,
        "deadline": sweep.deadline,
        "axes": {a.path: a.values for a in sweep.axes},
        "rows": len(rows),
        "rows_with_diverged_runs": diverged_rows,
        "seeds": int(res.seeds),
        "wall_s": round(wall, 3),
        **{k: round(v, 3) if isinstance(v, float) else v for k, v in timing.items()},
        "best": best_rows(columns, sweep, varying),
        "versions": versions(),
    }
    config = {"sweep": {**raw["sweep"]}, "base": sweep.base}

    def write_csv(folder: Path) -> None:
        (folder / "sweep.csv").write_text(to_csv(columns))

    fields = {}  # each row's label and policy label -> its configuration's fields (figure styles)
    for row in rows:
        if res.configurations:
            fields[row.label] = fields[row.policy] = res.configurations[row.unique]

    @plotting.quietly
    def figure(folder: Path) -> None:
        plotting.save_figure(
            plotting.sweep_figure(
                {k: v[shown] for k, v in columns.items()},
                [a.path for a in sweep.axes],
                sweep.plot,
                sweep.eps,
                sweep.deadline,
                sweep.name,
                fields,
            ),
            folder / "figure",
        )

    files.save(out, arrays, config, summary, figures=[write_csv, figure], checkpoints=partial)
    say(format_table(columns))
    say(f"fastk-jax: wrote {out}/ ({wall:.1f} s, {timing['compile_s']:.1f} s compiling): {len(rows)} rows in sweep.csv")
    return out


PRINTED = (
    "time_to_eps",
    "error_at_deadline",
    "communication_to_eps",
    "time_to_eps_over_best_fixed",
    "error_at_deadline_over_best_fixed",
    "diverged",
)


def format_table(columns: dict[str, np.ndarray], limit: int = 80) -> str:
    """The table's key columns as aligned text (the first ``limit`` rows; sweep.csv has all)."""
    names = [n for n in columns if n not in COLUMNS and not n.endswith("_over_best_fixed") and n != "label"]
    names += list(PRINTED)
    cells = [[n.replace("_over_best_fixed", "/best fixed") for n in names]]
    for r in range(min(limit, len(columns["label"]))):
        cells.append(["-" if _cell(columns[n][r]) == "" else _short(columns[n][r]) for n in names])
    widths = [max(len(row[i]) for row in cells) for i in range(len(names))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    if len(columns["label"]) > limit:
        lines.append(f"... {len(columns['label']) - limit} more rows in sweep.csv")
    return "\n".join(lines)


def _short(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return format(float(v), ".4g")
    return _cell(v)


def _configurations_of(rows: list[Row], label: str) -> set[int]:
    return {row.unique for row in rows if row.label == label}


def best_rows(columns: dict[str, np.ndarray], sweep: Sweep, labels: list[str]) -> dict[str, dict]:
    """Per configuration label the axes change, the grid point with the smallest time to eps
    and the one with the smallest error at the deadline (rows with diverged runs excluded)."""
    out = {}
    ok = columns["diverged"] == 0
    for label in labels:
        mine = (columns["label"] == label) & ok
        entry = {}
        for metric in ("time_to_eps", "error_at_deadline"):
            values = np.where(mine & np.isfinite(columns[metric]), columns[metric], np.inf)
            if np.isfinite(values).any():
                i = int(np.argmin(values))
                entry[metric] = {"value": float(values[i]), **{a.path: _json(columns[a.path][i]) for a in sweep.axes}}
        out[label] = entry
    return out


def _json(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def load_table(path: str | Path) -> dict[str, np.ndarray]:
    """A sweep's table back from its folder (or its results.npz): column name -> values."""
    path = Path(path)
    path = path / "results.npz" if path.is_dir() else path
    try:
        with np.load(path, allow_pickle=False) as f:
            columns = {k[len("table/") :]: f[k] for k in f.files if k.startswith("table/")}
    except FileNotFoundError:
        raise FastkError(f"no results at {path}") from None
    except (OSError, ValueError, EOFError) as e:
        raise FastkError(f"{path} is not a readable results file: {e}") from None
    if not columns:
        raise FastkError(f"{path} holds no sweep table (is it a study's results?)")
    return columns
