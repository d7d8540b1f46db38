"""Helpers shared by the tests: a TOML writer for test studies, the base study of the CLI
tests, the console command in a subprocess, and a memory limit for the memory guard; and one
persistent JAX compilation cache per test process."""

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

# One persistent compilation cache per test process (each xdist worker), set before JAX is
# imported and inherited by every subprocess the tests start (the console command, ``python -m
# fastk_jax``): a program compiles once per worker instead of once per process. A cached program
# is XLA's executable itself, so it gives the same bits. Per worker, not one for the session: JAX
# writes an entry in place, so a process could read another's half-written entry of a program both
# compile at the same moment. A cache set by the user (JAX_COMPILATION_CACHE_DIR) is kept; one
# made by another test process (the xdist controller, whose environment the workers inherit) is not.
_cache = None
if "FASTK_TEST_JIT_CACHE_OF" in os.environ or "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="fastk-jax-test-jit-")
    os.environ.update(
        JAX_COMPILATION_CACHE_DIR=_cache,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",  # every program, however quick to compile
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        FASTK_TEST_JIT_CACHE_OF=str(os.getpid()),
    )


# F* of the logistic problems is cached on disk (``study.fstar_cache``): the tests keep theirs in a folder
# of their own, not in the user's ~/.cache, and start from an empty one
_fstar_cache = None
if "FASTK_CACHE_DIR" not in os.environ:
    _fstar_cache = tempfile.mkdtemp(prefix="fastk-jax-test-cache-")
    os.environ["FASTK_CACHE_DIR"] = _fstar_cache


def pytest_unconfigure(config):
    """Remove this process's caches (atexit would not: xdist workers end without it)."""
    for folder in (_cache, _fstar_cache):
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


from fastk_jax import engine  # (after the cache's environment)
from fastk_jax.engine import layout

# the installed console script, preferably the one beside this interpreter
EXE = shutil.which("fastk-jax", path=os.path.dirname(sys.executable)) or shutil.which("fastk-jax")


def toml(doc: dict) -> str:
    """A minimal TOML writer for test configs: scalars, lists, tables, arrays of tables."""

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, float) and math.isnan(v):
            return "nan"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    lines = [f"{k} = {value(v)}" for k, v in doc.items() if not isinstance(v, (dict, list)) or k == "x"]
    for k, v in doc.items():
        if isinstance(v, dict):
            lines += [f"[{k}]"] + [f"{kk} = {value(vv)}" for kk, vv in v.items()]
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for item in v:
                lines += [f"[[{k}]]"] + [f"{kk} = {value(vv)}" for kk, vv in item.items()]
    return "\n".join(lines) + "\n"


def base() -> dict:
    return {
        "name": "tiny",
        "problem": {"kind": "linear", "n_workers": 10, "m": 100, "d": 5},
        "delays": {"law": "exponential", "rate": 1.0},
        "run": {"eta": 0.001, "time_horizon": 20.0, "seeds": 3, "chunk": 100},
        "policy": [
            {"kind": "fixed", "k": 3},
            {"kind": "adaptive", "k_min": 2, "k_max": 8, "step": 2, "thresh": 3, "burnin": 10},
        ],
    }


def run_cli(*args, cwd=None):
    cmd = [EXE] if EXE else [sys.executable, "-m", "fastk_jax.cli"]
    return subprocess.run(
        cmd + [str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=300, check=False
    )


def limit_memory(monkeypatch, prob, spec, runs, block, blocks, grid_points=200, iteration_grid_points=200):
    """Make the memory guard fit exactly ``blocks`` blocks of ``block`` runs per call (fewer than all)."""

    def need(b):
        return engine.call_memory(prob, spec, runs, b, grid_points, iteration_grid_points, block=block)

    monkeypatch.setattr(layout, "available_memory", lambda: int((need(blocks) + need(blocks + 1)) / 2 / 0.8))

