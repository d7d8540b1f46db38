"""``fastk-jax bench`` on tiny sizes: the report's keys and their sanity, the scaling files.
One real engine measurement; the rest with the measurement stubbed (seconds, not minutes)."""

import json

import numpy as np
import pytest

from fastk_jax import bench
from fastk_jax.core import policies, problems
from fastk_jax.data import synthetic_linear


def test_measure_reports_consistent_numbers():
    pols = {"k=2": policies.fixed(2), "adaptive 2->4": policies.adaptive(2, 4, thresh=1, burnin=2, step=2)}
    w = bench.fig3_workload(n=5, d=4, m=50, eta=1e-3, pols=pols)
    r = bench.measure(w, matmul=100.0, seeds=3, iterations=8, reference_seeds=1, reference_iterations=8)
    for key in ("engine_seed_iters_per_s", "reference_seed_iters_per_s", "speedup_vs_reference", "useful_gflops"):
        assert r[key] > 0 and np.isfinite(r[key])
    assert r["compile_s"] >= 0 and r["peak_rss_mb"] > 0
    assert r["speedup_vs_reference"] == pytest.approx(r["engine_seed_iters_per_s"] / r["reference_seed_iters_per_s"])
    assert r["useful_fraction_of_matmul"] == pytest.approx(r["useful_gflops"] / 100.0)
    assert 2 <= r["mean_k"] <= 4
    useful, performed = bench.flops_per_iteration(w.problem, r["mean_k"])
    assert r["useful_gflops"] == pytest.approx(useful * r["engine_seed_iters_per_s"] / 1e9)
    assert r["performed_gflops"] == pytest.approx(performed * r["engine_seed_iters_per_s"] / 1e9)
    # the asynchronous scheme against the heap event reference, and the report that prints both
    a = bench.measure_async(
        bench.fig3_workload(n=5, d=4, m=50, eta=1e-4, pols={"k=2": policies.fixed(2)}),
        seeds=3,
        iterations=8,
        reference_seeds=2,
        reference_iterations=8,
    )
    assert a["k"] == 2 and a["workload"] == "fig3" and "k_batch_async" in a["description"]
    for key in ("engine_seed_iters_per_s", "reference_seed_iters_per_s", "speedup_vs_reference", "engine_run_s"):
        assert a[key] > 0 and np.isfinite(a[key])
    assert a["speedup_vs_reference"] == pytest.approx(a["engine_seed_iters_per_s"] / a["reference_seed_iters_per_s"])
    text = bench.format_report({"device": "cpu", **r, "async": {"k=2": a}})
    assert "async k=2" in text and "heapq" in text


def test_run_puts_fig3_on_top_and_logistic_under_its_key(monkeypatch):
    pytest.importorskip("sklearn")
    seen = []

    def fake(w, matmul, *args):
        seen.append(w)
        return {"workload": w.name, "engine_seed_iters_per_s": 2.0, "matmul_gflops": matmul}

    def fake_async(w, *args):
        seen_async.append(w)
        return {"k": int(np.asarray(next(iter(w.policies.values())).k0)), "workload": "fig3"}

    seen_async = []
    monkeypatch.setattr(bench, "measure", fake)
    monkeypatch.setattr(bench, "measure_async", fake_async)
    r = bench.run(seeds=2, iterations=8, matmul_size=64)
    assert "Fig. 3" in r["workload"] and "logistic" in r["logistic"]["workload"]
    assert r["matmul_gflops"] == r["logistic"]["matmul_gflops"] > 0  # measured once, in the same run
    json.dumps(r, allow_nan=False)
    fig3, logistic, mlp = seen
    assert fig3.problem.x.shape == (50, 40, 100) and len(fig3.policies) == 5
    assert isinstance(logistic.problem, problems.LogisticRegression)
    assert logistic.problem.x.shape == (20, 89, 64) and logistic.problem.num_classes == 10
    assert "MLP" in r["mlp"]["workload"] and isinstance(mlp.problem, problems.LossProblem)
    assert mlp.problem.x.shape == (20, 89, 64) and bench._mlp_sizes(mlp.problem) == (64, 64, 10)
    assert r["async"] == {"k=1": {"k": 1, "workload": "fig3"}, "k=4": {"k": 4, "workload": "fig3"}}
    assert all(w.problem.x.shape == (50, 40, 100) and len(w.policies) == 1 for w in seen_async)


def test_mlp_flop_count():
    """A forward pass of 64-64-10 costs 2 (64*64 + 64*10) per row; forward and backward 3x that."""
    pytest.importorskip("sklearn")
    p = bench.mlp_workload().problem
    forward = 2 * (64 * 64 + 64 * 10)
    assert bench.flops_per_iteration(p, 5) == (3 * forward * 5 * 89 + forward * 1780, 3 * forward * 1780)


def test_flop_counts():
    x, y, _ = synthetic_linear(m=40, d=3, seed=0)
    p = problems.linear_regression(x, y, n=4)  # s = 10; the error through H: 2 d^2 + 2 d
    assert bench.flops_per_iteration(p, 2) == (4 * 2 * 10 * 3 + 2 * 9 + 6, 4 * 40 * 3 + 2 * 9 + 6)


def test_scaling_writes_numbers_and_figures(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "engine_rate", lambda w, seeds, iterations, block: (1e3 * w.n, 0.5, None))
    result = bench.scaling(tmp_path, seeds=(1, 2), ns=(10, 20), ds=(4,), configs=(), sweep_seeds=1, work=50)
    assert [p["axis"] for p in result["points"]] == ["seeds", "seeds", "n", "n", "d"]
    assert [p["seed_iters_per_s"] for p in result["points"]] == [5e4, 5e4, 1e4, 2e4, 5e4]
    assert json.loads((tmp_path / "scaling.json").read_text()) == result
    assert len((tmp_path / "scaling.csv").read_text().splitlines()) == 1 + len(result["points"])
    assert (tmp_path / "scaling.png").stat().st_size > 0 and (tmp_path / "scaling.pdf").stat().st_size > 0


def test_scaling_over_configurations_reports_the_cost_model(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "engine_rate", lambda w, seeds, iterations, block: (1e3 * len(w.policies), 0.5, None))
    result = bench.scaling(tmp_path, seeds=(), ns=(), ds=(), configs=(1, 3), sweep_seeds=8, work=50)
    assert [(p["axis"], p["configs"], p["seeds"]) for p in result["points"]] == [("configs", 1, 2), ("configs", 3, 2)]
    performed = bench.flops_per_iteration(bench.fig3_workload().problem, 1)[1]
    assert [p["performed_gflops"] for p in result["points"]] == pytest.approx(
        [performed * 1e3 / 1e9, performed * 3e3 / 1e9]
    )
