"""``fastk-jax bench``: the engine against the NumPy reference on the same work, in one process.

Two workloads, each with its policies run together as a study runs them:

* **Fig. 3** of the adaptive paper (top-level keys): least squares on the paper's synthetic
  data, n = 50, d = 100, m = 2000, exponential delays, eta = 5e-4; fixed k in {10, 20, 30, 40}
  and Algorithm 1 (10 -> 40 in steps of 10);
* **logistic** (key ``"logistic"``): ten-class logistic regression on scikit-learn's digits
  (``data.load_digits``; 1780 images, d = 64, 10 classes, L2 weight 0.01), n = 20, the
  Fig. 5 policies (fixed k in {2, 4, 8}, Algorithm 1 doubling 2 -> 8);
* **mlp** (key ``"mlp"``): an MLP classifier 64 -> 64 -> 10 (ReLU, softmax cross-entropy) on
  the digits (1780 rows), n = 20, fixed k in {2, 5, 10, 20}, eta = 0.1, the training loss
  recorded; the reference is ``reference.networks.simulate_mlp_run`` (backward pass by hand,
  float64, the gradient from the k selected shards' rows only, the loss over all rows);
* **async** (key ``"async"``, entries ``"k=1"`` and ``"k=4"``): the Fig. 3 workload with scheme
  ``k_batch_async`` (k = 1: fully asynchronous SGD; shard gradients at the model each worker
  read, fixed eta = 5e-5, ``RunSpec.max_k = k`` as a study sets it) against the heap-based event
  reference ``reference.events.simulate_async_run`` (``heapq`` of the workers' pending
  computations, one shard gradient per pop, an update every k pops, the error through H,
  float64, durations drawn beforehand in one array). Each entry holds ``k``, ``workload``
  (``"fig3"``), the three rates below, ``compile_s``, ``engine_run_s`` and ``description``.

The engine runs S seeds of each policy for a fixed number of updates, three times: the first
call traces and compiles, the best of the other two (fresh seeds) is timed. The reference (``reference.simulate_run``:
a Python loop per seed, NumPy on whole arrays inside an iteration, float64, no needless work:
the gradient from the k selected shards only and, for least squares, the error as
(1/2) e^T H e as the engine evaluates it) runs the same policies for a few seeds, on delays of
the same law. Reported per workload:

* ``engine_seed_iters_per_s`` (after compilation), ``reference_seed_iters_per_s`` and
  ``speedup_vs_reference``; ``compile_s``: tracing, lowering and compiling (JAX's own events);
* ``useful_gflops``: the floating-point work an iteration needs, over the engine's time, per
  seed-iteration: the k selected partial gradients (residuals or logits of k s rows, then
  X^T of them: 4 k s d, times C classes) and the error evaluation (least squares:
  2 d^2 through H; logistic: the logits of all m rows, 2 m d C; MLP: a forward pass costs
  F = 2 (d h + h C) per row, a forward and backward pass 3 F, so 3 F k s + F m), with k the
  mean k used;
* ``performed_gflops``: what the engine actually computes: it forms the partial gradients of
  all n shards and masks them (a gather of the k selected shards per run costs far more on
  CPU; see the report in ``notes``), so 4 m d (C) + the error (MLP: 3 F m);
* ``matmul_gflops``: a float32 2048 x 2048 matrix product on the same device, in the same run;
* ``peak_rss_mb``: the process's peak resident memory so far (host; on CPU the device's too),
  and ``peak_device_mb`` where the device reports it (GPUs).

``scaling`` (``fastk-jax bench --scaling``) measures the engine's rate against the number of
seeds S, workers n and dimension d on the Fig. 3 workload and draws it.

This is a benchmark, not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import csv
import json
import math
import os
import resource
import time
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import data, engine
from .core import delays, policies, problems
from .core.spec import RunSpec, SimConfig, stack_configs
from .engine.loop import products_precision
from .reference import events as event_reference
from .reference import linear as reference

N, D, M, ETA = 50, 100, 2000, 5e-4
POLICIES = {
    "k=10": policies.fixed(10),
    "k=20": policies.fixed(20),
    "k=30": policies.fixed(30),
    "k=40": policies.fixed(40),
    "adaptive 10->40": policies.adaptive(10, 40, thresh=10, burnin=200, step=10),
}
LOGISTIC_N, LOGISTIC_M, LOGISTIC_REG, LOGISTIC_ETA = 20, 1780, 0.01, 2.0
LOGISTIC_POLICIES = {
    "k=2": policies.fixed(2),
    "k=4": policies.fixed(4),
    "k=8": policies.fixed(8),
    "adaptive 2->8": policies.adaptive(2, 8, thresh=20, burnin=30, factor=2),
}


MLP_N, MLP_M, MLP_HIDDEN, MLP_ETA = 20, 1780, (64,), 0.1
MLP_POLICIES = {f"k={k}": policies.fixed(k) for k in (2, 5, 10, 20)}

WORKLOADS = ("fig3", "logistic", "mlp", "async")  # the report's parts (``fastk-jax bench --workloads``)

ASYNC_KS, ASYNC_SCHEME = (1, 4), "k_batch_async"
# fully async SGD applies gradients about n - 1 updates stale: Fig. 3's eta = 5e-4, near 2/L,
# diverges; a tenth of it converges for every k here
ASYNC_ETA = ETA / 10


class Workload(NamedTuple):
    name: str
    problem: problems.Problem
    policies: dict[str, policies.KPolicy]
    eta: float
    n: int


def fig3_workload(n: int = N, d: int = D, m: int = M, eta: float = ETA, pols: dict | None = None) -> Workload:
    """The adaptive paper's Fig. 3 (other n, d, m for ``scaling``)."""
    x, y, _ = data.synthetic_linear(m, d, 0)
    problem = problems.linear_regression(x, y, n)
    return Workload(f"adaptive Fig. 3: n={n}, d={d}, m={m}", problem, POLICIES if pols is None else pols, eta, n)


