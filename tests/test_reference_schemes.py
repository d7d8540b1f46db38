"""Tests of the NumPy reference of the four SGD variants (``fastk_jax.reference_schemes``).

* k_sync with shard gradients is ``reference.simulate_run`` bit for bit;
* the runtime laws of the async paper (Sec. 3.1, 4, App. B) and p0 (Lemma 2) by Monte Carlo
  with exponential delays, |mean - truth| <= 4 standard errors from the seed axis;
* hand-worked runs of k_batch_sync, k_async and k_batch_async (times, arrivals used,
  staleness, fetches, iterates), and the gradients against JAX autodiff;
* the learning-rate rules and the convergence of fully asynchronous SGD.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastk_jax import data
from fastk_jax.core import policies, problems
from fastk_jax.reference import linear as reference
from fastk_jax.reference import schemes as rs
from fastk_jax.theory import async_theory as at

EXP = ("exponential", {"rate": 1.0})


def linear_problem(m: int = 60, d: int = 3, n: int = 6) -> problems.LinearRegression:
    x, y, _ = data.synthetic_linear(m, d, seed=0)
    return problems.linear_regression(x, y, n)


def logistic_problem(m: int = 60, d: int = 3, n: int = 6, classes: int = 3) -> problems.LogisticRegression:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(m, d))
    labels = np.argmax(x @ rng.normal(size=(d, classes)) + rng.normal(size=(m, classes)), axis=1)
    return problems.logistic_regression(x, labels, n, reg=0.1, num_classes=classes)


def labels_of(problem: problems.LinearRegression) -> np.ndarray:
    """The flat labels y = X w* - r* in float64."""
    x = np.asarray(problem.x, np.float64)
    return (x @ np.asarray(problem.w_star, np.float64) - np.asarray(problem.r_star, np.float64)).reshape(-1)


def scripted(n: int, scheme: str, iterations: int, b: int = 2, **given) -> rs.Draws:
    """Draws of ones with distinct row indices everywhere, overridden by ``given``."""
    big_r = rs.num_pushes(scheme, n)
    shapes = {
        "init_delays": (n,),
        "init_rows": (n, b),
        "delays": (iterations, n, big_r),
        "restart": (iterations, n),
        "rows": (iterations, n, big_r, b),
        "restart_rows": (iterations, n, b),
    }
    fields = {}
    for name, shape in shapes.items():
        if "rows" in name:
            fields[name] = np.arange(np.prod(shape)).reshape(shape) % 11  # any rows of a 12-row problem
        else:
            fields[name] = np.ones(shape)
    fields.update({name: np.asarray(value) for name, value in given.items()})
    return rs.Draws(**fields)


# --------------------------------------------------------------------------- k_sync is fastest-k SGD


POLICIES = {
    "fixed": policies.fixed(3),
    "time_schedule": policies.schedule(2, [3.0, 8.0], [4, 6], by="time"),
    "adaptive": policies.adaptive(k_min=1, k_max=6, thresh=3, burnin=10, step=1),
}


@pytest.mark.parametrize("momentum", [None, 0.5, "nesterov"])
@pytest.mark.parametrize("policy", list(POLICIES))
@pytest.mark.parametrize("which", ["linear", "logistic"])
def test_k_sync_is_the_fastest_k_reference(which, policy, momentum):
    problem = linear_problem() if which == "linear" else logistic_problem()
    eta = 0.9 * problems.stable_step_limit(problem) if which == "linear" else 2.0
    beta, nesterov = (0.5, True) if momentum == "nesterov" else (momentum, False)
    if beta is not None:
        eta *= 0.5
    draws = rs.draw(np.random.default_rng(5), *EXP, n=6, iterations=150, scheme="k_sync", batch_size=1, num_rows=60)
    ours = rs.simulate_scheme_run(problem, POLICIES[policy], eta, "k_sync", draws, momentum=beta, nesterov=nesterov)
    ref = reference.simulate_run(problem, POLICIES[policy], eta, draws.delays[:, :, 0], beta, nesterov)
    for field in reference.Trajectory._fields:
        np.testing.assert_array_equal(getattr(ours, field), getattr(ref, field), err_msg=field)
    assert ours.error[-1] < 1e-2 * ours.error[0]
    if policy == "time_schedule" or (policy == "adaptive" and beta is None):
        assert len(np.unique(ours.k)) > 1  # the policy switches within the run (momentum smooths
        # the gradients so much that Algorithm 1 does not)
    np.testing.assert_array_equal(ours.fetches, 6 * np.arange(1, 151))
    np.testing.assert_array_equal(ours.staleness[:, 0], ours.k)
    np.testing.assert_array_equal(ours.applied.sum(axis=1), ours.k)


def test_runs_over_seeds_are_runs_per_seed():
    problem = linear_problem()
    rng = np.random.default_rng(2)
    per_seed = [
        rs.draw(rng, *EXP, n=6, iterations=20, scheme="k_batch_async", batch_size=3, num_rows=60) for _ in range(3)
    ]
    stacked = rs.Draws(*(np.stack(f) for f in zip(*per_seed)))
    runs = rs.simulate_scheme_runs(problem, policies.fixed(2), 1e-4, "k_batch_async", stacked, gradients="minibatch")
    for run, d in zip(runs, per_seed):
        one = rs.simulate_scheme_run(problem, policies.fixed(2), 1e-4, "k_batch_async", d, gradients="minibatch")
        for field in rs.SchemeTrajectory._fields:
            np.testing.assert_array_equal(getattr(run, field), getattr(one, field))


def test_draw_shapes_and_law():
    d = rs.draw(np.random.default_rng(0), *EXP, n=4, iterations=3000, scheme="k_batch_sync", batch_size=5, num_rows=9)
    assert d.init_delays.shape == (4,) and d.init_rows.shape == (4, 5)
    assert d.delays.shape == (3000, 4, 4) and d.restart.shape == (3000, 4)
    assert d.rows.shape == (3000, 4, 4, 5) and d.restart_rows.shape == (3000, 4, 5)
    assert d.rows.min() == 0 and d.rows.max() == 8
    samples = d.delays.ravel()
    assert abs(samples.mean() - 1.0) <= 4 * samples.std(ddof=1) / np.sqrt(samples.size)
    slow = rs.draw(np.random.default_rng(0), *EXP, 4, 3, "k_sync", 1, 9, slowdown=np.array([1.0, 1.0, 1.0, 3.0]))
    fast = rs.draw(np.random.default_rng(0), *EXP, 4, 3, "k_sync", 1, 9)
    np.testing.assert_allclose(slow.delays[:, 3], 3 * fast.delays[:, 3])
    with pytest.raises(ValueError, match="unknown scheme"):
        rs.draw(np.random.default_rng(0), *EXP, 4, 3, "k_sink", 1, 9)


def test_bad_draws_are_refused():
    d = rs.draw(np.random.default_rng(0), *EXP, n=6, iterations=4, scheme="k_sync", batch_size=1, num_rows=60)
    with pytest.raises(ValueError, match="draws.delays"):
        rs.simulate_scheme_run(linear_problem(), policies.fixed(2), 1e-4, "k_batch_sync", d)


# --------------------------------------------------------------------------- runtime laws (exponential delays)

N, K = 5, 2
SEEDS, ITERATIONS, BURNIN = 40, 150, 20


def runtime_runs(scheme: str, k: int) -> list[rs.SchemeTrajectory]:
    problem = linear_problem(m=10, d=2, n=N)
    rng = np.random.default_rng(11)
    draws = [rs.draw(rng, *EXP, N, ITERATIONS, scheme, 1, 10) for _ in range(SEEDS)]
    return [rs.simulate_scheme_run(problem, policies.fixed(k), 0.0, scheme, d) for d in draws]


def assert_within_4_se(per_seed: np.ndarray, truth: float) -> None:
    se = per_seed.std(ddof=1) / np.sqrt(per_seed.size)
    assert abs(per_seed.mean() - truth) <= 4 * se, (per_seed.mean(), truth, se)


@pytest.mark.parametrize(
    "scheme,k,truth",
    [
        ("k_sync", K, at.k_sync_time(K, N, at.exponential_order_mean)),  # Lemma 4
        ("k_batch_sync", K, at.k_batch_sync_law(K, N, 1.0).mean()),  # Sec. 4.2
        ("k_async", K, at.k_async_time_exponential(K, N, 1.0)),  # App. B.4.1
        ("k_batch_async", K, at.k_batch_async_time(K, N, 1.0)),  # Lemma 5
        ("k_batch_async", 1, at.k_batch_async_time(1, N, 1.0)),  # fully async
    ],
)
def test_time_per_iteration(scheme, k, truth):
    burnin = 0 if rs.SCHEMES[scheme].cancel else BURNIN
    runs = runtime_runs(scheme, k)
    per_seed = np.array([(r.time[-1] - r.time[burnin]) / (ITERATIONS - 1 - burnin) for r in runs])
    assert_within_4_se(per_seed, truth)


@pytest.mark.parametrize("scheme,k", [("k_async", K), ("k_batch_async", 1)])
def test_fresh_fraction_is_p0(scheme, k):
    """Lemma 2 and App. C.1.1: a used gradient is fresh (tau = 0) with probability K/P for K-async
    (``p0_exponential``; K = 1 is fully asynchronous SGD)."""
    runs = runtime_runs(scheme, k)
    per_seed = np.array([r.staleness[BURNIN:, 0].mean() / k for r in runs])
    assert_within_4_se(per_seed, at.p0_exponential(N, k))
    for r in runs:
        np.testing.assert_array_equal(r.fetches, N + k * np.arange(ITERATIONS))
        np.testing.assert_array_equal(r.staleness.sum(axis=1), k)
        assert r.mean_staleness.max() > 0


# --------------------------------------------------------------------------- hand-worked runs


# Small problems: 12 rows, d = 2; the rows of ``scripted`` draws are any of rows 0 .. 10.
ETA = 1e-3


def batch_gradient(problem, w: np.ndarray, rows) -> np.ndarray:
    """Least squares: the mean over the flat ``rows`` (with repetition) of x_l (x_l^T w - y_l)."""
    x = np.asarray(problem.x, np.float64).reshape(-1, problem.x.shape[-1])[np.asarray(rows)]
    return x.T @ (x @ w - labels_of(problem)[np.asarray(rows)]) / len(x)


def shard_gradient(problem, w: np.ndarray, i: int) -> np.ndarray:
    s = problem.x.shape[1]
    return batch_gradient(problem, w, np.arange(i * s, (i + 1) * s))


def assert_staleness(run: rs.SchemeTrajectory, taus: list[list[int]]) -> None:
    for j, tau in enumerate(taus):
        np.testing.assert_array_equal(run.staleness[j], np.bincount(tau, minlength=run.staleness.shape[1]))
        assert run.mean_staleness[j] == np.mean(tau)


def test_k_batch_sync_by_hand():
    """n = 2, k = 2: every push is at w_j, a learner may give both; a tie goes to the lower i R + r."""
    problem = linear_problem(m=12, d=2, n=2)
    delays = np.ones((3, 2, 2))
    delays[0] = [[0.5, 0.25], [0.75, 1.0]]  # A = [[0.5, 0.75], [0.75, 1.75]]: (0, 1) beats (1, 0)
    delays[1] = [[2.0, 1.0], [0.5, 0.5]]  # from t_1 = 0.75: A = [[2.75, 3.75], [1.25, 1.75]]
    # from t_2 = 1.75: A = [[2.75, 3.75], [2.75, 3.75]]: (0, 0) and (1, 0)
    d = scripted(2, "k_batch_sync", 3, delays=delays)
    run = rs.simulate_scheme_run(problem, policies.fixed(2), ETA, "k_batch_sync", d, gradients="minibatch")
    np.testing.assert_array_equal(run.time, [0.0, 0.75, 1.75])
    np.testing.assert_array_equal(run.applied, [[2, 0], [0, 2], [1, 1]])
    np.testing.assert_array_equal(run.fetches, [2, 4, 6])
    np.testing.assert_array_equal(run.downloads, [0, 2, 4])
    assert_staleness(run, [[0, 0]] * 3)
    w0, w1 = run.w[0], run.w[1]
    np.testing.assert_array_equal(w0, 0.0)
    g0 = (batch_gradient(problem, w0, d.rows[0, 0, 0]) + batch_gradient(problem, w0, d.rows[0, 0, 1])) / 2
    np.testing.assert_allclose(w1, w0 - ETA * g0, rtol=1e-12)
    g1 = (batch_gradient(problem, w1, d.rows[1, 1, 0]) + batch_gradient(problem, w1, d.rows[1, 1, 1])) / 2
    np.testing.assert_allclose(run.w[2], w1 - ETA * g1, rtol=1e-12)


def test_k_async_by_hand():
    """n = 3, k = 2: the unused learner keeps computing on its old model; the used ones restart."""
    problem = linear_problem(m=12, d=2, n=3)
    restart = np.ones((3, 3))
    restart[0] = [3.0, 0.5, 9.0]  # t_1 = 2: learner 0 -> 5 (v1), 1 -> 2.5 (v1), 2 still at 4 (v0)
    restart[1] = [9.0, 1.0, 1.0]  # t_2 = 4: learner 1 -> 5 (v2), 2 -> 5 (v2), 0 still at 5 (v1)
    d = scripted(3, "k_async", 3, init_delays=[1.0, 2.0, 4.0], restart=restart)
    run = rs.simulate_scheme_run(problem, policies.fixed(2), ETA, "k_async", d)
    np.testing.assert_array_equal(run.time, [0.0, 2.0, 4.0])
    np.testing.assert_array_equal(run.applied, [[1, 1, 0], [0, 1, 1], [1, 1, 0]])  # j = 2: a three-way tie
    np.testing.assert_array_equal(run.fetches, [3, 5, 7])
    assert_staleness(run, [[0, 0], [0, 1], [1, 0]])
    w0, w1 = run.w[0], run.w[1]
    np.testing.assert_allclose(w1, w0 - ETA * (shard_gradient(problem, w0, 0) + shard_gradient(problem, w0, 1)) / 2)
    g1 = (shard_gradient(problem, w1, 1) + shard_gradient(problem, w0, 2)) / 2  # learner 2 is one update late
    np.testing.assert_allclose(run.w[2], w1 - ETA * g1, rtol=1e-12)


def test_k_batch_async_by_hand():
    """n = 2 (R = 2), k = 2: pushes chain within an iteration; the next computation reads w_(j+1)
    only after the push that triggered the update; c_i = R starts a new computation."""
    problem = linear_problem(m=12, d=2, n=2)
    delays = np.ones((4, 2, 2))  # only delays[:, :, 0] are read (R - 1 = 1 chained push)
    delays[0, :, 0] = [0.5, 0.5]  # A = [[1, 1.5], [3, 3.5]]: learner 0 twice, t_1 = 1.5
    delays[1, :, 0] = [1.0, 2.0]  # A = [[3.5, 4.5], [3, 5]]: (1, 0) v0 and (0, 0) v1, t_2 = 3.5
    delays[2, :, 0] = [0.5, 1.0]  # A = [[4.5, 5], [5, 6]]: (0, 0) v2 and (0, 1) ties (1, 0), t_3 = 5
    restart = np.ones((4, 2))
    restart[0, 0] = 2.0  # learner 0 used both pushes at j = 0: a new computation 1.5 -> 3.5 on w_1
    # j = 3: A = [[6, 7], [5, 6]] (learner 0 restarted 5 -> 6 on w_3; learner 1 pending on w_1)
    d = scripted(2, "k_batch_async", 4, b=3, init_delays=[1.0, 3.0], delays=delays, restart=restart)
    run = rs.simulate_scheme_run(problem, policies.fixed(2), ETA, "k_batch_async", d, gradients="minibatch")
    np.testing.assert_array_equal(run.time, [0.0, 1.5, 3.5, 5.0])
    np.testing.assert_array_equal(run.applied, [[2, 0], [1, 1], [2, 0], [1, 1]])
    np.testing.assert_array_equal(run.fetches, [2, 4, 6, 8])
    assert_staleness(run, [[0, 0], [1, 0], [0, 0], [2, 0]])
    w0, w1, w2 = run.w[:3]
    g0 = (batch_gradient(problem, w0, d.init_rows[0]) + batch_gradient(problem, w0, d.rows[0, 0, 0])) / 2
    np.testing.assert_allclose(w1, w0 - ETA * g0, rtol=1e-12)
    g1 = (batch_gradient(problem, w0, d.init_rows[1]) + batch_gradient(problem, w1, d.restart_rows[0, 0])) / 2
    np.testing.assert_allclose(w2, w1 - ETA * g1, rtol=1e-12)
    g2 = (batch_gradient(problem, w2, d.rows[1, 0, 0]) + batch_gradient(problem, w2, d.rows[2, 0, 0])) / 2
    np.testing.assert_allclose(run.w[3], w2 - ETA * g2, rtol=1e-12)


@pytest.mark.parametrize("gradients", ["shard", "minibatch"])
@pytest.mark.parametrize("which", ["linear", "logistic"])
def test_stale_gradients_are_gradients_of_the_loss(which, gradients):
    """Fully async (k_async, k = 1, n = 2) with stale models w_0 = 0 and w_1 != 0, against JAX autodiff."""
    with jax.enable_x64(True):
        problem = linear_problem(m=12, d=2, n=2) if which == "linear" else logistic_problem(m=12, d=2, n=2)
        restart = np.ones((4, 2))
        restart[0, 0], restart[1, 1] = 5.0, 10.0  # used: (0 at 1, v0), (1 at 3, v0), (0 at 6, v1)
        init_rows = [[3, 3, 7], [0, 5, 5]]
        d = scripted(2, "k_async", 4, b=3, init_delays=[1.0, 3.0], restart=restart, init_rows=init_rows)
        eta = ETA if which == "linear" else 0.5
        run = rs.simulate_scheme_run(problem, policies.fixed(1), eta, "k_async", d, gradients=gradients)
        assert_staleness(run, [[0], [1], [1]])

        m = problem.x.shape[0] * problem.x.shape[1]
        # the same problem with one row per shard: shard_losses(w)[l] is the loss of row l
        fields = ("x", "r_star") if which == "linear" else ("x", "y")
        one_row_shards = dataclasses.replace(
            problem, **{f: getattr(problem, f).reshape(m, 1, *getattr(problem, f).shape[2:]) for f in fields}
        )

        def grad(w, learner, rows):
            if gradients == "shard":
                return np.asarray(jax.grad(lambda v: problem.shard_losses(v)[learner])(jnp.asarray(w)))
            return np.asarray(jax.grad(lambda v: jnp.mean(one_row_shards.shard_losses(v)[np.asarray(rows)]))(w))

        w0, w1, w2 = run.w[:3]
        np.testing.assert_allclose(w1, w0 - eta * grad(w0, 0, d.init_rows[0]), rtol=1e-10)
        np.testing.assert_allclose(w2, w1 - eta * grad(w0, 1, d.init_rows[1]), rtol=1e-10)
        np.testing.assert_allclose(run.w[3], w2 - eta * grad(w1, 0, d.restart_rows[0, 0]), rtol=1e-10)


# --------------------------------------------------------------------------- learning rates and convergence


def test_staleness_learning_rates_by_hand():
    """Fully async (k_batch_async, k = 1): learner 0 pushes at 1, 2, .., 9, learner 1 at 9.5 with
    tau = 9 > n = 2. Eq. (13) and n / max(n, tau) scale that one gradient only."""
    problem = linear_problem(m=12, d=2, n=2)
    d = scripted(2, "k_batch_async", 11, init_delays=[1.0, 9.5])
    kwargs = {"staleness_bins": 4}
    fixed = rs.simulate_scheme_run(problem, policies.fixed(1), ETA, "k_batch_async", d, **kwargs)
    np.testing.assert_array_equal(fixed.time, [*range(10), 9.5])
    np.testing.assert_array_equal(fixed.staleness[9], [0, 0, 0, 1])  # tau = 9 in the last bin
    assert fixed.mean_staleness[9] == 9 and fixed.mean_staleness[:9].max() == 0
    w0, w9 = fixed.w[0], fixed.w[9]
    g = shard_gradient(problem, w0, 1)
    np.testing.assert_allclose(fixed.w[10], w9 - ETA * g, rtol=1e-12)

    distance2 = np.sum(np.square(w9 - w0))
    staleness = rs.simulate_scheme_run(
        problem, policies.fixed(1), ETA, "k_batch_async", d, lr="staleness", lr_c=0.25 * ETA * distance2, **kwargs
    )
    adaptive = rs.simulate_scheme_run(
        problem, policies.fixed(1), ETA, "k_batch_async", d, lr="delay_adaptive", **kwargs
    )
    for run, factor in ((staleness, 0.25), (adaptive, 2 / 9)):
        np.testing.assert_array_equal(run.w[:10], fixed.w[:10])  # fresh gradients: factor 1
        np.testing.assert_allclose(run.w[10], w9 - factor * ETA * g, rtol=1e-12)


@pytest.mark.parametrize("scheme", ["k_async", "k_batch_async"])
def test_learning_rates_that_change_nothing(scheme):
    """Eq. (13) with a huge C is eta_max; n / max(n, tau) is 1 while every tau <= n."""
    problem = linear_problem()
    eta = 0.05 * problems.stable_step_limit(problem)
    spread = rs.draw(np.random.default_rng(3), *EXP, 6, 200, scheme, 1, 60)  # some tau > n
    narrow = rs.draw(np.random.default_rng(3), "uniform", {"low": 1.0, "high": 1.2}, 6, 200, scheme, 1, 60)

    def run(draws, **kwargs):
        return rs.simulate_scheme_run(problem, policies.fixed(2), eta, scheme, draws, staleness_bins=8, **kwargs)

    for draws in (spread, narrow):
        fixed = run(draws)
        np.testing.assert_array_equal(run(draws, lr="staleness", lr_c=1e300).w, fixed.w)
        if draws is narrow:
            assert fixed.staleness[:, 7:].sum() == 0  # every tau <= 6 = n
            np.testing.assert_array_equal(run(draws, lr="delay_adaptive").w, fixed.w)
        else:
            assert fixed.staleness[:, 7:].sum() > 0
            assert not np.array_equal(run(draws, lr="delay_adaptive").w, fixed.w)
        assert not np.array_equal(run(draws, lr="staleness", lr_c=1e-3).w, fixed.w)


def test_fully_async_sgd_converges():
    """Async SGD, eq. (4) (k_batch_async with k = 1), with shard gradients and a small step."""
    problem = linear_problem()
    eta = 0.02 * problems.stable_step_limit(problem)
    d = rs.draw(np.random.default_rng(4), *EXP, 6, 1500, "k_batch_async", 1, 60)
    run = rs.simulate_scheme_run(problem, policies.fixed(1), eta, "k_batch_async", d)
    assert run.mean_staleness.max() > 6  # really stale
    assert run.error[-1] < 1e-4 * run.error[0]
    assert np.all(np.isfinite(run.error))


# --------------------------------------------------------------------------- the peers' methods


def test_ringmaster_stops_by_hand():
    """n = 2, k = 1, R = 1: every update stops the other learner's computation (it read w_j, one
    version before w_(j+1)) and restarts it at t_(j+1) on w_(j+1); so every applied gradient is
    fresh and every update sends k + 1 models. Learner 0 starts with 1, learner 1 with 3, then
    learner 1's draws are 0.5 and learner 0's 1: pushes at 1 (0), 1.5 (1), 2 (1), 2.5 (1), ..."""
    n, iterations = 2, 5
    delays = np.ones((iterations, n, n))
    delays[:, 1, :] = 0.5
    d = scripted(n, "ringmaster", iterations, init_delays=np.array([1.0, 3.0]), delays=delays)
    problem = linear_problem(m=12, n=n)
    run = rs.simulate_scheme_run(problem, policies.fixed(1), 0.01, "ringmaster", d, staleness_limit=1)
    np.testing.assert_allclose(run.time, [0.0, 1.0, 1.5, 2.0, 2.5])
    np.testing.assert_array_equal(run.applied[:, 1], [0, 1, 1, 1, 1])
    np.testing.assert_array_equal(run.staleness[:, 0], 1)  # all fresh
    np.testing.assert_array_equal(run.fetches, [2, 4, 6, 8, 10])
    # K-batch-async on the same draws keeps learner 1's first computation: a push at 3, stale
    plain = rs.simulate_scheme_run(problem, policies.fixed(1), 0.01, "k_batch_async", d)
    np.testing.assert_allclose(plain.time, [0.0, 1.0, 2.0, 3.0, 3.0])
    assert plain.staleness[3, 3] == 1  # learner 1's gradient at 3 read w_0 at iteration 3


def test_ringmaster_without_stops_and_rennala_are_their_schemes():
    """R = inf is K-batch-async and Rennala SGD is K-batch-sync, bit for bit on the same draws;
    R = 2 applies no gradient two or more updates stale, which K-batch-async does."""
    problem = linear_problem()
    eta = 0.1 * problems.stable_step_limit(problem)
    draws = rs.draw(np.random.default_rng(5), *EXP, 6, 150, "k_batch_async", 1, 60)

    def run(scheme, **kwargs):
        return rs.simulate_scheme_run(problem, policies.fixed(2), eta, scheme, draws, staleness_bins=8, **kwargs)

    for a, b in ((run("ringmaster"), run("k_batch_async")), (run("rennala"), run("k_batch_sync"))):
        for field in SchemeFields:
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    assert run("k_batch_async").staleness[:, 2:].sum() > 0
    limited = run("ringmaster", staleness_limit=2)
    assert limited.staleness[:, 2:].sum() == 0 and limited.staleness.sum() == 2 * 150
    assert np.all(np.diff(limited.fetches) >= 2) and np.any(np.diff(limited.fetches) > 2)


SchemeFields = rs.SchemeTrajectory._fields


def test_clipping_bounds_each_step():
    """With clip c, plain SGD moves at most eta c per update, exactly eta c where the direction was
    longer; momentum (optax.trace) accumulates clipped directions."""
    problem = linear_problem()
    eta = 0.1 * problems.stable_step_limit(problem)
    draws = rs.draw(np.random.default_rng(6), *EXP, 6, 100, "k_batch_async", 1, 60)

    def run(**kwargs):
        return rs.simulate_scheme_run(problem, policies.fixed(1), eta, "k_batch_async", draws, **kwargs)

    steps = np.linalg.norm(np.diff(run().w, axis=0), axis=1) / eta
    c = float(np.median(steps))
    clipped = np.linalg.norm(np.diff(run(clip=c).w, axis=0), axis=1) / eta
    assert clipped.max() <= c * (1 + 1e-12) and np.sum(np.isclose(clipped, c, rtol=1e-12)) >= 10
    np.testing.assert_array_equal(run(clip=2 * steps.max()).w, run().w)
    heavy = run(clip=c, momentum=0.5).w
    assert np.all(np.linalg.norm(np.diff(heavy, axis=0), axis=1) <= eta * c / (1 - 0.5) * (1 + 1e-12))
    with pytest.raises(ValueError, match="clip"):
        run(clip=0.0)
