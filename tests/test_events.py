"""The heap-based event reference of K-batch-async SGD (``reference.events``): small cases
traced by hand, the renewal closed form of the time per update, and agreement in distribution
with the engine's ``k_batch_async`` (its own random numbers, so within standard errors over
seeds, not bit for bit)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from fastk_jax import data, engine
from fastk_jax.core import delays, policies, problems
from fastk_jax.core.spec import RunSpec, SimConfig, stack_configs
from fastk_jax.reference import events

N, MU = 5, 2.0  # workers, mean duration
KS = (1, 3)
UPDATES, SEEDS = 200, 200
CHECKED = (20, 100, UPDATES - 1)  # the updates whose errors are compared: transient and final
BINS = 64  # staleness bins: tau >= 63 is practically never seen with n = 5


def _problem(n=N, m=100, d=4):
    x, y, _ = data.synthetic_linear(m=m, d=d, seed=2)
    with jax.enable_x64(True):
        return problems.linear_regression(x, y, n=n)


def _arrays(prob):
    x = np.asarray(prob.x, np.float64)
    return x.reshape(-1, x.shape[-1]), np.asarray(prob.w_star, np.float64), np.asarray(prob.r_star, np.float64).ravel()


def _gradient(prob, w, rows):
    """The mean least-squares gradient over the given flat rows, X^T (X w - y) / rows written
    with the residual at w*, r* = X w* - y (as the problem stores it)."""
    x, w_star, r_star = _arrays(prob)
    return x[rows].T @ (x[rows] @ (w - w_star) + r_star[rows]) / len(rows)


def _error(prob, w):
    """F(w) - F* from the residuals of all rows (the reference uses H instead)."""
    x, w_star, r_star = _arrays(prob)
    return 0.5 * np.mean(np.square(x @ (w - w_star) + r_star)) - float(prob.f_star)


@pytest.fixture(scope="module")
def problem():
    return _problem()


@pytest.fixture(scope="module")
def both(problem):
    """The engine (float64, k_batch_async, fixed k in KS in one study) and the heap reference on
    SEEDS seeds of UPDATES updates each, exponential durations of mean MU."""
    eta = 0.2 * problems.stable_step_limit(problem)
    law = delays.make_law("exponential", rate=1.0 / MU)
    configs = stack_configs([SimConfig(policies.fixed(k), np.float64(eta), law, np.ones(N)) for k in KS])
    spec = RunSpec(
        n=N, chunk=UPDATES, scheme="k_batch_async", max_k=max(KS), staleness_bins=BINS, keep_trajectories=True
    )
    with jax.enable_x64(True):
        sim = engine.simulate(problem, configs, seeds=SEEDS, time_horizon=1e-3, spec=spec, iterations=UPDATES - 1)
    assert sim.iterations == UPDATES
    out = sim.trajectories
    histogram = np.asarray(out.staleness, np.float64)  # (C, S, J, bins)
    eng = {
        k: {
            "per_update": np.asarray(sim.summary.final_time[c], np.float64) / UPDATES,
            "error": np.asarray(out.error[c], np.float64),  # (S, J): F(w_j) - F*, j < J
            "staleness": (histogram[c] @ np.arange(BINS)).sum(axis=1) / histogram[c].sum(axis=(1, 2)),
        }
        for c, k in enumerate(KS)
    }
    prob = events.prepare(problem)
    rng = np.random.default_rng(1)
    ref = {}
    for k in KS:
        durations = np.stack(
            [events.draw_durations(rng, N, k, UPDATES, params={"rate": 1.0 / MU}) for _ in range(SEEDS)]
        )
        runs = events.simulate_async_runs(prob, k, eta, durations)
        ref[k] = {
            "per_update": np.array([r.time[-1] for r in runs]) / UPDATES,
            "error": np.array([r.error for r in runs]),  # (S, J + 1)
            "staleness": np.array([r.staleness.mean() for r in runs]),
        }
    return eng, ref


def _mean_se(x):
    return x.mean(), x.std(ddof=1) / np.sqrt(x.size)


# --------------------------------------------------------------------------- by hand


def test_one_worker_is_gradient_descent_on_the_durations_clock():
    prob = _problem(n=1, m=30, d=3)
    eta, updates = 0.2 * problems.stable_step_limit(prob), 25
    durations = np.random.default_rng(0).exponential(1.0, 1 + updates)
    run = events.simulate_async_run(prob, 1, eta, durations)
    w, rows = np.zeros(3), np.arange(30)
    for j in range(updates):
        assert run.error[j] == pytest.approx(_error(prob, w), rel=1e-9, abs=1e-6)
        w = w - eta * _gradient(prob, w, rows)
    np.testing.assert_allclose(run.w, w, rtol=1e-10)
    np.testing.assert_allclose(run.time, np.concatenate([[0.0], np.cumsum(durations[:updates])]), rtol=1e-14)
    np.testing.assert_array_equal(run.staleness, 0.0)
    # mini-batches of every row are the shard gradient again
    batched = events.simulate_async_run(prob, 1, eta, durations, rows=np.tile(rows, (1 + updates, 1)))
    np.testing.assert_allclose(batched.w, run.w, rtol=1e-12)


def test_two_workers_fully_async_by_hand():
    """Durations 1, 1.5 (first computations), then 1, 1, 1: pops at t = 1 (worker 0 on w_0),
    1.5 (worker 1 on w_0, stale by 1), 2 (worker 0 on w_1, stale by 1)."""
    prob = _problem(n=2, m=20, d=3)
    eta = 0.1 * problems.stable_step_limit(prob)
    run = events.simulate_async_run(prob, 1, eta, [1.0, 1.5, 1.0, 1.0, 1.0])
    shard = [np.arange(10), np.arange(10, 20)]
    w0 = np.zeros(3)
    w1 = w0 - eta * _gradient(prob, w0, shard[0])
    w2 = w1 - eta * _gradient(prob, w0, shard[1])
    w3 = w2 - eta * _gradient(prob, w1, shard[0])
    np.testing.assert_allclose(run.w, w3, rtol=1e-12)
    np.testing.assert_allclose(run.time, [0.0, 1.0, 1.5, 2.0])
    np.testing.assert_array_equal(run.staleness, [0, 1, 1])
    assert run.error[2] == pytest.approx(_error(prob, w2), rel=1e-9, abs=1e-6)


def test_the_push_that_triggers_an_update_reads_the_new_model():
    """k = 2, n = 2, durations 1, 2, then 5, 5: update 1 from both gradients at w_0 (t = 2);
    worker 0 restarted at t = 1 on w_0 (the model then), worker 1 at t = 2 on w_1 (its push
    made the update); update 2 at t = 7 from g_0(w_0) (stale by 1) and g_1(w_1)."""
    prob = _problem(n=2, m=20, d=3)
    eta = 0.1 * problems.stable_step_limit(prob)
    run = events.simulate_async_run(prob, 2, eta, [1.0, 2.0, 5.0, 5.0, 9.0, 9.0], updates=2)
    shard = [np.arange(10), np.arange(10, 20)]
    w0 = np.zeros(3)
    w1 = w0 - eta / 2 * (_gradient(prob, w0, shard[0]) + _gradient(prob, w0, shard[1]))
    w2 = w1 - eta / 2 * (_gradient(prob, w0, shard[0]) + _gradient(prob, w1, shard[1]))
    np.testing.assert_allclose(run.w, w2, rtol=1e-12)
    np.testing.assert_allclose(run.time, [0.0, 2.0, 7.0])
    np.testing.assert_array_equal(run.staleness, [0.0, 0.5])


def test_refuses_what_it_does_not_model():
    prob = _problem(n=2, m=20, d=3)
    with pytest.raises(ValueError, match="durations"):
        events.simulate_async_run(prob, 2, 1e-3, np.ones(5), updates=2)
    with pytest.raises(ValueError, match="k must be"):
        events.simulate_async_run(prob, 0, 1e-3, np.ones(5))
    pytest.importorskip("sklearn")
    x, labels = data.load_digits()
    logistic = problems.logistic_regression(x[:40, ::8], labels[:40], n=2, reg=0.1, num_classes=10)
    with pytest.raises(TypeError, match="least squares"):
        events.simulate_async_run(logistic, 1, 1e-3, np.ones(5))


# --------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("k", KS)
def test_time_per_update_is_k_mu_over_n(both, k):
    """Exponential durations: the pops are a Poisson process of rate n / mu from t = 0 (the
    superposition of n renewal processes of exponential gaps), so an update of k pops takes
    k mu / n on average (k = 1, fully async: mu / n); both within 4 standard errors over seeds."""
    truth = k * MU / N
    for name, side in zip(("engine", "reference"), both):
        mean, se = _mean_se(side[k]["per_update"])
        assert abs(mean - truth) <= 4 * se, (name, k, mean, truth, se)
        # the per-seed spread is that of a Gamma(k J, n / mu) clock over J: sd = truth / sqrt(k J)
        assert side[k]["per_update"].std(ddof=1) == pytest.approx(truth / np.sqrt(k * UPDATES), rel=0.25)


@pytest.mark.parametrize("k", KS)
def test_engine_and_heap_reference_agree_on_the_error(both, k):
    """Mean error F(w_j) - F* over seeds at a transient and the final update, and the mean
    staleness, within 4 standard errors of the difference (independent random numbers)."""
    eng, ref = both
    for j in CHECKED:
        (a, se_a), (b, se_b) = _mean_se(eng[k]["error"][:, j]), _mean_se(ref[k]["error"][:, j])
        assert abs(a - b) <= 4 * np.hypot(se_a, se_b), (k, j, a, b, se_a, se_b)
    assert ref[k]["error"][:, -1].mean() < 1e-3 * ref[k]["error"][:, 0].mean()  # it learned
    (a, se_a), (b, se_b) = _mean_se(eng[k]["staleness"]), _mean_se(ref[k]["staleness"])
    assert abs(a - b) <= 4 * np.hypot(se_a, se_b), (k, a, b, se_a, se_b)
    if k == 1:  # fully async: each gradient waits for the other n - 1 workers' pushes, about
        assert b == pytest.approx(N - 1, rel=0.1)
