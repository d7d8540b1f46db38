"""Order-statistic moments against closed forms, against each other and against Monte Carlo."""

import itertools
import math

import jax
import numpy as np
import pytest

from fastk_jax.core.delays import make_law
from fastk_jax.errors import ConfigError
from fastk_jax.theory.order_stats import order_statistic_moments

ORDERS = [(1, 1), (1, 5), (3, 5), (5, 5), (1, 50), (10, 50), (49, 50), (50, 50)]


def assert_moments(got, mean, var, rel):
    assert got.mean == pytest.approx(mean, rel=rel, abs=0)
    assert got.var == pytest.approx(var, rel=rel, abs=0)


def assert_monte_carlo(got, x, z=4.0):
    """|sample moment - moment| <= z standard errors of the sample moment, x the draws of X_(k:n)."""
    deviation = (x - x.mean()) ** 2
    assert abs(x.mean() - got.mean) <= z * x.std(ddof=1) / math.sqrt(x.size)
    assert abs(deviation.mean() - got.var) <= z * deviation.std(ddof=1) / math.sqrt(x.size)


def kth_smallest(draws, k):
    return np.partition(draws, k - 1, axis=1)[:, k - 1]


@pytest.mark.parametrize("k,n", ORDERS)
def test_exponential_exact(k, n):
    law = make_law("exponential", rate=0.5)
    got = order_statistic_moments(law, k, n)
    assert got.method == "exact"
    i = np.arange(n - k + 1, n + 1)
    assert_moments(got, law.order_statistic_mean(k, n), np.sum(1 / (0.5 * i) ** 2), rel=1e-14)
    shifted = order_statistic_moments(make_law("shifted_exponential", shift=3.0, rate=0.5), k, n)
    assert_moments(shifted, 3.0 + got.mean, got.var, rel=1e-14)


@pytest.mark.parametrize("k,n", ORDERS)
def test_quadrature_on_weibull_of_shape_one_matches_exponential(k, n):
    got = order_statistic_moments(make_law("weibull", shape=1.0, scale=2.0), k, n)
    assert got.method == "quadrature"
    exact = order_statistic_moments(make_law("exponential", rate=0.5), k, n)
    assert_moments(got, exact.mean, exact.var, rel=1e-8)


@pytest.mark.parametrize("k,n", ORDERS)
def test_uniform_is_beta(k, n):
    law = make_law("uniform", low=0.5, high=2.5)
    # X_(k:n) = low + (high - low) B with B ~ Beta(k, n-k+1)
    alpha, beta = k, n - k + 1
    mean, var = alpha / (alpha + beta), alpha * beta / ((alpha + beta) ** 2 * (alpha + beta + 1))
    assert_moments(order_statistic_moments(law, k, n), 0.5 + 2.0 * mean, 4.0 * var, rel=1e-14)
    assert_moments(order_statistic_moments(law, k, n, np.ones(n)), 0.5 + 2.0 * mean, 4.0 * var, rel=1e-8)


def pareto_raw_moment(shape, scale, k, n, p):
    """E[X_(k:n)^p] = scale^p G(n+1) G(n-k+1-p/a) / (G(n-k+1) G(n+1-p/a)): X_(k:n) = scale V^(-1/a)
    with V = 1 - U_(k:n) ~ Beta(n-k+1, k), and E[V^-q] = B(n-k+1-q, k) / B(n-k+1, k)."""
    q = p / shape
    return scale**p * math.exp(
        math.lgamma(n + 1) + math.lgamma(n - k + 1 - q) - math.lgamma(n - k + 1) - math.lgamma(n + 1 - q)
    )


