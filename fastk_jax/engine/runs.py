"""The runs in flight: every call's carry, placed on the devices, advanced a chunk at a time.

With one call (every run fits at once) the carry stays on the device(s) between chunks and only
the stopping test comes back to the host: which configurations still step (a bool each) and
the slowest clock. With several calls (the memory
guard), each call's carry waits on the host while the others step.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ..core.problems import Problem
from ..core.spec import SimConfig
from .devices import _gather, _host_shapes, to_device, to_host
from .loop import Carry, _advance, _init, _sharded_init, _stepping, by_config
from .plan import RunPlan


class Runs:
    """The C x S runs of a plan on ``devices``: ``advance`` steps every call one chunk."""

    def __init__(self, plan: RunPlan, problem: Problem, configs: SimConfig, devices: list):
        self.plan, self.problem, self.configs = plan, problem, configs
        self.sharding = None
        if plan.layout.devices > 1:
            self.sharding = NamedSharding(Mesh(np.asarray(devices), ("runs",)), PartitionSpec(None, "runs"))
        positions = plan.positions()
        self.run_config = [self._put(p // plan.seeds) for p in positions]
        self.run_seed = [self._put(p % plan.seeds) for p in positions]
        self.seed = jnp.asarray(plan.seed, jnp.uint32)
        self._init = _init if self.sharding is None else _sharded_init(self.sharding)
        self.like = jax.eval_shape(
            lambda *a: self._init(*a, spec=plan.spec), configs, problem, plan.grids, self.seed,
            self.run_config[0], self.run_seed[0],
        )
        self.single = plan.layout.batches == 1
        self.carries: list = []
        self.done_iterations = 0
        self.trajectories: list = []

    def _put(self, x: np.ndarray) -> jax.Array:
        x = np.asarray(x, np.int32)
        if self.sharding is None:
            return jnp.asarray(x)
        return jax.make_array_from_callback(x.shape, self.sharding, x.__getitem__)

    def _fresh(self, b: int) -> Carry:
        return self._init(
            self.configs, self.problem, self.plan.grids, self.seed, self.run_config[b], self.run_seed[b],
            spec=self.plan.spec,
        )

    def start(self) -> None:
        """Every run before its first update."""
        self.carries = [self._fresh(0)] if self.single else [to_host(self._fresh(b)) for b in range(self.plan.layout.batches)]
        self.done_iterations = 0

    def fits(self, batches: list[list[np.ndarray]]) -> bool:
        """Whether saved host leaves (one list per call) have this plan's shapes."""
        expected = _host_shapes(self.like)
        got = [[(tuple(a.shape), a.dtype) for a in leaves] for leaves in batches]
        return len(got) == self.plan.layout.batches and all(g == expected for g in got)

    def restore(self, batches: list[list[np.ndarray]], done_iterations: int) -> None:
        """Continue from saved host leaves (``host_batches``)."""
        self.carries = [to_device(batches[0], self.like, self.sharding)] if self.single else batches
        self.done_iterations = done_iterations

    def host_batches(self) -> list[list[np.ndarray]]:
        """Every call's carry as numpy leaves (PRNG keys as key data): what a checkpoint holds."""
        return [to_host(self.carries[0])] if self.single else self.carries

    def _host_carry(self, b: int) -> Carry:
        leaves = to_host(self.carries[b]) if self.single else self.carries[b]
        return jax.tree.unflatten(jax.tree.structure(self.like), leaves)

    def advance(self, stepping: np.ndarray) -> None:
        """One chunk of ``spec.chunk`` updates of every run of the configurations ``stepping``
        ((C,) bool, from ``status``), call by call; the other runs keep their state."""
        plan, trajectories = self.plan, []
        stepping = jnp.asarray(stepping)
        for b in range(plan.layout.batches):
            carry = self.carries[b] if self.single else to_device(self.carries[b], self.like, self.sharding)
            carry, trajectory = _advance(
                carry, self.run_config[b], self.configs, self.problem, plan.grids, stepping, spec=plan.spec
            )
            self.carries[b] = carry if self.single else to_host(carry)
            if plan.spec.keep_trajectories:
                trajectories.append(jax.tree.map(_gather, trajectory))
        self.done_iterations += plan.spec.chunk
        if trajectories:
            self.trajectories.append(
                jax.tree.map(
                    lambda *xs: by_config(np.concatenate(xs, axis=0), plan.num_configs, plan.seeds), *trajectories
                )
            )

    def status(self) -> tuple[np.ndarray, float]:
        """Which configurations still step ((C,) bool: not every run of it has passed the
        horizon and made more than ``plan.min_iterations`` updates) and the smallest clock of any
        run; reduced where the carry is (on the device(s) with one call, which also waits for the
        chunk to finish), by one function (``loop._stepping``) for one call or several."""
        plan = self.plan
        dtype = self.like.state.time.dtype
        horizon, until = jnp.asarray(plan.time_horizon, dtype), jnp.asarray(plan.min_iterations, jnp.int32)
        stepping, slowest = np.zeros(plan.num_configs, bool), math.inf
        for b in range(plan.layout.batches):
            state = self.carries[0].state if self.single else self._host_carry(b).state
            step_b, slow_b = _stepping(
                state.time, state.iteration, self.run_config[b], horizon, until, num_configs=plan.num_configs
            )
            stepping |= np.asarray(step_b)  # a configuration a call does not hold is done there
            slowest = min(slowest, float(slow_b))
        return stepping, slowest

    def final(self) -> Carry:
        """Every run's final carry: where it is with one call on one device (nothing but the
        summary need leave it), else gathered on the host, so that calls and devices cannot
        change how seeds are reduced."""
        if self.single and self.plan.layout.devices == 1 and not self.plan.keep_runs:
            return self.carries[0]
        return jax.tree.map(
            lambda *xs: np.concatenate(xs, axis=0), *[self._host_carry(b) for b in range(self.plan.layout.batches)]
        )

    def kept_trajectories(self):
        if not self.trajectories:
            return None
        return jax.tree.map(lambda *xs: np.concatenate(xs, axis=2), *self.trajectories)
