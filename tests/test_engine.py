"""The engine against closed forms, its compile-once promise, divergence handling and
the adaptive policy's behaviour on the paper's Fig. 3 setup."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import limit_memory

from fastk_jax import engine
from fastk_jax.core import curves, delays, policies, problems, schemes
from fastk_jax.core.spec import RunSpec, SimConfig, stack_configs
from fastk_jax.data import synthetic_linear
from fastk_jax.errors import ConfigError


def _linear(m=100, d=5, n=50, seed=0):
    x, y, _ = synthetic_linear(m, d, seed)
    return problems.linear_regression(x, y, n)


def _configs(pols, eta, law, n):
    etas = eta if isinstance(eta, list) else [eta] * len(pols)
    return stack_configs([SimConfig(p, np.float64(e), law, np.ones(n)) for p, e in zip(pols, etas)])


def test_mean_time_per_iteration_is_the_kth_order_statistic():
    """Exponential(rate 1), n=50: E[X_(10:50)] = H_50 - H_40 and E[X_(50:50)] = H_50."""
    n, iters, seeds = 50, 400, 64
    prob = _linear(n=n)
    law = delays.make_law("exponential", rate=1.0)
    cfg = _configs([policies.fixed(10), policies.fixed(n)], 1e-4, law, n)
    sim = engine.simulate(
        prob, cfg, seeds=seeds, time_horizon=1.0, iterations=iters, spec=RunSpec(n=n, chunk=iters), grid_points=4
    )
    assert sim.iterations > iters  # the iteration grid ends at iters, which needs iters + 1 steps
    per_iter = np.asarray(sim.summary.final_time, np.float64) / sim.iterations  # (C, S)
    expected = [delays.harmonic(50) - delays.harmonic(40), delays.harmonic(50)]
    for c in range(2):
        se = per_iter[c].std(ddof=1) / np.sqrt(seeds)
        assert abs(per_iter[c].mean() - expected[c]) < 5 * se, (c, per_iter[c].mean(), expected[c], se)
    # the renewal count J(t) on the time grid is the number of updates by t
    assert np.all(np.diff(sim.summary.updates.mean, axis=1) >= 0)


def test_a_second_sweep_of_the_same_shape_does_not_recompile():
    n = 10
    prob = _linear(m=60, d=4, n=n)
    law = delays.make_law("exponential", rate=1.0)
    spec = RunSpec(n=n, chunk=50)
    kwargs = {"seeds": 3, "time_horizon": 5.0, "iterations": 60, "spec": spec}
    first = _configs([policies.fixed(2), policies.adaptive(2, 8, 3, 5, step=2)], [1e-3, 2e-3], law, n)
    engine.simulate(prob, first, **kwargs)
    before = engine.trace_count()
    other_law = delays.make_law("exponential", rate=3.0)
    second = _configs([policies.schedule(1, [2.0], [5]), policies.fixed(9)], [5e-4, 1e-3], other_law, n)
    engine.simulate(prob, second, **{**kwargs, "time_horizon": 7.0})
    assert engine.trace_count() == before


def test_diverged_runs_are_counted_and_left_out():
    n, seeds = 10, 6
    prob = _linear(m=60, d=4, n=n)
    limit = problems.stable_step_limit(prob)
    law = delays.make_law("exponential", rate=1.0)
    cfg = _configs([policies.fixed(5), policies.fixed(5)], [0.5 * limit, 20 * limit], law, n)
    sim = engine.simulate(prob, cfg, seeds=seeds, time_horizon=20.0, iterations=300, spec=RunSpec(n=n, chunk=100))
    s = sim.summary
    assert list(s.diverged) == [0, seeds]
    assert np.all(s.error.runs[1] == 0) and np.all(np.isnan(s.error.mean[1]))
    assert np.all(np.isfinite(s.error.mean[0]))


def test_summary_leaves_out_diverged_runs_and_unreached_points():
    grids = curves.Grids(
        time=jnp.array([0.0, 1.0, 2.0]),
        iteration=jnp.array([0, 1]),
        error_limit=jnp.asarray(1e9),
        levels=jnp.array([1.0]),
    )
    err = jnp.array([[[1.0, 2.0, 3.0], [5.0, 6.0, 7.0], [jnp.nan, jnp.inf, 9.0]]])  # (C=1, S=3, G=3)
    rc = curves.RunCurves(
        error=err,
        extra=jnp.zeros((1, 3, 3, 0)),
        k=jnp.ones((1, 3, 3), jnp.int32),
        downloads=jnp.zeros((1, 3, 3), jnp.int32),
        fetches=jnp.zeros((1, 3, 3), jnp.int32),
        updates=jnp.zeros((1, 3, 3), jnp.int32),
        iter_error=jnp.ones((1, 3, 2)),
        staleness=jnp.ones((1, 3, 4), jnp.int32),
        reach_time=jnp.array([[[1.0], [jnp.nan], [2.0]]]),
        reach_downloads=jnp.array([[[4], [0], [6]]]),
        reach_fetches=jnp.array([[[8], [0], [9]]]),
        diverged=jnp.array([[False, False, True]]),
    )
    final_time = jnp.array([[5.0, 1.5, 5.0]])  # seed 1 stopped before t = 2
    s = curves.summarize(rc, final_time, jnp.full((1, 3), 2), grids)
    np.testing.assert_allclose(s.error.mean[0], [3.0, 4.0, 3.0])
    np.testing.assert_array_equal(s.error.runs[0], [2, 2, 1])
    assert int(s.diverged[0]) == 1
    np.testing.assert_array_equal(s.staleness[0], [2, 2, 2, 2])  # pooled over the two runs kept
    # reach: seed 1 never reached the level, seed 2 diverged: one run left
    assert int(s.reach_time.runs[0, 0]) == 1 and float(s.reach_time.mean[0, 0]) == 1.0
    assert float(s.reach_total.mean[0, 0]) == 12.0


def test_t_quantile():
    assert float(curves.t_quantile_975(1e9)) == pytest.approx(1.959964, abs=1e-5)
    # exact values of Student's t 0.975 quantile
    cases = [(1, 12.706205), (2, 4.302653), (3, 3.182446), (4, 2.776445), (9, 2.262157), (19, 2.093024), (99, 1.984217)]
    for dof, exact in cases:
        assert float(curves.t_quantile_975(dof)) == pytest.approx(exact, abs={3: 4e-3, 4: 1e-3}.get(dof, 1e-4))


def test_trajectories_are_not_kept_unless_asked():
    n = 10
    prob = _linear(m=60, d=4, n=n)
    law = delays.make_law("exponential", rate=1.0)
    cfg = _configs([policies.fixed(3)], 1e-3, law, n)
    sim = engine.simulate(prob, cfg, seeds=2, time_horizon=3.0, iterations=40, spec=RunSpec(n=n, chunk=20))
    assert sim.trajectories is None
    kept = engine.simulate(
        prob, cfg, seeds=2, time_horizon=3.0, iterations=40, spec=RunSpec(n=n, chunk=20, keep_trajectories=True)
    )
    assert kept.trajectories.error.shape == (1, 2, kept.iterations)


def test_adaptive_k_rises_by_steps_only_after_burnin():
    n, burnin = 20, 30
    x, y, _ = synthetic_linear(400, 10, 1)
    prob = problems.linear_regression(x, y, n)
    law = delays.make_law("exponential", rate=1.0)
    cfg = _configs(
        [policies.adaptive(2, 11, thresh=3, burnin=burnin, step=3)], 0.5 * problems.stable_step_limit(prob), law, n
    )
    sim = engine.simulate(
        prob, cfg, seeds=8, time_horizon=50.0, iterations=1500, spec=RunSpec(n=n, chunk=500, keep_trajectories=True)
    )
    ks = np.asarray(sim.trajectories.k[0])  # (S, J)
    assert ks.min() >= 2 and ks.max() <= 11
    assert np.all(np.diff(ks, axis=1) >= 0)
    assert set(np.unique(ks)) <= {2, 5, 8, 11}
    switched = 0
    for run in ks:
        at = np.flatnonzero(np.diff(run)) + 1  # iterations that use a new k
        gaps = np.diff(np.concatenate([[0], at]))
        assert np.all(gaps >= burnin + 1)
        switched += at.size
    assert switched > 0


def test_fig3_adaptive_beats_fixed_k():
    """The paper's Fig. 3 setup (n=50, d=100, m=2000, eta=5e-4, exp(1) delays): Algorithm 1
    ends below fixed k=10 and reaches fixed k=40's final error sooner than k=40 does."""
    n = 50
    x, y, _ = synthetic_linear(2000, 100, 0)
    prob = problems.linear_regression(x, y, n)
    law = delays.make_law("exponential", rate=1.0)
    pols = [policies.fixed(10), policies.fixed(40), policies.adaptive(10, 40, thresh=10, burnin=200, step=10)]
    spec = RunSpec(n=n, chunk=2000)
    # 3 x 4 runs in one block of 12: no padding (the default block would compute 64 runs)
    sim = engine.simulate(prob, _configs(pols, 5e-4, law, n), seeds=4, time_horizon=8000.0, spec=spec, block=12)
    t, err = sim.time_grid, sim.summary.error.mean
    assert list(sim.summary.diverged) == [0, 0, 0]
    late = t >= 6000
    assert err[2, late].mean() < err[0, late].mean()
    level = err[1, t >= 7000].mean()  # fixed k=40's final error

    def first_reach(c):
        reached = err[c] <= level
        assert reached.any(), f"configuration {c} never reaches k=40's final error"
        return t[np.argmax(reached)]

    assert first_reach(2) < first_reach(1)


