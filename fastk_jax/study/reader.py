"""The TOML reader: a study's tables checked field by field and resolved, every default filled in.

A study file (``studies/adaptive-fig3.toml`` is the reference example)::

    name = "adaptive-fig3"
    description = "..."
    [problem]   kind = "linear" | "logistic", n_workers, data (m, d, data_seed | dataset, ...)
    [delays]    law = "exponential", its parameters, optional slowdown (per worker)
    [run]       eta (a number or a list), optimizer, time_horizon, seeds, seed, ...
    [[policy]]  kind = "fixed" | "schedule" | "adaptive" | ..., label, parameters

``resolve_tables`` is the one validation of a study: the TOML path (``Study.from_toml``) and
the Python API (constructing a ``model.Study``, which reads its own ``to_table``) both go
through it. Every field is checked before anything runs or is written; a bad one raises
``ConfigError`` naming it, e.g. ``policy[2].k: k must satisfy 1 <= k <= n_workers=50, got 60``.
The result is the resolved study as plain JSON-able tables (``config.json``): each policy's
kind is read by its class in ``model.POLICIES`` (``read``), each semantic check sits with the
concept (``core.policies.check``, ``core.delays``, ``core.schemes``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np

from .. import data
from ..core import cluster, delays, policies, schemes
from ..core.spec import OPTIMIZERS, Straggle
from ..errors import ConfigError
from .fields import INT_MAX, MAX_DATA_ENTRIES, TIME_RANGE, is_number, no_extra, number, read_toml, show, string, table
from .model import CLUSTER_PARTS, POLICIES, PROBLEMS, SCHEME_FIELDS, Policy, default_metrics

__all__ = ["INT_MAX", "MAX_DATA_ENTRIES", "TIME_RANGE", "read_toml", "resolve_tables"]


# ---------------------------------------------------------------- loading and resolving


QUICK_SEEDS = 4  # --quick without a [quick] table


def resolve_tables(raw: dict, seeds: int | None = None, default_name: str = "study", quick: bool = False) -> dict:
    """Check and resolve a parsed study (see the module docstring). ``quick`` applies the file's
    ``[quick]`` table, which overrides fields of ``[run]`` (without one, at most QUICK_SEEDS
    seeds); ``seeds`` overrides both. The [quick] table itself is kept (``"quick"``) unless
    applied."""
    if not isinstance(raw, dict):
        raise ConfigError("config", f"must be a table of study fields, got {show(raw)}")
    no_extra(raw, {"name", "description", "problem", "delays", "run", "policy", "quick", "figure", "report"}, "config")
    run_table = table(raw, "run")
    if "quick" in raw and not isinstance(raw["quick"], dict):
        raise ConfigError("quick", "must be a table of [run] fields")
    if quick:
        overrides = raw.get("quick", {"seeds": QUICK_SEEDS})
        if not isinstance(overrides, dict):
            raise ConfigError("quick", "must be a table of [run] fields")
        run_table = {**run_table, **overrides}
    name = check_name(string(raw, "name", "config", default_name))
    description = string(raw, "description", "config", "")
    problem = _resolve_problem(table(raw, "problem"))
    n = problem["n_workers"]
    tables = raw.get("delays")
    if isinstance(tables, list):
        if not tables:
            raise ConfigError("delays", "at least one [[delays]] table is needed")
        laws = [_resolve_delays(t, n, f"delays[{i}]") for i, t in enumerate(tables)]
        names = [d["label"] for d in laws]
        if len(set(names)) != len(names):
            raise ConfigError("delays", f"labels must be distinct, got {names}")
    else:
        laws = [_resolve_delays(table(raw, "delays"), n)]
    try:
        run = _resolve_run(run_table, seeds)
    except ConfigError as e:  # name the [quick] table when the field came from it
        key = e.field.partition(".")[2]
        if not quick or not e.field.startswith("run.") or key not in overrides:
            raise
        raise ConfigError(f"quick.{key}", e.problem) from None
    _check_metrics(run["metrics"], problem)
    entries = raw.get("policy")
    if not isinstance(entries, list) or not entries:
        raise ConfigError("policy", "at least one [[policy]] table is needed")
    pols = [pol for i, p in enumerate(entries) for pol in _expand_policy(p, i, n, run)]
    labels = [p["label"] for p in pols]
    if len(set(labels)) != len(labels):
        raise ConfigError("policy", f"labels must be distinct, got {labels}")
    figure = _resolve_figure(raw.get("figure", {}))
    report = _resolve_report(raw.get("report", {}), labels)
    recorded = run["metrics"] or list(default_metrics(PROBLEMS[problem["kind"]]))
    if report.get("metric", recorded[0]) not in recorded:
        raise ConfigError("report.metric", f"{report['metric']!r} is not recorded; run.metrics: {', '.join(recorded)}")
    if "reference" in report and report.get("metric", recorded[0]) != recorded[0]:
        raise ConfigError("report.reference", "a reference's floor is of the tracked metric: leave report.metric out")
    for metric in figure.get("metrics", ()):
        if metric not in recorded:
            raise ConfigError("figure.metrics", f"{metric!r} is not recorded; run.metrics: {', '.join(recorded)}")
    if figure["kind"] == "envelope" and (
        sum(p["kind"] == "fixed" for p in pols) < 2
        or all(p["kind"] == "fixed" for p in pols)
        or len(run["eta"]) > 1
        or len(laws) > 1
    ):
        raise ConfigError(
            "figure.kind", "an envelope needs one eta, one delay law, two or more fixed-k policies and another policy"
        )
    for i, pol in enumerate(pols):
        if pol["kind"] == "bound_optimal" and not PROBLEMS[problem["kind"]].knows_f_star:
            raise ConfigError(
                f"policy[{i}].kind",
                f"bound_optimal needs Lemma 1's constants (L, c, sigma^2, F*), known for the convex problems, not {problem['kind']}",
            )
        if pol["kind"] == "oracle" and len(_oracle_members(pol, pols)) < 2:
            raise ConfigError(
                f"policy[{i}].kind", "an oracle follows the envelope of two or more fixed-k policies of its scheme"
            )
    if "reference" in report and (len(run["eta"]) > 1 or len(laws) > 1):
        raise ConfigError("report.reference", "a reference policy needs a study with one eta and one delay law")
    if figure["kind"] == "runtime_vs_k" and not any(p["kind"] == "fixed" for p in pols):
        raise ConfigError("figure.kind", "runtime_vs_k draws the fixed-k policies; the study has none")
    _check_work_shift(laws, pols, isinstance(tables, list))
    return {
        "name": name,
        "description": description,
        "problem": problem,
        "delays": laws,
        "run": run,
        "policies": pols,
        "figure": figure,
        "report": report,
        "quick": None if quick or "quick" not in raw else dict(raw["quick"]),
    }


def check_name(name: str) -> str:
    """A study's name names its output folder (``results/NAME``): a name, never a path."""
    if not name.strip():
        raise ConfigError("config.name", "must not be empty")
    if "/" in name or "\\" in name or name in (".", "..") or "\x00" in name:
        raise ConfigError("config.name", f"must be a name, not a path (no '/', '\\' or '..'), got {name!r}")
    return name


