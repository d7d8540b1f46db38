"""``fastk-jax bench``: the engine against the NumPy reference on the same work, in one process.

Workload: the adaptive paper's Fig. 3 (n = 50, d = 100, m = 2000, exponential delays, eta =
5e-4), its five policies (fixed k in {10, 20, 30, 40} and Algorithm 1) run together as the
default study runs them. The engine runs S seeds of each policy for a fixed number of
updates; the reference (``reference.simulate_run``: a Python loop per seed, NumPy inside an
iteration) runs the same policies for a few seeds, on the engine's own delays, and its rate per
seed-iteration is what one CPU process achieves. Reported:

* ``engine_seed_iters_per_s`` (after compilation, which is timed apart as ``compile_s``),
  ``reference_seed_iters_per_s`` and ``speedup_vs_reference``;
* ``useful_gflops``: the floating-point work an iteration must do, over the engine's time: the
  k selected partial gradients (2 k s d for the residuals and 2 k s d for the gradient) and the
  error evaluation over all m rows (2 m d), counted per seed-iteration;
* ``matmul_gflops``: a float32 2048 x 2048 matrix product on the same device, in the same run,
  the machine's own reference for what dense arithmetic can reach;
* ``peak_rss_mb``: the process's peak resident memory (host).

This is a benchmark, not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import resource
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import data, delays, engine, policies, problems, reference
from .spec import RunSpec, SimConfig, stack_configs

N, D, M, ETA = 50, 100, 2000, 5e-4
POLICIES = {
    "k=10": policies.fixed(10),
    "k=20": policies.fixed(20),
    "k=30": policies.fixed(30),
    "k=40": policies.fixed(40),
    "adaptive 10->40": policies.adaptive(10, 40, thresh=10, burnin=200, step=10),
}


def matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of a float32 size x size matrix product on the default device (best of repeats)."""
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    product = jax.jit(lambda x: x @ x)
    product(a).block_until_ready()
    best = min(_timed(lambda: product(a).block_until_ready()) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def useful_flops_per_iteration(k: float, n: int = N, d: int = D, m: int = M) -> float:
    """FLOPs an iteration of fastest-k SGD on least squares needs: k partial gradients over s = m/n
    rows each (residuals and X^T r: 4 k s d) and the error over all m rows (2 m d)."""
    s = m // n
    return 4 * k * s * d + 2 * m * d


def run(
    seeds: int = 1024, iterations: int = 300, reference_seeds: int = 2, reference_iterations: int = 300
) -> dict[str, Any]:
    """Measure the engine and the reference on the Fig. 3 workload; see the module docstring."""
    x, y, _ = data.synthetic_linear(M, D, 0)
    problem = problems.linear_regression(x, y, N)
    law = delays.make_law("exponential", rate=1.0)
    configs = stack_configs([SimConfig(p, np.float64(ETA), law, np.ones(N)) for p in POLICIES.values()])
    spec = RunSpec(n=N, chunk=iterations)
    c = len(POLICIES)

    # the engine: the first call compiles; the second, on fresh seeds, is the timed run
    first = engine.simulate(problem, configs, seeds=seeds, time_horizon=1e-3, spec=spec, iterations=iterations - 1)
    timed = engine.simulate(
        problem, configs, seeds=seeds, time_horizon=1e-3, spec=spec, iterations=iterations - 1, seed=1
    )
    engine_rate = c * seeds * timed.iterations / timed.run_s
    mean_k = float(np.mean(timed.summary.k.mean))

    # the reference, on the engine's delays for its first seeds, each policy in turn
    samples = engine.delay_samples(configs, N, reference_seeds, reference_iterations)
    start = time.perf_counter()
    for i, policy in enumerate(POLICIES.values()):
        for s in range(reference_seeds):
            reference.simulate_run(problem, policy, ETA, samples[i, s])
    reference_rate = c * reference_seeds * reference_iterations / (time.perf_counter() - start)

    matmul = matmul_gflops()
    useful = useful_flops_per_iteration(mean_k) * engine_rate / 1e9
    return {
        "workload": f"adaptive Fig. 3: n={N}, d={D}, m={M}, 5 policies, {seeds} seeds x {iterations} updates",
        "device": str(jax.devices()[0].device_kind),
        "engine_seed_iters_per_s": engine_rate,
        "reference_seed_iters_per_s": reference_rate,
        "speedup_vs_reference": engine_rate / reference_rate,
        "compile_s": max(0.0, first.run_s - timed.run_s),
        "engine_run_s": timed.run_s,
        "useful_gflops": useful,
        "matmul_gflops": matmul,
        "useful_fraction_of_matmul": useful / matmul,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def format_report(r: dict[str, Any]) -> str:
    engine_line = f"  engine     {r['engine_seed_iters_per_s']:12,.0f} seed-iterations/s"
    engine_line += f"  ({r['engine_run_s']:.1f} s; {r['compile_s']:.1f} s compiling)"
    useful_line = f"  useful     {r['useful_gflops']:12.2f} GFLOP/s"
    useful_line += f" = {r['useful_fraction_of_matmul']:.2f} x the matmul {r['matmul_gflops']:.1f} GFLOP/s"
    return "\n".join(
        [
            f"{r['workload']} on {r['device']}",
            engine_line,
            f"  reference  {r['reference_seed_iters_per_s']:12,.0f} seed-iterations/s  (NumPy, one process)",
            f"  speedup    {r['speedup_vs_reference']:12.1f} x",
            useful_line,
            f"  peak RSS   {r['peak_rss_mb']:12.0f} MB",
        ]
    )
