"""The constants of the adaptive paper's appendix conditions, for a concrete problem.

Proposition 1 and Lemma 1 hold when

1. grad F is L-Lipschitz;
2. F satisfies 2c (F(w) - F*) <= ||grad F(w)||^2 (the paper's "strong convexity");
3. the gradient a worker returns is unbiased with Var <= sigma^2 / s + (M_G / s) ||grad F(w)||^2,

where s is the number of rows per worker and the variance is over which worker responds (under
iid delays the fastest k are a uniformly random k of the n). ``problem_constants`` computes
them, exactly where the problem allows and by a stated estimate otherwise:

* **Least squares** (F = ||Xw - y||^2 / 2m, H = X^T X / m): L = lambda_max(H) and
  c = lambda_min(H), both exact and tight (F - F* = e^T H e / 2 and ||grad F||^2 = e^T H^2 e for
  e = w - w*). A worker's gradient is g_i(w) = H_i e + g_i*, so its variance is the quadratic
  V(e) = V0 + 2 b^T e + e^T Q e with V0 = mean ||g_i*||^2, b = mean (H_i - H) g_i*,
  Q = mean (H_i - H)^2. By 2 b^T e <= V0 + (b^T e)^2 / V0 this is at most
  2 V0 + e^T (Q + b b^T / V0) e, hence exactly valid constants
  sigma^2 = 2 s V0 and M_G = s lambda_max(H^-1 (Q + b b^T / V0) H^-1).
  (s V0 alone, ``sigma2_at_optimum``, is the variance at w*: no smaller sigma^2 can hold.)
* **Logistic regression**: L = lambda_max of the bound X_a^T X_a / 4m + diag(lam, .., lam, 0)
  on each class's Hessian, divided by the number of classes C (F is the mean over classes):
  exact as a bound. The loss is not strongly convex in the unregularized bias, so c is the
  smallest eigenvalue of the Hessian at w* (local, an estimate). sigma^2 = 2 s V(w*) as for
  least squares, and M_G is the largest s (V(w) - sigma^2 / s) / ||grad F(w)||^2 over points on
  the segment from w0 to w* and around w* (an estimate, a lower bound on the true M_G).

Everything is computed on the host in float64.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..core.problems import LinearRegression, LogisticRegression, Problem, logistic_curvature, logistic_optimum


class ProblemConstants(NamedTuple):
    L: float  # Lipschitz constant of grad F
    c: float  # the paper's strong-convexity constant
    sigma2: float  # variance bound sigma^2 of condition 3
    M_G: float  # gradient-proportional variance factor M_G of condition 3
    s: int  # rows per worker
    initial_gap: float  # F(w0) - F*
    sigma2_at_optimum: float  # s * Var of a worker's gradient at w*
    method: str  # how each was obtained


def _float64(problem: Problem) -> Problem:
    return jax.tree.map(lambda a: jnp.asarray(np.asarray(a, np.float64)), problem)


def _worker_gradients(problem: Problem):
    """w -> (n, p): each worker's partial gradient at w (compiled once per problem)."""
    jacobian = jax.jit(jax.jacrev(problem.shard_losses))
    return lambda w: np.asarray(jacobian(jnp.asarray(w)))


def _variance(grads: np.ndarray) -> float:
    """Var of a uniformly random worker's gradient: mean ||g_i - grad F||^2."""
    return float(np.mean(np.sum(np.square(grads - grads.mean(axis=0)), axis=1)))


def problem_constants(problem: Problem, samples: int = 64, seed: int = 0) -> ProblemConstants:
    """L, c, sigma^2 and M_G of ``problem`` (see the module docstring for the method)."""
    with jax.enable_x64(True):
        p64 = _float64(problem)
        w0 = np.asarray(p64.init_params())
        gap = float(jnp.mean(p64.shard_losses(jnp.asarray(w0))) - p64.f_star)
        if isinstance(problem, LinearRegression):
            return _linear(p64, gap)
        if isinstance(problem, LogisticRegression):
            return _logistic(p64, w0, gap, samples, seed)
    raise TypeError(f"no constants for {type(problem).__name__}")


