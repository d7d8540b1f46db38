"""The async paper's runtime and error laws: exact identities, and Monte Carlo clocks of the
four schemes (plain NumPy, fixed seeds) against them within Z standard errors."""

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pytest

from fastk_jax.core import delays
from fastk_jax.errors import ConfigError
from fastk_jax.theory import async_theory as rl

Z = 4.0  # standard errors allowed between a Monte Carlo mean and its closed form


class Law(NamedTuple):
    name: str
    sample: Callable  # (rng, shape) -> iid draws
    mean: float
    order_mean: Callable[[int, int], float]  # (k, n) -> E[X_(k:n)]


_exp, _shifted = delays.make_law("exponential", rate=2.0), delays.make_law("shifted_exponential", shift=1.0, rate=1.0)
EXP = Law("exp(2)", lambda rng, s: rng.exponential(0.5, s), float(_exp.mean()), _exp.order_statistic_mean)
SHIFTED = Law(
    "1+exp(1)", lambda rng, s: 1 + rng.exponential(1.0, s), float(_shifted.mean()), _shifted.order_statistic_mean
)
# U(a, b): E[X_(k:n)] = a + (b - a) k / (n + 1)
UNIFORM = Law("U(0.5,1.5)", lambda rng, s: rng.uniform(0.5, 1.5, s), 1.0, lambda k, n: 0.5 + k / (n + 1))
LAWS = [EXP, SHIFTED, UNIFORM]
NLTU = [SHIFTED, UNIFORM]  # new-longer-than-used and not exponential


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(x.size))


def _assert_mean(x: np.ndarray, truth: float) -> None:
    mean, se = _mean_se(x)
    assert abs(mean - truth) <= Z * se, (mean, truth, se)


def _assert_falls_to(x: np.ndarray, floor: float) -> None:
    """Non-increasing, strictly while float64 resolves the distance to the floor, and ends there."""
    step = np.diff(x)
    assert np.all(step <= 0)
    assert np.all(step[x[:-1] - floor > 1e-9 * abs(x[0])] < 0)
    assert x[-1] == pytest.approx(floor, rel=1e-12)


# --- the four schemes' clocks, in NumPy -----------------------------------------------------


def k_sync_times(rng, law: Law, k: int, p: int, n: int) -> np.ndarray:
    """n iid iterations: all P start together, the K-th finish ends the iteration."""
    return np.sort(law.sample(rng, (n, p)), axis=1)[:, k - 1]


def k_batch_sync_times(rng, law: Law, k: int, p: int, n: int) -> np.ndarray:
    """n iid iterations: each learner renews on the same model; the K-th push overall ends it.

    A learner makes at most K of the first K pushes, so K renewals each suffice.
    """
    pushes = np.cumsum(law.sample(rng, (n, p, k)), axis=2).reshape(n, p * k)
    return np.sort(pushes, axis=1)[:, k - 1]


def k_batch_async_intervals(rng, law: Law, k: int, p: int, chains: int, iterations: int, burn: int) -> np.ndarray:
    """Per chain, the mean time of iterations burn .. burn + iterations - 1 (K pushes each) of P
    renewal processes started together at 0."""
    renewals = 2 * k * (burn + iterations) // p + 20
    clocks = np.cumsum(law.sample(rng, (chains, p, renewals)), axis=2)
    pushes = np.sort(clocks.reshape(chains, -1), axis=1)
    start = pushes[:, k * burn - 1] if burn else np.zeros(chains)
    end = pushes[:, k * (burn + iterations) - 1]
    assert np.all(end < clocks[:, :, -1].min(axis=1))  # no learner ran out of renewals
    return (end - start) / iterations


def k_async_chains(rng, law: Law, k: int, p: int, chains: int, iterations: int, burn: int = 5):
    """Per chain, the mean iteration time and the mean fraction of fresh contributions.

    After an update the K learners that contributed read the new model and restart; the others
    keep computing on their stale models; the iteration ends at the K-th completion. A
    contribution is fresh (tau(l, j) = j) when its learner read the model at the last update.
    """
    left = law.sample(rng, (chains, p))  # residual compute time of each learner
    fresh = np.ones((chains, p), bool)
    times, fractions = np.zeros(chains), np.zeros(chains)
    for j in range(burn + iterations):
        first = np.argsort(left, axis=1)[:, :k]
        t = np.take_along_axis(left, first[:, -1:], axis=1)[:, 0]
        if j >= burn:
            times += t
            fractions += np.take_along_axis(fresh, first, axis=1).mean(axis=1)
        left -= t[:, None]
        np.put_along_axis(left, first, law.sample(rng, (chains, k)), axis=1)
        fresh[:] = False
        np.put_along_axis(fresh, first, True, axis=1)
    return times / iterations, fractions / iterations


