"""``fastk-jax check-bounds``: the theory next to the simulator, claim by claim.

Every check is a claim of one of the papers, a value the theory gives, and a Monte Carlo
estimate from the simulator (the engine or its delay sampler, never a separate sampler) with
a 95% confidence interval. A check *holds* when the estimate does not contradict the claim:

* an **equality** (E[X_(k:n)] = ...) holds when the theory lies inside the interval. There
  are many of them, so their intervals are simultaneous 95% intervals (Bonferroni over the
  equality checks of the run): with every claim true, all of them hold in 95% of runs;
* an **upper bound** (Lemma 1) holds unless the whole interval lies above the bound;
* a **comparison** (the bound-optimal policy against the best fixed k) holds unless the
  whole interval lies above the value it should not exceed.

A failing check is shown as failing, with the reason where one is known (Lemma 1 holds "with
high probability for large t" and under a step-size condition; an early time or a larger step
may break it, and that is information).
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import data, engine
from ..core import delays, policies, problems
from ..core.spec import RunSpec, SimConfig, sample_delays, stack_configs
from ..theory import async_theory
from ..theory.constants import problem_constants
from ..theory.fastest_k_bounds import BoundConstants, bound_optimal_policy, error_bound, order_means
from ..theory.order_stats import order_statistic_moments


class Check(NamedTuple):
    name: str
    kind: str  # "equal", "upper" or "at most"
    theory: float
    estimate: float
    half_width: float  # of the 95% interval (simultaneous for equalities)
    reason: str = ""

    @property
    def ci_low(self) -> float:
        return self.estimate - self.half_width

    @property
    def ci_high(self) -> float:
        return self.estimate + self.half_width

    @property
    def holds(self) -> bool:
        if self.kind == "equal":
            return self.ci_low <= self.theory <= self.ci_high
        return self.ci_low <= self.theory

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "theory": float(self.theory),
            "estimate": float(self.estimate),
            "ci_low": float(self.ci_low),
            "ci_high": float(self.ci_high),
            "holds": bool(self.holds),
            "reason": self.reason,
        }


class Estimate(NamedTuple):
    """A Monte Carlo mean and its standard error."""

    mean: float
    se: float


def _estimate(samples: np.ndarray) -> Estimate:
    samples = np.asarray(samples, np.float64)
    return Estimate(float(samples.mean()), float(samples.std(ddof=1) / math.sqrt(samples.size)))


def _z(level: float, tests: int = 1) -> float:
    """Two-sided normal quantile for ``tests`` simultaneous intervals at family level ``level``."""
    return NormalDist().inv_cdf(1 - (1 - level) / (2 * max(tests, 1)))


# ---------------------------------------------------------------- order statistics

ORDER_STATISTIC_LAWS = (
    ("exponential", {"rate": 1.0}),
    ("shifted_exponential", {"shift": 1.0, "rate": 1.0}),
    ("pareto", {"shape": 3.0, "scale": 1.0}),
    ("uniform", {"low": 0.0, "high": 2.0}),
    ("lognormal", {"mu": 0.0, "sigma": 0.5}),
    ("weibull", {"shape": 2.0, "scale": 1.0}),
    ("hyperexponential", {"probs": [0.9, 0.1], "rates": [2.0, 0.2]}),
)


def order_statistic_samples(law, n: int, draws: int, seed: int, slowdown=None) -> np.ndarray:
    """(draws, n): sorted delays as the engine draws them (``spec.sample_delays``), float64."""
    slowdown = np.ones(n) if slowdown is None else np.asarray(slowdown, np.float64)
    config = SimConfig(policy=None, eta=None, delay=law, slowdown=jnp.asarray(slowdown))
    keys = jax.random.split(jax.random.key(seed), draws)
    sample = jax.jit(jax.vmap(lambda key: jnp.sort(sample_delays(config, key, n))))
    return np.asarray(sample(keys), np.float64)


def order_statistic_checks(quick: bool, seed: int = 0) -> list[tuple[str, float, Estimate, str]]:
    """E[X_(k:n)] for every law at n = 10 and k = 1, 5, 10, and for a cluster of two speeds."""
    n, ks = 10, (1, 5, 10)
    draws = 20_000 if quick else 400_000
    cases = [(name, delays.make_law(name, **params), None) for name, params in ORDER_STATISTIC_LAWS]
    slow = np.r_[np.ones(n // 2), np.full(n - n // 2, 3.0)]
    cases.append(("exponential, half the workers 3x slower", delays.make_law("exponential", rate=1.0), slow))
    out = []
    for i, (name, law, slowdown) in enumerate(cases):
        samples = order_statistic_samples(law, n, draws, seed + i, slowdown)
        for k in ks:
            moments = order_statistic_moments(law, k, n, slowdown=slowdown)
            name_k = f"E[X_({k}:{n})], {name}"
            out.append((name_k, moments.mean, _estimate(samples[:, k - 1]), f"theory by {moments.method}"))
    return out


def equalities(cases: list[tuple[str, float, Estimate, str]]) -> list[Check]:
    z = _z(0.95, len(cases))
    return [Check(name, "equal", theory, est.mean, z * est.se, note) for name, theory, est, note in cases]


# ---------------------------------------------------------------- Lemma 1 and Theorem 1 on least squares

LEMMA1_PROBLEM = {"m": 500, "d": 5, "n": 10, "data_seed": 0}  # the paper's generator (Sec. V-A), small
LEMMA1_FIXED_K = (1, 2, 5, 10)


class Lemma1Setup(NamedTuple):
    problem: problems.LinearRegression
    constants: BoundConstants
    mean_times: np.ndarray  # mu_1..mu_n
    policy: policies.KPolicy  # Theorem 1's schedule


def lemma1_setup() -> Lemma1Setup:
    """The least-squares problem of the checks, its constants (``theory.constants``), exponential
    delays of mean 1, and the largest step size that meets Proposition 1's condition
    eta <= 1 / [2 L (M_G / (k s) + 1)] for every k (k = 1 is the strictest)."""
    cfg = LEMMA1_PROBLEM
    x, y, _ = data.synthetic_linear(cfg["m"], cfg["d"], cfg["data_seed"])
    problem = problems.linear_regression(x, y, cfg["n"])
    pc = problem_constants(problem)
    eta = 1.0 / (2 * pc.L * (pc.M_G / pc.s + 1))
    bc = BoundConstants(eta=eta, L=pc.L, c=pc.c, sigma2=pc.sigma2, s=pc.s, gap0=pc.initial_gap)
    mu = order_means(delays.make_law("exponential", rate=1.0), cfg["n"])
    return Lemma1Setup(problem, bc, mu, bound_optimal_policy(bc, mu))


def lemma1_checks(quick: bool, seed: int = 0) -> tuple[list[Check], list[tuple[str, float, Estimate, str]]]:
    """Run fixed k and Theorem 1's policy on the checks' problem; return the bound checks and
    the per-iteration time equalities (Lemma 4 / eq. (7) measured through the engine)."""
    setup = lemma1_setup()
    n = LEMMA1_PROBLEM["n"]
    law = delays.make_law("exponential", rate=1.0)
    pols = [policies.fixed(k) for k in LEMMA1_FIXED_K] + [setup.policy]
    configs = stack_configs([SimConfig(p, np.float64(setup.constants.eta), law, np.ones(n)) for p in pols])
    horizon = 1.5 * float(setup.policy.at[-1])  # past Theorem 1's last switch
    seeds = 16 if quick else 200
    sim = engine.simulate(
        setup.problem,
        configs,
        seeds=seeds,
        time_horizon=horizon,
        spec=RunSpec(n=n, chunk=2000),
        grid_points=9,
        seed=seed,
    )
    err = sim.summary.error
    times = sim.time_grid
    at = [len(times) // 4, len(times) // 2, len(times) - 1]
    checks, equalities = [], []
    for c, k in enumerate(LEMMA1_FIXED_K):
        per_iteration = sim.summary.final_time[c] / sim.summary.iterations[c]  # its own updates
        equalities.append(
            (
                f"mean time per iteration, fixed k={k} (Lemma 4, eq. (7))",
                setup.mean_times[k - 1],
                _estimate(per_iteration),
                "E[X_(k:n)] exact; measured on the engine's clock",
            )
        )
        for g in at:
            bound = float(error_bound(times[g], k, setup.constants, setup.mean_times[k - 1]))
            checks.append(
                Check(
                    f"Lemma 1: E[F(w_t)] - F* <= bound, k={k}, t={times[g]:.0f}",
                    "upper",
                    bound,
                    float(err.mean[c, g]),
                    float(err.half_width[c, g]),
                    f"bound / mean error = {bound / float(err.mean[c, g]):.3g} (sigma^2 by Young's inequality)",
                )
            )
    policy = len(LEMMA1_FIXED_K)
    for g in at:
        best = int(np.nanargmin(err.mean[:policy, g]))
        checks.append(
            Check(
                f"Theorem 1 policy <= best fixed k (k={LEMMA1_FIXED_K[best]}), t={times[g]:.0f}",
                "at most",
                float(err.mean[best, g]),
                float(err.mean[policy, g]),
                float(err.half_width[policy, g]),
                "the policy optimizes the bound, not the error",
            )
        )
    diverged = int(np.sum(sim.summary.diverged))
    if diverged:
        checks = [c._replace(reason=f"{diverged} runs diverged and are left out; " + c.reason) for c in checks]
    return checks, equalities


# ---------------------------------------------------------------- the async paper's runtime laws

ASYNC_P = 8
ASYNC_KS = (1, 4, 8)
ASYNC_LAWS = {"exp(1)": 0.0, "1+exp(1)": 1.0}  # shifted exponentials: shift 0 is exp(1)


class SchemeRuns(NamedTuple):
    per_iteration: np.ndarray  # (laws, ks, S) each run's clock over its updates
    fresh: np.ndarray  # (laws, ks, S) fraction of applied gradients with staleness 0


def _scheme_runs(scheme: str, seeds: int, iterations: int, seed: int) -> SchemeRuns:
    """Fixed k in ASYNC_KS under each law of ASYNC_LAWS, on a one-parameter least-squares problem
    (the clock does not depend on the model)."""
    p = ASYNC_P
    x, y, _ = data.synthetic_linear(2 * p, 1, 0)
    problem = problems.linear_regression(x, y, p)
    configs = [
        SimConfig(
            policies.fixed(k),
            np.float64(1e-6),
            delays.make_law("shifted_exponential", shift=shift, rate=1.0),
            np.ones(p),
        )
        for shift in ASYNC_LAWS.values()
        for k in ASYNC_KS
    ]
    spec = RunSpec(n=p, chunk=iterations, scheme=scheme, staleness_bins=2, keep_trajectories=True)
    sim = engine.simulate(
        problem, stack_configs(configs), seeds=seeds, time_horizon=1e-3, spec=spec, iterations=iterations - 1, seed=seed
    )
    shape = (len(ASYNC_LAWS), len(ASYNC_KS), seeds)
    counts = np.asarray(sim.trajectories.staleness, np.float64).sum(axis=2)  # (C, S, 2)
    return SchemeRuns(
        per_iteration=(np.asarray(sim.summary.final_time, np.float64) / _updates(sim)).reshape(shape),
        fresh=(counts[..., 0] / counts.sum(axis=-1)).reshape(shape),
    )


def _ratio(a: np.ndarray, b: np.ndarray) -> Estimate:
    """mean(a) / mean(b) of independent samples, its standard error by the delta method."""
    ea, eb = _estimate(a), _estimate(b)
    r = ea.mean / eb.mean
    return Estimate(r, abs(r) * math.hypot(ea.se / ea.mean, eb.se / eb.mean))


def async_checks(quick: bool, seed: int = 0) -> tuple[list[tuple[str, float, Estimate, str]], list[Check]]:
    """The runtime laws of the async paper (Lemmas 2, 4-6, Theorems 1-2) on the engine's schemes."""
    seeds, iterations = (16, 400) if quick else (200, 2000)
    runs = {s: _scheme_runs(s, seeds, iterations, seed) for s in ("k_sync", "k_batch_sync", "k_async", "k_batch_async")}
    p, law, k4 = ASYNC_P, {name: i for i, name in enumerate(ASYNC_LAWS)}, ASYNC_KS.index(4)
    one = ASYNC_KS.index(1)

    def mean(name, k):
        return order_statistic_moments(
            delays.make_law("shifted_exponential", shift=ASYNC_LAWS[name], rate=1.0), k, p
        ).mean

    def t(scheme, name, k):
        return runs[scheme].per_iteration[law[name], ASYNC_KS.index(k)]

    eq = [
        (
            "K-batch-sync time/iteration = K/(P mu) (Erlang), exp(1), K=4",
            async_theory.k_batch_sync_law(4, p, 1.0).mean(),
            _estimate(t("k_batch_sync", "exp(1)", 4)),
            "App. B.2",
        ),
        (
            "K-async time/iteration = E[X_(K:P)], exp(1), K=4 (App. B.4.1)",
            async_theory.k_async_time_exponential(4, p, 1.0),
            _estimate(t("k_async", "exp(1)", 4)),
            "exact for exponentials",
        ),
    ]
    for name, shift in ASYNC_LAWS.items():
        mean_x = shift + 1.0
        for k in (1, 4):
            eq.append(
                (
                    f"Lemma 5: K-batch-async time/iteration = K E[X]/P, {name}, K={k}",
                    async_theory.k_batch_async_time(k, p, mean_x),
                    _estimate(t("k_batch_async", name, k)),
                    "renewal, long run",
                )
            )
        eq.append(
            (
                f"Theorem 1: E[T_sync]/E[T_async] = P E[X_(P:P)]/E[X], {name}, P={p}",
                async_theory.sync_async_speedup(p, mean_x, mean(name, p)),
                _ratio(t("k_sync", name, p), t("k_batch_async", name, 1)),
                "sync K=P over async K=1",
            )
        )
    eq.append(
        (
            "Theorem 2: E[T_K-async]/E[T_K-batch-async] = P E[X_(K:P)]/(K E[X]), exp(1), K=4",
            async_theory.batch_speedup(4, p, 1.0, mean("exp(1)", 4)),
            _ratio(t("k_async", "exp(1)", 4), t("k_batch_async", "exp(1)", 4)),
            "exponentials",
        )
    )
    eq.append(
        (
            "Lemma 2: p0 = 1/P (fresh fraction, fully async), exp(1)",
            async_theory.p0_exponential(p, 1),
            _estimate(runs["k_batch_async"].fresh[law["exp(1)"], one]),
            "memoryless",
        )
    )
    eq.append(
        (
            "p0 = K/P (fresh fraction, K-async), exp(1), K=4",
            async_theory.p0_exponential(p, 4),
            _estimate(runs["k_async"].fresh[law["exp(1)"], k4]),
            "the paper's 1/P is a lower bound here",
        )
    )
    bounds = []
    est = _estimate(t("k_async", "1+exp(1)", 4))
    bounds.append(
        Check(
            "Lemma 6: K-async time/iteration <= E[X_(K:P)], 1+exp(1), K=4",
            "upper",
            async_theory.k_async_time_bound(4, p, mean("1+exp(1)", 4)),
            est.mean,
            1.96 * est.se,
            "new-longer-than-used law",
        )
    )
    est = _estimate(runs["k_batch_async"].fresh[law["1+exp(1)"], one])
    bounds.append(
        Check(
            "Lemma 2: p0 <= 1/P (fresh fraction, fully async), 1+exp(1)",
            "upper",
            1.0 / p,
            est.mean,
            1.96 * est.se,
            "new-longer-than-used law",
        )
    )
    return eq, bounds