def _check_work_shift(laws: list[dict], pols: list[dict], several: bool) -> None:
    """A work-dependent shift (``shift_per_row``) grows the mean delay with the mini-batch: it
    must stay where float32 clocks resolve it, for the largest mini-batch of the study."""
    batch = max(p["batch_size"] for p in pols)
    for i, d in enumerate(laws):
        if "shift_per_row" in d:
            mean = (d["mean"] + batch * d["shift_per_row"]) * max(d["slowdown"])
            if mean > TIME_RANGE[1]:
                raise ConfigError(
                    f"delays[{i}].shift_per_row" if several else "delays.shift_per_row",
                    f"with a mini-batch of {batch} rows the mean delay is {mean:.3g}, beyond {TIME_RANGE[1]:g}, "
                    "which float32 clocks cannot resolve; rescale the time unit",
                )


def _resolve_report(t: Any, labels: list[str]) -> dict:
    """The optional [report] table: error levels whose time and communication to reach go into
    summary.json, and a reference policy whose error floor is one more level."""
    if not isinstance(t, dict):
        raise ConfigError("report", "must be a table")
    no_extra(t, {"levels", "reference", "metric"}, "report")
    levels = t.get("levels", [])
    if not isinstance(levels, list) or not all(is_number(v) and math.isfinite(v) and v > 0 for v in levels):
        raise ConfigError("report.levels", f"must be a list of error levels > 0, got {show(levels)}")
    out: dict[str, Any] = {"levels": [float(v) for v in levels]}
    if "metric" in t:
        out["metric"] = string(t, "metric", "report")
    if "reference" in t:
        out["reference"] = string(t, "reference", "report", choices=tuple(labels))
    return out


