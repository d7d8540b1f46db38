"""Studies described in TOML: parse, validate, resolve defaults, build and run.

A study file has four parts (``studies/adaptive-fig3.toml`` is the reference example)::

    name = "adaptive-fig3"
    description = "..."
    [problem]   kind = "linear" | "logistic", n_workers, data (m, d, data_seed | dataset, ...)
    [delays]    law = "exponential", its parameters, optional slowdown (per worker)
    [run]       eta (a number or a list), optimizer, time_horizon, seeds, seed, ...
    [[policy]]  kind = "fixed" | "schedule" | "adaptive", label, parameters

The configurations run together are every policy x every eta. Every field is checked
before anything runs or is written; a bad one raises ``ConfigError`` naming it, e.g.
``policy[2].k: k must satisfy 1 <= k <= n_workers=50, got 60``.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from .. import data
from ..core import delays, policies, problems, schemes
from ..errors import ConfigError
from ..core.spec import OPTIMIZERS, RunSpec, SimConfig, Straggle, stack_configs

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclasses.dataclass(frozen=True)
class Study:
    """A resolved study: every default filled in, every field checked. ``as_dict`` is JSON."""

    name: str
    description: str
    problem: dict[str, Any]
    delays: list[dict[str, Any]]  # one or more delay laws (clusters)
    run: dict[str, Any]
    policies: list[dict[str, Any]]
    figure: dict[str, Any] = dataclasses.field(default_factory=lambda: {"kind": "error_vs_time"})
    report: dict[str, Any] = dataclasses.field(default_factory=lambda: {"levels": []})

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- field readers


INT_MAX = 2**31 - 1  # counts, sizes and iterations live in int32 on the device
TIME_RANGE = (1e-30, 1e30)  # times are float32 on the device
MAX_DATA_ENTRIES = 500_000_000  # synthetic data is generated in float64 on the host


def number(
    table: dict,
    key: str,
    where: str,
    default: Any = ...,
    *,
    integer: bool = False,
    low=None,
    strict_low=None,
    high: float | None = None,
):
    """A number from a table; integers are bounded by ``low`` and ``high`` (default int32's range)."""
    if key not in table:
        if default is ...:
            raise ConfigError(f"{where}.{key}", "missing")
        return default
    value = table[key]
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok:
        raise ConfigError(f"{where}.{key}", f"must be {'an integer' if integer else 'a number'}, got {_show(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}.{key}", f"must be finite, got {value!r}")
    if integer and low is None and strict_low is None:
        low = -INT_MAX - 1
    if low is not None and value < low:
        raise ConfigError(f"{where}.{key}", f"must be >= {low}, got {_show(value)}")
    if strict_low is not None and value <= strict_low:
        raise ConfigError(f"{where}.{key}", f"must be > {strict_low}, got {_show(value)}")
    if high is None and integer:
        high = INT_MAX
    if high is not None and value > high:
        raise ConfigError(f"{where}.{key}", f"must be <= {high}, got {_show(value)}")
    if not _is_number(value):  # TOML integers are unbounded
        raise ConfigError(f"{where}.{key}", f"is too large for a float, got {_show(value)}")
    return value


def _show(value: Any) -> str:
    """``repr(value)``, shortened for a message (TOML integers may have thousands of digits)."""
    try:
        text = repr(value)
    except ValueError:  # an integer beyond Python's int-to-text limit
        return "an integer with too many digits to print"
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


def _string(table: dict, key: str, where: str, default: Any = ..., choices=None) -> str:
    if key not in table:
        if default is ...:
            raise ConfigError(f"{where}.{key}", "missing")
        return default
    value = table[key]
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key}", f"must be a string, got {value!r}")
    if choices is not None and value not in choices:
        raise ConfigError(f"{where}.{key}", f"must be one of {', '.join(choices)}; got {value!r}")
    return value


def _table(raw: dict, key: str) -> dict:
    value = raw.get(key)
    if not isinstance(value, dict):
        raise ConfigError(key, "missing [" + key + "] table" if value is None else "must be a table")
    return value


