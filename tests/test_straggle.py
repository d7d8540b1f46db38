"""Markov stragglers: a two-state chain per worker, stepped at every update."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastk_jax import study
from fastk_jax.core import delays, schemes
from fastk_jax.core.spec import SimConfig, Straggle
from fastk_jax.errors import ConfigError
from fastk_jax.runner import execute
from fastk_jax.theory.order_stats import order_statistic_moments


def test_the_chain_has_its_stationary_law_and_persistence():
    chain = Straggle(slow=5.0, enter=0.05, stay=0.8)
    config = SimConfig(None, 0.0, None, None, 1.0, Straggle(*map(jnp.float32, chain)))
    pi = float(chain.slow_fraction())
    assert pi == pytest.approx(0.05 / 0.25)
    workers, steps = 4000, 60
    slow = jax.random.uniform(jax.random.key(1), (workers,)) < pi
    states = [slow]
    for j in range(steps):
        slow = schemes.straggle_step(config, slow, jax.random.fold_in(jax.random.key(2), j))
        states.append(slow)
    s = np.asarray(jnp.stack(states))  # (steps + 1, workers)
    # started stationary, the chains stay stationary: at each step a Binomial(workers, pi) count
    for step in (0, steps // 2, steps):
        assert abs(s[step].mean() - pi) < 4 * np.sqrt(pi * (1 - pi) / workers)
    stayed = (s[1:] & s[:-1]).sum() / s[:-1].sum()
    n_slow = s[:-1].sum()
    assert abs(stayed - 0.8) < 4 * np.sqrt(0.8 * 0.2 / n_slow)
    entered = (s[1:] & ~s[:-1]).sum() / (~s[:-1]).sum()
    assert abs(entered - 0.05) < 4 * np.sqrt(0.05 * 0.95 / (~s[:-1]).sum())


STUDY = {
    "problem": {"kind": "linear", "n_workers": 6, "m": 60, "d": 5},
    "delays": {"law": "exponential", "rate": 1.0, "markov": {"slow": 10.0, "enter": 0.1, "stay": 0.9}},
    "run": {"eta": 0.002, "time_horizon": 400.0, "seeds": 16, "chunk": 200, "grid_points": 20},
    "policy": [{"kind": "fixed", "k": 6}],
}


def test_time_per_update_at_k_equal_n_is_the_max_of_the_stationary_mixture():
    """At every update each worker is slow with the stationary probability, independently of the
    others, so a K = n update takes the max of n iid draws of the mixture: slow x Exp(1) with
    probability 1/2, else Exp(1), a hyperexponential of rates (1, 1/10). Updates of one run are
    correlated through the chains, so the tolerance comes from the spread over seeds."""
    s = study.resolve(STUDY)
    assert s.resolved["delays"][0]["mean"] == pytest.approx(1.0 * (1 + 0.5 * 9))  # P[slow] = 0.1 / 0.2
    _, sim = execute.run_study(s)
    per_seed = np.asarray(sim.summary.final_time[0], np.float64) / int(sim.summary.iterations[0])
    mixture = delays.make_law("hyperexponential", probs=[0.5, 0.5], rates=[1.0, 0.1])
    exact = order_statistic_moments(mixture, 6, 6).mean
    se = per_seed.std(ddof=1) / np.sqrt(per_seed.size)
    assert abs(per_seed.mean() - exact) < 4 * se
    assert exact > 2 * 2.45  # E[max of 6 Exp(1)] = 2.45 without stragglers


@pytest.mark.parametrize(
    "markov, needle",
    [
        ({"slow": 0.0, "enter": 0.1, "stay": 0.5}, "markov.slow"),
        ({"slow": 2.0, "enter": 1.5, "stay": 0.5}, "markov.enter"),
        ({"slow": 2.0, "enter": 0.0, "stay": 1.0}, "no stationary law"),
        ({"slow": 2.0, "enter": 0.1, "stay": 0.5, "speed": 1}, "unknown field"),
        (3.0, "must be a table"),
    ],
)
def test_bad_markov_tables_are_refused(markov, needle):
    with pytest.raises(ConfigError, match="delays.markov") as e:
        study.resolve({**STUDY, "delays": {**STUDY["delays"], "markov": markov}})
    assert needle in str(e.value)
