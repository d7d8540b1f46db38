"""Every random number the engine draws, as numpy arrays: for tests and the NumPy reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..core import schemes
from ..core.spec import RunSpec, SimConfig, seed_key


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
