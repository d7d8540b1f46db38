"""The SGD variants of both papers as one pure step of a ``lax.scan``, one update per step.

n learners (workers) compute gradients with random delays; the master updates w after k
gradients, k from the k policy. The four schemes of Sec. 2.3 of the async paper, and two of
later work, differ in three static choices (``Scheme``):

=================  =========================================  ===================================
scheme             a learner that pushed within an iteration  at the update
=================  =========================================  ===================================
``k_sync``         waits (one push per learner)               the rest are cancelled
``k_batch_sync``   starts another mini-batch on w_j           the rest are cancelled
``rennala``        as ``k_batch_sync``                        as ``k_batch_sync``
``k_async``        waits (one push per learner)               only the k pushers restart
``k_batch_async``  fetches the current model, starts again    nobody is cancelled
``ringmaster``     as ``k_batch_async``                       computations R stale are stopped
=================  =========================================  ===================================

``k_sync`` is fastest-k SGD, eq. (5) of the adaptive paper (K = n: fully synchronous SGD);
``k_batch_async`` with k = 1 is fully asynchronous SGD. ``rennala`` is Rennala SGD (Tyurin and
Richtarik, 2023) under its own name: it collects B = k gradients, all at the current model, and
is ``k_batch_sync`` exactly. ``ringmaster`` is Ringmaster ASGD with stops (Maranjyan, Tyurin and
Richtarik, 2025): asynchronous SGD that applies a gradient only when it is fewer than R
updates stale; here the master stops, at each update, every computation whose gradient could
no longer be applied (read R or more versions before w_(j+1)) and restarts that learner at once
on w_(j+1) (R = ``SimConfig.staleness_limit``; R = inf is ``k_batch_async``). The papers state
it for k = 1; with k > 1 it is ``k_batch_async`` with the same stops.

**One step is one update, with fixed shapes.** The cancelling schemes (``_sync_step``) start
every computation at t_j on w_j: each learner can push at most R times in one iteration (R =
the largest k of the policies, at most n, for ``k_batch_sync``; else 1), so the step lays out an
arrival matrix A (n, R), A[i, r] = t_j plus the cumulative sum of learner i's first r+1 fresh
delays, and takes the k earliest (ties: lower flat index i R + r first); t_(j+1) is the k-th.
The schemes that do not cancel (``_event_step``) keep each learner's pending computation
(``Pending``: when it pushes, the model version it read) and take the update's arrivals one
event at a time: the earliest pending computation pushes (ties: lower learner index), and only
that learner's row changes. A loop of fixed length (the largest k) masks the events past k.
Shapes never depend on k.

**Gradients.** Arrival (i, r) is the gradient of learner i's shard (``gradients = "shard"``,
the adaptive paper; a learner's repeated pushes give its shard again) or of a mini-batch of
b rows drawn uniformly with replacement from all rows (``"minibatch"``, the async paper),
at the model it was computed at. The cancelling schemes take them at w_j in one reverse pass
over the weighted shard (or row) losses, which also gives F(w_j); the others take one gradient
per event, at the model its learner read. The update is w_(j+1) = w_j - eta * tx((1/k) sum_a s_a g_a), with the step-size
factor s_a of the learning-rate rule:

* ``fixed``: s_a = 1;
* ``staleness``: eq. (13) of the async paper, eta_a = min(C / ||w_j - w_tau(a)||^2, eta_max)
  per applied gradient, with eta_max = eta and C = ``lr_c``; s_a = eta_a / eta (1 if fresh);
* ``delay_adaptive``: eta_a = eta n / max(n, tau_a), tau_a the staleness in iterations
  (the delay-adaptive rate of later asynchronous-SGD work).

**After the update** (no cancelling): with ``k_async`` the k pushers restart at t_(j+1) on
w_(j+1). With ``k_batch_async`` a learner starts again at once after each push, on the model
current then: w_j, or w_(j+1) for the learner whose push triggered the update (the master
updates on receipt).

**Clipping** (``SimConfig.clip``, inf: off): the update's direction (1/k) sum_a s_a g_a is
scaled down to that norm where it is longer, before the optax transform (so momentum
accumulates clipped directions). With k = 1 this clips each gradient, the clipped asynchronous
SGD of the literature; with k > 1 it clips the average, not each gradient (a decision: the
cancelling schemes form the average in one reverse pass and never hold the gradients apart).

**Communication**: ``downloads`` counts gradients received (k per update), ``fetches`` model
vectors sent to learners, including those sent at t_j: n at t = 0, then n per update for the
cancelling schemes (the broadcast of w_(j+1)), k for ``k_async`` and ``k_batch_async`` (one
fetch per pusher), plus one per stopped learner for ``ringmaster``.

**Randomness**: iteration j of a run uses the key key_j = fold_in(run key, j). The cancelling
schemes draw from it the column of n fresh delays (exactly fastest-k's draw), then further
delay columns, restart delays and mini-batch rows from fold_in(key_j, 1..4). The others draw
each computation on its own: the one learner i starts after its (c+1)-th push of iteration j
from ``event_keys(key_j, n, i, c)``, so its numbers depend on (j, i, c) alone. The first
computations of the async schemes come from fold_in(fold_in(run key, 0), 5 and 6). ``draws``
returns them all, so the NumPy reference (``reference_schemes``) runs on the very same numbers.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from ..errors import ConfigError
from . import cluster, policies
from . import problems as problems_
from .curves import Out
from .problems import Problem
from .spec import RunSpec, SimConfig

Array = jax.Array

class Scheme(NamedTuple):
    """The static choices of a scheme (module docstring)."""

    batch: bool  # a learner that pushed starts another computation within the iteration
    cancel: bool  # the update cancels the computations still running
    stops: bool = False  # the update stops the computations staler than the staleness limit R


SCHEMES = {
    "k_sync": Scheme(batch=False, cancel=True),
    "k_batch_sync": Scheme(batch=True, cancel=True),
    "rennala": Scheme(batch=True, cancel=True),  # Rennala SGD: K-batch-sync under its literature name
    "k_async": Scheme(batch=False, cancel=False),
    "k_batch_async": Scheme(batch=True, cancel=False),
    "ringmaster": Scheme(batch=True, cancel=False, stops=True),  # Ringmaster ASGD (with stops)
}
GRADIENTS = ("shard", "minibatch")
LR_RULES = ("fixed", "staleness", "delay_adaptive")


def check(spec: RunSpec) -> None:
    """Validate the static choices of a run; raises ConfigError naming the field."""
    for field, value, known in (
        ("run.scheme", spec.scheme, tuple(SCHEMES)),
        ("run.gradients", spec.gradients, GRADIENTS),
        ("run.lr", spec.lr, LR_RULES),
    ):
        if value not in known:
            raise ConfigError(field, f"unknown {value!r}; known: {', '.join(known)}")
    if spec.batch_size < 1:
        raise ConfigError("run.batch_size", f"must be >= 1, got {spec.batch_size}")
    if spec.staleness_bins < 2:
        raise ConfigError("run.staleness_bins", f"must be >= 2, got {spec.staleness_bins}")
    problem_says = problems_.metric_names_problem(spec.metrics)
    if problem_says:
        raise ConfigError("run.metrics", problem_says)


def is_batch(spec: RunSpec) -> bool:
    return SCHEMES[spec.scheme].batch


def cancels(spec: RunSpec) -> bool:
    return SCHEMES[spec.scheme].cancel


def stops(spec: RunSpec) -> bool:
    return SCHEMES[spec.scheme].stops


def pushes_per_learner(spec: RunSpec) -> int:
    """R: how often a learner can push within one iteration: at most k <= max_k times in a batch
    scheme (the k earliest pushes hold at most k of one learner), once otherwise."""
    return min(spec.n, spec.max_k or spec.n) if is_batch(spec) else 1


class Pending(NamedTuple):
    """Each learner's computation in progress (schemes that do not cancel)."""

    finish: Array  # (n,) absolute time it will push
    version: Array  # (n,) int32, j of the model it read
    w: Array  # (n, p) the model it read
    rows: Array  # (n, b) int32 its mini-batch (unused with shard gradients)