def _no_extra(table: dict, allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}", f"unknown field (known: {', '.join(sorted(allowed))})")


# ---------------------------------------------------------------- loading and resolving


def read_toml(path: str | Path) -> dict:
    """Parse a TOML file; a missing, empty or malformed file is a ConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config", f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError("config", f"cannot read {path}: {e}") from None
    if not text.strip():
        raise ConfigError("config", f"{path} is empty")
    try:
        return tomllib.loads(text)
    except ValueError as e:  # TOMLDecodeError, or an integer too long for Python's int()
        raise ConfigError("config", f"{path} is not valid TOML: {str(e).splitlines()[0]}") from None


def load_study(path: str | Path, seeds: int | None = None, quick: bool = False) -> Study:
    """Read, check and resolve a study file; ``seeds`` overrides run.seeds."""
    return resolve(read_toml(path), seeds=seeds, default_name=Path(path).stem, quick=quick)


QUICK_SEEDS = 4  # --quick without a [quick] table


def resolve(raw: dict, seeds: int | None = None, default_name: str = "study", quick: bool = False) -> Study:
    """Check and resolve a parsed study. ``quick`` applies the file's ``[quick]`` table, which
    overrides fields of ``[run]`` (without one, at most QUICK_SEEDS seeds); ``seeds`` overrides both."""
    if not isinstance(raw, dict):
        raise ConfigError("config", f"must be a table of study fields, got {_show(raw)}")
    _no_extra(raw, {"name", "description", "problem", "delays", "run", "policy", "quick", "figure", "report"}, "config")
    run_table = _table(raw, "run")
    if quick:
        overrides = raw.get("quick", {"seeds": QUICK_SEEDS})
        if not isinstance(overrides, dict):
            raise ConfigError("quick", "must be a table of [run] fields")
        run_table = {**run_table, **overrides}
    name = _string(raw, "name", "config", default_name)
    description = _string(raw, "description", "config", "")
    problem = _resolve_problem(_table(raw, "problem"))
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
        laws = [_resolve_delays(_table(raw, "delays"), n)]
    try:
        run = _resolve_run(run_table, seeds)
    except ConfigError as e:  # name the [quick] table when the field came from it
        key = e.field.partition(".")[2]
        if not quick or not e.field.startswith("run.") or key not in overrides:
            raise
        raise ConfigError(f"quick.{key}", e.problem) from None
    entries = raw.get("policy")
    if not isinstance(entries, list) or not entries:
        raise ConfigError("policy", "at least one [[policy]] table is needed")
    pols = [pol for i, p in enumerate(entries) for pol in _expand_policy(p, i, n, run)]
    labels = [p["label"] for p in pols]
    if len(set(labels)) != len(labels):
        raise ConfigError("policy", f"labels must be distinct, got {labels}")
    figure = _resolve_figure(raw.get("figure", {}))
    report = _resolve_report(raw.get("report", {}), labels)
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
        if pol["kind"] == "oracle" and len(_oracle_members(pol, pols)) < 2:
            raise ConfigError(
                f"policy[{i}].kind", "an oracle follows the envelope of two or more fixed-k policies of its scheme"
            )
    if "reference" in report and (len(run["eta"]) > 1 or len(laws) > 1):
        raise ConfigError("report.reference", "a reference policy needs a study with one eta and one delay law")
    if figure["kind"] == "runtime_vs_k" and not any(p["kind"] == "fixed" for p in pols):
        raise ConfigError("figure.kind", "runtime_vs_k draws the fixed-k policies; the study has none")
    _check_work_shift(laws, pols, isinstance(tables, list))
    return Study(
        name=name,
        description=description,
        problem=problem,
        delays=laws,
        run=run,
        policies=pols,
        figure=figure,
        report=report,
    )


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
    _no_extra(t, {"levels", "reference"}, "report")
    levels = t.get("levels", [])
    if not isinstance(levels, list) or not all(_is_number(v) and math.isfinite(v) and v > 0 for v in levels):
        raise ConfigError("report.levels", f"must be a list of error levels > 0, got {_show(levels)}")
    out: dict[str, Any] = {"levels": [float(v) for v in levels]}
    if "reference" in t:
        out["reference"] = _string(t, "reference", "report", choices=tuple(labels))
    return out


POLICY_KINDS = ("fixed", "schedule", "adaptive", "bound_optimal", "doubling", "oracle", "loss_ratio", "gradient_norm")
FIGURES = ("error_vs_time", "error_vs_iterations", "runtime_vs_k", "communication", "envelope")


def _resolve_figure(t: Any) -> dict:
    """The optional [figure] table: which figure the study draws."""
    if not isinstance(t, dict):
        raise ConfigError("figure", "must be a table")
    _no_extra(t, {"kind", "iterations"}, "figure")
    out = {"kind": _string(t, "kind", "figure", "error_vs_time", choices=FIGURES)}
    if out["kind"] == "runtime_vs_k":
        out["iterations"] = number(t, "iterations", "figure", 2000, integer=True, low=1)
    return out


def _resolve_problem(t: dict) -> dict:
    where = "problem"
    kind = _string(t, "kind", where, choices=("linear", "logistic"))
    out: dict[str, Any] = {"kind": kind, "n_workers": number(t, "n_workers", where, integer=True, low=1)}
    out["data_seed"] = number(t, "data_seed", where, 0, integer=True, low=0, high=2**32 - 1)
    if kind == "linear":
        _no_extra(t, {"kind", "n_workers", "data_seed", "m", "d"}, where)
        out["m"] = number(t, "m", where, integer=True, low=1)
        out["d"] = number(t, "d", where, integer=True, low=1)
        if out["m"] * out["d"] > MAX_DATA_ENTRIES:
            raise ConfigError(f"{where}.m", f"m x d = {out['m'] * out['d']:.3g} exceeds {MAX_DATA_ENTRIES:.0e} entries")
    else:
        _no_extra(t, {"kind", "n_workers", "data_seed", "dataset", "images", "labels", "classes", "m", "reg"}, where)
        out["dataset"] = _string(t, "dataset", where, "digits", choices=("digits", "mnist"))
        if out["dataset"] == "mnist":
            out["images"] = _string(t, "images", where)
            out["labels"] = _string(t, "labels", where)
        classes = t.get("classes")
        integers = isinstance(classes, list) and all(isinstance(c, int) and not isinstance(c, bool) for c in classes)
        if classes is not None and (not integers or len(classes) < 2 or not all(0 <= c <= 9 for c in classes)):
            raise ConfigError(
                f"{where}.classes", f"must be a list of at least two labels from 0 to 9, got {_show(classes)}"
            )
        out["classes"] = classes
        out["m"] = number(t, "m", where, None, integer=True, low=1)
        out["reg"] = number(t, "reg", where, 0.01, strict_low=0)
    return out


def _is_number(x: Any) -> bool:
    """An int or float that a float can hold (TOML integers are unbounded)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    return isinstance(x, float) or abs(x) <= sys.float_info.max