def logistic_workload() -> Workload:
    """Ten-class logistic regression on the digits, the Fig. 5 policies."""
    x, labels = data.load_digits()
    x, labels = data.subsample(x, labels, LOGISTIC_M, 0)
    problem = problems.logistic_regression(x, labels, LOGISTIC_N, LOGISTIC_REG, 10)
    name = f"logistic, digits: n={LOGISTIC_N}, d={x.shape[1]}, m={LOGISTIC_M}, 10 classes"
    return Workload(name, problem, LOGISTIC_POLICIES, LOGISTIC_ETA, LOGISTIC_N)


def mlp_workload() -> Workload:
    """An MLP classifier on the digits (see the module docstring)."""
    from .core import networks

    x, labels = data.load_digits()
    x, labels = data.subsample(x, labels, MLP_M, 0)
    problem = networks.mlp_classifier(x.astype(np.float32), labels, MLP_N, hidden=MLP_HIDDEN, num_classes=10)
    name = f"MLP {x.shape[1]}-{'-'.join(map(str, MLP_HIDDEN))}-10, digits: n={MLP_N}, m={MLP_M}"
    return Workload(name, problem, MLP_POLICIES, MLP_ETA, MLP_N)


def _mlp_sizes(problem: problems.LossProblem) -> tuple[int, ...]:
    """(d, hidden..., C) of an MLP's layers [(W, b), ...]: the weights are leaves 0, 2, ..."""
    weights = problem.layout.shapes[::2]
    return (weights[0][0], *(shape[1] for shape in weights))


def matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of a float32 size x size matrix product on the default device (best of repeats),
    in the precision the engine's products use (``engine.matmul_precision``: float32 unless the
    user chose another; JAX's default would be TF32 on a recent NVIDIA GPU)."""
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)

    def square(x):
        with products_precision():
            return x @ x

    product = jax.jit(square)
    product(a).block_until_ready()
    best = min(_timed(lambda: product(a).block_until_ready()) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def flops_per_iteration(problem: problems.Problem, k: float) -> tuple[float, float]:
    """(useful, performed) FLOPs of one iteration of fastest-k SGD with k gradients (see the
    module docstring): useful counts the k selected partial gradients and the error evaluation,
    performed the engine's dense partial gradients of all n shards and the same error."""
    n, s, d = problem.x.shape
    m = n * s
    if isinstance(problem, problems.LossProblem):  # an MLP: forward F per row, forward + backward 3 F
        from .core.networks import mlp_flops

        forward = mlp_flops(_mlp_sizes(problem))
        return 3 * forward * k * s + forward * m, 3 * forward * m
    if isinstance(problem, problems.LinearRegression):
        error = 2 * d * d + 2 * d if problem.hessian is not None else 2 * m * d
        return 4 * k * s * d + error, 4 * m * d + error
    c = problem.num_classes
    return 4 * k * s * d * c + 2 * m * d * c, 4 * m * d * c


def _configs(w: Workload):
    law = delays.make_law("exponential", rate=1.0)
    return stack_configs([SimConfig(p, np.float64(w.eta), law, np.ones(w.n)) for p in w.policies.values()])


class _CompileClock:
    """Seconds JAX spends tracing, lowering and compiling while active (``jax.monitoring``)."""

    def __init__(self):
        self.seconds = 0.0

    def __call__(self, event: str, duration: float, **_) -> None:
        if event.startswith("/jax/core/compile/"):
            self.seconds += duration

    def __enter__(self):
        jax.monitoring.register_event_duration_secs_listener(self)
        return self

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self)