class State(NamedTuple):
    """What the next update of one run needs."""

    w: Array  # (p,) model w_j
    opt_state: optax.OptState
    policy: policies.KPolicyState
    time: Array  # () t_j, when w_j was made
    iteration: Array  # () j, updates so far
    downloads: Array  # () gradients received so far
    fetches: Array  # () model vectors sent to learners so far, those at t_j included
    key: Array  # this run's key; iteration j uses fold_in(key, j)
    pending: Pending | None  # None for the cancelling schemes
    slow: Array  # (n,) bool: the workers a Markov straggle chain has slowed (``spec.Straggle``)


class Draws(NamedTuple):
    """The random numbers of one iteration (or, stacked, of a run)."""

    delays: Array  # (n, R) delays of the pushes in this iteration
    restart: Array  # (n,) delays of computations started at the update
    rows: Array  # (n, R, b) mini-batch rows of the pushes
    restart_rows: Array  # (n, b) mini-batch rows of computations started at the update


def _sample(config: SimConfig, spec: RunSpec, key: Array, shape: tuple[int, ...], slow, shared, fetch=True) -> Array:
    """Durations of computations by the whole cluster, row i worker i's."""
    return cluster.durations(config, spec, key, cluster.whole_cluster(shape[0], *shape[1:]), slow, shared, fetch)