def _resolve_delays(t: Any, n: int, where: str = "delays") -> dict:
    """One delay law: a [delays] table, or one of several [[delays]] tables (each with a label)."""
    if not isinstance(t, dict):
        raise ConfigError(where, "must be a table")
    try:
        return _resolve_markov(t, _resolve_law(t, n))
    except ConfigError as e:  # name the table the field is in
        if where == "delays" or not e.field.startswith("delays"):
            raise
        raise ConfigError(where + e.field[len("delays") :], e.problem) from None


def _resolve_law(t: dict, n: int) -> dict:
    where = "delays"  # the caller renames fields of a [[delays]] entry
    law = _string(t, "law", "delays")
    if law not in delays.LAWS:
        raise ConfigError("delays.law", f"unknown delay law {law!r}; known: {', '.join(sorted(delays.LAWS))}")
    label = _string(t, "label", "delays", law)
    if law == "trace":
        return _resolve_trace(t, n, label)
    params = {k: v for k, v in t.items() if k not in ("law", "label", "slowdown", "shift_per_row", "markov")}
    shift_per_row = 0.0
    if "shift_per_row" in t:  # work-dependent delays (App. E of the async paper): shift + b * shift_per_row
        if law != "shifted_exponential":
            raise ConfigError("delays.shift_per_row", "only a shifted_exponential law has a work-dependent shift")
        shift_per_row = float(number(t, "shift_per_row", "delays", low=0))
    lists = law == "hyperexponential"  # its probs and rates are lists, every other parameter a number
    for key, value in params.items():
        ok = isinstance(value, list) and value and all(map(_is_number, value)) if lists else _is_number(value)
        if not ok:
            kind = "a non-empty list of numbers" if lists else "a number"
            raise ConfigError(f"{where}.{key}", f"must be {kind}, got {_show(value)}")
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
    _no_extra(m, {"slow", "enter", "stay"}, "delays.markov")
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


