"""The default block rule (``layout.default_block``) and the chunk program's cost against the
cost model (``bench.flops_per_iteration``): what holds on any platform, without timing anything."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastk_jax import bench, engine
from fastk_jax.core import delays, policies, problems
from fastk_jax.core.spec import RunSpec, SimConfig, stack_configs
from fastk_jax.data import synthetic_linear
from fastk_jax.engine import layout, loop


def _linear(m, d, n):
    x, y, _ = synthetic_linear(m, d, 0)
    return problems.linear_regression(x, y, n)


def _logistic(m, d, n, classes):
    rng = np.random.default_rng(0)
    return problems.logistic_regression(rng.normal(size=(m, d)), np.arange(m) % classes, n, 0.01, classes)


def test_the_cpu_block_follows_the_step_temporaries_and_the_cache():
    fig3 = _linear(2000, 100, 50)  # 2000 rows x 1 class x 4 bytes: 8 KB a run
    digits = _logistic(1780, 64, 20, 10)  # 1780 rows x 10 classes: 71 KB a run
    assert layout.default_block("cpu", fig3, RunSpec(n=50)) == 64
    assert layout.default_block("cpu", digits, RunSpec(n=20)) == 16
    assert layout.default_block("cpu") == 64
    for prob, n in ((fig3, 50), (digits, 20), (_linear(40_000, 10, 50), 50), (_linear(20, 2, 2), 2)):
        block = layout.default_block("cpu", prob, RunSpec(n=n))
        assert block in (16, 32, 64)
        per_run = layout.step_bytes_per_run(prob, RunSpec(n=n))
        assert block == 16 or block * per_run <= layout.CPU_CACHE_BYTES  # fits, unless at the floor
        assert block == 64 or 2 * block * per_run > layout.CPU_CACHE_BYTES  # the largest that fits


class _FakeDevice:
    def __init__(self, stats):
        self.stats = stats

    def memory_stats(self):
        return self.stats


def test_the_accelerator_block_comes_from_the_devices_memory():
    fig3, spec = _linear(2000, 100, 50), RunSpec(n=50)
    per_run = layout.step_bytes_per_run(fig3, spec)
    assert layout.default_block("gpu", fig3, spec, _FakeDevice({"bytes_limit": 140 * 2**30})) == 16384  # the cap
    assert layout.default_block("gpu", fig3, spec, _FakeDevice(None)) == 4096  # nothing reported
    small = _FakeDevice({"bytes_limit": 4 * 1000 * per_run})  # a quarter holds 1000 runs' temporaries
    assert layout.default_block("gpu", fig3, spec, small) == 512
    assert layout.default_block("gpu") == 16384


def _chunk_program(prob, n, block, chunk):
    """The chunk program (``loop._advance``) lowered for one block of ``block`` runs of k = 5."""
    law = delays.make_law("exponential", rate=1.0)
    configs = stack_configs([SimConfig(policies.fixed(5), np.float64(1e-4), law, np.ones(n))])
    spec = RunSpec(n=n, chunk=chunk)
    plan = engine.plan.make_plan(
        prob, configs, seeds=block, time_horizon=1.0, spec=spec, seed=0, iterations=2 * chunk, grid_iterations=None,
        grid_points=10, iteration_grid_points=10, divergence_factor=1e6, max_iterations=None, block=block,
        devices=jax.devices()[:1], keep_runs=False, checkpointed=False,
    )
    run_config = jnp.zeros((1, block), jnp.int32)
    carry = loop._init(configs, prob, plan.grids, jnp.uint32(0), run_config, run_config, spec=spec)
    return loop._advance.lower(carry, run_config, configs, prob, plan.grids, jnp.ones(1, bool), spec=spec)


@pytest.mark.parametrize("kind", ["linear", "logistic"])
def test_the_chunk_programs_cost_scales_with_the_block_as_the_model_says(kind):
    """Lower and compile the chunk program (``loop._advance``) for several block sizes on the
    default device and read XLA's cost analysis: its FLOPs grow in proportion to the block,
    and per run they are at least the cost model's dense products (``flops_per_iteration``)
    and at most a few times them. (XLA counts a loop's body once, so the figure is one step of
    one block.)"""
    n = 10
    prob = _linear(400, 20, n) if kind == "linear" else _logistic(400, 16, n, 4)
    performed = bench.flops_per_iteration(prob, 5)[1]
    per_run = {}
    for block in (8, 16, 32):
        cost = _chunk_program(prob, n, block, chunk=4).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        per_run[block] = cost["flops"] / block
    assert max(per_run.values()) <= 1.25 * min(per_run.values()), per_run  # proportional to the block
    for flops in per_run.values():
        assert performed <= flops <= 8 * performed, (performed, per_run)


def test_the_programs_products_are_float32_unless_the_user_chose_a_precision():
    """JAX's default would let a GPU round float32 products' inputs to TF32: the chunk program's
    products carry the float32 precision (HIGHEST) instead, on every platform; a precision the
    user set is kept, and ``matmul_precision`` names the one in force."""
    prob = _logistic(80, 6, 4, 3)
    assert engine.matmul_precision() == "float32"
    text = _chunk_program(prob, 4, 8, chunk=2).as_text()
    precisions = {p for p in ("DEFAULT", "HIGH,", "HIGHEST") if f"precision = [{p}" in text}
    assert "dot_general" in text and precisions == {"HIGHEST"}, precisions
    with jax.default_matmul_precision("tensorfloat32"):
        assert engine.matmul_precision() == "tensorfloat32"
        text = _chunk_program(prob, 4, 8, chunk=2).as_text()
        assert "precision = [HIGHEST" not in text and "precision = [HIGH, HIGH]" in text
