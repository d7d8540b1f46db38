"""k policies: schedules and Algorithm 1's counter, step by step."""

import jax.numpy as jnp
import numpy as np
import pytest

from fastk_jax.core import policies
from fastk_jax.errors import ConfigError


def _stacked(p):
    return policies.KPolicy(*(jnp.asarray(x)[0] for x in policies.stack([p])))


def _k(p, t=0.0, j=0):
    state = policies.init(p, 2, jnp.float32)
    return int(policies.current_k(p, state, jnp.float32(t), jnp.int32(j)))


def test_fixed_and_schedules():
    assert _k(_stacked(policies.fixed(7)), t=1e9, j=10**6) == 7
    by_time = _stacked(policies.schedule(1, [10.0, 20.0], [2, 5], by="time"))
    assert [_k(by_time, t=t) for t in (0.0, 9.9, 10.0, 19.0, 20.0, 1e6)] == [1, 1, 2, 2, 5, 5]
    by_iter = _stacked(policies.schedule(3, [5], [4], by="iterations"))
    assert [_k(by_iter, t=1e9, j=j) for j in (0, 4, 5, 100)] == [3, 3, 4, 4]


def _drive(p, signs):
    """Feed Algorithm 1 gradients whose consecutive inner products have the given signs."""
    p = _stacked(p)
    state = policies.init(p, 1, jnp.float32)
    g = jnp.ones(1)
    ks, counts = [], []
    state = policies.observe(p, state, g, jnp.float32(1.0))  # first gradient: nothing to compare with
    for s in signs:
        g = g * s
        state = policies.observe(p, state, g, jnp.float32(1.0))
        ks.append(int(state.k))
        counts.append(int(state.count_negative))
    return ks, counts


def test_first_gradient_leaves_the_counter_alone():
    p = _stacked(policies.adaptive(1, 4, thresh=0, burnin=0, step=1))
    state = policies.observe(p, policies.init(p, 1, jnp.float32), jnp.ones(1), jnp.float32(1.0))
    assert int(state.count_negative) == 0 and int(state.k) == 1 and int(state.count_iter) == 2


def test_counter_counts_negative_minus_positive_and_switches_above_thresh():
    # alternating signs: every product negative -> counter climbs by 1 per iteration
    ks, counts = _drive(policies.adaptive(1, 10, thresh=3, burnin=0, step=2), [-1] * 6)
    assert counts[:3] == [1, 2, 3]  # 3 is not > thresh
    assert ks[:4] == [1, 1, 1, 3]  # switches when the counter reaches 4 > 3, then resets
    assert counts[3] == 0
    # same-sign gradients: counter goes down, never switches
    ks, counts = _drive(policies.adaptive(1, 10, thresh=0, burnin=0, step=1), [1] * 20)
    assert set(ks) == {1} and counts[-1] == -20


def test_burnin_delays_the_switch():
    # counter exceeds thresh=0 at once, but count_iter must exceed burnin=5 first
    ks, _ = _drive(policies.adaptive(1, 10, thresh=0, burnin=5, step=1), [-1] * 12)
    # the first observe is iteration 1 (countIter = 1); driven index i is iteration i + 2;
    # as printed, countIter = j at iteration j, so the first switch is at j = burnin + 1 = 6
    first = ks.index(2)
    assert first == 4
    # after a switch count_iter restarts at 1, so the next switch needs burnin + 1 more iterations
    assert ks.index(3) - first == 6


def test_k_never_passes_k_max_and_never_decreases():
    ks, _ = _drive(policies.adaptive(2, 7, thresh=0, burnin=0, step=2), [-1] * 50)
    assert max(ks) == 6  # 2 -> 4 -> 6; 8 would pass k_max=7, so k stays at 6 as printed
    assert np.all(np.diff(ks) >= 0)
    ks, _ = _drive(policies.adaptive(2, 8, thresh=0, burnin=0, step=0, factor=2), [-1] * 50)
    assert set(ks) == {4, 8}  # doubling from k_min = 2, which switches at the first comparison