def _law_mean(instance: delays.DelayLaw) -> float:
    with jax.enable_x64(True):  # the mean in float64, so that only a truly infinite mean is called infinite
        return float(np.asarray(instance.mean()))


def _resolve_slowdown(t: dict, n: int, mean: float) -> list[float]:
    slowdown = t.get("slowdown", 1.0)
    if not (_is_number(slowdown) or (isinstance(slowdown, list) and all(map(_is_number, slowdown)))):
        raise ConfigError("delays.slowdown", f"must be a number or a list of numbers, got {_show(slowdown)}")
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
    _no_extra(t, {"law", "label", "file", "slowdown", "markov"}, "delays")
    path = _string(t, "file", "delays")
    trace = data.load_trace(path)
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
    allowed |= {"scheme", "gradients", "batch_size", "lr", "lr_c", "staleness_bins"}
    _no_extra(t, allowed | {"divergence_factor"}, where)
    eta = t.get("eta")
    etas = eta if isinstance(eta, list) else [eta]
    if eta is None or not etas:
        raise ConfigError("run.eta", "missing")
    for e in etas:
        if not _is_number(e) or not math.isfinite(e) or e <= 0:
            raise ConfigError("run.eta", f"must be a finite number > 0 (or a list of them), got {_show(e)}")
    if len(set(etas)) != len(etas):
        raise ConfigError("run.eta", f"the step sizes must be distinct, got {etas}")
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= INT_MAX):
        raise ConfigError("seeds", f"must be an integer from 1 to {INT_MAX}, got {seeds!r}")
    out = {
        "eta": [float(e) for e in etas],
        "optimizer": _string(t, "optimizer", where, "sgd", choices=OPTIMIZERS),
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
    }
    if out["momentum"] >= 1:
        raise ConfigError("run.momentum", f"must be < 1, got {out['momentum']}")
    return out


PER_POLICY = ("scheme", "gradients", "batch_size", "lr", "lr_c")  # [run] fields a [[policy]] may override
SCHEME_DEFAULTS = {"scheme": "k_sync", "gradients": "shard", "batch_size": 1, "lr": "fixed", "lr_c": 1.0}


def _scheme_fields(t: dict, where: str, defaults: dict) -> dict:
    return {
        "scheme": _string(t, "scheme", where, defaults["scheme"], choices=tuple(schemes.SCHEMES)),
        "gradients": _string(t, "gradients", where, defaults["gradients"], choices=schemes.GRADIENTS),
        "batch_size": number(t, "batch_size", where, defaults["batch_size"], integer=True, low=1),
        "lr": _string(t, "lr", where, defaults["lr"], choices=schemes.LR_RULES),
        "lr_c": float(number(t, "lr_c", where, defaults["lr_c"], strict_low=0)),
    }


def _expand_policy(t: Any, i: int, n: int, run: dict) -> list[dict]:
    """A [[policy]] table; a fixed policy with a list of k stands for one policy per k."""
    if isinstance(t, dict) and t.get("kind") == "fixed" and isinstance(t.get("k"), list):
        if not t["k"] or "label" in t:
            raise ConfigError(f"policy[{i}].k", "a list of k needs at least one k and no label (each gets k=K)")
        return [_resolve_policy({**t, "k": k}, i, n, run) for k in t["k"]]
    return [_resolve_policy(t, i, n, run)]


