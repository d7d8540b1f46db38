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

from . import delays
from .spec import SimConfig, sample_delays
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
            "theory": self.theory,
            "estimate": self.estimate,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "holds": self.holds,
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
            out.append((f"E[X_({k}:{n})], {name}", moments.mean, _estimate(samples[:, k - 1]), moments.method))
    return out


def equalities(cases: list[tuple[str, float, Estimate, str]]) -> list[Check]:
    z = _z(0.95, len(cases))
    return [
        Check(name, "equal", theory, est.mean, z * est.se, f"theory by {method}") for name, theory, est, method in cases
    ]


# ---------------------------------------------------------------- the table


def run_checks(quick: bool = False, seed: int = 0) -> list[Check]:
    """Every check, in the order of the table."""
    return equalities(order_statistic_checks(quick, seed))


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