def iteration_draws(config: SimConfig, key: Array, spec: RunSpec, num_rows: int, slow: Array | None = None) -> Draws:
    """Iteration j's draws from key = fold_in(run key, j), in the layout of ``Draws``.

    The cancelling schemes draw them as laid out (the first column of delays is fastest-k's
    draw). The others draw one computation at a time (``event_keys``); this gives the same
    numbers in the per-learner layout for the NumPy reference: delays[i, r] and rows[i, r] are
    those of the computation learner i starts after its (r+1)-th push, with R = n pushes for the
    batch schemes (whatever ``spec.max_k``), restart[i] those after its last (R-th) push (the
    first for ``k_async``). ``slow``: the straggle chain's state (None: not applied, as for
    the reference, which has no chain); the update's shared factor is in them."""
    n, b = spec.n, spec.batch_size
    shared = cluster.shared_factor(config, spec, key)
    if not cancels(spec):
        r = n if is_batch(spec) else 1

        def one(i, c):
            key_time, key_rows = event_keys(key, n, i, c)
            duration = cluster.durations(config, spec, key_time, i, slow, shared)
            return duration, jax.random.randint(key_rows, (b,), 0, num_rows, jnp.int32)

        grid = jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None))
        delays, rows = grid(jnp.arange(n, dtype=jnp.int32), jnp.arange(r, dtype=jnp.int32))
        return Draws(delays=delays, restart=delays[:, -1], rows=rows, restart_rows=rows[:, -1])
    r = pushes_per_learner(spec)
    first = _sample(config, spec, key, (n,), slow, shared)  # fastest-k's draw: column 0
    columns = [first[:, None]]
    if r > 1:  # further pushes on w_j, which the learner holds: no download
        columns.append(_sample(config, spec, jax.random.fold_in(key, 1), (n, r - 1), slow, shared, fetch=False))
    return Draws(
        delays=jnp.concatenate(columns, axis=1),
        restart=_sample(config, spec, jax.random.fold_in(key, 2), (n,), slow, shared),
        rows=jax.random.randint(jax.random.fold_in(key, 3), (n, r, b), 0, num_rows, jnp.int32),
        restart_rows=jax.random.randint(jax.random.fold_in(key, 4), (n, b), 0, num_rows, jnp.int32),
    )


def initial_draws(
    config: SimConfig, key: Array, spec: RunSpec, num_rows: int, slow: Array | None = None
) -> tuple[Array, Array]:
    """The first computations of the schemes that do not cancel: (delays (n,), rows (n, b)),
    started at t_0 = 0 (with update 0's shared factor)."""
    key = jax.random.fold_in(key, 0)
    n, b = spec.n, spec.batch_size
    return (
        _sample(config, spec, jax.random.fold_in(key, 5), (n,), slow, cluster.shared_factor(config, spec, key)),
        jax.random.randint(jax.random.fold_in(key, 6), (n, b), 0, num_rows, jnp.int32),
    )


def _num_rows(problem: Problem) -> int:
    return problem.num_rows


def straggle_step(config: SimConfig, slow: Array, key: Array) -> Array:
    """One step of every worker's two-state chain (key: the iteration's; draws of its own)."""
    u = jax.random.uniform(jax.random.fold_in(key, 7), slow.shape)
    chain = config.straggle
    return jnp.where(slow, u < chain.stay, u < chain.enter)