def test_a_run_cut_short_warns_and_leaves_unreached_points_out():
    n = 10
    prob = _linear(m=60, d=4, n=n)
    law = delays.make_law("exponential", rate=1.0)
    cfg = _configs([policies.fixed(1), policies.fixed(n)], 1e-3, law, n)
    with pytest.warns(UserWarning, match="max_iterations"):
        sim = engine.simulate(
            prob, cfg, seeds=3, time_horizon=100.0, iterations=10, max_iterations=40, spec=RunSpec(n=n, chunk=20)
        )
    runs = sim.summary.error.runs
    # each grid point's mean is over exactly the runs whose clock passed it
    reached = sim.time_grid[None, :] < sim.summary.final_time[1][:, None]
    np.testing.assert_array_equal(runs[1], reached.sum(axis=0))
    # k = 1 is fast (E[X_(1:10)] = 0.1): it never reaches t = 100 in 40 iterations
    assert runs[0, -1] == 0 and np.isnan(sim.summary.error.mean[0, -1])


def test_divergence_counts_only_on_the_grids():
    """An iterate past both grids (beyond the horizon and the last grid iteration) is not looked
    at, so a run's divergence does not depend on how long its sweep companions keep it going."""
    grids = curves.Grids(
        time=jnp.linspace(0.0, 10.0, 5),
        iteration=jnp.arange(0, 20, 5),
        error_limit=jnp.asarray(1e6),
        levels=jnp.array([1.0]),
    )
    fresh = curves.init(grids, jnp.float32, staleness_bins=4)

    def out(time, iteration, error):
        return schemes.Out(
            time=jnp.float32(time),
            iteration=jnp.int32(iteration),
            k=jnp.int32(1),
            error=jnp.float32(error),
            downloads=jnp.int32(0),
            fetches=jnp.int32(0),
            staleness=jnp.zeros(4, jnp.int32),
            w=jnp.zeros(1),
        )

    assert not curves.record(fresh, grids, out(10.5, 16, np.inf)).diverged
    assert curves.record(fresh, grids, out(10.5, 15, np.inf)).diverged  # at a grid iteration
    assert curves.record(fresh, grids, out(9.0, 30, np.nan)).diverged  # before the horizon
    assert curves.record(fresh, grids, out(9.0, 30, 2e6)).diverged  # exploded
    assert not curves.record(fresh, grids, out(9.0, 30, 5e5)).diverged


