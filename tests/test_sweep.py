"""Sweeps: grid expansion, checks, one run per distinct configuration, the tidy table."""

from __future__ import annotations

import copy
import csv

import numpy as np
import pytest

from fastk_jax import cli
from fastk_jax.analysis import metrics
from fastk_jax.errors import ConfigError
from fastk_jax.runner import execute, sweep

BASE = {
    "name": "tiny-sweep",
    "problem": {"kind": "linear", "n_workers": 6, "m": 60, "d": 5},
    "delays": {"law": "exponential", "rate": 1.0},
    "run": {"eta": 0.002, "time_horizon": 60.0, "seeds": 3, "chunk": 100, "grid_points": 50},
    "policy": [
        {"kind": "fixed", "k": 6},
        {"kind": "adaptive", "label": "adaptive", "k_min": 2, "k_max": 6, "step": 2, "thresh": 5, "burnin": 10},
    ],
    "sweep": {"eps": 5.0, "deadline": 30.0, "axes": {"policy[1].thresh": [2, 8], "run.eta": [0.002, 0.004]}},
}


def raw(**sweep_fields) -> dict:
    out = copy.deepcopy(BASE)
    out["sweep"].update(sweep_fields)
    return out


@pytest.mark.parametrize(
    "fields, needle",
    [
        ({"axes": {"run.time_horizon": [10.0, 20.0]}}, "run.time_horizon fixes the grids"),
        ({"axes": {"policy[5].k": [1, 2]}}, "the study has 2 [[policy]] tables"),
        ({"axes": {"nonsense": [1]}}, "must name a field"),
        ({"axes": {"run.eta": 0.1}}, "must be a non-empty list"),
        ({"axes": {"run.eta": [0.1, 0.1]}}, "values must be distinct"),
        ({"axes": {}}, "needs at least one field"),
        ({"plot": {"x": "run.seed"}}, "sweep.plot.x"),
        ({"plot": {"metric": "speed"}}, "sweep.plot.metric"),
        ({"eps": -1.0}, "sweep.eps"),
        ({"colour": 1}, "unknown field"),
    ],
)
def test_bad_sweeps_are_refused_naming_the_field(fields, needle):
    with pytest.raises(ConfigError, match="sweep") as e:
        sweep.points(sweep.resolve(raw(**fields)))
    assert needle in str(e.value)


def test_a_bad_grid_point_names_its_values():
    with pytest.raises(ConfigError) as e:
        sweep.points(sweep.resolve(raw(axes={"policy[0].k": [3, 60]})))
    assert "policy[0].k" in str(e.value) and "at sweep point policy[0].k=60" in str(e.value)


def test_deadline_after_the_horizon_is_refused():
    with pytest.raises(ConfigError, match="sweep.deadline"):
        sweep.points(sweep.resolve(raw(deadline=100.0)))


def test_grid_is_the_product_in_axis_order_and_every_policy_may_be_set():
    pts = sweep.points(sweep.resolve(raw(axes={"policy[1].thresh": [2, 8], "run.eta": [0.002, 0.004, 0.006]})))
    assert [tuple(p.values.values()) for p in pts] == [(t, e) for t in (2, 8) for e in (0.002, 0.004, 0.006)]
    assert [p.study.policies[1].thresh for p in pts] == [2, 2, 2, 8, 8, 8]
    assert [p.study.resolved["run"]["eta"] for p in pts][:3] == [[0.002], [0.004], [0.006]]
    two = raw(axes={"policy.thresh": [3, 9]})
    two["policy"][0] = {**two["policy"][1], "label": "adaptive b"}
    every = sweep.points(sweep.resolve(two))
    assert [[q.thresh for q in p.study.policies] for p in every] == [[3, 3], [9, 9]]


@pytest.fixture(scope="module")
def ran():
    s = sweep.resolve(raw())
    return s, *sweep.run_sweep(s)


def test_the_table_has_a_row_per_point_and_configuration_and_shared_ones_run_once(ran):
    s, rows, res, timing = ran
    # 4 points x 2 policies = 8 rows; k=6 depends on eta only: 2 + 4 distinct configurations
    assert len(rows) == 8 and len(res.labels) == 6 and timing["batches"] == 1
    columns = sweep.table(s, rows, res)
    assert list(columns)[:3] == ["policy[1].thresh", "run.eta", "label"]
    fixed = columns["label"] == "k=6"
    assert np.array_equal(columns["final_error"][fixed][:2], columns["final_error"][fixed][2:])  # same runs


