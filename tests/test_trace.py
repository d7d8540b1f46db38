"""Trace-driven delays: the CSV reader, a study's [delays] law = "trace", and the CLI."""

import hashlib
import json

import numpy as np
import pytest

from fastk_jax import cli, data, study
from fastk_jax.errors import ConfigError, DataError

CSV = """# measured seconds per iteration, one column per worker
w0, w1, w2
1.0, 0.5, 2.0
2.5, 3.0, 2.5
,3.0,
"""


def write(tmp_path, text, name="times.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_read_trace_header_comments_and_ragged_columns(tmp_path):
    trace = data.read_trace(write(tmp_path, CSV))
    assert trace.header == ("w0", "w1", "w2")
    np.testing.assert_array_equal(trace.counts, [2, 3, 2])
    np.testing.assert_array_equal(trace.table[:2], [[1.0, 0.5, 2.0], [2.5, 3.0, 2.5]])
    assert trace.table[2, 1] == 3.0 and trace.table[2, 0] in (1.0, 2.5)  # padding: a valid entry
    assert trace.sha256 == hashlib.sha256(CSV.encode()).hexdigest()
    single = data.read_trace(write(tmp_path, "0.5\n1.5\n\n2\n", "pool.csv"))
    assert single.header is None and single.table.shape == (3, 1)


@pytest.mark.parametrize(
    "text,needle",
    [
        (None, "no such file"),
        ("", "empty file"),
        ("# only a comment\n\n", "empty file"),
        ("a,b\n", "has no times"),
        ("1.0,2.0\n3.0\n", "line 2: 1 cells, but the file has 2 columns"),
        ("1.0,2.0\n3.0,fast\n", "line 2, column 2: 'fast' is not a number"),
        ("1.0,-2.0\n", "finite and > 0"),
        ("1.0,0\n", "finite and > 0"),
        ("1.0,nan\n", "finite and > 0"),
        ("1.0,inf\n", "finite and > 0"),
        ("1.0,\n2.0,\n", "column 2 has no times"),
        (b"1.0\n\xff\n", "not UTF-8"),
    ],
)
def test_bad_trace_files_name_the_file_and_the_problem(tmp_path, text, needle):
    path = tmp_path / "times.csv" if text is None else write(tmp_path, text)
    with pytest.raises(DataError) as error:
        data.read_trace(path)
    message = str(error.value)
    assert "times.csv" in message and needle in message and "\n" not in message


def doc(file="times.csv", n=3, **delays):
    return {
        "name": "trace",
        "problem": {"kind": "linear", "n_workers": n, "m": 30, "d": 2},
        "delays": {"law": "trace", "file": file, **delays},
        "run": {"eta": 0.001, "time_horizon": 20.0, "seeds": 2, "chunk": 50},
        "policy": [{"kind": "fixed", "k": 2}],
    }


def test_resolved_study_keeps_the_path_hash_and_statistics_not_the_times(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, CSV)
    d = study.resolve(doc(slowdown=[1.0, 1.0, 2.0])).resolved["delays"][0]
    assert d["file"] == "times.csv" and d["sha256"] == hashlib.sha256(CSV.encode()).hexdigest()
    assert d["samples"] == [2, 3, 2] and d["columns"] == 3
    np.testing.assert_allclose(d["worker_means"], [1.75, 6.5 / 3, 2.25])
    assert d["mean"] == pytest.approx((1.75 + 6.5 / 3 + 2.25) / 3)
    assert len(json.dumps(d)) < 500  # no table
    law = study.delay_law(d, batch_size=1)
    np.testing.assert_array_equal(np.asarray(law.counts), [2, 3, 2])
    write(tmp_path, CSV.replace("2.5, 3.0", "2.5, 4.0"))
    with pytest.raises(DataError, match="changed since the study was resolved"):
        study.delay_law(d, batch_size=1)


@pytest.mark.parametrize(
    "fields,field,needle",
    [
        ({"n": 4}, "delays.file", "has 3 columns; a trace needs n_workers=4"),
        ({"shift_per_row": 0.1}, "delays.shift_per_row", "no work-dependent shift"),
        ({"rate": 1.0}, "delays.rate", ""),
        ({"slowdown": [1.0, 2.0]}, "delays.slowdown", "n_workers=3"),
    ],
)
def test_bad_trace_tables_name_the_field(tmp_path, monkeypatch, fields, field, needle):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, CSV)
    with pytest.raises(ConfigError) as error:
        study.resolve(doc(**fields))
    assert error.value.field == field and needle in error.value.problem


def test_shared_pool_serves_any_number_of_workers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "t\n1.0\n3.0\n")
    d = study.resolve(doc(n=5)).resolved["delays"][0]
    assert d["columns"] == 1 and d["mean"] == 2.0
    write(tmp_path, "1e-35\n1.0\n")  # float32 clocks cannot resolve it
    with pytest.raises(ConfigError, match="rescale the times"):
        study.resolve(doc(n=5))


def toml(d: dict) -> str:
    def value(v):
        return json.dumps(v)  # strings, numbers and lists of them are TOML too

    lines = [f"name = {value(d['name'])}"]
    for key in ("problem", "delays", "run"):
        lines += [f"[{key}]"] + [f"{k} = {value(v)}" for k, v in d[key].items()]
    for p in d["policy"]:
        lines += ["[[policy]]"] + [f"{k} = {value(v)}" for k, v in p.items()]
    return "\n".join(lines) + "\n"


def test_a_trace_study_runs_through_the_cli_and_a_bad_file_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, CSV)
    write(tmp_path, toml(doc()), "study.toml")
    assert cli.main(["run", "study.toml", "--out", "out", "--quiet"]) == 0
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["delays"][0]["law"] == "trace" and config["delays"][0]["file"] == "times.csv"
    capsys.readouterr()
    write(tmp_path, "w0,w1,w2\n1.0,oops,2.0\n")
    assert cli.main(["run", "study.toml", "--out", "bad", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "times.csv" in err and "not a number" in err
    assert not (tmp_path / "bad").exists()
