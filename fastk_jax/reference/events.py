"""A heap-based NumPy event simulation of K-batch-async SGD (K = 1: fully asynchronous SGD).

The second, independent reference of the engine's asynchronous schemes, written the way a
careful researcher writes an event simulation: a priority queue of the workers' pending
computations (``heapq``), float64 throughout, one Python step per event and NumPy inside it,
no JAX. It shares no code with ``fastk_jax.core.schemes`` (nor its layout: no arrival matrix,
no per-iteration key) and reads only the problem's arrays (``linear._numpy_problem``).

The model (``k_batch_async`` with ``gradients="shard"`` and the fixed rate in the engine):

* n workers; worker i holds one pending computation: (finish time, the model it read, that
  model's version). At t = 0 every worker reads w_0 (version 0) and starts.
* The heap pops the earliest finish (ties: the lower worker index, as the engine). The event's
  gradient is worker i's shard gradient at the model it read, g = X_i^T (X_i (w_read - w*) + r*_i) / s
  (or, with ``rows``, the mean gradient over the b rows the computation was given).
* After k pops the master updates w_(j+1) = w_j - eta (1/k) sum of the k gradients at the
  clock of the k-th pop, t_(j+1).
* Every popped worker restarts at once, at its pop's time, on the model current then: w_j
  for the first k - 1 pops of an update, w_(j+1) for the pop that triggered it (the master
  updates on receipt). Nobody is cancelled.
* Durations are drawn beforehand in one flat array (``draw_durations``) and consumed in event
  order: the first n are the computations started at t = 0, then one per pop, in pop order.
  So a run costs one heap push and pop, one shard gradient and one error per update (k of
  the first two), which is what makes this a fair speed baseline.

With exponential durations of mean mu the pops form a Poisson process of rate n / mu from the
start (memorylessness), so an update takes k mu / n on average (Lemma 5 of the async paper,
exact at every update for exponentials).

Recorded per update, as the engine's trajectories are: the clock t_j at which w_j was made
(t_0 = 0) and the error F(w_j) - F* = (1/2) e^T H e, e = w_j - w*, H = X^T X / m (the way the
engine evaluates it for least squares; exact as X^T r* = 0), for j = 0 .. J, and the mean
staleness j - version of the k gradients applied at update j.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .linear import _Linear, _numpy_problem, draw_delays

if TYPE_CHECKING:
    from ..core.problems import Problem


class AsyncTrajectory(NamedTuple):
    """One run of J updates."""

    time: np.ndarray  # (J+1,) t_j, when w_j was made (t_0 = 0)
    error: np.ndarray  # (J+1,) F(w_j) - F*
    staleness: np.ndarray  # (J,) mean staleness (updates since the model read) of update j's gradients
    w: np.ndarray  # (p,) the last model w_J


class _Prepared:
    """Least squares in float64, with H = X^T X / m for the error (converted once per problem)."""

    def __init__(self, problem: Any):
        prob = _numpy_problem(problem)
        if not isinstance(prob, _Linear):
            raise TypeError("the event reference models least squares only (a LinearRegression)")
        n, s, d = prob.x.shape
        self.x = prob.x  # (n, s, d)
        self.r_star = prob.r_star  # (n, s)
        self.w_star = prob.w_star
        self.rows = prob.rows  # (n s, d)
        self.flat_r_star = prob.r_star.reshape(-1)
        self.hessian = prob.rows.T @ prob.rows / (n * s)
        self.n, self.s, self.d = n, s, d

    def error(self, w: np.ndarray) -> float:
        e = w - self.w_star
        return 0.5 * float(e @ (self.hessian @ e))


def prepare(problem: Problem | _Prepared) -> _Prepared:
    """The problem's arrays in float64 and its Hessian, for many runs (``simulate_async_run``
    takes the result as well as the problem)."""
    return problem if isinstance(problem, _Prepared) else _Prepared(problem)


def draw_durations(
    rng: np.random.Generator,
    n: int,
    k: int,
    updates: int,
    law_name: str = "exponential",
    params: dict[str, Any] | None = None,
) -> np.ndarray:
    """The n + k * updates computation durations of one run, iid from a law of
    ``linear.draw_delays`` (default exponential of rate 1), in consumption order."""
    params = {"rate": 1.0} if params is None and law_name == "exponential" else params
    return draw_delays(rng, law_name, params or {}, 1, n + k * updates)[:, 0]


def simulate_async_run(
    problem: Problem | _Prepared,
    k: int,
    eta: float,
    durations: np.ndarray,
    rows: np.ndarray | None = None,
    updates: int | None = None,
) -> AsyncTrajectory:
    """One run of K-batch-async SGD (module docstring), w_0 = 0.

    Args:
        problem: a ``problems.LinearRegression`` (or ``prepare``'s result).
        k: gradients per update (1: fully asynchronous SGD); any k >= 1.
        eta: the fixed step size.
        durations: (>= n + k * updates,) the computations' durations in consumption order:
            the n started at t = 0, then one per pop.
        rows: None for shard gradients; else (>= n + k * updates, b) int flat row indices, the
            mini-batch of each computation in the same order as ``durations``.
        updates: J, default as many as ``durations`` allows, (len - n) // k.
    """
    prob = prepare(problem)
    n, s = prob.n, prob.s
    k, eta = int(k), float(eta)
    durations = np.asarray(durations, np.float64).reshape(-1)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    num_updates = (durations.size - n) // k if updates is None else int(updates)
    need = n + k * num_updates
    if num_updates < 0 or durations.size < need:
        raise ValueError(f"{num_updates} updates of k={k} with n={n} need {need} durations, got {durations.size}")
    if rows is not None:
        rows = np.asarray(rows, np.int64)
        if rows.ndim != 2 or rows.shape[0] < need:
            raise ValueError(f"rows must have shape (>= {need}, b), got {rows.shape}")
    step = durations[:need].tolist()  # Python floats: the heap compares them cheaply

    times = np.empty(num_updates + 1)
    errors = np.empty(num_updates + 1)
    staleness = np.empty(num_updates)
    w = np.zeros(prob.d)
    times[0], errors[0] = 0.0, prob.error(w)

    # the pending computations: the heap of (finish, worker), and per worker the model it read,
    # that model's version and (mini-batch gradients) its rows
    heap = [(step[i], i) for i in range(n)]
    heapq.heapify(heap)
    read = [w] * n  # references: a model is never changed in place
    version = [0] * n
    batch = [rows[i] for i in range(n)] if rows is not None else None
    started = n  # computations started so far: the index of the next duration
    scale = eta / (k * (s if rows is None else rows.shape[1]))

    for j in range(num_updates):
        total = np.zeros(prob.d)
        stale = 0
        for c in range(k):
            t, i = heapq.heappop(heap)
            e = read[i] - prob.w_star
            if batch is None:
                x = prob.x[i]
                total += x.T @ (x @ e + prob.r_star[i])
            else:
                x = prob.rows[batch[i]]
                total += x.T @ (x @ e + prob.flat_r_star[batch[i]])
            stale += j - version[i]
            if c == k - 1:  # this push triggers the update: its worker reads w_(j+1)
                w = w - scale * total
                read[i], version[i] = w, j + 1
            else:
                read[i], version[i] = w, j
            heapq.heappush(heap, (t + step[started], i))
            if batch is not None:
                batch[i] = rows[started]
            started += 1
        times[j + 1], errors[j + 1], staleness[j] = t, prob.error(w), stale / k
    return AsyncTrajectory(time=times, error=errors, staleness=staleness, w=w)


def simulate_async_runs(
    problem: Problem | _Prepared,
    k: int,
    eta: float,
    durations: np.ndarray,
    rows: np.ndarray | None = None,
    updates: int | None = None,
) -> list[AsyncTrajectory]:
    """``simulate_async_run`` for each seed: ``durations`` (S, N) and ``rows`` (S, N, b)."""
    prob = prepare(problem)  # once, not per seed
    durations = np.asarray(durations, np.float64)
    if durations.ndim != 2:
        raise ValueError(f"durations must have shape (seeds, count), got {durations.shape}")
    return [
        simulate_async_run(prob, k, eta, d, None if rows is None else rows[s], updates) for s, d in enumerate(durations)
    ]