def test_rows_equal_the_points_run_as_studies(ran):
    """A sweep row is the study at that point: the same numbers as running the point alone
    (same seeds; the configurations beside it do not change a run)."""
    s, rows, res, _ = ran
    columns = sweep.table(s, rows, res)
    point = sweep.points(s)[3]  # thresh 8, eta 0.004
    labels, sim = execute.run_study(point.study)
    alone = execute.from_simulation(labels, sim, 6, 1.0, 3)
    r = metrics.reach(alone, s.eps)
    mine = np.flatnonzero((columns["policy[1].thresh"] == 8) & (columns["run.eta"] == 0.004))
    np.testing.assert_allclose(columns["final_error"][mine], alone.bands["error"].mean[:, -1], rtol=1e-5)
    np.testing.assert_allclose(columns["time_to_eps"][mine], r.time, rtol=1e-6)
    np.testing.assert_allclose(columns["downloads_to_eps"][mine], r.downloads, rtol=1e-6)
    at = metrics.at_time(alone, s.deadline)
    assert at.time <= s.deadline
    np.testing.assert_allclose(columns["error_at_deadline"][mine], at.mean, rtol=1e-5)


def test_problem_axes_run_in_batches_on_one_grid(ran):
    """Points with different data are batches run in turn (here of one compiled shape), on one
    time and iteration grid; their error levels differ, so reach_* is left out."""
    s = sweep.resolve(raw(axes={"problem.data_seed": [0, 1]}, plot={}))
    rows, res, timing = sweep.run_sweep(s)
    assert timing["batches"] == 2 and len(rows) == 4 and len(res.labels) == 4
    assert res.bands["error"].mean.shape == (4, 50) and "reach_time" not in res.bands
    assert res.bands["error"].mean[0, 0] != res.bands["error"].mean[2, 0]  # other data, other initial error


def test_cli_writes_csv_figure_and_a_reloadable_table(tmp_path, capsys, ran):  # ran: compiled already
    path = tmp_path / "s.toml"
    path.write_text(
        """
name = "tiny"
[problem]
kind = "linear"
n_workers = 6
m = 60
d = 5
[delays]
law = "exponential"
rate = 1.0
[run]
eta = 0.002
time_horizon = 60.0
seeds = 3
chunk = 100
grid_points = 50
[[policy]]
kind = "fixed"
k = 6
[[policy]]
kind = "adaptive"
label = "adaptive"
k_min = 2
k_max = 6
step = 2
thresh = 5
burnin = 10
[sweep]
eps = 5.0
deadline = 30.0
[sweep.axes]
"policy[1].thresh" = [2, 8]
"run.eta" = [0.002, 0.004]
[sweep.plot]
x = "policy[1].thresh"
y = "run.eta"
"""
    )
    out = tmp_path / "out"
    assert cli.main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    assert {"sweep.csv", "results.npz", "summary.json", "config.json", "figure.png", "figure.pdf"} <= {
        p.name for p in out.iterdir()
    }
    with open(out / "sweep.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 8 and table[0]["policy[1].thresh"] == "2" and table[0]["label"] == "k=6"
    loaded = sweep.load_table(out)
    assert loaded["label"].tolist() == [r["label"] for r in table]
    assert [float(v) if v else np.nan for v in (r["final_error"] for r in table)] == pytest.approx(
        loaded["final_error"].tolist(), rel=1e-7, nan_ok=True
    )
    bad = tmp_path / "bad.toml"
    bad.write_text(path.read_text().replace('"run.eta" = [0.002, 0.004]', '"run.seeds" = [1, 2]'))
    assert cli.main(["run", str(bad), "--out", str(tmp_path / "bad"), "--quiet"]) == 2
    assert "run.seeds fixes the grids" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_to_csv_writes_nan_as_empty_and_numbers_to_8_digits():
    text = sweep.to_csv({"a": np.array([1, 2]), "x": np.array([np.nan, 1 / 3]), "label": np.array(["p, q", "r"])})
    assert text.splitlines() == ["a,x,label", '1,,"p, q"', "2,0.33333333,r"]