def test_memory_guard_splits_the_runs_into_calls_and_refuses_only_when_one_block_does_not_fit(monkeypatch):
    """When all runs do not fit, they run in several calls of the same compiled program, combined
    on the host: bit for bit the run in one call (the block fixes a run's numbers)."""
    n, seeds, block = 10, 5, 2
    prob = _linear(m=1000, d=1000, n=n)  # a run's model and gradient outweigh its curves: splitting helps
    law = delays.make_law("exponential", rate=1.0)
    cfg = _configs([policies.fixed(3), policies.adaptive(2, 8, 3, 5, step=2)], 1e-5, law, n)  # L = 3e4
    spec = RunSpec(n=n, chunk=20, max_k=8)
    kwargs = {"seeds": seeds, "time_horizon": 5.0, "iterations": 40, "spec": spec, "grid_points": 30, "block": block}
    whole = engine.simulate(prob, cfg, **kwargs)
    limit_memory(monkeypatch, prob, spec, 2 * seeds, block, blocks=2, grid_points=30)
    # 10 runs = 5 blocks of 2: 3 calls of 2 blocks (the last padded with copies of the last run)
    assert engine.run_layout(prob, spec, 2 * seeds, 30, 200, block=block) == engine.RunLayout(block, 1, 2, 3)
    with pytest.warns(UserWarning, match="3 calls of 4 runs"):
        split = engine.simulate(prob, cfg, **kwargs)
    pairs = zip(jax.tree.leaves(split.summary), jax.tree.leaves(whole.summary))
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in pairs)
    assert split.summary.final_time.shape == (2, seeds) and np.all(split.summary.diverged == 0)
    limit_memory(monkeypatch, prob, spec, 2 * seeds, block, blocks=0, grid_points=30)
    with pytest.raises(ConfigError, match="2 runs per device at a time"):
        engine.simulate(prob, cfg, **kwargs)


