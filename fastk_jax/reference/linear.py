"""A plain NumPy reference simulator of fastest-k SGD: the test oracle and the speed baseline.

It runs the same algorithm as ``fastk_jax.schemes.step`` (scheme k_sync) driven by ``fastk_jax.engine``, written
the way a careful researcher writes it: float64 throughout, a Python loop over seeds and over
iterations, NumPy on whole arrays inside an iteration (no loop over workers), and no needless
work. It shares no code with the engine: losses and gradients are written out by hand in closed
form (the engine differentiates ``shard_losses`` with ``jax.vjp``), the k policies are plain
Python, and nothing here imports JAX. Only the problem's arrays are read (``np.asarray``).

Iteration j of one run, given the n workers' delays ``delays[j]`` (the engine's are available
from ``engine.delay_samples``, or draw them with ``draw_delays``):

1. k_j from the policy: the schedule read at the clock t_j (or j), or Algorithm 1's current k;
2. the k fastest workers R_j: the first k of ``np.argsort(delays[j], kind="stable")`` (ties go
   to the lower worker index, as in the engine);
3. the residuals (linear) or logits (logistic) of all m rows at w_j, which give the error
   F(w_j) - F*, and the gradient g_j = (1/k) sum_{i in R_j} grad F_i(w_j) from the rows of the
   selected shards only (least squares with ``numpy_problem(..., quadratic_error=True)``: the
   error as (1/2) e^T H e, H = X^T X / m, e = w - w*, d^2 work instead of m d, the way the
   engine evaluates it, and the residuals of the selected shards only; the speed baseline
   of ``fastk-jax bench`` runs so):

   - least squares, r = X (w - w*) + r*:  g = X_R^T r_R / (k s);
   - logistic, z = X W + b, p = sigmoid(z):  g_W = X_R^T (p_R - Y_R) / (k s C) + lam W / C,
     g_b = sum_rows (p_R - Y_R) / (k s C);

4. w_(j+1) = w_j - eta g_j (plain SGD), or heavy-ball momentum as ``optax.trace``:
   v <- g + beta v, w <- w - eta v (Nesterov: w <- w - eta (g + beta v));
5. Algorithm 1's bookkeeping with g_j (see ``fastk_jax.policies``), t_(j+1) = t_j + X_(k:n),
   downloads += k.

The record of iteration j describes the model w_j, which the master broadcasts at t_j, exactly
like ``schemes.Out``.

The reference always computes in float64. Against the engine in float32 its clock differs by
rounding, so a time schedule may switch one iteration apart when some t_j lies within float32
rounding of a breakpoint (the engine also rounds the breakpoints to float32).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..core.policies import RULES

if TYPE_CHECKING:
    from ..core.policies import KPolicy
    from ..core.problems import Problem


class Trajectory(NamedTuple):
    """One run, one entry per iteration j = 0 .. J-1, describing the model w_j."""

    time: np.ndarray  # (J,) t_j, when iteration j starts (w_j is broadcast)
    k: np.ndarray  # (J,) int, k used at iteration j
    error: np.ndarray  # (J,) F(w_j) - F*
    downloads: np.ndarray  # (J,) int, gradients received before t_j: sum of k over iterations < j
    w: np.ndarray  # (J, p) the model w_j


# --------------------------------------------------------------------------- problems


class _Linear:
    """Least squares on n shards of s rows: F(w) = (1/2m) sum (x_l^T (w - w*) + r*_l)^2."""

    def __init__(self, problem: Any, quadratic_error: bool = False):
        self.x = np.asarray(problem.x, np.float64)  # (n, s, d)
        self.w_star = np.asarray(problem.w_star, np.float64)
        self.r_star = np.asarray(problem.r_star, np.float64)  # (n, s)
        self.f_star = float(np.asarray(problem.f_star, np.float64))
        n, s, d = self.x.shape
        self.rows = self.x.reshape(n * s, d)
        self.num_params = d
        # F(w) - F* = (1/2) e^T H e exactly, as X^T r* = 0 (see problems.LinearRegression)
        self.hessian = self.rows.T @ self.rows / (n * s) if quadratic_error else None

    def error_and_grad(self, w: np.ndarray, selected: np.ndarray) -> tuple[float, np.ndarray]:
        n, s, d = self.x.shape
        k = selected.shape[0]
        if self.hessian is not None:
            e = w - self.w_star
            x_sel = self.x[selected].reshape(k * s, d)
            r_sel = x_sel @ e + self.r_star[selected].reshape(k * s)
            return 0.5 * float(e @ (self.hessian @ e)), x_sel.T @ r_sel / (k * s)
        r = (self.rows @ (w - self.w_star)).reshape(n, s) + self.r_star  # all rows, for the error
        error = 0.5 * np.mean(np.square(r)) - self.f_star
        x_sel = self.x[selected].reshape(k * s, d)
        grad = x_sel.T @ r[selected].reshape(k * s) / (k * s)
        return error, grad


class _Logistic:
    """One-vs-all L2-regularized logistic regression, parameters [W.ravel() (d x C), b (C)]."""

    def __init__(self, problem: Any):
        self.x = np.asarray(problem.x, np.float64)  # (n, s, d)
        self.y = np.asarray(problem.y, np.float64)  # (n, s, C) one-hot (or 0/1 for C = 1)
        self.reg = float(np.asarray(problem.reg, np.float64))
        self.f_star = float(np.asarray(problem.f_star, np.float64))
        n, s, d = self.x.shape
        self.rows = self.x.reshape(n * s, d)
        self.num_classes = self.y.shape[-1]
        self.num_params = (d + 1) * self.num_classes

    def error_and_grad(self, w: np.ndarray, selected: np.ndarray) -> tuple[float, np.ndarray]:
        n, s, d = self.x.shape
        c = self.num_classes
        k = selected.shape[0]
        weights, bias = w[: d * c].reshape(d, c), w[d * c :]
        z = (self.rows @ weights + bias).reshape(n, s, c)  # all rows, for the error
        softplus = np.logaddexp(0.0, z)  # log(1 + e^z), stable
        error = np.mean(softplus - self.y * z) + 0.5 * self.reg * np.sum(np.square(weights)) / c - self.f_star
        # sigmoid(z) = e^(z - softplus(z)), stable at both ends, from the selected rows only
        residual = (np.exp(z[selected] - softplus[selected]) - self.y[selected]).reshape(k * s, c)
        scale = 1.0 / (k * s * c)
        grad_w = self.x[selected].reshape(k * s, d).T @ residual * scale + (self.reg / c) * weights
        grad_b = residual.sum(axis=0) * scale
        return float(error), np.concatenate([grad_w.ravel(), grad_b])


def numpy_problem(problem: Any, quadratic_error: bool = False) -> _Linear | _Logistic:
    """The problem's arrays in float64 (done once; ``simulate_run`` takes the result too).

    ``quadratic_error`` (least squares only): the error from H = X^T X / m, as the engine
    computes it, instead of from the residuals of all rows (the oracle's default, the same
    formula as ``reference_schemes``)."""
    if isinstance(problem, (_Linear, _Logistic)):
        return problem
    if hasattr(problem, "w_star") and hasattr(problem, "r_star"):
        return _Linear(problem, quadratic_error)
    return _numpy_problem(problem)


def _numpy_problem(problem: Any) -> _Linear | _Logistic:
    """The problem's arrays in float64, recognized by its fields (no JAX types involved)."""
    if isinstance(problem, (_Linear, _Logistic)):
        return problem
    if hasattr(problem, "w_star") and hasattr(problem, "r_star"):
        return _Linear(problem)
    if hasattr(problem, "reg") and hasattr(problem, "y"):
        return _Logistic(problem)
    raise TypeError(f"unknown problem type {type(problem).__name__}: expected a linear or logistic regression")