@pytest.mark.parametrize(
    "policy,field",
    [
        (policies.fixed(0), "policy.k"),
        (policies.fixed(11), "policy.k"),
        (policies.schedule(1, [5.0, 2.0], [2, 3]), "policy.at"),
        (policies.schedule(1, [5.0], [12]), "policy.ks"),
        (policies.adaptive(5, 4, 1, 1, step=1), "policy.k_max"),
        (policies.adaptive(2, 8, 1, 1, step=0, factor=1), "policy.step"),
        (policies.adaptive(0, 8, 1, 1, step=1), "policy.k_min"),
        (policies.adaptive(2, 8, -1, 1, step=1), "policy.thresh"),
        (policies.schedule(0, [5.0], [2]), "policy.k0"),
    ],
)
def test_check_names_the_field(policy, field):
    with pytest.raises(ConfigError) as e:
        policies.check(policy, n=10)
    assert str(e.value).startswith(field)


def test_growth_past_int32_never_switches():
    # factor * k + step would overflow int32; the test k <= (k_max - step) // factor does not
    ks, _ = _drive(policies.adaptive(3, 10, thresh=0, burnin=0, step=2**31 - 1), [-1] * 5)
    assert set(ks) == {3}
    ks, _ = _drive(policies.adaptive(3, 10, thresh=0, burnin=0, step=0, factor=2**30), [-1] * 5)
    assert set(ks) == {3}


def test_stack_pads_schedules():
    s = policies.stack([policies.fixed(3), policies.schedule(1, [1.0, 2.0], [2, 3])])
    assert s.at.shape == (2, 2) and np.all(np.isinf(s.at[0]))


def _feed(p, grads, losses):
    p = _stacked(p)
    state = policies.init(p, 1, jnp.float32)
    ks = []
    for g, loss in zip(grads, losses):
        state = policies.observe(p, state, jnp.asarray([g], jnp.float32), jnp.float32(loss))
        ks.append(int(policies.current_k(p, state, jnp.float32(0), jnp.int32(0))))
    return ks, state


def test_loss_ratio_rule_follows_k0_sqrt_of_the_loss_ratio_and_never_decreases():
    losses = [100.0, 100.0, 25.0, 4.0, 50.0, 1.0, 0.01]
    ks, _ = _feed(policies.loss_ratio(2, 12), [1.0] * len(losses), losses)
    # F(w_0) = 100: 2 sqrt(100 / F) = 2, 2, 4, 10, (2.8 -> stays 10), 20 -> 12 (capped), 12
    assert ks == [2, 2, 4, 10, 10, 12, 12]


def test_gradient_norm_rule_steps_up_when_the_smoothed_norm_falls_to_gamma_times_its_level():
    p = policies.gradient_norm(1, 8, gamma=0.25, burnin=1, factor=2)  # weight 1: no smoothing
    # level noted after burnin=1 update (count_iter 2 > 1): ||g||^2 = 4 at the 2nd update
    grads = [2.0, 2.0, 1.5, 1.0, 3.0, 3.0, 1.5, 1.0]
    ks, _ = _feed(p, grads, [1.0] * len(grads))
    # 4th update: 1 <= 0.25 * 4 -> k = 2, level reset; again noted at 9 (two updates later);
    # 1.5^2 = 2.25 <= 0.25 * 9 -> k = 4
    assert ks == [1, 1, 1, 2, 2, 2, 4, 4]
    with pytest.raises(ConfigError, match="gamma"):
        policies.check(policies.gradient_norm(1, 8, gamma=1.5, burnin=1), n=10)


def test_rules_stack_with_the_others_and_keep_algorithm1_unchanged():
    stacked = policies.stack(
        [
            policies.fixed(3),
            policies.adaptive(1, 4, 0, 0, step=1),
            policies.loss_ratio(1, 4),
            policies.doubling(1, 1.0, 4),
        ]
    )
    assert stacked.rule.tolist() == [0, 0, 1, 0] and stacked.adaptive.tolist() == [False, True, True, False]
