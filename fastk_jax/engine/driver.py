"""``simulate``: many runs of fastest-k SGD (or an asynchronous variant) as one compiled program.

A run is one configuration (policy, step size, delay parameters; C of them, of one shape)
with one seed (S of them): C x S runs. ``simulate`` is a thin driver over the pieces that do
the work, each in its own module:

* the run plan (``plan``): the layout of the runs in blocks, devices and calls (``layout``,
  with the memory guard), the number of updates and the grids (``grids``), the stopping rule;
* the runs in flight (``runs``) and the compiled init/advance pair they call (``loop``);
* a checkpoint slot (``checkpoint``): the state after a chunk, resumed from bit for bit;
* a progress callback or meter (``progress``);
* the finalize step: every run's curves reduced over seeds once (``loop.summarize``).

Runs advance in chunks of ``spec.chunk`` iterations, each chunk one call of the compiled
program; between chunks the host checks whether every run has passed the time horizon and
reports progress. A run's numbers depend on its configuration, its seed (``fold_in`` keys), the
block size and the platform only (``layout``).
"""

from __future__ import annotations

import math
import time as _time
import warnings
from typing import NamedTuple

import jax
import numpy as np

from ..core import schemes
from ..core.curves import RunCurves, Summary
from ..core.problems import Problem
from ..core.spec import RunSpec, SimConfig
from ..versions import versions
from .checkpoint import Slot, fingerprint
from .loop import _summarize, by_config, trace_count
from .plan import RunPlan, make_plan
from .progress import Progress, ProgressCallback
from .runs import Runs


class Simulation(NamedTuple):
    """What ``simulate`` returns: grids, the seed-averaged summary, optional per-run curves."""

    time_grid: np.ndarray  # (G,)
    iteration_grid: np.ndarray  # (Gi,)
    levels: np.ndarray  # (L,) error levels of summary.reach_*
    summary: Summary  # numpy leaves, leading axis C
    iterations: int  # updates the longest-running configuration made (each one's: summary.iterations)
    initial_error: float
    compile_s: float  # tracing + compilation of the chunk function (0 if reused; with one chunk, includes its run)
    run_s: float
    trajectories: schemes.Out | None  # leaves (C, S, iterations, ...) if kept
    resumed_from: int = 0  # iterations restored from a checkpoint (0: a fresh run)
    block: int = 0  # runs per block (a run's numbers depend on it; ``layout.default_block``)
    runs: RunCurves | None = None  # every run's curves, leaves (C, S, ...), with keep_runs
    metrics: tuple[str, ...] = ("error",)  # what summary.error (the tracked one) and summary.extra hold


def simulate(
    problem: Problem,
    configs: SimConfig,
    *,
    seeds: int,
    time_horizon: float,
    spec: RunSpec,
    seed: int = 0,
    iterations: int | None = None,
    grid_iterations: int | None = None,
    grid_points: int = 200,
    iteration_grid_points: int = 200,
    divergence_factor: float = 1e6,
    max_iterations: int | None = None,
    progress: ProgressCallback | None = None,
    block: int | None = None,
    devices: list | None = None,
    checkpoint: Slot | None = None,
    keep_runs: bool = False,
) -> Simulation:
    """Run ``seeds`` runs of every configuration in ``configs`` (stacked, leading axis C).

    Each configuration's runs go on, in whole chunks, until every run of it has passed
    ``time_horizon`` (in the time unit of the delay laws) and made more than ``iterations``
    updates where that is given; then that configuration stops (its runs keep their state, and a
    block none of whose runs steps is skipped), so a slow configuration no longer makes the
    updates the fastest one needs: the runs of a configuration make the same number of updates
    (``summary.iterations``), configurations differ. At most ``max_iterations`` (default 20 x
    the updates the fastest configuration needs, by its mean time per update, to reach the
    horizon, ``grids.default_iterations``, plus a chunk). The iteration grid reaches
    ``grid_iterations`` (default ``iterations``, else that estimate); a configuration's points
    past its own updates are left out of its bands. A run whose error exceeds
    ``divergence_factor`` times the initial error, or is not finite, counts as diverged and is
    left out of every mean.

    **Runs, blocks and devices.** The C x S runs step in blocks of ``block`` runs per device
    (default ``layout.default_block`` of the platform), the blocks of a call in turn inside the
    compiled chunk, the lanes of a block sharded over ``devices`` (default: every device,
    ``jax.devices()``; with ``FASTK_DISTRIBUTED=1`` those of every host). A run's numbers depend
    on its configuration, its seed and the block size only: not on how many runs are beside it,
    how many devices or calls (the memory guard, ``layout.run_layout``) they take, or the chunk size.

    **Checkpoints.** With ``checkpoint`` (a ``checkpoint.Slot``) the state after a chunk is
    saved (every ``checkpoint.every_s`` seconds, and at the end) and a later call with the same
    arguments resumes from it, bit for bit. Trajectories are not checkpointed.

    ``keep_runs``: also return every run's curves (``Simulation.runs``, leaves (C, S, ...));
    the memory guard counts them.
    """
    devices = list(jax.devices() if devices is None else devices)
    plan = make_plan(
        problem,
        configs,
        seeds=seeds,
        time_horizon=time_horizon,
        spec=spec,
        seed=seed,
        iterations=iterations,
        grid_iterations=grid_iterations,
        grid_points=grid_points,
        iteration_grid_points=iteration_grid_points,
        divergence_factor=divergence_factor,
        max_iterations=max_iterations,
        block=block,
        devices=devices,
        keep_runs=keep_runs,
        checkpointed=checkpoint is not None,
    )
    runs = Runs(plan, problem, configs, devices)
    key = None if checkpoint is None else fingerprint(plan.fingerprint_fields(), versions(), problem, configs)
    run_s_before = _restore(checkpoint, key, runs)
    resumed_from = runs.done_iterations

    start, traced = _time.perf_counter(), trace_count()
    chunk_s: list[float] = []
    stepping, slowest = runs.status() if runs.done_iterations else (np.ones(plan.num_configs, bool), -math.inf)
    while not plan.stops(runs.done_iterations, stepping):
        t0 = _time.perf_counter()
        runs.advance(stepping)
        stepping, slowest = runs.status()
        chunk_s.append(_time.perf_counter() - t0)
        stop = plan.stops(runs.done_iterations, stepping)
        if checkpoint is not None and (stop or checkpoint.due()):
            manifest = {"iterations": runs.done_iterations, "run_s": run_s_before + _time.perf_counter() - start}
            checkpoint.save(key, runs.host_batches(), {**manifest, "finished": stop})
        if progress is not None:
            progress(_report(plan, runs.done_iterations, stepping, slowest, resumed_from, _time.perf_counter() - start))
    if not plan.finished(stepping):
        warnings.warn(
            f"stopped after {runs.done_iterations} iterations (max_iterations) with the slowest run at "
            f"t = {slowest:.4g} < time_horizon = {time_horizon:g}; grid points it did not reach are "
            "left out of the means (see summary.error.runs)",
            stacklevel=2,
        )
    return _finalize(plan, runs, _compile_s(chunk_s, trace_count() != traced), run_s_before + _time.perf_counter() - start, resumed_from)


