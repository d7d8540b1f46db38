"""Problem constants L, c, sigma^2, M_G against their defining inequalities, in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastk_jax import data
from fastk_jax.core import problems
from fastk_jax.theory import constants


@pytest.fixture(scope="module")
def linear():
    x, y, _ = data.synthetic_linear(200, 6, 1)
    return problems.linear_regression(x, y, 10)


@pytest.fixture(scope="module")
def logistic():
    x, labels = data.load_digits()
    x, labels = data.subsample(x[:, ::8], labels, 120, 0)  # 8 pixels, 120 rows: a small float64 Hessian
    return problems.logistic_regression(x, labels, 6, 0.05, 10)


def _in_float64(problem, fn):
    with jax.enable_x64(True):
        return fn(constants._float64(problem))


def _grads_and_hessian(problem, w):
    def fn(p):
        g = np.asarray(jax.jacrev(p.shard_losses)(jnp.asarray(w)))
        h = np.asarray(jax.hessian(lambda v: jnp.mean(p.shard_losses(v)))(jnp.asarray(w)))
        return g, h

    return _in_float64(problem, fn)


def test_linear_constants_are_exact_and_tight(linear):
    k = constants.problem_constants(linear)
    spectrum = problems.hessian_spectrum_linear(linear)
    np.testing.assert_allclose([k.L, k.c], [spectrum["L"], spectrum["c"]], rtol=1e-10)
    w_star = np.asarray(linear.w_star, np.float64)
    g_star, h = _grads_and_hessian(linear, w_star)
    # the closed-form variance at w* matches autodiff worker gradients
    np.testing.assert_allclose(k.sigma2_at_optimum, k.s * constants._variance(g_star), rtol=1e-8)
    rng = np.random.default_rng(0)
    worst = 0.0
    for scale in (1e-3, 1e-1, 10.0):
        for e in scale * rng.standard_normal((50, w_star.size)):
            grads, _ = _grads_and_hessian(linear, w_star + e)
            grad = h @ e
            gap = 0.5 * e @ h @ e
            assert 2 * k.c * gap <= grad @ grad * (1 + 1e-9)  # condition 2
            bound = k.sigma2 / k.s + k.M_G / k.s * (grad @ grad)
            variance = constants._variance(grads)
            assert variance <= bound * (1 + 1e-9)  # condition 3
            worst = max(worst, variance / bound)
    assert worst > 0.5  # the constants are not loose by orders of magnitude


def test_logistic_constants_bound_the_hessian_and_hold_where_sampled(logistic):
    k = constants.problem_constants(logistic, samples=16)
    rng = np.random.default_rng(1)
    p = logistic.num_params
    for w in rng.standard_normal((5, p)):
        _, h = _grads_and_hessian(logistic, w)
        assert np.linalg.eigvalsh(h)[-1] <= k.L * (1 + 1e-9)
    x, y = np.asarray(logistic.x, np.float64), np.asarray(logistic.y, np.float64)
    _, w_star = problems.logistic_optimum(x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1]), 0.05)
    grads, h = _grads_and_hessian(logistic, w_star)
    np.testing.assert_allclose(np.linalg.eigvalsh(h)[0], k.c, rtol=1e-6)
    np.testing.assert_allclose(k.sigma2_at_optimum, k.s * constants._variance(grads), rtol=1e-8)
    assert k.M_G >= 0 and k.sigma2 == pytest.approx(2 * k.sigma2_at_optimum)
    assert k.initial_gap == pytest.approx(float(np.log(2.0)) - float(logistic.f_star), rel=1e-6)
