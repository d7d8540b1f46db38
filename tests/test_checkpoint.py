"""Checkpoints: a run killed at any moment resumes from its last chunk and ends bit for bit
where an uninterrupted run ends; a finished study is reused; stale state never is."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import base, limit_memory, toml

from fastk_jax import engine
from fastk_jax.core import delays, policies, problems
from fastk_jax.core.curves import Grids
from fastk_jax.core.spec import RunSpec, SimConfig, stack_configs
from fastk_jax.data import synthetic_linear
from fastk_jax.engine import checkpoint, loop
from fastk_jax.runner import folder as registry

ROOT = Path(__file__).resolve().parent.parent


class Stop(Exception):
    pass


def _setup(eta=1e-3):
    n = 10
    x, y, _ = synthetic_linear(100, 5, 0)
    prob = problems.linear_regression(x, y, n)
    law = delays.make_law("exponential", rate=1.0)
    pols = [policies.fixed(3), policies.adaptive(2, 8, thresh=3, burnin=5, step=2)]
    cfg = stack_configs([SimConfig(p, np.float64(eta), law, np.ones(n)) for p in pols])
    kwargs = {"seeds": 5, "time_horizon": 20.0, "iterations": 60, "spec": RunSpec(n=n, chunk=20, max_k=8)}
    return prob, cfg, kwargs


def _interrupted(prob, cfg, kwargs, slot, after):
    def stop(p):
        if p.iterations >= after:
            raise Stop

    with pytest.raises(Stop):
        engine.simulate(prob, cfg, **kwargs, checkpoint=slot, progress=stop)


def _same(a, b):
    return all(np.array_equal(u, v, equal_nan=True) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("calls", [1, 3])
@pytest.mark.filterwarnings("ignore:.*do not fit in memory")
def test_resume_in_process_is_bit_identical_and_stale_state_is_ignored(tmp_path, monkeypatch, calls):
    prob, cfg, kwargs = _setup()
    kwargs["block"] = 4
    whole = engine.simulate(prob, cfg, **kwargs)
    if calls > 1:  # 10 runs in 3 blocks of 4, one per call
        limit_memory(monkeypatch, prob, kwargs["spec"], 10, 4, blocks=1)
    slot = checkpoint.Slot(tmp_path, "g", every_s=0.0)
    _interrupted(prob, cfg, kwargs, slot, after=40)
    assert slot.path.exists() and slot.saves == 2
    resumed = engine.simulate(prob, cfg, **kwargs, checkpoint=checkpoint.Slot(tmp_path, "g", every_s=0.0))
    assert resumed.resumed_from == 40 and resumed.iterations == whole.iterations
    assert _same(resumed.summary, whole.summary)
    # a finished checkpoint is reused as it is; a changed configuration starts over, with a warning
    again = engine.simulate(prob, cfg, **kwargs, checkpoint=checkpoint.Slot(tmp_path, "g", every_s=0.0))
    assert again.resumed_from == whole.iterations and _same(again.summary, whole.summary)
    prob2, cfg2, _ = _setup(eta=2e-3)
    with pytest.warns(UserWarning, match="another configuration"):
        other = engine.simulate(prob2, cfg2, **kwargs, checkpoint=checkpoint.Slot(tmp_path, "g", every_s=0.0))
    assert other.resumed_from == 0 and not _same(other.summary.error, whole.summary.error)
    assert _same(other.summary, engine.simulate(prob2, cfg2, **kwargs).summary)


def test_unreadable_checkpoint_starts_over(tmp_path):
    prob, cfg, kwargs = _setup()
    slot = checkpoint.Slot(tmp_path, "g", every_s=0.0)
    _interrupted(prob, cfg, kwargs, slot, after=20)
    data = slot.path.read_bytes()
    slot.path.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.warns(UserWarning, match="unreadable"):
        sim = engine.simulate(prob, cfg, **kwargs, checkpoint=checkpoint.Slot(tmp_path, "g"))
    assert sim.resumed_from == 0 and _same(sim.summary, engine.simulate(prob, cfg, **kwargs).summary)


def test_carry_with_keys_round_trips_through_the_host():
    prob, cfg, kwargs = _setup()
    spec = kwargs["spec"]._replace(scheme="k_batch_async")  # with the pending computations
    grids = Grids(jnp.linspace(0.0, 5.0, 7), jnp.arange(5), jnp.asarray(1e6), jnp.asarray([1.0]))
    runs = jnp.arange(8, dtype=jnp.int32).reshape(2, 4)  # 2 blocks of 4: configuration, seed
    carry = loop._init(cfg, prob, grids, jnp.uint32(3), runs // 4, runs % 4, spec=spec)
    back = engine.to_device(engine.to_host(carry), carry, None)
    assert jax.tree.structure(back) == jax.tree.structure(carry)
    assert jax.dtypes.issubdtype(back.state.key.dtype, jax.dtypes.prng_key)
    for a, b in zip(jax.tree.leaves(carry), jax.tree.leaves(back)):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


def test_finished_study_is_reused_and_a_changed_one_replaced(tmp_path):
    cfg, out = tmp_path / "tiny.toml", tmp_path / "out"
    cfg.write_text(toml(base()))
    said = []
    registry.run_file(cfg, out, say=said.append)
    first = (out / "summary.json").read_text()
    assert not (tmp_path / "out.partial").exists()
    registry.run_file(cfg, out, say=said.append)
    assert said[-1].endswith(f"complete; reusing results in {out}/")
    assert (out / "summary.json").read_text() == first
    doc = base()
    doc["run"]["eta"] = 0.002  # the same shapes: nothing to compile
    cfg.write_text(toml(doc))
    said.clear()
    registry.run_file(cfg, out, say=said.append)
    assert any("holds other results; replacing them" in line for line in said)
    assert json.loads((out / "config.json").read_text())["run"]["eta"] == [0.002]


def _arrays(folder):
    with np.load(folder / "results.npz", allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _manifest(slot: Path) -> dict | None:
    try:
        with np.load(slot, allow_pickle=False) as f:
            return json.loads(str(f["manifest"]))
    except (OSError, ValueError, KeyError):
        return None


def test_sigkill_after_a_checkpoint_resumes_bit_identical(tmp_path):
    """A real process, killed with SIGKILL right after its first checkpoint (at whatever it is
    doing then), run again to the end: its results.npz holds the very arrays of an uninterrupted
    run. The processes share a persistent compilation cache, so only the first compiles."""
    doc = base()
    doc["run"].update({"time_horizon": 600.0, "chunk": 10, "seeds": 4})  # ~280 chunks: a second or more
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(toml(doc))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax-cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }

    def cmd(out):
        return [sys.executable, "-m", "fastk_jax", "run", str(cfg), "--out", str(out)]

    clean, out = tmp_path / "clean", tmp_path / "out"
    subprocess.run(cmd(clean), env={**env, "FASTK_CHECKPOINT_EVERY_S": "off"}, check=True, timeout=120)
    env["FASTK_CHECKPOINT_EVERY_S"] = "0"
    slot = tmp_path / "out.partial" / "group-0.npz"
    proc = subprocess.Popen(cmd(out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and _manifest(slot) is None:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    proc.stderr.close()
    assert not out.exists(), "the run finished before it was killed"
    killed_at = _manifest(slot)["iterations"]
    env["FASTK_CHECKPOINT_EVERY_S"] = "30"
    done = subprocess.run(cmd(out), env=env, check=True, timeout=120, capture_output=True, text=True)
    assert "resuming from the checkpoints" in done.stderr
    a, b = _arrays(clean), _arrays(out)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f"), k
    summary = json.loads((out / "summary.json").read_text())
    assert summary["results_sha256"] == json.loads((clean / "summary.json").read_text())["results_sha256"]
    assert 0 < killed_at == summary["resumed_from_iterations"] < summary["iterations"]
    assert not (tmp_path / "out.partial").exists()
