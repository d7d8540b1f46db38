"""Named studies: every ``studies/NAME.toml`` is a study, run by ``fastk-jax study NAME``.

A study file either describes a simulation (``[problem]``, ``[delays]``, ``[run]``,
``[[policy]]``: see ``study``) or a theory figure (a ``[theory]`` table whose ``kind`` names a
function of ``theory_studies``). Either way the output folder receives ``results.npz``
(arrays only), ``config.json`` (the resolved study), ``summary.json`` (key numbers, timings,
versions) and ``figure.png`` / ``figure.pdf``, written atomically: a study that fails leaves
nothing behind.

``--quick`` runs a simulation study with its ``[quick]`` overrides of ``[run]`` (fewer seeds,
a shorter horizon), and theory studies on coarser grids; every study's quick run finishes in
under a minute on a 2-core CPU.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from .. import engine
from ..analysis import plotting, results
from ..engine import checkpoint
from ..errors import ConfigError
from ..io import files, run_folder
from ..study import fields
from ..study.build import NO_STEP_LIMIT, Configuration, prepare
from ..study.definition import Study
from ..study.fields import read_toml
from ..study.reader import check_name
from ..versions import provenance, versions
from . import execute, theory_studies


def run_file(
    path: str | Path,
    out: str | Path | None = None,
    seeds: int | None = None,
    quick: bool = False,
    progress: Callable[[engine.Progress], None] | None = None,
    say: Callable[[str], None] = lambda msg: None,
    checkpoint_every_s: float | None = None,
) -> Path:
    """Run the study in ``path`` and write its results into ``out`` (default results/NAME).

    Bad input raises ``ConfigError`` or ``DataError`` before anything is written.

    A simulation study checkpoints into ``OUT.partial/`` (at most every ``checkpoint_every_s``
    seconds, default ``$FASTK_CHECKPOINT_EVERY_S`` or 30; ``off`` in that variable: never), and
    a run killed at any moment resumes from there when the same command runs again; the folder
    goes once the results are written. If ``out`` already holds this study's complete results
    (same resolved configuration, data, versions and platform: ``summary.json``'s ``fingerprint``, and a
    results.npz that matches its hash) they are reused, not recomputed; results of anything
    else in ``out`` are replaced. ``FASTK_DISTRIBUTED=1`` starts ``jax.distributed`` first
    (``engine.init_distributed``); then only process 0 writes.
    """
    engine.init_distributed()
    raw = read_toml(path)
    if "theory" in raw:
        return _run_theory(raw, Path(path).stem, out, quick, say)
    if "sweep" in raw:
        from . import sweep

        return sweep.run_file(raw, Path(path).stem, out, seeds, quick, progress, say)
    s = Study.from_table(raw, seeds=seeds, quick=quick, default_name=Path(path).stem)
    return write_study(s, out, progress=progress, say=say, checkpoint_every_s=checkpoint_every_s, quick=quick)


def write_study(
    s: Study,
    out: str | Path | None = None,
    *,
    progress: Callable[[engine.Progress], None] | None = None,
    say: Callable[[str], None] = lambda msg: None,
    checkpoint_every_s: float | None = None,
    quick: bool = False,
) -> Path:
    """Run a study (``execute.run_all``) and write its run folder ``out`` (default
    results/NAME): results.npz, config.json (the study resolved), study.toml (the study as run:
    ``fastk-jax run OUT/study.toml`` runs it again to the same bits), summary.json (key numbers,
    timings, provenance) and the figure; or reuse the folder's results if they are this study's."""
    out = Path(out) if out else Path("results") / s.name
    every = checkpoint.cadence(checkpoint_every_s)
    with run_folder.claim(out):  # one run at a time; what killed runs left is finished or removed
        return _run_simulation(s, out, quick, every, progress, say)


def _run_simulation(s: Study, out: Path, quick: bool, every, progress, say) -> Path:
    partial = checkpoint.partial_folder(out)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepared = prepare(s, say)  # loads the data: bad data fails here, before any output
        if prepared.step_limit is None:
            say(f"fastk-jax: note: {NO_STEP_LIMIT.format(kind=s.problem.kind)}")
        # the platform too: it sets the default block size, and its kernels set the last bits; and
        # the precision of the float32 products (float32 unless the user chose otherwise)
        where = {
            "config": s.resolved,
            "versions": versions(),
            "platform": jax.default_backend(),
            "matmul_precision": engine.matmul_precision(),
        }
        fingerprint = checkpoint.fingerprint(where, prepared.problem)
        state = files.status(out, fingerprint)
        if state != "complete":
            say(f"fastk-jax: {s.name}: {len(prepared.labels)} configurations x {s.run.seeds} seeds")
            if state in ("other", "unreadable"):
                say(f"fastk-jax: {out}/ holds {'other' if state == 'other' else 'unreadable'} results; replacing them")
            if partial.is_dir():
                say(f"fastk-jax: resuming from the checkpoints in {partial}/")
            say("fastk-jax: building and compiling the simulation (progress follows its first chunk)")
            started = time.perf_counter()
            sim, ran = execute.run_all(
                prepared.problem,
                prepared.configurations,
                s.run,
                progress,
                checkpoint=None if every is None else partial,
                checkpoint_every_s=every or 0.0,
                cover_iterations=execute.covers_iterations(s),
            )
            wall = time.perf_counter() - started
    for w in caught:
        print(f"fastk-jax: warning: {w.message}", file=sys.stderr)
    if state == "complete":
        say(f"fastk-jax: {s.name}: complete; reusing results in {out}/")
        return out

    res = execute.results_of(s, sim, ran)
    for label, count in zip(res.labels, res.diverged):
        if count:
            print(
                f"fastk-jax: warning: {label}: {count} of {s.run.seeds} runs diverged; they are left out of the curves",
                file=sys.stderr,
            )
    summary = study_summary(s, res, sim, ran, quick=quick, wall=wall)
    summary["fingerprint"] = fingerprint  # of the resolved study, its data and the versions: a re-run reuses these results
    figure = figure_writer(s, res, ran, summary)
    files.save(
        out, results.to_arrays(res), s.resolved, summary, figures=[figure], checkpoints=partial,
        texts={"study.toml": s.to_toml()},
    )
    say(f"fastk-jax: wrote {out}/ ({wall:.1f} s, {sim.compile_s:.1f} s compiling)")
    tracked = res.metric
    for c in summary["configurations"]:
        say(f"  {c['label']:<24} final {tracked} {c[f'final_{tracked}']:.4g} +- {c[f'final_{tracked}_half_width']:.2g}")
    return out


def study_summary(
    s: Study, res: results.Results, sim: engine.Simulation, ran: list[Configuration], *, quick: bool, wall: float
) -> dict[str, Any]:
    """summary.json of a simulation study: each configuration's key numbers, the reach table,
    the figure's table (envelope, runtime against k), timings and provenance."""
    summary = {
        "name": s.name,
        "quick": quick,
        "seeds": s.run.seeds,
        "iterations": sim.iterations,
        "wall_s": round(wall, 3),
        "compile_s": round(sim.compile_s, 3),
        "block": sim.block,  # runs per block: with the seed and configuration, it fixes a run's numbers
        "matmul_precision": engine.matmul_precision(),  # of float32 products (engine.loop)
        "metrics": list(res.metrics),  # recorded; the first is tracked (levels, divergence)
        "initial_error": sim.initial_error,  # of the tracked metric, at w_0
        "configurations": [
            {
                "label": str(label),
                **_finals(res, c),
                "final_k": float(res.bands["k"].mean[c, -1]),
                "diverged": int(res.diverged[c]),
                "scheme": ran[c].spec.scheme,
                "iterations": int(sim.summary.iterations[c]),
                "time_per_iteration": float(res.time_per_iteration.mean[c]),
                "time_per_iteration_half_width": float(res.time_per_iteration.half_width[c]),
                "fresh_fraction": float(res.staleness[c, 0] / max(1, res.staleness[c].sum())),
                **_schedule(ran[c].config.policy),
            }
            for c, label in enumerate(res.labels)
        ],
        **provenance(),
        "resumed_from_iterations": sim.resumed_from,
    }
    summary["reach"] = reach_table(res, s.report)
    kind = s.figure.kind
    if kind == "envelope":
        from ..analysis import metrics

        summary["envelope"] = envelope_table(res, metrics.envelope(res.bands[res.metric].mean, res.index(policy="fixed")), list(s.report.levels))
    if kind == "runtime_vs_k":
        panels = runtime_panels(ran, s.figure.iterations, s.n_workers)
        summary["runtime_vs_k"] = _runtime_table(panels, res, s.figure.iterations)
    return summary


