"""Mean and variance of the k-th fastest worker's delay, X_(k:n) (host side, NumPy float64).

A fastest-k iteration ends when the k-th of the n workers reports, so its duration is the
k-th smallest X_(k:n) of the n worker delays (eq. (7) of the adaptive paper gives its mean
for exponential delays). ``order_statistic_moments`` gives E[X_(k:n)] and Var[X_(k:n)] for
every law of ``fastk_jax.delays``, for iid workers and for workers of different speeds
(worker i's delay is ``slowdown[i] * X_i`` with X_i iid, as in the engine). Times are in the
law's units. ``Moments.method`` says how they were computed:

``"exact"``: closed forms for iid workers, from Renyi's representation of exponential order
statistics, E_(k:n) = sum_{i=n-k+1}^{n} Z_i / i with Z_i iid Exp(1):

* (shifted) exponential: X_(k:n) = shift + E_(k:n) / rate, so
  E = shift + sum_i 1/(i rate) = shift + (H_n - H_(n-k)) / rate and Var = sum_i 1/(i rate)^2;
* Pareto: X_(k:n) = scale * exp(E_(k:n) / shape), so
  E[X_(k:n)^p] = scale^p prod_{i=n-k+1}^{n} i / (i - p/shape)
  (= scale^p G(n+1) G(n-k+1-p/shape) / (G(n-k+1) G(n+1-p/shape)), G the gamma function);
* uniform: X_(k:n) = low + (high - low) Beta(k, n-k+1);
* trace (``delays.Trace``, measured times resampled per worker, with or without slowdowns):
  X_(k:n) takes finitely many values, so the integrals below are finite sums over the steps
  of its CDF (``_trace_moments``), O(M n k) for M distinct values s_i t.

``"quadrature"``: the other laws (Weibull, lognormal, hyperexponential) and any ``slowdown``,
from the CDF alone (so it covers the hyperexponential, whose quantile has no closed form,
and non-identical workers alike). X_(k:n) <= x iff at least k of the n independent events
{s_i X_i <= x} occur, a Poisson-binomial probability computed by the O(nk) recursion over
workers from F(x/s_i) and 1 - F(x/s_i), each evaluated directly so that both tails keep their
relative accuracy. With c the median of X_(k:n), low the bottom of its support and m its mean,

    E[X_(k:n)]   = c - int_low^c P[X_(k:n) <= x] dx + int_c^inf P[X_(k:n) > x] dx,
    Var[X_(k:n)] = int_low^m 2 (m - x) P[X_(k:n) <= x] dx + int_m^inf 2 (x - m) P[X_(k:n) > x] dx,

whose integrands are small and nonnegative (no cancellation, even when Var << E^2). Each
integral is cut at the kinks of the CDFs (s_i low, s_i high) and computed by
double-exponential quadrature: tanh-sinh on finite pieces, exp-sinh on the infinite one,
which converges exponentially despite endpoint singularities (Weibull shape < 1) and
algebraic (Pareto) tails. The step is halved until two estimates agree to 1e-11 (a
RuntimeWarning says when they do not); on the cases of tests/test_theory_order_stats.py the results
agree with the closed forms to about 1e-15 relative. Cost: O(nk) per node, a few hundred
nodes per piece: about 0.02 s for n = 50, 2 s for n = 1000.

Infinite moments are reported as ``math.inf``. Only the Pareto law has them: X_(k:n) > x needs
at least n-k+1 of the n draws above x, so P[X_(k:n) > x] ~ C(n, k-1) (scale/x)^(shape (n-k+1))
as x -> inf, with or without slowdowns, and E[X_(k:n)^p] is finite iff shape * (n-k+1) > p.
The maximum (k = n) thus has a mean iff shape > 1 and a variance iff shape > 2; the minimum
(k = 1) iff shape * n > 1 and > 2. Close to that threshold the tail decays too slowly for
any floating-point grid: iid Pareto is exact, but with slowdowns the quadrature loses
accuracy when shape * (n-k+1) - p is below about 0.1.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from ..core.delays import (
    Constant,
    DelayLaw,
    Exponential,
    HyperExponential,
    LogNormal,
    Pareto,
    ShiftedExponential,
    Trace,
    Uniform,
    Weibull,
)
from ..errors import ConfigError

_RTOL = 1e-11  # two successive quadrature estimates agree to this, relative
_MAX_HALVINGS = 12
_X_MAX = 1e150  # the exp-sinh grid stops here, so that (x - m) * dx/dt stays finite


class Moments(NamedTuple):
    """E[X_(k:n)] and Var[X_(k:n)] in the law's time units (``math.inf`` where infinite)."""

    mean: float
    var: float
    method: str  # "exact" or "quadrature"


