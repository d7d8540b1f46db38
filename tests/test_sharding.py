"""The seed axis sharded over several devices gives the per-seed results of one device.

XLA_FLAGS must be set before jax is imported, so the four (forced host) devices live in a
subprocess. A run's numbers depend on the block size only (runs per device per block), so
four devices and one give the same bits, as do one call and several. The subprocess
starts ``jax.distributed`` with one process (``FASTK_DISTRIBUTED=1``): the multi-host code path
on one host; several hosts are not tested."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import json
import jax
import numpy as np
from fastk_jax.core import delays, policies, problems
from fastk_jax import engine

assert engine.init_distributed()  # one process of jax.distributed: the multi-host path, on one host
from fastk_jax.data import synthetic_linear
from fastk_jax.core.spec import RunSpec, SimConfig, stack_configs

n = 10
x, y, _ = synthetic_linear(200, 20, 0)
prob = problems.linear_regression(x, y, n)
law = delays.make_law("exponential", rate=1.0)
pols = [policies.fixed(3), policies.adaptive(2, 8, thresh=3, burnin=5, step=2)]
cfg = stack_configs([SimConfig(p, np.float64(2e-3), law, np.ones(n)) for p in pols])
kw = dict(seeds=6, time_horizon=15.0, iterations=60, grid_points=40, spec=RunSpec(n=n, chunk=30, max_k=8))
one = jax.devices()[:1]
runs = {
    "4 devices": engine.simulate(prob, cfg, **kw, block=2),  # 12 runs: 2 blocks of 4 x 2, 4 of them padding
    "1 device": engine.simulate(prob, cfg, **kw, devices=one, block=2),  # 6 blocks of 2
    "4 devices, default block": engine.simulate(prob, cfg, **kw),  # 1 block of 4 x 64
    "1 device, default block": engine.simulate(prob, cfg, **kw, devices=one),
}
leaves = {k: jax.tree.leaves(s.summary) for k, s in runs.items()}

def same(a, b):
    return all(np.array_equal(u, v, equal_nan=True) for u, v in zip(leaves[a], leaves[b]))

print(json.dumps({
    "devices": len(jax.devices()),
    "processes": jax.process_count(),
    "same, block of 2": same("4 devices", "1 device"),
    "same, default block": same("4 devices, default block", "1 device, default block"),
    "iterations": sorted({s.iterations for s in runs.values()}),
    "seeds": sorted({int(s.summary.final_time.shape[1]) for s in runs.values()}),
}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_four_devices_give_the_results_of_one():
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "FASTK_DISTRIBUTED": "1",
        "JAX_COORDINATOR_ADDRESS": f"localhost:{_free_port()}",
        "JAX_NUM_PROCESSES": "1",
        "JAX_PROCESS_ID": "0",
    }
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["devices"] == 4 and got["processes"] == 1
    assert got["same, block of 2"] and got["same, default block"]
    assert len(got["iterations"]) == 1 and got["seeds"] == [6]
