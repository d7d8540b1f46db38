"""Theory of the adaptive paper: the error bound of fastest-k SGD against wall-clock time
(Lemma 1) and the bound-optimal schedule of k (Theorem 1), with Example 1 (Figs. 1-2).

Host-side NumPy, float64. Times are in the units of the delays. Notation as in the paper:
eta step size, L Lipschitz constant of the gradient, c strong-convexity constant, sigma^2
variance bound, s data vectors per worker, gap0 = F(w_0) - F*, mu_k = E[X_(k:n)],
alpha = -ln(1 - eta c) (Sec. VI-B) and F_k = eta L sigma^2 / (2 c k s), the error floor of k.

* Lemma 1, eq. (6) with epsilon dropped (as the paper does from Theorem 1 on; it is (17)):
  e_k(t) = F_k + (1 - eta c)^(t / mu_k) (gap0 - F_k). The statement agrees with its proof,
  (9) and (16), where gap0 >= F_k (the step multiplies (16) by gap0 - F_k). The proof's
  probability has a typo: (15) should read y sigma_k / sqrt(t mu_k), not y sigma_k / (sqrt(t) mu_k),
  and the substitution y = eps sqrt(t mu_k) / sigma_k; (14) then gives exactly the stated
  1 - sigma_k^2 / eps^2 (2 / (t mu_k) + 1 / t^2) (``bound_probability``), which is
  dimensionless, while the printed substitution is not.
* Theorem 1: t_k = t_(k-1) + mu_k / alpha ln R_k with
  R_k = (mu_(k+1) - mu_k) (2 c k (k+1) s e(t_(k-1)) - eta L (k+1) sigma^2) / (eta L sigma^2 mu_k),
  (26), where e(t_(k-1)) is the bound *along the adaptive schedule*, (24). It is the t at which
  the rate |de/dt| of k+1 restarted from the current bound equals that of k, (23). Solving (23)
  gives e^(alpha (t_k - t_(k-1)) / mu_k) >= R_k; the paper's (25) prints "<=", a typo that does
  not change (26). Equivalently the master switches when the bound reaches
  e*_k = (mu_(k+1) F_k - mu_k F_(k+1)) / (mu_(k+1) - mu_k). Where R_k < 1 the printed t_k would
  precede t_(k-1); k+1 is then already faster and we switch at once (t_k = t_(k-1)).
  When e*_1 > e*_2 > ... (as in Example 1), the schedule maximises the rate at every bound
  level, so its bound is below every fixed-k bound at every t.
* Fig. 1 draws e_k(t) for fixed k = 1..5 (and, by its text, the adaptive bound). Fig. 2a is
  k*_fixed(t) = argmin_k e_k(t), the best fixed k for a run of length t; it changes where the
  curves of Fig. 1 cross (``fixed_k_changes``). Fig. 2b is k*_adaptive(t), Theorem 1's
  schedule, which switches earlier: it compares slopes at the current bound, not bounds
  started at t = 0.

Example 1 (n = 5, eta = 0.001, sigma^2 = 10, gap0 = 100, L = 2, c = 1, s = 10, exponential
delays with lambda = 1/mu = 1/5, mu_k of (7)). The paper prints: best fixed k is 1 on
[0, 1098) and 5 after 6623; the adaptive k is 1 on [0, 589). With its stated parameters the
formulas give (``example1()``) fixed-k changes 1->2 at 27449.92, 2->3 at 52083.74, 3->4 at
89773.65, 4->5 at 165557.51, and Theorem 1 switches at t_k = 12422.99, 15540.59, 19841.34,
27562.97. Every time scales as 1/lambda: the printed fixed-k numbers correspond to reading
rate lambda = 5 (mean delay 1/5, lambda and mu exchanged), which gives 1097.997 and 6622.300
(all 25 times shorter: 1097.997, 2083.350, 3590.946, 6622.300), i.e. the first integer times
1098 and 6623 at which k = 2 and k = 5 are best ("6623" is a ceiling, rounding gives 6622).
At rate 5 Theorem 1 gives t_1 = 496.92 (then 621.62, 793.65, 1102.52), not 589. Of the
readings tried, only one reproduces the printed 589 (588.977): rate 5 and, in addition, a
floor-to-gap ratio F_1 / gap0 ten times smaller (gap0 = 1000, s = 100 or sigma^2 = 1 are
equivalent); the same change moves the fixed-k changes to 1305.13 and 7673.29, so no single
parameter set gives all three printed numbers. Other
readings tried, alone and with rates 1/25, 1/5, 1, 5, 25: alpha = eta c instead of
-ln(1 - eta c) (gives 1098.55, 6625.61 at rate 5), log10 instead of ln, mu_k = H_k / lambda,
k / (n lambda) or a log approximation, floors without k, without s, with sigma for sigma^2 or
a factor 2 more or less; none reproduces two printed numbers (one, 6623, by coincidence).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..core import policies
from ..core.delays import Exponential
from ..errors import ConfigError
from .order_stats import order_statistic_moments


class BoundConstants(NamedTuple):
    """The constants of Proposition 1 and Lemma 1 (Appendix conditions 1-3)."""

    eta: float  # step size
    L: float  # Lipschitz constant of the gradient
    c: float  # strong-convexity constant: 2c(F(w) - F*) <= ||grad F(w)||^2
    sigma2: float  # sigma^2: a worker's partial gradient has variance <= sigma^2 / s (Appendix 3)
    s: float  # data vectors per worker
    gap0: float  # F(w_0) - F*, the initial error


def alpha(constants: BoundConstants) -> float:
    """alpha = -ln(1 - eta c) > 0, so that (1 - eta c)^J = exp(-alpha J) (Sec. VI)."""
    eta_c = constants.eta * constants.c
    if not 0 < eta_c < 1:
        raise ConfigError("bounds.eta", f"the bound needs 0 < eta c < 1, got eta c = {eta_c!r}")
    return float(-np.log1p(-eta_c))


def error_floor(k, constants: BoundConstants) -> np.ndarray:
    """F_k = eta L sigma^2 / (2 c k s): the first term of (6), the bound's limit as t -> inf."""
    eta, L, c, sigma2, s, _ = constants
    return eta * L * sigma2 / (2 * c * np.asarray(k, np.float64) * s)