FIGURES = ("error_vs_time", "error_vs_iterations", "runtime_vs_k", "communication", "envelope")


def _resolve_figure(t: Any) -> dict:
    """The optional [figure] table: which figure the study draws."""
    if not isinstance(t, dict):
        raise ConfigError("figure", "must be a table")
    no_extra(t, {"kind", "iterations", "metrics"}, "figure")
    out = {"kind": string(t, "kind", "figure", "error_vs_time", choices=FIGURES)}
    if out["kind"] == "runtime_vs_k":
        out["iterations"] = number(t, "iterations", "figure", 2000, integer=True, low=1)
    if "metrics" in t:
        metrics = t["metrics"]
        if out["kind"] != "error_vs_time":
            raise ConfigError("figure.metrics", "only an error_vs_time figure draws a panel per metric")
        if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
            raise ConfigError("figure.metrics", f"must be a list of recorded metric names, got {show(metrics)}")
        out["metrics"] = list(metrics)
    return out


def _resolve_problem(t: dict) -> dict:
    """The [problem] table: its kind's fields, read by the kind's class (``model.PROBLEMS``)."""
    where = "problem"
    kind = string(t, "kind", where, choices=tuple(PROBLEMS))
    cls = PROBLEMS[kind]
    no_extra(t, {"kind", *(f.name for f in dataclasses.fields(cls))}, where)
    out: dict[str, Any] = {"kind": kind, "n_workers": number(t, "n_workers", where, integer=True, low=1)}
    out["data_seed"] = number(t, "data_seed", where, 0, integer=True, low=0, high=2**32 - 1)
    return {**out, **cls.read(t, where)}


def _resolve_delays(t: Any, n: int, where: str = "delays") -> dict:
    """One delay law: a [delays] table, or one of several [[delays]] tables (each with a label)."""
    if not isinstance(t, dict):
        raise ConfigError(where, "must be a table")
    try:
        return _resolve_parts(t, _resolve_markov(t, _resolve_law(t, n)), n)
    except ConfigError as e:  # name the table the field is in
        if where == "delays" or not e.field.startswith("delays"):
            raise
        raise ConfigError(where + e.field[len("delays") :], e.problem) from None


def _resolve_law(t: dict, n: int) -> dict:
    where = "delays"  # the caller renames fields of a [[delays]] entry
    law = string(t, "law", "delays")
    if law not in delays.LAWS:
        raise ConfigError("delays.law", f"unknown delay law {law!r}; known: {', '.join(sorted(delays.LAWS))}")
    label = string(t, "label", "delays", law)
    if law == "trace":
        return _resolve_trace(t, n, label)
    params = {k: v for k, v in t.items() if k not in ("law", "label", "slowdown", "shift_per_row", "markov", *CLUSTER_PARTS)}
    shift_per_row = 0.0
    if "shift_per_row" in t:  # work-dependent delays (App. E of the async paper): shift + b * shift_per_row
        if law != "shifted_exponential":
            raise ConfigError("delays.shift_per_row", "only a shifted_exponential law has a work-dependent shift")
        shift_per_row = float(number(t, "shift_per_row", "delays", low=0))
    lists = law == "hyperexponential"  # its probs and rates are lists, every other parameter a number
    for key, value in params.items():
        ok = isinstance(value, list) and value and all(map(is_number, value)) if lists else is_number(value)
        if not ok:
            kind = "a non-empty list of numbers" if lists else "a number"
            raise ConfigError(f"{where}.{key}", f"must be {kind}, got {show(value)}")
    instance = delays.make_law(law, **params)
    mean = _law_mean(instance)
    first = f"delays.{delays.parameter_names(law)[0]}"
    if not math.isfinite(mean):
        raise ConfigError(
            first,
            f"{law} with these parameters has an infinite mean; fastk-jax reports time in units of the mean delay",
        )
    if not TIME_RANGE[0] <= mean <= TIME_RANGE[1]:
        raise ConfigError(
            first,
            f"the mean delay {mean:.3g} is outside [{TIME_RANGE[0]:g}, {TIME_RANGE[1]:g}], which float32 clocks "
            "cannot resolve; rescale the time unit",
        )
    out = {"label": label, "law": law, **delays.law_params(instance)}
    out |= {"slowdown": _resolve_slowdown(t, n, mean), "mean": mean}
    if shift_per_row:
        out["shift_per_row"] = shift_per_row
    return out


