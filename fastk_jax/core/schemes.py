"""The SGD variants of both papers as one pure step of a ``lax.scan``, one update per step.

n learners (workers) compute gradients with random delays; the master updates w after k
gradients, k from the k policy. Four schemes (Sec. 2.3 of the async paper) differ in two
static choices:

=================  =========================================  ==========================
scheme             a learner that pushed within an iteration  at the update
=================  =========================================  ==========================
``k_sync``         waits (one push per learner)               the rest are cancelled
``k_batch_sync``   starts another mini-batch on w_j           the rest are cancelled
``k_async``        waits (one push per learner)               only the k pushers restart
``k_batch_async``  fetches the current model, starts again    nobody is cancelled
=================  =========================================  ==========================

``k_sync`` is fastest-k SGD, eq. (5) of the adaptive paper (K = n: fully synchronous SGD);
``k_batch_async`` with k = 1 is fully asynchronous SGD.

**One step is one update, with fixed shapes.** Each learner can push at most R times in one
iteration (R = the largest k of the policies, at most n, for the batch schemes; else 1). The step lays out an arrival matrix A (n, R):
A[i, r] is the time of learner i's (r+1)-th push in this iteration. With cancelling schemes
every computation starts at t_j on w_j, so A[i, :] is t_j plus the cumulative sum of fresh
delays. Without cancelling, A[i, 0] is the learner's pending computation (started earlier, on
the model it read then: ``Pending``), and later pushes of a batch scheme are chained on. The
master takes the k earliest arrivals (ties: lower flat index i R + r first) and t_(j+1) is
the k-th. Shapes never depend on k: everything is masked.

**Gradients.** Arrival (i, r) is the gradient of learner i's shard (``gradients = "shard"``,
the adaptive paper; a learner's repeated pushes give its shard again) or of a mini-batch of
b rows drawn uniformly with replacement from all rows (``"minibatch"``, the async paper),
at the model it was computed at. Those at w_j come from one reverse pass over the weighted
shard (or row) losses, which also gives F(w_j); stale ones from a pass per learner at the
model it holds. The update is w_(j+1) = w_j - eta * tx((1/k) sum_a s_a g_a), with the step-size
factor s_a of the learning-rate rule:

* ``fixed``: s_a = 1;
* ``staleness``: eq. (13) of the async paper, eta_a = min(C / ||w_j - w_tau(a)||^2, eta_max)
  per applied gradient, with eta_max = eta and C = ``lr_c``; s_a = eta_a / eta (1 if fresh);
* ``delay_adaptive``: eta_a = eta n / max(n, tau_a), tau_a the staleness in iterations
  (the delay-adaptive rate of later asynchronous-SGD work).

**After the update** (no cancelling): with ``k_async`` the k pushers restart at t_(j+1) on
w_(j+1). With ``k_batch_async`` a learner that pushed c times goes on with its chain arrival c
(its next pending computation), on the model current right after its last push: w_(j+1) for
the learner whose push triggered the update (the master updates on receipt), w_j otherwise.

**Communication**: ``downloads`` counts gradients received (k per update), ``fetches`` model
vectors sent to learners, including those sent at t_j: n at t = 0, then n per update for the
cancelling schemes (the broadcast of w_(j+1)), k for ``k_async`` and ``k_batch_async`` (one
fetch per pusher).

**Randomness**: iteration j of a run uses the key fold_in(run key, j): its first sub-draw is
the column of n fresh delays (exactly fastest-k's draw), then further delay columns, restart
delays and mini-batch rows from fold_in(that key, 1..4); the first computations of the async
schemes from fold_in(fold_in(run key, 0), 5 and 6). ``draws`` returns them all, so the NumPy
reference (``reference_schemes``) runs on the very same numbers.
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

SCHEMES = {  # name -> (batch: learners push again within an iteration, cancel: the rest at the update)
    "k_sync": (False, True),
    "k_batch_sync": (True, True),
    "k_async": (False, False),
    "k_batch_async": (True, False),
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
    return SCHEMES[spec.scheme][0]


def cancels(spec: RunSpec) -> bool:
    return SCHEMES[spec.scheme][1]


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


def _sample(config: SimConfig, key: Array, shape: tuple[int, ...]) -> Array:
    """Durations of computations by the whole cluster, row i worker i's (before the straggle chain)."""
    return cluster.durations(config, key, cluster.whole_cluster(shape[0], *shape[1:]), None)