def engine_rate(
    w: Workload, seeds: int, iterations: int, block: int | None = None, repeats: int = 2, scheme: str = "k_sync"
) -> tuple[float, float, engine.Simulation]:
    """(seed-iterations/s after compilation, compile seconds, the timed simulation). The first
    call compiles (its tracing, lowering and compilation are timed by JAX's own events), the
    next ``repeats``, on fresh seeds, are timed and the best is kept (the same call varied by
    +-25% from one run to the next on a shared 2-core machine). Another ``scheme`` than fastest-k
    runs with ``max_k`` the policies' largest k, as a study runs it."""
    configs = _configs(w)
    spec = RunSpec(n=w.n, chunk=iterations, metrics=problems.default_metrics(w.problem))
    if scheme != "k_sync":
        spec = spec._replace(scheme=scheme, max_k=max(policies.largest_k(p) for p in w.policies.values()))
    kwargs = {"seeds": seeds, "time_horizon": 1e-3, "spec": spec, "iterations": iterations - 1}
    if block is not None:
        kwargs["block"] = block
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "stopped after ... iterations": on purpose
        with _CompileClock() as clock:
            engine.simulate(w.problem, configs, **kwargs)
        best = math.inf
        for r in range(repeats):
            start = time.perf_counter()
            timed = engine.simulate(w.problem, configs, seed=1 + r, **kwargs)
            best = min(best, time.perf_counter() - start)
    rate = len(w.policies) * seeds * timed.iterations / best
    return rate, clock.seconds, timed


def reference_rate(w: Workload, seeds: int, iterations: int, repeats: int = 3) -> float:
    """Seed-iterations/s of the NumPy reference, each policy and seed in turn, on delays of the
    same law drawn with NumPy (the engine's own would cost a JAX trace of their own); the best
    of ``repeats`` passes, as the pass is short and the machine may be shared."""
    rng = np.random.default_rng(0)
    samples = [reference.draw_delays(rng, "exponential", {"rate": 1.0}, w.n, iterations) for _ in range(seeds)]
    if isinstance(w.problem, problems.LossProblem):
        return _mlp_reference_rate(w, samples, repeats)
    prob = reference.numpy_problem(w.problem, quadratic_error=True)  # arrays converted once
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for policy in w.policies.values():
            for delays_of_seed in samples:
                reference.simulate_run(prob, policy, w.eta, delays_of_seed)
        best = min(best, time.perf_counter() - start)
    return len(w.policies) * seeds * iterations / best


def _mlp_reference_rate(w: Workload, samples: list[np.ndarray], repeats: int) -> float:
    """``reference_rate`` of the MLP workload: fixed k only, the network from its initial layers."""
    from .reference.networks import simulate_mlp_run

    p = w.problem
    layers = p.params(p.init_params())
    init = [(np.asarray(a, np.float64), np.asarray(b, np.float64)) for a, b in layers]
    xs, ys = np.asarray(p.x, np.float64), np.asarray(p.y)
    ks = [int(np.asarray(policy.k0)) for policy in w.policies.values()]
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for k in ks:
            for delays_of_seed in samples:
                simulate_mlp_run(init, xs, ys, k, w.eta, delays_of_seed)
        best = min(best, time.perf_counter() - start)
    return len(ks) * len(samples) * samples[0].shape[0] / best


