"""A plain NumPy reference of the SGD variants of the async paper (and two later): the engine's oracle.

Dutta et al., "Slow and stale gradients can win the race" (AISTATS 2018, "the async paper"),
Sec. 2.3: n learners (the paper's P) compute gradients, the master (PS) updates after k of
them (K), and the variants differ in two switches:

============== ======= ======= ===================================================================
scheme         batch   cancel  what a learner does
============== ======= ======= ===================================================================
k_sync         no      yes     one gradient at w_j; the rest are cancelled at the update, eq. (2)
k_batch_sync   yes     yes     restarts on the next mini-batch at w_j after each push
k_async        no      no      keeps computing across updates; restarts on w_(j+1) once used, (3)
k_batch_async  yes     no      pushes, fetches the current model and restarts at once, (3)
============== ======= ======= ===================================================================

and two of later work: ``rennala`` (Rennala SGD, k_batch_sync under its literature name) and
``ringmaster`` (Ringmaster ASGD: k_batch_async whose updates stop the computations R stale).

Fully asynchronous SGD, eq. (4), is k_batch_async with k = 1 (or k_async with k = 1).

Like ``reference.py`` this is float64, a Python loop over seeds and iterations, NumPy over the
learners inside an iteration, no JAX. The random numbers are given (``Draws``) so that the
engine and this module see the same ones; ``draw`` makes them with NumPy for standalone use.
With ``scheme="k_sync"``, ``gradients="shard"`` and ``lr="fixed"`` a run is bit for bit
``reference.simulate_run`` on the delays ``draws.delays[:, :, 0]`` (unless two clocks
t_j + X_i tie by rounding while the X_i differ: the selection sorts t_j + X_i).

Iteration j (clock t_j, model w_j, version j, k from the policy read at t_j):

1. the arrivals A (n, R), R = n if batch else 1, each with a model, its version v (staleness
   tau = j - v) and rows:

   - cancel: A[i, 0] = t_j + delays[j, i, 0], A[i, r] = A[i, r-1] + delays[j, i, r], all at w_j
     on rows[j, i, r];
   - no cancel: A[i, 0] = learner i's pending computation (its finish time, model, version,
     rows); for k_batch_async A[i, r] = A[i, r-1] + delays[j, i, r-1] at w_j on rows[j, i, r-1];

2. the k smallest arrivals, ties to the lower flat index i R + r; t_(j+1) is the k-th;
3. g = (1/k) sum_a s_a g(model_a, rows_a), g the mean gradient over shard i ("shard") or over
   the b given rows ("minibatch"); s_a = 1 ("fixed"), min(C / ||w_j - model_a||^2, eta) / eta
   (eq. (13), eta_max = eta, C = ``lr_c``; 1 when the distance is 0) or n / max(n, tau_a)
   ("delay_adaptive");
4. w_(j+1) = w_j - eta g, or heavy-ball momentum as ``optax.trace``; Algorithm 1 observes g;
5. the pending computations (no cancel): k_async restarts each selected learner at t_(j+1) on
   w_(j+1) (restart[j, i], restart_rows[j, i]); k_batch_async moves a learner with c_i > 0
   selected pushes to its chain arrival c_i (if c_i = R, a new one: A[i, R-1] + restart[j, i]
   on restart_rows[j, i]), computed at the model current after push c_i - 1: w_(j+1) if that
   push triggered the update, else w_j;
6. ringmaster (k_batch_async with stops): after step 5 every learner whose pending computation
   read a model at least R = ``staleness_limit`` versions before w_(j+1) is stopped and starts
   again at t_(j+1) on w_(j+1), with delays[j, i, c_i] and rows[j, i, c_i] (c_i its pushes
   used at j: the first draw its chain did not use);
7. fetches (models sent): n at t = 0, then per update n (cancel: broadcast) or k (no cancel:
   each used gradient is followed by a fetch), plus one per stopped learner.

``clip`` scales g of step 3 down to that norm where it is longer (before the momentum).
Rennala SGD (``"rennala"``) is k_batch_sync under its literature name: its batch B is k.

The record of iteration j describes w_j as ``reference.Trajectory`` does, plus the update
made at iteration j: its staleness histogram, mean staleness and which learners it used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .linear import _Linear, _Logistic, _numpy_problem, _Policy, draw_delays, sgd_step

if TYPE_CHECKING:
    from ..core.policies import KPolicy
    from ..core.problems import Problem


class Scheme(NamedTuple):
    """How the master aggregates (Sec. 2.3 of the async paper)."""

    batch: bool  # a learner restarts on a new mini-batch after each push (R = n pushes per iteration)
    cancel: bool  # the update cancels the computations still running
    stops: bool = False  # the update stops the computations at least ``staleness_limit`` updates stale


SCHEMES: dict[str, Scheme] = {
    "k_sync": Scheme(batch=False, cancel=True),
    "k_batch_sync": Scheme(batch=True, cancel=True),
    "rennala": Scheme(batch=True, cancel=True),  # Rennala SGD is K-batch-sync (B = k)
    "k_async": Scheme(batch=False, cancel=False),
    "k_batch_async": Scheme(batch=True, cancel=False),
    "ringmaster": Scheme(batch=True, cancel=False, stops=True),  # Ringmaster ASGD with stops
}
GRADIENTS = ("shard", "minibatch")
LEARNING_RATES = ("fixed", "staleness", "delay_adaptive")


def num_pushes(scheme: str, n: int) -> int:
    """R, the most pushes one learner may make within one iteration: n if batch, else 1."""
    return n if _scheme(scheme).batch else 1


class Draws(NamedTuple):
    """The random numbers of one run (a leading seed axis for ``simulate_scheme_runs``).

    Delays are in the units of the delay law; rows are flat row indices into the n*s rows,
    read only with ``gradients="minibatch"``. J iterations, n learners, R = ``num_pushes``,
    b the mini-batch size.
    """

    init_delays: np.ndarray  # (n,) first computations of async schemes, started at t = 0 on w_0
    init_rows: np.ndarray  # (n, b) int, their rows
    delays: np.ndarray  # (J, n, R) chained computations within iteration j
    restart: np.ndarray  # (J, n) a computation (re)started at an update (async schemes)
    rows: np.ndarray  # (J, n, R, b) int, rows of the chained computations
    restart_rows: np.ndarray  # (J, n, b) int, rows of the restarted computations


class SchemeTrajectory(NamedTuple):
    """One run, one entry per iteration j = 0 .. J-1: the model w_j and the update made at j."""

    time: np.ndarray  # (J,) t_j, when w_j is formed
    k: np.ndarray  # (J,) int, k used at iteration j
    error: np.ndarray  # (J,) F(w_j) - F*
    downloads: np.ndarray  # (J,) int, gradients received before t_j: sum of k over iterations < j
    fetches: np.ndarray  # (J,) int, models sent to learners up to and including t_j (n at t_0)
    w: np.ndarray  # (J, p) the model w_j
    staleness: np.ndarray  # (J, bins) int, tau of the k gradients applied at j; last bin tau >= bins-1
    mean_staleness: np.ndarray  # (J,) mean tau of the gradients applied at j
    applied: np.ndarray  # (J, n) int, gradients of each learner applied at j (they sum to k)


# --------------------------------------------------------------------------- problems


class _LinearRows:
    """Least squares over flat rows: r = X (w - w*) + r*, the gradient over rows X^T r / rows."""

    def __init__(self, prob: _Linear):
        self.prob = prob
        self.r_star = prob.r_star.reshape(-1)

    def evaluate(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        """F(w) - F* and the residuals of all n*s rows (as ``reference._Linear``, bit for bit)."""
        p = self.prob
        n, s, _ = p.x.shape
        r = (p.rows @ (w - p.w_star)).reshape(n, s) + p.r_star
        return float(0.5 * np.mean(np.square(r)) - p.f_star), r.reshape(-1)

    def residuals(self, w: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return self.prob.rows[rows] @ (w - self.prob.w_star) + self.r_star[rows]

    def gradient(self, rows, residuals, per, k, w, models, factors) -> np.ndarray:
        """(1/k) sum_a s_a X_a^T r_a / per, ``residuals`` already multiplied by s_a (the models
        enter through the residuals only)."""
        return self.prob.rows[rows].T @ residuals / (k * per)


class _LogisticRows:
    """One-vs-all logistic regression over flat rows, as ``reference._Logistic``."""

    def __init__(self, prob: _Logistic):
        self.prob = prob
        n, s, _ = prob.x.shape
        self.c = prob.num_classes
        self.y = prob.y.reshape(n * s, self.c)

    def _unpack(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = self.prob.x.shape[-1]
        return w[: d * self.c].reshape(d, self.c), w[d * self.c :]

    def evaluate(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        """F(w) - F* and sigmoid(z) - y of all rows (as ``reference._Logistic``, bit for bit)."""
        p = self.prob
        n, s, _ = p.x.shape
        weights, bias = self._unpack(w)
        z = (p.rows @ weights + bias).reshape(n, s, self.c)
        softplus = np.logaddexp(0.0, z)
        error = np.mean(softplus - p.y * z) + 0.5 * p.reg * np.sum(np.square(weights)) / self.c - p.f_star
        return float(error), (np.exp(z - softplus) - p.y).reshape(n * s, self.c)

    def residuals(self, w: np.ndarray, rows: np.ndarray) -> np.ndarray:
        weights, bias = self._unpack(w)
        z = self.prob.rows[rows] @ weights + bias
        return np.exp(z - np.logaddexp(0.0, z)) - self.y[rows]  # sigmoid(z) - y, stable

    def gradient(self, rows, residuals, per, k, w, models, factors) -> np.ndarray:
        """(1/k) sum_a s_a [X_a^T (p_a - y_a) / (per C) + lam W_a / C], bias unregularized."""
        scale = 1.0 / (k * per * self.c)
        # the weighted mean of the models' weights, written around w_j so that it is exactly
        # W_j when every gradient is fresh with s_a = 1 (then this matches reference.py bit for bit)
        mean = sum(factors) / k * w + sum((f / k) * (m - w) for f, m in zip(factors, models))
        grad_w = self.prob.rows[rows].T @ residuals * scale + (self.prob.reg / self.c) * self._unpack(mean)[0]
        grad_b = residuals.sum(axis=0) * scale
        return np.concatenate([grad_w.ravel(), grad_b])


def _rows_of(prob: _Linear | _Logistic) -> _LinearRows | _LogisticRows:
    return _LinearRows(prob) if isinstance(prob, _Linear) else _LogisticRows(prob)


# --------------------------------------------------------------------------- runs


def simulate_scheme_run(
    problem: Problem,
    policy: KPolicy,
    eta: float,
    scheme: str,
    draws: Draws,
    *,
    gradients: str = "shard",
    lr: str = "fixed",
    lr_c: float = 1.0,
    momentum: float | None = None,
    nesterov: bool = False,
    staleness_bins: int = 32,
    staleness_limit: float = np.inf,
    clip: float = np.inf,
) -> SchemeTrajectory:
    """One run of a Sec. 2.3 scheme for J = ``draws.delays.shape[0]`` iterations (module docstring).

    Args:
        problem: a ``problems.LinearRegression`` or ``problems.LogisticRegression``.
        policy: ONE ``policies.KPolicy``; k is read at t_j (or j) as in ``reference.py``.
        eta: the step size (eta_max of eq. (13) with ``lr="staleness"``).
        scheme: "k_sync", "k_batch_sync", "k_async" or "k_batch_async".
        draws: the ``Draws`` of this run.
        gradients: "shard" (learner i's gradients are over its shard i, as eq. (3) of the
            adaptive paper) or "minibatch" (over the b given rows, with repetition).
        lr: "fixed", "staleness" (eq. (13) of the async paper) or "delay_adaptive"
            (eta n / max(n, tau)).
        lr_c: C of eq. (13).
        momentum, nesterov: heavy-ball momentum as ``optax.trace`` (as ``reference.simulate_run``).
        staleness_bins: histogram bins of tau = 0 .. bins-1, the last one collecting tau >= bins-1.
        staleness_limit: R of ``"ringmaster"`` (a computation R updates stale is stopped).
        clip: the largest norm of the aggregated gradient g (inf: no clipping).
    """
    options = (gradients, lr, lr_c, momentum, nesterov, staleness_bins, staleness_limit, clip)
    return _run(_numpy_problem(problem), policy, eta, scheme, draws, *options)


def simulate_scheme_runs(
    problem: Problem,
    policy: KPolicy,
    eta: float,
    scheme: str,
    draws: Draws,
    *,
    gradients: str = "shard",
    lr: str = "fixed",
    lr_c: float = 1.0,
    momentum: float | None = None,
    nesterov: bool = False,
    staleness_bins: int = 32,
    staleness_limit: float = np.inf,
    clip: float = np.inf,
) -> list[SchemeTrajectory]:
    """``simulate_scheme_run`` for each seed: every field of ``draws`` has a leading seed axis."""
    prob = _numpy_problem(problem)  # convert the arrays once, not per seed
    seeds = np.shape(draws.delays)[0]
    options = (gradients, lr, lr_c, momentum, nesterov, staleness_bins, staleness_limit, clip)
    return [_run(prob, policy, eta, scheme, Draws(*(f[s] for f in draws)), *options) for s in range(seeds)]


def _scheme(name: str) -> Scheme:
    if name not in SCHEMES:
        raise ValueError(f"unknown scheme {name!r}; known: {', '.join(SCHEMES)}")
    return SCHEMES[name]


def _checked_draws(draws: Draws, n: int, big_r: int) -> Draws:
    d = Draws(*(np.asarray(f, np.int64 if "rows" in name else np.float64) for name, f in zip(Draws._fields, draws)))
    num_iterations = d.delays.shape[0] if d.delays.ndim == 3 else -1
    b = d.init_rows.shape[-1] if d.init_rows.ndim == 2 else -1
    expected = {
        "init_delays": (n,),
        "init_rows": (n, b),
        "delays": (num_iterations, n, big_r),
        "restart": (num_iterations, n),
        "rows": (num_iterations, n, big_r, b),
        "restart_rows": (num_iterations, n, b),
    }
    for name, shape in expected.items():
        if getattr(d, name).shape != shape or min(shape) < 1:
            raise ValueError(
                f"draws.{name} must have shape {shape} (J, n={n}, R={big_r}, b), got {getattr(d, name).shape}"
            )
    return d


def _run(
    prob, policy, eta, scheme, draws, gradients, lr, lr_c, momentum, nesterov, staleness_bins, staleness_limit, clip
) -> SchemeTrajectory:
    batch, cancel, stops = _scheme(scheme)
    if not (staleness_limit >= 1 and clip > 0):
        raise ValueError(f"staleness_limit must be >= 1 and clip > 0, got {staleness_limit} and {clip}")
    if gradients not in GRADIENTS:
        raise ValueError(f"gradients must be one of {GRADIENTS}, got {gradients!r}")
    if lr not in LEARNING_RATES:
        raise ValueError(f"lr must be one of {LEARNING_RATES}, got {lr!r}")
    if lr == "staleness" and not (eta > 0 and lr_c > 0):
        raise ValueError(f"lr='staleness' needs eta > 0 (eta_max) and lr_c > 0, got {eta} and {lr_c}")
    if staleness_bins < 1:
        raise ValueError(f"staleness_bins must be >= 1, got {staleness_bins}")
    oracle = _rows_of(prob)
    n, s, _ = prob.x.shape
    big_r = n if batch else 1
    draws = _checked_draws(draws, n, big_r)
    num_iterations = draws.delays.shape[0]
    pol = _Policy(policy, n)
    eta, lr_c = float(eta), float(lr_c)
    shard = gradients == "shard"
    per = s if shard else draws.init_rows.shape[1]  # rows per gradient

    out = SchemeTrajectory(
        time=np.empty(num_iterations),
        k=np.empty(num_iterations, np.int64),
        error=np.empty(num_iterations),
        downloads=np.empty(num_iterations, np.int64),
        fetches=np.empty(num_iterations, np.int64),
        w=np.empty((num_iterations, prob.num_params)),
        staleness=np.zeros((num_iterations, staleness_bins), np.int64),
        mean_staleness=np.empty(num_iterations),
        applied=np.empty((num_iterations, n), np.int64),
    )

    w = np.zeros(prob.num_params)
    velocity = np.zeros(prob.num_params)
    t, received, fetched = 0.0, 0, n  # every learner reads w_0 at t = 0
    # the pending computation of each learner (no-cancel schemes): finish time, model, version, rows
    finish = draws.init_delays.copy()
    model = [w] * n
    version = np.zeros(n, np.int64)
    pending_rows = list(draws.init_rows)

    for j in range(num_iterations):
        k = pol.current_k(t, j)
        error, residuals_j = oracle.evaluate(w)
        out.time[j], out.k[j], out.error[j], out.w[j] = t, k, error, w
        out.downloads[j], out.fetches[j] = received, fetched

        # 1. the arrivals; np.cumsum adds left to right: A[i, r] = A[i, r-1] + delay
        if cancel:
            steps = draws.delays[j].copy()
            steps[:, 0] += t
        else:
            steps = np.concatenate([finish[:, None], draws.delays[j, :, : big_r - 1]], axis=1)
        arrivals = np.cumsum(steps, axis=1)

        # 2. the k first, ties to the lower flat index i R + r
        chosen = np.argsort(arrivals.ravel(), kind="stable")[:k]
        t_next = arrivals.ravel()[chosen[-1]]

        # 3. each chosen arrival's model, version and rows, and the aggregated gradient
        models, versions, rows = [], [], []
        for a in chosen:
            i, r = divmod(int(a), big_r)
            stale = not cancel and r == 0  # the computation pending since an earlier iteration
            models.append(model[i] if stale else w)
            versions.append(version[i] if stale else j)
            if shard:
                rows.append(np.arange(i * s, (i + 1) * s))
            elif cancel:
                rows.append(draws.rows[j, i, r])
            else:
                rows.append(pending_rows[i] if r == 0 else draws.rows[j, i, r - 1])
        tau = j - np.asarray(versions)
        factors = [_lr_factor(lr, w, m, t_a, n, eta, lr_c) for m, t_a in zip(models, tau)]
        residuals = [
            residuals_j[idx] if v == j else oracle.residuals(m, idx) for m, v, idx in zip(models, versions, rows)
        ]
        residuals = np.concatenate([f * res for f, res in zip(factors, residuals)])  # f = 1.0 is exact
        grad = oracle.gradient(np.concatenate(rows), residuals, per, k, w, models, factors)

        learner = chosen // big_r
        out.staleness[j] = np.bincount(np.minimum(tau, staleness_bins - 1), minlength=staleness_bins)
        out.mean_staleness[j] = tau.mean()
        out.applied[j] = np.bincount(learner, minlength=n)

        # 4. the update, exactly as reference.py (the direction clipped first)
        norm = float(np.sqrt(np.sum(np.square(grad))))
        if norm > clip:
            grad = grad * (clip / norm)
        w_old = w
        w, velocity = sgd_step(w, velocity, grad, eta, momentum, nesterov)
        if pol.adaptive:
            pol.observe(grad)

        # 5. the computations pending after the update
        if not cancel:
            for i in np.unique(learner):
                if not batch:  # k_async: restart on w_(j+1) at t_(j+1)
                    finish[i], model[i], version[i] = t_next + draws.restart[j, i], w, j + 1
                    pending_rows[i] = draws.restart_rows[j, i]
                    continue
                c = int(out.applied[j, i])  # pushes 0 .. c-1 were used: next is chain arrival c
                if c < big_r:
                    finish[i], pending_rows[i] = arrivals[i, c], draws.rows[j, i, c - 1]
                else:
                    finish[i], pending_rows[i] = arrivals[i, -1] + draws.restart[j, i], draws.restart_rows[j, i]
                triggered = i * big_r + c - 1 == chosen[-1]  # push c-1 made the update: w_(j+1) is read
                model[i], version[i] = (w, j + 1) if triggered else (w_old, j)

        # 6. ringmaster's stops: computations whose gradient would be R or more updates stale
        stopped = np.flatnonzero(j + 1 - version >= staleness_limit) if stops else []
        for i in stopped:
            c = int(out.applied[j, i])
            finish[i], model[i], version[i], pending_rows[i] = t_next + draws.delays[j, i, c], w, j + 1, draws.rows[j, i, c]

        # 7. clock and communication
        t = t_next
        received += k
        fetched += (n if cancel else k) + len(stopped)
    return out


def _lr_factor(lr: str, w: np.ndarray, model: np.ndarray, tau: int, n: int, eta: float, lr_c: float) -> float:
    """s_a, the step of one gradient relative to eta: 1, eq. (13) of the async paper, or n / max(n, tau)."""
    if lr == "fixed":
        return 1.0
    if lr == "delay_adaptive":
        return n / max(n, int(tau))
    distance2 = float(np.sum(np.square(w - model)))
    return 1.0 if distance2 == 0.0 else min(lr_c / distance2, eta) / eta


# --------------------------------------------------------------------------- draws


def draw(
    rng: np.random.Generator,
    law_name: str,
    params: dict[str, Any],
    n: int,
    iterations: int,
    scheme: str,
    batch_size: int,
    num_rows: int,
    slowdown: np.ndarray | None = None,
) -> Draws:
    """The ``Draws`` of one run with NumPy: iid delays of ``reference.draw_delays`` (learner i's
    multiplied by ``slowdown[i]``) and rows uniform over ``num_rows`` with repetition.

    Drawn in the order of the fields; shapes as ``Draws`` with R = ``num_pushes(scheme, n)``.
    """
    big_r = num_pushes(scheme, n)
    if batch_size < 1 or num_rows < 1:
        raise ValueError(f"batch_size and num_rows must be >= 1, got {batch_size} and {num_rows}")

    def delays(count: int) -> np.ndarray:
        return draw_delays(rng, law_name, params, n, count, slowdown)

    def rows(*shape: int) -> np.ndarray:
        return rng.integers(0, num_rows, size=(*shape, batch_size))

    return Draws(
        init_delays=delays(1)[0],
        init_rows=rows(n),
        delays=np.ascontiguousarray(delays(iterations * big_r).reshape(iterations, big_r, n).transpose(0, 2, 1)),
        restart=delays(iterations),
        rows=rows(iterations, n, big_r),
        restart_rows=rows(iterations, n),
    )