def iteration_draws(config: SimConfig, key: Array, spec: RunSpec, num_rows: int) -> Draws:
    """Iteration j's draws from key = fold_in(run key, j)."""
    n, r, b = spec.n, pushes_per_learner(spec), spec.batch_size
    first = _sample(config, key, (n,))  # fastest-k's draw: column 0
    columns = [first[:, None]]
    if r > 1:
        columns.append(_sample(config, jax.random.fold_in(key, 1), (n, r - 1)))
    return Draws(
        delays=jnp.concatenate(columns, axis=1),
        restart=_sample(config, jax.random.fold_in(key, 2), (n,)),
        rows=jax.random.randint(jax.random.fold_in(key, 3), (n, r, b), 0, num_rows, jnp.int32),
        restart_rows=jax.random.randint(jax.random.fold_in(key, 4), (n, b), 0, num_rows, jnp.int32),
    )


def initial_draws(config: SimConfig, key: Array, spec: RunSpec, num_rows: int) -> tuple[Array, Array]:
    """The first computations of the schemes that do not cancel: (delays (n,), rows (n, b))."""
    key = jax.random.fold_in(key, 0)
    n, b = spec.n, spec.batch_size
    return (
        _sample(config, jax.random.fold_in(key, 5), (n,)),
        jax.random.randint(jax.random.fold_in(key, 6), (n, b), 0, num_rows, jnp.int32),
    )


def _num_rows(problem: Problem) -> int:
    return problem.num_rows


