"""The Python API a notebook uses: studies built in Python or read from TOML are the same
objects and give the same bits; Results carry their configurations' fields, per-run curves,
medians and paired differences; the study as run round-trips through study.toml."""

from __future__ import annotations

import dataclasses
import datetime

import numpy as np
import pytest

import fastk_jax as fk
from fastk_jax.analysis import results
from fastk_jax.core.curves import band
from fastk_jax.errors import ConfigError
from fastk_jax.io import files
from fastk_jax.study import tomllib
from fastk_jax.study.toml_writer import dumps


def fig3_in_python(**run) -> fk.Study:
    """The adaptive paper's Fig. 3 study (studies/adaptive-fig3.toml) written in Python."""
    return fk.Study(
        name="adaptive-fig3",
        description="Adaptive paper Fig. 3: error against wall-clock time, fixed k vs Algorithm 1 (linear regression, n=50)",
        problem=fk.Linear(n_workers=50, m=2000, d=100, data_seed=0),
        delays=fk.delays("exponential", rate=1.0),
        run=fk.Run(eta=0.0005, time_horizon=8000.0, seeds=20, chunk=1000, **run),
        policies=[fk.Fixed(k=k) for k in (10, 20, 30, 40)]
        + [fk.Adaptive(k_min=10, k_max=40, step=10, thresh=10, burnin=200)],
        report=fk.Report(levels=(1000.0, 10.0), reference="k=40"),
        quick={"seeds": 2, "time_horizon": 2000.0, "block": 8},
    )


def tiny(**run) -> fk.Study:
    return fk.Study(
        name="tiny",
        problem=fk.Linear(n_workers=10, m=100, d=5),
        delays=fk.delays("exponential", rate=1.0),
        run=fk.Run(**{"eta": 0.001, "time_horizon": 20.0, "seeds": 4, "chunk": 100, **run}),
        policies=[fk.Fixed(k=3), fk.Fixed(k=8), fk.Adaptive(k_min=2, k_max=8, step=2, thresh=3, burnin=10)],
    )


def test_the_fig3_study_built_in_python_is_the_toml_study_and_runs_to_the_same_bits():
    from_file = fk.Study.from_toml("adaptive-fig3")
    built = fig3_in_python()
    assert built.resolved == from_file.resolved  # the same study, every default filled in
    a = fk.run(from_file, quick=True)
    b = fk.run(built, quick=True)
    assert files.content_hash(results.to_arrays(a)) == files.content_hash(results.to_arrays(b))


def test_results_carry_each_configurations_fields():
    r = fk.run(tiny())
    assert [c["label"] for c in r.configurations] == ["k=3", "k=8", "adaptive 2->8"]
    assert r.configurations[1] == {
        "label": "k=8", "policy": "fixed", "k": 8, "scheme": "k_sync", "gradients": "shard", "batch_size": 1,
        "lr": "fixed", "lr_c": 1.0, "staleness_limit": None, "clip": None, "eta": 0.001, "delays": "exponential",
        "law": "exponential",
    }
    assert r.index(policy="fixed") == [0, 1] and r.index(policy="adaptive", k_min=2) == [2]


def test_the_study_as_run_round_trips_through_toml():
    s = tiny(seeds=3).replace(policies=(fk.Fixed(k=2, scheme="k_async"), fk.Doubling(k0=1, every=5.0)))
    text = s.to_toml()
    again = fk.Study.from_table(tomllib.loads(text))
    assert again.resolved == s.resolved
    assert fk.Study.from_table(tomllib.loads(again.to_toml())).to_toml() == again.to_toml()  # a fixed point
    assert [again.label_of(p) for p in again.policies] == ["k=2, k_async", "doubling 1->10 every 5"]


def test_the_toml_writer_writes_what_tomllib_reads():
    doc = {
        "name": 'quote " backslash \\ tab \t del \x7f e\u0301 \U0001f600',
        "n": 3, "x": -1.5e-300, "big": 2**62, "flag": True, "inf": float("inf"),
        "t": {"list": [1, 2.5, "a"], "inline": {"slow": 10.0, "enter": 0.1}, "odd key": 1},
        "arr": [{"k": 1}, {"k": 2, "label": "two"}],
        "when": datetime.datetime(2026, 12, 3, 12, 0, 5, tzinfo=datetime.timezone.utc), "day": datetime.date(2026, 1, 2),
    }
    assert tomllib.loads(dumps(doc)) == doc


def test_edits_are_checked_like_a_file_and_name_the_field():
    s = tiny()
    with pytest.raises(ConfigError) as e:
        s.replace(policies=(fk.Fixed(k=3), fk.Fixed(k=60)))
    assert e.value.field == "policy[1].k" and "n_workers=10" in e.value.problem
    with pytest.raises(ConfigError, match="run.eta"):
        s.replace(eta=-1.0)
    with pytest.raises(ConfigError, match="delays.slowdown"):
        s.replace(delays=fk.delays("exponential", rate=1.0, slowdown=[1.0, 2.0]))
    slow = s.replace(delays=fk.delays("exponential", rate=1.0, slowdown=[1.0] * 9 + [4.0]))  # a plain list
    assert slow.resolved["delays"][0]["slowdown"][-1] == 4.0
    assert s.replace(seeds=7).run.seeds == 7 and s.run.seeds == 4  # frozen: a copy