# --------------------------------------------------------------------------- k policy


class _Policy:
    """One k policy (``policies.KPolicy``) as plain Python: the schedule and Algorithm 1."""

    def __init__(self, policy: KPolicy, n: int):
        if np.ndim(policy.k0) != 0:
            raise ValueError("simulate_run takes one policy, not a stack of policies (slice it first)")
        self.k0 = int(policy.k0)
        self.by_time = bool(policy.by_time)
        self.at = np.asarray(policy.at, np.float64).reshape(-1)
        self.ks = np.asarray(policy.ks, np.int64).reshape(-1)
        if self.at.shape != self.ks.shape:
            raise ValueError("a schedule needs as many k values as breakpoints")
        self.adaptive = bool(policy.adaptive)
        if self.adaptive and int(policy.rule) != RULES["algorithm1"]:
            rule = {v: k for k, v in RULES.items()}.get(int(policy.rule), int(policy.rule))
            raise ValueError(
                f"the NumPy reference models fixed k, schedules (doubling too) and Algorithm 1, not the {rule} rule"
            )
        self.thresh = int(policy.thresh)
        self.burnin = int(policy.burnin)
        self.step = int(policy.step)
        self.factor = int(policy.factor)
        self.k_max = int(policy.k_max)
        reachable = [self.k0, *self.ks[np.isfinite(self.at)].tolist()]
        if self.adaptive:
            reachable.append(self.k_max)
        if min(reachable) < 1 or max(reachable) > n:
            raise ValueError(f"the policy's k must satisfy 1 <= k <= n={n}, got {sorted(set(reachable))}")
        # Algorithm 1's state
        self.k = self.k0
        self.count_negative = 0
        self.count_iter = 1
        self.prev_grad: np.ndarray | None = None

    def current_k(self, time: float, iteration: int) -> int:
        """k for the iteration that starts at ``time`` after ``iteration`` updates."""
        if self.adaptive:
            return self.k
        clock = time if self.by_time else float(iteration)
        reached = np.flatnonzero(clock >= self.at)  # at is ascending: the last reached one wins
        return int(self.ks[reached[-1]]) if reached.size else self.k0

    def observe(self, grad: np.ndarray) -> None:
        """Algorithm 1 after the master received ``grad`` (the rules of ``policies.observe``)."""
        if self.prev_grad is not None:
            self.count_negative += 1 if float(grad @ self.prev_grad) < 0 else -1
        k_next = self.factor * self.k + self.step
        if self.count_negative > self.thresh and self.count_iter > self.burnin and k_next <= self.k_max:
            self.k = k_next
            self.count_negative = 0
            self.count_iter = 0
        self.count_iter += 1
        self.prev_grad = grad


