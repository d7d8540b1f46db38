"""Runtime and error laws of K-sync, K-batch-sync, K-async and K-batch-async SGD.

The closed forms of Dutta et al., "Slow and stale gradients can win the race" (AISTATS 2018,
"the async paper" below), on the host in NumPy float64, so that the tests and the figures use
the same functions.

P learners take iid times X per mini-batch (the units of the delay laws); the parameter server
(PS) updates after K gradients. Runtime side (Sec. 3.1, 4 and App. B): the expected time E[T]
per iteration of each scheme, ratios between schemes, and J E[T] for J iterations. Error side
(Sec. 3.2, 3.3 and App. C): bounds on E[F(w_J)] - F* after J iterations, and the
error-runtime trade-off of Fig. 7, which puts J = t / E[T].

Where a general law's E[X_(K:P)] is needed, pass ``order_stat_mean``: a float, or a callable
``(k, n) -> E[X_(k:n)]`` such as ``Exponential.order_statistic_mean``. Exponential delays have
closed forms here.

Where the paper is ambiguous, or a printed statement does not follow from its own derivation,
we decide as follows (each is repeated where it applies):

* Remark 3 prints E[T] ~ (1/mu) (log(P/(P-K)) / mu): one 1/mu too many. We use
  log(P/(P-K)) / mu (App. B.1); at K = P, where it is undefined, log(P) / mu (Corollary 1).
* Lemma 6 prints a strict E[T] < E[X_(K:P)], but App. B.4.1 gives equality for exponentials,
  which are new-longer-than-used in the weak sense of Definition 3. We state <=.
* Theorem 3 asks eta <= 1 / (2L (M_G/(Km) + 1/K)). Its proof (App. C.2, step (c) with Lemma 9,
  which uses ||sum_l a_l||^2 <= K sum_l ||a_l||^2) needs eta <= 1 / (2L (M_G/(Km) + 1)). We
  enforce the latter; at K = 1 (Corollary 2) the two agree.
* Lemma 3 prints eta <= 1 / (2L (M_G/L + 1)). We read M_G/(Km): K-sync is mini-batch SGD with
  batch Km, and Sec. 3.2 writes M_G/(Pm) for K = P.
* Sec. 3.2 gives the largest learning rates as max{1/c, ...}. Both conditions must hold, so it
  is a min; and with c <= L the 1/c (or 1/(c gamma')) term never binds.
* Lemma 2 gives p0 = 1/P for exponentials, and App. C.1.1 says the same holds for K-async. The
  same memoryless argument gives K/P for K-async (the K fastest of P iid residual times are a
  uniformly random K of the P learners, and K of them hold the newest model). 1/P is still a
  valid, looser, lower bound; for K-batch-async 1/P is the largest one.
* Theorem 4's statement is shifted by one index against its proof, eq. (44): its Delta holds
  Delta_J and its product rho_1 .. rho_J, which belong to the bound on F(w_(J+1)). We unroll the
  recursion (43) itself, which bounds F(w_J) with rho_0 .. rho_(J-1) and Delta_0 .. Delta_(J-1).
* Fig. 7 puts J = t / E[T] into the bounds per iteration, continuously in t. That is the bound
  at the mean number of iterations by time t, not a bound on the mean error at time t
  (E[a^N(t)] >= a^E[N(t)] by Jensen); we keep the paper's curve and say so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError

OrderStatMean = Callable[[int, int], float] | float
"""E[X_(k:n)]: a number, or a callable (k, n) -> E[X_(k:n)] for the delay law."""


def _check_kp(k: int, p: int, batches: bool = False) -> None:
    """1 <= K <= P; the batch variants count mini-batches, so there K > P is fine too."""
    if p < 1 or k < 1 or (k > p and not batches):
        raise ConfigError("k", f"needs 1 <= K <= P, got K={k}, P={p}")


def _check_k(k: int) -> None:
    if k < 1:
        raise ConfigError("k", f"needs K >= 1, got {k!r}")


def _harmonic_sum(lo: int, hi: int) -> float:
    """sum_{i=lo}^{hi} 1/i, summed from the small terms up (0 when lo > hi)."""
    return float(np.sum(1.0 / np.arange(hi, lo - 1, -1, dtype=np.float64))) if hi >= lo else 0.0


def _order_mean(order_stat_mean: OrderStatMean, k: int, p: int) -> float:
    _check_kp(k, p)
    return float(order_stat_mean(k, p)) if callable(order_stat_mean) else float(order_stat_mean)


# ----------------------------------------------------------------------------------------------
# Runtime per iteration (Sec. 3.1, 4; App. B)
# ----------------------------------------------------------------------------------------------


def exponential_order_mean(k: int, p: int, rate: float = 1.0) -> float:
    """E[X_(K:P)] = (H_P - H_(P-K)) / mu for X ~ Exp(mu) (App. B.1, Remark 3): exact.

    The K-th fastest of P iid exponentials is a sum of independent Exp(i mu), i = P-K+1 .. P.
    """
    _check_kp(k, p)
    return _harmonic_sum(p - k + 1, p) / rate


def exponential_order_mean_asymptotic(k: int, p: int, rate: float = 1.0) -> float:
    """The paper's approximation of E[X_(K:P)] for Exp(mu): log(P/(P-K)) / mu (App. B.1).

    Remark 3 prints (1/mu) (log(P/(P-K)) / mu), one 1/mu too many; App. B.1 and the proof of
    Theorem 2 have log(P/(P-K)) / mu, which we use. For K < P it is an upper bound on the exact
    value (an integral of 1/x over [P-K, P]). At K = P it is undefined; we return log(P) / mu,
    the approximation of E[X_(P:P)] = H_P / mu in Corollary 1.
    """
    _check_kp(k, p)
    return (np.log(p) if k == p else np.log(p / (p - k))) / rate


def k_sync_time(k: int, p: int, order_stat_mean: OrderStatMean) -> float:
    """Lemma 4, eq. (14): E[T] = E[X_(K:P)] per iteration of K-sync SGD, for any iid law.

    All P learners start together and the PS cancels the rest after the K-th finishes. Exact for
    every iteration; fully synchronous SGD is K = P.
    """
    return _order_mean(order_stat_mean, k, p)


class Erlang(NamedTuple):
    """Erlang(shape, rate): the sum of ``shape`` iid Exp(rate) times."""

    shape: int
    rate: float

    def mean(self) -> float:
        return self.shape / self.rate

    def variance(self) -> float:
        return self.shape / self.rate**2


def k_batch_sync_law(k: int, p: int, rate: float) -> Erlang:
    """The time per iteration of K-batch-sync SGD with X ~ Exp(mu): Erlang(K, P mu) (Sec. 4.2).

    Learners restart on the same model after each push and the iteration ends at the K-th push
    overall; by memorylessness each push takes Exp(P mu) after the previous one (App. B.2). Mean
    K / (P mu), variance K / (P mu)^2; K > P (several mini-batches per learner) holds alike.
    Exponential delays only: the paper gives no closed form for other laws (it is never slower
    than K-sync, Sec. 2.3, since every learner's first push counts).
    """
    _check_kp(k, p, batches=True)
    return Erlang(k, p * rate)


def k_batch_async_time(k: int, p: int, mean: float) -> float:
    """Lemma 5, eq. (15): E[T] = K E[X] / P per iteration of K-batch-async SGD, in the long run.

    Each learner's pushes form a renewal process of rate 1/E[X] (elementary renewal theorem,
    eq. (16)); P of them push at rate P/E[X] (eq. (17)) and an iteration is K pushes. Any iid law
    with finite mean; exact at every iteration for exponentials (the pushes are then a Poisson
    process of rate P mu from the start). Fully asynchronous SGD is K = 1; K > P is allowed.
    """
    _check_kp(k, p, batches=True)
    return k * float(mean) / p


def k_async_time_bound(k: int, p: int, order_stat_mean: OrderStatMean) -> float:
    """Lemma 6, eq. (18): E[T] <= E[X_(K:P)] per iteration of K-async SGD (App. B.4).

    Assumes a new-longer-than-used law (Definition 3: Pr(X > u + t | X > t) <= Pr(X > u)), so
    the residual times of the learners still busy are stochastically smaller than a fresh X.
    The paper prints a strict <; we state <= since App. B.4.1 has equality for exponentials.
    """
    return _order_mean(order_stat_mean, k, p)


def k_async_time_exponential(k: int, p: int, rate: float) -> float:
    """E[T] = E[X_(K:P)] = (H_P - H_(P-K)) / mu exactly for K-async with X ~ Exp(mu) (App. B.4.1).

    Memorylessness makes the P residual times iid Exp(mu) at every update, so Lemma 6 holds with
    equality at every iteration.
    """
    return exponential_order_mean(k, p, rate)


def expected_runtime(iterations: float | np.ndarray, time_per_iteration: float) -> np.ndarray:
    """The expected wall-clock time of J iterations, J E[T] (Sec. 4), in the units of X.

    Exact for K-sync (Lemma 4; iterations are iid) and for K-batch-sync, K-async and
    K-batch-async with exponential delays; for K-batch-async with another law the long-run
    approximation J K E[X] / P of Lemma 5 (large J); for K-async with a new-longer-than-used law
    J E[X_(K:P)] is an upper bound (Lemma 6).
    """
    return np.asarray(iterations, np.float64) * float(time_per_iteration)


def sync_async_speedup(p: int, mean: float, order_stat_mean: OrderStatMean) -> float:
    """Theorem 1: E[T_Sync] / E[T_Async] = P E[X_(P:P)] / E[X], any iid law with finite mean.

    Lemma 4 with K = P over Lemma 5 with K = 1 (long run).
    """
    return p * _order_mean(order_stat_mean, p, p) / float(mean)


def sync_async_speedup_exponential(p: int) -> float:
    """Corollary 1, exact: P E[X_(P:P)] / E[X] = P H_P for exponentials, whatever the rate."""
    _check_kp(1, p)
    return p * _harmonic_sum(1, p)


def sync_async_speedup_asymptotic(p: int) -> float:
    """Corollary 1 as printed: P log P. Its ratio to P H_P is 1 - 0.577/log P + ..., so slow
    to approach 1 (it is 0.77 at P = 8)."""
    _check_kp(1, p)
    return p * np.log(p)


def batch_speedup(k: int, p: int, mean: float, order_stat_mean: OrderStatMean) -> float:
    """Theorem 2's ratio P E[X_(K:P)] / (K E[X]).

    For exponentials (Theorem 2's assumption) it is exactly E[T_K-async] / E[T_K-batch-async] =
    E[T_K-sync] / E[T_K-batch-sync]. For any iid law it is exactly E[T_K-sync] /
    E[T_K-batch-async] (Lemma 4 over Lemma 5), and an upper bound on E[T_K-async] /
    E[T_K-batch-async] for new-longer-than-used laws (Lemma 6 over Lemma 5).
    """
    return p * _order_mean(order_stat_mean, k, p) / (k * float(mean))


def batch_speedup_exponential(k: int, p: int) -> float:
    """Theorem 2, exact for exponentials: P (H_P - H_(P-K)) / K, from 1 at K = 1 to H_P at K = P."""
    return p * exponential_order_mean(k, p) / k


def batch_speedup_asymptotic(k: int, p: int) -> float:
    """Theorem 2 as printed: P log(P/(P-K)) / K; at K = P (undefined) log P, as Sec. 3.1's
    "up to log P times"."""
    return p * exponential_order_mean_asymptotic(k, p) / k


# ----------------------------------------------------------------------------------------------
# Error after J iterations (Sec. 3.2, 3.3; App. C)
# ----------------------------------------------------------------------------------------------


class TradeoffConstants(NamedTuple):
    """The constants of the error bounds (Sec. 2.4, Table 1), in the paper's symbols."""

    L: float  # smoothness: grad F is L-Lipschitz, eq. (5)
    c: float  # strong convexity: 2c (F(w) - F*) <= ||grad F(w)||^2, eq. (6); c <= L
    sigma2: float  # sigma^2 of the variance bound (8): sigma^2/m + (M_G/m) ||grad F||^2
    M_G: float  # M_G of the variance bound (8)
    m: int  # mini-batch size of one gradient
    eta: float  # fixed learning rate
    initial_gap: float  # F(w_0) - F*


def _check_constants(consts: TradeoffConstants) -> None:
    for name in ("L", "c", "m", "eta"):
        if not getattr(consts, name) > 0:
            raise ConfigError(name, f"needs {name} > 0, got {getattr(consts, name)!r}")
    for name in ("sigma2", "M_G", "initial_gap"):
        if not getattr(consts, name) >= 0:
            raise ConfigError(name, f"needs {name} >= 0, got {getattr(consts, name)!r}")
    if consts.c > consts.L:
        raise ConfigError("c", f"strong convexity c={consts.c} cannot exceed smoothness L={consts.L}")


def _check_eta(eta: float, limit: float, where: str) -> None:
    if eta > limit:
        raise ConfigError("eta", f"{where} needs eta <= {limit:.6g}, got {eta!r}")


def _iterations(iterations: float | np.ndarray) -> np.ndarray:
    j = np.asarray(iterations, np.float64)
    if np.any(j < 0):
        raise ConfigError("iterations", "needs J >= 0")
    return j


def gamma_prime(gamma: float, p0: float) -> float:
    """gamma' = 1 - gamma + p0/2, the rate factor of Theorem 3 (eq. (9)).

    Assumes the staleness bound E||grad F(w_j) - grad F(w_tau(l,j))||^2 <= gamma E||grad F(w_j)||^2
    with 0 <= gamma <= 1, and 0 <= p0 <= 1 a lower bound on Pr(tau(l,j) = j | past) (Lemma 1).
    K-async beats K-sync per iteration iff gamma' > 1, i.e. p0/2 > gamma (Sec. 3.2).
    """
    if not 0 <= gamma <= 1:
        raise ConfigError("gamma", f"needs 0 <= gamma <= 1, got {gamma!r}")
    if not 0 <= p0 <= 1:
        raise ConfigError("p0", f"needs 0 <= p0 <= 1, got {p0!r}")
    g = 1.0 - gamma + 0.5 * p0
    if g <= 0:
        raise ConfigError("gamma", "gamma = 1 with p0 = 0 gives gamma' = 0: the bound does not decay")
    return g


def p0_exponential(p: int, k: int = 1) -> float:
    """p0 for X ~ Exp(mu): Pr(tau(l,j) = j | past) = K / P exactly, for every l and j.

    Lemma 2 (K = 1, Async SGD): the P residual times are iid by memorylessness, so the learner
    that holds the newest model is the next to finish with probability 1/P. For K-async the K
    contributors are a uniformly random K of the P learners, of which K hold the newest model,
    so each contributor is fresh with probability K/P; the paper's 1/P (App. C.1.1) is a valid
    but looser bound there. For K-batch-async pass k=1: only the learner that made the last push
    holds the newest model when an iteration starts. New-longer-than-used laws have p0 <= 1/P
    and new-shorter-than-used ones p0 >= 1/P (Lemma 2, K = 1).
    """
    _check_kp(k, p)
    return k / p


def lr_limit_sync(consts: TradeoffConstants, k: int) -> float:
    """The largest fixed eta of Lemma 3 (K-sync): min{1/c, 1 / (2L (M_G/(Km) + 1))}.

    Lemma 3 prints M_G/L; we read M_G/(Km), K-sync being mini-batch SGD with batch Km. Sec. 3.2
    writes max{.,.}; both conditions are needed, so min; with c <= L, 1/c never binds.
    ``consts.eta`` and ``consts.initial_gap`` are not used.
    """
    _check_k(k)
    return min(1.0 / consts.c, 1.0 / (2 * consts.L * (consts.M_G / (k * consts.m) + 1)))


def lr_limit_async(consts: TradeoffConstants, k: int, gamma: float, p0: float) -> float:
    """The largest fixed eta of Theorem 3 (K-async): min{1/(c gamma'), 1 / (2L (M_G/(Km) + 1))}.

    Theorem 3 prints 1 / (2L (M_G/(Km) + 1/K)), which its proof (App. C.2, step (c) with
    Lemma 9) does not support for K > 1; we use + 1. Sec. 3.2's max is a min, and 1/(c gamma')
    never binds since c gamma' <= 1.5 c <= 1.5 L. ``consts.eta`` is not used.
    """
    _check_k(k)
    return min(1.0 / (consts.c * gamma_prime(gamma, p0)), 1.0 / (2 * consts.L * (consts.M_G / (k * consts.m) + 1)))


def k_sync_error_floor(consts: TradeoffConstants, k: int) -> float:
    """The error floor eta L sigma^2 / (2 c K m) of K-sync SGD (Lemma 3), the J -> inf limit."""
    return consts.eta * consts.L * consts.sigma2 / (2 * consts.c * k * consts.m)


def k_sync_error(iterations: float | np.ndarray, consts: TradeoffConstants, k: int) -> np.ndarray:
    """Lemma 3 (from Bottou et al.): the bound on E[F(w_J)] - F* after J iterations of K-sync.

    floor + (1 - eta c)^J (F(w_0) - F* - floor), floor = eta L sigma^2 / (2 c K m). Assumes
    eqs. (5)-(8) and eta <= 1/(2L (M_G/(Km) + 1)) (see ``lr_limit_sync``), which is checked.
    J may be a non-integer array (Fig. 7 puts J = t / E[T]).
    """
    _check_constants(consts)
    _check_eta(consts.eta, lr_limit_sync(consts, k), "Lemma 3")
    floor = k_sync_error_floor(consts, k)
    return floor + (1 - consts.eta * consts.c) ** _iterations(iterations) * (consts.initial_gap - floor)


def k_async_error_floor(consts: TradeoffConstants, k: int, gamma: float, p0: float) -> float:
    """The error floor eta L sigma^2 / (2 c gamma' K m) of K-async SGD (Theorem 3, eq. (9))."""
    return consts.eta * consts.L * consts.sigma2 / (2 * consts.c * gamma_prime(gamma, p0) * k * consts.m)


def k_async_error(
    iterations: float | np.ndarray, consts: TradeoffConstants, k: int, gamma: float, p0: float
) -> np.ndarray:
    """Theorem 3, eq. (9): the bound on E[F(w_J)] - F* after J iterations of K-async SGD.

    floor + (1 - eta c gamma')^J (F(w_0) - F* - floor), gamma' = 1 - gamma + p0/2, floor =
    eta L sigma^2 / (2 c gamma' K m). Assumes eqs. (5)-(8), the staleness bound with gamma <= 1,
    p0 a lower bound on Pr(tau(l,j) = j | past) (``p0_exponential``), and eta <= 1/(2L (M_G/(Km)
    + 1)) (``lr_limit_async``: not the printed + 1/K), which is checked. K = 1 is Async SGD
    (Corollary 2); K-batch-async has the same bound (Sec. 3.2) with its own p0.
    """
    _check_constants(consts)
    _check_eta(consts.eta, lr_limit_async(consts, k, gamma, p0), "Theorem 3")
    floor = k_async_error_floor(consts, k, gamma, p0)
    rate = consts.eta * consts.c * gamma_prime(gamma, p0)
    return floor + (1 - rate) ** _iterations(iterations) * (consts.initial_gap - floor)


def variable_lr_error(etas: np.ndarray, consts: TradeoffConstants, p0: float, staleness_c: float) -> np.ndarray:
    """Theorem 4 (App. C.3): bounds on E[F(w_j)] - F*, j = 0 .. J, for Async SGD with a schedule.

    Assumes eqs. (5)-(8), eta_j <= 1/(2L (M_G/m + 1)) (checked) and condition (11),
    eta_j E||w_j - w_tau(j)||^2 <= C (``staleness_c``, not checkable here). The recursion (43)
    with strong convexity, e_(j+1) <= (1 - rho_j) e_j + Delta_j, rho_j = eta_j (1 + p0/2) c,
    Delta_j = eta_j^2 L sigma^2 / (2m) + C L^2 / 2, is unrolled step by step. The printed
    statement is shifted by one index against its proof (44) (it uses rho_1 .. rho_J and
    Delta_J for F(w_J)); this is the proof's form. For a constant eta the bound tends to
    Delta / rho. ``consts.eta`` is not used; returns an array of length len(etas) + 1.
    """
    _check_constants(consts._replace(eta=1.0))  # the schedule replaces consts.eta
    etas = np.asarray(etas, np.float64)
    if np.any(etas <= 0):
        raise ConfigError("eta", "Theorem 4 needs eta_j > 0")
    _check_eta(float(etas.max(initial=0.0)), 1.0 / (2 * consts.L * (consts.M_G / consts.m + 1)), "Theorem 4")
    if not 0 <= p0 <= 1:
        raise ConfigError("p0", f"needs 0 <= p0 <= 1, got {p0!r}")
    if not staleness_c >= 0:
        raise ConfigError("staleness_c", f"Theorem 4 needs C >= 0, got {staleness_c!r}")
    rho = etas * (1 + 0.5 * p0) * consts.c
    delta = etas**2 * consts.L * consts.sigma2 / (2 * consts.m) + staleness_c * consts.L**2 / 2
    bounds = np.empty(etas.size + 1)
    bounds[0] = consts.initial_gap
    for j in range(etas.size):
        bounds[j + 1] = (1 - rho[j]) * bounds[j] + delta[j]
    return bounds


# ----------------------------------------------------------------------------------------------
# Error against wall-clock time (Fig. 7)
# ----------------------------------------------------------------------------------------------


class Tradeoff(NamedTuple):
    """Fig. 7's two curves on a common time grid: bounds on E[F(w)] - F* at time t."""

    synchronous: np.ndarray  # Lemma 3 with K = P at J = t / E[X_(P:P)]
    asynchronous: np.ndarray  # Theorem 3 with K = 1 at J = t P / E[X]


def sync_async_tradeoff(
    times: np.ndarray,
    consts: TradeoffConstants,
    p: int,
    mean: float,
    order_stat_mean: OrderStatMean,
    gamma: float,
    p0: float,
) -> Tradeoff:
    """Fig. 7: the error-runtime trade-off of Sync and Async SGD with the same eta (Sec. 3.2).

    Sync is Lemma 3 with K = P, one iteration taking E[X_(P:P)] (Lemma 4); Async is Theorem 3
    with K = 1, one iteration taking E[X] / P (Lemma 5). ``times`` is wall-clock time in the
    units of X, and J = t / E[T], the long-run mean iteration count, is continuous in t. That is
    the per-iteration bound at the mean iteration count, the paper's curve, not a bound on the
    mean error at time t (by Jensen, E[a^N(t)] >= a^E[N(t)]). Async's floor
    eta L sigma^2 / (2 c gamma' m) is always above Sync's eta L sigma^2 / (2 c P m) (gamma' <= 1.5
    < P for P >= 2); whether it falls faster at first depends on gamma' and E[X_(P:P)] / E[X]
    (it does in the paper's figure). Other schemes compose the same way, e.g.
    ``k_async_error(t / k_batch_async_time(k, p, mean), consts, k, gamma, p0)``.
    """
    t = np.asarray(times, np.float64)
    sync = k_sync_error(t / k_sync_time(p, p, order_stat_mean), consts, p)
    asynchronous = k_async_error(t / k_batch_async_time(1, p, mean), consts, 1, gamma, p0)
    return Tradeoff(sync, asynchronous)