def init(problem: Problem, config: SimConfig, tx: optax.GradientTransformation, key: Array, spec: RunSpec) -> State:
    w = problem.init_params()
    slow = (
        jax.random.uniform(jax.random.fold_in(jax.random.fold_in(key, 0), 8), (spec.n,))
        < config.straggle.slow_fraction()
    )
    pending = None
    if not cancels(spec):
        finish, rows = initial_draws(config, key, spec, _num_rows(problem), slow)
        pending = Pending(
            finish=finish.astype(w.dtype),
            version=jnp.zeros(spec.n, jnp.int32),
            w=jnp.broadcast_to(w, (spec.n, w.size)),
            rows=rows,
        )
    return State(
        w=w,
        opt_state=tx.init(w),
        policy=policies.init(config.policy, problem.num_params, w.dtype),
        time=jnp.zeros((), w.dtype),
        iteration=jnp.int32(0),
        downloads=jnp.int32(0),
        fetches=jnp.int32(spec.n),
        key=key,
        pending=pending,
        slow=slow,
    )


def _order_key(x: Array) -> Array:
    """Unsigned integers in the order ``jnp.sort`` puts floats in: -0.0 as 0.0, NaN last."""
    x = jnp.where(x == 0, jnp.zeros_like(x), x)
    x = jnp.where(jnp.isnan(x), jnp.full_like(x, jnp.nan), x)
    bits = jax.lax.bitcast_convert_type(x, jnp.dtype(f"int{8 * x.dtype.itemsize}"))
    unsigned = jnp.dtype(f"uint{8 * x.dtype.itemsize}")
    flip = jnp.where(bits < 0, ~bits, bits ^ jnp.iinfo(bits.dtype).min)  # monotone: negatives below
    return jax.lax.bitcast_convert_type(flip, unsigned)


def select_earliest(arrivals: Array, k: Array) -> tuple[Array, Array, Array]:
    """The k earliest of ``arrivals`` (any shape; ties broken by flat index): their 0/1 mask,
    the k-th earliest time, and the mask of that k-th arrival alone.

    The same as ranking by a stable argsort (``rank < k``), found without sorting: the k-th
    smallest value by bisection over its bits (32 rounds of one comparison per arrival in
    float32, 64 in float64), then among the arrivals equal to it the ones of lowest flat index.
    XLA's sort on CPU costs several times more than this for the n of a study.
    """
    shape = arrivals.shape
    key = _order_key(arrivals.reshape(-1))
    bits = 8 * key.dtype.itemsize

    def halve(_, bounds):  # the smallest v with #(key <= v) >= k lies in [lo, hi]
        lo, hi = bounds
        mid = lo + (hi - lo) // 2
        enough = jnp.sum(key <= mid, dtype=jnp.int32) >= k
        return jnp.where(enough, lo, mid + 1), jnp.where(enough, mid, hi)

    top = jnp.iinfo(key.dtype).max
    kth, _ = jax.lax.fori_loop(0, bits, halve, (jnp.zeros((), key.dtype), jnp.asarray(top, key.dtype)))
    below, tied = key < kth, key == kth
    place = jnp.cumsum(tied, dtype=jnp.int32)  # 1, 2, ... among the ties, by flat index
    need = k - jnp.sum(below, dtype=jnp.int32)
    selected = (below | (tied & (place <= need))).reshape(shape)
    trigger = (tied & (place == need)).reshape(shape)
    return selected, jnp.max(jnp.where(selected, arrivals, -jnp.inf)), trigger


def _first(mask: Array, size: int) -> Array:
    """Indices of the (at most ``size``) true entries of ``mask``, padded with false ones: a fixed
    number of gradients to compute instead of one per learner."""
    return jnp.argsort(~mask, stable=True)[:size]