def test_a_runs_numbers_do_not_depend_on_the_runs_beside_it():
    """A seed's trajectory is the same bits alone or beside other seeds and configurations (at
    other places in other blocks). On Fig. 3's problem, vmapping over all runs at once gave five
    bit-classes for S = 1 ... 256 (XLA picks a product's kernel by its batch); blocks fix it."""
    n = 50
    prob = _linear(m=2000, d=100, n=n)
    law = delays.make_law("exponential", rate=1.0)
    spec = RunSpec(n=n, chunk=10, keep_trajectories=True, max_k=40)
    kwargs = {"time_horizon": 0.5, "iterations": 9, "spec": spec}  # one chunk of 10 updates
    k10 = policies.fixed(10)
    others = [policies.fixed(20), k10, policies.adaptive(10, 40, thresh=2, burnin=3, step=10)]
    alone = engine.simulate(prob, _configs([k10], 5e-4, law, n), seeds=2, **kwargs).trajectories
    # seeds 0, 1 of k = 10 at runs 70, 71: lanes 6, 7 of the second block of 64
    beside = engine.simulate(prob, _configs(others, 5e-4, law, n), seeds=70, **kwargs).trajectories
    assert alone.w.shape[2] == 10
    for name, a, b in zip(alone._fields, alone, beside):
        assert np.array_equal(a[0], b[1, :2], equal_nan=True), name


def test_chunk_size_changes_nothing_but_the_updates_made():
    """Curves, bands and counts do not depend on the chunk size; only the number of updates the
    runs make (whole chunks, until every run has passed the horizon), and so their final clocks."""
    n = 10
    prob = _linear(m=60, d=4, n=n)
    law = delays.make_law("exponential", rate=1.0)
    cfg = _configs([policies.fixed(3), policies.fixed(n)], 1e-3, law, n)  # the shapes of the cut-short test
    kwargs = {"seeds": 3, "time_horizon": 3.0, "iterations": 60}
    sims = {c: engine.simulate(prob, cfg, **kwargs, spec=RunSpec(n=n, chunk=c)) for c in (20, 25)}
    assert [s.iterations for s in sims.values()] == [80, 75]
    for name, field in sims[20].summary._asdict().items():
        a, b = jax.tree.leaves(field), jax.tree.leaves(getattr(sims[25].summary, name))
        equal = all(np.array_equal(x, y, equal_nan=True) for x, y in zip(a, b))
        assert equal == (name not in ("final_time", "iterations")), name