def _resolve_policy(t: Any, i: int, n: int, run: dict) -> dict:
    """A [[policy]] table: its k policy, and the scheme fields of [run] it may override
    (resolved: every policy states its scheme, gradients, batch_size, lr and lr_c)."""
    where = f"policy[{i}]"
    if not isinstance(t, dict):
        raise ConfigError(where, "must be a table")
    out = _resolve_kind({k: v for k, v in t.items() if k not in PER_POLICY}, i, n, where)
    out.update(_scheme_fields(t, where, run))
    if "label" not in t and "scheme" in t:
        out["label"] += f", {out['scheme']}"
    return out


def _resolve_kind(t: dict, i: int, n: int, where: str) -> dict:
    kind = _string(t, "kind", where, choices=POLICY_KINDS)
    if kind in ("bound_optimal", "oracle"):  # built in ``configurations`` / ``run_study``
        _no_extra(t, {"kind", "label"}, where)
        default = "bound-optimal (Theorem 1)" if kind == "bound_optimal" else "oracle (envelope)"
        out = {"kind": kind, "label": _string(t, "label", where, default)}
        if not out["label"].strip():
            raise ConfigError(f"{where}.label", "must not be empty")
        return out
    if kind == "doubling":
        _no_extra(t, {"kind", "label", "k0", "every", "k_max"}, where)
        out = {
            "kind": kind,
            "k0": number(t, "k0", where, integer=True, low=1),
            "every": float(number(t, "every", where, strict_low=0, high=TIME_RANGE[1])),
            "k_max": number(t, "k_max", where, n, integer=True, low=1),
        }
        if out["k_max"] < out["k0"]:
            raise ConfigError(f"{where}.k_max", f"must be >= k0={out['k0']}, got {out['k_max']}")
        default_label = f"doubling {out['k0']}->{out['k_max']} every {out['every']:g}"
    elif kind == "loss_ratio":
        _no_extra(t, {"kind", "label", "k0", "k_max"}, where)
        out = {
            "kind": kind,
            "k0": number(t, "k0", where, integer=True, low=1),
            "k_max": number(t, "k_max", where, n, integer=True, low=1),
        }
        default_label = f"loss ratio {out['k0']}->{out['k_max']}"
    elif kind == "gradient_norm":
        _no_extra(t, {"kind", "label", "k0", "k_max", "gamma", "burnin", "step", "factor"}, where)
        out = {
            "kind": kind,
            "k0": number(t, "k0", where, integer=True, low=1),
            "k_max": number(t, "k_max", where, n, integer=True, low=1),
            "gamma": float(number(t, "gamma", where, strict_low=0, high=1)),
            "burnin": number(t, "burnin", where, integer=True, low=1),
            "step": number(t, "step", where, 0, integer=True, low=0),
            "factor": number(t, "factor", where, 2, integer=True, low=1),
        }
        default_label = f"gradient norm {out['k0']}->{out['k_max']}"
    elif kind == "fixed":
        _no_extra(t, {"kind", "label", "k"}, where)
        out = {"kind": kind, "k": number(t, "k", where, integer=True, low=1)}
        default_label = f"k={out['k']}"
    elif kind == "schedule":
        _no_extra(t, {"kind", "label", "k0", "at", "ks", "by"}, where)
        at, ks = t.get("at"), t.get("ks")
        if not isinstance(at, list) or not all(map(_is_number, at)):
            raise ConfigError(f"{where}.at", f"must be a list of numbers, got {_show(at)}")
        if not isinstance(ks, list) or not all(isinstance(k, int) and not isinstance(k, bool) for k in ks):
            raise ConfigError(f"{where}.ks", f"must be a list of integers, got {_show(ks)}")
        if any(not 1 <= k <= n for k in ks):
            bad = next(k for k in ks if not 1 <= k <= n)
            raise ConfigError(f"{where}.ks", f"k must satisfy 1 <= k <= n_workers={n}, got {_show(bad)}")
        out = {
            "kind": kind,
            "k0": number(t, "k0", where, integer=True, low=1),
            "at": [float(a) for a in at],
            "ks": ks,
            "by": _string(t, "by", where, "time", choices=("time", "iterations")),
        }
        default_label = f"schedule {out['k0']}->{ks[-1] if ks else out['k0']}"
    else:
        _no_extra(t, {"kind", "label", "k_min", "k_max", "thresh", "burnin", "step", "factor"}, where)
        out = {
            "kind": kind,
            "k_min": number(t, "k_min", where, integer=True, low=1),
            "k_max": number(t, "k_max", where, n, integer=True, low=1),
            "thresh": number(t, "thresh", where, integer=True, low=0),
            "burnin": number(t, "burnin", where, integer=True, low=0),
            "step": number(t, "step", where, 0 if "factor" in t else 1, integer=True, low=0),
            "factor": number(t, "factor", where, 1, integer=True, low=1),
        }
        default_label = f"adaptive {out['k_min']}->{out['k_max']}"
    out["label"] = _string(t, "label", where, default_label)
    if not out["label"].strip():
        raise ConfigError(f"{where}.label", "must not be empty")
    policies.check(build_policy(out), n, where)
    return out