def _factors(spec: RunSpec, config: SimConfig, staleness: Array, distance2: Array) -> Array:
    """The step-size factor s_a of the learning-rate rule for gradients of the given staleness
    tau and squared distance ||w_j - w_tau||^2 (see the module docstring)."""
    if spec.lr == "fixed":
        return jnp.ones_like(distance2)
    if spec.lr == "staleness":
        eta = config.eta.astype(distance2.dtype)
        safe = jnp.where(distance2 > 0, distance2, 1.0)
        return jnp.where(distance2 > 0, jnp.minimum(config.lr_c / safe, eta) / eta, 1.0)
    if spec.lr == "delay_adaptive":
        n = jnp.asarray(spec.n, distance2.dtype)  # in the run's precision (int / int is float32)
        return n / jnp.maximum(n, staleness.astype(distance2.dtype))
    raise ValueError(f"unknown learning-rate rule {spec.lr!r}")


def step(
    state: State, config: SimConfig, problem: Problem, tx: optax.GradientTransformation, spec: RunSpec
) -> tuple[State, Out]:
    """One update: the cancelling schemes lay out an arrival matrix (``_sync_step``), the others
    take their k arrivals one event at a time (``_event_step``)."""
    return (_sync_step if cancels(spec) else _event_step)(state, config, problem, tx, spec)


def _sync_step(
    state: State, config: SimConfig, problem: Problem, tx: optax.GradientTransformation, spec: RunSpec
) -> tuple[State, Out]:
    """The cancelling schemes: every computation starts at t_j on w_j (module docstring)."""
    n, j, w = spec.n, state.iteration, state.w
    k = policies.current_k(config.policy, state.policy, state.time, j)
    kf = k.astype(w.dtype)
    key_j = jax.random.fold_in(state.key, j)
    draws = iteration_draws(config, key_j, spec, _num_rows(problem), state.slow)  # at the workers' current speeds
    delays = draws.delays.astype(w.dtype)

    # 1. the arrival matrix, times relative to t_j (ranks then follow the delays exactly, as in fastest-k)
    arrivals = jnp.cumsum(delays, axis=1)
    selected, kth, _ = select_earliest(arrivals, k)
    t_next = state.time + kth

    # 2. the gradient at w_j, in one reverse pass (which also gives F(w_j))
    weight = selected.astype(w.dtype) / kf  # (n, R)
    if spec.gradients == "minibatch":
        most = min(n, spec.max_k or n)  # at most this many gradients are applied: compute only those
        chosen = _first(weight.reshape(-1) > 0, most)
        rows = draws.rows.reshape(-1, spec.batch_size)[chosen]
        losses = None  # F(w_j) from excess_loss alone
        _, pullback = jax.vjp(lambda v: jax.vmap(lambda r: problem.rows_loss(v, r))(rows), w)
        (grad,) = pullback(weight.reshape(-1)[chosen])
    else:
        losses, pullback = jax.vjp(problem.shard_losses, w)
        (grad,) = pullback(weight.sum(axis=1))
    fresh = jnp.sum(selected, dtype=jnp.int32)
    histogram = jnp.where(jnp.arange(spec.staleness_bins) == 0, fresh, 0)  # nothing is stale
    return _finish(state, config, problem, tx, spec, k, grad, losses, histogram, t_next, n, state.pending)


def _finish(state, config, problem, tx, spec, k, grad, losses, histogram, t_next, fetched, pending):
    """The update w_(j+1) = w_j - eta tx(grad), what the curves record of w_j, and the next state."""
    j, w = state.iteration, state.w
    grad = clip(grad, config.clip)
    updates, opt_state = tx.update(grad, state.opt_state, w)
    w_next = optax.apply_updates(w, -config.eta.astype(grad.dtype) * updates)
    values = problems_.evaluate(problem, w, spec.metrics, losses)
    out = Out(
        time=state.time,
        iteration=j,
        k=k,
        error=values[0],
        downloads=state.downloads,
        fetches=state.fetches,
        staleness=histogram,
        w=w,
        extra=values[1:],
    )
    new = State(
        w=w_next,
        opt_state=opt_state,
        policy=policies.observe(config.policy, state.policy, grad, _training_loss(problem, w, spec, values, losses)),
        time=t_next.astype(state.time.dtype),
        iteration=j + 1,
        downloads=state.downloads + k,
        fetches=state.fetches + fetched,
        key=state.key,
        pending=pending,
        slow=straggle_step(config, state.slow, jax.random.fold_in(state.key, j)),
    )
    return new, out


