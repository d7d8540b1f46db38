"""Differential tests: the NumPy reference simulator against the JAX engine, on the same delays.

The engine runs every policy of a problem in one compiled, vmapped call (keeping its
trajectories); ``engine.delay_samples`` gives the delays it drew; the reference replays them
seed by seed in float64. In float64 both must give the same iterates to rounding (rtol 1e-9),
the same k at every iteration, the same switch iterations, bit-identical clocks and the same
errors, for plain SGD (five policies, least squares and logistic regression) and for heavy-ball
momentum. In float32 the engine must stay within a rounding-error bound of the float64 reference.
The reference's own pieces (gradients, delay laws, grid reading) are also checked on their own.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import numpy as np
import pytest

from fastk_jax import data, engine
from fastk_jax.core import delays, policies, problems
from fastk_jax.core.spec import RunSpec, SimConfig, stack_configs
from fastk_jax.reference import linear as reference

N = 10  # workers
SEEDS = 3
CHUNK = 50
ITERATIONS = 260  # the engine runs whole chunks past this: 300 iterations
HORIZON = 1.0  # small: every run passes it in a few iterations

ADAPTIVE = ("adaptive_step", "adaptive_double")


def policy_set() -> dict[str, policies.KPolicy]:
    return {
        "fixed": policies.fixed(3),
        "time_schedule": policies.schedule(2, [3.0, 8.0], [5, 9], by="time"),
        "iteration_schedule": policies.schedule(3, [40, 100], [6, 1], by="iterations"),
        "adaptive_step": policies.adaptive(k_min=2, k_max=8, thresh=3, burnin=20, step=2),
        "adaptive_double": policies.adaptive(k_min=1, k_max=8, thresh=3, burnin=20, step=0, factor=2),
    }


class Case(NamedTuple):
    """One problem run through the engine with several policies (numpy results)."""

    problem: problems.Problem
    names: list[str]
    pols: dict[str, policies.KPolicy]
    stacked: SimConfig  # the configurations as the engine got them
    etas: dict[str, float]
    sim: engine.Simulation
    delays: np.ndarray  # (C, S, J, n)


def run_engine(problem, etas: dict[str, float], spec: RunSpec, pols: dict[str, policies.KPolicy]) -> Case:
    law = delays.make_law("exponential", rate=1.0)
    names = list(etas)
    configs = stack_configs([SimConfig(pols[name], np.float64(etas[name]), law, np.ones(N)) for name in names])
    sim = engine.simulate(problem, configs, seeds=SEEDS, time_horizon=HORIZON, spec=spec, iterations=ITERATIONS)
    samples = engine.delay_samples(configs, N, SEEDS, sim.iterations)
    return Case(problem, names, pols, configs, etas, sim, samples)


@pytest.fixture
def x64():
    """Float64 JAX for the test (the problem's arrays are then float64), restored afterwards."""
    with jax.enable_x64(True):
        yield


def labels_of(problem: problems.LinearRegression) -> np.ndarray:
    """y = X w* - r*, in numpy float64."""
    return np.asarray(problem.x) @ np.asarray(problem.w_star) - np.asarray(problem.r_star)


def linear_problem() -> problems.LinearRegression:
    x, y, _ = data.synthetic_linear(m=200, d=8, seed=1)
    return problems.linear_regression(x, y, n=N)


def logistic_problem() -> problems.LogisticRegression:
    pytest.importorskip("sklearn")
    x, labels = data.load_digits()
    return problems.logistic_regression(x[:200], labels[:200], n=N, reg=0.01, num_classes=10)


# The step sizes. Least squares: 0.9 of problems.stable_step_limit (2 / max_i L_i), stable for
# every selection of shards, and large enough that the top curvature direction oscillates, so
# consecutive gradients disagree and Algorithm 1 switches within the run. Logistic: 0.5 for the
# schedules; Algorithm 1 needs a step close to the same bound, 2 / max_i (lambda_max(X_i^T X_i /
# s) / 4C + lam/C) ~ 6.4 on these 200 digits, to reach its noise regime within 300 iterations.


@pytest.fixture(scope="module")
def linear_case() -> Case:
    with jax.enable_x64(True):
        problem = linear_problem()
        eta = 0.9 * problems.stable_step_limit(problem)
        pols = policy_set()
        return run_engine(problem, dict.fromkeys(pols, eta), RunSpec(n=N, chunk=CHUNK, keep_trajectories=True), pols)


@pytest.fixture(scope="module")
def logistic_case() -> Case:
    with jax.enable_x64(True):
        problem = logistic_problem()
        pols = policy_set()
        etas = {name: (6.0 if name in ADAPTIVE else 0.5) for name in pols}
        return run_engine(problem, etas, RunSpec(n=N, chunk=CHUNK, keep_trajectories=True), pols)


# Heavy ball (optax.trace) is stable for eta * lambda < 2 (1 + beta); a larger beta smooths the
# gradients so much that consecutive ones rarely disagree and Algorithm 1 would not switch.
MOMENTUM = 0.5


@pytest.fixture(scope="module")
def momentum_case() -> Case:
    with jax.enable_x64(True):
        problem = linear_problem()
        eta = 0.9 * problems.stable_step_limit(problem)
        pols = {"adaptive_step": policy_set()["adaptive_step"]}
        spec = RunSpec(n=N, chunk=CHUNK, optimizer="momentum", momentum=MOMENTUM, keep_trajectories=True)
        return run_engine(problem, dict.fromkeys(pols, eta), spec, pols)


def engine_run(case: Case, c: int, s: int) -> reference.Trajectory:
    """Configuration c, seed s of the engine's kept trajectories, as a numpy Trajectory."""
    t = case.sim.trajectories
    return reference.Trajectory(
        time=np.asarray(t.time[c, s]),
        k=np.asarray(t.k[c, s]),
        error=np.asarray(t.error[c, s]),
        downloads=np.asarray(t.downloads[c, s]),
        w=np.asarray(t.w[c, s]),
    )


def reference_runs(case: Case, name: str, **kwargs) -> list[reference.Trajectory]:
    c = case.names.index(name)
    return reference.simulate_runs(case.problem, case.pols[name], case.etas[name], case.delays[c], **kwargs)


def assert_same_run(ref: reference.Trajectory, eng: reference.Trajectory, f_star: float) -> None:
    """The float64 agreement: exact k, switches, downloads and clocks; iterates and errors to rounding."""
    assert eng.w.dtype == np.float64 and eng.time.dtype == np.float64
    np.testing.assert_array_equal(ref.k, eng.k)
    np.testing.assert_array_equal(reference.switch_iterations(ref), reference.switch_iterations(eng))
    np.testing.assert_array_equal(ref.downloads, eng.downloads)
    # the same float64 additions of the same delays, in the same order: bit-identical clocks
    np.testing.assert_array_equal(ref.time, eng.time)
    # iterates, relative to each iterate's largest entry (w_0 = 0 must match exactly)
    dw = np.max(np.abs(eng.w - ref.w), axis=1)
    w_scale = np.max(np.abs(ref.w), axis=1)
    assert np.all(dw <= 1e-9 * w_scale), f"iterates differ: max relative {np.max(dw / np.maximum(w_scale, 1e-300)):.3g}"
    # F(w) - F* cancels F* (the noise floor) out of the total loss: compare at the loss's scale
    derr = np.abs(eng.error - ref.error)
    assert np.all(derr <= 1e-9 * np.abs(ref.error) + 1e-12 * (f_star + np.abs(ref.error))), (
        f"errors differ by {np.max(derr):.3g}"
    )


# --------------------------------------------------------------------------- float64: engine == reference


@pytest.mark.parametrize("name", list(policy_set()))
def test_linear_matches_engine(linear_case, name):
    c = linear_case.names.index(name)
    f_star = float(linear_case.problem.f_star)
    runs = reference_runs(linear_case, name)
    assert len(runs) == SEEDS
    for s, ref in enumerate(runs):
        assert ref.w.shape == (linear_case.sim.iterations, 8)
        assert_same_run(ref, engine_run(linear_case, c, s), f_star)


@pytest.mark.parametrize("name", list(policy_set()))
def test_logistic_matches_engine(logistic_case, name):
    c = logistic_case.names.index(name)
    f_star = float(logistic_case.problem.f_star)
    for s, ref in enumerate(reference_runs(logistic_case, name)):
        assert ref.w.shape == (logistic_case.sim.iterations, (64 + 1) * 10)
        assert_same_run(ref, engine_run(logistic_case, c, s), f_star)


def test_momentum_matches_engine(momentum_case):
    f_star = float(momentum_case.problem.f_star)
    runs = reference_runs(momentum_case, "adaptive_step", momentum=MOMENTUM)
    for s, ref in enumerate(runs):
        assert_same_run(ref, engine_run(momentum_case, 0, s), f_star)
    # k switched under momentum too, and momentum is not a no-op: plain SGD on the same
    # delays gives other iterates
    assert all(reference.switch_iterations(ref).size >= 1 for ref in runs)
    plain = reference_runs(momentum_case, "adaptive_step")[0]
    assert not np.allclose(plain.w[10:], runs[0].w[10:])


@pytest.mark.parametrize("which", ["linear", "logistic"])
def test_adaptive_runs_switch(which, linear_case, logistic_case):
    """Without switches the adaptive comparisons above would prove nothing about Algorithm 1."""
    case = linear_case if which == "linear" else logistic_case
    for name in ADAPTIVE:
        policy = case.pols[name]
        ladder = [int(policy.k0)]
        while int(policy.factor) * ladder[-1] + int(policy.step) <= int(policy.k_max):
            ladder.append(int(policy.factor) * ladder[-1] + int(policy.step))
        for ref in reference_runs(case, name):
            switches = reference.switch_iterations(ref)
            assert switches.size >= 1, f"{which} {name}: no switch of k in {ref.k.size} iterations"
            # Algorithm 1's rules: k climbs the ladder one rung at a time, never past k_max;
            # the first switch comes after burnin + 1 iterations, later ones burnin + 1 apart
            assert set(ref.k.tolist()) <= set(ladder)
            assert np.all(np.diff(ref.k) >= 0)
            rungs = [ladder.index(k) for k in ref.k[np.concatenate([[0], switches])]]
            assert rungs == list(range(len(rungs)))
            assert switches[0] >= int(policy.burnin) + 1
            assert np.all(np.diff(switches) >= int(policy.burnin) + 1)


def test_schedules_switch_where_they_say(linear_case):
    iteration_runs = reference_runs(linear_case, "iteration_schedule")
    time_runs = reference_runs(linear_case, "time_schedule")
    for ref in iteration_runs:
        np.testing.assert_array_equal(reference.switch_iterations(ref), [40, 100])
        assert ref.k[0] == 3 and ref.k[40] == 6 and ref.k[-1] == 1
    for ref in time_runs:
        expected = [int(np.argmax(ref.time >= 3.0)), int(np.argmax(ref.time >= 8.0))]
        assert 0 < expected[0] < expected[1]
        np.testing.assert_array_equal(reference.switch_iterations(ref), expected)
        np.testing.assert_array_equal(ref.k[[0, expected[0], expected[1]]], [2, 5, 9])


def test_padded_policy_equals_unpadded(linear_case):
    """The +inf padded policy the engine runs (sliced from the stack) gives the same run."""
    for name in ("fixed", "time_schedule"):
        c = linear_case.names.index(name)
        padded = jax.tree.map(lambda leaf, c=c: np.asarray(leaf)[c], linear_case.stacked.policy)
        assert padded.at.shape == (2,)
        eta = linear_case.etas[name]
        a = reference.simulate_run(linear_case.problem, padded, eta, linear_case.delays[c, 0])
        b = reference.simulate_run(linear_case.problem, linear_case.pols[name], eta, linear_case.delays[c, 0])
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_grid_values_match_engine_curves(linear_case, logistic_case):
    """The seed mean of ``grid_values`` is the engine's recorded error curve."""
    for case in (linear_case, logistic_case):
        summary = case.sim.summary
        assert np.all(summary.diverged == 0)
        for c, name in enumerate(case.names):
            runs = reference_runs(case, name)
            grid = case.sim.time_grid
            assert np.all(grid < np.min(summary.final_time[c]))
            mean = np.mean([reference.grid_values(r, grid) for r in runs], axis=0)
            np.testing.assert_allclose(summary.error.mean[c], mean, rtol=1e-9, atol=1e-12 * float(case.problem.f_star))


# --------------------------------------------------------------------------- float32 engine vs float64 reference


def test_float32_engine_within_rounding_of_reference():
    with jax.enable_x64(False):
        problem = linear_problem()
        assert problem.x.dtype == np.float32
        eta = 0.5 * problems.stable_step_limit(problem)
        pols = {"fixed": policies.fixed(3), "all": policies.fixed(N)}
        case = run_engine(problem, dict.fromkeys(pols, eta), RunSpec(n=N, chunk=CHUNK, keep_trajectories=True), pols)
    assert case.delays.dtype == np.float32
    # The reference reads the problem's float32 arrays into float64 (X is integer, exact), so
    # both solve the same problem; the differences are the engine's float32 arithmetic.
    x = np.asarray(problem.x, np.float64)
    n, s, d = x.shape
    rows = x.reshape(n * s, d)
    w_star = np.asarray(problem.w_star, np.float64)
    r_star = np.asarray(problem.r_star, np.float64).reshape(-1)
    f_star = float(problem.f_star)
    u = np.finfo(np.float32).eps / 2  # unit roundoff 2^-24

    for c, name in enumerate(case.names):
        for sd, ref in enumerate(reference_runs(case, name)):
            eng = engine_run(case, c, sd)
            j = np.arange(1, ref.k.size + 1)
            np.testing.assert_array_equal(ref.k, eng.k)  # same delays, same selection
            np.testing.assert_array_equal(ref.downloads, eng.downloads)
            # Clock: t_j is a running sum of j float32 delays (exact in float64): recursive
            # summation is within (j - 1) u t_j of the exact sum (Higham, Accuracy and
            # Stability, eq. (4.4), to first order).
            assert np.all(np.abs(eng.time - ref.time) <= j * u * ref.time)
            # Iterates: each step rounds w (relative u) and forms the gradient from dot
            # products of lengths d and s (relative (d + s) u). Below the stable step each
            # step's map w - w* -> (I - eta H_R)(w - w*) is non-expansive, so earlier errors
            # are not amplified but add up: in the worst case linearly in j, and, as rounding
            # errors of successive steps are independent and of either sign, like a random
            # walk in practice (Higham & Mary, probabilistic rounding error analysis). The
            # random-walk bound sqrt(j) (d + s + 2) u |w|_max is the tolerance.
            w_scale = max(np.max(np.abs(ref.w)), np.max(np.abs(w_star)))
            dw = np.abs(eng.w - ref.w)
            assert np.all(np.max(dw, axis=1) <= np.sqrt(j) * (d + s + 2) * u * w_scale)
            # Errors: F(w_j) = mean_l r_l^2 / 2 with r_l = x_l . (w_j - w*) + r*_l. Given the
            # iterate difference dw_j (just checked), the engine's float32 residual is off by
            # at most rho_l = |x_l| . dw_j + (d + 2) u (|x_l| . |w_j - w*| + |r*_l|) (a dot
            # product of length d, the subtraction w - w*, the addition of r*), so F by at most
            # mean(|r| rho) + mean(rho^2) / 2; summing the m squares in float32 and
            # subtracting F* adds (s + n + 2) u (F + F*) (all terms are positive).
            resid = (ref.w - w_star) @ rows.T + r_star  # (J, m) float64 residuals
            rho = dw @ np.abs(rows).T + (d + 2) * u * (np.abs(ref.w - w_star) @ np.abs(rows).T + np.abs(r_star))
            loss = ref.error + f_star
            bound = np.mean(np.abs(resid) * rho, axis=1) + 0.5 * np.mean(rho**2, axis=1) + (s + n + 2) * u * loss
            assert np.all(np.abs(eng.error - ref.error) <= bound)
            # the bound is no rubber stamp: at the end it is still below the error itself
            assert bound[-1] < 0.2 * ref.error[-1]


# --------------------------------------------------------------------------- the reference on its own


@pytest.mark.parametrize("which", ["linear", "logistic"])
def test_gradient_is_the_gradient_of_the_loss(which, x64):
    """With k = n the reference's step is a full gradient step: compare with central differences."""
    problem = linear_problem() if which == "linear" else logistic_problem()
    prob = reference._numpy_problem(problem)
    rng = np.random.default_rng(3)
    w = rng.normal(size=prob.num_params) * (1.0 if which == "linear" else 0.1)
    everyone = np.arange(N)
    _, grad = prob.error_and_grad(w, everyone)
    h = 1e-6 * max(1.0, np.max(np.abs(w)))
    for i in rng.choice(prob.num_params, size=8, replace=False):
        e = np.zeros_like(w)
        e[i] = h
        numeric = (prob.error_and_grad(w + e, everyone)[0] - prob.error_and_grad(w - e, everyone)[0]) / (2 * h)
        assert numeric == pytest.approx(grad[i], rel=1e-5, abs=1e-7 * np.max(np.abs(grad)))
    # the mean of the k selected shards' gradients
    one = prob.error_and_grad(w, np.array([4]))[1]
    two = prob.error_and_grad(w, np.array([7, 4]))[1]
    np.testing.assert_allclose(two, 0.5 * (one + prob.error_and_grad(w, np.array([7]))[1]), rtol=1e-12, atol=1e-14)


def test_first_step_and_bookkeeping(x64):
    problem = linear_problem()
    rng = np.random.default_rng(0)
    d = reference.draw_delays(rng, "exponential", {"rate": 2.0}, N, 5)
    eta = 1e-3
    run = reference.simulate_run(problem, policies.fixed(4), eta, d)
    x, y = np.asarray(problem.x), labels_of(problem)
    fastest = np.argsort(d[0])[:4]
    # w_0 = 0: r = -y, g = X_R^T r_R / (4 s)
    g = -np.einsum("ksd,ks->d", x[fastest], y[fastest]) / (4 * x.shape[1])
    np.testing.assert_allclose(run.w[1], -eta * g, rtol=1e-12)
    assert run.error[0] == pytest.approx(0.5 * np.mean(y**2) - float(problem.f_star), rel=1e-12)
    np.testing.assert_array_equal(run.downloads, 4 * np.arange(5))
    np.testing.assert_allclose(run.time[1:], np.cumsum(np.sort(d, axis=1)[:, 3])[:-1], rtol=1e-15)
    assert run.time[0] == 0.0


def test_argsort_ties_go_to_the_lower_worker(x64):
    problem = linear_problem()
    d = np.ones((2, N))  # every worker ties: the first k workers are selected
    run = reference.simulate_run(problem, policies.fixed(3), 1e-3, d)
    x, y = np.asarray(problem.x), labels_of(problem)
    g = -np.einsum("ksd,ks->d", x[:3], y[:3]) / (3 * x.shape[1])
    np.testing.assert_allclose(run.w[1], -1e-3 * g, rtol=1e-12)
    np.testing.assert_array_equal(run.time, [0.0, 1.0])


def test_grid_values():
    traj = reference.Trajectory(
        time=np.array([0.0, 1.0, 2.5, 4.0]),
        k=np.ones(4, int),
        error=np.array([8.0, 4.0, 2.0, 1.0]),
        downloads=np.arange(4),
        w=np.zeros((4, 1)),
    )
    got = reference.grid_values(traj, np.array([-1.0, 0.0, 0.5, 1.0, 2.4, 2.5, 3.9, 4.0, 10.0]))
    np.testing.assert_array_equal(got, [np.nan, 8.0, 8.0, 4.0, 4.0, 2.0, 2.0, 1.0, 1.0])


LAWS = {
    "exponential": {"rate": 2.0},
    "shifted_exponential": {"shift": 0.5, "rate": 2.0},
    "pareto": {"shape": 3.5, "scale": 1.0},
    "uniform": {"low": 1.0, "high": 3.0},
    "lognormal": {"mu": 0.0, "sigma": 0.5},
    "weibull": {"shape": 2.0, "scale": 1.5},
    "hyperexponential": {"probs": [0.8, 0.2], "rates": [4.0, 0.5]},
}


@pytest.mark.parametrize("law", list(LAWS))
def test_draw_delays_has_the_law_mean(law):
    params = LAWS[law]
    draws = reference.draw_delays(np.random.default_rng(7), law, params, n=20, iterations=2000)
    assert draws.shape == (2000, 20) and draws.dtype == np.float64
    assert np.all(draws > 0)
    mean = float(delays.make_law(law, **params).mean())
    standard_error = np.std(draws) / math.sqrt(draws.size)
    assert abs(np.mean(draws) - mean) < 5 * standard_error
    if law == "pareto":
        assert np.min(draws) >= params["scale"]
    if law == "uniform":
        assert params["low"] <= np.min(draws) and np.max(draws) <= params["high"]


def test_draw_delays_slowdown_and_bad_input():
    rng = np.random.default_rng(1)
    slowdown = np.array([1.0, 1.0, 10.0])
    draws = reference.draw_delays(rng, "uniform", {"low": 1.0, "high": 2.0}, 3, 100, slowdown=slowdown)
    assert np.all(draws[:, 2] >= 10.0) and np.all(draws[:, :2] <= 2.0)
    with pytest.raises(ValueError, match="unknown delay law"):
        reference.draw_delays(rng, "gamma", {}, 3, 10)
    with pytest.raises(ValueError, match="needs parameters"):
        reference.draw_delays(rng, "exponential", {"scale": 1.0}, 3, 10)


def test_bad_input():
    problem = linear_problem()
    with pytest.raises(ValueError, match="shape"):
        reference.simulate_run(problem, policies.fixed(3), 1e-3, np.ones((5, N + 1)))
    with pytest.raises(ValueError, match="one policy"):
        reference.simulate_run(problem, policies.stack([policies.fixed(3)]), 1e-3, np.ones((5, N)))
    with pytest.raises(TypeError, match="unknown problem"):
        reference.simulate_run(object(), policies.fixed(3), 1e-3, np.ones((5, N)))
    with pytest.raises(ValueError, match="1 <= k <= n"):
        reference.simulate_run(problem, policies.schedule(3, [5], [N + 1], by="iterations"), 1e-3, np.ones((5, N)))


@pytest.mark.parametrize("policy", [policies.loss_ratio(2, 8), policies.gradient_norm(2, 8, 0.5, 10)])
def test_the_reference_refuses_rules_it_does_not_model(linear_case, policy):
    """The loss-ratio and gradient-norm rules are not in the reference: refused, never run as
    Algorithm 1 (the other adaptive rule the policy's fields would look like)."""
    with pytest.raises(ValueError, match="rule"):
        reference.simulate_run(linear_case.problem, policy, 1e-3, linear_case.delays[0, 0])
