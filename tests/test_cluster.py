"""Cluster models against closed forms (``core.cluster``): deterministic workers tau_i =
sqrt(i) and tau_i = i, a slowdown shared by all workers at an update, communication time, and
workers that fail and return. Statistical checks hold within 4 standard errors over seeds;
deterministic ones within the bound the argument gives."""

from __future__ import annotations

import numpy as np
import pytest

import fastk_jax as fk
from fastk_jax import data, engine
from fastk_jax.core import cluster, delays, policies, problems
from fastk_jax.core.spec import Failures, Network, RunSpec, Shared, SimConfig, stack_configs
from fastk_jax.errors import ConfigError
from fastk_jax.theory import async_theory
from fastk_jax.theory.order_stats import order_statistic_moments

N = 8
KS = (1, 3, 8)


def _per_update(scheme: str, law, parts: tuple[str, ...] = (), slowdown=None, ks=KS, seeds=48, iterations=400, **fields):
    """Mean time per update of each seed, (len(ks), seeds), for fixed k in ``ks``."""
    x, y, _ = data.synthetic_linear(m=8 * N, d=2, seed=0)
    problem = problems.linear_regression(x, y, n=N)
    slowdown = np.ones(N) if slowdown is None else slowdown
    configs = stack_configs([SimConfig(policies.fixed(k), np.float64(1e-4), law, slowdown, **fields) for k in ks])
    spec = RunSpec(n=N, chunk=iterations + 1, scheme=scheme, cluster=parts)
    sim = engine.simulate(problem, configs, seeds=seeds, time_horizon=1.0, spec=spec, iterations=iterations)
    return np.asarray(sim.summary.final_time, np.float64) / sim.iterations


def _within(per_update: np.ndarray, truth, what) -> None:
    for c, t in enumerate(truth):
        mean, se = per_update[c].mean(), per_update[c].std(ddof=1) / np.sqrt(per_update.shape[1])
        assert abs(mean - t) <= 4 * se + 1e-6 * t, (what, c, mean, t, se)


def test_deterministic_sqrt_workers_under_k_sync_take_the_kth_smallest_tau_every_update():
    """tau_i = sqrt(i): every update of K-sync lasts exactly sqrt(k) (the k-th fastest worker)."""
    per = _per_update("k_sync", delays.make_law("constant", value=1.0), slowdown=cluster.slowdown_profile("sqrt", N),
                      seeds=2)
    for c, k in enumerate(KS):
        np.testing.assert_allclose(per[c], np.sqrt(k), rtol=1e-5)
        law = delays.make_law("constant", value=1.0)
        assert order_statistic_moments(law, k, N, cluster.slowdown_profile("sqrt", N)).mean == pytest.approx(np.sqrt(k))


def test_deterministic_linear_workers_push_at_their_renewal_rates_asynchronously():
    """tau_i = i under fully async SGD (K-batch-async, k = 1): by time t worker i has pushed
    floor(t / tau_i) times, so J updates take J / sum_i (1/tau_i) up to n / sum_i (1/tau_i)."""
    tau = cluster.slowdown_profile("linear", N)
    rate = np.sum(1.0 / tau)
    iterations = 2000
    per = _per_update("k_batch_async", delays.make_law("constant", value=1.0), slowdown=tau, ks=(1, 4), seeds=1,
                      iterations=iterations)
    for c, k in enumerate((1, 4)):
        assert abs(per[c, 0] - k / rate) <= N / rate / (iterations + 1) + 1e-5, (k, per[c, 0], k / rate)


def test_a_shared_slowdown_scales_the_k_sync_time_by_its_mean_factor():
    """Z = 3 with probability 0.25 at each update, independent of the delays: E[T] = E[Z] E[X_(k:n)]."""
    law = delays.make_law("exponential", rate=1.0)
    per = _per_update("k_sync", law, ("shared",), shared=Shared(np.float64(0.25), np.float64(3.0)))
    _within(per, [1.5 * law.order_statistic_mean(k, N) for k in KS], "shared")