# ---------------------------------------------------------------- building and running


def build_policy(p: dict) -> policies.KPolicy:
    if p["kind"] == "fixed":
        return policies.fixed(p["k"])
    if p["kind"] == "doubling":
        return policies.doubling(p["k0"], p["every"], p["k_max"])
    if p["kind"] == "loss_ratio":
        return policies.loss_ratio(p["k0"], p["k_max"])
    if p["kind"] == "gradient_norm":
        return policies.gradient_norm(p["k0"], p["k_max"], p["gamma"], p["burnin"], step=p["step"], factor=p["factor"])
    if p["kind"] == "schedule":
        return policies.schedule(p["k0"], p["at"], p["ks"], by=p["by"])
    return policies.adaptive(p["k_min"], p["k_max"], p["thresh"], p["burnin"], step=p["step"], factor=p["factor"])


def build_problem(p: dict) -> problems.Problem:
    """The problem of a resolved study, data loaded and F* computed (may raise DataError)."""
    n = p["n_workers"]
    if p["kind"] == "linear":
        x, y, _ = data.synthetic_linear(p["m"], p["d"], p["data_seed"])
        return problems.linear_regression(x, y, n)
    if p["dataset"] == "digits":
        x, labels = data.load_digits()
    else:
        x, labels = data.load_mnist(p["images"], p["labels"])
    classes = tuple(p["classes"]) if p["classes"] else None
    x, labels = data.select_classes(x, labels, classes)
    x, labels = data.subsample(x, labels, p["m"], p["data_seed"])
    num_classes = 1 if classes is not None and len(classes) == 2 else (len(classes) if classes else 10)
    return problems.logistic_regression(x, labels, n, p["reg"], num_classes)


def delay_law(d: dict, batch_size: int) -> delays.DelayLaw:
    """The resolved [delays] table's law; a work-dependent shift grows with the mini-batch size.
    A trace is read again from its file (parsed once per content), which must not have changed."""
    if d["law"] == "trace":
        trace = data.load_trace(d["file"], sha256=d["sha256"])
        return delays.make_law("trace", table=trace.table, counts=trace.counts)
    params = {k: d[k] for k in delays.parameter_names(d["law"])}
    if "shift_per_row" in d:
        params["shift"] = params["shift"] + batch_size * d["shift_per_row"]
    return delays.make_law(d["law"], **params)


def bound_optimal(pc, law, slowdown: np.ndarray, eta: float) -> policies.KPolicy:
    """Theorem 1's schedule for a problem's constants ``pc`` (``theory.constants``), a cluster
    and a step size, with mu_k = E[X_(k:n)] from ``theory.order_stats``."""
    from ..theory.fastest_k_bounds import BoundConstants, bound_optimal_policy, order_means

    if not 0 < eta * pc.c < 1:
        raise ConfigError("run.eta", f"Theorem 1 needs 0 < eta c < 1; eta={eta:g} and c={pc.c:.4g}")
    bc = BoundConstants(eta=eta, L=pc.L, c=pc.c, sigma2=pc.sigma2, s=pc.s, gap0=pc.initial_gap)
    iid = bool(np.all(slowdown == 1.0))
    return bound_optimal_policy(bc, order_means(law, slowdown.size, None if iid else slowdown))


