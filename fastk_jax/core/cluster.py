"""The cluster: how long a computation a worker starts now takes.

Every duration the schemes use comes from ``durations``: worker i's draw X_i from the delay
law (iid, or worker i's column of a trace), times its persistent ``slowdown[i]``, times the
Markov straggle factor while worker i is slow (``spec.Straggle``). One function for every
scheme and every draw site, so a cluster model is added here once and holds everywhere.

``workers`` names the worker of each draw (any shape; the whole cluster is ``arange(n)``,
broadcast along further axes for several pushes per worker): with the iid laws the draws are
``law.sample(key, workers.shape)``, the very numbers fastest-k SGD has always drawn.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .delays import Trace
from .spec import SimConfig

Array = jax.Array


def law_draws(law, key: Array, workers: Array) -> Array:
    """X for each entry of ``workers``: iid laws ignore who draws; a trace reads the worker's column."""
    if isinstance(law, Trace):
        return law.sample_workers(key, workers)
    return law.sample(key, workers.shape)


def straggle_factor(config: SimConfig, slow: Array) -> Array:
    """(n,) each worker's current time multiplier from the Markov straggle chain."""
    return jnp.where(slow, config.straggle.slow, 1.0)


def durations(config: SimConfig, key: Array, workers: Array, slow: Array | None) -> Array:
    """How long the computations started now by ``workers`` take (see the module docstring);
    ``slow``: the straggle chain's state (n,), None for the draws made before it applies."""
    x = jnp.asarray(config.slowdown)[workers] * law_draws(config.delay, key, workers)
    if slow is not None:
        x = x * straggle_factor(config, slow).astype(x.dtype)[workers]
    return x


def whole_cluster(n: int, columns: int = 1) -> Array:
    """The worker index of every draw of an (n, columns) table: row i is worker i."""
    return jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32)[:, None], (n, columns)) if columns > 1 else jnp.arange(n, dtype=jnp.int32)
