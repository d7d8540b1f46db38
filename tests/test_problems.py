"""Problems: losses, F*, sharding, and the stability of the paper's step size."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastk_jax.core import problems
from fastk_jax.data import synthetic_linear
from fastk_jax.errors import DataError


def test_linear_loss_and_f_star_match_numpy():
    x, y, _ = synthetic_linear(120, 6, 3)
    p = problems.linear_regression(x, y, 4)
    w_star = np.linalg.lstsq(x, y, rcond=None)[0]
    assert float(p.f_star) == pytest.approx(0.5 * np.mean((x @ w_star - y) ** 2), rel=1e-6)
    w = np.arange(6.0)
    assert float(problems.full_loss(p, jnp.asarray(w, jnp.float32))) == pytest.approx(
        0.5 * np.mean((x @ w - y) ** 2), rel=1e-5
    )
    # partial gradients (eq. (3)) are the shard means
    grads = jax.jacrev(p.shard_losses)(jnp.asarray(w, jnp.float32))
    xs, ys = x.reshape(4, 30, 6), y.reshape(4, 30)
    expected = np.einsum("nsd,ns->nd", xs, np.einsum("nsd,d->ns", xs, w) - ys) / 30
    np.testing.assert_allclose(grads, expected, rtol=2e-4)


def test_paper_step_size_is_stable_under_the_mean_loss():
    """Sec. V-A data (m=2000, d=100, n=50): eta = 0.0005 is below the limit 2/max_i L_i under
    which no selection of shards can make a step expansive; under the sum loss it would not be."""
    x, y, _ = synthetic_linear(2000, 100, 0)
    p = problems.linear_regression(x, y, 50)
    spec = problems.hessian_spectrum_linear(p)
    assert 2900 < spec["L"] < 3200  # ~ 8.25 + 30.25 d
    limit = problems.stable_step_limit(p)
    assert 5e-4 < limit < 2 / spec["L"]
    assert 5e-4 * 2000 * spec["L"] > 2  # the sum loss would scale L by m


def test_uneven_split_drops_the_remainder_with_a_warning():
    x, y, _ = synthetic_linear(103, 3, 0)
    with pytest.warns(UserWarning, match="last 3 rows are dropped"):
        p = problems.linear_regression(x, y, 10)
    assert p.x.shape == (10, 10, 3)
    w_star = np.linalg.lstsq(x[:100], y[:100], rcond=None)[0]
    assert float(p.f_star) == pytest.approx(0.5 * np.mean((x[:100] @ w_star - y[:100]) ** 2), rel=1e-6)
    with pytest.raises(DataError, match="need at least"):
        problems.linear_regression(x[:5], y[:5], 10)


def _logistic_data(m=150, d=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(m, d))
    labels = np.argmax(x @ rng.normal(size=(d, classes)) + rng.normal(size=(m, classes)), axis=1)
    return x, labels


def test_logistic_f_star_is_a_stationary_point_in_float64():
    x, labels = _logistic_data()
    reg = 0.05
    f_star, w_star = problems.logistic_optimum(x, np.eye(3)[labels], reg)
    with jax.enable_x64(True):
        p = problems.logistic_regression(x, labels, 5, reg, 3)
        w = jnp.asarray(w_star)
        grad = jax.grad(lambda v: jnp.mean(p.shard_losses(v)))(w)
        assert float(jnp.max(jnp.abs(grad))) < 1e-9
        assert float(problems.full_loss(p, w)) == pytest.approx(f_star, rel=1e-12)
        # and it is a minimum: small perturbations only increase the loss
        for key in range(3):
            dw = 1e-3 * jax.random.normal(jax.random.key(key), w.shape, jnp.float64)
            assert float(problems.full_loss(p, w + dw)) > f_star


def test_logistic_loss_is_one_vs_all_cross_entropy():
    x, labels = _logistic_data(m=40, d=3, classes=2)
    p = problems.logistic_regression(x, labels, 4, 0.1, 2)
    rng = np.random.default_rng(1)
    wmat, b = rng.normal(size=(3, 2)), rng.normal(size=2)
    w = np.concatenate([wmat.ravel(), b])
    z = x @ wmat + b
    y = np.eye(2)[labels]
    expected = np.mean(np.log1p(np.exp(z)) - y * z) + 0.1 / 2 * np.sum(wmat**2) / 2
    assert float(problems.full_loss(p, jnp.asarray(w, jnp.float32))) == pytest.approx(expected, rel=1e-5)


def test_logistic_refuses_what_has_no_minimizer():
    x, labels = _logistic_data(m=40, classes=2)
    with pytest.raises(DataError, match="reg > 0"):
        problems.logistic_regression(x, labels, 4, 0.0, 2)
    with pytest.raises(DataError, match="class 2"):
        problems.logistic_regression(x, labels, 4, 0.1, 3)  # class 2 never occurs


def test_digits_problem_builds():
    pytest.importorskip("sklearn")
    from fastk_jax.data import load_digits

    x, labels = load_digits()
    p = problems.logistic_regression(x[:300], labels[:300], 20, 0.01, 10)
    assert p.x.shape == (20, 15, 64) and p.num_params == 650
    assert 0 < float(p.f_star) < np.log(2)


def test_excess_loss_is_the_quadratic_form_through_the_hessian():
    """F(w) - F* = (1/2) e^T H e exactly (X^T r* = 0), in float64 against the residuals; in
    float32 it keeps its relative accuracy near w*, where F(w) - F* loses digits to cancellation."""
    x, y, _ = synthetic_linear(200, 8, 1)
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        p = problems.linear_regression(x, y, 5)
        np.testing.assert_allclose(p.hessian, x.T @ x / 200, rtol=1e-12)
        for scale in (1.0, 1e-3):
            w = p.w_star + scale * rng.normal(size=8)
            direct = float(problems.full_loss(p, w) - p.f_star)
            assert float(problems.excess_loss(p, w)) == pytest.approx(direct, rel=1e-9)
    p32 = problems.linear_regression(x, y, 5)
    e = 1e-4 * rng.normal(size=8)
    w = jnp.asarray(np.asarray(p32.w_star, np.float64) + e, jnp.float32)
    e32 = np.asarray(w, np.float64) - np.asarray(p32.w_star, np.float64)  # e as rounded to float32
    exact = 0.5 * e32 @ (x.T @ x / 200) @ e32
    assert float(problems.excess_loss(p32, w)) == pytest.approx(exact, rel=1e-5)


def test_excess_loss_without_the_hessian_uses_the_shard_losses():
    """d > m: H would be larger than the data, so it is not kept; the error comes from the
    residuals (and from shard losses the caller passes, for logistic regression too)."""
    x, y, _ = synthetic_linear(6, 10, 0)
    p = problems.linear_regression(x, y, 3)
    assert p.hessian is None
    w = jnp.arange(10.0) / 10
    assert float(problems.excess_loss(p, w)) == pytest.approx(float(problems.full_loss(p, w) - p.f_star), rel=1e-6)
    xl, labels = _logistic_data(m=40, d=3, classes=2)
    q = problems.logistic_regression(xl, labels, 4, 0.1, 2)
    v = jnp.ones(q.num_params) / 4
    losses = q.shard_losses(v)
    assert float(problems.excess_loss(q, v, losses)) == pytest.approx(float(jnp.mean(losses) - q.f_star))
    assert float(problems.excess_loss(q, v)) == pytest.approx(float(jnp.mean(losses) - q.f_star))


# ---------------------------------------------------------------- the logistic stable-step limit


@pytest.mark.parametrize("classes", [1, 3])
def test_logistic_curvature_bound_is_the_max_hessian_eigenvalue(classes):
    """``logistic_curvature`` of a shard equals lambda_max of the true Hessian of that shard's
    loss at w = 0 (p = 1/2: the bound is attained) and bounds it everywhere else."""
    x, labels = _logistic_data(m=24, d=4, classes=max(classes, 2))
    x = x + 0.5  # features with a mean, so the bias column couples in
    reg = 0.05
    with jax.enable_x64(True):
        p = problems.logistic_regression(x, labels, 4, reg, classes)
        bounds = problems.logistic_curvature(np.asarray(p.x), reg, classes)  # (4,) one per shard
        assert bounds.shape == (4,)
        hess = jax.jit(jax.hessian(p.shard_loss))
        top = lambda w, i: float(np.linalg.eigvalsh(np.asarray(hess(w, i)))[-1])
        ws = 2.0 * jax.random.normal(jax.random.key(0), (3, p.num_params), jnp.float64)
        for i in range(4):
            assert top(jnp.zeros(p.num_params), i) == pytest.approx(bounds[i], rel=1e-10)
            assert all(top(w, i) <= bounds[i] * (1 + 1e-12) for w in ws)
        assert problems.stable_step_limit(p) == pytest.approx(2 / bounds.max(), rel=1e-15)


def test_stable_step_limit_is_none_without_a_curvature_bound():
    x, labels = _logistic_data(m=20, d=3)
    p = problems.from_loss(lambda w, x, y: jnp.mean((x @ w - y) ** 2), jnp.zeros(3), x, labels.astype(float), 4)
    assert problems.stable_step_limit(p) is None


def test_logistic_optimum_reports_each_class():
    x, labels = _logistic_data()
    calls = []
    f_star, _ = problems.logistic_optimum(x, np.eye(3)[labels], 0.05, progress=lambda *a: calls.append(a))
    assert [c[:2] for c in calls] == [(1, 3), (2, 3), (3, 3)] and all(c[2] >= 1 for c in calls)
    assert f_star == problems.logistic_optimum(x, np.eye(3)[labels], 0.05)[0]