def _finals(res: results.Results, c: int) -> dict[str, float]:
    """Configuration ``c``'s mean of each recorded metric at the horizon, with its 95% half-width."""
    out = {}
    for name in res.metrics:
        b = res.bands[name]
        out[f"final_{name}"] = float(b.mean[c, -1])
        out[f"final_{name}_half_width"] = float(b.half_width[c, -1])
    return out


def figure_writer(s: Study, res: results.Results, ran: list[Configuration], summary: dict) -> Callable[[Path], None]:
    """The function that draws the study's figure (``[figure] kind``) into a folder."""
    kind = s.figure.kind

    @plotting.quietly
    def figure(folder: Path) -> None:
        if kind == "error_vs_iterations":
            fig = plotting.error_vs_iterations(res, title=s.name)
        elif kind == "runtime_vs_k":
            fig = plotting.runtime_vs_k(res, runtime_panels(ran, s.figure.iterations, s.n_workers), s.figure.iterations, title=s.name)
        elif kind == "communication":
            fig = plotting.communication(res, title=s.name)
        elif kind == "envelope":
            from ..analysis import metrics

            fig = plotting.envelope(res, metrics.envelope(res.bands[res.metric].mean, res.index(policy="fixed")), title=s.name)
        else:
            fig = plotting.error_vs_time(res, title=s.name, metric=list(s.figure.metrics) if s.figure.metrics else None)
        plotting.save_figure(fig, folder / "figure")

    return figure