def _resolve_markov(t: dict, out: dict) -> dict:
    """The optional ``markov = { slow, enter, stay }`` of a delay table (``spec.Straggle``):
    stragglers that stay slow for a while. The cluster's mean delay, the time unit, becomes the
    stationary mean."""
    if "markov" not in t:
        return out
    m = t["markov"]
    if not isinstance(m, dict):
        raise ConfigError("delays.markov", "must be a table { slow = ..., enter = ..., stay = ... }")
    no_extra(m, {"slow", "enter", "stay"}, "delays.markov")
    chain = Straggle(
        slow=float(number(m, "slow", "delays.markov", strict_low=0, high=1e6)),
        enter=float(number(m, "enter", "delays.markov", low=0, high=1)),
        stay=float(number(m, "stay", "delays.markov", low=0, high=1)),
    )
    if chain.enter == 0 and chain.stay == 1:
        raise ConfigError("delays.markov.stay", "with enter = 0 and stay = 1 the chain has no stationary law")
    factor = 1.0 + chain.enter / (chain.enter + 1.0 - chain.stay) * (chain.slow - 1.0)
    mean = out["mean"] * factor
    if not TIME_RANGE[0] <= mean * max(out["slowdown"]) <= TIME_RANGE[1]:
        raise ConfigError(
            "delays.markov.slow", f"the mean delay becomes {mean:.3g}, which float32 clocks cannot resolve"
        )
    return {**out, "markov": chain._asdict(), "mean": mean, "mean_without_markov": out["mean"]}


def _resolve_parts(t: dict, out: dict, n: int) -> dict:
    """The optional sub-tables of a delay table beyond the law (``model.CLUSTER_PARTS``):
    ``network = { latency, bandwidth, bytes }``, ``shared = { prob, factor }`` and
    ``failures = { prob, downtime }`` (``core.cluster``). The time unit stays the law's mean
    (with the Markov chain's factor): communication, shared slowdowns and failures are time
    the cluster spends beyond it."""
    for name, cls in CLUSTER_PARTS.items():
        if name not in t:
            continue
        where = f"delays.{name}"
        m = t[name]
        if not isinstance(m, dict):
            fields = ", ".join(f"{f.name} = ..." for f in dataclasses.fields(cls))
            raise ConfigError(where, f"must be a table {{ {fields} }}")
        no_extra(m, {f.name for f in dataclasses.fields(cls)}, where)
        if name == "network":
            bandwidth = m.get("bandwidth")
            values = bandwidth if isinstance(bandwidth, list) else [bandwidth] * n
            if bandwidth is not None and (
                len(values) != n or not all(is_number(v) and math.isfinite(v) and v > 0 for v in values)
            ):
                raise ConfigError(f"{where}.bandwidth", f"must be a number > 0 or a list of n_workers={n} of them")
            part = {
                "latency": float(number(m, "latency", where, 0.0, low=0, high=TIME_RANGE[1])),
                "bandwidth": None if bandwidth is None else [float(v) for v in values],
                "bytes": number(m, "bytes", where, None, integer=True, low=1, high=2**62),
            }
        elif name == "shared":
            part = {
                "prob": float(number(m, "prob", where, low=0, high=1)),
                "factor": float(number(m, "factor", where, strict_low=0, high=1e6)),
            }
        else:
            part = {
                "prob": float(number(m, "prob", where, low=0, high=1)),
                "downtime": float(number(m, "downtime", where, low=0, high=TIME_RANGE[1])),
            }
        out[name] = part
    return out