# --- exact identities -----------------------------------------------------------------------


def test_exponential_order_mean_is_the_harmonic_difference():
    for k, p in [(1, 1), (1, 8), (3, 8), (8, 8), (50, 100)]:
        exact = (delays.harmonic(p) - delays.harmonic(p - k)) / 2.0
        assert rl.exponential_order_mean(k, p, 2.0) == pytest.approx(exact, rel=1e-14)
        assert rl.exponential_order_mean(k, p, 2.0) == pytest.approx(_exp.order_statistic_mean(k, p), rel=1e-14)
        assert rl.k_async_time_exponential(k, p, 2.0) == rl.exponential_order_mean(k, p, 2.0)  # App. B.4.1
        if k < p:  # integral comparison: log((P+1)/(P-K+1)) <= H_P - H_(P-K) <= log(P/(P-K))
            assert np.log((p + 1) / (p - k + 1)) <= rl.exponential_order_mean(k, p)
            assert rl.exponential_order_mean(k, p) <= rl.exponential_order_mean_asymptotic(k, p)
    assert rl.exponential_order_mean_asymptotic(8, 8, 2.0) == pytest.approx(np.log(8) / 2)
    with pytest.raises(ConfigError):
        rl.exponential_order_mean(5, 4)


def test_k_batch_sync_is_erlang_k_p_mu():
    law = rl.k_batch_sync_law(3, 8, 2.0)
    assert law == rl.Erlang(3, 16.0)
    assert law.mean() == pytest.approx(3 / (8 * 2.0), rel=1e-15)
    assert law.variance() == pytest.approx(3 / (8 * 2.0) ** 2, rel=1e-15)


def test_lemma4_and_lemma5_values():
    assert rl.k_batch_async_time(3, 8, 2.0) == pytest.approx(3 * 2.0 / 8, rel=1e-15)
    assert rl.k_batch_async_time(1, 8, 2.0) == pytest.approx(0.25, rel=1e-15)
    assert rl.k_sync_time(3, 8, SHIFTED.order_mean) == SHIFTED.order_mean(3, 8)
    assert rl.k_sync_time(3, 8, 1.25) == 1.25  # a number is taken as E[X_(K:P)]
    assert rl.k_async_time_bound(3, 8, SHIFTED.order_mean) == SHIFTED.order_mean(3, 8)
    np.testing.assert_allclose(rl.expected_runtime([0, 10, 2000], 0.25), [0.0, 2.5, 500.0], rtol=1e-15)


def test_corollary1_ratio_is_p_h_p_and_p_log_p_only_asymptotically():
    for p in (1, 2, 8, 100):
        h = delays.harmonic(p)
        assert rl.sync_async_speedup_exponential(p) == pytest.approx(p * h, rel=1e-14)
        for rate in (0.5, 3.0):  # Theorem 1 with exponentials, whatever the rate
            law = delays.make_law("exponential", rate=rate)
            assert rl.sync_async_speedup(p, 1 / rate, law.order_statistic_mean) == pytest.approx(p * h, rel=1e-13)
    ps = np.array([2, 8, 100, 10**4, 10**6])
    ratio = np.array([rl.sync_async_speedup_exponential(p) / rl.sync_async_speedup_asymptotic(p) for p in ps])
    assert np.all(ratio > 1) and np.all(np.diff(ratio) < 0)
    # H_P = log P + euler_gamma + 1/(2P) - O(1/P^2): the ratio is 1 + 0.577/log P, still 1.04 at P = 10^6
    np.testing.assert_array_less(np.abs(ratio - 1 - np.euler_gamma / np.log(ps)), 1 / (2 * ps * np.log(ps)))
    assert ratio[1] > 1.3 and ratio[-1] > 1.04