def _restore(checkpoint: Slot | None, key: str | None, runs: Runs) -> float:
    """Start the runs from the checkpoint saved under ``key`` where there is one that fits, else
    afresh; returns the run time the checkpoint had accumulated."""
    restored = None if checkpoint is None else checkpoint.load(key)
    if restored is not None and not runs.fits(restored[0]):
        warnings.warn(f"checkpoint {checkpoint.path} does not fit this run; starting over", stacklevel=3)
        restored = None
    if restored is None:
        runs.start()
        return 0.0
    batches, meta = restored
    runs.restore(batches, int(meta["iterations"]))
    return float(meta["run_s"])


def _report(plan: RunPlan, done: int, stepping, slowest: float, resumed_from: int, elapsed: float) -> Progress:
    if plan.finished(stepping):
        return Progress(1.0, done, elapsed, 0.0)
    fraction = plan.fraction(done, slowest)
    done_before = min(1.0, resumed_from / (plan.iterations + 1))
    rate = (fraction - done_before) / elapsed if elapsed > 0 else 0.0
    return Progress(fraction, done, elapsed, (1 - fraction) / rate if rate > 0 else math.nan)


def _compile_s(chunk_s: list[float], compiled: bool) -> float:
    """The first chunk's time, less a typical chunk's, is the compilation (if it compiled)."""
    if not compiled or not chunk_s:
        return 0.0
    return max(0.0, chunk_s[0] - (float(np.median(chunk_s[1:])) if len(chunk_s) > 1 else 0.0))


def _finalize(plan: RunPlan, runs: Runs, compile_s: float, run_s: float, resumed_from: int) -> Simulation:
    """Every run's curves reduced over seeds, once, by the same compiled function."""
    final = runs.final()
    summary = jax.device_get(_summarize(final, plan.grids, num_configs=plan.num_configs, seeds=plan.seeds))
    per_run = None
    if plan.keep_runs:
        per_run = jax.tree.map(lambda x: by_config(np.asarray(x), plan.num_configs, plan.seeds), final.curves)
    return Simulation(
        time_grid=np.asarray(plan.grids.time),
        iteration_grid=np.asarray(plan.grids.iteration),
        levels=np.asarray(plan.grids.levels),
        summary=summary,
        iterations=runs.done_iterations,
        initial_error=plan.initial_error,
        compile_s=compile_s,
        run_s=run_s,
        trajectories=runs.kept_trajectories(),
        resumed_from=resumed_from,
        block=plan.layout.block,
        runs=per_run,
        metrics=plan.spec.metrics,
    )


def concatenate(sims: list[Simulation], order: list[int]) -> Simulation:
    """Simulations of configuration groups on the same grids as one: configuration c of the
    result is row ``order[c]`` of the groups' rows stacked in turn. ``iterations`` is the
    largest of the groups' (each configuration's own is ``summary.iterations``)."""
    first = sims[0]
    if any(sim.metrics != first.metrics for sim in sims):
        raise ValueError("simulations recording different metrics cannot be concatenated")
    for sim in sims[1:]:
        if not (
            np.array_equal(sim.time_grid, first.time_grid) and np.array_equal(sim.iteration_grid, first.iteration_grid)
        ):
            raise ValueError("simulations on different grids cannot be concatenated")
    index = np.asarray(order)
    summary = jax.tree.map(lambda *xs: np.concatenate(xs, axis=0)[index], *[s.summary for s in sims])
    trajectories = None
    if all(s.trajectories is not None for s in sims):
        trajectories = jax.tree.map(lambda *xs: np.concatenate(xs, axis=0)[index], *[s.trajectories for s in sims])
    runs = None
    if all(s.runs is not None for s in sims):
        runs = jax.tree.map(lambda *xs: np.concatenate(xs, axis=0)[index], *[s.runs for s in sims])
    return first._replace(
        summary=summary,
        runs=runs,
        iterations=max(s.iterations for s in sims),
        compile_s=sum(s.compile_s for s in sims),
        run_s=sum(s.run_s for s in sims),
        trajectories=trajectories,
        resumed_from=max(s.resumed_from for s in sims),
    )