# --------------------------------------------------------------------------- runs


def simulate_run(
    problem: Problem,
    policy: KPolicy,
    eta: float,
    delays: np.ndarray,
    momentum: float | None = None,
    nesterov: bool = False,
) -> Trajectory:
    """One run of fastest-k SGD for J = ``delays.shape[0]`` iterations, given the delays.

    Args:
        problem: a ``problems.LinearRegression`` or ``problems.LogisticRegression`` (only its
            arrays are read, in float64).
        policy: ONE ``policies.KPolicy`` (numpy or JAX scalars; ``at`` empty or +inf padded).
        eta: the step size.
        delays: (J, n) response times of the n workers at each iteration.
        momentum: None for plain SGD; beta for heavy-ball momentum as ``optax.trace``.
        nesterov: with ``momentum``, the Nesterov variant of ``optax.trace``.

    Returns:
        The ``Trajectory`` of the models w_0 .. w_(J-1), as ``schemes.Out`` records them.
    """
    return _run(_numpy_problem(problem), policy, eta, delays, momentum, nesterov)


def simulate_runs(
    problem: Problem,
    policy: KPolicy,
    eta: float,
    delays: np.ndarray,
    momentum: float | None = None,
    nesterov: bool = False,
) -> list[Trajectory]:
    """``simulate_run`` for each seed: ``delays`` has shape (S, J, n); returns S trajectories."""
    prob = _numpy_problem(problem)  # convert the arrays once, not per seed
    delays = np.asarray(delays, np.float64)
    if delays.ndim != 3:
        raise ValueError(f"delays must have shape (seeds, iterations, n), got {delays.shape}")
    return [_run(prob, policy, eta, d, momentum, nesterov) for d in delays]


def _run(
    prob: _Linear | _Logistic,
    policy: KPolicy,
    eta: float,
    delays: np.ndarray,
    momentum: float | None,
    nesterov: bool,
) -> Trajectory:
    n = prob.x.shape[0]
    pol = _Policy(policy, n)
    delays = np.asarray(delays, np.float64)
    if delays.ndim != 2 or delays.shape[1] != n:
        raise ValueError(f"delays must have shape (iterations, n={n}), got {delays.shape}")
    num_iterations = delays.shape[0]
    eta = float(eta)

    times = np.empty(num_iterations)
    ks = np.empty(num_iterations, np.int64)
    errors = np.empty(num_iterations)
    downloads = np.empty(num_iterations, np.int64)
    ws = np.empty((num_iterations, prob.num_params))

    w = np.zeros(prob.num_params)
    velocity = np.zeros(prob.num_params)
    t, received = 0.0, 0
    for j in range(num_iterations):
        k = pol.current_k(t, j)
        order = np.argsort(delays[j], kind="stable")  # ties: the lower worker index first
        selected = order[:k]
        error, grad = prob.error_and_grad(w, selected)

        times[j], ks[j], errors[j], downloads[j], ws[j] = t, k, error, received, w

        w, velocity = sgd_step(w, velocity, grad, eta, momentum, nesterov)
        if pol.adaptive:
            pol.observe(grad)
        t += delays[j, order[k - 1]]  # X_(k:n)
        received += k
    return Trajectory(time=times, k=ks, error=errors, downloads=downloads, w=ws)