def test_communication_adds_a_download_and_an_upload_to_every_fresh_computation():
    """Latency 0.1 and a transfer of 0.05 per vector: K-sync's update lasts 2 (0.1 + 0.05) + X_(k:n)
    (every worker downloads w_j, computes, uploads); fully async SGD renews at (E[X] + 0.3) / n."""
    law = delays.make_law("exponential", rate=1.0)
    net = Network(np.float64(0.1), np.full(N, 0.05))
    _within(_per_update("k_sync", law, ("network",), network=net), [0.3 + law.order_statistic_mean(k, N) for k in KS],
            "k_sync")
    _within(_per_update("k_batch_async", law, ("network",), network=net, ks=(1,)), [1.3 / N], "async")


def test_k_batch_sync_uploads_further_pushes_without_a_download():
    """K-batch-sync on constant workers (X = 1) and a transfer of 0.25 each way: a worker's first
    push comes at 1.5 after t_j (download, compute, upload), its next ones every 1.25 (its
    model is w_j already): the update of k = 2n pushes lasts 1.5 + 1.25 = 2.75."""
    law = delays.make_law("constant", value=1.0)
    per = _per_update("k_batch_sync", law, ("network",), ks=(N, 2 * N), seeds=1, network=Network(np.float64(0.0), np.full(N, 0.25)),
                      iterations=50)
    np.testing.assert_allclose(per[:, 0], [1.5, 2.75], rtol=1e-6)


def test_failures_lengthen_every_computation_by_the_lost_work_and_the_time_away():
    """A failure with probability p at a uniform point of X, then Exp(mean D) away and X again:
    E[duration] = E[X] + p (E[X] / 2 + D); fully async SGD renews at that over n."""
    law = delays.make_law("exponential", rate=1.0)
    p, down = 0.3, 2.0
    per = _per_update("k_batch_async", law, ("failures",), ks=(1,), failures=Failures(np.float64(p), np.float64(down)))
    _within(per, [(1.0 + p * (0.5 + down)) / N], "failures")
    truth_k3 = async_theory.k_batch_async_time(3, N, 1.0 + p * (0.5 + down))
    per3 = _per_update("k_batch_async", law, ("failures",), ks=(3,), failures=Failures(np.float64(p), np.float64(down)))
    _within(per3, [truth_k3], "failures k=3")


def test_cluster_parts_in_a_study_round_trip_and_bad_ones_are_named():
    def study(**cluster):
        return fk.Study(
            name="cl", problem=fk.Linear(n_workers=4, m=40, d=3), delays=fk.delays("constant", value=1.0, **cluster),
            run=fk.Run(eta=0.01, time_horizon=5.0, seeds=2), policies=[fk.Fixed(k=2)],
        )

    s = study(slowdown="sqrt", network={"latency": 0.1, "bandwidth": [100.0, 100.0, 50.0, 50.0]},
              shared={"prob": 0.1, "factor": 2.0}, failures={"prob": 0.05, "downtime": 1.0})
    assert s.resolved["delays"][0]["slowdown"] == pytest.approx(np.sqrt([1, 2, 3, 4]).tolist())
    again = fk.Study.from_table(fk.study.tomllib.loads(s.to_toml()))
    assert again.resolved["delays"] == s.resolved["delays"]
    (conf,) = fk.study.build.configurations(s, fk.study.build.build_problem(s.problem))
    assert conf.spec.cluster == ("failures", "shared", "network")
    np.testing.assert_allclose(conf.config.network.transfer, 4 * 3 / np.array([100.0, 100.0, 50.0, 50.0]))
    for bad, needle in (
        ({"network": {"bandwidth": [1.0, 2.0]}}, "delays.network.bandwidth"),
        ({"shared": {"prob": 1.5, "factor": 2.0}}, "delays.shared.prob"),
        ({"failures": {"prob": 0.1}}, "delays.failures.downtime"),
        ({"failures": {"prob": 0.1, "downtime": 1.0, "rate": 2.0}}, "delays.failures.rate"),
        ({"slowdown": "cubic"}, "delays.slowdown"),
    ):
        table = study().to_table()
        table["delays"] = {**table["delays"], **bad}
        with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
            fk.Study.from_table(table)