def runtime_panels(confs: list[Configuration], iterations: int, n: int) -> list[dict]:
    """For the runtime-against-K figure: per delay law, the fixed-k configurations of each scheme
    and the theory lines, Lemma 4 (K-sync, E[X_(K:P)]; also Lemma 6's bound on K-async for
    new-longer-than-used laws) and Lemma 5 (K-batch-async, K E[X] / P), times ``iterations``."""
    from ..theory import async_theory
    from ..theory.order_stats import order_statistic_moments

    panels: dict[str, dict] = {}
    for c, conf in enumerate(confs):
        if conf.policy.kind != "fixed":
            continue
        label = conf.delays.label or conf.delays.law
        panel = panels.setdefault(label, {"title": label, "rows": {}, "law": conf.config.delay})
        panel["rows"].setdefault(conf.spec.scheme, []).append((conf.policy.k, c))
    for panel in panels.values():
        law = panel.pop("law")
        ks = range(1, n + 1)
        mean = float(np.asarray(law.mean()))
        panel["theory"] = {
            "Lemma 4: K-sync (bounds K-async, Lemma 6)": [
                (k, iterations * order_statistic_moments(law, k, n).mean) for k in ks
            ],
            "Lemma 5: K-batch-async": [(k, iterations * async_theory.k_batch_async_time(k, n, mean)) for k in ks],
        }
    return list(panels.values())