def clip(grad: Array, limit: Array) -> Array:
    """The update's direction scaled down to norm ``limit`` where longer (gradient clipping; the
    gradient itself where not, bit for bit; limit = inf: off)."""
    norm = jnp.sqrt(jnp.sum(jnp.square(grad)))
    return jnp.where(norm > limit, grad * (limit / norm).astype(grad.dtype), grad)


def _training_loss(problem: Problem, w: Array, spec: RunSpec, values: Array, losses: Array | None) -> Array:
    """F(w_j), which the loss-ratio rule reads: from the recorded metrics where they hold it."""
    if "loss" in spec.metrics:
        return values[spec.metrics.index("loss")]
    if "error" in spec.metrics:
        return values[spec.metrics.index("error")] + problem.f_star
    return problems_.full_loss(problem, w) if losses is None else jnp.mean(losses)


def event_keys(key_j: Array, n: int, i: Array, c: Array) -> tuple[Array, Array]:
    """The keys (duration, mini-batch rows) of the computation learner i starts after its
    (c+1)-th push of the iteration with key ``key_j`` (the schemes that do not cancel): a
    function of (j, i, c) alone, so the NumPy reference can be given the same numbers in its
    per-learner layout (``engine.scheme_draws``)."""
    key = jax.random.fold_in(jax.random.fold_in(key_j, 10), i * n + c)
    return key, jax.random.fold_in(key, 1)


def _event_step(
    state: State, config: SimConfig, problem: Problem, tx: optax.GradientTransformation, spec: RunSpec
) -> tuple[State, Out]:
    """The schemes that do not cancel, one arrival (event) at a time: the earliest pending
    computation pushes, its gradient (at the model it read) joins the update with its factor
    s_a / k, and its learner either starts again at once on w_j (batch schemes; on w_(j+1) if
    its push is the k-th, which triggers the update) or waits for the update and then starts on
    w_(j+1) (``k_async``). Each event touches one learner's row: its finish time, version, rows
    and model read; nothing is computed for the learners that do not push. Ties go to the lower
    learner index (the order of ``argmin``)."""
    n, j, w, p = spec.n, state.iteration, state.w, state.pending
    batch = is_batch(spec)
    k = policies.current_k(config.policy, state.policy, state.time, j)
    kf = k.astype(w.dtype)
    key_j = jax.random.fold_in(state.key, j)
    num_rows, bins, b = _num_rows(problem), spec.staleness_bins, spec.batch_size
    most = min(n, spec.max_k or n)  # an update takes at most this many arrivals
    shared = cluster.shared_factor(config, spec, key_j)  # Z_j: every computation started in this step

    def gradient(model, i, rows):
        if spec.gradients == "shard":
            return jax.grad(problem.shard_loss)(model, i)
        return jax.grad(problem.rows_loss)(model, rows)

    def arrival(c, carry):
        pend, grad, histogram, t_last, last, pushers, counts = carry
        active = c < k
        i = jnp.argmin(pend.finish).astype(jnp.int32)
        key_time, key_rows = event_keys(key_j, n, i, counts[i])
        t, model, tau = pend.finish[i], pend.w[i], j - pend.version[i]
        g = gradient(model, i, pend.rows[i])
        factor = _factors(spec, config, tau, jnp.sum(jnp.square(w - model)))
        grad = grad + jnp.where(active, factor / kf, 0.0).astype(w.dtype) * g
        histogram = histogram + (active & (jnp.arange(bins) == jnp.minimum(tau, bins - 1)))
        if batch:  # it fetches w_j (w_(j+1) if this push is the k-th: set after the update) and goes on
            duration = cluster.durations(config, spec, key_time, i, state.slow, shared).astype(w.dtype)
            finish, version, read = t + duration, j, w
            rows = jax.random.randint(key_rows, (b,), 0, num_rows, jnp.int32)
        else:  # k_async: it waits for the update
            finish, version, read, rows = jnp.inf, pend.version[i], model, pend.rows[i]
        pend = Pending(
            finish=pend.finish.at[i].set(jnp.where(active, finish, t)),
            version=pend.version.at[i].set(jnp.where(active, version, pend.version[i])),
            w=pend.w.at[i].set(jnp.where(active, read, model)),
            rows=pend.rows.at[i].set(jnp.where(active, rows, pend.rows[i])),
        )
        return (
            pend,
            grad,
            histogram,
            jnp.where(active, t, t_last),
            jnp.where(active, i, last),
            pushers.at[c].set(jnp.where(active, i, n)),
            counts.at[i].add(active.astype(jnp.int32)),
        )

    carry = (p, jnp.zeros_like(w), jnp.zeros(bins, jnp.int32), state.time, jnp.int32(0), jnp.full(most, n, jnp.int32),
             jnp.zeros(n, jnp.int32))
    p, grad, histogram, t_next, last, pushers, counts = jax.lax.fori_loop(0, most, arrival, carry)
    if batch:  # the learner whose push triggered the update reads w_(j+1): set after the update
        p = p._replace(version=p.version.at[last].set(j + 1))
    stopped = _stale(config, p, j + 1) if stops(spec) else None

    def after(w_next):
        """The computations that start on w_(j+1) (the update is made on receipt of the k-th push)."""
        if stops(spec):  # ringmaster: the trigger, and the stopped learners, restart on w_(j+1)
            return _restart_stopped(config, problem, spec, state, p._replace(w=p.w.at[last].set(w_next)),
                                    stopped, key_j, counts, t_next, w_next, shared)
        if batch:
            return p._replace(w=p.w.at[last].set(w_next))

        def restart(c, pend):  # k_async: the k pushers start again at t_(j+1) on w_(j+1)
            i = pushers[c]
            active = i < n
            i = jnp.minimum(i, n - 1)
            key_time, key_rows = event_keys(key_j, n, i, 0)  # its one push of the iteration
            duration = cluster.durations(config, spec, key_time, i, state.slow, shared).astype(w.dtype)
            rows = jax.random.randint(key_rows, (b,), 0, num_rows, jnp.int32)
            return Pending(
                finish=pend.finish.at[i].set(jnp.where(active, t_next + duration, pend.finish[i])),
                version=pend.version.at[i].set(jnp.where(active, j + 1, pend.version[i])),
                w=pend.w.at[i].set(jnp.where(active, w_next, pend.w[i])),
                rows=pend.rows.at[i].set(jnp.where(active, rows, pend.rows[i])),
            )

        return jax.lax.fori_loop(0, most, restart, p)

    fetched = k if stopped is None else k + jnp.sum(stopped, dtype=jnp.int32)
    new, out = _finish(state, config, problem, tx, spec, k, grad, None, histogram, t_next, fetched, None)
    return new._replace(pending=after(new.w)), out