def measure(
    w: Workload,
    matmul: float,
    seeds: int,
    iterations: int,
    reference_seeds: int,
    reference_iterations: int,
    block: int | None = None,
) -> dict[str, Any]:
    """The engine and the reference on one workload (see the module docstring)."""
    rate, compile_s, timed = engine_rate(w, seeds, iterations, block)
    mean_k = float(np.mean(timed.summary.k.mean))
    ref = reference_rate(w, reference_seeds, reference_iterations)
    useful, performed = flops_per_iteration(w.problem, mean_k)
    stats = jax.devices()[0].memory_stats() or {}
    out = {
        "workload": f"{w.name}, {len(w.policies)} policies, {seeds} seeds x {timed.iterations} updates",
        "engine_seed_iters_per_s": rate,
        "reference_seed_iters_per_s": ref,
        "speedup_vs_reference": rate / ref,
        "compile_s": compile_s,
        "engine_run_s": len(w.policies) * seeds * timed.iterations / rate,
        "mean_k": mean_k,
        "useful_gflops": useful * rate / 1e9,
        "performed_gflops": performed * rate / 1e9,
        "matmul_gflops": matmul,
        "useful_fraction_of_matmul": useful * rate / 1e9 / matmul,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "block": timed.block,  # runs per block (the default: layout.default_block's rule)
        "load_average_1min_after": os.getloadavg()[0],
    }
    if "peak_bytes_in_use" in stats:
        out["peak_device_mb"] = stats["peak_bytes_in_use"] / 2**20
    return out


def async_workload(k: int) -> Workload:
    """The Fig. 3 problem with one fixed k, for ``k_batch_async`` (eta: ``ASYNC_ETA``)."""
    return fig3_workload(eta=ASYNC_ETA, pols={f"k={k}": policies.fixed(k)})


def async_reference_rate(w: Workload, seeds: int, iterations: int, repeats: int = 3) -> float:
    """Seed-iterations (updates)/s of the heap event reference on ``w``'s one fixed k, the
    problem converted once and exponential(1) durations drawn beforehand (outside the timing);
    the best of ``repeats`` passes."""
    (policy,) = w.policies.values()
    k = int(np.asarray(policy.k0))
    rng = np.random.default_rng(0)
    durations = [event_reference.draw_durations(rng, w.n, k, iterations) for _ in range(seeds)]
    prob = event_reference.prepare(w.problem)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for d in durations:
            event_reference.simulate_async_run(prob, k, w.eta, d)
        best = min(best, time.perf_counter() - start)
    return seeds * iterations / best


def measure_async(
    w: Workload,
    seeds: int,
    iterations: int,
    reference_seeds: int,
    reference_iterations: int,
    block: int | None = None,
) -> dict[str, Any]:
    """The engine's ``k_batch_async`` against the heap reference on one fixed-k workload."""
    (policy,) = w.policies.values()
    rate, compile_s, timed = engine_rate(w, seeds, iterations, block, scheme=ASYNC_SCHEME)
    ref = async_reference_rate(w, reference_seeds, reference_iterations)
    return {
        "k": int(np.asarray(policy.k0)),
        "workload": "fig3",
        "description": f"{w.name}, {ASYNC_SCHEME}, eta={w.eta:g}, {seeds} seeds x {timed.iterations} updates",
        "engine_seed_iters_per_s": rate,
        "reference_seed_iters_per_s": ref,
        "speedup_vs_reference": rate / ref,
        "compile_s": compile_s,
        "engine_run_s": seeds * timed.iterations / rate,
    }


