"""The grids every run is recorded on, and the one rule for the default number of updates."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from ..core import schemes
from ..core.curves import Grids
from ..core.spec import RunSpec, SimConfig
from ..theory.order_stats import order_statistic_moments


def reach_levels(initial_error: float) -> np.ndarray:
    """The error levels whose first reaching every run records: five per decade, from the
    initial error down over twelve decades."""
    return max(initial_error, 1e-30) * np.logspace(0.0, -12.0, 61)


def mean_iteration_time(config: SimConfig, spec: RunSpec, k: int) -> float:
    """The mean time per update of one (unstacked) configuration with k fixed, used only to
    pick the default number of iterations: E[X_(k:n)] (``theory.order_stats``; Lemma 4 of the
    async paper) for the schemes where a learner pushes once per iteration, and k over the
    learners' total push rate sum_i 1 / (s_i E[X_i]) for the batch schemes (k E[X] / n when iid,
    Lemma 5; a trace's workers have their own means)."""
    slowdown = np.asarray(config.slowdown, np.float64)
    # Markov stragglers: every delay by the chain's stationary mean factor (an approximation:
    # the k-th fastest of a mixture is not the mixture of the k-th fastest)
    slowdown = slowdown * float(np.asarray(config.straggle.mean_factor()))
    if schemes.is_batch(spec):
        means = getattr(config.delay, "worker_means", config.delay.mean)()
        return k / float(np.sum(1.0 / (slowdown * np.broadcast_to(np.asarray(means, np.float64), slowdown.shape))))
    iid = bool(np.all(slowdown == 1.0))
    return order_statistic_moments(config.delay, k, spec.n, slowdown=None if iid else slowdown).mean


INT_MAX = 2**31 - 1  # iteration counts live in int32 on the device
MAX_ITERATIONS_FACTOR = 20  # a run stops at this many times the iterations asked for (plus a chunk)


def fastest_iteration_time(configs: list[tuple[SimConfig, RunSpec]]) -> float:
    """The smallest mean time per update over (unstacked configuration, spec) pairs, each at its
    policy's first k."""
    return min(mean_iteration_time(c, spec, int(np.asarray(c.policy.k0))) for c, spec in configs)


def default_iterations(time_horizon: float, fastest: float, chunk: int) -> int:
    """The one rule for how many updates a group of configurations makes by default: as many as
    its fastest configuration (mean time per update ``fastest``) needs to reach the horizon.
    The engine runs until every run has passed the horizon too, and at most
    ``MAX_ITERATIONS_FACTOR`` times this (plus a chunk), in int32."""
    needed = time_horizon / fastest
    limit = (INT_MAX - chunk) // (MAX_ITERATIONS_FACTOR + 1)
    if not needed <= limit:
        from ..errors import ConfigError

        raise ConfigError(
            "run.time_horizon",
            f"needs about {needed:.3g} updates, more than {limit}; shorten the horizon or set run.iterations",
        )
    return max(1, math.ceil(needed))


def make_grids(
    time_horizon: float, grid_iterations: int, grid_points: int, iteration_grid_points: int, limit: float, initial_error: float
) -> Grids:
    """The time grid (``grid_points`` from 0 to the horizon), the iteration grid (up to
    ``grid_iterations`` updates), the divergence limit and the error levels of ``reach_levels``."""
    return Grids(
        time=jnp.linspace(0.0, time_horizon, grid_points),
        iteration=jnp.unique(jnp.linspace(0, grid_iterations, iteration_grid_points).round().astype(jnp.int32)),
        error_limit=jnp.asarray(limit),
        levels=jnp.asarray(reach_levels(initial_error)),
    )
