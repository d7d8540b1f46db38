"""Running a study's configurations on the engine: one compiled, vmapped call per group of
configurations that share a static setting, each group only as many updates as its own
configurations need, and oracles after the fixed-k policies they follow."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from .. import engine
from ..analysis.results import Results, grid_of, run_fields
from ..core import policies, problems
from ..core.curves import Band, band
from ..core.spec import stack_configs
from ..errors import ConfigError
from ..study.build import Configuration, Prepared, configurations, prepare, same_cluster
from ..study.definition import Study
from ..study.model import Fixed, Oracle, Run


def _follows(oracle: Configuration, conf: Configuration) -> bool:
    """Whether ``conf`` is one of the fixed-k configurations whose envelope ``oracle`` follows:
    same cluster, step size and scheme settings."""
    return (
        isinstance(conf.policy, Fixed)
        and conf.settings == oracle.settings
        and same_cluster(conf.delays, oracle.delays)
        and conf.eta == oracle.eta
    )


def oracle_schedule(time_grid: np.ndarray, error_mean: np.ndarray, ks: list[int]) -> policies.KPolicy:
    """The oracle's k: at each grid time the fixed k whose mean error curve ``error_mean`` (one
    row per k in ``ks``) is lowest, made non-decreasing (the running maximum: where curves are
    close, noise makes the argmin flip between neighbours, and the bound-optimal k only grows,
    Theorem 1), as a time schedule."""
    from ..analysis import metrics

    env = metrics.envelope(error_mean, np.arange(len(ks)))
    best = np.where(env.best >= 0, np.asarray(ks)[np.maximum(env.best, 0)], 0)
    k = np.maximum.accumulate(np.where(best > 0, best, min(ks)))
    change = np.flatnonzero(np.diff(k)) + 1
    return policies.schedule(int(k[0]), time_grid[change].tolist(), k[change].tolist(), by="time")


def run_study(
    study: Study,
    progress: Callable[[engine.Progress], None] | None = None,
    prepared: Prepared | None = None,
    **options,
) -> tuple[list[str], engine.Simulation]:
    """Run every configuration of a study (``run_all``, with ``options``): the labels and the
    simulation."""
    prepared = prepared or prepare(study)
    sim, _ = run_all(
        prepared.problem, prepared.configurations, study.run, progress, cover_iterations=covers_iterations(study), **options
    )
    return prepared.labels, sim


def run_all(
    problem: problems.Problem,
    confs: list[Configuration],
    run: Run,
    progress: Callable[[engine.Progress], None] | None = None,
    iterations: int | None = None,
    **options,
) -> tuple[engine.Simulation, list[Configuration]]:
    """``run_configurations``, oracles second: the fixed-k configurations they follow run
    first, and each oracle follows the lower envelope of their mean curves
    (``oracle_schedule``). Returns the simulation (row c is ``confs[c]``) and the
    configurations as they ran: ``confs`` (not changed) with each oracle's stand-in replaced by
    the schedule it followed."""
    oracles = [c for c, conf in enumerate(confs) if isinstance(conf.policy, Oracle)]
    if not oracles:
        return run_configurations(problem, confs, run, progress, iterations, **options), list(confs)
    confs = list(confs)
    first = [c for c in range(len(confs)) if c not in oracles]
    iterations = iterations or iterations_needed(confs, run)
    checkpoint = options.pop("checkpoint", None)

    def part(index: list[int], share: float, offset: float, name: str) -> engine.Simulation:
        where = {} if checkpoint is None else {"checkpoint": Path(checkpoint) / name}
        part_progress = engine.share_progress(progress, offset, share)
        return run_configurations(
            problem, [confs[c] for c in index], run, part_progress, iterations, **options, **where
        )

    share = len(first) / len(confs)
    pilot = part(first, share, 0.0, "pilot")
    for c in oracles:
        rows = [r for r, f in enumerate(first) if _follows(confs[c], confs[f])]
        if len(rows) < 2:
            raise ConfigError(confs[c].label, "an oracle follows the envelope of two or more fixed-k policies")
        ks = [int(confs[first[r]].policy.k) for r in rows]
        schedule = oracle_schedule(pilot.time_grid, pilot.summary.error.mean[rows], ks)
        confs[c] = confs[c]._replace(config=confs[c].config._replace(policy=schedule))
    follow = part(oracles, 1.0 - share, share, "oracle")
    return engine.concatenate([pilot, follow], np.argsort(first + oracles).tolist()), confs


def iterations_needed(confs: list[Configuration], run: Run) -> int:
    """How many updates ``confs`` need: ``run.iterations``, or as many as their fastest
    configuration needs to reach the time horizon (``engine.default_iterations``, the one rule).
    Over a whole study it is the length of the common iteration grid; each group of one
    compiled shape makes only what its own configurations need."""
    if run.iterations is not None:
        return run.iterations
    fastest = engine.fastest_iteration_time([(c.config, c.spec) for c in confs])
    return engine.default_iterations(run.time_horizon, fastest, run.chunk)


def covers_iterations(study: Study) -> bool:
    """Whether the study's figure is against iterations: then its runs make, at least, the
    updates their group needs (``run_configurations``), not only those to pass the horizon."""
    return study.figure.kind == "error_vs_iterations"


def run_configurations(
    problem: problems.Problem,
    confs: list[Configuration],
    run: Run,
    progress: Callable[[engine.Progress], None] | None = None,
    iterations: int | None = None,
    *,
    checkpoint: str | Path | None = None,
    checkpoint_every_s: float = 30.0,
    block: int | None = None,
    devices: list | None = None,
    keep_runs: bool = False,
    cover_iterations: bool = False,
) -> engine.Simulation:
    """Run configurations of one problem and one resolved [run] table: those of one static
    setting (scheme, gradients, batch size, learning-rate rule) and one kind of delay law in
    one compiled, vmapped call, the groups in turn, on common grids (``iterations``: the
    iteration grid's length, default ``iterations_needed`` of all of them). Each configuration
    makes the updates its own runs need to pass the horizon (``engine.simulate``: it stops once
    every run of it has), and at least ``run.iterations`` where that is set; with
    ``cover_iterations`` (a study whose figure is against iterations, ``covers_iterations``)
    at least what its group needs (``iterations_needed`` of the group), so that every curve of
    the figure reaches as far as the group's fastest configuration. Row c of the result is
    ``confs[c]``.

    ``checkpoint``: a folder where each group's state is saved (``group-G.npz``, at most every
    ``checkpoint_every_s`` seconds and when the group finishes) and resumed from by a later call
    with the same arguments (``engine.simulate``). ``block`` (default ``run.block``, else the
    platform's) and ``devices``: how the runs are laid out (``engine.RunLayout``)."""
    from ..engine.checkpoint import Store

    store = None if checkpoint is None else Store(checkpoint, checkpoint_every_s)
    if block is None:
        block = run.block
    groups: dict[tuple, list[int]] = {}  # configurations that share a compiled program
    for c, conf in enumerate(confs):
        law = conf.config.delay  # its kind and its arrays' shapes (a trace's table, a mixture's terms)
        shapes = tuple(np.shape(leaf) for leaf in jax.tree.leaves(law))
        groups.setdefault((conf.spec, type(law), shapes), []).append(c)
    iterations = iterations or iterations_needed(confs, run)
    sims = []
    for g, ((spec, _, _), members) in enumerate(groups.items()):
        own = min(iterations, iterations_needed([confs[c] for c in members], run))
        at_least = own if cover_iterations else run.iterations
        spec = spec._replace(
            max_k=max(policies.largest_k(confs[c].config.policy) for c in members),
            chunk=min(spec.chunk, own + 1),  # a chunk longer than the run would only waste updates
        )

        sims.append(
            engine.simulate(
                problem,
                stack_configs([confs[c].config for c in members]),
                seeds=run.seeds,
                time_horizon=run.time_horizon,
                spec=spec,
                seed=run.seed,
                iterations=at_least,
                grid_iterations=iterations,
                grid_points=run.grid_points,
                divergence_factor=run.divergence_factor,
                progress=engine.share_progress(progress, g / len(groups), 1 / len(groups)),
                block=block,
                devices=devices,
                checkpoint=None if store is None else store.slot(f"group-{g}"),
                keep_runs=keep_runs,
            )
        )
    stacked = [c for members in groups.values() for c in members]
    order = np.argsort(stacked)  # row of each configuration in the stacked groups
    return engine.concatenate(sims, order.tolist())


def from_simulation(
    labels: list[str],
    sim: engine.Simulation,
    n_workers: int,
    mean_delay,
    seeds: int,
    configurations: tuple[dict, ...] = (),
) -> Results:
    """A simulation's summary as ``Results`` with its labels and configurations' fields
    (``mean_delay``: one number, or one per configuration); the per-run curves where kept."""
    s = sim.summary
    per_iteration = np.asarray(s.final_time, np.float64) / np.asarray(s.iterations)[:, None]  # (C, S)
    return Results(
        labels=np.asarray(labels, dtype=str),
        n_workers=n_workers,
        mean_delay=np.broadcast_to(np.asarray(mean_delay, np.float64), (len(labels),)).copy(),
        time_grid=np.asarray(sim.time_grid),
        iteration_grid=np.asarray(sim.iteration_grid),
        bands=_bands(s, sim.metrics),
        diverged=np.asarray(s.diverged),
        seeds=seeds,
        time_per_iteration=Band(
            *(np.asarray(x) for x in band(per_iteration, np.ones(per_iteration.shape, bool), axis=1))
        ),
        staleness=np.asarray(s.staleness),
        levels=np.asarray(sim.levels),
        configurations=tuple(configurations),
        runs=None if sim.runs is None else per_run_curves(sim),
        metrics=tuple(sim.metrics),
    )


def _engine_field(name: str, metrics: tuple[str, ...]) -> tuple[str, int | None]:
    """Where band or run field ``name`` of results recording ``metrics`` lies in the engine's
    summary or curves: (field, index into ``extra`` or None)."""
    tracked = metrics[0]
    if name == tracked:
        return "error", None
    if name == f"iter_{tracked}":
        return "iter_error", None
    if name in metrics[1:]:
        return "extra", metrics.index(name) - 1
    return name, None


def _bands(s, metrics: tuple[str, ...]) -> dict[str, Band]:
    from ..analysis.results import band_names

    out = {}
    for name in band_names(metrics):
        field, index = _engine_field(name, metrics)
        b = getattr(s, field)
        out[name] = Band(*(np.asarray(x if index is None else x[..., index]) for x in b))
    return out


def per_run_curves(sim: engine.Simulation) -> dict[str, np.ndarray]:
    """Every run's curves, (C, S, grid) as float64, NaN where the seed-averaged curves do not
    count the run: diverged, or a grid point it had not passed when it stopped (as
    ``core.curves.summarize`` decides)."""
    runs, s = sim.runs, sim.summary
    ok = ~np.asarray(runs.diverged)[..., None]
    final_time = np.asarray(s.final_time)[..., None]
    at_time = ok & (sim.time_grid < final_time)
    at_iteration = ok & (sim.iteration_grid < np.asarray(s.iterations)[:, None, None])
    out = {}
    for name in run_fields(sim.metrics):
        field, index = _engine_field(name, sim.metrics)
        values = np.asarray(getattr(runs, field), np.float64)
        values = values if index is None else values[..., index]
        mask = {"time": at_time, "iteration": at_iteration, "level": ok & ~np.isnan(values)}[grid_of(name)]
        out[name] = np.where(mask, values, np.nan)
    return out


def run(
    study: Study,
    *,
    seeds: int | None = None,
    quick: bool = False,
    progress=None,
    keep_runs: bool = False,
    checkpoint: str | Path | None = None,
    checkpoint_every_s: float = 30.0,
    block: int | None = None,
    devices: list | None = None,
    problem: problems.Problem | None = None,
) -> Results:
    """Run a study and return its ``Results``: every configuration's curves with its fields.

    ``study``: a ``Study`` (or a path or name, read with ``Study.from_toml``); ``seeds``
    overrides run.seeds, ``quick`` applies its [quick] table. ``progress``: None, "text" (a bar
    on stderr), "tqdm" (a tqdm bar, in a notebook a widget) or a callable taking an
    ``engine.Progress``. ``keep_runs``: also keep every run's curves (``Results.runs``: medians,
    quantiles, paired differences; the memory guard counts them). ``checkpoint``: a folder to
    save the state in and resume from (``checkpoint_every_s``). ``block`` and ``devices``: how
    the runs are laid out (``engine.RunLayout``; the block fixes a run's bits). ``problem``:
    a problem of your own (``fk.from_loss``, ``core.networks.mlp_classifier``) run instead of
    the study's [problem], which then only says ``n_workers`` (they must agree); the metrics
    default to what that problem can give (F - F* where it knows F*, else the training loss)."""
    if not isinstance(study, Study):
        study = Study.from_toml(study, seeds=seeds, quick=quick)
    else:
        if quick:
            study = study.with_quick()
        if seeds is not None:
            study = study.replace(seeds=seeds)
    if problem is None:
        prepared = prepare(study)
    else:
        if problem.x.shape[0] != study.n_workers:
            raise ConfigError(
                "problem", f"the problem is split over {problem.x.shape[0]} workers, the study has n_workers={study.n_workers}"
            )
        prepared = Prepared(problem, configurations(study, problem, custom=True))
    meter = engine.meter(progress)
    try:
        sim, ran = run_all(
            prepared.problem,
            prepared.configurations,
            study.run,
            meter,
            checkpoint=checkpoint,
            checkpoint_every_s=checkpoint_every_s,
            block=block,
            devices=devices,
            keep_runs=keep_runs,
            cover_iterations=covers_iterations(study),
        )
    finally:
        engine.progress.close(meter)
    return results_of(study, sim, ran)


def results_of(study: Study, sim: engine.Simulation, ran: list[Configuration]) -> Results:
    """The ``Results`` of a study's simulation, with each configuration's fields."""
    return from_simulation(
        [c.label for c in ran],
        sim,
        study.n_workers,
        [c.mean_delay for c in ran],
        study.run.seeds,
        tuple(c.fields() for c in ran),
    )