def order_statistic_moments(law: DelayLaw, k: int, n: int, slowdown: ArrayLike | None = None) -> Moments:
    """Mean and variance of the k-th smallest of n worker delays (see the module docstring).

    Worker i's delay is ``slowdown[i] * X_i`` with X_i iid from ``law`` (no slowdown: all 1).
    Closed forms serve iid exponential, shifted exponential, Pareto and uniform delays; a
    given ``slowdown`` (even all ones) or another law uses the quadrature. A ``Trace``, whose
    workers may each have their own column (not iid even without a slowdown), is exact.
    """
    if not 1 <= k <= n:
        raise ConfigError("k", f"order statistic needs 1 <= k <= n, got k={k}, n={n}")
    if isinstance(law, Trace):
        return _trace_moments(law, k, n, np.ones(n) if slowdown is None else _check_slowdown(slowdown, n))
    if isinstance(law, Constant):  # deterministic: the k-th smallest slowdown, times the value
        s = np.ones(n) if slowdown is None else _check_slowdown(slowdown, n)
        return Moments(float(law.value) * float(np.sort(s)[k - 1]), 0.0, "exact")
    if slowdown is None:
        exact = _exact_moments(law, k, n)
        if exact is not None:
            return exact
        slowdown = np.ones(n)
    return _quadrature_moments(_host_cdf(law), k, n, _check_slowdown(slowdown, n))


def _check_slowdown(slowdown: ArrayLike, n: int) -> np.ndarray:
    s = np.asarray(slowdown, dtype=np.float64)
    if s.shape != (n,) or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ConfigError("delays.slowdown", f"must be {n} finite numbers > 0, got {slowdown!r}")
    return s


_TRACE_BLOCK = 4096  # support points per Poisson-binomial recursion (memory: block x (n + k))


