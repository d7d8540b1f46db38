"""The engine: many runs of fastest-k SGD as one compiled, vmapped ``lax.scan``.

Layout: configurations C (policies, step sizes, delay parameters of one shape) x seeds S.
One run is a scan of ``schemes.step`` (fastest-k SGD or an asynchronous variant) that records itself on fixed grids (``curves``);
the scan is vmapped over seeds, then over configurations, and jitted once per static
``RunSpec`` and array shapes. Runs advance in chunks of ``spec.chunk`` iterations; between
chunks the host checks whether every run has passed the time horizon and reports progress.
The chunk function is the same compiled program each time, and a second study of the same
shapes reuses it (``trace_count`` tells how often it was traced).

What leaves the device is the per-configuration summary (mean and 95% band over seeds),
unless ``keep_trajectories`` asks for every iterate.
"""

from __future__ import annotations

import math
import os
import time as _time
import warnings
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import curves, policies, schemes
from .curves import Grids, RunCurves, Summary
from .errors import ConfigError
from .problems import Problem, full_loss
from .spec import RunSpec, SimConfig, seed_key
from .theory.order_stats import order_statistic_moments

Array = jax.Array

_traces = {"advance": 0}


def trace_count() -> int:
    """How many times the chunk function has been traced (compiled) in this process."""
    return _traces["advance"]


class Carry(NamedTuple):
    state: schemes.State  # leaves (C, S, ...)
    curves: RunCurves  # leaves (C, S, ...)


@partial(jax.jit, static_argnames=("spec",), donate_argnums=(0,))
def _advance(carry: Carry, configs: SimConfig, problem: Problem, grids: Grids, spec: RunSpec):
    _traces["advance"] += 1
    tx = spec.transform()

    def one_run(carry: Carry, config: SimConfig):
        def body(c: Carry, _):
            state, out = schemes.step(c.state, config, problem, tx, spec)
            trajectory = out if spec.keep_trajectories else None
            return Carry(state, curves.record(c.curves, grids, out)), trajectory

        return jax.lax.scan(body, carry, None, length=spec.chunk)

    over_seeds = jax.vmap(one_run, in_axes=(0, None))
    return jax.vmap(over_seeds, in_axes=(0, 0))(carry, configs)


@partial(jax.jit, static_argnames=("spec", "num_seeds"))
def _init(configs: SimConfig, problem: Problem, grids: Grids, seed: Array, spec: RunSpec, num_seeds: int) -> Carry:
    tx = spec.transform()
    keys = jax.vmap(lambda i: seed_key(seed, i))(jnp.arange(num_seeds))

    def one_run(config, key):
        state = schemes.init(problem, config, tx, key, spec)
        return Carry(state, curves.init(grids, state.w.dtype, spec.staleness_bins))

    return jax.vmap(jax.vmap(one_run, in_axes=(None, 0)), in_axes=(0, None))(configs, keys)


_summarize = jax.jit(curves.summarize)


def mean_iteration_time(config: SimConfig, spec: RunSpec, k: int) -> float:
    """The mean time per update of one (unstacked) configuration with k fixed, used only to
    pick the default number of iterations: E[X_(k:n)] (``theory.order_stats``; Lemma 4 of the
    async paper) for the schemes where a learner pushes once per iteration, and k over the
    learners' total push rate sum_i 1 / (s_i E[X]) for the batch schemes (k E[X] / n when iid,
    Lemma 5)."""
    slowdown = np.asarray(config.slowdown, np.float64)
    if schemes.is_batch(spec):
        return k / float(np.sum(1.0 / (slowdown * float(np.asarray(config.delay.mean())))))
    iid = bool(np.all(slowdown == 1.0))
    return order_statistic_moments(config.delay, k, spec.n, slowdown=None if iid else slowdown).mean