@pytest.mark.parametrize("shape", [0.5, 1.5, 3.0, 20.0])
@pytest.mark.parametrize("k,n", [(1, 5), (3, 5), (10, 50), (50, 50)])
def test_pareto_closed_form_and_quadrature(shape, k, n):
    law = make_law("pareto", shape=shape, scale=2.0)
    exact = order_statistic_moments(law, k, n)
    quadrature = order_statistic_moments(law, k, n, np.ones(n))
    assert (exact.method, quadrature.method) == ("exact", "quadrature")
    tail = shape * (n - k + 1)
    mean = pareto_raw_moment(shape, 2.0, k, n, 1) if tail > 1 else math.inf
    assert exact.mean == pytest.approx(mean, rel=1e-12, abs=0)
    if tail > 2:
        # E[X^2] - E[X]^2 from lgamma values (absolute error ~1e-13) loses the digits of E[X^2] / Var;
        # the module's product form does not (the quadrature checks it to 1e-8 below)
        second = pareto_raw_moment(shape, 2.0, k, n, 2)
        assert exact.var == pytest.approx(second - mean**2, rel=1e-13 * second / exact.var, abs=0)
    else:
        assert exact.var == math.inf
    assert_moments(quadrature, exact.mean, exact.var, rel=1e-8)


@pytest.mark.parametrize("slowdown", [None, [1.0, 4.0, 1.0, 4.0]])
def test_pareto_moments_are_infinite_below_the_threshold(slowdown):
    def finite(shape, k):  # (mean, variance) finite?
        got = order_statistic_moments(make_law("pareto", shape=shape, scale=1.0), k, 4, slowdown)
        return math.isfinite(got.mean), math.isfinite(got.var)

    # E[X_(k:n)^p] < inf iff shape * (n-k+1) > p, here n = 4
    assert finite(1.0, 4) == (False, False)
    assert finite(1.5, 4) == (True, False)
    assert finite(1.0, 3) == (True, False)
    assert finite(1.5, 3) == (True, True)
    assert finite(0.25, 1) == (False, False)
    assert finite(0.3, 1) == (True, False)


@pytest.mark.parametrize(
    "name,params",
    [
        ("lognormal", {"mu": 0.0, "sigma": 0.5}),
        ("lognormal", {"mu": 1.0, "sigma": 1.5}),
        ("hyperexponential", {"probs": [0.9, 0.1], "rates": [2.0, 0.2]}),
    ],
)
def test_lognormal_and_hyperexponential_against_monte_carlo(name, params):
    n, draws = 8, 200_000
    rng = np.random.default_rng(0)
    if name == "lognormal":
        x = rng.lognormal(params["mu"], params["sigma"], (draws, n))
    else:
        branch = rng.choice(len(params["probs"]), size=(draws, n), p=params["probs"])
        x = rng.exponential(1.0 / np.asarray(params["rates"])[branch])
    law = make_law(name, **params)
    for k in (1, 3, 8):
        assert_monte_carlo(order_statistic_moments(law, k, n), kth_smallest(x, k))


@pytest.mark.parametrize("k,n", [(1, 1), (2, 7), (20, 20)])
def test_hyperexponential_of_one_branch_is_exponential(k, n):
    got = order_statistic_moments(make_law("hyperexponential", probs=[1.0], rates=[3.0]), k, n)
    exact = order_statistic_moments(make_law("exponential", rate=3.0), k, n)
    assert_moments(got, exact.mean, exact.var, rel=1e-10)


@pytest.mark.parametrize(
    "name,params",
    [
        ("exponential", {"rate": 2.0}),
        ("shifted_exponential", {"shift": 1.0, "rate": 1.0}),
        ("weibull", {"shape": 0.5, "scale": 2.0}),
        ("lognormal", {"mu": 0.0, "sigma": 0.5}),
    ],
)
def test_unit_slowdown_equals_iid(name, params):
    law = make_law(name, **params)
    for k, n in [(1, 6), (4, 6), (6, 6), (25, 50)]:
        iid = order_statistic_moments(law, k, n)
        assert_moments(order_statistic_moments(law, k, n, np.ones(n)), iid.mean, iid.var, rel=1e-8)


