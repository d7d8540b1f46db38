"""Bring your own model: a loss of a parameter pytree in a few lines of JAX runs in every
scheme and policy, its gradients are those of the selected shards (against a NumPy
finite-difference oracle), and the metrics that need no F* agree with F - F* where both exist."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastk_jax import data, engine
from fastk_jax.core import delays, networks, policies, problems
from fastk_jax.core.spec import RunSpec, SimConfig, stack_configs

N = 4
LAW = delays.make_law("exponential", rate=1.0)


def huber(params, x, y):
    """Huber regression with a bias, parameters as a dict: the user's model in four lines."""
    r = x @ params["w"] + params["b"] - y
    a = jnp.abs(r)
    return jnp.mean(jnp.where(a <= 1.0, 0.5 * r**2, a - 0.5))


def huber_numpy(w, b, x, y):
    r = x @ w + b - y
    a = np.abs(r)
    return np.mean(np.where(a <= 1.0, 0.5 * r**2, a - 0.5))


def two_layer(params, x, y):
    """A two-layer tanh network, parameters as a tuple of layers."""
    (w1, b1), (w2, b2) = params
    return 0.5 * jnp.mean((jnp.tanh(x @ w1 + b1) @ w2 + b2 - y) ** 2)


def _huber_problem(m=40, d=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(m, d))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.3 + rng.standard_t(2, size=m)  # heavy tails: the linear part counts
    params = {"w": np.zeros(d), "b": np.zeros(())}
    return problems.from_loss(huber, params, x, y, N), x, y


def _configs(pols, eta):
    return stack_configs([SimConfig(p, np.float64(eta), LAW, np.ones(N)) for p in pols])


def test_the_generic_problem_flattens_a_pytree_and_back():
    prob, _, _ = _huber_problem()
    assert prob.num_params == 4 and not prob.knows_f_star
    w = jnp.arange(4.0, dtype=jnp.float32)
    params = prob.params(w)
    assert set(params) == {"w", "b"} and params["w"].shape == (3,) and params["b"].shape == ()
    assert float(params["b"]) == 0.0 and list(params["w"]) == [1.0, 2.0, 3.0]  # leaves in tree order: b, w
    np.testing.assert_array_equal(prob.layout.ravel(params, jnp.float32), w)


def test_a_user_loss_steps_by_the_mean_gradient_of_the_fastest_k_shards():
    """k_sync with k = 2: w_(j+1) = w_j - eta (1/k) sum over the two fastest workers of the
    gradient of their shard loss, the gradient taken here by central differences in float64
    on the NumPy form of the loss (an oracle independent of jax.grad)."""
    k, eta, steps = 2, 0.3, 6
    with jax.enable_x64(True):
        prob, x, y = _huber_problem()
        cfg = _configs([policies.fixed(k)], eta)
        spec = RunSpec(n=N, chunk=steps, keep_trajectories=True, metrics=("loss",))
        sim = engine.simulate(prob, cfg, seeds=1, time_horizon=1e-9, spec=spec, iterations=steps - 1)
        ws = np.asarray(sim.trajectories.w[0, 0], np.float64)  # (steps, p)
        delays_ = engine.delay_samples(cfg, N, 1, steps)[0, 0]  # (steps, n)
    xs, ys = x.reshape(N, -1, 3), y.reshape(N, -1)
    h = 1e-6
    # a central difference is exact to O(h^2) where the loss is smooth, but to h L / 2 across a
    # kink of Huber's second derivative (|r| = 1), L bounding the shard Hessian (rows with a 1 for the bias)
    xa = np.concatenate([np.ones((N, xs.shape[1], 1)), xs], axis=2)
    curvature = max(np.linalg.eigvalsh(xa[i].T @ xa[i] / xa.shape[1])[-1] for i in range(N))
    tolerance = eta * h * curvature
    for j in range(steps - 1):
        fastest = np.argsort(delays_[j], kind="stable")[:k]
        grad = np.zeros(4)
        for i in fastest:
            for e in range(4):
                up, down = ws[j].copy(), ws[j].copy()
                up[e] += h
                down[e] -= h
                f = lambda v, i=i: huber_numpy(v[1:], v[0], xs[i], ys[i])
                grad[e] += (f(up) - f(down)) / (2 * h) / k
        np.testing.assert_allclose(ws[j + 1], ws[j] - eta * grad, rtol=0, atol=tolerance)
    # the recorded loss is F(w_j) of the full objective
    full = np.mean([huber_numpy(ws[0][1:], ws[0][0], xs[i], ys[i]) for i in range(N)])
    assert float(sim.trajectories.error[0, 0, 0]) == pytest.approx(full, rel=1e-12)


