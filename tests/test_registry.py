"""Registered studies (every one runs with --quick and writes its files) and check-bounds."""

import json
import math

import numpy as np
import pytest
from conftest import run_cli

from fastk_jax import cli
from fastk_jax.analysis import results
from fastk_jax.runner import check_bounds
from fastk_jax.study import library
from fastk_jax.theory import fastest_k_bounds

STUDIES = sorted(library.study_files())
FILES = ("results.npz", "config.json", "summary.json", "figure.png", "figure.pdf")


def test_studies_lists_every_study_with_a_description():
    proc = run_cli("studies")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == STUDIES
    assert all(len(line.split(maxsplit=1)) == 2 for line in lines)
    assert {"adaptive-fig1", "adaptive-fig2", "adaptive-fig3", "stale-fig5", "stale-fig7"} <= set(STUDIES)


@pytest.mark.parametrize("name", STUDIES)
def test_every_study_runs_quick_and_writes_its_files(tmp_path, capsys, name):
    out = tmp_path / name
    assert cli.main(["study", name, "--quick", "--quiet", "--out", str(out)]) == 0, capsys.readouterr().err
    for f in FILES:
        assert (out / f).stat().st_size > 0, f
    summary = json.loads((out / "summary.json").read_text())
    assert summary["name"] == name and summary["quick"] is True
    with np.load(out / "results.npz", allow_pickle=False) as arrays:
        assert arrays.files


def test_example1_summary_reports_derived_and_printed_readings(tmp_path):
    out = tmp_path / "fig2"
    assert cli.main(["study", "adaptive-fig2", "--quiet", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    ex = fastest_k_bounds.example1()
    np.testing.assert_allclose(summary["theorem1_switching_times"], ex["switching_times"], rtol=1e-12)
    assert [c["k"] for c in summary["best_fixed_k_changes"]] == [2, 3, 4, 5]
    printed = summary["at_the_printed_reading"]["best_fixed_k_changes"]
    # the printed 1098 and 6623 are the first integer times at which k=2 and k=5 are best, at rate 5
    assert [math.ceil(printed[0]), math.ceil(printed[-1])] == [1098, 6623]


def test_simulation_study_results_reload(tmp_path):
    out = tmp_path / "fig3"
    assert cli.main(["study", "adaptive-fig3", "--quick", "--quiet", "--seeds", "3", "--out", str(out)]) == 0
    res = results.load(out)
    assert res.seeds == 3 and len(res.labels) == 5
    # the [report]: time and communication to reach each level, and how much sooner than k=40
    reach = json.loads((out / "summary.json").read_text())["reach"]
    assert [r["level"] for r in reach] == ["1000", "10", "floor of k=40"]
    floor = {c["label"]: c for c in reach[-1]["configurations"]}
    assert floor["k=40"]["times_sooner_than_reference"] == 1.0
    assert floor["k=10"]["downloads"] > 0 and floor["k=10"]["downloads_and_uploads"] > floor["k=10"]["downloads"]


@pytest.mark.parametrize(
    "args,needle",
    [(["study", "no-such-study"], "no study named"), (["check-bounds", "--seed", "-1"], "--seed")],
)
def test_bad_names_and_seeds_are_one_line_errors(capsys, args, needle):
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err


def test_check_semantics():
    eq = check_bounds.Check("x", "equal", theory=1.0, estimate=1.1, half_width=0.2)
    assert eq.holds and not eq._replace(theory=1.31).holds
    upper = check_bounds.Check("y", "upper", theory=1.0, estimate=1.1, half_width=0.2)
    assert upper.holds and not upper._replace(half_width=0.05).holds  # significantly above the bound
    assert check_bounds.Check("z", "upper", 1.0, 0.2, 0.1).holds


def test_check_bounds_json_quick():
    """The simulator agrees with the theory on every claim (fixed seed, simultaneous 95% level)."""
    proc = run_cli("check-bounds", "--json", "--quick")
    assert proc.returncode == 0, proc.stderr
    checks = json.loads(proc.stdout)
    assert len(checks) > 30
    for c in checks:
        assert {"name", "theory", "estimate", "ci_low", "ci_high", "holds"} <= set(c)
        assert c["ci_low"] <= c["estimate"] <= c["ci_high"]
    names = " ".join(c["name"] for c in checks)
    for claim in (
        "E[X_(5:10)], pareto",
        "Lemma 1",
        "Theorem 1 policy",
        "Lemma 4",
        "Lemma 5",
        "Lemma 6",
        "Theorem 2",
        "p0",
    ):
        assert claim in names
    failing = [c["name"] for c in checks if not c["holds"]]
    assert not failing, failing


def test_bound_optimal_policy_in_a_study_follows_theorem1(tmp_path):
    from conftest import toml

    from fastk_jax import data
    from fastk_jax.core import problems
    from fastk_jax.core.delays import make_law
    from fastk_jax.theory import constants

    doc = {
        "name": "bo",
        "problem": {"kind": "linear", "n_workers": 5, "m": 100, "d": 3},
        "delays": {"law": "exponential", "rate": 1.0},
        "run": {"eta": 0.002, "time_horizon": 50.0, "seeds": 2},
        "policy": [{"kind": "fixed", "k": 2}, {"kind": "bound_optimal"}],
    }
    cfg = tmp_path / "bo.toml"
    cfg.write_text(toml(doc))
    assert cli.main(["run", str(cfg), "--quiet", "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    schedule = summary["configurations"][1]["schedule"]
    x, y, _ = data.synthetic_linear(100, 3, 0)
    pc = constants.problem_constants(problems.linear_regression(x, y, 5))
    bc = fastest_k_bounds.BoundConstants(0.002, pc.L, pc.c, pc.sigma2, pc.s, pc.initial_gap)
    mu = fastest_k_bounds.order_means(make_law("exponential", rate=1.0), 5)
    np.testing.assert_allclose(schedule["at"], fastest_k_bounds.switching_times(bc, mu), rtol=1e-6)
    assert schedule["ks"] == [2, 3, 4, 5] and schedule["by"] == "time"
    assert "schedule" not in summary["configurations"][0]


def test_bench_quick_json_reports_both_rates_and_their_ratio():
    proc = run_cli("bench", "--quick", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    keys = (
        "engine_seed_iters_per_s",
        "reference_seed_iters_per_s",
        "speedup_vs_reference",
        "useful_gflops",
        "matmul_gflops",
    )
    assert all(report[k] > 0 for k in keys)
    assert report["matmul_precision"] == "float32"  # the engine's products and the matmul alike
    ratio = report["engine_seed_iters_per_s"] / report["reference_seed_iters_per_s"]
    assert report["speedup_vs_reference"] == pytest.approx(ratio)
    mlp = report["mlp"]  # the MLP workload: the engine against the NumPy network of the same run
    assert all(mlp[k] > 0 for k in keys)
    assert mlp["speedup_vs_reference"] == pytest.approx(mlp["engine_seed_iters_per_s"] / mlp["reference_seed_iters_per_s"])