def test_minimum_of_exponentials_of_different_rates():
    # min_i s_i X_i with X_i ~ Exp(rate) is Exp(sum_i rate / s_i)
    slowdown = np.array([1.0, 1.0, 2.0, 5.0, 0.5])
    total_rate = np.sum(1.5 / slowdown)
    got = order_statistic_moments(make_law("exponential", rate=1.5), 1, 5, slowdown)
    assert_moments(got, 1 / total_rate, 1 / total_rate**2, rel=1e-10)


def test_two_speeds_against_monte_carlo():
    n, draws = 10, 200_000
    slowdown = np.repeat([1.0, 3.0], n // 2)
    x = slowdown * np.random.default_rng(1).exponential(1.0, (draws, n))
    law = make_law("exponential", rate=1.0)
    for k in (1, 5, 8, 10):
        assert_monte_carlo(order_statistic_moments(law, k, n, slowdown), kth_smallest(x, k))


@pytest.mark.parametrize(
    "k,n,slowdown,field",
    [
        (0, 5, None, "k"),
        (6, 5, None, "k"),
        (2, 3, [1.0, 2.0], "delays.slowdown"),
        (2, 2, [1.0, 0.0], "delays.slowdown"),
    ],
)
def test_bad_arguments(k, n, slowdown, field):
    with pytest.raises(ConfigError) as error:
        order_statistic_moments(make_law("exponential", rate=1.0), k, n, slowdown)
    assert error.value.field == field


# ---------------------------------------------------------------- traces (resampled measured times)

TRACE_COLUMNS = [[1.0, 2.5], [0.5, 3.0, 3.0], [2.0, 2.5]]  # ragged; 3.0 twice: weight 2/3


def trace_law(columns):
    rows = max(map(len, columns))
    table = np.array([[c[r] if r < len(c) else c[0] for c in columns] for r in range(rows)])
    return make_law("trace", table=table, counts=[len(c) for c in columns])


def enumerated_moments(columns, k, slowdown):
    """E and Var of X_(k:n) by enumerating every equally likely combination of entries."""
    values = [sorted(np.array(combo) * slowdown)[k - 1] for combo in itertools.product(*columns)]
    return np.mean(values), np.var(values)


@pytest.mark.parametrize("slowdown", [None, [1.0, 2.0, 0.7], [1.0, 0.5, 1.25]])  # the last: 2.5 = 1.25 x 2.0 ties
def test_trace_moments_equal_enumeration(slowdown):
    law = trace_law(TRACE_COLUMNS)
    for k in (1, 2, 3):
        got = order_statistic_moments(law, k, 3, slowdown)
        mean, var = enumerated_moments(TRACE_COLUMNS, k, np.ones(3) if slowdown is None else np.array(slowdown))
        assert got.method == "exact"
        assert_moments(got, mean, var, rel=1e-12)


def test_shared_trace_is_iid_resampling():
    pool = [0.25, 1.0, 1.0, 4.0]
    law = trace_law([pool])
    for k in (1, 3, 4):
        mean, var = enumerated_moments([pool] * 4, k, np.ones(4))
        assert_moments(order_statistic_moments(law, k, 4), mean, var, rel=1e-12)
    with pytest.raises(ConfigError):
        order_statistic_moments(trace_law(TRACE_COLUMNS), 1, 4)  # 3 columns cannot serve 4 workers


def test_trace_moments_against_the_sampler():
    rng = np.random.default_rng(5)
    columns = [list(rng.lognormal(0.0, 0.5, size)) for size in (5, 9, 3, 12, 7, 1)]
    law, slowdown = trace_law(columns), np.array([1.0, 1.0, 2.0, 1.0, 0.5, 3.0])
    x = slowdown * np.asarray(law.sample(jax.random.key(6), (6, 100_000)), np.float64).T
    for k in (1, 3, 6):
        assert_monte_carlo(order_statistic_moments(law, k, 6, slowdown), kth_smallest(x, k))