def test_a_plain_list_slowdown_runs_and_a_wrong_length_is_one_line():
    x, y, _ = synthetic_linear(m=200, d=5, seed=0)
    prob = problems.linear_regression(x, y, n=10)
    law = delays.make_law("exponential", rate=1.0)

    def run(slowdown, n=10):
        configs = stack_configs([SimConfig(policies.fixed(3), np.float64(1e-3), law, slowdown)])
        return engine.simulate(prob, configs, seeds=2, time_horizon=5.0, spec=RunSpec(n=n))

    listed, arrays = run([1.0] * 9 + [2.0]), run(np.asarray([1.0] * 9 + [2.0]))
    np.testing.assert_array_equal(listed.summary.error.mean, arrays.summary.error.mean)
    with pytest.raises(ConfigError, match=r"slowdown: needs one entry per worker \(10\), got shape \(9,\)"):
        run([1.0] * 9)
    with pytest.raises(ConfigError, match="spec.n"):
        run([1.0] * 10, n=9)


def test_each_configuration_stops_once_its_runs_have_passed_the_horizon():
    """k = 1 of n = 10 makes an update about every 0.1 time units, k = n about every 2.9: the
    slow configuration stops after the first chunk in which all its runs have passed the
    horizon, while the fast one goes on. Its summary is then the same alone or beside the fast
    one (also a block with stopped runs beside running ones keeps them as they were), its
    trajectory holds blanks for the chunks it did not step, and each configuration's mean time
    per update is over its own updates."""
    n, horizon, chunk = 10, 12.0, 5
    prob = _linear(m=60, d=4, n=n)
    law = delays.make_law("exponential", rate=1.0)
    spec = RunSpec(n=n, chunk=chunk, keep_trajectories=True)
    both = engine.simulate(prob, _configs([policies.fixed(n), policies.fixed(1)], 1e-3, law, n), seeds=3,
                           time_horizon=horizon, spec=spec, block=8, grid_iterations=40)
    alone = engine.simulate(prob, _configs([policies.fixed(n)], 1e-3, law, n), seeds=3, time_horizon=horizon,
                            spec=spec, block=8, grid_iterations=40)  # the same iteration grid
    slow, fast = (int(u) for u in both.summary.iterations)
    assert slow % chunk == 0 and fast % chunk == 0 and slow < fast == both.iterations
    final = both.summary.final_time
    assert np.all(final > horizon)
    # the slow configuration stopped at the first chunk boundary where every run had passed
    # (trajectory entry j is t_j, the clock after j updates)
    earlier = both.trajectories.time[0, :, slow - chunk]  # the clocks at the chunk boundary before
    assert np.any(np.asarray(earlier) <= horizon)
    assert np.all(np.isnan(np.asarray(both.trajectories.error[0, :, slow:])))
    assert np.all(np.asarray(both.trajectories.iteration[0, :, slow:]) == -1)
    assert np.all(np.asarray(both.trajectories.iteration[0, :, :slow]) == np.arange(slow))
    assert np.all(np.isfinite(np.asarray(earlier)))
    for name, field in alone.summary._asdict().items():
        for a, b in zip(jax.tree.leaves(field), jax.tree.leaves(getattr(both.summary, name))):
            assert np.array_equal(np.asarray(a)[0], np.asarray(b)[0], equal_nan=True), name
    per_update = np.asarray(final, np.float64) / np.asarray(both.summary.iterations, np.float64)[:, None]
    assert per_update[0].mean() > 10 * per_update[1].mean()  # E[X_(10:10)] = H_10 = 2.93 vs 1/10
