"""Delay laws against their closed-form means, and the exponential order statistics."""

import jax
import numpy as np
import pytest

from fastk_jax.core import delays
from fastk_jax.errors import ConfigError

LAWS = [
    ("exponential", {"rate": 2.0}),
    ("shifted_exponential", {"shift": 1.0, "rate": 1.0}),
    ("pareto", {"shape": 3.0, "scale": 1.0}),
    ("uniform", {"low": 0.5, "high": 1.5}),
    ("lognormal", {"mu": 0.0, "sigma": 0.5}),
    ("weibull", {"shape": 1.5, "scale": 2.0}),
    ("hyperexponential", {"probs": [0.9, 0.1], "rates": [2.0, 0.2]}),
    ("trace", {"table": [[1.0], [2.0], [4.0], [4.0]], "counts": [4]}),  # one pool shared by all workers
]


@pytest.mark.parametrize("name,params", LAWS)
def test_sample_mean_matches_closed_form(name, params):
    law = delays.make_law(name, **params)
    x = np.asarray(law.sample(jax.random.key(0), (200_000,)), np.float64)
    assert np.all(x > 0)
    se = x.std(ddof=1) / np.sqrt(x.size)
    assert abs(x.mean() - float(law.mean())) < 5 * se


def test_constant_law_is_its_value_and_its_order_statistics_the_sorted_slowdowns():
    from fastk_jax.theory.order_stats import order_statistic_moments

    law = delays.make_law("constant", value=2.5)
    np.testing.assert_array_equal(np.asarray(law.sample(jax.random.key(0), (4, 3))), 2.5)
    assert float(law.mean()) == 2.5 and law.order_statistic_mean(3, 7) == 2.5
    slowdown = np.sqrt(np.arange(1, 8))[::-1]  # tau_i = sqrt(i), given in any order
    for k in (1, 4, 7):
        assert order_statistic_moments(law, k, 7, slowdown) == (2.5 * np.sqrt(k), 0.0, "exact")
    with pytest.raises(ConfigError, match="value"):
        delays.make_law("constant", value=0.0)


@pytest.mark.parametrize("name,params", LAWS + [("constant", {"value": 1.0})])
def test_parameters_vmap(name, params):
    law = delays.make_law(name, **params)
    stacked = jax.tree.map(lambda v: np.stack([v, v]), law)
    draws = jax.vmap(lambda l, k: l.sample(k, (3,)))(stacked, jax.random.split(jax.random.key(1), 2))
    assert draws.shape == (2, 3)


def test_exponential_order_statistic_closed_form_and_monte_carlo():
    law = delays.make_law("exponential", rate=0.5)
    # E[X_(k:n)] = (H_n - H_(n-k)) / rate
    assert law.order_statistic_mean(10, 50) == pytest.approx((delays.harmonic(50) - delays.harmonic(40)) / 0.5)
    assert law.order_statistic_mean(5, 5) == pytest.approx(delays.harmonic(5) / 0.5)
    x = np.sort(np.asarray(law.sample(jax.random.key(2), (40_000, 8)), np.float64), axis=1)
    for k in (1, 4, 8):
        col = x[:, k - 1]
        assert abs(col.mean() - law.order_statistic_mean(k, 8)) < 5 * col.std(ddof=1) / np.sqrt(col.size)
    shifted = delays.make_law("shifted_exponential", shift=1.0, rate=2.0)
    assert shifted.order_statistic_mean(3, 4) == pytest.approx(1.0 + law.order_statistic_mean(3, 4) / 4)


def test_pareto_mean_is_infinite_for_shape_at_most_one():
    assert np.isinf(float(delays.make_law("pareto", shape=1.0, scale=1.0).mean()))
    assert float(delays.make_law("pareto", shape=2.0, scale=1.0).mean()) == pytest.approx(2.0)


@pytest.mark.parametrize(
    "name,params,field",
    [
        ("exponential", {"rate": -1.0}, "delays.rate"),
        ("exponential", {"rate": float("nan")}, "delays.rate"),
        ("gamma", {"rate": 1.0}, "delays.law"),
        ("uniform", {"low": 2.0, "high": 1.0}, "delays.high"),
        ("hyperexponential", {"probs": [0.5, 0.6], "rates": [1.0, 2.0]}, "delays.probs"),
        ("exponential", {}, "delays.rate"),
        ("exponential", {"rate": 1.0, "shape": 2.0}, "delays.shape"),
        ("trace", {"table": [[1.0, 2.0], [0.0, 1.0]], "counts": [2, 2]}, "delays.table"),
        ("trace", {"table": [[1.0, 2.0], [np.nan, 1.0]], "counts": [1, 2]}, "delays.table"),
        ("trace", {"table": [[1.0, 2.0]], "counts": [1, 2]}, "delays.counts"),
        ("trace", {"table": [[1.0, 2.0]], "counts": [1, 0]}, "delays.counts"),
        ("trace", {"table": [[1.0, 2.0]], "counts": [1]}, "delays.counts"),
        ("trace", {"table": [1.0, 2.0], "counts": [2]}, "delays.table"),
    ],
)
def test_bad_parameters_name_the_field(name, params, field):
    with pytest.raises(ConfigError) as e:
        delays.make_law(name, **params)
    assert str(e.value).startswith(field)


# ragged per-worker columns; 99 is padding, never drawn
TRACE_COLUMNS = [[1.0, 2.0, 2.0, 5.0], [0.5, 3.0, 99.0, 99.0], [7.0, 99.0, 99.0, 99.0]]


def trace_law():
    table = np.array(TRACE_COLUMNS).T
    return delays.make_law("trace", table=table, counts=[4, 2, 1])


def test_trace_draws_each_workers_own_column_uniformly():
    law, draws = trace_law(), 40_000
    x = np.asarray(law.sample(jax.random.key(3), (3, draws)), np.float64)
    for worker, column in enumerate(TRACE_COLUMNS):
        entries = column[: int(law.counts[worker])]
        assert set(np.unique(x[worker])) <= set(entries)
        for value in set(entries):
            p = entries.count(value) / len(entries)
            hits = np.sum(x[worker] == value)
            assert abs(hits - draws * p) <= 5 * np.sqrt(draws * p * (1 - p)) + 1e-9


def test_trace_mean_is_the_average_of_the_worker_means():
    law = trace_law()
    np.testing.assert_allclose(np.asarray(law.worker_means()), [2.5, 1.75, 7.0], rtol=1e-6)
    assert float(law.mean()) == pytest.approx((2.5 + 1.75 + 7.0) / 3, rel=1e-6)


def test_trace_vmaps_over_stacked_tables_with_worker_axis_first():
    law = trace_law()
    slower = delays.make_law("trace", table=2 * np.asarray(law.table), counts=np.asarray(law.counts))
    stacked = jax.tree.map(lambda *v: np.stack(v), law, slower)
    draws = jax.jit(jax.vmap(lambda l, k: l.sample(k, (3, 5))))(stacked, jax.random.split(jax.random.key(4), 2))
    assert draws.shape == (2, 3, 5)
    np.testing.assert_allclose(np.asarray(draws[:, 2]), [[7.0] * 5, [14.0] * 5])
    np.testing.assert_allclose(np.asarray(stacked.mean()), float(law.mean()) * np.array([1.0, 2.0]), rtol=1e-6)
    with pytest.raises(ValueError, match="worker"):
        law.sample(jax.random.key(0), (4,))