def error_bound(t, k, constants: BoundConstants, mean_time) -> np.ndarray:
    """Lemma 1, eq. (6) without epsilon (= (17)): the bound on E[F(w_t)] - F* at time t, fixed k.

    e_k(t) = F_k + (1 - eta c)^(t / mu_k) (gap0 - F_k), mean_time = mu_k = E[X_(k:n)].
    Broadcasts over t, k and mean_time.
    """
    floor = error_floor(k, constants)
    decay = np.exp(-alpha(constants) * np.asarray(t, np.float64) / np.asarray(mean_time, np.float64))
    return floor + decay * (constants.gap0 - floor)


def bound_probability(t, epsilon, mean_time, var_time) -> np.ndarray:
    """Lemma 1: (6) with epsilon holds with probability >= 1 - sigma_k^2/eps^2 (2/(t mu_k) + 1/t^2).

    mean_time = mu_k and var_time = sigma_k^2 = Var[X_(k:n)] (see the module docstring for the
    typo in the proof's (15)-(16)).
    """
    t = np.asarray(t, np.float64)
    return 1.0 - var_time / epsilon**2 * (2.0 / (t * mean_time) + 1.0 / t**2)


def order_means(law, n: int, slowdown=None) -> np.ndarray:
    """mu_k = E[X_(k:n)] for k = 1..n, any delay law (``order_stats``; eq. (7) if exponential)."""
    return np.array([order_statistic_moments(law, k, n, slowdown).mean for k in range(1, n + 1)], np.float64)


def _theorem1(constants: BoundConstants, mean_times) -> tuple[np.ndarray, np.ndarray]:
    """t_0 = 0, t_1, ..., t_(n-1) of Theorem 1 and the bound e(t_k) there, (24)."""
    eta, L, c, sigma2, s, gap0 = constants
    mu = np.asarray(mean_times, np.float64)
    a = alpha(constants)
    times, errors = [0.0], [float(gap0)]
    for k in range(1, mu.size):  # mu[k - 1] is mu_k
        e = errors[-1]
        ratio = (mu[k] - mu[k - 1]) * (2 * c * k * (k + 1) * s * e - eta * L * (k + 1) * sigma2)
        ratio /= eta * L * sigma2 * mu[k - 1]
        dt = mu[k - 1] / a * np.log(max(ratio, 1.0))  # ratio < 1: k + 1 already faster, switch now
        floor = float(error_floor(k, constants))
        times.append(times[-1] + dt)
        errors.append(floor + np.exp(-a * dt / mu[k - 1]) * (e - floor))
    return np.array(times), np.array(errors)


def switching_times(constants: BoundConstants, mean_times) -> np.ndarray:
    """Theorem 1: t_1 <= ... <= t_(n-1), t_k the time to switch from k to k + 1 workers.

    mean_times = (mu_1, ..., mu_n). The schedule starts at k = 1 at t_0 = 0.
    """
    return _theorem1(constants, mean_times)[0][1:]


def adaptive_k(t, constants: BoundConstants, mean_times) -> np.ndarray:
    """k*_adaptive(t) of Fig. 2b: Theorem 1's k at time t (k + 1 from t_k on)."""
    return 1 + np.searchsorted(switching_times(constants, mean_times), t, side="right")


def adaptive_bound(t, constants: BoundConstants, mean_times) -> np.ndarray:
    """The bound along Theorem 1's schedule: (19) with k = k*_adaptive(t), restarted at each t_k."""
    mu = np.asarray(mean_times, np.float64)
    times, errors = _theorem1(constants, mu)
    t = np.asarray(t, np.float64)
    i = np.searchsorted(times, t, side="right") - 1  # k = i + 1
    floor = error_floor(i + 1, constants)
    return floor + np.exp(-alpha(constants) * (t - times[i]) / mu[i]) * (errors[i] - floor)


