"""Lemma 1 and Theorem 1 of the adaptive paper, and Example 1 against its printed numbers."""

import math
from fractions import Fraction

import jax.numpy as jnp
import numpy as np
import pytest

from fastk_jax.core import policies
from fastk_jax.errors import ConfigError
from fastk_jax.theory import fastest_k_bounds as bounds

brentq = pytest.importorskip("scipy.optimize").brentq

C = bounds.EXAMPLE1  # eta 0.001, L 2, c 1, sigma^2 10, s 10, gap0 100
N = 5


def _mu(rate, n=N):
    """E[X_(k:n)] of Exp(rate), eq. (7), summed exactly."""
    return np.array([float(sum(Fraction(1, i) for i in range(n - k + 1, n + 1))) / rate for k in range(1, n + 1)])


def _floor(k, c=C):
    return c.eta * c.L * c.sigma2 / (2 * c.c * k * c.s)


def _theorem1_by_thresholds(c, mu):
    """t_k from the threshold form of (23): switch when the bound reaches e*_k."""
    a = -math.log(1 - c.eta * c.c)
    t, e, out = 0.0, c.gap0, []
    for k in range(1, len(mu)):
        fk, fn = _floor(k, c), _floor(k + 1, c)
        e_star = (mu[k] * fk - mu[k - 1] * fn) / (mu[k] - mu[k - 1])
        t += mu[k - 1] / a * math.log((e - fk) / (e_star - fk))
        e = e_star
        out.append(t)
    return np.array(out)


def _fixed_crossings(c, mu):
    """Crossing of the fixed-k and fixed-(k+1) bounds of Proposition 1 at J = t / mu_k."""

    def e(t, k):
        return _floor(k, c) + (1 - c.eta * c.c) ** (t / mu[k - 1]) * (c.gap0 - _floor(k, c))

    def d(t, k):
        return e(t, k) - e(t, k + 1)

    hi = 100 * mu[-1] / c.eta
    return np.array([brentq(d, 1e-6 * hi, hi, args=(k,), xtol=1e-14, rtol=1e-15) for k in range(1, len(mu))])


def test_bound_starts_at_gap_and_is_proposition1_at_j_iterations():
    mu = _mu(0.2)
    k = np.arange(1, N + 1)
    np.testing.assert_allclose(bounds.error_bound(0.0, k, C, mu), C.gap0, rtol=1e-15)
    for j in (1, 10, 5000):
        prop1 = _floor(k) + (1 - C.eta * C.c) ** j * (C.gap0 - _floor(k))
        np.testing.assert_allclose(bounds.error_bound(j * mu, k, C, mu), prop1, rtol=1e-12)


def test_bound_decreases_to_its_floor():
    mu = _mu(0.2)
    for k in range(1, N + 1):
        t = np.linspace(0, 20 * mu[k - 1] / C.eta, 1001)  # the transient, before e - F_k underflows
        e = bounds.error_bound(t, k, C, mu[k - 1])
        assert np.all(np.diff(e) < 0) and np.all(e > _floor(k))
        np.testing.assert_allclose(bounds.error_bound(1e9, k, C, mu[k - 1]), 0.001 / k, rtol=1e-12)
    np.testing.assert_allclose(bounds.error_floor(np.arange(1, N + 1), C), 0.001 / np.arange(1, N + 1), rtol=1e-15)


def test_switching_times_increase_and_equalise_the_rates():
    mu = _mu(0.2)
    tk = bounds.switching_times(C, mu)
    assert tk.shape == (N - 1,) and np.all(np.diff(tk) > 0) and tk[0] > 0
    a = -math.log(1 - C.eta * C.c)
    for k, t in enumerate(tk, start=1):
        e = bounds.adaptive_bound(t, C, mu)
        # (23) with equality: |de/dt| of k+1 restarted at e equals that of k
        rate_k, rate_next = a / mu[k - 1] * (e - _floor(k)), a / mu[k] * (e - _floor(k + 1))
        np.testing.assert_allclose(rate_next, rate_k, rtol=1e-9)
        # and the adaptive bound is C^1 there: one-sided slopes agree
        h = 1e-3
        left = (bounds.adaptive_bound(t, C, mu) - bounds.adaptive_bound(t - h, C, mu)) / h
        right = (bounds.adaptive_bound(t + h, C, mu) - bounds.adaptive_bound(t, C, mu)) / h
        np.testing.assert_allclose(right, left, rtol=1e-4)
        np.testing.assert_allclose(-left, rate_k, rtol=1e-4)
        assert bounds.adaptive_k(t - h, C, mu) == k and bounds.adaptive_k(t, C, mu) == k + 1


def test_adaptive_bound_is_below_every_fixed_bound():
    mu = _mu(0.2)
    t = np.linspace(0, 2e5, 4001)
    fixed = bounds.error_bound(t, np.arange(1, N + 1)[:, None], C, mu[:, None])
    assert np.all(bounds.adaptive_bound(t, C, mu) <= fixed.min(0) * (1 + 1e-12))
    # strictly below once k = 2 has started: at t = 30000 it is less than half the best fixed bound
    assert bounds.adaptive_bound(30_000.0, C, mu) < 0.5 * bounds.error_bound(30_000.0, np.arange(1, N + 1), C, mu).min()


