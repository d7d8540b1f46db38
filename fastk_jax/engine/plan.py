"""The run plan: everything ``simulate`` decides before the first update, checked once.

How many runs and how they are laid out (``layout.run_layout``, the memory guard), how many
updates (``grids.default_iterations``), the grids, the initial error, and the stopping rule.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import jax
import numpy as np

from ..core import policies, schemes
from ..core.curves import Grids
from ..core.problems import Problem, evaluate, full_loss, metric_problem
from ..core.spec import RunSpec, SimConfig
from ..errors import ConfigError
from .grids import MAX_ITERATIONS_FACTOR, default_iterations, fastest_iteration_time, make_grids
from .layout import RunLayout, default_block, run_layout
from .loop import matmul_precision, products_precision


class RunPlan(NamedTuple):
    """What a simulation will do: C configurations x S seeds laid out as ``layout``; each
    configuration until every run of it has passed ``time_horizon`` and made more than
    ``min_iterations`` updates, at most ``max_iterations``. ``iterations``: the updates expected
    of the fastest configuration (or asked for), which sets the iteration grid and the limit."""

    spec: RunSpec
    num_configs: int
    seeds: int
    seed: int
    layout: RunLayout
    time_horizon: float
    iterations: int
    min_iterations: int
    max_iterations: int
    grids: Grids
    initial_error: float
    platform: str
    keep_runs: bool

    @property
    def runs(self) -> int:
        return self.num_configs * self.seeds

    @staticmethod
    def finished(stepping) -> bool:
        """No configuration steps any more (``Runs.status``): every run past the horizon, with
        the updates asked for made."""
        return not np.any(stepping)

    def stops(self, done_iterations: int, stepping) -> bool:
        return done_iterations > 0 and (self.finished(stepping) or done_iterations >= self.max_iterations)

    def fraction(self, done_iterations: int, slowest_clock: float) -> float:
        """Of the work done, by the slowest run."""
        return min(1.0, slowest_clock / self.time_horizon, done_iterations / (self.iterations + 1))

    def positions(self) -> np.ndarray:
        """(calls, blocks, lanes): position p holds run min(p, runs - 1), that is seed p % S of
        configuration p // S; positions past the last run are padding copies of it."""
        layout = self.layout
        flat = np.minimum(np.arange(layout.batches * layout.per_call), self.runs - 1)
        return flat.reshape(layout.batches, layout.blocks, layout.lanes)

    def fingerprint_fields(self) -> dict:
        """The plan's part of a checkpoint's key: every setting that changes a run's numbers."""
        return {
            "spec": repr(self.spec),
            "seeds": self.seeds,
            "seed": self.seed,
            "time_horizon": float(self.time_horizon),
            "iterations": self.iterations,
            "min_iterations": self.min_iterations,
            "max_iterations": self.max_iterations,
            "grids": [np.asarray(g).tolist() for g in self.grids],
            "layout": list(self.layout),
            "platform": self.platform,
            "matmul_precision": matmul_precision(),
            "key_impl": str(jax.random.key_impl(jax.random.key(0))),
        }


def _configuration(configs: SimConfig, c: int) -> SimConfig:
    return jax.tree.map(lambda x: x[c], configs)


def make_plan(
    problem: Problem,
    configs: SimConfig,
    *,
    seeds: int,
    time_horizon: float,
    spec: RunSpec,
    seed: int,
    iterations: int | None,
    grid_iterations: int | None,
    grid_points: int,
    iteration_grid_points: int,
    divergence_factor: float,
    max_iterations: int | None,
    block: int | None,
    devices: list,
    keep_runs: bool,
    checkpointed: bool,
) -> RunPlan:
    """Check the settings and plan the simulation (see ``simulate`` for the arguments)."""
    schemes.check(spec)
    num_configs = int(np.shape(configs.eta)[0])
    workers = problem.x.shape[0]  # the problem's shards
    if spec.n != workers:
        raise ConfigError("spec.n", f"the problem is split over {workers} workers, but spec.n = {spec.n}")
    if np.shape(configs.slowdown) != (num_configs, workers):
        raise ConfigError(
            "slowdown", f"needs one entry per worker ({workers}), got shape {np.shape(configs.slowdown)[1:]}"
        )
    runs = num_configs * seeds
    block = default_block(devices[0].platform, problem, spec, devices[0]) if block is None else block
    layout = run_layout(
        problem, spec, runs, grid_points, iteration_grid_points, len(devices), block, keep_runs=keep_runs
    )
    if layout.batches > 1:
        warnings.warn(
            f"{num_configs} configurations x {seeds} seeds do not fit in memory at once: running them in "
            f"{layout.batches} calls of {layout.per_call} runs (the same numbers: blocks of {block} runs fix them)",
            stacklevel=3,
        )
    if checkpointed and spec.keep_trajectories:
        raise ValueError("trajectories are not checkpointed: use checkpoint=None with keep_trajectories")
    # one transfer, not a device dispatch per configuration and leaf: 2,000 configurations were
    # indexed in 34 s on the device and 0.2 s on the host (2-core CPU)
    host = jax.tree.map(np.asarray, configs)
    each = [_configuration(host, c) for c in range(num_configs)]
    if spec.max_k is not None:
        largest = max(policies.largest_k(c.policy) for c in each)
        if largest > spec.max_k:
            raise ConfigError("max_k", f"a policy reaches k={largest} > spec.max_k={spec.max_k}")
    min_iterations = 0 if iterations is None else iterations  # beyond passing the horizon
    if iterations is None:
        iterations = default_iterations(time_horizon, fastest_iteration_time([(c, spec) for c in each]), spec.chunk)
    if max_iterations is None:
        max_iterations = MAX_ITERATIONS_FACTOR * iterations + spec.chunk
    for name in spec.metrics:
        problem_says = metric_problem(problem, name)
        if problem_says:
            raise ConfigError("run.metrics", problem_says)
    # the tracked metric at w_0 sets the divergence limit and the levels whose reaching is recorded
    w0 = problem.init_params()
    with products_precision():  # as the runs compute it
        if spec.metrics[0] == "error":
            initial_error = float(full_loss(problem, w0) - problem.f_star)
        else:
            initial_error = float(evaluate(problem, w0, spec.metrics[:1])[0])
    grids = make_grids(
        time_horizon,
        iterations if grid_iterations is None else grid_iterations,
        grid_points,
        iteration_grid_points,
        divergence_factor * max(initial_error, 1e-30),
        initial_error,
    )
    return RunPlan(
        spec=spec,
        num_configs=num_configs,
        seeds=seeds,
        seed=seed,
        layout=layout,
        time_horizon=float(time_horizon),
        iterations=iterations,
        min_iterations=min_iterations,
        max_iterations=max_iterations,
        grids=grids,
        initial_error=initial_error,
        platform=devices[0].platform,
        keep_runs=keep_runs,
    )