def bound_optimal_policy(constants: BoundConstants, mean_times) -> policies.KPolicy:
    """Theorem 1's schedule as a policy: k = 1, then k + 1 from wall-clock time t_k on."""
    n = np.size(mean_times)
    return policies.schedule(1, at=switching_times(constants, mean_times), ks=np.arange(2, n + 1), by="time")


def best_fixed_k(t, constants: BoundConstants, mean_times) -> np.ndarray:
    """k*_fixed(t) of Fig. 2a: argmin over fixed k of the bound (6) at t (ties: smaller k)."""
    mu = np.asarray(mean_times, np.float64)
    values = error_bound(np.asarray(t, np.float64)[..., None], np.arange(1, mu.size + 1), constants, mu)
    return 1 + np.argmin(values, axis=-1)


def _overtake(k: int, j: int, constants: BoundConstants, mu: np.ndarray) -> float:
    """The t > 0 from which the fixed-j bound is below the fixed-k bound, k < j (0: from the start).

    d(t) = e_k(t) - e_j(t) is 0 at t = 0, has at most one stationary point and tends to
    F_k - F_j > 0, so it has one sign change after its minimum; found by bisection.
    """
    a, gap0 = alpha(constants), constants.gap0
    fk, fj = error_floor([k, j], constants)
    rate_k, rate_j = a / mu[k - 1] * (gap0 - fk), a / mu[j - 1] * (gap0 - fj)  # |de/dt| at t = 0
    if rate_j >= rate_k:
        return 0.0

    def d(t):
        return error_bound(t, k, constants, mu[k - 1]) - error_bound(t, j, constants, mu[j - 1])

    lo = np.log(rate_k / rate_j) / (a / mu[k - 1] - a / mu[j - 1])  # the minimum of d
    hi = 2.0 * lo
    while d(hi) <= 0:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if d(mid) <= 0 else (lo, mid)
    return float(hi)


def fixed_k_changes(constants: BoundConstants, mean_times) -> tuple[np.ndarray, np.ndarray]:
    """Where k*_fixed(t) changes (Fig. 2a): ``times`` (times[0] = 0) and ``ks``.

    ks[i] is the best fixed k on [times[i], times[i + 1]). A larger k, once below, stays below
    (see ``_overtake``), so k*_fixed only grows; each change is the earliest overtaking.
    """
    mu = np.asarray(mean_times, np.float64)
    n = mu.size
    rates = (constants.gap0 - error_floor(np.arange(1, n + 1), constants)) / mu
    times, ks = [0.0], [1 + int(np.argmax(rates))]  # at t = 0+ the steepest bound is lowest
    while ks[-1] < n:
        k = ks[-1]
        overtakes = [_overtake(k, j, constants, mu) for j in range(k + 1, n + 1)]
        j = int(np.argmin(overtakes))
        times.append(max(overtakes[j], times[-1]))
        ks.append(k + 1 + j)
    return np.array(times), np.array(ks)


EXAMPLE1 = BoundConstants(eta=0.001, L=2.0, c=1.0, sigma2=10.0, s=10.0, gap0=100.0)
EXAMPLE1_N = 5
EXAMPLE1_RATE = 1 / 5  # lambda = 1/mu = 1/5 as printed: mean delay 5
# What the paper prints for Example 1 (integer time units)
EXAMPLE1_PRINTED = {"fixed_k1_until": 1098, "fixed_k5_after": 6623, "adaptive_k1_until": 589}


def example1(
    rate: float = EXAMPLE1_RATE, constants: BoundConstants = EXAMPLE1, n: int = EXAMPLE1_N, num: int = 2001
) -> dict[str, np.ndarray]:
    """Example 1 (Figs. 1-2) with iid Exp(rate) delays: every derived number, and the curves.

    Keys: ``mean_times`` mu_k (7); ``floors`` F_k; ``switching_times`` t_1..t_(n-1) of
    Theorem 1; ``fixed_times``, ``fixed_ks`` where k*_fixed changes; and on a grid ``t`` of
    ``num`` times up to 1.25 times the last change: ``bounds`` (n, num) of Fig. 1,
    ``adaptive_bound``, ``best_fixed_k`` (Fig. 2a) and ``adaptive_k`` (Fig. 2b).
    """
    mu = order_means(Exponential(rate=np.float64(rate)), n)
    switch = switching_times(constants, mu)
    fixed_times, fixed_ks = fixed_k_changes(constants, mu)
    t = np.linspace(0.0, 1.25 * max(switch[-1], fixed_times[-1]), num)
    k = np.arange(1, n + 1)
    return {
        "mean_times": mu,
        "floors": error_floor(k, constants),
        "switching_times": switch,
        "fixed_times": fixed_times,
        "fixed_ks": fixed_ks,
        "t": t,
        "bounds": error_bound(t, k[:, None], constants, mu[:, None]),
        "adaptive_bound": adaptive_bound(t, constants, mu),
        "best_fixed_k": best_fixed_k(t, constants, mu),
        "adaptive_k": adaptive_k(t, constants, mu),
    }