def _linear(problem: LinearRegression, gap: float) -> ProblemConstants:
    x = np.asarray(problem.x)
    n, s, _ = x.shape
    h_i = np.einsum("nsd,nse->nde", x, x) / s
    h = h_i.mean(axis=0)
    g_star = np.einsum("nsd,ns->nd", x, np.asarray(problem.r_star)) / s  # worker gradients at w*
    g_star -= g_star.mean(axis=0)  # exactly zero mean in exact arithmetic; remove the rounding
    v0 = float(np.mean(np.sum(g_star**2, axis=1)))
    dh = h_i - h
    b = np.einsum("nde,ne->d", dh, g_star) / n
    q = np.einsum("nde,nef->df", dh, dh) / n
    evals = np.linalg.eigvalsh(h)
    h_inv = np.linalg.inv(h)
    m_g = s * float(np.linalg.eigvalsh(h_inv @ (q + np.outer(b, b) / v0) @ h_inv)[-1])
    return ProblemConstants(
        L=float(evals[-1]),
        c=float(evals[0]),
        sigma2=2 * s * v0,
        M_G=m_g,
        s=s,
        initial_gap=gap,
        sigma2_at_optimum=s * v0,
        method="least squares: L, c exact eigenvalues of X^T X/m; sigma^2 = 2 s V(w*), M_G exact by Young's inequality",
    )


def _logistic(problem: LogisticRegression, w0: np.ndarray, gap: float, samples: int, seed: int) -> ProblemConstants:
    x, y = np.asarray(problem.x), np.asarray(problem.y)
    n, s, d = x.shape
    classes = y.shape[-1]
    reg = float(problem.reg)
    xa = np.concatenate([x.reshape(n * s, d), np.ones((n * s, 1))], axis=1)
    reg_diag = np.diag(np.r_[np.full(d, reg), 0.0])
    lipschitz = float(logistic_curvature(x.reshape(n * s, d), reg, classes))

    _, packed = logistic_optimum(xa[:, :d], y.reshape(n * s, classes), reg)
    w_star = packed
    weights, bias = np.asarray(problem.unpack(jnp.asarray(w_star))[0]), packed[d * classes :]
    z = xa[:, :d] @ weights + bias
    prob = 0.5 * (1 + np.tanh(0.5 * z))
    curv = prob * (1 - prob)  # (m, C)
    c = min(
        float(np.linalg.eigvalsh((xa.T * curv[:, u]) @ xa / (n * s) + reg_diag)[0]) / classes for u in range(classes)
    )

    worker_gradients = _worker_gradients(problem)
    v_star = _variance(worker_gradients(w_star))
    sigma2 = 2 * s * v_star
    rng = np.random.default_rng(seed)
    radius = np.linalg.norm(w_star - w0)
    points = [w0 + a * (w_star - w0) for a in np.linspace(0.0, 0.98, samples // 2)]
    points += [w_star + 0.5 * radius * v / np.linalg.norm(v) for v in rng.standard_normal((samples // 2, w0.size))]
    m_g = 0.0
    for w in points:
        grads = worker_gradients(w)
        norm2 = float(np.sum(grads.mean(axis=0) ** 2))
        if norm2 > 0:
            m_g = max(m_g, s * (_variance(grads) - sigma2 / s) / norm2)
    return ProblemConstants(
        L=lipschitz,
        c=c,
        sigma2=sigma2,
        M_G=m_g,
        s=s,
        initial_gap=gap,
        sigma2_at_optimum=s * v_star,
        method=(
            "logistic: L exact bound X_a^T X_a/4m + lam I over C; c = lambda_min of the Hessian at w* (local); "
            f"sigma^2 = 2 s V(w*); M_G estimated over {len(points)} points on [w0, w*] and around w*"
        ),
    )