def test_theorem2_ratio_for_exponentials():
    p = 16
    exact = np.array([rl.batch_speedup_exponential(k, p) for k in range(1, p + 1)])
    assert exact[0] == pytest.approx(1.0, rel=1e-15)
    assert exact[-1] == pytest.approx(delays.harmonic(p), rel=1e-14)  # "up to log P" at K = P
    assert np.all(np.diff(exact) > 0)  # grows with K / P
    for k in range(1, p + 1):
        general = rl.batch_speedup(k, p, EXP.mean, EXP.order_mean)
        assert general == pytest.approx(exact[k - 1], rel=1e-13)
        # K-async over K-batch-async, and K-sync over K-batch-sync, give the same ratio
        async_ratio = rl.k_async_time_exponential(k, p, 2.0) / rl.k_batch_async_time(k, p, EXP.mean)
        sync_ratio = rl.k_sync_time(k, p, EXP.order_mean) / rl.k_batch_sync_law(k, p, 2.0).mean()
        assert async_ratio == pytest.approx(general, rel=1e-13) and sync_ratio == pytest.approx(general, rel=1e-13)
        if k < p:
            assert rl.batch_speedup_asymptotic(k, p) >= exact[k - 1]
    assert rl.batch_speedup_asymptotic(p, p) == pytest.approx(np.log(p))


# --- Monte Carlo: runtime per iteration -----------------------------------------------------


@pytest.mark.parametrize("law", LAWS, ids=lambda law: law.name)
@pytest.mark.parametrize("k,p", [(1, 4), (2, 4), (4, 4), (3, 8)])
def test_k_sync_mean_is_the_order_statistic(law, k, p):
    t = k_sync_times(np.random.default_rng(10 * k + p), law, k, p, 40_000)
    _assert_mean(t, rl.k_sync_time(k, p, law.order_mean))


@pytest.mark.parametrize("k,p", [(1, 4), (2, 4), (5, 4), (3, 8)])
def test_k_batch_sync_exponential_is_erlang(k, p):
    """K > P is allowed in K-batch-sync (learners push several mini-batches); Erlang still."""
    t = k_batch_sync_times(np.random.default_rng(k + p), EXP, k, p, 60_000)
    erlang = rl.k_batch_sync_law(k, p, 2.0)
    _assert_mean(t, erlang.mean())
    dev = t - t.mean()  # the sample variance's SE from the fourth central moment
    se_var = np.sqrt((np.mean(dev**4) - np.mean(dev**2) ** 2) / t.size)
    assert abs(t.var(ddof=1) - erlang.variance()) <= Z * se_var


@pytest.mark.parametrize("law", NLTU, ids=lambda law: law.name)
def test_k_batch_sync_is_no_slower_than_k_sync(law):
    """Sec. 2.3: no learner idles, and every learner's first push counts, so T <= X_(K:P)."""
    mean, se = _mean_se(k_batch_sync_times(np.random.default_rng(3), law, 3, 4, 40_000))
    assert mean <= rl.k_sync_time(3, 4, law.order_mean) + Z * se


@pytest.mark.parametrize("law", LAWS, ids=lambda law: law.name)
@pytest.mark.parametrize("k,p", [(1, 4), (2, 4), (3, 8)])
def test_k_batch_async_long_run_interval_is_k_mean_over_p(law, k, p):
    """Lemma 5; the burn-in lets the superposed renewal processes forget their common start."""
    per_chain = k_batch_async_intervals(np.random.default_rng(k * p), law, k, p, 2000, 100, 50)
    _assert_mean(per_chain, rl.k_batch_async_time(k, p, law.mean))


@pytest.mark.parametrize("k,p", [(1, 4), (2, 4), (3, 8)])
def test_k_async_exponential_is_exact_and_p0_is_k_over_p(k, p):
    """App. B.4.1: E[T] = E[X_(K:P)]; Lemma 2's memoryless argument: Pr(fresh) = K / P."""
    times, fresh = k_async_chains(np.random.default_rng(7 * k + p), EXP, k, p, 4000, 50)
    _assert_mean(times, rl.k_async_time_exponential(k, p, 2.0))
    _assert_mean(fresh, rl.p0_exponential(p, k))


