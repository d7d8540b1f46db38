"""The compiled programs: every run before its first update (``init``), ``spec.chunk`` updates
of every run (``advance``), and the reduction over seeds (``summarize``).

One run is a scan of ``schemes.step`` (fastest-k SGD or an asynchronous variant) that records
itself on fixed grids (``curves``). The runs are vmapped over the lanes of a block, the blocks
stepped in turn (``lax.map``; see ``layout``). The chunk program is jitted once per static
``RunSpec`` and array shapes: a second study of the same shapes reuses it (``trace_count``
tells how often it was traced).

**Products in float32.** JAX's default lets an accelerator compute float32 products with fewer
bits (TF32, 10-bit mantissas, on NVIDIA GPUs since Ampere; bfloat16 passes on TPUs). The
programs here are traced with ``jax.default_matmul_precision("float32")``, so a float32 run is
float32 arithmetic on every platform and the differential tests' float32 tolerances hold on a
GPU too, unless the user chose a precision (``JAX_DEFAULT_MATMUL_PRECISION`` or
``jax.config.update("jax_default_matmul_precision", ...)``): theirs is kept
(``matmul_precision`` names the one in force; results and checkpoints record it). CPUs compute
float32 products in float32 either way: their bits do not change.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..core import curves, schemes
from ..core.curves import Grids, RunCurves, Summary
from ..core.problems import Problem
from ..core.spec import RunSpec, SimConfig, seed_key

Array = jax.Array

_traces = {"advance": 0}


def trace_count() -> int:
    """How many times the chunk function has been traced (compiled) in this process."""
    return _traces["advance"]


class Carry(NamedTuple):
    state: schemes.State  # leaves (blocks, lanes, ...): one run per (block, lane)
    curves: RunCurves  # leaves (blocks, lanes, ...)


def matmul_precision() -> str:
    """The precision of the float32 products in the compiled programs: the user's
    ``jax_default_matmul_precision`` where set, else ``"float32"`` (see the module docstring)."""
    return jax.config.jax_default_matmul_precision or "float32"


def products_precision():
    """The context the programs are traced in: float32 products unless the user chose otherwise."""
    if jax.config.jax_default_matmul_precision is not None:
        return contextlib.nullcontext()
    return jax.default_matmul_precision("float32")


def _over_blocks(one_run: Callable, *per_lane):
    """``one_run`` applied to every run: vmapped over the lanes of a block (axis 1), the blocks
    in turn (``lax.map`` over axis 0). Every product XLA compiles is thus batched over exactly
    ``lanes / devices`` runs, whatever the number of runs: the choice of kernel, and so the bits
    of each run, depends on the block size only (see the module docstring)."""
    return jax.lax.map(lambda block: jax.vmap(one_run)(*block), per_lane)


def _config_of(configs: SimConfig, c: Array) -> SimConfig:
    return jax.tree.map(lambda x: x[c], configs)


def _blank(x: Array) -> Array:
    """What a trajectory holds for an update a run did not make: NaN, -1 or False."""
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.full_like(x, jnp.nan)
    return jnp.full_like(x, False if x.dtype == jnp.bool_ else -1)


def _per_lane(mask: Array, x: Array) -> Array:
    return mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim))


@partial(jax.jit, static_argnames=("spec",), donate_argnums=(0,))
def _advance(
    carry: Carry, run_config: Array, configs: SimConfig, problem: Problem, grids: Grids, stepping: Array, spec: RunSpec
):
    """``spec.chunk`` updates of every run of the configurations still ``stepping`` ((C,) bool);
    ``run_config`` (blocks, lanes): each run's row of ``configs``. A run of a configuration that
    has stopped keeps its carry (one select per chunk, not per update), and a block none of whose
    runs steps is skipped (``lax.cond``); its trajectory entries are blanks (``_blank``)."""
    _traces["advance"] += 1
    tx = spec.transform()

    def one_run(carry: Carry, c: Array):
        config = _config_of(configs, c)

        def body(run: Carry, _):
            state, out = schemes.step(run.state, config, problem, tx, spec)
            trajectory = out if spec.keep_trajectories else None
            return Carry(state, curves.record(run.curves, grids, out)), trajectory

        return jax.lax.scan(body, carry, None, length=spec.chunk)

    def one_block(block):
        carry_b, config_b = block
        active = stepping[config_b]  # (lanes,)

        def chunk(c):
            return jax.vmap(one_run)(c, config_b)

        if spec.keep_trajectories:  # the trajectory's shape needs the step: computed, then blanked
            new, trajectory = chunk(carry_b)
            trajectory = jax.tree.map(lambda t: jnp.where(_per_lane(active, t), t, _blank(t)), trajectory)
        else:
            new, trajectory = jax.lax.cond(jnp.any(active), chunk, lambda c: (c, None), carry_b)
        new = jax.tree.map(lambda n, o: jnp.where(_per_lane(active, n), n, o), new, carry_b)
        return new, trajectory

    with products_precision():
        return jax.lax.map(one_block, (carry, run_config))


@partial(jax.jit, static_argnames=("num_configs",))
def _stepping(time: Array, iteration: Array, run_config: Array, horizon: Array, until: Array, num_configs: int):
    """Which configurations still step ((C,) bool), and the slowest clock: a configuration stops
    once every run of it has passed ``horizon`` and made more than ``until`` updates (runs
    ``(blocks, lanes)``; the padding copies a real run, so it changes nothing)."""
    done = ((time > horizon) & (iteration > until)).astype(jnp.int32)
    every = jnp.ones(num_configs, jnp.int32).at[run_config.ravel()].min(done.ravel())
    return every == 0, jnp.min(time)


def _init_impl(
    configs: SimConfig, problem: Problem, grids: Grids, seed: Array, run_config: Array, run_seed: Array, spec: RunSpec
) -> Carry:
    """Every run before its first update: run (b, l) is seed ``run_seed[b, l]`` of
    configuration ``run_config[b, l]``."""
    tx = spec.transform()

    def one_run(c: Array, s: Array) -> Carry:
        state = schemes.init(problem, _config_of(configs, c), tx, seed_key(seed, s), spec)
        return Carry(state, curves.init(grids, state.w.dtype, spec.staleness_bins, len(spec.metrics) - 1))

    with products_precision():
        return _over_blocks(one_run, run_config, run_seed)


_init = jax.jit(_init_impl, static_argnames=("spec",))


def by_config(x, num_configs: int, seeds: int):
    """Runs laid out in blocks, (blocks, lanes, ...), as (C, S, ...): position
    p = block * lanes + lane holds seed p % S of configuration p // S; positions past C x S are
    padding and are dropped."""
    flat = x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:])  # not -1: a field may have no entries
    return flat[: num_configs * seeds].reshape((num_configs, seeds) + flat.shape[1:])


@partial(jax.jit, static_argnames=("num_configs", "seeds"))
def _summarize(carry: Carry, grids: Grids, num_configs: int, seeds: int) -> Summary:
    runs = jax.tree.map(lambda x: by_config(x, num_configs, seeds), carry)
    return curves.summarize(runs.curves, runs.state.time, runs.state.iteration, grids)


@functools.cache
def _sharded_init(sharding):
    return jax.jit(_init_impl, static_argnames=("spec",), out_shardings=sharding)
