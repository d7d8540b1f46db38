"""The fastk-jax console command, run for real in a subprocess."""

import json

import numpy as np
import pytest
from conftest import EXE, base, run_cli, toml  # noqa: F401

from fastk_jax.analysis import results
from fastk_jax.data import write_idx


def test_run_writes_results_config_and_figure(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(toml(base()))
    out = tmp_path / "out"
    proc = run_cli("run", cfg, "--seeds", 4, "--out", out)
    assert proc.returncode == 0, proc.stderr
    for name in ("results.npz", "config.json", "summary.json", "figure.png", "figure.pdf"):
        assert (out / name).stat().st_size > 0
    with np.load(out / "results.npz", allow_pickle=False) as f:
        assert f["error_mean"].shape[0] == 2
    res = results.load(out)
    assert list(res.labels) == ["k=3", "adaptive 2->8"] and res.seeds == 4
    assert np.all(np.isfinite(res.bands["error"].mean))
    # at t = 0 the master has broadcast w_0 to all 10 workers; then n per completed update
    fetches = res.bands["fetches"]
    assert np.all(fetches.mean[:, 0] == 10)
    np.testing.assert_allclose(fetches.mean, 10 * (res.bands["updates"].mean + 1))
    assert res.time_per_iteration.mean.shape == (2,) and np.all(res.staleness[:, 1:] == 0)  # k_sync: always fresh
    config = json.loads((out / "config.json").read_text())
    assert config["run"]["seeds"] == 4 and config["run"]["optimizer"] == "sgd"  # resolved defaults
    assert config["run"]["block"] is None and json.loads((out / "summary.json").read_text())["block"] == 64  # CPU's
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no staging left


def _with(path, value):
    doc = base()
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return toml(doc)


_DELETE = object()


def _mnist_files(tmp_path, images=4, labels=4):
    write_idx(tmp_path / "img.idx", np.zeros((images, 2, 2), np.uint8), compress=False)
    write_idx(tmp_path / "lab.idx", np.arange(labels, dtype=np.uint8) % 10, compress=False)
    return str(tmp_path / "img.idx"), str(tmp_path / "lab.idx")


BAD = {
    "missing file": (None, "not found"),
    "empty file": ("", "empty"),
    "malformed toml": ("name = [unclosed\n", "not valid TOML"),
    "k above n": (_with(["policy", 0, "k"], 11), "policy[0].k"),
    "k below 1": (_with(["policy", 0, "k"], 0), "policy[0].k"),
    "eta zero": (_with(["run", "eta"], 0.0), "run.eta"),
    "eta nan": (_with(["run", "eta"], float("nan")), "run.eta"),
    "unknown law": (_with(["delays", "law"], "gamma"), "delays.law"),
    "infinite mean": (toml({**base(), "delays": {"law": "pareto", "shape": 0.8, "scale": 1.0}}), "infinite mean"),
    "missing run": (_with(["run"], _DELETE), "run"),
    "unknown field": (_with(["run", "etta"], 1.0), "run.etta"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_is_one_line_exit_2_nothing_written(tmp_path, case):
    text, needle = BAD[case]
    cfg = tmp_path / "c.toml"
    if text is not None:
        cfg.write_text(text)
    out = tmp_path / "out"
    proc = run_cli("run", cfg, "--out", out)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert needle in proc.stderr
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == (["c.toml"] if text is not None else [])


@pytest.mark.parametrize(
    "case,needle",
    [("seeds0", "seeds"), ("empty images", "empty"), ("labels mismatch", "do not match"), ("k_max", "k_max")],
)
def test_bad_arguments_and_data(tmp_path, case, needle):
    doc = base()
    args = []
    if case == "seeds0":
        args = ["--seeds", 0]
    elif case == "k_max":
        doc["policy"][1]["k_max"] = 12
    else:
        images, labels = _mnist_files(tmp_path, labels=3 if case == "labels mismatch" else 4)
        if case == "empty images":
            (tmp_path / "img.idx").write_bytes(b"")
        doc["problem"] = {"kind": "logistic", "n_workers": 2, "dataset": "mnist", "images": images, "labels": labels}
        doc["policy"] = [{"kind": "fixed", "k": 1}]
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml(doc))
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = run_cli("run", cfg, "--out", tmp_path / "out", *args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr and needle in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_divergence_is_reported(tmp_path):
    doc = base()
    doc["run"]["eta"] = [0.001, 1.0]  # the second is far above the stable limit
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml(doc))
    proc = run_cli("run", cfg, "--out", tmp_path / "out", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "above the stable limit" in proc.stderr
    assert "runs diverged" in proc.stderr

    def strict(constant):
        raise AssertionError(f"summary.json holds {constant}, which is not JSON")

    summary = json.loads((tmp_path / "out" / "summary.json").read_text(), parse_constant=strict)
    configs = {c["label"]: c for c in summary["configurations"]}
    assert configs["k=3, eta=0.001"]["diverged"] == 0 and configs["k=3, eta=1"]["diverged"] == 3
    assert configs["k=3, eta=1"]["final_error"] is None  # no run left to average
    assert (tmp_path / "out" / "figure.png").stat().st_size > 0  # drawn although one curve is empty


def _set(doc, path, value):
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


# in process (cli.main), which is much faster than a subprocess per case
BAD_IN_PROCESS = {
    "rate a list": (["delays", "rate"], [1.0, 2.0], "delays.rate"),
    "rate a string": (["delays", "rate"], "1", "delays.rate"),
    "rate a bool": (["delays", "rate"], True, "delays.rate"),
    "slowdown a bool": (["delays", "slowdown"], True, "delays.slowdown"),
    "mean delay below float32": (["delays", "rate"], 1e39, "mean delay"),
    "mean delay above float32": (["delays"], {"law": "lognormal", "mu": 88.0, "sigma": 1.0}, "mean delay"),
    "k beyond int32": (["policy", 0, "k"], 2**40, "policy[0].k"),
    "seed beyond uint32": (["run", "seed"], 2**40, "run.seed"),
    "negative thresh": (["policy", 1, "thresh"], -1, "policy[1].thresh"),
    "huge step": (["policy", 1, "step"], 2**31 - 1, None),  # valid: Algorithm 1 just never switches
    "memory": (["run", "seeds"], 2**31 - 1, "GiB"),
    "grid points": (["run", "grid_points"], 2**30, "GiB"),
    "empty label": (["policy", 0, "label"], " ", "policy[0].label"),
    "repeated eta": (["run", "eta"], [0.001, 0.001], "run.eta"),
    "huge data": (["problem", "m"], 2**30, "problem.m"),
    "staleness limit off ringmaster": (["policy", 0, "staleness_limit"], 3, "only the ringmaster scheme"),
    "staleness limit zero": (["policy", 0], {"kind": "fixed", "k": 1, "scheme": "ringmaster", "staleness_limit": 0},
                             "policy[0].staleness_limit"),
    "clip zero": (["run", "clip"], 0.0, "run.clip"),
    "unknown scheme": (["run", "scheme"], "ring", "run.scheme"),
}


@pytest.mark.parametrize("case", sorted(BAD_IN_PROCESS))
def test_bad_values_in_process(tmp_path, capsys, case):
    from fastk_jax import cli

    path, value, needle = BAD_IN_PROCESS[case]
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml(_set(base(), path, value)))
    out = tmp_path / "out"
    code = cli.main(["run", str(cfg), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    if needle is None:
        assert code == 0, err
        return
    assert code == 2, err
    assert err.count("\n") == 1 and needle in err, err
    assert not out.exists()


def test_out_that_is_a_file_fails_before_running(tmp_path, capsys):
    from fastk_jax import cli

    cfg = tmp_path / "c.toml"
    cfg.write_text(toml(base()))
    (tmp_path / "taken").write_text("x")
    assert cli.main(["run", str(cfg), "--out", str(tmp_path / "taken"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a folder" in err


@pytest.mark.parametrize(
    ("value", "needle"), [("fig3,gpu", "unknown workload 'gpu'"), ("async", "must include fig3")]
)
def test_bench_workloads_bad_names_fail_in_one_line(capsys, value, needle):
    from fastk_jax import cli

    assert cli.main(["bench", "--quick", "--workloads", value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--workloads" in err and needle in err, err


def test_bench_workloads_choose_the_report_parts():
    from fastk_jax import cli

    assert cli._bench_workloads(None) == {}
    assert cli._bench_workloads("fig3") == {"logistic": False, "mlp": False, "asynchronous": False}
    assert cli._bench_workloads("async, fig3") == {"logistic": False, "mlp": False, "asynchronous": True}