def run(
    seeds: int = 1024,
    iterations: int = 300,
    reference_seeds: int = 2,
    reference_iterations: int = 300,
    logistic: bool = True,
    block: int | None = None,
    matmul_size: int = 2048,
    logistic_iterations: int | None = None,
    mlp: bool = True,
    asynchronous: bool = True,
) -> dict[str, Any]:
    """Measure the engine and the reference on the Fig. 3 workload (top-level keys) and the
    logistic one (``"logistic"``, for ``logistic_iterations`` updates, default a third of
    ``iterations``: its updates cost ~6x Fig. 3's), the MLP (``"mlp"``) and the asynchronous
    scheme against the heap reference (``"async"``); see the module docstring."""
    matmul = matmul_gflops(matmul_size)
    report = {
        "device": str(jax.devices()[0].device_kind),
        "prng": str(jax.config.jax_default_prng_impl),
        "matmul_precision": engine.matmul_precision(),  # of the engine's and the matmul's float32 products
        "load_average_1min": os.getloadavg()[0],  # other processes on the machine slow both sides
        **measure(fig3_workload(), matmul, seeds, iterations, reference_seeds, reference_iterations, block),
    }
    if logistic:
        w = logistic_workload()
        its = logistic_iterations or max(1, iterations // 3)
        report["logistic"] = measure(w, matmul, seeds, its, reference_seeds, max(1, reference_iterations // 3), block)
    if mlp:  # an update costs ~60x Fig. 3's: a sixteenth of the seeds, a third of the updates
        w = mlp_workload()
        its = max(1, (logistic_iterations or iterations) // 3)
        report["mlp"] = measure(
            w, matmul, max(1, seeds // 16), its, reference_seeds, max(1, reference_iterations // 6), block
        )
    if asynchronous:  # one policy each, the Fig. 3 sizes; the reference with 5x the seeds (no policy loop)
        report["async"] = {
            f"k={k}": measure_async(
                async_workload(k), seeds, iterations, 5 * reference_seeds, reference_iterations, block
            )
            for k in ASYNC_KS
        }
    return report


def format_report(r: dict[str, Any]) -> str:
    lines = [f"on {r['device']}; float32 matmul {r['matmul_gflops']:.1f} GFLOP/s"]
    for part in (r, r.get("logistic"), r.get("mlp")):
        if part is None:
            continue
        engine_line = f"  engine     {part['engine_seed_iters_per_s']:12,.0f} seed-iterations/s"
        engine_line += f"  ({part['engine_run_s']:.1f} s; {part['compile_s']:.1f} s compiling)"
        useful_line = f"  useful     {part['useful_gflops']:12.2f} GFLOP/s"
        useful_line += f" = {part['useful_fraction_of_matmul']:.2f} x the matmul"
        useful_line += f"  (performed {part['performed_gflops']:.1f} GFLOP/s)"
        lines += [
            part["workload"],
            engine_line,
            f"  reference  {part['reference_seed_iters_per_s']:12,.0f} seed-iterations/s  (NumPy, one process)",
            f"  speedup    {part['speedup_vs_reference']:12.1f} x",
            useful_line,
            f"  peak RSS   {part['peak_rss_mb']:12.0f} MB",
        ]
    for part in (r.get("async") or {}).values():
        engine_line = f"  engine     {part['engine_seed_iters_per_s']:12,.0f} seed-iterations/s"
        engine_line += f"  ({part['engine_run_s']:.1f} s; {part['compile_s']:.1f} s compiling)"
        lines += [
            f"async k={part['k']}: {part['description']}",
            engine_line,
            f"  reference  {part['reference_seed_iters_per_s']:12,.0f} seed-iterations/s  (NumPy + heapq events)",
            f"  speedup    {part['speedup_vs_reference']:12.1f} x",
        ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- scaling

SCALING_SEEDS = (1, 4, 16, 64, 256, 1024, 4096)
SCALING_NS = (10, 25, 50, 100, 200)
SCALING_DS = (25, 50, 100, 200, 400)
SCALING_CONFIGS = (1, 5, 20, 80)


def _scaled_policies(n: int) -> dict[str, policies.KPolicy]:
    """Fig. 3's five policies with k at the same fractions of n (n/5, ..., 4n/5)."""
    step = max(1, n // 5)
    out = {f"k={k}": policies.fixed(k) for k in (step, 2 * step, 3 * step, 4 * step)}
    out[f"adaptive {step}->{4 * step}"] = policies.adaptive(step, 4 * step, thresh=10, burnin=200, step=step)
    return out


def _point(w: Workload, seeds: int, work: float, block: int | None) -> dict[str, Any]:
    """The engine's rate on ``w`` with ``seeds`` seeds per policy, for about ``work`` FLOPs (the
    dense partial gradients and the error; 20 to 300 updates)."""
    performed = flops_per_iteration(w.problem, 1)[1]
    iterations = int(np.clip(work / (performed * len(w.policies) * seeds), 20, 300))
    rate, compile_s, _ = engine_rate(w, seeds, iterations, block)
    return {
        "seeds": seeds,
        "configs": len(w.policies),
        "iterations": iterations,
        "seed_iters_per_s": rate,
        "performed_gflops": performed * rate / 1e9,  # the cost model: flops_per_iteration
        "compile_s": compile_s,
    }


def _many_policies(count: int) -> dict[str, policies.KPolicy]:
    """``count`` fixed-k configurations, k cycling through 10, 20, 30, 40 (Fig. 3's n = 50)."""
    return {f"#{c} k={10 * (1 + c % 4)}": policies.fixed(10 * (1 + c % 4)) for c in range(count)}


def scaling(
    out: Path | str = "results/bench-scaling",
    seeds: tuple[int, ...] = SCALING_SEEDS,
    ns: tuple[int, ...] = SCALING_NS,
    ds: tuple[int, ...] = SCALING_DS,
    configs: tuple[int, ...] = SCALING_CONFIGS,
    sweep_seeds: int = 256,
    work: float = 2e11,
    block: int | None = None,
    progress=None,
) -> dict[str, Any]:
    """Seed-iterations/s of the engine on the Fig. 3 workload against S (n = 50, d = 100), n
    (m = 40 n, k at the same fractions of n, S = ``sweep_seeds``) and d (n = 50, m = 2000, eta
    scaled as 1/d with the curvature) and the number of configurations C (fixed k, S = ``sweep_seeds`` // 4
    seeds each), each point for about ``work`` FLOPs, with its performed GFLOP/s (the cost model of
    ``flops_per_iteration``: 4 m d + 2 d^2 + 2 d per seed-iteration, whatever k). Writes ``scaling.json``, ``scaling.csv`` and
    ``scaling.png``/``.pdf`` into ``out``; returns what the JSON holds."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _: None)
    rows: list[dict[str, Any]] = []
    base = fig3_workload()
    for s in seeds:
        rows.append({"axis": "seeds", "n": N, "d": D, "m": M, **_point(base, s, work, block)})
        say(rows[-1])
    for n in ns:
        w = fig3_workload(n=n, m=40 * n, pols=_scaled_policies(n))
        rows.append({"axis": "n", "n": n, "d": D, "m": 40 * n, **_point(w, sweep_seeds, work, block)})
        say(rows[-1])
    for d in ds:
        w = fig3_workload(d=d, eta=ETA * D / d)
        rows.append({"axis": "d", "n": N, "d": d, "m": M, **_point(w, sweep_seeds, work, block)})
        say(rows[-1])
    for c in configs:
        w = fig3_workload(pols=_many_policies(c))
        rows.append({"axis": "configs", "n": N, "d": D, "m": M, **_point(w, max(1, sweep_seeds // 4), work, block)})
        say(rows[-1])
    result = {
        "device": str(jax.devices()[0].device_kind),
        "policies": len(POLICIES),
        "sweep_seeds": sweep_seeds,
        "block": block or "default_block's rule",  # runs per block (64 for every point here on CPU)
        "points": rows,
    }
    (out / "scaling.json").write_text(json.dumps(result, indent=1))
    with open(out / "scaling.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _scaling_figure(result, out / "scaling")
    return result


def _scaling_figure(result: dict[str, Any], prefix: Path) -> None:
    from .analysis.plotting import plt, save_figure

    rows = result["points"]
    axes_present = [a for a in ("seeds", "n", "d", "configs") if any(r["axis"] == a for r in rows)]
    labels = {
        "seeds": "seeds per policy S (n = 50, d = 100)",
        "n": f"workers n (m = 40 n, S = {result['sweep_seeds']})",
        "d": "dimension d",
        "configs": f"configurations C (S = {max(1, result['sweep_seeds'] // 4)})",
    }
    fig, axes = plt.subplots(1, len(axes_present), figsize=(3.4 * len(axes_present), 3.2), constrained_layout=True)
    for ax, axis in zip(np.atleast_1d(axes), axes_present):
        label = labels[axis]
        pts = [r for r in rows if r["axis"] == axis]
        xs = [r[axis] for r in pts]
        ax.plot(xs, [r["seed_iters_per_s"] for r in pts], "o-", color="C0")
        if all("performed_gflops" in r for r in pts):  # right axis: the cost model's GFLOP/s
            twin = ax.twinx()
            twin.plot(xs, [r["performed_gflops"] for r in pts], "s--", color="C1", ms=3)
            twin.set_ylim(bottom=0)
            twin.tick_params(labelsize=7, colors="C1")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(label, fontsize=8)
        ax.grid(True, which="major", lw=0.3, alpha=0.5)
        ax.tick_params(which="both", labelsize=7)
    np.atleast_1d(axes)[0].set_ylabel(f"seed-iterations / s ({result['policies']} policies)", fontsize=8)
    fig.suptitle(f"fastk-jax engine throughput, Fig. 3 workload, {result['device']}", fontsize=9)
    save_figure(fig, prefix)