def _law_mean(instance: delays.DelayLaw) -> float:
    with jax.enable_x64(True):  # the mean in float64, so that only a truly infinite mean is called infinite
        return float(np.asarray(instance.mean()))


def _resolve_slowdown(t: dict, n: int, mean: float) -> list[float]:
    """A number, a list of n, or a profile's name (``core.cluster.PROFILES``: "sqrt", "linear")."""
    slowdown = t.get("slowdown", 1.0)
    if isinstance(slowdown, str):
        if slowdown not in cluster.PROFILES:
            raise ConfigError("delays.slowdown", f"unknown profile {slowdown!r}; known: {', '.join(cluster.PROFILES)}")
        slowdown = cluster.slowdown_profile(slowdown, n).tolist()
    if not (is_number(slowdown) or (isinstance(slowdown, list) and all(map(is_number, slowdown)))):
        raise ConfigError("delays.slowdown", f"must be a number, a list of numbers or a profile name, got {show(slowdown)}")
    values = np.asarray(slowdown, dtype=np.float64)
    if values.ndim == 0:
        values = np.full(n, values)
    if values.shape != (n,):
        raise ConfigError("delays.slowdown", f"must be a number or a list of n_workers={n} numbers")
    if not np.all(np.isfinite(values)) or np.any(values <= 0) or np.any(values * mean > TIME_RANGE[1]):
        raise ConfigError("delays.slowdown", "must be finite and > 0")
    return values.tolist()


def _resolve_trace(t: dict, n: int, label: str) -> dict:
    """A ``law = "trace"`` table: ``file``, a CSV of measured times (``data.read_trace``; a path
    relative to the current directory) with one column per worker (n_workers columns) or one
    column shared by all workers, resampled with replacement. The resolved table keeps the
    path, the file's sha256 and a few statistics, not the times (``delay_law`` reloads them)."""
    if "shift_per_row" in t:
        raise ConfigError("delays.shift_per_row", "a trace has no work-dependent shift")
    no_extra(t, {"law", "label", "file", "sha256", "slowdown", "markov", *CLUSTER_PARTS}, "delays")
    path = string(t, "file", "delays")
    trace = data.load_trace(path)
    if "sha256" in t and string(t, "sha256", "delays") != trace.sha256:  # pinned by a study.toml
        raise ConfigError("delays.sha256", f"{path} has changed since the study was written (its sha256 differs)")
    columns = trace.table.shape[1]
    if columns not in (1, n):
        raise ConfigError(
            "delays.file",
            f"{path} has {columns} columns; a trace needs n_workers={n} (one per worker) or 1 (shared by all workers)",
        )
    instance = delays.make_law("trace", table=trace.table, counts=trace.counts)
    mean = _law_mean(instance)
    if trace.table.min() < TIME_RANGE[0] or trace.table.max() > TIME_RANGE[1]:
        raise ConfigError(
            "delays.file",
            f"{path} has times from {trace.table.min():.3g} to {trace.table.max():.3g}, beyond "
            f"[{TIME_RANGE[0]:g}, {TIME_RANGE[1]:g}], which float32 clocks cannot resolve; rescale the times",
        )
    with jax.enable_x64(True):
        worker_means = np.asarray(instance.worker_means(), np.float64)
    return {
        "label": label,
        "law": "trace",
        "file": path,
        "sha256": trace.sha256,
        "columns": columns,
        "samples": trace.counts.tolist(),
        "worker_means": worker_means.tolist(),
        "slowdown": _resolve_slowdown(t, n, mean),
        "mean": mean,
    }


