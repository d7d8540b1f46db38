"""Reading times and communication to reach an error level off averaged curves."""

import numpy as np

from fastk_jax.analysis import metrics
from fastk_jax.analysis.results import BANDS, Results
from fastk_jax.core.curves import Band


def _results(error_mean, half_width, downloads, fetches) -> Results:
    c, g = error_mean.shape
    ones = np.ones((c, g))
    bands = {name: Band(ones, ones * 0, ones * 3) for name in BANDS}
    bands["error"] = Band(error_mean, half_width, ones * 3)
    bands["downloads"] = Band(downloads, ones * 0, ones * 3)
    bands["fetches"] = Band(fetches, ones * 0, ones * 3)
    return Results(
        labels=np.array(["abcdefgh"[i] for i in range(c)]),
        n_workers=4,
        mean_delay=np.ones(c),
        time_grid=np.arange(g, dtype=float),
        iteration_grid=np.arange(2),
        bands=bands,
        diverged=np.zeros(c, int),
        seeds=3,
        time_per_iteration=Band(np.ones(c), np.zeros(c), np.full(c, 3)),
        staleness=np.zeros((c, 2)),
        levels=np.ones(1),
    )


def test_reach_reads_the_first_grid_time_and_the_communication_then():
    err = np.array([[10.0, 5.0, 2.0, 1.0, 0.5], [10.0, 9.0, 8.0, 7.0, 6.0]])
    res = _results(
        err, np.full_like(err, 1.5), np.arange(5.0)[None].repeat(2, 0) * 2, np.arange(5.0)[None].repeat(2, 0)
    )
    r = metrics.reach(res, 2.0)
    np.testing.assert_array_equal(r.time, [2.0, np.nan])
    np.testing.assert_array_equal(r.earliest, [2.0, np.nan])  # 5 - 1.5 > 2 at t=1: first at t=2
    np.testing.assert_array_equal(r.latest, [4.0, np.nan])  # the upper edge 11.5, 6.5, 3.5, 2.5, 2.0
    np.testing.assert_array_equal(r.downloads, [4.0, np.nan])
    np.testing.assert_array_equal(r.total, [6.0, np.nan])


def test_error_floor_is_the_mean_over_the_tail():
    err = np.array([[4.0] * 8 + [1.0, 3.0]])
    res = _results(np.vstack([err, err]), np.zeros((2, 10)), np.zeros((2, 10)), np.zeros((2, 10)))
    np.testing.assert_allclose(metrics.error_floor(res, tail=0.2), [2.0, 2.0])


def test_at_time_reads_the_last_grid_point_at_or_before():
    err = np.array([[10.0, 5.0, 2.0, 1.0, 0.5], [10.0, 9.0, 8.0, 7.0, 6.0]])
    res = _results(err, err / 10, err, err)
    at = metrics.at_time(res, 2.7)
    assert at.time == 2.0
    np.testing.assert_array_equal(at.mean, [2.0, 8.0])
    np.testing.assert_array_equal(at.half_width, [0.2, 0.8])


def test_envelope_is_the_pointwise_best_fixed_k_and_regret_is_measured_against_it():
    fast = np.array([10.0, 2.0, 1.0, 1.0, 1.0])  # fast to a high floor
    slow = np.array([10.0, 8.0, 4.0, 0.5, 0.1])  # slow to a low floor
    policy = np.array([10.0, 4.0, 2.0, 0.5, 0.2])  # between: twice the envelope, then on it, then twice
    res = _results(np.vstack([fast, slow, policy]), np.zeros((3, 5)), np.zeros((3, 5)), np.zeros((3, 5)))
    env = metrics.envelope(res.bands["error"].mean, [0, 1])
    np.testing.assert_array_equal(env.error, [10.0, 2.0, 1.0, 0.5, 0.1])
    np.testing.assert_array_equal(env.best, [0, 0, 0, 1, 1])
    reg = metrics.regret(res, env, levels=[1.0, 0.15])
    np.testing.assert_allclose(reg.max_ratio[2], 2.0)
    np.testing.assert_allclose(reg.mean_log10_ratio[2], np.mean(np.log10([2.0, 2.0, 1.0, 2.0])))
    np.testing.assert_allclose(reg.final_ratio, [10.0, 1.0, 2.0])
    # level 1: the envelope (fast) reaches it at t=2, the policy at t=3; level 0.15: slow at t=4, policy never
    np.testing.assert_array_equal(reg.time_ratio[2], [1.5, np.nan])
    np.testing.assert_array_equal(reg.time_ratio[:2, 0], [1.0, 1.5])  # slow: t=3
