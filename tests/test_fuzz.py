"""Bad input, fuzzed with hypothesis: random and malformed study files and MNIST IDX files go
to the command (``cli.main`` in process, and a subprocess or two) and to the API.

Every example ends either in a valid run (exit 0, the five output files) or in one line on
stderr, ``fastk-jax: error: ...`` naming the problem, exit status 2, no traceback, and nothing
written: no output folder and no staging folder beside it. Through the API, ``load_study``,
``prepare`` and the engine's first estimate raise ``ConfigError`` or ``DataError``, never
another exception.

Speed: studies start from one tiny linear study and are mutated; most mutations fail in
validation, in milliseconds. A mutated study that is valid runs through the command only when
it compiles to the same program as the base study (same shapes and static settings), so the
engine compiles once; the others stop after the API checks. Examples are derandomized, so CI
sees the same ones every time.
"""

from __future__ import annotations

import copy
import datetime
import gzip
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fastk_jax import cli, data, engine, study
from fastk_jax.errors import ConfigError, DataError, FastkError
from fastk_jax.runner import sweep
from fastk_jax.study.fields import tomllib  # tomli before Python 3.11

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
OUTPUTS = {"results.npz", "config.json", "summary.json", "study.toml", "figure.png", "figure.pdf"}
PREFIX = "fastk-jax: error: "

# ---------------------------------------------------------------- writing TOML