def _slowed(config: SimConfig, slow: Array, delays: Array) -> Array:
    """Delays (n, ...) of workers, the slow ones multiplied by the straggle chain's factor."""
    factor = cluster.straggle_factor(config, slow).astype(delays.dtype)
    return delays * factor.reshape((-1,) + (1,) * (delays.ndim - 1))


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
        finish, rows = initial_draws(config, key, spec, _num_rows(problem))
        pending = Pending(
            finish=_slowed(config, slow, finish).astype(w.dtype),
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
        return (spec.n / jnp.maximum(spec.n, staleness)).astype(distance2.dtype)
    raise ValueError(f"unknown learning-rate rule {spec.lr!r}")


def step(
    state: State, config: SimConfig, problem: Problem, tx: optax.GradientTransformation, spec: RunSpec
) -> tuple[State, Out]:
    n, j, w = spec.n, state.iteration, state.w
    batch, cancel = is_batch(spec), cancels(spec)
    k = policies.current_k(config.policy, state.policy, state.time, j)
    kf = k.astype(w.dtype)
    key_j = jax.random.fold_in(state.key, j)
    draws = iteration_draws(config, key_j, spec, _num_rows(problem))
    draws = draws._replace(  # computations started now run at the workers' current speeds
        delays=_slowed(config, state.slow, draws.delays), restart=_slowed(config, state.slow, draws.restart)
    )
    delays = draws.delays.astype(w.dtype)

    # 1. the arrival matrix: times relative to t_j when cancelling (ranks then follow the delays
    #    exactly, as in fastest-k), absolute otherwise; and which arrivals are at w_j
    if cancel:
        arrivals = jnp.cumsum(delays, axis=1)
        current = jnp.ones(arrivals.shape, bool)
    else:
        first = state.pending.finish[:, None]
        arrivals = jnp.concatenate([first, first + jnp.cumsum(delays[:, :-1], axis=1)], axis=1) if batch else first
        current = jnp.arange(arrivals.shape[1]) > 0  # only chained pushes of a batch scheme
        current = jnp.broadcast_to(current, arrivals.shape)
    selected, kth, trigger = select_earliest(arrivals, k)
    t_next = state.time + kth if cancel else kth

    # 2. the gradient: pushes at w_j in one reverse pass (which also gives F(w_j)), stale ones per learner
    weight_now = (selected & current).astype(w.dtype) / kf  # (n, R); factor 1: fresh
    most = min(n, spec.max_k or n)  # at most this many gradients are applied: compute only those
    if spec.gradients == "minibatch":
        rows_now = draws.rows if cancel else jnp.roll(draws.rows, 1, axis=1)  # chain push r uses rows r - 1
        chosen = _first(weight_now.reshape(-1) > 0, most)
        rows_now = rows_now.reshape(-1, spec.batch_size)[chosen]
        losses = None  # F(w_j) from excess_loss alone
        _, pullback = jax.vjp(lambda v: jax.vmap(lambda rows: problem.rows_loss(v, rows))(rows_now), w)
        (grad,) = pullback(weight_now.reshape(-1)[chosen])
    elif cancel or batch:
        losses, pullback = jax.vjp(problem.shard_losses, w)
        (grad,) = pullback(weight_now.sum(axis=1))
    else:  # k_async: no push is at w_j
        losses, grad = None, jnp.zeros_like(w)
    stale = jnp.zeros(n, jnp.int32)  # staleness of column 0 (the other columns are at w_j)
    if not cancel:
        p = state.pending
        stale = j - p.version
        distance2 = jnp.sum(jnp.square(w[None, :] - p.w), axis=1)
        stale_weight = selected[:, 0].astype(w.dtype) * _factors(spec, config, stale, distance2) / kf
        chosen = _first(selected[:, 0], most)
        if spec.gradients == "shard":
            stale_grads = jax.vmap(jax.grad(problem.shard_loss))(p.w[chosen], chosen)
        else:
            stale_grads = jax.vmap(jax.grad(problem.rows_loss))(p.w[chosen], p.rows[chosen])
        grad = grad + stale_weight[chosen] @ stale_grads

    updates, opt_state = tx.update(grad, state.opt_state, w)
    w_next = optax.apply_updates(w, -config.eta.astype(grad.dtype) * updates)

    histogram = _histogram(stale, selected, spec.staleness_bins, cancel)

    # 3. pending computations after the update
    pending = state.pending
    if not cancel:
        pending = _after_update(pending, selected, trigger, arrivals, draws, t_next, j, w, w_next, spec)

    values = problems_.evaluate(problem, w, spec.metrics, losses)
    error = values[0]
    out = Out(
        time=state.time,
        iteration=j,
        k=k,
        error=error,
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
        fetches=state.fetches + (n if cancel else k),
        key=state.key,
        pending=pending,
        slow=straggle_step(config, state.slow, key_j),
    )
    return new, out


def _training_loss(problem: Problem, w: Array, spec: RunSpec, values: Array, losses: Array | None) -> Array:
    """F(w_j), which the loss-ratio rule reads: from the recorded metrics where they hold it."""
    if "loss" in spec.metrics:
        return values[spec.metrics.index("loss")]
    if "error" in spec.metrics:
        return values[spec.metrics.index("error")] + problem.f_star
    return problems_.full_loss(problem, w) if losses is None else jnp.mean(losses)


def _histogram(stale: Array, selected: Array, bins: int, cancel: bool) -> Array:
    """The staleness histogram of the applied gradients: only column 0 of the arrival matrix can
    be stale (chained pushes are at w_j), and nothing is when cancelling. One-hot sums rather
    than a scatter-add, which XLA runs as a loop on CPU."""
    fresh = jnp.sum(selected[:, 0 if cancel else 1 :], dtype=jnp.int32)
    first_bin = jnp.arange(bins) == 0
    if cancel:
        return jnp.where(first_bin, fresh, 0)
    onehot = (jnp.clip(stale, 0, bins - 1)[:, None] == jnp.arange(bins)) & selected[:, :1]
    return jnp.sum(onehot, axis=0, dtype=jnp.int32) + jnp.where(first_bin, fresh, 0)


def _after_update(
    p: Pending,
    selected: Array,
    trigger: Array,
    arrivals: Array,
    draws: Draws,
    t_next: Array,
    j: Array,
    w: Array,
    w_next: Array,
    spec: RunSpec,
) -> Pending:
    """The learners' next computations (schemes that do not cancel; see the module docstring)."""
    restart_delay = draws.restart.astype(arrivals.dtype)
    if not is_batch(spec):  # k_async: the k pushers restart at t_(j+1) on w_(j+1)
        again = selected[:, 0]
        return Pending(
            finish=jnp.where(again, t_next + restart_delay, p.finish),
            version=jnp.where(again, j + 1, p.version),
            w=jnp.where(again[:, None], w_next, p.w),
            rows=jnp.where(again[:, None], draws.restart_rows, p.rows),
        )
    # k_batch_async: learner i pushed c_i times (a prefix of its chain) and goes on with arrival c_i
    r = arrivals.shape[1]
    pushed = selected.sum(axis=1)
    again = pushed > 0
    last = trigger.any(axis=1)  # its last push triggered the update: it read w_(j+1)
    index = jnp.minimum(pushed, r - 1)
    within = pushed < r
    chained = jnp.take_along_axis(arrivals, index[:, None], axis=1)[:, 0]
    finish = jnp.where(within, chained, arrivals[:, -1] + restart_delay)
    chain_rows = jnp.take_along_axis(draws.rows, jnp.maximum(pushed - 1, 0)[:, None, None], axis=1)[:, 0]
    rows = jnp.where(within[:, None], chain_rows, draws.restart_rows)
    read = jnp.where(last[:, None], w_next, w)
    return Pending(
        finish=jnp.where(again, finish, p.finish),
        version=jnp.where(again, jnp.where(last, j + 1, j), p.version),
        w=jnp.where(again[:, None], read, p.w),
        rows=jnp.where(again[:, None], rows, p.rows),
    )