def _trace_moments(law: Trace, k: int, n: int, slowdown: np.ndarray) -> Moments:
    """Exact moments of X_(k:n) for resampled traces: worker i's delay is s_i T_i with T_i
    uniform on the ``counts[i]`` entries of its column (``law`` unstacked; one column: all).

    X_(k:n) takes only the values x_1 < ... < x_M of the s_i T_i, so F(x) = P[X_(k:n) <= x] is
    a step function, F_j on [x_j, x_(j+1)), from the Poisson-binomial recursion ``_at_least_k``
    on the workers' empirical CDFs (counts of entries <= x_j / s_i, each side counted directly).
    The two integrals of the quadrature then are finite sums: with c = x_(j*) the median,

        E   = c - sum_(j < j*) F_j (x_(j+1) - x_j) + sum_(j >= j*) (1 - F_j) (x_(j+1) - x_j),
        Var = sum_j [F_j int 2 (m - x)^+ dx + (1 - F_j) int 2 (x - m)^+ dx] over [x_j, x_(j+1)),

    m = E, each piece a difference of squares: every term is nonnegative (no cancellation).
    """
    table, counts = np.asarray(law.table, np.float64), np.asarray(law.counts).astype(np.int64)
    columns = table.shape[1]
    if columns not in (1, n):
        raise ConfigError("delays.file", f"a trace of {columns} columns cannot serve n={n} workers")
    worker = np.zeros(n, np.int64) if columns == 1 else np.arange(n)
    sorted_columns = [np.sort(table[: counts[j], j]) for j in range(columns)]
    # worker i's possible delays, sorted (s t is monotone in t in floating point too), so that
    # comparing them with the x_j, the same products, counts ties exactly
    scaled = [slowdown[i] * sorted_columns[worker[i]] for i in range(n)]
    xs = np.unique(np.concatenate(scaled))
    total = counts[worker][None, :]
    below, above = np.empty(xs.size), np.empty(xs.size)  # P[X_(k:n) <= x_j], P[X_(k:n) > x_j]
    for start in range(0, xs.size, _TRACE_BLOCK):
        x = xs[start : start + _TRACE_BLOCK]
        at_most = np.stack([np.searchsorted(v, x, side="right") for v in scaled], axis=1)  # (block, n)
        below[start : start + x.size], above[start : start + x.size] = _at_least_k(
            at_most / total, (total - at_most) / total, k
        )
    width = np.diff(xs)  # piece j is [x_j, x_(j+1)); beyond x_M, F = 1
    j_med = int(np.argmax(below >= 0.5))
    mean = xs[j_med] - np.sum(below[:j_med] * width[:j_med]) + np.sum(above[j_med:-1] * width[j_med:])
    a, b = xs[:-1], xs[1:]
    left, right = np.minimum(b, mean), np.maximum(a, mean)  # the parts of each piece below and above m
    var = np.sum(below[:-1] * np.where(a < mean, (left - a) * (2 * mean - a - left), 0.0))
    var += np.sum(above[:-1] * np.where(b > mean, (b - right) * (b + right - 2 * mean), 0.0))
    return Moments(float(mean), float(var), "exact")


def _has_moment(tail_index: float, k: int, n: int, p: int) -> bool:
    """E[X_(k:n)^p] < inf iff tail_index * (n-k+1) > p, where P[X > x] ~ x^(-tail_index)."""
    return tail_index * (n - k + 1) > p


def _exact_moments(law: DelayLaw, k: int, n: int) -> Moments | None:
    """Closed forms for iid workers, or None where there is none."""
    i = np.arange(n - k + 1, n + 1, dtype=np.float64)  # Renyi: E_(k:n) = sum_i Z_i / i
    match law:
        case Exponential(rate=rate):
            return _exponential_moments(0.0, float(rate), i)
        case ShiftedExponential(shift=shift, rate=rate):
            return _exponential_moments(float(shift), float(rate), i)
        case Uniform(low=low, high=high):
            width = float(high) - float(low)
            var = width**2 * k * (n - k + 1) / ((n + 1) ** 2 * (n + 2))
            return Moments(float(low) + width * k / (n + 1), var, "exact")
        case Pareto(shape=shape, scale=scale):
            a = float(shape)
            if not _has_moment(a, k, n, 1):
                return Moments(math.inf, math.inf, "exact")
            x = 1.0 / (a * i)  # E[X^p] = scale^p prod_i 1 / (1 - p x_i)
            mean = float(scale) * math.exp(-np.sum(np.log1p(-x)))
            if not _has_moment(a, k, n, 2):
                return Moments(mean, math.inf, "exact")
            # E[X^2] / E[X]^2 = prod_i (1 - x_i)^2 / (1 - 2 x_i) = prod_i 1 / (1 - (x_i / (1 - x_i))^2)
            return Moments(mean, mean**2 * math.expm1(-np.sum(np.log1p(-((x / (1 - x)) ** 2)))), "exact")
    return None


def _exponential_moments(shift: float, rate: float, i: np.ndarray) -> Moments:
    """X_(k:n) = shift + sum_i Z_i / (i rate), the Z_i iid Exp(1)."""
    return Moments(shift + float(np.sum(1.0 / i)) / rate, float(np.sum(1.0 / i**2)) / rate**2, "exact")


