"""The four schemes of the engine against the NumPy reference (``reference_schemes``) on the very
same random numbers, in float64; and the engine's runtime and staleness against the theory."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastk_jax import data, engine
from fastk_jax.core import delays, policies, problems, schemes
from fastk_jax.core.spec import RunSpec, SimConfig, stack_configs
from fastk_jax.reference import schemes as reference_schemes
from fastk_jax.theory import async_theory

N = 5
SEEDS = 2
ITERATIONS = 59  # chunk 60: the engine makes exactly 60 updates
CHUNK = 60
BATCH = 3

POLICIES = {
    "fixed k=2": policies.fixed(2),
    "fixed k=1": policies.fixed(1),
    "time schedule": policies.schedule(1, [2.0, 6.0], [3, 5], by="time"),
    "adaptive": policies.adaptive(1, 5, thresh=2, burnin=5, step=2),
}


def _problem(kind: str):
    if kind == "linear":
        x, y, _ = data.synthetic_linear(m=100, d=4, seed=2)
        return problems.linear_regression(x, y, n=N)
    pytest.importorskip("sklearn")
    x, labels = data.load_digits()
    return problems.logistic_regression(x[:100, ::4], labels[:100], n=N, reg=0.05, num_classes=10)


def _run(problem, spec: RunSpec, eta: float, lr_c: float = 1.0, **fields):
    """Every policy of POLICIES; ``fields``: further SimConfig fields (staleness_limit, clip)."""
    law = delays.make_law("exponential", rate=1.0)
    names = list(POLICIES)
    fields = {f: np.float64(v) for f, v in fields.items()}
    configs = stack_configs(
        [SimConfig(POLICIES[p], np.float64(eta), law, np.ones(N), np.float64(lr_c), **fields) for p in names]
    )
    sim = engine.simulate(problem, configs, seeds=SEEDS, time_horizon=0.5, spec=spec, iterations=ITERATIONS)
    assert sim.iterations == CHUNK
    num_rows = problem.x.shape[0] * problem.x.shape[1]
    draws = engine.scheme_draws(configs, spec, num_rows, SEEDS, CHUNK)
    return names, sim, draws


CASES = [
    ("k_sync", "shard", "fixed", "linear"),
    ("k_batch_sync", "shard", "fixed", "linear"),
    ("k_batch_sync", "minibatch", "fixed", "logistic"),
    ("k_async", "shard", "fixed", "linear"),
    ("k_async", "minibatch", "staleness", "linear"),
    ("k_async", "shard", "delay_adaptive", "logistic"),
    ("k_batch_async", "shard", "fixed", "logistic"),
    ("k_batch_async", "minibatch", "fixed", "linear"),
    ("k_batch_async", "shard", "staleness", "linear"),
    ("rennala", "minibatch", "fixed", "linear"),
    ("ringmaster", "shard", "fixed", "linear", {"staleness_limit": 2}),
    ("ringmaster", "minibatch", "delay_adaptive", "logistic", {"staleness_limit": 3}),
    ("ringmaster", "shard", "fixed", "logistic", {"staleness_limit": 1}),
    ("k_batch_async", "shard", "fixed", "linear", {"clip": 0.05}),
    ("k_sync", "shard", "fixed", "logistic", {"clip": 0.02}),
    ("k_batch_async", "shard", "delay_adaptive", "linear", {"momentum": 0.5}),  # fully async with momentum
]
SPEC_OPTIONS = ("momentum",)  # options of the RunSpec (heavy-ball momentum, optax.trace), not SimConfig


def _case_id(case) -> str:
    options = case[4] if len(case) == 5 else {}
    return "-".join([*case[:4], *(f"{k}={v}" for k, v in options.items())])


@pytest.mark.parametrize(
    "scheme,gradients,lr,kind,options", [c if len(c) == 5 else (*c, {}) for c in CASES], ids=[_case_id(c) for c in CASES]
)
def test_engine_matches_the_reference_on_the_same_draws(scheme, gradients, lr, kind, options):
    """``options``: SimConfig fields that are reference options too (Ringmaster's R, clipping)."""
    with jax.enable_x64(True):
        problem = _problem(kind)
        eta = 0.5 * problems.stable_step_limit(problem) if kind == "linear" else 2.0
        eta *= 1 - options.get("momentum", 0.0)  # heavy ball steps eta / (1 - beta) in the long run
        optimizer = {"optimizer": "momentum", "momentum": options["momentum"]} if "momentum" in options else {}
        spec = RunSpec(
            n=N, chunk=CHUNK, scheme=scheme, gradients=gradients, batch_size=BATCH, lr=lr, keep_trajectories=True,
            **optimizer,
        )
        fields = {f: v for f, v in options.items() if f not in SPEC_OPTIONS}
        names, sim, draws = _run(problem, spec, eta, lr_c=1e-4, **fields)
    out = sim.trajectories
    for c, name in enumerate(names):
        reach = []  # the reference's first time at or below each level, per seed (NaN: not by the horizon)
        for s in range(SEEDS):
            d = reference_schemes.Draws(**{f: draws[f][c, s] for f in reference_schemes.Draws._fields})
            ref = reference_schemes.simulate_scheme_run(
                problem, POLICIES[name], eta, scheme, d, gradients=gradients, lr=lr, lr_c=1e-4, **options
            )
            where = f"{scheme}/{gradients}/{lr}/{kind}/{options}, {name}, seed {s}"
            np.testing.assert_array_equal(out.k[c, s], ref.k, err_msg=where)
            np.testing.assert_allclose(out.time[c, s], ref.time, rtol=1e-12, err_msg=where)
            np.testing.assert_array_equal(out.downloads[c, s], ref.downloads, err_msg=where)
            np.testing.assert_array_equal(out.fetches[c, s], ref.fetches, err_msg=where)
            np.testing.assert_array_equal(out.staleness[c, s], ref.staleness, err_msg=where)
            # float64 rounding only: the two sum the same terms in different orders (the reference
            # adds each stale gradient's regularization around w_j), and eta = 2 on the logistic
            # problem amplifies the last bits over 60 updates to ~1e-9; a wrong rule is off by >1e-4
            np.testing.assert_allclose(out.w[c, s], ref.w, rtol=1e-8, atol=1e-8, err_msg=where)
            np.testing.assert_allclose(out.error[c, s], ref.error, rtol=1e-8, atol=1e-10, err_msg=where)
            below = (ref.error[None, :] <= sim.levels[:, None]) & (ref.time[None, :] <= sim.time_grid[-1])
            reach.append(np.where(below.any(axis=1), ref.time[np.argmax(below, axis=1)], np.nan))
        # the engine records each run's first reaching of every level on the device
        reach = np.array(reach)
        count = (~np.isnan(reach)).sum(axis=0)
        assert count.max() > 0  # some level beyond the initial error is reached
        np.testing.assert_array_equal(sim.summary.reach_time.runs[c], count)
        mean = np.where(count > 0, np.nansum(reach, axis=0) / np.maximum(count, 1), np.nan)
        np.testing.assert_allclose(sim.summary.reach_time.mean[c], mean, rtol=1e-9)


@pytest.mark.parametrize("scheme", ["k_sync", "k_batch_sync", "k_async", "k_batch_async"])
def test_time_per_iteration_and_fresh_fraction_follow_the_theory(scheme):
    """Exp(1) delays, n = 8: the engine's mean time per update against Lemma 4 (k_sync), the
    Erlang mean k/n (k_batch_sync), the exact K-async value and Lemma 5 (k_batch_async); and
    the fraction of fresh gradients p0 = k/n for k_async (1/n for fully async), within 4
    standard errors over seeds."""
    n, seeds, iterations = 8, 64, 1500
    x, y, _ = data.synthetic_linear(m=80, d=2, seed=0)
    problem = problems.linear_regression(x, y, n=n)
    law = delays.make_law("exponential", rate=1.0)
    ks = (1, 3, 8)
    configs = stack_configs([SimConfig(policies.fixed(k), np.float64(1e-4), law, np.ones(n)) for k in ks])
    spec = RunSpec(n=n, chunk=iterations + 1, scheme=scheme, staleness_bins=4, keep_trajectories=True)
    sim = engine.simulate(problem, configs, seeds=seeds, time_horizon=1.0, spec=spec, iterations=iterations)
    per_iteration = np.asarray(sim.summary.final_time, np.float64) / sim.iterations  # (C, S)
    truth = {
        "k_sync": lambda k: async_theory.k_sync_time(k, n, lambda a, b: async_theory.exponential_order_mean(a, b)),
        "k_batch_sync": lambda k: async_theory.k_batch_sync_law(k, n, 1.0).mean(),
        "k_async": lambda k: async_theory.k_async_time_exponential(k, n, 1.0),
        "k_batch_async": lambda k: async_theory.k_batch_async_time(k, n, 1.0),
    }[scheme]
    for c, k in enumerate(ks):
        se = per_iteration[c].std(ddof=1) / np.sqrt(seeds)
        assert abs(per_iteration[c].mean() - truth(k)) <= 4 * se + 1e-12, (k, per_iteration[c].mean(), truth(k), se)
    # the fraction of fresh gradients, per seed (from the kept trajectories), against p0
    counts = np.asarray(sim.trajectories.staleness, np.float64).sum(axis=2)  # (C, S, bins)
    fresh = counts[..., 0] / counts.sum(axis=-1)  # (C, S)
    for c, k in enumerate(ks):
        if scheme in ("k_sync", "k_batch_sync"):
            np.testing.assert_array_equal(fresh[c], 1.0)
        elif scheme == "k_async" or k == 1:
            p0 = async_theory.p0_exponential(n, k if scheme == "k_async" else 1)
            se = fresh[c].std(ddof=1) / np.sqrt(seeds)
            assert abs(fresh[c].mean() - p0) <= 4 * se + 1e-12, (k, fresh[c].mean(), p0, se)


def _ranked(arrivals, k):
    """select_earliest as it was written first: ranks from a stable double argsort."""
    flat = arrivals.reshape(-1)
    rank = jnp.argsort(jnp.argsort(flat, stable=True), stable=True).reshape(arrivals.shape)
    selected = rank < k
    return selected, jnp.max(jnp.where(selected, arrivals, -jnp.inf)), rank == k - 1


@pytest.mark.parametrize("x64", [False, True])
def test_select_earliest_is_the_stable_ranking(x64):
    """Bisection over the bits gives exactly the stable argsort's choice: ties (by flat index),
    -0.0 against 0.0, infinities, NaN (last) and negative times, in float32 and float64."""
    rng = np.random.default_rng(0)
    with jax.enable_x64(x64):
        fast, slow = jax.jit(schemes.select_earliest), jax.jit(_ranked)
        dtype = np.float64 if x64 else np.float32
        for trial in range(120):
            shape = [(50, 1), (7, 3), (5, 5), (1, 1), (12, 1)][trial % 5]
            a = rng.exponential(size=shape).round(trial % 3).astype(dtype)  # rounding makes ties
            for every, value in ((7, -0.0), (11, np.inf), (13, np.nan)):
                if trial % every == 0:
                    a.flat[rng.integers(a.size)] = value
            if trial % 17 == 0:
                a = -a
            k = jnp.int32(rng.integers(1, a.size + 1))
            got, want = fast(jnp.asarray(a), k), slow(jnp.asarray(a), k)
            np.testing.assert_array_equal(got[0], want[0], err_msg=f"{a}, k={k}")
            np.testing.assert_array_equal(got[2], want[2], err_msg=f"{a}, k={k}")
            np.testing.assert_array_equal(got[1], want[1], err_msg=f"{a}, k={k}")


@pytest.mark.parametrize("scheme", ["k_sync", "k_async", "k_batch_async"])
def test_staleness_histogram_counts_the_selected(scheme):
    """With two bins every applied gradient of staleness >= 1 lands in the last one: the engine's
    histogram per update equals the reference's on the same draws (which clips tau to bins - 1),
    sums to k, and nothing is stale when cancelling."""
    with jax.enable_x64(True):
        problem = _problem("linear")
        spec = RunSpec(n=N, chunk=CHUNK, scheme=scheme, staleness_bins=2, keep_trajectories=True)
        names, sim, draws = _run(problem, spec, 1e-3)
    hist = np.asarray(sim.trajectories.staleness)  # (C, S, J, 2)
    np.testing.assert_array_equal(hist.sum(axis=-1), sim.trajectories.k)
    if scheme == "k_sync":
        np.testing.assert_array_equal(hist[..., 1], 0)
    else:
        assert hist[..., 1].sum() > 0  # stale gradients are applied and clipped into the last bin
    for c, name in enumerate(names):
        for s in range(SEEDS):
            d = reference_schemes.Draws(**{f: draws[f][c, s] for f in reference_schemes.Draws._fields})
            ref = reference_schemes.simulate_scheme_run(problem, POLICIES[name], 1e-3, scheme, d, staleness_bins=2)
            np.testing.assert_array_equal(hist[c, s], ref.staleness, err_msg=f"{scheme}, {name}, seed {s}")


ASYNC_ETA = 0.002  # stable for fully async SGD on the problem of _async_runs (n updates stale)


def _async_runs(scheme: str, n: int = 6, iterations: int = 199, law=None, seeds: int = 4, **fields):
    """Fixed k in {1, 3} on a small least-squares problem, trajectories kept (float32)."""
    x, y, _ = data.synthetic_linear(m=60, d=3, seed=1)
    problem = problems.linear_regression(x, y, n=n)
    law = law or delays.make_law("exponential", rate=1.0)
    fields = {f: np.float64(v) for f, v in fields.items()}
    configs = stack_configs([SimConfig(policies.fixed(k), np.float64(ASYNC_ETA), law, np.ones(n), **fields) for k in (1, 3)])
    spec = RunSpec(n=n, chunk=iterations + 1, scheme=scheme, staleness_bins=8, keep_trajectories=True)
    return engine.simulate(problem, configs, seeds=seeds, time_horizon=1.0, spec=spec, iterations=iterations)


def test_ringmaster_without_a_limit_is_k_batch_async_and_with_one_applies_nothing_as_stale():
    """R = inf stops nothing: bit for bit K-batch-async. R = 2: no applied gradient is 2 or more
    updates stale (the histogram's bins from R on are empty) and the stopped computations are
    fetches of their own."""
    base = _async_runs("k_batch_async").trajectories
    unlimited = _async_runs("ringmaster").trajectories
    for field in ("time", "error", "w", "fetches", "staleness"):
        np.testing.assert_array_equal(getattr(unlimited, field), getattr(base, field), err_msg=field)
    limited = _async_runs("ringmaster", staleness_limit=2).trajectories
    histogram = np.asarray(limited.staleness).sum(axis=2)  # (C, S, bins)
    assert histogram[..., :2].sum() > 0 and histogram[..., 2:].sum() == 0
    assert np.asarray(base.staleness).sum(axis=2)[..., 2:].sum() > 0  # K-batch-async does apply them
    stopped = np.diff(np.asarray(limited.fetches), axis=-1) - np.asarray(limited.k)[..., :-1]
    assert stopped.min() >= 0 and stopped.sum() > 0


def test_ringmaster_time_per_update_is_k_batch_asyncs_with_memoryless_delays_only():
    """Exp(1) delays are memoryless: a stopped computation restarted now finishes as late, in law,
    as the one it replaces, so the mean time per update stays Lemma 5's k E[X] / n. With
    X = 1 + Exp(1) a stop throws away the elapsed part of the fixed second: slower than
    Lemma 5's k E[X] / n (here by far more than 4 standard errors over seeds)."""
    n, seeds, r = 6, 32, 2
    for law, stopped_costs in ((delays.make_law("exponential", rate=1.0), False),
                               (delays.make_law("shifted_exponential", shift=1.0, rate=1.0), True)):
        sim = _async_runs("ringmaster", n=n, law=law, seeds=seeds, staleness_limit=r)
        per_update = np.asarray(sim.summary.final_time, np.float64) / sim.iterations  # (C, S)
        for c, k in enumerate((1, 3)):
            truth = async_theory.k_batch_async_time(k, n, float(law.mean()))
            se = per_update[c].std(ddof=1) / np.sqrt(seeds)
            gap = per_update[c].mean() - truth
            assert (gap > 4 * se) if stopped_costs else (abs(gap) <= 4 * se), (law.name, k, gap, se)


def test_rennala_is_k_batch_sync_bit_for_bit():
    a, b = _async_runs("k_batch_sync").trajectories, _async_runs("rennala").trajectories
    for field in ("time", "error", "w", "fetches", "staleness"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


def test_clipping_bounds_every_step_and_changes_nothing_when_loose():
    """||w_(j+1) - w_j|| <= eta c with clip c (plain SGD); a limit above every step changes no bit."""
    base = _async_runs("k_batch_async").trajectories
    assert np.all(np.isfinite(np.asarray(base.w)))  # no run diverged: every step is measured
    steps = np.linalg.norm(np.diff(np.asarray(base.w, np.float64), axis=2), axis=-1) / ASYNC_ETA
    loose = _async_runs("k_batch_async", clip=2.0 * steps.max()).trajectories
    np.testing.assert_array_equal(loose.w, base.w)
    c = 0.25 * float(np.median(steps))
    clipped = _async_runs("k_batch_async", clip=c).trajectories
    steps = np.linalg.norm(np.diff(np.asarray(clipped.w, np.float64), axis=2), axis=-1) / ASYNC_ETA
    assert steps.max() <= c * (1 + 1e-5) and np.mean(steps >= c * (1 - 1e-5)) > 0.5