def _resolve_run(t: dict, seeds: int | None) -> dict:
    where = "run"
    allowed = {"eta", "optimizer", "momentum", "time_horizon", "iterations", "seeds", "seed", "grid_points", "chunk"}
    allowed |= {"block"}
    allowed |= {*PER_POLICY, "staleness_bins", "metrics"}
    no_extra(t, allowed | {"divergence_factor"}, where)
    eta = t.get("eta")
    etas = eta if isinstance(eta, list) else [eta]
    if eta is None or not etas:
        raise ConfigError("run.eta", "missing")
    for e in etas:
        if not is_number(e) or not math.isfinite(e) or e <= 0:
            raise ConfigError("run.eta", f"must be a finite number > 0 (or a list of them), got {show(e)}")
    if len(set(etas)) != len(etas):
        raise ConfigError("run.eta", f"the step sizes must be distinct, got {etas}")
    if len(etas) > 1:  # the engine steps in float32, and labels show eta to 6 digits
        for a, b in ((a, b) for i, a in enumerate(etas) for b in etas[i + 1 :]):
            if np.float32(a) == np.float32(b) or f"{a:g}" == f"{b:g}":
                raise ConfigError(
                    "run.eta", f"the step sizes {a!r} and {b!r} are the same to the engine's float32 or its labels' 6 digits"
                )
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= INT_MAX):
        raise ConfigError("seeds", f"must be an integer from 1 to {INT_MAX}, got {seeds!r}")
    out = {
        "eta": [float(e) for e in etas],
        "optimizer": string(t, "optimizer", where, "sgd", choices=OPTIMIZERS),
        "momentum": float(number(t, "momentum", where, 0.9, low=0)),
        "time_horizon": float(number(t, "time_horizon", where, strict_low=0)),
        "iterations": number(t, "iterations", where, None, integer=True, low=1),
        "seeds": seeds if seeds is not None else number(t, "seeds", where, 100, integer=True, low=1),
        "seed": number(t, "seed", where, 0, integer=True, low=0, high=2**32 - 1),
        "grid_points": number(t, "grid_points", where, 200, integer=True, low=2),
        "chunk": number(t, "chunk", where, 500, integer=True, low=1),
        "block": number(t, "block", where, None, integer=True, low=1, high=2**16),
        "divergence_factor": float(number(t, "divergence_factor", where, 1e6, strict_low=1)),
        **_scheme_fields(t, where, SCHEME_DEFAULTS),
        "staleness_bins": number(t, "staleness_bins", where, 32, integer=True, low=2, high=4096),
        "metrics": _metrics(t.get("metrics")),
    }
    if out["momentum"] >= 1:
        raise ConfigError("run.momentum", f"must be < 1, got {out['momentum']}")
    return out


def _metrics(value: Any) -> list[str] | None:
    """[run] metrics: names from ``core.problems.METRICS``, distinct; the first is tracked (the
    divergence test, the levels reached, the iteration grid) and must fall as runs improve."""
    from ..core.problems import metric_names_problem

    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError("run.metrics", f"must be a list of metric names, got {show(value)}")
    problem_says = metric_names_problem(value)
    if problem_says:
        raise ConfigError("run.metrics", problem_says)
    return list(value)


def _check_metrics(metrics: list[str] | None, problem: dict) -> None:
    """The metrics the problem's kind can give: F - F* needs F*, test metrics held-out rows."""
    cls = PROBLEMS[problem["kind"]]
    for name in metrics or ():
        if name == "error" and not cls.knows_f_star:
            raise ConfigError("run.metrics", f"'error' needs F*, which is not known for a {problem['kind']} problem: use 'loss'")
        if name.startswith("test_") and not problem.get("test_fraction"):
            raise ConfigError("run.metrics", f"{name!r} needs held-out rows: set problem.test_fraction")
        if name == "test_accuracy" and not cls.classifier:
            raise ConfigError("run.metrics", f"'test_accuracy' needs a classifier, not a {problem['kind']} problem")


PER_POLICY = SCHEME_FIELDS  # [run] fields a [[policy]] may override
SCHEME_DEFAULTS = {
    "scheme": "k_sync", "gradients": "shard", "batch_size": 1, "lr": "fixed", "lr_c": 1.0, "staleness_limit": None,
    "clip": None,
}


