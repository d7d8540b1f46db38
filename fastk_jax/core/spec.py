"""What a simulation is made of: per-configuration arrays (vmapped) and static settings.

The split follows the rule of the codebase: anything that fixes a shape or a Python branch
is static and hashable (``RunSpec``); anything that varies between configurations of one
shape is an array in ``SimConfig``, stacked along a leading axis and vmapped.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..errors import ConfigError
from .delays import DelayLaw
from .policies import KPolicy

Array = jax.Array


class Straggle(NamedTuple):
    """Stragglers correlated over time: each worker is fast or slow, a two-state Markov chain
    stepped at every update (fast -> slow with probability ``enter``, slow stays slow with
    probability ``stay``); a slow worker's delays are multiplied by ``slow``. The first state is
    drawn from the chain's stationary law, P[slow] = enter / (enter + 1 - stay). slow = 1: off."""

    slow: Array = 1.0  # () time multiplier while slow
    enter: Array = 0.0  # () P[fast -> slow] per update
    stay: Array = 0.0  # () P[slow -> slow] per update

    def slow_fraction(self) -> Array:
        """The stationary probability that a worker is slow."""
        return self.enter / jnp.maximum(self.enter + 1.0 - self.stay, 1e-30)

    def mean_factor(self) -> Array:
        """E[multiplier] under the stationary law: the mean delay grows by this factor."""
        return 1.0 + self.slow_fraction() * (self.slow - 1.0)


class Network(NamedTuple):
    """Communication time: every upload of a gradient and every download of a model by worker i
    takes ``latency + transfer[i]`` (``transfer`` = the vector's bytes / worker i's bandwidth).
    Links do not contend (each worker has its own); a congested network is ``Shared``."""

    latency: Array = 0.0  # () time units per transfer
    transfer: Array = 0.0  # (n,) time units to send one vector over worker i's link


class Shared(NamedTuple):
    """A slowdown shared by all workers at an update: with probability ``prob`` every duration
    drawn at that update is multiplied by ``factor`` (a congested network, a busy host), iid
    over updates. It correlates the workers, which the papers' iid delays exclude."""

    prob: Array = 0.0  # () P[an update is slowed]
    factor: Array = 1.0  # () its multiplier


class Failures(NamedTuple):
    """Workers that fail and return: a computation meets a failure with probability ``prob``, at
    a uniform point of it; the work done is lost, the worker is away for Exp(mean ``downtime``),
    then computes the whole gradient again (at most one failure per computation)."""

    prob: Array = 0.0  # () P[a computation meets a failure]
    downtime: Array = 0.0  # () mean time a failed worker is away


CLUSTER_FEATURES = ("failures", "shared", "network")  # RunSpec.cluster: the parts a cluster switches on


class SimConfig(NamedTuple):
    """One configuration: a k policy, a step size and a cluster (delay law + per-worker slowdown).

    Worker i's delay is ``slowdown[i] * X_i`` with X_i iid from ``delay``; slowdown = 1
    everywhere is the iid cluster of the papers.
    """

    policy: KPolicy
    eta: Array  # () step size (eta_max of the staleness rule)
    delay: DelayLaw
    slowdown: Array  # (n,) per-worker time multiplier
    lr_c: Array = 1.0  # () C of the staleness-compensated rate, eq. (13) of the async paper
    straggle: Straggle = Straggle()  # Markov stragglers (off by default)
    staleness_limit: Array = np.inf  # () R of Ringmaster ASGD: computations R updates stale are stopped
    clip: Array = np.inf  # () the update direction's largest norm (gradient clipping; inf: off)
    network: Network = Network()  # communication time (RunSpec.cluster has "network")
    shared: Shared = Shared()  # a slowdown of all workers at an update (RunSpec.cluster has "shared")
    failures: Failures = Failures()  # failing and returning workers (RunSpec.cluster has "failures")


def sample_delays(config: SimConfig, key: Array, n: int) -> Array:
    """The n workers' response times for one iteration, shape (n,)."""
    return config.slowdown * config.delay.sample(key, (n,))


OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")


class RunSpec(NamedTuple):
    """Static settings: changing one recompiles, so they hold only shapes and branches."""

    n: int  # workers
    chunk: int = 500  # iterations per compiled scan call
    optimizer: str = "sgd"
    momentum: float = 0.9  # for "momentum" and "nesterov"
    keep_trajectories: bool = False  # return every iterate (memory: iterations x seeds)
    scheme: str = "k_sync"  # k_sync (fastest-k), k_batch_sync, rennala, k_async, k_batch_async, ringmaster
    gradients: str = "shard"  # a learner's gradient: its shard, or a mini-batch of all rows
    batch_size: int = 1  # b, rows per mini-batch
    lr: str = "fixed"  # learning-rate rule: fixed, staleness (eq. (13)), delay_adaptive
    staleness_bins: int = 32  # histogram bins of the applied gradients' staleness
    max_k: int | None = None  # the largest k any policy reaches (None: n); bounds a learner's pushes per update
    metrics: tuple[str, ...] = ("error",)  # recorded on the grids (``problems.METRICS``); the first is tracked
    cluster: tuple[str, ...] = ()  # the cluster's parts beyond law x slowdown x Markov chain (CLUSTER_FEATURES)

    def transform(self) -> optax.GradientTransformation:
        """The optax direction transform; the step -eta is applied by the scheme, so that
        eta stays data (vmappable) instead of a constant captured in a closure."""
        if self.optimizer == "sgd":
            return optax.identity()
        if self.optimizer in ("momentum", "nesterov"):
            return optax.trace(decay=self.momentum, nesterov=self.optimizer == "nesterov")
        if self.optimizer == "adam":
            return optax.scale_by_adam()
        raise ConfigError("run.optimizer", f"unknown optimizer {self.optimizer!r}; known: {', '.join(OPTIMIZERS)}")


def seed_key(seed: int, index: Array) -> Array:
    """Seed ``index``'s key: fold_in of the study's key, so a run does not depend on how many
    runs are beside it. Configurations share seed keys (common random numbers)."""
    return jax.random.fold_in(jax.random.key(seed), index)


def stack_configs(configs: list[SimConfig]) -> SimConfig:
    """Stack configurations of one shape along a leading axis (schedules are padded first)."""
    from .policies import stack as stack_policies

    policies = stack_policies([c.policy for c in configs])
    # a slowdown given as a plain list is one array, not a pytree of numbers
    plain = [c._replace(policy=None, slowdown=np.asarray(c.slowdown, np.float64)) for c in configs]
    shapes = {np.shape(c.slowdown) for c in plain}
    if len(shapes) > 1:
        raise ConfigError("slowdown", f"every configuration needs the same number of workers, got shapes {sorted(shapes)}")
    rest = jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *plain)
    return rest._replace(policy=jax.tree.map(jnp.asarray, policies))