@pytest.mark.parametrize("law", NLTU, ids=lambda law: law.name)
def test_k_async_new_longer_than_used_is_below_lemma6_bound(law):
    rng = np.random.default_rng(11)
    times, _ = k_async_chains(rng, law, 2, 4, 4000, 50)
    mean, se = _mean_se(times)
    assert mean + Z * se < rl.k_async_time_bound(2, 4, law.order_mean)  # strictly below, as printed
    # K = P: every learner restarts at each update, so Lemma 6 holds with equality
    times, _ = k_async_chains(rng, law, 4, 4, 4000, 50)
    _assert_mean(times, rl.k_async_time_bound(4, 4, law.order_mean))
    # K = 1 is Async SGD = 1-batch-async: Lemma 5's E[X] / P; and Lemma 2: Pr(fresh) <= 1/P
    times, fresh = k_async_chains(rng, law, 1, 4, 4000, 50, burn=100)  # a longer start-up transient
    _assert_mean(times, rl.k_batch_async_time(1, 4, law.mean))
    mean, se = _mean_se(fresh)
    assert mean <= 1 / 4 + Z * se


# --- error bounds ---------------------------------------------------------------------------

CONSTS = rl.TradeoffConstants(L=1.0, c=0.1, sigma2=1.0, M_G=0.5, m=1, eta=0.05, initial_gap=1.0)


def test_k_sync_error_lemma3_limits_and_monotone():
    k = 4
    floor = rl.k_sync_error_floor(CONSTS, k)
    assert floor == pytest.approx(0.05 * 1.0 * 1.0 / (2 * 0.1 * 4 * 1), rel=1e-15)
    j = np.arange(0, 20_001)
    bound = rl.k_sync_error(j, CONSTS, k)
    assert bound[0] == pytest.approx(CONSTS.initial_gap, rel=1e-15)
    _assert_falls_to(bound, floor)
    early = bound[:1000] - floor  # the distance to the floor shrinks by 1 - eta c per iteration
    np.testing.assert_allclose(early[1:] / early[:-1], 1 - CONSTS.eta * CONSTS.c, rtol=1e-9)
    below = rl.k_sync_error(j, CONSTS._replace(initial_gap=0.1 * floor), k)  # starts under the floor
    _assert_falls_to(-below, -floor)  # rises to the floor


def test_k_async_error_theorem3_limits_and_decay_rate():
    k, gamma, p0 = 2, 0.05, rl.p0_exponential(8, 2)
    g = rl.gamma_prime(gamma, p0)
    assert g == pytest.approx(1 - 0.05 + 0.125, rel=1e-15)
    floor = rl.k_async_error_floor(CONSTS, k, gamma, p0)
    assert floor == pytest.approx(0.05 * 1.0 * 1.0 / (2 * 0.1 * g * 2 * 1), rel=1e-15)
    j = np.arange(0, 20_001)
    bound = rl.k_async_error(j, CONSTS, k, gamma, p0)
    assert bound[0] == pytest.approx(1.0, rel=1e-15)
    _assert_falls_to(bound, floor)
    early = bound[:1000] - floor
    np.testing.assert_allclose(early[1:] / early[:-1], 1 - CONSTS.eta * CONSTS.c * g, rtol=1e-9)
    # Sec. 3.2: K-async decays faster per iteration than K-sync iff p0 / 2 > gamma
    assert (g > 1) == (p0 / 2 > gamma)
    assert rl.gamma_prime(0.2, p0) < 1


def test_learning_rate_conditions_are_enforced():
    limit = rl.lr_limit_sync(CONSTS, 4)
    assert limit == pytest.approx(1 / (2 * (0.5 / 4 + 1)))
    with pytest.raises(ConfigError, match="Lemma 3"):
        rl.k_sync_error(1, CONSTS._replace(eta=1.01 * limit), 4)
    # Theorem 3's printed 1/(2L(M_G/(Km) + 1/K)) is larger than what its proof supports
    printed = 1 / (2 * CONSTS.L * (CONSTS.M_G / (4 * CONSTS.m) + 1 / 4))
    derived = rl.lr_limit_async(CONSTS, 4, 0.1, 0.25)
    assert derived == pytest.approx(1 / (2 * (0.5 / 4 + 1))) and derived < printed
    with pytest.raises(ConfigError, match="Theorem 3"):
        rl.k_async_error(1, CONSTS._replace(eta=0.5 * (derived + printed)), 4, 0.1, 0.25)
    with pytest.raises(ConfigError):
        rl.gamma_prime(1.0, 0.0)
    with pytest.raises(ConfigError):
        rl.k_sync_error(1, CONSTS._replace(c=2.0), 4)  # c > L