def _scheme_fields(t: dict, where: str, defaults: dict) -> dict:
    """The scheme settings of [run] or a [[policy]] (``defaults``: those it inherits). Ringmaster's
    R (``staleness_limit``) belongs to that scheme: an error in a table of another scheme, None
    in a policy of another scheme that inherits it."""
    out = {
        "scheme": string(t, "scheme", where, defaults["scheme"], choices=tuple(schemes.SCHEMES)),
        "gradients": string(t, "gradients", where, defaults["gradients"], choices=schemes.GRADIENTS),
        "batch_size": number(t, "batch_size", where, defaults["batch_size"], integer=True, low=1),
        "lr": string(t, "lr", where, defaults["lr"], choices=schemes.LR_RULES),
        "lr_c": float(number(t, "lr_c", where, defaults["lr_c"], strict_low=0)),
        "staleness_limit": number(t, "staleness_limit", where, defaults["staleness_limit"], integer=True, low=1),
        "clip": number(t, "clip", where, defaults["clip"], strict_low=0),
    }
    if out["clip"] is not None:
        out["clip"] = float(out["clip"])
    if out["scheme"] != "ringmaster":
        if "staleness_limit" in t:
            raise ConfigError(f"{where}.staleness_limit", f"only the ringmaster scheme stops stale work, not {out['scheme']}")
        out["staleness_limit"] = None
    return out


def _expand_policy(t: Any, i: int, n: int, run: dict) -> list[dict]:
    """A [[policy]] table; a fixed policy with a list of k stands for one policy per k."""
    if isinstance(t, dict) and t.get("kind") == "fixed" and isinstance(t.get("k"), list):
        if not t["k"] or "label" in t:
            raise ConfigError(f"policy[{i}].k", "a list of k needs at least one k and no label (each gets k=K)")
        return [_resolve_policy({**t, "k": k}, i, n, run) for k in t["k"]]
    return [_resolve_policy(t, i, n, run)]


def _resolve_policy(t: Any, i: int, n: int, run: dict) -> dict:
    """A [[policy]] table: its k policy, and the scheme fields of [run] it may override
    (resolved: every policy states its scheme settings, ``SCHEME_FIELDS``)."""
    where = f"policy[{i}]"
    if not isinstance(t, dict):
        raise ConfigError(where, "must be a table")
    out = _resolve_kind({k: v for k, v in t.items() if k not in PER_POLICY}, i, n, where)
    out.update(_scheme_fields(t, where, run))
    if out["scheme"] == "ringmaster" and out["staleness_limit"] is None:
        out["staleness_limit"] = n  # R = n unless stated (the literature's R needs sigma^2 / eps)
    if "label" not in t:  # the settings this table states, after the kind's label
        if "scheme" in t:
            out["label"] += f", {out['scheme']}"
        if out["scheme"] == "ringmaster":
            out["label"] += f" R={out['staleness_limit']}"
        if "clip" in t:
            out["label"] += f", clip={out['clip']:g}"
    return out


def _resolve_kind(t: dict, i: int, n: int, where: str) -> dict:
    """A [[policy]] table's kind and fields, read by the kind's class (``model.POLICIES``), its
    label (default: the kind's), and the policy checked against n (``core.policies.check``)."""
    kind = string(t, "kind", where, choices=tuple(POLICIES))
    cls = POLICIES[kind]
    own = [f.name for f in dataclasses.fields(cls) if f.name not in {g.name for g in dataclasses.fields(Policy)}]
    no_extra(t, {"kind", "label", *own}, where)
    fields = cls.read(t, where, n)
    policy = cls(**fields)
    out = {"kind": kind, **fields, "label": string(t, "label", where, policy.default_label())}
    if not out["label"].strip():
        raise ConfigError(f"{where}.label", "must not be empty")
    if kind not in ("bound_optimal", "oracle"):  # built from the problem / the fixed-k curves
        policies.check(policy.build(), n, where)
    return out


# ---------------------------------------------------------------- building and running


def _oracle_members(oracle: dict, pols: list[dict]) -> list[dict]:
    """The fixed-k policies whose envelope an oracle follows: those of its scheme settings."""
    return [q for q in pols if q["kind"] == "fixed" and all(q[f] == oracle[f] for f in PER_POLICY)]