class Configuration(NamedTuple):
    """One configuration of a study: a cluster x a [[policy]] x a step size."""

    label: str
    config: SimConfig
    spec: RunSpec
    delays: dict[str, Any]  # the resolved delay table
    policy: dict[str, Any]  # the resolved [[policy]] table


def configurations(study: Study, problem: problems.Problem | None = None) -> list[Configuration]:
    """Every delay law x every policy x every eta, with labels. A bound-optimal policy needs the
    ``problem``."""
    etas, run = study.run["eta"], study.run
    out = []
    constants = None
    for d in study.delays:
        slowdown = np.asarray(d["slowdown"], np.float64)
        for p in study.policies:
            law = delay_law(d, p["batch_size"])
            for eta in etas:
                label = p["label"] if len(etas) == 1 else f"{p['label']}, eta={eta:g}"
                if len(study.delays) > 1:
                    label = f"{label}, {d['label']}"
                if p["kind"] == "bound_optimal":
                    if problem is None:
                        raise ValueError("a bound-optimal policy needs the problem")
                    if constants is None:
                        from ..theory.constants import problem_constants

                        constants = problem_constants(problem)
                    # Markov stragglers enter as their stationary mean factor (Theorem 1 assumes iid
                    # workers, independent over iterations: with them, the schedule is a heuristic)
                    factor = float(Straggle(**d["markov"]).mean_factor()) if "markov" in d else 1.0
                    policy = bound_optimal(constants, law, slowdown * factor, eta)
                elif p["kind"] == "oracle":  # a stand-in until run_study knows the envelope: the smallest fixed k
                    policy = policies.fixed(min(q["k"] for q in study.policies if q["kind"] == "fixed"))
                else:
                    policy = build_policy(p)
                straggle = Straggle(*(np.float64(v) for v in d.get("markov", Straggle()._asdict()).values()))
                config = SimConfig(policy, np.float64(eta), law, slowdown, np.float64(p["lr_c"]), straggle)
                spec = RunSpec(
                    n=study.problem["n_workers"],
                    chunk=run["chunk"],
                    optimizer=run["optimizer"],
                    momentum=run["momentum"],
                    scheme=p["scheme"],
                    gradients=p["gradients"],
                    batch_size=p["batch_size"],
                    lr=p["lr"],
                    staleness_bins=run["staleness_bins"],
                )
                out.append(Configuration(label, config, spec, d, p))
    return out


def check_step_size(study: Study, problem: problems.Problem) -> None:
    """Warn when a step size is above the stable limit of a least-squares problem."""
    if isinstance(problem, problems.LinearRegression):
        limit = problems.stable_step_limit(problem)
        for eta in study.run["eta"]:
            if eta >= limit:
                warnings.warn(
                    f"run.eta={eta:g} is above the stable limit 2/max_i L_i = {limit:.4g} of this problem: runs may diverge",
                    stacklevel=2,
                )


class Prepared(NamedTuple):
    """A study ready to run: data loaded, F* computed, configurations built."""

    problem: problems.Problem
    configurations: list[Configuration]

    @property
    def labels(self) -> list[str]:
        return [c.label for c in self.configurations]


def prepare(study: Study) -> Prepared:
    """Load the data and build everything a run needs (may raise DataError)."""
    problem = build_problem(study.problem)
    check_step_size(study, problem)
    return Prepared(problem, configurations(study, problem))


def _oracle_members(oracle: dict, pols: list[dict]) -> list[dict]:
    """The fixed-k policies whose envelope an oracle follows: those of its scheme settings."""
    return [q for q in pols if q["kind"] == "fixed" and all(q[f] == oracle[f] for f in PER_POLICY)]