def sgd_step(
    w: np.ndarray, velocity: np.ndarray, grad: np.ndarray, eta: float, momentum: float | None, nesterov: bool
) -> tuple[np.ndarray, np.ndarray]:
    """w <- w - eta g (plain SGD), or heavy-ball momentum as ``optax.trace``: v <- g + beta v,
    w <- w - eta v (Nesterov: w <- w - eta (g + beta v)). Returns (w, v)."""
    if momentum is None:
        return w - eta * grad, velocity
    velocity = grad + momentum * velocity
    return w - eta * (grad + momentum * velocity if nesterov else velocity), velocity


def switch_iterations(traj: Trajectory) -> np.ndarray:
    """The iterations j at which k changed (k_j != k_(j-1))."""
    return np.flatnonzero(np.diff(traj.k)) + 1


def grid_values(traj: Trajectory, time_grid: np.ndarray) -> np.ndarray:
    """The error at each grid time t: that of the last model w_j with t_j <= t.

    As in ``fastk_jax.curves``, model w_j is current from t_j on. Grid times before t_0 = 0 give
    NaN. A grid time past the run's last iteration gets the error of the last recorded model,
    which is right only until t_J: the caller passes grids the run has passed.
    """
    index = np.searchsorted(traj.time, np.asarray(time_grid, np.float64), side="right") - 1
    return np.where(index >= 0, traj.error[np.maximum(index, 0)], np.nan)


# --------------------------------------------------------------------------- delays


_LAW_PARAMS: dict[str, tuple[str, ...]] = {
    "constant": ("value",),
    "exponential": ("rate",),
    "shifted_exponential": ("shift", "rate"),
    "pareto": ("shape", "scale"),
    "uniform": ("low", "high"),
    "lognormal": ("mu", "sigma"),
    "weibull": ("shape", "scale"),
    "hyperexponential": ("probs", "rates"),
}


def draw_delays(
    rng: np.random.Generator,
    law_name: str,
    params: dict[str, Any],
    n: int,
    iterations: int,
    slowdown: np.ndarray | None = None,
) -> np.ndarray:
    """iid delays of n workers over ``iterations`` iterations, shape (iterations, n), with NumPy.

    The laws and parameters are those of ``fastk_jax.delays`` (same distributions, not the same
    draws as the engine's JAX keys). Worker i's draws are multiplied by ``slowdown[i]`` if given.
    """
    if law_name not in _LAW_PARAMS:
        raise ValueError(f"unknown delay law {law_name!r}; known: {', '.join(sorted(_LAW_PARAMS))}")
    names = _LAW_PARAMS[law_name]
    if set(params) != set(names):
        raise ValueError(f"{law_name} needs parameters {', '.join(names)}, got {', '.join(sorted(params)) or 'none'}")
    size = (int(iterations), int(n))
    p = {name: np.asarray(params[name], np.float64) for name in names}
    if law_name == "constant":
        x = np.full(size, float(p["value"]))
    elif law_name == "exponential":
        x = rng.standard_exponential(size) / p["rate"]
    elif law_name == "shifted_exponential":
        x = p["shift"] + rng.standard_exponential(size) / p["rate"]
    elif law_name == "pareto":
        x = p["scale"] * (1.0 + rng.pareto(p["shape"], size))  # numpy's pareto is Lomax: shift it by 1
    elif law_name == "uniform":
        x = rng.uniform(p["low"], p["high"], size)
    elif law_name == "lognormal":
        x = rng.lognormal(p["mu"], p["sigma"], size)
    elif law_name == "weibull":
        x = p["scale"] * rng.weibull(p["shape"], size)
    else:  # hyperexponential
        probs, rates = p["probs"].reshape(-1), p["rates"].reshape(-1)
        if probs.shape != rates.shape or not math.isclose(probs.sum(), 1.0, abs_tol=1e-6):
            raise ValueError("hyperexponential needs probs summing to 1 and as many rates as probs")
        branch = rng.choice(probs.size, size=size, p=probs / probs.sum())
        x = rng.standard_exponential(size) / rates[branch]
    if slowdown is not None:
        x = x * np.asarray(slowdown, np.float64).reshape(1, -1)
    return x