@pytest.mark.parametrize("name", ["", " ", "/abs/dir", "../../x", "a/b", "..", "a\\b"])
def test_a_study_name_is_a_name_not_a_path(name):
    with pytest.raises(ConfigError) as e:
        tiny().replace(name=name)
    assert e.value.field == "config.name"


def test_step_sizes_equal_in_float32_or_in_their_labels_are_refused():
    with pytest.raises(ConfigError, match="float32"):
        tiny(eta=(0.001, 0.001 + 1e-12))
    with pytest.raises(ConfigError, match="6 digits"):
        tiny(eta=(0.001, 0.0010000001))
    assert tiny(eta=(0.001, 0.002)).run.etas == (0.001, 0.002)


def test_kept_runs_give_the_bands_back_and_medians_and_paired_differences():
    r = fk.run(tiny(seeds=6), keep_runs=True)
    err = r.runs["error"]  # (C, S, G), NaN where a run is not counted
    assert err.shape == (3, 6, r.time_grid.size)
    counted = ~np.isnan(err)
    np.testing.assert_array_equal(counted.sum(axis=1), r.bands["error"].runs)
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(np.nanmean(err, axis=1), r.bands["error"].mean, rtol=1e-5)
    np.testing.assert_array_equal(r.median("error"), np.nanmedian(err, axis=1))
    q = r.quantiles("error", [0.25, 0.75])
    assert q.shape == (2, 3, r.time_grid.size) and np.all(q[0][counted.any(axis=1)] <= q[1][counted.any(axis=1)])
    # paired differences on the same seeds, against a direct computation
    d = r.paired_difference("k=3", "k=8")
    direct = err[0] - err[1]
    ok = ~np.isnan(direct)
    expected = band(np.nan_to_num(direct), ok, axis=0)
    np.testing.assert_allclose(d.mean, np.asarray(expected.mean), rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(d.half_width, np.asarray(expected.half_width), rtol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(d.runs, ok.sum(axis=0))
    one = ok.sum(axis=0) > 1
    assert np.allclose(d.mean[one], np.nanmean(direct, axis=0)[one], rtol=1e-5)
    positive = np.where(err > 0, err, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.testing.assert_allclose(
            r.geometric_mean("error"), np.exp(np.nanmean(np.log(positive), axis=1)), rtol=1e-6, equal_nan=True
        )


def test_runs_are_kept_bit_for_bit_like_the_bands_and_saved():
    plain = fk.run(tiny())
    kept = fk.run(tiny(), keep_runs=True)
    for name in plain.bands:
        for part in ("mean", "half_width", "runs"):
            np.testing.assert_array_equal(getattr(plain.bands[name], part), getattr(kept.bands[name], part))
    arrays = results.to_arrays(kept)
    assert "runs_error" in arrays and "runs_error" not in results.to_arrays(plain)


def test_without_kept_runs_medians_say_how_to_get_them():
    with pytest.raises(fk.FastkError, match="keep_runs=True"):
        fk.run(tiny()).median()


def test_results_round_trip_through_a_folder(tmp_path):
    r = fk.run(tiny(), keep_runs=True)
    files.save(tmp_path / "out", results.to_arrays(r), {"name": "tiny"}, {"name": "tiny"})
    back = fk.load(tmp_path / "out")
    assert back.configurations == r.configurations
    for name in r.runs:
        np.testing.assert_array_equal(back.runs[name], r.runs[name])


def test_to_dataframe_round_trips_the_curves():
    pd = pytest.importorskip("pandas")
    r = fk.run(tiny())
    df = r.to_dataframe()
    assert isinstance(df, pd.DataFrame)
    assert {"label", "policy", "k", "scheme", "eta", "field", "grid", "x", "mean", "half_width", "runs"} <= set(df)
    for c, conf in enumerate(r.configurations):
        for name, b in r.bands.items():
            rows = df[(df["label"] == conf["label"]) & (df["field"] == name)]
            np.testing.assert_array_equal(rows["x"].to_numpy(), r.grid(name))
            np.testing.assert_array_equal(rows["mean"].to_numpy(), b.mean[c])
            np.testing.assert_array_equal(rows["half_width"].to_numpy(), b.half_width[c])
            np.testing.assert_array_equal(rows["runs"].to_numpy(), b.runs[c])
    assert len(df) == len(r.configurations) * sum(r.grid(name).size for name in r.bands)


def test_to_xarray_has_the_bands_on_their_grids():
    pytest.importorskip("xarray")
    r = fk.run(tiny())
    ds = r.to_xarray()
    np.testing.assert_array_equal(ds["error_mean"].values, r.bands["error"].mean)
    np.testing.assert_array_equal(ds["time"].values, r.time_grid)
    assert list(ds["label"].values) == [c["label"] for c in r.configurations]


def test_plot_draws_means_or_medians_on_given_axes():
    import matplotlib.pyplot as plt

    r = fk.run(tiny(), keep_runs=True)
    fig, ax = plt.subplots()
    assert r.plot(ax=ax) is ax and len(ax.get_lines()) == 3
    fig2, ax2 = plt.subplots()
    r.plot(ax=ax2, statistic="median")
    np.testing.assert_array_equal(ax2.get_lines()[0].get_ydata(), np.where(r.median()[0] > 0, r.median()[0], np.nan))
    plt.close(fig), plt.close(fig2)


def test_progress_meters_report_to_the_end(capsys):
    seen = []
    fk.run(tiny(), progress=seen.append)
    assert seen and seen[-1].fraction == 1.0
    fk.run(tiny(), progress="text")
    assert "100.0%" in capsys.readouterr().err
    pytest.importorskip("tqdm")
    fk.run(tiny(), progress="tqdm")
    with pytest.raises(ConfigError, match="progress"):
        fk.run(tiny(), progress="loud")


def test_a_study_mixing_schemes_runs_each_group_only_as_long_as_it_needs():
    from fastk_jax.runner import execute
    from fastk_jax.study import prepare

    s = tiny().replace(policies=(fk.Fixed(k=2), fk.Fixed(k=1, scheme="k_batch_async")))
    prepared = prepare(s)
    needed = [execute.iterations_needed([c], s.run) for c in prepared.configurations]
    sim, _ = execute.run_all(prepared.problem, prepared.configurations, s.run)
    made = sim.summary.iterations
    # the K-sync group stops once its own runs pass the horizon, not at the async group's count
    assert needed[0] < needed[1] and made[0] < needed[1] <= made[1]
    assert np.all(sim.summary.final_time > s.run.time_horizon)  # both to the horizon


def test_dataclasses_replace_checks_too():
    with pytest.raises(ConfigError, match="run.time_horizon"):
        dataclasses.replace(tiny(), run=dataclasses.replace(tiny().run, time_horizon=0.0))


def test_an_output_folders_study_toml_runs_again_to_the_same_bits(tmp_path):
    """``fastk-jax run OUT/study.toml`` (here with --seeds and --quick applied the first time)
    re-runs the study as it ran: the same results.npz arrays, bit for bit, and the same
    resolved study; run into OUT itself it is recognised as complete and reused."""
    from conftest import base, run_cli, toml

    doc = base()
    doc["quick"] = {"time_horizon": 10.0}
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(toml(doc))
    first, again = tmp_path / "first", tmp_path / "again"
    done = run_cli("run", cfg, "--seeds", 2, "--quick", "--out", first, "--quiet")
    assert done.returncode == 0, done.stderr
    rerun = run_cli("run", first / "study.toml", "--out", again, "--quiet")
    assert rerun.returncode == 0, rerun.stderr
    a, manifest_a = files.read_arrays(first)
    b, manifest_b = files.read_arrays(again)
    assert a.keys() == b.keys() and files.content_hash(a) == files.content_hash(b)
    assert manifest_a["config"] == manifest_b["config"] and manifest_a["config"]["run"]["seeds"] == 2
    reuse = run_cli("run", first / "study.toml", "--out", first)
    assert reuse.returncode == 0 and "complete; reusing" in reuse.stderr


def test_the_peers_methods_are_scheme_settings_of_a_policy():
    """Ringmaster's R defaults to n and joins the label; Rennala and clipping are settings like
    the others; R belongs to the ringmaster scheme alone."""
    def study(*pols):
        return fk.Study(
            name="peers", problem=fk.Linear(n_workers=6, m=60, d=3), delays=fk.delays("exponential", rate=1.0),
            run=fk.Run(eta=0.01, time_horizon=5.0, seeds=2), policies=list(pols),
        )

    s = study(fk.Fixed(k=1, scheme="ringmaster"), fk.Fixed(k=1, scheme="ringmaster", staleness_limit=2),
              fk.Fixed(k=2, scheme="rennala", clip=1.5))
    assert [s.label_of(p) for p in s.policies] == ["k=1, ringmaster R=6", "k=1, ringmaster R=2", "k=2, rennala, clip=1.5"]
    assert [s.scheme_of(p)["staleness_limit"] for p in s.policies] == [6, 2, None]
    configs = fk.study.build.configurations(s, fk.study.build.build_problem(s.problem))
    assert [float(c.config.staleness_limit) for c in configs] == [6.0, 2.0, np.inf]
    assert [float(c.config.clip) for c in configs] == [np.inf, np.inf, 1.5]
    assert fk.Study.from_table(tomllib.loads(s.to_toml())).resolved["policies"] == s.resolved["policies"]
    with pytest.raises(ConfigError, match="only the ringmaster scheme"):
        study(fk.Fixed(k=1, staleness_limit=2))
    with pytest.raises(ConfigError, match="clip"):
        study(fk.Fixed(k=1, clip=-1.0))