class _HostCdf(NamedTuple):
    """A law's CDF on the host: ``cdf_sf(x) -> (F(x), 1 - F(x))``, each evaluated directly."""

    cdf_sf: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    low: float  # support [low, high]
    high: float
    tail_index: float  # P[X > x] ~ x^(-tail_index) as x -> inf; inf for lighter tails


_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def _host_cdf(law: DelayLaw) -> _HostCdf:
    def exponential_tails(y):
        return -np.expm1(-y), np.exp(-y)

    inf = math.inf
    match law:
        case Exponential(rate=rate):
            return _HostCdf(lambda x: exponential_tails(float(rate) * x), 0.0, inf, inf)
        case ShiftedExponential(shift=shift, rate=rate):
            shift = float(shift)
            return _HostCdf(lambda x: exponential_tails(float(rate) * np.maximum(x - shift, 0.0)), shift, inf, inf)
        case Weibull(shape=shape, scale=scale):
            return _HostCdf(lambda x: exponential_tails((x / float(scale)) ** float(shape)), 0.0, inf, inf)
        case Pareto(shape=shape, scale=scale):
            a, c = float(shape), float(scale)
            return _HostCdf(lambda x: exponential_tails(a * np.log(np.maximum(x, c) / c)), c, inf, a)
        case Uniform(low=low, high=high):
            lo, hi = float(low), float(high)

            def uniform_tails(x):
                return np.clip((x - lo) / (hi - lo), 0, 1), np.clip((hi - x) / (hi - lo), 0, 1)

            return _HostCdf(uniform_tails, lo, hi, inf)
        case LogNormal(mu=mu, sigma=sigma):

            def normal_tails(x):
                z = (np.log(x) - float(mu)) / (float(sigma) * math.sqrt(2.0))
                return 0.5 * _erfc(-z), 0.5 * _erfc(z)

            return _HostCdf(normal_tails, 0.0, inf, inf)
        case HyperExponential(probs=probs, rates=rates):
            p = np.asarray(probs, np.float64) / np.sum(probs)  # the sampler normalizes them too

            def mixture_tails(x):
                cdf, sf = exponential_tails(x[..., None] * np.asarray(rates, np.float64))
                return cdf @ p, sf @ p

            return _HostCdf(mixture_tails, 0.0, inf, inf)
    raise ConfigError("delays.law", f"no order statistics for {type(law).__name__}")