def _stale(config: SimConfig, pending: Pending, j: Array) -> Array:
    """(n,) the computations whose gradient would be at least R = ``staleness_limit`` updates
    stale when it arrived at the model w_j (Ringmaster ASGD discards those: it stops them now)."""
    return (j - pending.version) >= config.staleness_limit


def _restart_stopped(config, problem, spec, state, pending, stopped, key_j, counts, t_next, w_next, shared) -> Pending:
    """Ringmaster's stops: each stopped learner i starts again at t_(j+1) on w_(j+1), with the
    computation after its last push of iteration j (keys ``event_keys(key_j, n, i, counts[i])``,
    unused otherwise: a stopped learner pushed at most k - 1 <= n - 1 times in iteration j, as
    it did not trigger the update), and the step's shared factor ``shared``. Every learner is looked at, so an update writes all n rows
    of the models read (the price of stops; ``k_batch_async`` writes one)."""
    n, b, j = spec.n, spec.batch_size, state.iteration
    learners = jnp.arange(n, dtype=jnp.int32)
    keys = jax.vmap(lambda i, c: jnp.stack(event_keys(key_j, n, i, c)))(learners, counts)
    duration = jax.vmap(lambda key, i: cluster.durations(config, spec, key, i, state.slow, shared))(keys[:, 0], learners)
    rows = jax.vmap(lambda key: jax.random.randint(key, (b,), 0, _num_rows(problem), jnp.int32))(keys[:, 1])
    return Pending(
        finish=jnp.where(stopped, t_next + duration.astype(pending.finish.dtype), pending.finish),
        version=jnp.where(stopped, j + 1, pending.version),
        w=jnp.where(stopped[:, None], w_next, pending.w),
        rows=jnp.where(stopped[:, None], rows, pending.rows),
    )
