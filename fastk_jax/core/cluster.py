"""The cluster: how long a computation a worker starts now takes.

Every duration the schemes use comes from ``durations``, for worker i:

    duration = Z * (straggle_i * slowdown[i] * F(X_i) + (1 + fetch) * (latency + transfer[i]))

* X_i: the draw from the delay law (iid, or worker i's column of a trace); with a constant law
  and ``slowdown[i] = sqrt(i + 1)`` or ``i + 1`` (``slowdown_profile``) these are the
  deterministic tau_i = sqrt(i) and tau_i = i models of the literature (a shifted exponential
  law adds exponential noise);
* F: failures and returns (``spec.Failures``): X, or, with probability ``prob``, U X + D + X
  (U ~ U(0, 1) the lost part, D ~ Exp(mean downtime) the time away);
* straggle_i: the Markov straggle chain's factor while worker i is slow (``spec.Straggle``);
* latency + transfer[i]: one transfer over worker i's link (``spec.Network``): the gradient's
  upload, and the model's download where the computation starts on a freshly sent model
  (``fetch``; not for the further pushes on w_j of ``k_batch_sync``);
* Z: the update's shared factor (``spec.Shared``, ``shared_factor``): the same for every
  duration drawn at one update.

The parts a run uses are static (``RunSpec.cluster``): a plain cluster computes
slowdown[i] * X_i, the very numbers fastest-k SGD has always drawn. One function for every
scheme and every draw site, so a cluster model is added here once and holds everywhere.

``workers`` names the worker of each draw (any shape; the whole cluster is ``arange(n)``,
broadcast along further axes for several pushes per worker).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .delays import Trace
from .spec import RunSpec, SimConfig

Array = jax.Array

PROFILES = ("sqrt", "linear")  # slowdown[i] = sqrt(i + 1), i + 1: tau_i = sqrt(i), tau_i = i (1-based)


def slowdown_profile(name: str, n: int) -> np.ndarray:
    """The per-worker slowdowns of a named profile (worker i of 0 .. n-1 is the literature's i+1)."""
    i = np.arange(1, n + 1, dtype=np.float64)
    if name == "sqrt":
        return np.sqrt(i)
    if name == "linear":
        return i
    raise ValueError(f"unknown slowdown profile {name!r}; known: {', '.join(PROFILES)}")


def law_draws(law, key: Array, workers: Array) -> Array:
    """X for each entry of ``workers``: iid laws ignore who draws; a trace reads the worker's column."""
    if isinstance(law, Trace):
        return law.sample_workers(key, workers)
    return law.sample(key, workers.shape)


def straggle_factor(config: SimConfig, slow: Array) -> Array:
    """(n,) each worker's current time multiplier from the Markov straggle chain."""
    return jnp.where(slow, config.straggle.slow, 1.0)


def shared_factor(config: SimConfig, spec: RunSpec, key_j: Array) -> Array | None:
    """Z_j of the update with key ``key_j`` (None: no shared slowdown in this cluster)."""
    if "shared" not in spec.cluster:
        return None
    hit = jax.random.uniform(jax.random.fold_in(key_j, 9)) < config.shared.prob
    return jnp.where(hit, config.shared.factor, 1.0)


def durations(
    config: SimConfig,
    spec: RunSpec,
    key: Array,
    workers: Array,
    slow: Array | None,
    shared: Array | None = None,
    fetch: bool = True,
) -> Array:
    """How long the computations started now by ``workers`` take (see the module docstring);
    ``slow``: the straggle chain's state (n,), None for the draws made before it applies;
    ``shared``: the update's Z (``shared_factor``); ``fetch``: they start on a model sent now."""
    x = jnp.asarray(config.slowdown)[workers] * law_draws(config.delay, key, workers)
    if "failures" in spec.cluster:
        f = config.failures
        hit = jax.random.uniform(jax.random.fold_in(key, 11), workers.shape) < f.prob
        lost = jax.random.uniform(jax.random.fold_in(key, 12), workers.shape, x.dtype) * x
        away = jax.random.exponential(jax.random.fold_in(key, 13), workers.shape, x.dtype) * f.downtime
        x = jnp.where(hit, x + lost + away, x)
    if slow is not None:
        x = x * straggle_factor(config, slow).astype(x.dtype)[workers]
    if "network" in spec.cluster:
        one = config.network.latency + jnp.broadcast_to(jnp.asarray(config.network.transfer), (spec.n,))[workers]
        x = x + (2.0 if fetch else 1.0) * one.astype(x.dtype)
    if shared is not None:
        x = x * shared.astype(x.dtype)
    return x


def whole_cluster(n: int, columns: int = 1) -> Array:
    """The worker index of every draw of an (n, columns) table: row i is worker i."""
    return jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32)[:, None], (n, columns)) if columns > 1 else jnp.arange(n, dtype=jnp.int32)