def test_switch_at_once_when_the_next_k_is_already_faster():
    mu = _mu(0.2)
    c = C._replace(gap0=0.0012)  # below e*_1 = 0.0014: k = 2 decreases the bound faster from t = 0
    tk = bounds.switching_times(c, mu)
    assert tk[0] == 0.0 and np.all(np.diff(tk) > 0)
    # then k = 2 runs from gap0 down to e*_2
    e_star2 = (mu[2] * _floor(2) - mu[1] * _floor(3)) / (mu[2] - mu[1])
    t2 = mu[1] / -math.log(1 - C.eta * C.c) * math.log((c.gap0 - _floor(2)) / (e_star2 - _floor(2)))
    np.testing.assert_allclose(tk[1], t2, rtol=1e-12)


def test_bound_optimal_policy_is_the_theorem1_schedule():
    mu = _mu(0.2)
    p = bounds.bound_optimal_policy(C, mu)
    policies.check(p, N)
    assert int(p.k0) == 1 and bool(p.by_time) and not bool(p.adaptive)
    np.testing.assert_array_equal(p.at, bounds.switching_times(C, mu))
    np.testing.assert_array_equal(p.ks, [2, 3, 4, 5])
    state = policies.init(p, 1, jnp.float32)
    for t in (0.0, 12_000.0, 13_000.0, 16_000.0, 20_000.0, 30_000.0):
        k = int(policies.current_k(p, state, jnp.float32(t), jnp.int32(0)))
        assert k == bounds.adaptive_k(t, C, mu)


def test_fixed_k_changes_are_where_the_argmin_changes():
    mu = _mu(0.2)
    times, ks = bounds.fixed_k_changes(C, mu)
    np.testing.assert_array_equal(ks, [1, 2, 3, 4, 5])
    assert times[0] == 0 and np.all(np.diff(times) > 0)
    for t, k in zip(times[1:], ks[1:]):
        assert bounds.best_fixed_k(t * (1 - 1e-9), C, mu) == k - 1
        assert bounds.best_fixed_k(t * (1 + 1e-9), C, mu) == k
    # the adaptive schedule switches earlier than the best fixed k changes (Fig. 2b vs 2a)
    assert np.all(bounds.switching_times(C, mu) < times[1:])


@pytest.mark.parametrize("rate", [0.2, 5.0])
def test_example1_regression(rate):
    mu = _mu(rate)
    ex = bounds.example1(rate=rate)
    np.testing.assert_allclose(ex["mean_times"], mu, rtol=1e-12)
    np.testing.assert_allclose(ex["floors"], [0.001, 0.0005, 0.001 / 3, 0.00025, 0.0002], rtol=1e-12)
    np.testing.assert_allclose(ex["switching_times"], _theorem1_by_thresholds(C, mu), rtol=1e-9)
    np.testing.assert_allclose(ex["fixed_times"][1:], _fixed_crossings(C, mu), rtol=1e-9)
    np.testing.assert_array_equal(ex["fixed_ks"], [1, 2, 3, 4, 5])
    t = ex["t"]
    assert ex["bounds"].shape == (N, t.size)
    np.testing.assert_array_equal(ex["best_fixed_k"], 1 + np.argmin(ex["bounds"], axis=0))
    np.testing.assert_array_equal(ex["adaptive_k"], 1 + np.searchsorted(ex["switching_times"], t, side="right"))


def test_example1_as_stated_is_25_times_the_printed_times():
    stated, fast = bounds.example1(), bounds.example1(rate=5.0)
    for key in ("switching_times", "fixed_times"):
        np.testing.assert_allclose(stated[key], 25 * fast[key], rtol=1e-9)
    assert round(stated["fixed_times"][1]) == 27450 and round(stated["switching_times"][0]) == 12423


def test_example1_printed_numbers_are_rate_5_and_ceilings():
    printed = bounds.EXAMPLE1_PRINTED
    times = bounds.example1(rate=5.0)["fixed_times"]  # mean delay 1/5 instead of 5
    assert math.ceil(times[1]) == printed["fixed_k1_until"]  # 1097.997
    assert math.ceil(times[-1]) == printed["fixed_k5_after"]  # 6622.300; rounding would print 6622
    # ... but Theorem 1 at rate 5 gives 496.9, not 589
    assert round(bounds.example1(rate=5.0)["switching_times"][0]) == 497
    # 589 needs F_1 / gap0 ten times smaller, which moves the fixed-k changes away from print
    for c in (C._replace(gap0=1000.0), C._replace(s=100.0), C._replace(sigma2=1.0)):
        ex = bounds.example1(rate=5.0, constants=c)
        assert round(ex["switching_times"][0]) == printed["adaptive_k1_until"]  # 588.977
        assert math.ceil(ex["fixed_times"][1]) == 1306 and math.ceil(ex["fixed_times"][-1]) == 7674


def test_bound_probability_is_the_lemma1_expression_and_unit_free():
    t, eps, mu_k, var_k = 500.0, 0.1, 0.04, 0.04**2
    np.testing.assert_allclose(
        bounds.bound_probability(t, eps, mu_k, var_k), 1 - var_k / eps**2 * (2 / (t * mu_k) + 1 / t**2), rtol=1e-15
    )
    np.testing.assert_allclose(
        bounds.bound_probability(25 * t, eps, 25 * mu_k, 25**2 * var_k),
        bounds.bound_probability(t, eps, mu_k, var_k),
        rtol=1e-13,
    )


def test_bound_needs_eta_c_below_one():
    with pytest.raises(ConfigError, match="bounds.eta"):
        bounds.error_bound(1.0, 1, C._replace(eta=1.0), 1.0)
