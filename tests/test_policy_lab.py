"""Policies beyond Algorithm 1: doubling at intervals, the oracle that follows the envelope."""

from __future__ import annotations

import numpy as np
import pytest

from fastk_jax import study
from fastk_jax.core import policies
from fastk_jax.errors import ConfigError
from fastk_jax.runner import execute


def test_doubling_is_a_time_schedule_capped_at_k_max():
    p = policies.doubling(3, every=10.0, k_max=20)
    assert bool(p.by_time) and int(p.k0) == 3
    np.testing.assert_array_equal(p.at, [10.0, 20.0, 30.0])
    np.testing.assert_array_equal(p.ks, [6, 12, 20])
    assert np.size(policies.doubling(5, 1.0, 5).at) == 0  # already at k_max: fixed


def test_oracle_schedule_follows_the_lowest_curve_and_never_decreases():
    t = np.arange(6.0)
    curves = np.array(
        [
            [9.0, 2.0, 1.5, 1.4, 1.3, 1.2],  # k=1: fast, high floor
            [9.0, 5.0, 1.0, 1.6, 0.5, 0.4],  # k=4: best from t=2, except a noisy t=3
            [9.0, 8.0, 6.0, 3.0, 0.6, 0.1],  # k=8: best at the end
        ]
    )
    p = execute.oracle_schedule(t, curves, [1, 4, 8])
    assert int(p.k0) == 1  # ties at t=0 go to the first
    np.testing.assert_array_equal(p.at, [2.0, 5.0])  # the flip back to k=1 at t=3 is ignored
    np.testing.assert_array_equal(p.ks, [4, 8])


STUDY = {
    "problem": {"kind": "linear", "n_workers": 6, "m": 60, "d": 5},
    "delays": {"law": "exponential", "rate": 1.0},
    "run": {"eta": 0.002, "time_horizon": 60.0, "seeds": 3, "chunk": 100, "grid_points": 50},
    "policy": [{"kind": "fixed", "k": [1, 6]}, {"kind": "oracle"}, {"kind": "doubling", "k0": 1, "every": 20.0}],
}


def test_the_oracle_runs_after_the_fixed_k_and_follows_their_envelope():
    s = study.resolve(STUDY)
    prepared = study.prepare(s)
    sim, ran = execute.run_all(prepared.problem, prepared.configurations, s.run)
    labels = [c.label for c in ran]
    assert labels == ["k=1", "k=6", "oracle (envelope)", "doubling 1->6 every 20"]
    oracle = ran[2].config.policy  # replaced by the schedule it followed
    assert prepared.configurations[2].config.policy is not oracle  # the caller's configurations are not changed
    expected = execute.oracle_schedule(sim.time_grid, sim.summary.error.mean[:2], [1, 6])
    np.testing.assert_array_equal(oracle.at, expected.at)
    np.testing.assert_array_equal(oracle.ks, expected.ks)
    k = sim.summary.k.mean[2]
    assert k[0] == int(expected.k0) and np.all(np.diff(k) >= 0)


@pytest.mark.parametrize(
    "policy, needle",
    [
        ([{"kind": "fixed", "k": 2}, {"kind": "oracle"}], "two or more fixed-k policies"),
        ([{"kind": "fixed", "k": [1, 2], "scheme": "k_async"}, {"kind": "oracle"}], "of its scheme"),
        ([{"kind": "doubling", "k0": 4, "every": 1.0, "k_max": 2}], "k_max: must be >= k0=4"),
        ([{"kind": "doubling", "k0": 1, "every": 0.0}], "every: must be > 0"),
    ],
)
def test_bad_lab_policies_are_refused(policy, needle):
    with pytest.raises(ConfigError, match="policy") as e:
        study.resolve({**STUDY, "policy": policy})
    assert needle in str(e.value)