def memory_estimate(
    problem: Problem, spec: RunSpec, num_configs: int, seeds: int, grid_points: int, iteration_grid_points: int
) -> int:
    """Bytes a simulation needs on the device, roughly and on the high side: the data, and per
    run its state (model, optimizer state, Algorithm 1's previous gradient, twice for the
    chunk's input and output), its curves, and a step's temporaries (a value per data row and
    per class, and the n delays). Kept trajectories are not counted (they go to the host)."""
    p = problem.num_params
    rows = problem.x.shape[0] * problem.x.shape[1]
    classes = max(1, p // problem.x.shape[-1])
    optimizer_vectors = {"sgd": 0, "momentum": 1, "nesterov": 1, "adam": 2}[spec.optimizer]
    per_run = 2 * (2 + optimizer_vectors) * p + 2 * rows * classes + 2 * (5 * grid_points + iteration_grid_points)
    pushes = spec.n * schemes.pushes_per_learner(spec)
    per_run += pushes * (1 + spec.batch_size * classes) + spec.staleness_bins
    if not schemes.cancels(spec):  # each learner's model and mini-batch, twice; a gradient per learner
        per_run += 3 * spec.n * (p + spec.batch_size)
    itemsize = problem.x.dtype.itemsize
    return itemsize * (problem.x.size + num_configs * seeds * per_run)


def available_memory() -> int:
    """Bytes the default device can hold: its memory limit on an accelerator, physical memory on CPU."""
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def reach_levels(initial_error: float) -> np.ndarray:
    """The error levels whose first reaching every run records: five per decade, from the
    initial error down over twelve decades."""
    return max(initial_error, 1e-30) * np.logspace(0.0, -12.0, 61)


class Progress(NamedTuple):
    """Passed to the progress callback after each chunk."""

    fraction: float  # of the work, by the slowest run
    iterations: int
    elapsed_s: float
    remaining_s: float  # estimate; nan before the first chunk


class Simulation(NamedTuple):
    """What ``simulate`` returns: grids, the seed-averaged summary, optional trajectories."""

    time_grid: np.ndarray  # (G,)
    iteration_grid: np.ndarray  # (Gi,)
    levels: np.ndarray  # (L,) error levels of summary.reach_*
    summary: Summary  # numpy leaves, leading axis C
    iterations: int  # iterations each run made
    initial_error: float
    compile_s: float  # tracing + compilation of the chunk function (0 if reused; with one chunk, includes its run)
    run_s: float
    trajectories: schemes.Out | None  # leaves (C, S, iterations, ...) if kept


def simulate(
    problem: Problem,
    configs: SimConfig,
    *,
    seeds: int,
    time_horizon: float,
    spec: RunSpec,
    seed: int = 0,
    iterations: int | None = None,
    grid_points: int = 200,
    iteration_grid_points: int = 200,
    divergence_factor: float = 1e6,
    max_iterations: int | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> Simulation:
    """Run ``seeds`` runs of every configuration in ``configs`` (stacked, leading axis C).

    Runs go on until every run's clock has passed ``time_horizon`` and every run has made
    ``iterations`` updates (default: as many as the fastest configuration needs, by a Monte
    Carlo estimate of its mean iteration time, to reach the horizon), and at most
    ``max_iterations`` (default 20 x that). A run whose error exceeds ``divergence_factor``
    times the initial error, or is not finite, counts as diverged.
    """
    schemes.check(spec)
    num_configs = int(np.shape(configs.eta)[0])
    need, have = (
        memory_estimate(problem, spec, num_configs, seeds, grid_points, iteration_grid_points),
        available_memory(),
    )
    if need > 0.8 * have:
        raise ConfigError(
            "run.seeds",
            f"{num_configs} configurations x {seeds} seeds need about {need / 2**30:.3g} GiB, more than 80% of the "
            f"{have / 2**30:.3g} GiB available; use fewer seeds or grid points",
        )
    first_k = [int(k) for k in np.asarray(configs.policy.k0)]
    if spec.max_k is not None:
        largest = max(policies.largest_k(jax.tree.map(lambda x, c=c: x[c], configs.policy)) for c in range(num_configs))
        if largest > spec.max_k:
            raise ConfigError("max_k", f"a policy reaches k={largest} > spec.max_k={spec.max_k}")
    fastest_mean = min(
        mean_iteration_time(jax.tree.map(lambda x, c=c: x[c], configs), spec, first_k[c]) for c in range(num_configs)
    )
    if iterations is None:
        iterations = max(1, math.ceil(time_horizon / fastest_mean))
    if max_iterations is None:
        max_iterations = 20 * iterations + spec.chunk
    initial_error = float(full_loss(problem, problem.init_params()) - problem.f_star)

    grids = Grids(
        time=jnp.linspace(0.0, time_horizon, grid_points),
        iteration=jnp.unique(jnp.linspace(0, iterations, iteration_grid_points).round().astype(jnp.int32)),
        error_limit=jnp.asarray(divergence_factor * max(initial_error, 1e-30)),
        levels=jnp.asarray(reach_levels(initial_error)),
    )
    carry = _init(configs, problem, grids, jnp.asarray(seed, jnp.uint32), spec=spec, num_seeds=seeds)

    start, done_iterations, traced = _time.perf_counter(), 0, trace_count()
    kept, chunk_s = [], []
    while True:
        t0 = _time.perf_counter()
        carry, trajectory = _advance(carry, configs, problem, grids, spec=spec)
        slowest_clock = float(jnp.min(carry.state.time))  # also waits for the chunk to finish
        chunk_s.append(_time.perf_counter() - t0)
        done_iterations += spec.chunk
        if spec.keep_trajectories:
            kept.append(jax.device_get(trajectory))
        finished = slowest_clock > time_horizon and done_iterations > iterations
        if progress is not None:
            fraction = min(1.0, slowest_clock / time_horizon, done_iterations / (iterations + 1))
            elapsed = _time.perf_counter() - start
            remaining = elapsed * (1 - fraction) / fraction if fraction > 0 else math.nan
            progress(Progress(1.0 if finished else fraction, done_iterations, elapsed, 0.0 if finished else remaining))
        if finished:
            break
        if done_iterations >= max_iterations:
            warnings.warn(
                f"stopped after {done_iterations} iterations (max_iterations) with the slowest run at "
                f"t = {slowest_clock:.4g} < time_horizon = {time_horizon:g}; grid points it did not reach are "
                "left out of the means (see summary.error.runs)",
                stacklevel=2,
            )
            break

    # the first chunk's time, less a typical chunk's, is the compilation (if it compiled)
    compile_s = 0.0
    if trace_count() != traced:
        compile_s = max(0.0, chunk_s[0] - (float(np.median(chunk_s[1:])) if len(chunk_s) > 1 else 0.0))
    summary = jax.device_get(_summarize(carry.curves, carry.state.time, carry.state.iteration, grids))
    trajectories = None
    if spec.keep_trajectories:
        trajectories = jax.tree.map(lambda *xs: np.concatenate(xs, axis=2), *kept)
    return Simulation(
        time_grid=np.asarray(grids.time),
        iteration_grid=np.asarray(grids.iteration),
        levels=np.asarray(grids.levels),
        summary=summary,
        iterations=done_iterations,
        initial_error=initial_error,
        compile_s=compile_s,
        run_s=_time.perf_counter() - start,
        trajectories=trajectories,
    )


def concatenate(sims: list[Simulation], order: list[int]) -> Simulation:
    """Simulations of configuration groups on the same grids as one: configuration c of the
    result is row ``order[c]`` of the groups' rows stacked in turn. ``iterations`` is the
    largest of the groups' (each configuration's own is ``summary.iterations``)."""
    first = sims[0]
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
    return first._replace(
        summary=summary,
        iterations=max(s.iterations for s in sims),
        compile_s=sum(s.compile_s for s in sims),
        run_s=sum(s.run_s for s in sims),
        trajectories=trajectories,
    )


def delay_samples(configs: SimConfig, n: int, seeds: int, iterations: int, seed: int = 0) -> np.ndarray:
    """The delays fastest-k SGD (scheme k_sync) draws, shape (C, S, iterations, n): for tests and
    references. Iteration j of seed s uses fold_in(fold_in(key(seed), s), j) (``scheme_draws``)."""
    return scheme_draws(configs, RunSpec(n=n), 1, seeds, iterations, seed)["delays"][..., 0]


def scheme_draws(configs: SimConfig, spec: RunSpec, num_rows: int, seeds: int, iterations: int, seed: int = 0) -> dict:
    """Every random number the engine draws for ``spec.scheme``, as numpy arrays with leading axes
    (C, S): ``init_delays``, ``init_rows`` and, per iteration, ``delays``, ``restart``, ``rows``,
    ``restart_rows`` (see ``schemes.iteration_draws``). For the NumPy reference."""

    def one(config, s):
        key = seed_key(jnp.asarray(seed, jnp.uint32), s)
        init_delays, init_rows = schemes.initial_draws(config, key, spec, num_rows)
        per = jax.vmap(lambda j: schemes.iteration_draws(config, jax.random.fold_in(key, j), spec, num_rows))
        return {"init_delays": init_delays, "init_rows": init_rows, **per(jnp.arange(iterations))._asdict()}

    over = jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None))
    return jax.tree.map(np.asarray, over(configs, jnp.arange(seeds)))