def test_variable_lr_theorem4_unrolls_the_recursion():
    p0, cc = 0.125, 1e-3
    rng = np.random.default_rng(0)
    etas = rng.uniform(0.01, 0.3, 40)
    bounds = rl.variable_lr_error(etas, CONSTS, p0, cc)
    rho = etas * (1 + p0 / 2) * CONSTS.c
    delta = etas**2 * CONSTS.L * CONSTS.sigma2 / (2 * CONSTS.m) + cc * CONSTS.L**2 / 2
    for big_j in (0, 1, 17, 40):  # eq. (44): prod_{j<J}(1-rho_j) e0 + sum_i prod_{i<j<J}(1-rho_j) Delta_i
        unrolled = np.prod(1 - rho[:big_j]) * CONSTS.initial_gap
        unrolled += sum(np.prod(1 - rho[i + 1 : big_j]) * delta[i] for i in range(big_j))
        assert bounds[big_j] == pytest.approx(unrolled, rel=1e-12)
    # constant eta: floor Delta / rho, reached geometrically at the rate 1 - rho
    eta, steps = 0.05, 8000
    const = rl.variable_lr_error(np.full(steps, eta), CONSTS, p0, cc)
    r, d = eta * (1 + p0 / 2) * CONSTS.c, eta**2 * CONSTS.L * CONSTS.sigma2 / (2 * CONSTS.m) + cc * CONSTS.L**2 / 2
    np.testing.assert_allclose(
        const, d / r + (1 - r) ** np.arange(steps + 1) * (CONSTS.initial_gap - d / r), rtol=1e-10
    )
    _assert_falls_to(const, d / r)
    with pytest.raises(ConfigError, match="Theorem 4"):
        rl.variable_lr_error(np.array([0.1, 0.5]), CONSTS, p0, cc)  # 0.5 > 1/(2L(M_G/m + 1))


def test_fig7_async_falls_faster_to_a_higher_floor():
    p, gamma = 8, 0.2
    law = delays.make_law("exponential", rate=1.0)
    p0 = rl.p0_exponential(p)
    t = np.linspace(0.0, 2000.0, 4001)
    curves = rl.sync_async_tradeoff(t, CONSTS, p, 1.0, law.order_statistic_mean, gamma, p0)
    assert curves.synchronous[0] == curves.asynchronous[0] == CONSTS.initial_gap
    assert np.all(np.diff(curves.synchronous) < 0) and np.all(np.diff(curves.asynchronous) <= 0)
    # J = t / E[T]: t = J H_P for Sync, t = J / P for Async
    j = np.array([0.0, 10.0, 300.0])
    np.testing.assert_allclose(
        rl.sync_async_tradeoff(j * delays.harmonic(p), CONSTS, p, 1.0, law.order_statistic_mean, gamma, p0).synchronous,
        rl.k_sync_error(j, CONSTS, p),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        rl.sync_async_tradeoff(j / p, CONSTS, p, 1.0, law.order_statistic_mean, gamma, p0).asynchronous,
        rl.k_async_error(j, CONSTS, 1, gamma, p0),
        rtol=1e-12,
    )
    far = rl.sync_async_tradeoff(np.array([1e7]), CONSTS, p, 1.0, law.order_statistic_mean, gamma, p0)
    assert far.synchronous[0] == pytest.approx(rl.k_sync_error_floor(CONSTS, p), rel=1e-12)
    assert far.asynchronous[0] == pytest.approx(rl.k_async_error_floor(CONSTS, 1, gamma, p0), rel=1e-12)
    assert far.asynchronous[0] > far.synchronous[0]
    # Async is ahead at first and behind at the end: the curves cross once
    gap = np.sign(curves.asynchronous[1:] - curves.synchronous[1:])
    assert gap[0] < 0 and gap[-1] > 0 and np.count_nonzero(np.diff(gap)) == 1
