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

from . import data, delays, engine, policies, problems
from .spec import RunSpec, SimConfig, sample_delays, stack_configs
from .theory.constants import problem_constants
from .theory.fastest_k_bounds import BoundConstants, bound_optimal_policy, error_bound, order_means
from .theory.order_stats import order_statistic_moments


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
        per_iteration = sim.summary.final_time[c] / sim.iterations
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


# ---------------------------------------------------------------- the table


def run_checks(quick: bool = False, seed: int = 0) -> list[Check]:
    """Every check, in the order of the table; the equality checks share one simultaneous level."""
    bound_checks, engine_equalities = lemma1_checks(quick, seed)
    return equalities(order_statistic_checks(quick, seed) + engine_equalities) + bound_checks


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