@pytest.mark.parametrize(
    "scheme,policy",
    [
        ("k_sync", policies.fixed(2)),
        ("k_async", policies.fixed(2)),
        ("k_sync", policies.adaptive(1, N, thresh=2, burnin=5, step=1)),  # Algorithm 1
    ],
    ids=["k_sync", "k_async", "algorithm1"],
)
def test_a_two_layer_network_learns_under_every_kind_of_scheme(scheme, policy):
    """The user's network, its parameters a tuple of layers, trains under K-sync, K-async and
    Algorithm 1: the training loss falls well below its start, and the squared gradient norm
    of the full objective is recorded beside it."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 2))
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1]
    params = ((rng.normal(size=(2, 8)) / np.sqrt(2), np.zeros(8)), (rng.normal(size=8) / np.sqrt(8), np.zeros(())))
    prob = problems.from_loss(two_layer, params, x, y, N)
    spec = RunSpec(n=N, chunk=100, scheme=scheme, metrics=("loss", "grad_norm2"))
    sim = engine.simulate(prob, _configs([policy], 0.2), seeds=3, time_horizon=60.0, spec=spec)
    loss = np.asarray(sim.summary.error.mean[0])
    grad2 = np.asarray(sim.summary.extra.mean[0, :, 0])
    assert int(sim.summary.diverged[0]) == 0
    assert loss[-1] < 0.3 * loss[0]
    assert np.all(np.isfinite(grad2)) and grad2[-1] < grad2[0]


def test_metrics_without_f_star_are_f_minus_f_star_shifted_by_f_star():
    """On least squares, where F* is known, the training loss curve is the error curve plus F*,
    run by run (the same runs, recorded both ways), and the squared gradient norm is that of
    the closed form X^T (X w - y) / m at the recorded model."""
    with jax.enable_x64(True):
        x, y, _ = data.synthetic_linear(m=80, d=3, seed=4)
        prob = problems.linear_regression(x, y, n=N)
        eta = 0.5 * problems.stable_step_limit(prob)
        spec = RunSpec(n=N, chunk=30, keep_trajectories=True, metrics=("error", "loss", "grad_norm2"))
        sim = engine.simulate(prob, _configs([policies.fixed(2), policies.fixed(N)], eta), seeds=2,
                              time_horizon=1e-9, spec=spec, iterations=29)
    out = sim.trajectories
    error, loss, grad2 = np.asarray(out.error), np.asarray(out.extra[..., 0]), np.asarray(out.extra[..., 1])
    f_star = float(prob.f_star)
    np.testing.assert_allclose(loss, error + f_star, rtol=1e-10, atol=1e-10 * f_star)
    w = np.asarray(out.w, np.float64)  # (C, S, T, d)
    residual = np.einsum("md,csjd->csjm", x[:80], w) - y[:80]
    g = np.einsum("md,csjm->csjd", x[:80], residual) / 80
    np.testing.assert_allclose(grad2, np.sum(g**2, axis=-1), rtol=1e-9)


def test_an_mlp_on_digits_raises_its_test_accuracy():
    pytest.importorskip("sklearn")
    x, labels = data.load_digits()
    train, test = data.split_test(x, labels, 0.25, seed=0)
    prob = networks.mlp_classifier(*train, 10, hidden=(32,), test=test)
    assert prob.is_classifier and not prob.knows_f_star
    spec = RunSpec(n=10, chunk=100, metrics=("loss", "test_loss", "test_accuracy"))
    sim = engine.simulate(prob, _configs_n([policies.fixed(5)], 0.5, 10), seeds=2, time_horizon=150.0, spec=spec)
    accuracy = np.asarray(sim.summary.extra.mean[0, :, 1])
    assert accuracy[0] < 0.3  # ten classes, an untrained net
    assert accuracy[-1] > 0.85
    test_loss = np.asarray(sim.summary.extra.mean[0, :, 0])
    assert test_loss[-1] < 0.5 * test_loss[0]


def _configs_n(pols, eta, n):
    return stack_configs([SimConfig(p, np.float64(eta), LAW, np.ones(n)) for p in pols])


def test_metrics_a_problem_cannot_give_are_refused_by_name():
    prob, _, _ = _huber_problem()
    cfg = _configs([policies.fixed(2)], 0.1)
    for metrics, says in [
        (("error",), "needs F*"),
        (("loss", "test_loss"), "held-out rows"),
        (("test_accuracy",), "must fall"),
        (("loss", "speed"), "unknown metric"),
    ]:
        with pytest.raises(Exception, match=says):
            engine.simulate(prob, cfg, seeds=1, time_horizon=1.0, spec=RunSpec(n=N, metrics=metrics))


# ---------------------------------------------------------------- the MLP studies and the TOML side


def test_the_mlp_study_raises_test_accuracy_and_its_summary_gives_the_numbers(tmp_path, capsys):
    pytest.importorskip("sklearn")
    import json

    from fastk_jax import cli
    from fastk_jax.analysis import metrics, results

    out = tmp_path / "mlp"
    assert cli.main(["study", "mlp-fig12", "--quick", "--quiet", "--out", str(out)]) == 0, capsys.readouterr().err
    res = results.load(out)
    assert res.metrics == ("loss", "test_loss", "test_accuracy") and res.metric == "loss"
    accuracy = res.bands["test_accuracy"].mean
    assert np.all(accuracy[:, 0] < 0.2) and np.all(accuracy[:, -1] > 0.6)  # ten classes: chance is 0.1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"] == ["loss", "test_loss", "test_accuracy"]
    for c, conf in enumerate(summary["configurations"]):
        assert conf["final_test_accuracy"] == pytest.approx(float(accuracy[c, -1]))
        assert conf["final_loss"] < float(res.bands["loss"].mean[c, 0])
        assert "final_error" not in conf  # no F*: no F - F*
    # time to reach an accuracy is a time to rise to it; to reach a loss, to fall to it
    rise = metrics.reach(res, 0.5, "test_accuracy")
    assert np.all(np.isfinite(rise.time)) and np.all(rise.time > 0)
    first = np.argmax(accuracy >= 0.5, axis=1)
    np.testing.assert_array_equal(rise.time, res.time_grid[first])
    fall = metrics.reach(res, 1.5)
    np.testing.assert_array_equal(fall.time, res.time_grid[np.argmax(res.bands["loss"].mean <= 1.5, axis=1)])


def _mlp_study(**changes):
    from conftest import base

    doc = base()
    doc["problem"] = {"kind": "mlp", "n_workers": 10, "hidden": [8], "m": 200}
    doc["policy"] = [{"kind": "fixed", "k": 3}]
    for section, fields in changes.items():
        doc.setdefault(section, {}).update(fields)
    return doc


@pytest.mark.parametrize(
    "changes,field,says",
    [
        ({"run": {"metrics": ["error"]}}, "run.metrics", "needs F*"),
        ({"run": {"metrics": ["test_accuracy"]}}, "run.metrics", "must fall"),
        ({"run": {"metrics": ["loss", "loss"]}}, "run.metrics", "distinct"),
        ({"run": {"metrics": ["loss", "speed"]}}, "run.metrics", "unknown metric"),
        ({"problem": {"test_fraction": 1.5}}, "problem.test_fraction", "strictly between"),
        ({"problem": {"hidden": [0]}}, "problem.hidden", "layer sizes"),
        ({"problem": {"activation": "sigmoid"}}, "problem.activation", "relu"),
        ({"figure": {"metrics": ["test_loss"]}}, "figure.metrics", "not recorded"),
        ({"report": {"metric": "test_accuracy", "levels": [0.5]}}, "report.metric", "not recorded"),
    ],
)
def test_a_bad_metric_or_network_field_is_one_config_error_naming_it(changes, field, says):
    from fastk_jax.errors import ConfigError
    from fastk_jax.study.reader import resolve_tables

    with pytest.raises(ConfigError) as e:
        resolve_tables(_mlp_study(**changes))
    assert e.value.field == field and says in str(e.value)


def test_test_metrics_need_held_out_rows_and_bound_optimal_needs_a_convex_problem():
    from conftest import base

    from fastk_jax.errors import ConfigError
    from fastk_jax.study.reader import resolve_tables

    doc = base()
    doc["problem"] = {"kind": "logistic", "n_workers": 10, "m": 200}
    doc["run"]["metrics"] = ["error", "test_accuracy"]
    with pytest.raises(ConfigError, match="test_fraction"):
        resolve_tables(doc)
    doc["problem"]["test_fraction"] = 0.25
    assert resolve_tables(doc)["run"]["metrics"] == ["error", "test_accuracy"]
    mlp = _mlp_study()
    mlp["policy"] = [{"kind": "bound_optimal"}]
    with pytest.raises(ConfigError, match="convex"):
        resolve_tables(mlp)


def test_an_mlp_study_round_trips_through_toml():
    from fastk_jax.study.definition import Study
    from fastk_jax.study.fields import tomllib

    s = Study.from_table(_mlp_study(run={"metrics": ["loss", "test_accuracy"]}, figure={"metrics": ["loss", "test_accuracy"]}))
    again = Study.from_table(tomllib.loads(s.to_toml()))
    assert again == s and again.problem.hidden == (8,) and again.run.metrics == ("loss", "test_accuracy")
    assert again.figure.metrics == ("loss", "test_accuracy")


def test_the_mlp_matches_the_numpy_reference_on_the_same_delays():
    """The engine's MLP (gradients by jax.grad of the flattened pytree) against the NumPy
    reference (backward pass by hand) on the same delays, in float64: the same losses and the
    same final network to rounding."""
    from fastk_jax.reference import networks as reference

    rng = np.random.default_rng(3)
    x, labels = rng.normal(size=(60, 5)), rng.integers(0, 3, 60)
    k, eta, steps = 2, 0.5, 40
    with jax.enable_x64(True):
        prob = networks.mlp_classifier(x, labels, N, hidden=(7, 4), activation="tanh", init_seed=2)
        cfg = _configs([policies.fixed(k)], eta)
        spec = RunSpec(n=N, chunk=steps, keep_trajectories=True, metrics=("loss",))
        sim = engine.simulate(prob, cfg, seeds=1, time_horizon=1e-9, spec=spec, iterations=steps - 1)
        delays_ = engine.delay_samples(cfg, N, 1, steps + 1)[0, 0]
    init = networks.init_mlp((5, 7, 4, 3), "tanh", 2)
    ref = reference.simulate_mlp_run(init, x.reshape(N, 15, 5), labels.reshape(N, 15), k, eta, delays_[:steps], "tanh")
    np.testing.assert_allclose(np.asarray(sim.trajectories.error[0, 0]), ref.loss, rtol=1e-11)
    np.testing.assert_allclose(np.asarray(sim.trajectories.time[0, 0]), ref.time, rtol=1e-12)
    w_last = np.asarray(sim.trajectories.w[0, 0, -1])  # w_(J-1); the reference's final layers are w_J
    before = reference.simulate_mlp_run(init, x.reshape(N, 15, 5), labels.reshape(N, 15), k, eta, delays_[: steps - 1], "tanh")
    flat = np.concatenate([a.ravel() for layer in before.params for a in layer])
    np.testing.assert_allclose(w_last, flat, rtol=1e-10, atol=1e-12)


def test_run_takes_a_problem_of_ones_own_in_place_of_the_studys():
    """``fk.run(study, problem=...)``: the study gives the cluster, policies and run; the user's
    problem replaces its [problem] (only n_workers must agree), and the metrics default to what
    the problem can give (no F*: the training loss)."""
    import fastk_jax as fk
    from fastk_jax.errors import ConfigError

    prob, _, _ = _huber_problem()
    study = fk.Study(
        name="own",
        problem=fk.Linear(n_workers=N, m=N, d=1),  # stands in: only n_workers is read
        delays=fk.delays("exponential", rate=1.0),
        run=fk.Run(eta=0.3, time_horizon=30.0, seeds=3, chunk=50),
        policies=[fk.Fixed(k=2), fk.Adaptive(k_min=1, k_max=N, thresh=2, burnin=5, step=1)],
    )
    res = fk.run(study, problem=prob)
    assert res.metrics == ("loss",) and res.bands["loss"].mean.shape[0] == 2
    assert np.all(res.bands["loss"].mean[:, -1] < res.bands["loss"].mean[:, 0])
    with pytest.raises(ConfigError, match="n_workers"):
        fk.run(study.replace(problem=fk.Linear(n_workers=5, m=5, d=1)), problem=prob)
