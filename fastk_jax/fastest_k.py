"""Fastest-k SGD (eq. (5) of the adaptive paper) as one pure step of a ``lax.scan``.

Iteration j: the master broadcasts w_j at wall-clock time t_j; the n workers respond after
iid delays; the master waits for the k fastest, averages their partial gradients
(eq. (3)), updates w through optax and the clock advances by the k-th order statistic
X_(k:n). The slowest n - k computations are discarded. Communication per iteration: k
gradient vectors received by the master (the paper's download) and n model vectors it
broadcasts (upload).

k varies without changing shapes: all n partial gradients are weighted by a 0/1 mask of the
k fastest divided by k, in one reverse-mode pass over the shard losses, which also yields F(w_j).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from . import policies
from .problems import Problem
from .spec import SimConfig, sample_delays

Array = jax.Array


class State(NamedTuple):
    """What the next iteration of one run needs."""

    w: Array  # (p,) model w_j
    opt_state: optax.OptState
    policy: policies.KPolicyState
    time: Array  # () t_j, when w_j was broadcast
    iteration: Array  # () j, updates so far
    downloads: Array  # () gradients received so far, sum of k over iterations < j
    key: Array  # this run's key; iteration j uses fold_in(key, j)


class Out(NamedTuple):
    """What is recorded about model w_j (the iteration that starts at t_j)."""

    time: Array  # () t_j
    iteration: Array  # () j
    k: Array  # () k used at iteration j
    error: Array  # () F(w_j) - F*
    downloads: Array  # () gradients received before t_j
    w: Array  # (p,) w_j


def init(problem: Problem, config: SimConfig, tx: optax.GradientTransformation, key: Array) -> State:
    w = problem.init_params()
    return State(
        w=w,
        opt_state=tx.init(w),
        policy=policies.init(config.policy, problem.num_params, w.dtype),
        time=jnp.zeros((), w.dtype),
        iteration=jnp.int32(0),
        downloads=jnp.int32(0),
        key=key,
    )


def select_fastest(delays: Array, k: Array) -> tuple[Array, Array]:
    """0/1 mask of the k smallest delays (ties broken by worker index) and X_(k:n)."""
    rank = jnp.argsort(jnp.argsort(delays, stable=True), stable=True)
    selected = rank < k
    return selected, jnp.max(jnp.where(selected, delays, -jnp.inf))


def step(state: State, config: SimConfig, problem: Problem, tx: optax.GradientTransformation) -> tuple[State, Out]:
    n = problem.x.shape[0]
    k = policies.current_k(config.policy, state.policy, state.time, state.iteration)
    delays = sample_delays(config, jax.random.fold_in(state.key, state.iteration), n)
    selected, kth = select_fastest(delays, k)

    losses, pullback = jax.vjp(problem.shard_losses, state.w)
    (grad,) = pullback(selected.astype(losses.dtype) / k.astype(losses.dtype))
    updates, opt_state = tx.update(grad, state.opt_state, state.w)
    w = optax.apply_updates(state.w, -config.eta.astype(grad.dtype) * updates)

    out = Out(
        time=state.time,
        iteration=state.iteration,
        k=k,
        error=jnp.mean(losses) - problem.f_star,
        downloads=state.downloads,
        w=state.w,
    )
    new = State(
        w=w,
        opt_state=opt_state,
        policy=policies.observe(config.policy, state.policy, grad),
        time=state.time + kth.astype(state.time.dtype),
        iteration=state.iteration + 1,
        downloads=state.downloads + k,
        key=state.key,
    )
    return new, out