# ---------------------------------------------------------------- cluster models

CLUSTER_N = 10


def _k_sync_times(law, slowdown, ks, seeds, iterations, seed, cluster=(), **fields) -> np.ndarray:
    """(len(ks), seeds) each K-sync run's mean time per update on the one-parameter problem."""
    x, y, _ = data.synthetic_linear(2 * CLUSTER_N, 1, 0)
    problem = problems.linear_regression(x, y, CLUSTER_N)
    configs = stack_configs([SimConfig(policies.fixed(k), np.float64(1e-6), law, slowdown, **fields) for k in ks])
    spec = RunSpec(n=CLUSTER_N, chunk=iterations, cluster=cluster)
    sim = engine.simulate(problem, configs, seeds=seeds, time_horizon=1e-3, spec=spec, iterations=iterations - 1, seed=seed)
    return np.asarray(sim.summary.final_time, np.float64) / _updates(sim)


def _updates(sim: engine.Simulation) -> np.ndarray:
    """(C, 1) the updates each configuration's runs made (a configuration stops on its own)."""
    return np.asarray(sim.summary.iterations, np.float64)[:, None]


def cluster_checks(quick: bool, seed: int = 0) -> list[tuple[str, float, Estimate, str]]:
    """Order statistics beyond the papers' iid workers: deterministic workers tau_i = sqrt(i)
    (the k-th smallest tau every update: no randomness, so the interval is a point; k = 4 and 9
    make the clock's float32 sums exact) and a slowdown shared by all workers at an update
    (Z = 3 with probability 1/4, independent of the delays: E[T] = E[Z] E[X_(k:n)])."""
    from ..core import cluster
    from ..core.spec import Shared

    seeds, iterations = (16, 400) if quick else (200, 2000)
    n, out = CLUSTER_N, []
    tau = cluster.slowdown_profile("sqrt", n)
    constant = delays.make_law("constant", value=1.0)
    times = _k_sync_times(constant, tau, (4, 9), 2, iterations, seed)
    for row, k in zip(times, (4, 9)):
        theory = order_statistic_moments(constant, k, n, slowdown=tau).mean
        out.append((f"K-sync time/iteration = tau_(K), tau_i = sqrt(i), K={k}", theory, _estimate(row), "deterministic"))
    law, shared = delays.make_law("exponential", rate=1.0), Shared(np.float64(0.25), np.float64(3.0))
    times = _k_sync_times(law, np.ones(n), (1, 4), seeds, iterations, seed, ("shared",), shared=shared)
    for row, k in zip(times, (1, 4)):
        theory = 1.5 * order_statistic_moments(law, k, n).mean
        out.append((f"K-sync time/iteration = E[Z] E[X_(K:P)], shared Z, exp(1), K={k}", theory, _estimate(row),
                    "Z = 3 w.p. 1/4 per update"))
    return out


# ---------------------------------------------------------------- the table


def run_checks(quick: bool = False, seed: int = 0) -> list[Check]:
    """Every check, in the order of the table; the equality checks share one simultaneous level."""
    bound_checks, engine_equalities = lemma1_checks(quick, seed)
    async_equalities, async_bounds = async_checks(quick, seed)
    cases = order_statistic_checks(quick, seed) + engine_equalities + async_equalities + cluster_checks(quick, seed)
    return equalities(cases) + bound_checks + async_bounds


def format_table(checks: list[Check]) -> str:
    """A plain-text table: check, theory, estimate with its interval, holds or fails, reason."""
    rows = [("check", "theory", "estimate [95% interval]", "", "note")]
    for c in checks:
        interval = f"{c.estimate:.5g} [{c.ci_low:.5g}, {c.ci_high:.5g}]"
        rows.append((c.name, f"{c.theory:.5g}", interval, "holds" if c.holds else "FAILS", c.reason))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4] for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    failed = sum(not c.holds for c in checks)
    lines.append(f"{len(checks) - failed} of {len(checks)} checks hold")
    return "\n".join(line.rstrip() for line in lines)