def _at_least_k(cdf: np.ndarray, sf: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """P[at least k events], P[fewer than k] for independent events of probabilities cdf[..., i].

    The O(nk) Poisson-binomial recursion over events; counts of k or more share one state.
    Only sums and products of probabilities, so both results keep their relative accuracy.
    """
    r = np.zeros(cdf.shape[:-1] + (k + 1,))
    r[..., 0] = 1.0
    for p, q in zip(np.moveaxis(cdf, -1, 0), np.moveaxis(sf, -1, 0), strict=True):
        at_least_k = r[..., k] + r[..., k - 1] * p
        r[..., 1:k] = r[..., 1:k] * q[..., None] + r[..., : k - 1] * p[..., None]
        r[..., 0] *= q
        r[..., k] = at_least_k
    return r[..., k], r[..., :k].sum(axis=-1)


def _quadrature_moments(law: _HostCdf, k: int, n: int, slowdown: np.ndarray) -> Moments:
    if not _has_moment(law.tail_index, k, n, 1):
        return Moments(math.inf, math.inf, "quadrature")
    speeds, worker = np.unique(slowdown, return_inverse=True)  # the CDF once per distinct speed

    def below_above(x):  # P[X_(k:n) <= x], P[X_(k:n) > x]
        with np.errstate(over="ignore", divide="ignore"):  # log(0) = -inf and x^a = inf are the right limits
            cdf, sf = law.cdf_sf(x[:, None] / speeds)
        return _at_least_k(cdf[:, worker], sf[:, worker], k)

    kinks = np.concatenate([speeds * law.low, speeds * law.high])
    kinks = kinks[np.isfinite(kinks)]
    unbounded = math.isinf(law.high)

    def split_integrals(c: float, weight: Callable) -> tuple[float, float]:
        """(int_low^c weight P[X_(k:n) <= x] dx, int_c^high weight P[X_(k:n) > x] dx)."""
        ends = np.unique(np.append(kinks, c)).tolist()  # at least low < c
        tail_scale = ends[-1] - ends[-2]  # the exp-sinh scale of the infinite piece
        parts = [0.0, 0.0]
        for a, b in itertools.pairwise(ends + [math.inf] if unbounded else ends):
            side = int(a >= c)
            parts[side] += _de_integral(lambda x, side=side: weight(x) * below_above(x)[side], a, b, tail_scale)
        return parts[0], parts[1]

    median = _median(lambda x: float(below_above(np.array([x]))[0][0]))
    below, above = split_integrals(median, lambda x: 1.0)
    mean = median - below + above
    if not _has_moment(law.tail_index, k, n, 2):
        return Moments(mean, math.inf, "quadrature")
    below, above = split_integrals(mean, lambda x: 2.0 * np.abs(x - mean))
    return Moments(mean, below + above, "quadrature")


def _median(cdf: Callable[[float], float]) -> float:
    """The x > 0 where a continuous CDF of a positive variable crosses 1/2, by bisection in log x."""
    hi = 1.0
    while cdf(hi) < 0.5:
        hi *= 2.0
    lo = hi
    while cdf(lo) >= 0.5:
        lo /= 2.0
    for _ in range(30):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if cdf(mid) < 0.5 else (lo, mid)
    return hi


def _de_integral(f: Callable[[np.ndarray], np.ndarray], a: float, b: float, scale: float) -> float:
    """int_a^b f(x) dx by the double-exponential rule, for a finite a and a finite or infinite b.

    The trapezoidal rule in t after x = (a+b)/2 + (b-a)/2 tanh(pi/2 sinh t) (tanh-sinh) or
    x = a + scale exp(pi/2 sinh t) (exp-sinh, b = inf), which converges exponentially in the
    number of nodes even for endpoint singularities and algebraic tails. The step is halved,
    reusing the previous nodes, until two estimates agree to _RTOL.
    """
    if math.isinf(b):
        t_lo, t_hi = -4.5, math.asinh(2.0 / math.pi * math.log(max(_X_MAX / scale, 10.0)))

        def nodes(t):
            e = np.exp(np.pi / 2 * np.sinh(t))
            return a + scale * e, scale * e * (np.pi / 2) * np.cosh(t)
    else:
        t_lo, t_hi = -3.5, 3.5

        def nodes(t):
            s = np.pi / 2 * np.sinh(t)
            u, v = 1.0 / (1.0 + np.exp(-2.0 * s)), 1.0 / (1.0 + np.exp(2.0 * s))  # u + v = 1, both accurate
            x = np.where(t < 0, a + (b - a) * u, b - (b - a) * v)
            return x, (b - a) * np.pi * np.cosh(t) * u * v

    def node_sum(h: float, odd_only: bool) -> float:
        j = np.arange(math.ceil(t_lo / h), math.floor(t_hi / h) + 1)
        x, dx_dt = nodes(h * j[j % 2 == 1] if odd_only else h * j)
        return float(np.sum(f(x) * dx_dt))

    h = 0.25
    total = node_sum(h, odd_only=False)
    estimate = h * total
    for _ in range(_MAX_HALVINGS):
        h /= 2
        total += node_sum(h, odd_only=True)
        estimate, previous = h * total, estimate
        if abs(estimate - previous) <= _RTOL * abs(estimate):
            return estimate
    warnings.warn(f"order statistic quadrature on [{a}, {b}] did not converge to {_RTOL}", RuntimeWarning, stacklevel=2)
    return estimate
