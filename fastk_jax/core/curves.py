"""Curves: each run's trajectory on fixed grids, and their mean and 95% band over seeds.

A run is recorded on a common wall-clock grid and an iteration grid as it goes, so memory is
seeds x grid points, never seeds x iterations. Model w_j is current from t_j (when the update
that made it completes) until t_(j+1); so a run's value at grid time t is that of its last
update at or before t. Step j writes its values into every grid point at or after t_j, and
later steps overwrite the points they reach; a point is final once the run's clock has
passed it.

A run diverges when its error is non-finite or exceeds ``limit`` (a multiple of the initial
error) at an iterate that is recorded: one current at a grid time, or at a grid iteration. What
a run does beyond both grids is not looked at, so whether it counts as diverged does not
depend on how long its companions in a sweep keep it running. A diverged run is left out of every averaged curve, wholly (not from the
moment it diverged, which would bias the later mean towards the runs that survived), and is
counted per configuration.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


class Out(NamedTuple):
    """What one update of a scheme reports about model w_j and the update made from it
    (``schemes.step``'s second output): what the curves record."""

    time: Array  # () t_j
    iteration: Array  # () j
    k: Array  # () k used at iteration j
    error: Array  # () the tracked metric at w_j: F(w_j) - F* unless the run tracks another
    downloads: Array  # () gradients received before t_j
    fetches: Array  # () model vectors sent by t_j
    staleness: Array  # (B,) the applied gradients' staleness tau, histogram (last bin: >= B-1)
    w: Array  # (p,) w_j
    extra: Array = np.zeros(0, np.float32)  # (M,) the other metrics recorded (``RunSpec.metrics[1:]``)


class Grids(NamedTuple):
    """Where runs are recorded (data, so changing them does not recompile)."""

    time: Array  # (G,) wall-clock times, ascending
    iteration: Array  # (Gi,) iteration numbers, ascending
    error_limit: Array  # () an error above this means the run diverged
    levels: Array  # (L,) error levels whose first reaching (time, communication) each run records


class RunCurves(NamedTuple):
    """One run on the grids."""

    error: Array  # (G,) the tracked metric (F(w) - F* unless the run tracks another) at each grid time
    extra: Array  # (G, M) the other metrics at each grid time
    k: Array  # (G,) k of the iteration in progress
    downloads: Array  # (G,) gradients received by the master so far
    fetches: Array  # (G,) model vectors sent to the learners so far
    updates: Array  # (G,) updates completed so far, J(t)
    iter_error: Array  # (Gi,) F(w_j) - F* at each grid iteration
    staleness: Array  # (B,) staleness histogram of the gradients applied up to the horizon
    reach_time: Array  # (L,) when the run's error first fell to each level (NaN: not by the horizon)
    reach_downloads: Array  # (L,) gradients received by then
    reach_fetches: Array  # (L,) model vectors sent by then (the model that reached it included)
    diverged: Array  # () bool


def init(grids: Grids, dtype, staleness_bins: int, extra: int = 0) -> RunCurves:
    g = grids.time.shape[0]
    return RunCurves(
        error=jnp.full(g, jnp.nan, dtype),
        extra=jnp.full((g, extra), jnp.nan, dtype),
        k=jnp.zeros(g, jnp.int32),
        downloads=jnp.zeros(g, jnp.int32),
        fetches=jnp.zeros(g, jnp.int32),
        updates=jnp.zeros(g, jnp.int32),
        iter_error=jnp.full(grids.iteration.shape[0], jnp.nan, dtype),
        staleness=jnp.zeros(staleness_bins, jnp.int32),
        reach_time=jnp.full(grids.levels.shape[0], jnp.nan, dtype),
        reach_downloads=jnp.zeros(grids.levels.shape[0], jnp.int32),
        reach_fetches=jnp.zeros(grids.levels.shape[0], jnp.int32),
        diverged=jnp.bool_(False),
    )


def record(curves: RunCurves, grids: Grids, out: Out) -> RunCurves:
    """Write model w_j's values (``out``) into the grid points it is current at."""
    now = grids.time >= out.time
    at_j = grids.iteration == out.iteration
    recorded = (out.time <= grids.time[-1]) | (out.iteration <= grids.iteration[-1])
    bad = recorded & (~jnp.isfinite(out.error) | (out.error > grids.error_limit))
    first = jnp.isnan(curves.reach_time) & (out.error <= grids.levels) & (out.time <= grids.time[-1])
    return RunCurves(
        error=jnp.where(now, out.error, curves.error),
        extra=jnp.where(now[:, None], out.extra, curves.extra),
        k=jnp.where(now, out.k, curves.k),
        downloads=jnp.where(now, out.downloads, curves.downloads),
        fetches=jnp.where(now, out.fetches, curves.fetches),
        updates=jnp.where(now, out.iteration, curves.updates),
        iter_error=jnp.where(at_j, out.error, curves.iter_error),
        staleness=curves.staleness + jnp.where(out.time <= grids.time[-1], out.staleness, 0),
        reach_time=jnp.where(first, out.time, curves.reach_time),
        reach_downloads=jnp.where(first, out.downloads, curves.reach_downloads),
        reach_fetches=jnp.where(first, out.fetches, curves.reach_fetches),
        diverged=curves.diverged | bad,
    )


class Band(NamedTuple):
    """Mean over runs and the half-width of its 95% confidence interval."""

    mean: Array
    half_width: Array
    runs: Array  # how many runs the mean is over


def t_quantile_975(dof: Array) -> Array:
    """The 0.975 quantile of Student's t with ``dof`` degrees of freedom.

    Exact closed forms for dof = 1 and 2; above, the Cornish-Fisher expansion around the
    normal quantile 1.959964 (Abramowitz & Stegun 26.7.5), within 4e-3 of the exact value at
    dof = 3, 1e-3 at 4 and 1e-5 from 10 on. Small seed counts thus get honestly wider bands
    than the normal 1.96.
    """
    z = 1.959963984540054
    v = jnp.maximum(dof, 1.0)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    expansion = z + g1 / v + g2 / v**2 + g3 / v**3 + g4 / v**4
    one = 12.706204736174694  # tan(pi * 0.475)
    two = 0.95 / jnp.sqrt(2 * 0.975 * 0.025)
    return jnp.where(v < 1.5, one, jnp.where(v < 2.5, two, expansion))


def band(values: Array, valid: Array, axis: int) -> Band:
    """Mean and 95% t-interval of ``values`` over ``axis``, using only entries where ``valid``."""
    values = values.astype(jnp.result_type(float))
    runs = jnp.sum(valid, axis=axis)
    safe = jnp.where(valid, values, 0.0)
    mean = jnp.sum(safe, axis=axis) / jnp.maximum(runs, 1)
    dev = jnp.where(valid, values - jnp.expand_dims(mean, axis), 0.0)
    var = jnp.sum(dev**2, axis=axis) / jnp.maximum(runs - 1, 1)
    half = t_quantile_975(runs - 1.0) * jnp.sqrt(var / jnp.maximum(runs, 1))
    nan = jnp.full_like(mean, jnp.nan)
    return Band(
        mean=jnp.where(runs > 0, mean, nan),
        half_width=jnp.where(runs > 1, half, nan),
        runs=runs,
    )


class Summary(NamedTuple):
    """Curves over seeds for each configuration: every field has leading axis C."""

    error: Band  # (C, G)
    extra: Band  # (C, G, M)
    k: Band  # (C, G)
    downloads: Band  # (C, G)
    fetches: Band  # (C, G)
    updates: Band  # (C, G)
    iter_error: Band  # (C, Gi)
    staleness: Array  # (C, B) staleness histogram of applied gradients, pooled over the runs kept
    reach_time: Band  # (C, L) over the runs (kept) that reached each level by the horizon
    reach_downloads: Band  # (C, L)
    reach_total: Band  # (C, L) downloads + model vectors sent
    diverged: Array  # (C,) runs that diverged
    final_time: Array  # (C, S) each run's clock when it stopped
    iterations: Array  # (C,) updates each run of the configuration made


def summarize(curves: RunCurves, final_time: Array, final_iteration: Array, grids: Grids) -> Summary:
    """Reduce runs of shape (C, S, ...) over the seed axis, leaving out diverged runs and grid
    points a run had not passed when it stopped."""
    ok = ~curves.diverged[..., None]
    reached = ok & (grids.time < final_time[..., None])
    reached_j = ok & (grids.iteration < final_iteration[..., None])
    return Summary(
        error=band(curves.error, reached, axis=1),
        extra=band(curves.extra, jnp.broadcast_to(reached[..., None], curves.extra.shape), axis=1),
        k=band(curves.k, reached, axis=1),
        downloads=band(curves.downloads, reached, axis=1),
        fetches=band(curves.fetches, reached, axis=1),
        updates=band(curves.updates, reached, axis=1),
        iter_error=band(curves.iter_error, reached_j, axis=1),
        staleness=jnp.sum(jnp.where(ok, curves.staleness, 0), axis=1),
        reach_time=band(curves.reach_time, ok & ~jnp.isnan(curves.reach_time), axis=1),
        reach_downloads=band(curves.reach_downloads, ok & ~jnp.isnan(curves.reach_time), axis=1),
        reach_total=band(curves.reach_downloads + curves.reach_fetches, ok & ~jnp.isnan(curves.reach_time), axis=1),
        diverged=jnp.sum(curves.diverged, axis=1),
        final_time=final_time,
        iterations=final_iteration[:, 0],
    )
