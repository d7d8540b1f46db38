"""k policies: how many of the fastest workers the master waits for at each iteration.

Every policy is the same pytree of arrays, ``KPolicy``, so policies of different kinds (fixed
k, schedules, Algorithm 1, the other feedback rules) stack along a leading axis and run in one
vmapped, compiled call. Which rule applies is data too: ``adaptive`` says k is fed back from
the run (``rule``: 0 Algorithm 1, 1 the loss ratio, 2 the gradient norm), otherwise k follows
the piecewise-constant schedule (a fixed k is a schedule with no switch; so are doubling at
fixed intervals, Theorem 1's bound-optimal schedule and the oracle that follows the envelope).

* schedule: k = k0 before ``at[0]``, ``ks[i]`` from ``at[i]`` on; ``at`` is measured in wall-clock
  time (``by_time``) or in iterations, and is padded with +inf so that schedules with different
  numbers of switches share a shape. The clock read is the time (or count) at which the
  iteration starts, i.e. when the master broadcasts w_j.
* Algorithm 1 of the adaptive paper, a Pflug-style counter of the signs of consecutive
  gradient inner products, generalised from "k <- k + step" to k <- factor * k + step
  (factor = 1: additive step; step = 0, factor = 2: doubling). Decisions where the printed
  algorithm is ambiguous:

  - Which gradients are compared. The printed test "g_j^T g_(j-1) < 0" sits after the update
    that used g_(j-1), when g_j has not been computed. We compare the two most recent
    gradients the master received: the one of this iteration with the one of the previous
    iteration (the only causal reading). At the first iteration there is no previous gradient
    and the counter is left unchanged. The comparison runs across a switch of k. A zero
    inner product counts as positive (the printed "else" branch).
  - Burn-in. As printed: countIter starts at 1, is reset to 0 at a switch and incremented at
    the end of every iteration, and a switch needs countIter > burnin. So after the start or a
    switch, at least burnin + 1 iterations run before the next switch.
  - At k_max. As printed with n replaced by k_max ("k <= n - step"): k switches only when the
    next k, factor*k + step, is <= k_max. If it is not, k stays and the counter is *not* reset
    (the reset is inside the printed if). So k_max is reached only when it lies on the ladder
    k_min, factor*k_min + step, ...; k never passes it and never decreases.

* Loss ratio (AdaSync-style, rule 1): k = ceil(k0 sqrt(F(w_0) / F(w_t))), never decreasing,
  capped at k_max, where F(w_t) is the full training loss at the latest update's model (the
  simulator knows it exactly; a real master would estimate it, e.g. now and then on a sample).
  F, not F - F*: the ratio as AdaSync writes it.
* Gradient norm (FLANP-style, rule 2): the master smooths the squared norm of the gradient it
  applies (an exponential average with weight 1/burnin per update, at least 1/1, so the noise of
  one update does not decide). ``burnin`` updates after the start or a switch it notes that
  level; k steps up the ladder of Algorithm 1 (factor * k + step, within k_max) once the smoothed
  norm has fallen to ``gamma`` times the noted level. FLANP doubles the participating nodes when
  the gradient norm reaches the statistical accuracy of the current ones; this relative
  threshold needs no constants of the problem.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ConfigError

Array = jax.Array


class KPolicy(NamedTuple):
    """A k policy as data. Integer fields are int32, breakpoints float."""

    k0: Array  # () first k (k_min of Algorithm 1)
    by_time: Array  # () bool: schedule breakpoints are wall-clock times (else iterations)
    at: Array  # (B,) breakpoints, ascending, +inf padded
    ks: Array  # (B,) k from each breakpoint on
    adaptive: Array  # () bool: Algorithm 1 instead of the schedule
    thresh: Array  # () counter threshold
    burnin: Array  # () iterations before a switch is allowed
    step: Array  # () additive step
    factor: Array  # () multiplicative factor
    k_max: Array  # () largest k a feedback rule may reach
    rule: Array  # () feedback rule when adaptive: 0 Algorithm 1, 1 loss ratio, 2 gradient norm
    gamma: Array  # () gradient-norm rule: switch when the smoothed norm^2 falls to gamma x its level


RULES = {"algorithm1": 0, "loss_ratio": 1, "gradient_norm": 2}


class KPolicyState(NamedTuple):
    """What the next iteration of a policy needs (per run)."""

    k: Array  # () current k of a feedback rule
    count_negative: Array  # () Algorithm 1's counter
    count_iter: Array  # () iterations since start or last switch, + 1
    prev_grad: Array  # (p,) the gradient received at the previous iteration
    has_prev: Array  # () bool: prev_grad is valid
    level: Array  # () loss ratio: F(w_0); gradient norm: the noted level (< 0: not yet)
    smoothed: Array  # () gradient norm: the exponential average of ||g||^2


def _policy(
    k0, by_time=False, at=(), ks=(), adaptive=False, thresh=0, burnin=0, step=0, factor=1, k_max=None, rule=0, gamma=0.0
):
    at = np.asarray(at, np.float64).reshape(-1)
    ks = np.asarray(ks, np.int64).reshape(-1)
    return KPolicy(
        k0=np.int32(k0),
        by_time=np.bool_(by_time),
        at=at,
        ks=ks.astype(np.int32),
        adaptive=np.bool_(adaptive),
        thresh=np.int32(thresh),
        burnin=np.int32(burnin),
        step=np.int32(step),
        factor=np.int32(factor),
        k_max=np.int32(k0 if k_max is None else k_max),
        rule=np.int32(rule),
        gamma=np.float64(gamma),
    )


def fixed(k: int) -> KPolicy:
    """Wait for the fastest k workers at every iteration."""
    return _policy(k)


def schedule(k0: int, at, ks, by: str = "time") -> KPolicy:
    """Piecewise-constant k: k0 before at[0], ks[i] from at[i] on (at ascending).

    ``by`` is "time" (wall-clock) or "iterations".
    """
    if by not in ("time", "iterations"):
        raise ConfigError("policy.by", f"must be 'time' or 'iterations', got {by!r}")
    return _policy(k0, by_time=by == "time", at=at, ks=ks)


def doubling(k0: int, every: float, k_max: int) -> KPolicy:
    """k doubles every ``every`` units of wall-clock time, from k0 up to k_max (the last step is
    capped at k_max): a time schedule k0, 2 k0, 4 k0, ... switched at every, 2 every, ..."""
    ks, at = [], []
    k = k0
    while k < k_max:
        k = min(2 * k, k_max)
        ks.append(k)
        at.append(every * len(ks))
    return schedule(k0, at, ks, by="time")


def adaptive(k_min: int, k_max: int, thresh: int, burnin: int, step: int = 0, factor: int = 1) -> KPolicy:
    """Algorithm 1 of the adaptive paper, starting at k_min (see the module docstring)."""
    return _policy(k_min, adaptive=True, thresh=thresh, burnin=burnin, step=step, factor=factor, k_max=k_max)


def loss_ratio(k0: int, k_max: int) -> KPolicy:
    """AdaSync-style: k = ceil(k0 sqrt(F(w_0) / F(w_t))), never decreasing, at most k_max."""
    return _policy(k0, adaptive=True, k_max=k_max, rule=RULES["loss_ratio"])


def gradient_norm(k0: int, k_max: int, gamma: float, burnin: int, step: int = 0, factor: int = 2) -> KPolicy:
    """FLANP-style: k -> factor k + step when the smoothed squared gradient norm has fallen to
    gamma times its level ``burnin`` updates after the last switch (see the module docstring)."""
    return _policy(
        k0,
        adaptive=True,
        burnin=burnin,
        step=step,
        factor=factor,
        k_max=k_max,
        rule=RULES["gradient_norm"],
        gamma=gamma,
    )


def check(policy: KPolicy, n: int, where: str = "policy") -> None:
    """Host-side validation against n workers; raises ConfigError naming the field."""

    def k_in_range(name, values):
        v = np.asarray(values)
        if v.size and (v.min() < 1 or v.max() > n):
            bad = v[(v < 1) | (v > n)][0]
            raise ConfigError(f"{where}.{name}", f"k must satisfy 1 <= k <= n_workers={n}, got {bad}")

    k_in_range("k_min" if bool(policy.adaptive) else "k" if np.size(policy.at) == 0 else "k0", policy.k0)
    at = np.asarray(policy.at, np.float64)
    if np.any(np.isnan(at)) or np.any(at < 0) or np.any(np.diff(at) < 0):
        raise ConfigError(f"{where}.at", "schedule breakpoints must be >= 0 and ascending")
    if at.shape != np.shape(policy.ks):
        raise ConfigError(f"{where}.ks", "a schedule needs as many k values as breakpoints")
    k_in_range("ks", np.asarray(policy.ks)[np.isfinite(at)])
    if bool(policy.adaptive):
        k_in_range("k_max", policy.k_max)
        first = "k0" if int(policy.rule) else "k_min"
        if int(policy.k_max) < int(policy.k0):
            raise ConfigError(f"{where}.k_max", f"must be >= {first}={int(policy.k0)}, got {int(policy.k_max)}")
        if int(policy.rule) == RULES["gradient_norm"] and not 0 < float(policy.gamma) < 1:
            raise ConfigError(f"{where}.gamma", f"must be in (0, 1), got {float(policy.gamma)}")
        if int(policy.rule) == RULES["loss_ratio"]:
            return
        if (
            int(policy.factor) < 1
            or int(policy.step) < 0
            or int(policy.factor) * int(policy.k0) + int(policy.step) <= int(policy.k0)
        ):
            raise ConfigError(f"{where}.step", "Algorithm 1 needs step >= 1 or factor >= 2 so that k grows")
        for name in ("burnin", "thresh"):
            if int(getattr(policy, name)) < 0:
                raise ConfigError(f"{where}.{name}", f"must be >= 0, got {int(getattr(policy, name))}")


def largest_k(policy: KPolicy) -> int:
    """The largest k an (unstacked) policy can use: k0, its schedule's ks, Algorithm 1's k_max."""
    at, ks = np.asarray(policy.at, np.float64), np.asarray(policy.ks)
    reachable = [int(policy.k0), *ks[np.isfinite(at)].tolist()]
    if bool(policy.adaptive):
        reachable.append(int(policy.k_max))
    return max(reachable)


def stack(policies: list[KPolicy]) -> KPolicy:
    """Stack policies along a leading axis, padding schedules with +inf breakpoints."""
    width = max(1, max(np.size(p.at) for p in policies))

    def pad(p: KPolicy) -> KPolicy:
        extra = width - np.size(p.at)
        at = np.concatenate([np.asarray(p.at, np.float64), np.full(extra, np.inf)])
        ks = np.concatenate([np.asarray(p.ks, np.int32), np.full(extra, p.k0, np.int32)])
        return p._replace(at=at, ks=ks)

    return jax.tree.map(lambda *xs: np.stack(xs), *[pad(p) for p in policies])


def init(policy: KPolicy, num_params: int, dtype) -> KPolicyState:
    return KPolicyState(
        k=jnp.asarray(policy.k0, jnp.int32),
        count_negative=jnp.int32(0),
        count_iter=jnp.int32(1),
        prev_grad=jnp.zeros(num_params, dtype),
        has_prev=jnp.bool_(False),
        level=jnp.asarray(-1.0, dtype),
        smoothed=jnp.asarray(0.0, dtype),
    )


def current_k(policy: KPolicy, state: KPolicyState, time: Array, iteration: Array) -> Array:
    """k for the iteration that starts at wall-clock ``time`` after ``iteration`` updates."""
    clock = jnp.where(policy.by_time, time, iteration.astype(time.dtype))
    reached = clock >= policy.at.astype(time.dtype)
    # at is ascending, so the last reached breakpoint wins; none reached -> k0
    scheduled = jnp.max(jnp.where(reached, jnp.arange(policy.at.shape[0]), -1))
    k_schedule = jnp.where(scheduled >= 0, policy.ks[jnp.maximum(scheduled, 0)], policy.k0)
    return jnp.where(policy.adaptive, state.k, k_schedule).astype(jnp.int32)


def observe(policy: KPolicy, state: KPolicyState, grad: Array, loss: Array) -> KPolicyState:
    """A feedback rule's bookkeeping after the master applied ``grad``, the gradient of update j,
    with ``loss`` = F(w_j) the training loss at the model of that update (see the module
    docstring).

    Runs for every policy (the state is cheap); only adaptive policies read ``state.k``, and
    each reads the rule it selects.
    """
    k_next = policy.factor * state.k + policy.step
    fits = state.k <= (policy.k_max - policy.step) // policy.factor  # k_next <= k_max, without int32 overflow

    # Algorithm 1: the signs of consecutive gradient inner products
    negative = jnp.vdot(grad, state.prev_grad) < 0
    count = state.count_negative + jnp.where(state.has_prev, jnp.where(negative, 1, -1), 0)
    pflug = (count > policy.thresh) & (state.count_iter > policy.burnin) & fits

    # gradient norm: smooth ||g||^2, note its level after burnin updates, switch at gamma x level
    g2 = jnp.vdot(grad, grad).astype(state.smoothed.dtype)
    weight = 1.0 / jnp.maximum(policy.burnin, 1).astype(g2.dtype)
    smoothed = jnp.where(state.has_prev, state.smoothed + weight * (g2 - state.smoothed), g2)
    noted = jnp.where((state.level < 0) & (state.count_iter > policy.burnin), smoothed, state.level)
    by_norm = (noted >= 0) & (smoothed <= policy.gamma.astype(g2.dtype) * noted) & fits

    # loss ratio: k0 sqrt(F(w_0) / F(w_t)), never decreasing
    loss = loss.astype(state.level.dtype)
    first_loss = jnp.where(state.has_prev, state.level, loss)
    ratio = jnp.sqrt(first_loss / jnp.maximum(loss, jnp.finfo(loss.dtype).tiny))
    by_loss = jnp.ceil(jnp.minimum(policy.k0 * ratio, policy.k_max.astype(ratio.dtype)))
    by_loss = jnp.maximum(state.k, jnp.where(jnp.isfinite(by_loss), by_loss, state.k).astype(jnp.int32))

    rule = policy.rule
    switch = jnp.where(rule == RULES["algorithm1"], pflug, by_norm)
    k = jnp.where(rule == RULES["loss_ratio"], by_loss, jnp.where(switch, k_next, state.k))
    level = jnp.where(rule == RULES["loss_ratio"], first_loss, jnp.where(switch, -1.0, noted))
    return KPolicyState(
        k=k,
        count_negative=jnp.where(switch, 0, count),
        count_iter=jnp.where(switch, 0, state.count_iter) + 1,
        prev_grad=grad,
        has_prev=jnp.bool_(True),
        level=level.astype(state.level.dtype),
        smoothed=smoothed,
    )