def reach_table(res: results.Results, report) -> list[dict]:
    """For each error level of the study's [report] (and the reference policy's floor): each
    configuration's time to reach it (with the band's bracket) and the communication by then;
    with a reference, how many times sooner than the reference each configuration gets there."""
    from ..analysis import metrics

    labels = [str(label) for label in res.labels]
    levels = [(f"{level:g}", level) for level in report.levels]
    ref = labels.index(report.reference) if report.reference is not None else None
    if ref is not None:
        levels.append((f"floor of {labels[ref]}", float(metrics.error_floor(res)[ref])))
    table = []
    metric = report.metric or res.metric
    for name, level in levels:
        r = metrics.reach(res, level, metric)
        rows = []
        for c, label in enumerate(labels):
            row = {
                "label": label,
                "time": float(r.time[c]),
                "time_bracket": [float(r.earliest[c]), float(r.latest[c])],
                "downloads": float(r.downloads[c]),
                "downloads_and_uploads": float(r.total[c]),
            }
            if ref is not None:
                with np.errstate(divide="ignore", invalid="ignore"):
                    row["times_sooner_than_reference"] = float(np.float64(r.time[ref]) / r.time[c])
            rows.append(row)
        table.append({"level": name, "error": level, "metric": metric, "configurations": rows})
    return table


def envelope_table(res: results.Results, env, levels: list[float]) -> dict:
    """For the envelope figure: the best fixed k in hindsight at 21 times, and
    each other policy's regret over the envelope (``metrics.regret``)."""
    from ..analysis import metrics

    k = res.bands["k"].mean[:, 0]
    samples = np.unique(np.linspace(0, len(res.time_grid) - 1, 21).round().astype(int))
    reg = metrics.regret(res, env, levels)
    members = set(env.members.tolist())
    return {
        "fixed_k": [str(res.labels[c]) for c in env.members],
        "best_fixed_k": [  # at 21 times; between them it may flip where curves are close
            {"time": float(res.time_grid[i]), "k": int(k[env.best[i]]), "error": float(env.error[i])}
            for i in samples
            if env.best[i] >= 0
        ],
        "regret": [
            {
                "label": str(label),
                "max_error_ratio": float(reg.max_ratio[c]),
                "mean_log10_error_ratio": float(reg.mean_log10_ratio[c]),
                "final_error_ratio": float(reg.final_ratio[c]),
                "time_ratio_to_reach": {f"{level:g}": float(reg.time_ratio[c, i]) for i, level in enumerate(levels)},
            }
            for c, label in enumerate(res.labels)
            if c not in members
        ],
    }


def _runtime_table(panels: list[dict], res, iterations: int) -> list[dict]:
    return [
        {
            "delays": panel["title"],
            "scheme": scheme,
            "k": k,
            "runtime": float(iterations * res.time_per_iteration.mean[c]),
            "runtime_half_width": float(iterations * res.time_per_iteration.half_width[c]),
        }
        for panel in panels
        for scheme, rows in panel["rows"].items()
        for k, c in rows
    ]


def _schedule(policy) -> dict[str, Any]:
    """A time or iteration schedule's breakpoints, for the summary (bound-optimal policies are
    computed from the problem, so the file alone does not say them)."""
    at = np.asarray(policy.at, np.float64)
    if bool(policy.adaptive) or at.size == 0:
        return {}
    return {
        "schedule": {
            "by": "time" if bool(policy.by_time) else "iterations",
            "at": at.tolist(),
            "ks": np.asarray(policy.ks).tolist(),
        }
    }


def _run_theory(raw: dict[str, Any], default_name: str, out, quick: bool, say) -> Path:
    fields.no_extra(raw, {"name", "description", "theory"}, "config")
    name = check_name(fields.string(raw, "name", "config", default_name))
    fields.string(raw, "description", "config", "")  # config.json is the raw file: a date is not JSON
    params = raw["theory"]
    if not isinstance(params, dict):
        raise ConfigError("theory", "must be a table")
    kind = fields.string(params, "kind", "theory", choices=tuple(theory_studies.KINDS))
    out = Path(out) if out else Path("results") / name
    with run_folder.claim(out):
        started = time.perf_counter()
        output = theory_studies.KINDS[kind]({k: v for k, v in params.items() if k != "kind"}, quick)
        summary = {"name": name, "quick": quick, **output.summary, **provenance()}
        summary["wall_s"] = round(time.perf_counter() - started, 3)
        files.save(out, output.arrays, raw, summary, figures=[output.draw])
    say(f"fastk-jax: wrote {out}/ (theory: {kind})")
    return out