def _string(s: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(k: str) -> str:
    return k if k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k) else _string(k)


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, (datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def dumps(doc: dict) -> str:
    """TOML text for ``doc``: top-level values first, then one [table] per dict, everything
    inside inline (arrays of tables as arrays of inline tables)."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines.append(f"[{_key(k)}]")
            lines += [f"{_key(kk)} = {_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the base study and its mutations

BASE = {
    "name": "fuzz",
    "problem": {"kind": "linear", "n_workers": 4, "m": 16, "d": 3},
    "delays": {"law": "exponential", "rate": 1.0},
    "run": {"eta": 0.001, "time_horizon": 5.0, "iterations": 32, "seeds": 2, "chunk": 16, "grid_points": 8},
    "policy": [
        {"kind": "fixed", "k": 2},
        {"kind": "adaptive", "k_min": 1, "k_max": 4, "thresh": 1, "burnin": 2},
    ],
}

FIELDS = [
    ("name",),
    ("description",),
    ("problem",),
    ("problem", "kind"),
    ("problem", "n_workers"),
    ("problem", "m"),
    ("problem", "d"),
    ("problem", "data_seed"),
    ("delays",),
    ("delays", "law"),
    ("delays", "rate"),
    ("delays", "label"),
    ("delays", "slowdown"),
    ("delays", "shift_per_row"),
    ("run",),
    *[
        ("run", f)
        for f in (
            "eta",
            "time_horizon",
            "iterations",
            "seeds",
            "seed",
            "grid_points",
            "chunk",
            "optimizer",
            "momentum",
            "divergence_factor",
            "scheme",
            "gradients",
            "batch_size",
            "lr",
            "lr_c",
            "staleness_limit",
            "clip",
            "staleness_bins",
            "block",
        )
    ],
    ("policy",),
    ("policy", 0),
    ("policy", 0, "kind"),
    ("policy", 0, "k"),
    ("policy", 0, "label"),
    ("policy", 0, "scheme"),
    *[("policy", 1, f) for f in ("kind", "k_min", "k_max", "thresh", "burnin", "step", "factor", "label")],
    ("quick",),
    ("quick", "seeds"),
    ("quick", "time_horizon"),
    ("figure",),
    ("figure", "kind"),
    ("figure", "iterations"),
    ("report",),
    ("report", "levels"),
    ("report", "reference"),
]

WORDS = [
    "",
    " ",
    "linear",
    "logistic",
    "exponential",
    "shifted_exponential",
    "pareto",
    "hyperexponential",
    "gamma",
    "fixed",
    "schedule",
    "adaptive",
    "bound_optimal",
    "k_async",
    "k_batch_async",
    "minibatch",
    "staleness",
    "adam",
    "mnist",
    "runtime_vs_k",
    "communication",
    "error_vs_iterations",
    "k=2",
    "a\nb",
    "\x00",
    "é\u2028",
]
INTS = [0, -1, 1, 2, 3, 4, 5, 2**31 - 1, 2**31, 2**32 + 2, 2**63 - 1, -(2**63), 10**30, 10**400]
FLOATS = [math.nan, math.inf, -math.inf, 0.0, -0.0, 5e-324, 1e-300, 1e-30, 0.5, 1.5, 1e30, 1e300]
KEYS = st.sampled_from(["etta", "k", "rate", "a\nb", "", " ", "x\x00", "é"]) | st.text(max_size=4)

scalars = st.one_of(
    st.sampled_from(INTS),
    st.integers(-3, 10),
    st.sampled_from(FLOATS),
    st.floats(-10, 10),
    st.booleans(),
    st.sampled_from(WORDS),
    st.text(max_size=5),
    st.sampled_from([datetime.date(1979, 5, 27), datetime.time(7, 32), datetime.datetime(1979, 5, 27, 7, 32)]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=6,
)

DELETE = object()

# complete delay tables, parameters from a pool of good and bad numbers
NUMBERS = st.sampled_from([0.0, 0.5, 1.0, 2.0, 1e-30, 1e30, 1e300, math.nan, math.inf, -1.0, 1, 10**400])
LAWS = st.one_of(
    st.fixed_dictionaries({"law": st.just("exponential"), "rate": NUMBERS}),
    st.fixed_dictionaries({"law": st.just("shifted_exponential"), "shift": NUMBERS, "rate": NUMBERS}),
    st.fixed_dictionaries({"law": st.just("pareto"), "shape": NUMBERS, "scale": NUMBERS}),
    st.fixed_dictionaries({"law": st.just("uniform"), "low": NUMBERS, "high": NUMBERS}),
    st.fixed_dictionaries({"law": st.just("lognormal"), "mu": NUMBERS, "sigma": NUMBERS}),
    st.fixed_dictionaries({"law": st.just("weibull"), "shape": NUMBERS, "scale": NUMBERS}),
    st.fixed_dictionaries(
        {
            "law": st.just("hyperexponential"),
            "probs": st.lists(NUMBERS, max_size=3),
            "rates": st.lists(NUMBERS, max_size=3),
        }
    ),
)
POLICIES = st.one_of(
    st.fixed_dictionaries({"kind": st.just("fixed"), "k": st.sampled_from([1, 4, 5, 0, [1, 2], [], [2, 2]])}),
    st.fixed_dictionaries(
        {
            "kind": st.just("schedule"),
            "k0": st.sampled_from([1, 3, 9]),
            "at": st.lists(NUMBERS, max_size=3),
            "ks": st.lists(st.sampled_from(INTS), max_size=3),
            "by": st.sampled_from(["time", "iterations", "wall"]),
        }
    ),
    st.fixed_dictionaries(
        {
            "kind": st.just("adaptive"),
            "k_min": st.sampled_from([0, 1, 2, 4, 5]),
            "k_max": st.sampled_from([1, 3, 4, 5]),
            "thresh": st.sampled_from([-1, 0, 3]),
            "burnin": st.sampled_from([-1, 0, 3]),
            "step": st.sampled_from([0, 1, 2**31 - 1]),
            "factor": st.sampled_from([0, 1, 2]),
        }
    ),
    st.just({"kind": "bound_optimal"}),
    values,
)

EDGES = st.sampled_from(INTS + FLOATS)  # numbers at and beyond every limit
mutation = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(FIELDS), values),
    st.tuples(st.just("set"), st.sampled_from(FIELDS), EDGES),
    st.tuples(st.just("set"), st.sampled_from(FIELDS), st.just(DELETE)),
    st.tuples(st.just("set"), st.sampled_from(["problem", "delays", "run", "policy", "config"]), KEYS, values),
    st.tuples(st.just("law"), LAWS),
    st.tuples(st.just("policy"), POLICIES),
    st.tuples(st.just("duplicate"), st.sampled_from([0, 1])),
    st.tuples(st.just("clusters"), st.lists(LAWS | values, max_size=2)),
)


def mutate(doc: dict, op: tuple) -> tuple[str, ...]:
    """Apply one mutation in place; return the tables it touched (for the error's field)."""
    kind = op[0]
    if kind == "set" and len(op) == 4:  # an unknown (or known) field of a table
        table, key, value = op[1:]
        node = doc if table == "config" else doc.get(table)
        if isinstance(node, list) and node:
            node = node[0]
        if isinstance(node, dict):
            node[key] = value
        return (table,)
    if kind == "set":
        path, value = op[1], op[2]
        node = doc
        for key in path:
            if isinstance(node, dict) and isinstance(key, str) and key not in node and key != path[-1]:
                node[key] = {}  # e.g. a [quick] table
            found = isinstance(node, dict) and key in node or isinstance(node, list) and key in range(len(node))
            if key == path[-1] and (isinstance(node, dict) and isinstance(key, str) or found):
                break
            if not found:
                return ()
            node = node[key]
        if value is DELETE:
            if found:
                del node[path[-1]]
        else:
            node[path[-1]] = value
        return ("config" if path[0] in ("name", "description") else path[0],)
    if kind == "law":
        doc["delays"] = op[1]
        return ("delays",)
    if kind == "policy":
        if isinstance(doc.get("policy"), list):
            doc["policy"].append(op[1])
        return ("policy",)
    if kind == "duplicate":
        if isinstance(doc.get("policy"), list) and len(doc["policy"]) > op[1]:
            doc["policy"].append(copy.deepcopy(doc["policy"][op[1]]))
        return ("policy",)
    doc["delays"] = op[1]  # clusters: a list of delay tables
    return ("delays",)


# ---------------------------------------------------------------- what every outcome must look like


def related(tables: set[str]) -> set[str]:
    """Tables whose fields a change to ``tables`` may make invalid (n_workers bounds k, a label
    is a report's reference, ...)."""
    out = set(tables) | {"config"}
    if "problem" in tables:
        out |= {"policy", "delays"}
    if "run" in tables:
        out |= {"policy", "report"}
    if "policy" in tables or "delays" in tables:
        out |= {"report", "policy", "figure", "delays"}
    return out


def check_api(path: Path, tables: set[str] | None = None, quick: bool = False):
    """load_study, prepare and the engine's first estimate raise ConfigError or DataError, never
    another exception; a ConfigError from validation names a field of a table that changed.
    Returns the prepared study, or None if it is bad input."""
    try:
        s = study.load_study(path, quick=quick)
    except ConfigError as e:
        assert "\n" not in str(e) and str(e).strip(), repr(str(e))
        if tables is not None:
            head = e.field.split(".")[0].split("[")[0]
            assert head in related(tables), (e.field, tables)
        return None
    try:
        prepared = study.prepare(s)
        for c in prepared.configurations:
            t = engine.mean_iteration_time(c.config, c.spec, int(c.config.policy.k0))
            assert t > 0, t
    except (ConfigError, DataError) as e:
        assert "\n" not in str(e) and str(e).strip(), repr(str(e))
        return None
    return s, prepared


def signature(s: study.Study) -> tuple:
    """What fixes the compiled program (shapes and static settings) of a small study; None for
    a study too big to run here."""
    resolved = s.resolved  # the study with every default filled in
    run = resolved["run"]
    if run["iterations"] is None or run["iterations"] > 64 or run["chunk"] > 64 or run["seeds"] > 4:
        return None
    if (run["block"] or 0) > 64:  # a study pays for a whole block
        return None
    largest = []
    for p in resolved["policies"]:
        ks = {"fixed": [p.get("k")], "adaptive": [p.get("k_min"), p.get("k_max")]}.get(p["kind"], [None])
        largest += ks
    return (
        tuple(sorted(resolved["problem"].items())),
        run["iterations"],
        run["seeds"],
        run["chunk"],
        run["grid_points"],
        run["optimizer"],
        run["staleness_bins"],
        run["block"],
        len(run["eta"]),
        tuple(d["law"] for d in resolved["delays"]),
        tuple((p["kind"], p["scheme"], p["gradients"], p["batch_size"], p["lr"]) for p in resolved["policies"]),
        tuple(largest),
        resolved["figure"]["kind"],
    )


def check_cli(folder: Path, config: Path, capsys, args=()) -> int:
    """Run the command on ``config`` with --out into ``folder``; check its outcome."""
    before = set(os.listdir(folder))
    out = folder / "out"
    try:
        code = cli.main(["run", str(config), "--out", str(out), "--quiet", *map(str, args)])
    except SystemExit as e:  # argparse rejects an argument by exiting
        code = e.code
    captured = capsys.readouterr()
    err = captured.err
    assert "Traceback" not in err + captured.out
    if code == 0:
        assert set(os.listdir(out)) == OUTPUTS and all((out / f).stat().st_size > 0 for f in OUTPUTS)
        assert set(os.listdir(folder)) == before | {"out"}
        assert all(line.startswith("fastk-jax: warning: ") for line in err.splitlines()), err
        return code
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith(PREFIX) and len(err.strip()) > len(PREFIX) + 3, err
    assert not out.exists() and set(os.listdir(folder)) == before, os.listdir(folder)
    return code


BASE_SIGNATURE = None


def run_both(doc_or_text, capsys, tables=None, args=()) -> int | None:
    """The API checks, then the command where cheap; returns its exit status (None: not run)."""
    global BASE_SIGNATURE
    if BASE_SIGNATURE is None:
        BASE_SIGNATURE = signature(study.resolve(copy.deepcopy(BASE)))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = folder / "study.toml"
        if isinstance(doc_or_text, dict):
            config.write_text(dumps(doc_or_text), encoding="utf-8")
        elif isinstance(doc_or_text, bytes):
            config.write_bytes(doc_or_text)
        else:
            config.write_text(doc_or_text, encoding="utf-8")
        good = check_api(config, tables, quick="--quick" in args)
        if good is not None and signature(good[0]) != BASE_SIGNATURE:
            return None  # valid, but another program to compile: the API checks must do
        return check_cli(folder, config, capsys, args)


# ---------------------------------------------------------------- the fuzz tests


def test_writer_round_trips():
    doc = {**copy.deepcopy(BASE), "x": ['a\nb\x7f"\\', 1.5, -0.0, [1, {"é": datetime.date(2000, 1, 2)}]]}
    assert tomllib.loads(dumps(doc)) == doc


def test_base_study_runs(capsys):
    assert run_both(copy.deepcopy(BASE), capsys) == 0


@settings(FUZZ, max_examples=300)
@given(ops=st.lists(mutation, min_size=1, max_size=3))
def test_mutated_study_through_api(ops):
    """Many mutations, API only (milliseconds each)."""
    doc = copy.deepcopy(BASE)
    tables = set()
    for op in ops:
        tables |= set(mutate(doc, op))
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "study.toml"
        config.write_text(dumps(doc), encoding="utf-8")
        check_api(config, tables if len(ops) == 1 else None)


@settings(FUZZ, max_examples=80)
@given(ops=st.lists(mutation, min_size=1, max_size=2), quick=st.booleans())
def test_mutated_study_through_cli(ops, quick, capsys):
    doc = copy.deepcopy(BASE)
    tables = set()
    for op in ops:
        tables |= set(mutate(doc, op))
    run_both(doc, capsys, tables if len(ops) == 1 else None, ["--quick"] if quick else ())


valid_text = dumps(BASE)


@st.composite
def malformed_text(draw):
    """Truncated, spliced or random text and bytes."""
    kind = draw(st.sampled_from(["truncate", "splice", "bytes", "text", "blank", "bad utf-8"]))
    raw = valid_text.encode()
    if kind == "truncate":
        return raw[: draw(st.integers(0, len(raw)))]
    if kind == "splice":
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.binary(min_size=1, max_size=4)) + raw[at + draw(st.integers(0, 3)) :]
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "text":
        return draw(st.text(max_size=64)).encode("utf-8", "surrogatepass")
    if kind == "blank":
        return draw(st.sampled_from([b"", b" ", b"\n\n", b"\t \r\n", b"\xef\xbb\xbf"]))
    return raw[:20] + b"\xff\xfe\xc3" + raw[20:]


@settings(FUZZ, max_examples=60)
@given(text=malformed_text())
def test_malformed_file(text, capsys):
    run_both(text, capsys)


# ---------------------------------------------------------------- MNIST IDX files


def _idx(array: np.ndarray) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        data.write_idx(Path(tmp) / "a.idx", array)
        return (Path(tmp) / "a.idx").read_bytes()


GOOD_IMAGES = np.arange(12 * 2 * 2, dtype=np.uint8).reshape(12, 2, 2) * 5
GOOD_LABELS = np.arange(12, dtype=np.uint8) % 2


@st.composite
def idx_file(draw, good: bytes):
    """A good IDX file, or a broken one: random bytes, wrong magic or type, truncated, trailing
    bytes, other counts or shapes, bad labels, corrupt gzip, gzip of any of these."""
    kind = draw(
        st.sampled_from(
            ["good", "bytes", "magic", "type", "truncate", "trailing", "shape", "labels", "gzip", "corrupt"]
        )
    )
    if kind == "bytes":
        return draw(st.binary(max_size=40))
    if kind == "magic":
        return draw(st.binary(min_size=2, max_size=2).filter(lambda b: b != b"\0\0")) + good[2:]
    if kind == "type":
        return good[:2] + bytes([draw(st.integers(0, 255))]) + good[3:]
    if kind == "truncate":
        return good[: draw(st.integers(0, len(good) - 1))]
    if kind == "trailing":
        return good + draw(st.binary(min_size=1, max_size=5))
    if kind == "shape":
        dims = draw(st.lists(st.integers(0, 12), min_size=0, max_size=4))
        body = good[4 + 4 * good[3] :]
        header = bytes([0, 0, good[2], len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
        return header + body[: draw(st.integers(0, len(body)))]
    if kind == "labels":
        dtype = draw(st.sampled_from([np.uint8, np.int8, np.int32, np.float32]))
        return _idx(np.asarray(draw(st.lists(st.integers(-3, 12), min_size=0, max_size=14)), np.int64).astype(dtype))
    if kind == "gzip":
        return gzip.compress(good[: draw(st.integers(0, len(good)))], mtime=0)
    if kind == "corrupt":
        z = gzip.compress(good, mtime=0)
        return z[: draw(st.integers(2, len(z) - 1))]
    return good


def mnist_doc(folder: Path, **problem) -> dict:
    return {
        "name": "fuzz-mnist",
        "problem": {
            "kind": "logistic",
            "n_workers": 2,
            "dataset": "mnist",
            "images": str(folder / "images.idx"),
            "labels": str(folder / "labels.idx"),
            "classes": [0, 1],
            **problem,
        },
        "delays": {"law": "exponential", "rate": 1.0},
        "run": {"eta": 0.01, "time_horizon": 2.0, "iterations": 8, "seeds": 2, "chunk": 8, "grid_points": 8},
        "policy": [{"kind": "fixed", "k": 1}],
    }


@settings(FUZZ, max_examples=80)
@given(images=idx_file(_idx(GOOD_IMAGES)), labels=idx_file(_idx(GOOD_LABELS)))
@example(images=_idx(GOOD_IMAGES[:, :0, :]), labels=_idx(GOOD_LABELS))  # images without pixels
def test_malformed_mnist(images, labels, capsys):
    """Bad IDX files through load_mnist, then (unless the data is good) through the command."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "images.idx").write_bytes(images)
        (folder / "labels.idx").write_bytes(labels)
        try:
            x, y = data.load_mnist(folder / "images.idx", folder / "labels.idx")
        except DataError as e:
            assert "\n" not in str(e) and ("idx file" in str(e) or "mnist" in str(e)), str(e)
        else:
            assert x.ndim == 2 and x.shape[0] == y.shape[0]
        config = folder / "study.toml"
        config.write_text(dumps(mnist_doc(folder)), encoding="utf-8")
        if check_api(config) is None:
            check_cli(folder, config, capsys)
        # else good data, ready to run: running it would compile another program (seconds)


def test_good_mnist_prepares(tmp_path):
    (tmp_path / "images.idx").write_bytes(_idx(GOOD_IMAGES))
    (tmp_path / "labels.idx").write_bytes(_idx(GOOD_LABELS))
    config = tmp_path / "study.toml"
    config.write_text(dumps(mnist_doc(tmp_path)))
    assert check_api(config) is not None


@settings(FUZZ, max_examples=60)
@given(raw=st.binary(max_size=64), compress=st.booleans())
def test_read_idx_raises_only_data_error(raw, compress):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.idx"
        path.write_bytes(gzip.compress(raw, mtime=0) if compress else raw)
        try:
            data.read_idx(path)
        except DataError as e:
            assert "\n" not in str(e)


# ---------------------------------------------------------------- regressions: bugs the fuzzing found

HUGE = 10**400  # TOML integers are unbounded in tomllib


def _with(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


REGRESSIONS = {
    # a huge integer where a number goes: OverflowError from math.isfinite / float()
    "huge seeds": (_with(valid_text, "seeds = 2", f'"seeds" = {HUGE}'), "run.seeds"),
    # an integer of more than 4300 digits: ValueError from tomllib itself
    "5000-digit integer": (_with(valid_text, "seeds = 2", '"seeds" = ' + "1" * 5000), "not valid TOML"),
    "huge eta": (_with(valid_text, "eta = 0.001", f'"eta" = {HUGE}'), "run.eta"),
    "huge rate": (_with(valid_text, "rate = 1.0", f'"rate" = {HUGE}'), "delays.rate"),
    "huge slowdown": (_with(valid_text, "rate = 1.0", f"rate = 1.0\nslowdown = {HUGE}"), "delays.slowdown"),
    "huge level": (valid_text + f"[report]\nlevels = [{HUGE}]\n", "report.levels"),
    "huge breakpoint": (
        _with(valid_text, '{kind = "fixed", k = 2}', f'{{kind = "schedule", k0 = 2, at = [{HUGE}], ks = [3]}}'),
        "policy[0].at",
    ),
    "huge schedule k": (
        _with(valid_text, '{kind = "fixed", k = 2}', f'{{kind = "schedule", k0 = 2, at = [1.0], ks = [{HUGE}]}}'),
        "policy[0].ks",
    ),
    # k_min below int32: OverflowError from np.int32
    "k_min below int32": (_with(valid_text, "k_min = 1", f"k_min = {-(2**63)}"), "policy[1].k_min"),
    # ks wrapped around int32: 2**32 + 2 ran as k = 2
    "schedule k beyond int32": (
        _with(valid_text, '{kind = "fixed", k = 2}', '{kind = "schedule", k0 = 2, at = [1.0], ks = [4294967298]}'),
        "policy[0].ks",
    ),
    # a field name with a newline made the message two lines
    "newline in a field name": (_with(valid_text, "[run]\n", '[run]\n"a\\nb" = 1\n'), "run.a\\nb"),
    "newline in a law parameter": (_with(valid_text, "rate = 1.0", 'rate = 1.0\n"a\\nb" = 1'), "delays.a\\nb"),
    # the work-dependent shift took the mean delay beyond float32 clocks: a run of garbage
    "shift_per_row beyond float32": (
        _with(
            valid_text,
            'law = "exponential"\nrate = 1.0',
            'law = "shifted_exponential"\nshift = 1.0\nrate = 1.0\nshift_per_row = 1e40',
        ),
        "delays.shift_per_row",
    ),
    # an unknown field of [quick] was called run.X
    "unknown quick field": (valid_text + "[quick]\nseedz = 1\n", "quick.seedz"),
    "bad quick value": (valid_text + "[quick]\nseeds = 0\n", "quick.seeds"),
    # runtime_vs_k without a fixed-k policy: ValueError from matplotlib after the run
    "runtime_vs_k without fixed k": (
        _with(valid_text, '{kind = "fixed", k = 2}, ', "") + '[figure]\nkind = "runtime_vs_k"\n',
        "figure.kind",
    ),
    # a NUL in a data path: ValueError from open
    "nul in a path": (
        _with(
            valid_text,
            'kind = "linear"\nn_workers = 4\nm = 16\nd = 3',
            'kind = "logistic"\nn_workers = 4\ndataset = "mnist"\nimages = "a\\u0000b"\nlabels = "c"',
        ),
        "a\\x00b",
    ),
}


@pytest.mark.parametrize("case", sorted(REGRESSIONS))
def test_regression(case, tmp_path, capsys):
    text, needle = REGRESSIONS[case]
    config = tmp_path / "c.toml"
    config.write_text(text)
    args = ["--quick"] if "quick" in case else []
    with pytest.raises(FastkError) as info:
        s = study.load_study(config, quick=bool(args))
        study.prepare(s)
    assert isinstance(info.value, (ConfigError, DataError)) and "\n" not in str(info.value)
    assert check_cli(tmp_path, config, capsys, args) == 2
    assert needle in str(info.value), str(info.value)


@pytest.mark.parametrize("raw", [None, [], "name = 1", 3, {"run": None}])
def test_resolve_takes_only_a_table(raw):
    with pytest.raises(ConfigError):
        study.resolve(raw)


@pytest.mark.parametrize("seeds", ["0", "-1", "abc", "1e3", "", str(2**31), "9" * 5000])
def test_bad_seeds_argument(seeds, tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(valid_text)
    assert check_cli(tmp_path, config, capsys, ["--seeds", seeds]) == 2


def test_horizon_beyond_int32_iterations(tmp_path, capsys):
    """Without run.iterations, time_horizon / mean iteration time iterations: 4e29 here, an
    OverflowError in jnp.linspace (and a silent int32 wrap, then a near-endless run, at 4e9)."""
    config = tmp_path / "c.toml"
    config.write_text(_with(_with(valid_text, "iterations = 32\n", ""), "time_horizon = 5.0", "time_horizon = 1e29"))
    assert check_cli(tmp_path, config, capsys) == 2


def test_theory_study_with_a_date_for_description(tmp_path, capsys):
    """A date is valid TOML but not JSON: config.json could not be written after the run."""
    text = Path(study.__file__).parent.parent.joinpath("studies", "adaptive-fig1.toml").read_text()
    config = tmp_path / "c.toml"
    config.write_text(_with(text, 'description = "', "description = 1979-05-27\n# "))
    assert check_cli(tmp_path, config, capsys, ["--quick"]) == 2


def test_images_without_pixels(tmp_path):
    (tmp_path / "i.idx").write_bytes(_idx(GOOD_IMAGES[:, :0, :]))
    (tmp_path / "l.idx").write_bytes(_idx(GOOD_LABELS))
    with pytest.raises(DataError, match="no pixels"):
        data.load_mnist(tmp_path / "i.idx", tmp_path / "l.idx")


# ---------------------------------------------------------------- the real process


def test_process_exit_2_without_traceback(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text(valid_text.replace("seeds = 2", "seeds = -3"))
    proc = subprocess.run(
        [sys.executable, "-m", "fastk_jax", "run", str(config), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(PREFIX) and "run.seeds" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["bad.toml"]


# ---------------------------------------------------------------- sweeps

SWEEP_KEYS = st.sampled_from(
    ["eps", "deadline", "axes", "case", "plot", "quick", "colour"]
    + ["axes.run.eta", "axes.policy[0].k", "axes.policy.thresh", "axes.problem", "axes.run.seeds", "axes.nonsense"]
    + ["plot.metric", "plot.x", "plot.y", "plot.kind", "quick.cases", "quick.deadline"]
)
SWEEP_VALUES = st.one_of(
    values,
    st.lists(st.sampled_from([1, 2, 4, 5, 0.001, 0.002, -1, "a", True]), max_size=4),
    st.lists(st.dictionaries(st.sampled_from(["label", "eps", "run.eta", "problem"]), scalars, max_size=3), max_size=3),
)


def _set_sweep(sweep: dict, key: str, value) -> None:
    head, _, rest = key.partition(".")
    if not rest:
        sweep[head] = value
    elif isinstance(sweep.get(head), dict):
        sweep[head][rest] = value
    else:
        sweep[head] = {rest: value}


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(st.lists(st.tuples(SWEEP_KEYS, SWEEP_VALUES), min_size=1, max_size=3), st.booleans())
def test_mutated_sweep_resolves_or_names_the_problem(mutations, quick):
    """Sweep tables (API: resolution and the grid's points; nothing runs): a bad one raises a
    one-line ConfigError, never another exception."""
    raw = copy.deepcopy(BASE)
    raw["sweep"] = {"eps": 1.0, "deadline": 2.0, "axes": {"run.eta": [0.001, 0.002]}, "case": [{"label": "a"}]}
    for key, value in mutations:
        _set_sweep(raw["sweep"], key, value)
    try:
        sweep.points(sweep.resolve(raw, quick=quick))
    except ConfigError as e:
        assert "\n" not in str(e) and str(e).strip(), repr(str(e))


# ---------------------------------------------------------------- kills at random instants


@pytest.mark.slow  # about 95 s on 2 cores: run with `pytest -m slow`
def test_kill_at_random_instants(tmp_path):
    """A real ``fastk-jax run`` replacing old results, killed (SIGKILL) or interrupted (SIGINT)
    at random instants of its whole run, the final save included (half the instants fall in
    its last quarter): each time OUT holds the old results, nothing, or the new results, whole
    and loadable; an interrupt ends in exit 130 without a traceback; and running the command
    again ends with results bit-identical (the same content hash) to an uninterrupted run. A
    seeded loop, so CI sees the same instants every time; the runs share a compilation cache."""
    import json
    import random
    import shutil
    import signal
    import time

    from test_cli import base, toml

    from fastk_jax.analysis import results

    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax-cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        "FASTK_CHECKPOINT_EVERY_S": "0",
    }
    runs = tmp_path / "runs"
    runs.mkdir()
    configs = {}
    for name, eta in (("old", 0.001), ("new", 0.002)):  # the same shapes: one program
        doc = base()
        doc["run"].update({"eta": eta, "time_horizon": 100.0, "chunk": 20})
        configs[name] = tmp_path / f"{name}.toml"
        configs[name].write_text(toml(doc))

    def run(name, out, **kwargs):
        cmd = [sys.executable, "-m", "fastk_jax", "run", str(configs[name]), "--out", str(out), "--quiet"]
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kwargs)

    def digest(out):
        return json.loads((out / "summary.json").read_text())["results_sha256"]

    pristine = tmp_path / "old-results"
    assert run("old", pristine).wait(timeout=300) == 0
    started = time.monotonic()
    reference = tmp_path / "new-results"
    assert run("new", reference).wait(timeout=300) == 0
    whole_s = time.monotonic() - started
    old, new = digest(pristine), digest(reference)
    assert old != new

    rng = random.Random(18)
    out = runs / "out"
    for attempt, sig in enumerate([signal.SIGKILL, signal.SIGINT, signal.SIGKILL, signal.SIGINT]):
        shutil.rmtree(runs)
        runs.mkdir()
        shutil.copytree(pristine, out)
        at = whole_s * (rng.uniform(0.75, 1.05) if attempt % 2 else rng.uniform(0.1, 1.0))
        at = max(at, 0.5)  # before that the interpreter itself is starting (its own Ctrl-C: nothing written)
        proc = run("new", out)
        time.sleep(at)
        proc.send_signal(sig)
        err = proc.communicate(timeout=120)[1]
        where = f"attempt {attempt}: signal {sig.name} at {at:.2f} s of {whole_s:.2f} s"
        if sig == signal.SIGINT:
            assert proc.returncode in (0, 130), f"{where}: {proc.returncode} {err}"
            assert "Traceback" not in err, f"{where}: {err}"
        else:
            assert proc.returncode in (0, -signal.SIGKILL), f"{where}: {proc.returncode}"
        if out.exists():
            assert digest(out) in (old, new), where
            assert results.load(out).seeds == 3, where
        again = run("new", out)
        err = again.communicate(timeout=300)[1]
        assert again.returncode == 0, f"{where}: {err}"
        assert digest(out) == new, where
        assert sorted(p.name for p in runs.iterdir()) == ["out"], f"{where}: {sorted(os.listdir(runs))}"
