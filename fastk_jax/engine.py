"""The engine: many runs of fastest-k SGD as one compiled ``lax.scan`` over runs in blocks.

A run is one configuration (policy, step size, delay parameters; C of them, of one shape)
with one seed (S of them): C x S runs. One run is a scan of ``schemes.step`` (fastest-k SGD
or an asynchronous variant) that records itself on fixed grids (``curves``). Runs advance in
chunks of ``spec.chunk`` iterations, each chunk one call of a program jitted once per static
``RunSpec`` and array shapes; between chunks the host checks whether every run has passed the
time horizon and reports progress. A second study of the same shapes reuses the program
(``trace_count`` tells how often it was traced).

**Blocks.** The runs are laid out in blocks of ``block`` runs (``RunLayout``): the chunk's scan
is vmapped over the runs of a block, and the blocks step in turn (``lax.map``) inside the same
compiled call. This is for two reasons, both measured:

* *Bits.* XLA:CPU chooses its kernels (and so the order of a product's sums) for a product
  batched over runs by the batch size; vmapping over all C x S runs made a seed's trajectory
  depend on how many runs were beside it (five bit-classes for S = 1 ... 256 on Fig. 3's
  problem, up to 1e-6 relative). Every product is now batched over exactly ``block`` runs
  whatever C and S, so a run's numbers depend on its configuration, its seed (``fold_in``) and
  the block size, and on nothing else: not on C, S, the chunk size, the number of calls or of
  devices. The block size is the platform's default (``default_block``) unless asked for, and
  results record it.
* *Speed.* A block's working set stays in cache for the whole chunk: on a 2-core CPU, Fig. 3's
  five policies x 1024 seeds ran at about 110k seed-iterations/s in blocks of 64 or 128 runs
  and 82k as one batch of 5120 (``default_block``).

Runs are placed in the order (configuration, seed); the last block is padded with copies of
the last run (computed, then dropped), so a small study costs at least one block.

**Devices and calls.** The lanes of every block are sharded over the devices (a one-axis
``Mesh``; with ``FASTK_DISTRIBUTED=1``, ``jax.distributed`` joins every host's devices), each
device stepping ``block`` runs at a time. When all runs do not fit in memory (``run_layout``,
the memory guard), they run in several calls per chunk, in turn, each on as many blocks as
fit. Then every run's curves are gathered to the host and summarized once over all seeds by
the same function, so calls cannot change how seeds are reduced, and the stopping rule (every
run past the horizon) is that of a single call. One device with every run in one call leaves
nothing but the summary on its way out.

**Checkpoints.** With a ``checkpoint.Slot``, the state after a chunk (every call's carry, PRNG
keys as key data, and the iteration count) goes to disk atomically, and a later call with the
same arguments resumes from it; the chunk program is deterministic given the carry, so the
result is that of an uninterrupted run, bit for bit.
"""

from __future__ import annotations

import functools
import math
import os
import time as _time
import warnings
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from . import curves, policies, schemes
from .checkpoint import Slot, fingerprint, versions
from .curves import Grids, RunCurves, Summary
from .errors import ConfigError, FastkError
from .problems import Problem, full_loss
from .spec import RunSpec, SimConfig, seed_key
from .theory.order_stats import order_statistic_moments

Array = jax.Array

_traces = {"advance": 0}


def trace_count() -> int:
    """How many times the chunk function has been traced (compiled) in this process."""
    return _traces["advance"]


class Carry(NamedTuple):
    state: schemes.State  # leaves (blocks, lanes, ...): one run per (block, lane)
    curves: RunCurves  # leaves (blocks, lanes, ...)


def _over_blocks(one_run: Callable, *per_lane):
    """``one_run`` applied to every run: vmapped over the lanes of a block (axis 1), the blocks
    in turn (``lax.map`` over axis 0). Every product XLA compiles is thus batched over exactly
    ``lanes / devices`` runs, whatever the number of runs: the choice of kernel, and so the bits
    of each run, depends on the block size only (see the module docstring)."""
    return jax.lax.map(lambda block: jax.vmap(one_run)(*block), per_lane)


def _config_of(configs: SimConfig, c: Array) -> SimConfig:
    return jax.tree.map(lambda x: x[c], configs)


@partial(jax.jit, static_argnames=("spec",), donate_argnums=(0,))
def _advance(carry: Carry, run_config: Array, configs: SimConfig, problem: Problem, grids: Grids, spec: RunSpec):
    """``spec.chunk`` updates of every run; ``run_config`` (blocks, lanes): each run's row of ``configs``."""
    _traces["advance"] += 1
    tx = spec.transform()

    def one_run(carry: Carry, c: Array):
        config = _config_of(configs, c)

        def body(run: Carry, _):
            state, out = schemes.step(run.state, config, problem, tx, spec)
            trajectory = out if spec.keep_trajectories else None
            return Carry(state, curves.record(run.curves, grids, out)), trajectory

        return jax.lax.scan(body, carry, None, length=spec.chunk)

    return _over_blocks(one_run, carry, run_config)


def _init_impl(
    configs: SimConfig, problem: Problem, grids: Grids, seed: Array, run_config: Array, run_seed: Array, spec: RunSpec
) -> Carry:
    """Every run before its first update: run (b, l) is seed ``run_seed[b, l]`` of
    configuration ``run_config[b, l]``."""
    tx = spec.transform()

    def one_run(c: Array, s: Array) -> Carry:
        state = schemes.init(problem, _config_of(configs, c), tx, seed_key(seed, s), spec)
        return Carry(state, curves.init(grids, state.w.dtype, spec.staleness_bins))

    return _over_blocks(one_run, run_config, run_seed)


_init = jax.jit(_init_impl, static_argnames=("spec",))


def by_config(x, num_configs: int, seeds: int):
    """Runs laid out in blocks, (blocks, lanes, ...), as (C, S, ...): position
    p = block * lanes + lane holds seed p % S of configuration p // S; positions past C x S are
    padding and are dropped."""
    flat = x.reshape((-1,) + x.shape[2:])
    return flat[: num_configs * seeds].reshape((num_configs, seeds) + flat.shape[1:])


@partial(jax.jit, static_argnames=("num_configs", "seeds"))
def _summarize(carry: Carry, grids: Grids, num_configs: int, seeds: int) -> Summary:
    runs = jax.tree.map(lambda x: by_config(x, num_configs, seeds), carry)
    return curves.summarize(runs.curves, runs.state.time, runs.state.iteration, grids)


def mean_iteration_time(config: SimConfig, spec: RunSpec, k: int) -> float:
    """The mean time per update of one (unstacked) configuration with k fixed, used only to
    pick the default number of iterations: E[X_(k:n)] (``theory.order_stats``; Lemma 4 of the
    async paper) for the schemes where a learner pushes once per iteration, and k over the
    learners' total push rate sum_i 1 / (s_i E[X_i]) for the batch schemes (k E[X] / n when iid,
    Lemma 5; a trace's workers have their own means)."""
    slowdown = np.asarray(config.slowdown, np.float64)
    # Markov stragglers: every delay by the chain's stationary mean factor (an approximation:
    # the k-th fastest of a mixture is not the mixture of the k-th fastest)
    slowdown = slowdown * float(np.asarray(config.straggle.mean_factor()))
    if schemes.is_batch(spec):
        means = getattr(config.delay, "worker_means", config.delay.mean)()
        return k / float(np.sum(1.0 / (slowdown * np.broadcast_to(np.asarray(means, np.float64), slowdown.shape))))
    iid = bool(np.all(slowdown == 1.0))
    return order_statistic_moments(config.delay, k, spec.n, slowdown=None if iid else slowdown).mean


DEFAULT_BLOCK = {"cpu": 64}  # runs per block by platform; accelerators: ACCELERATOR_BLOCK
ACCELERATOR_BLOCK = 4096


def default_block(platform: str) -> int:
    """Runs per block when none is asked for: 64 on CPU, 4096 on accelerators. On a 2-core CPU,
    Fig. 3's five policies x 1024 seeds ran at about 73k, 98k, 110k and 110k seed-iterations/s
    in blocks of 16, 32, 64 and 128 runs (82k in one block of 5120: the working set leaves the
    cache), and its 5 x 20 seeds (the default study: 128 positions for 100 runs) at 65k, 81k
    and 82k in blocks of 32, 64 and 128. A study pays for at least one whole block, so smaller
    is cheaper for a few runs. On a GPU the size is not measured (none was lent): a GPU wants
    enough runs per kernel to fill it."""
    return DEFAULT_BLOCK.get(platform, ACCELERATOR_BLOCK)


def memory_estimate(
    problem: Problem, spec: RunSpec, runs: int, grid_points: int, iteration_grid_points: int, block: int = 1
) -> int:
    """Bytes ``runs`` runs need on one device, roughly and on the high side: the problem's arrays; per run
    its state (model, optimizer state, Algorithm 1's previous gradient, the learners' models of
    the asynchronous schemes), twice for a chunk's input and output, and its curves; and the
    temporaries of one block of ``block`` runs stepping (a value per data row and per class, the
    pushes' delays and mini-batches, a gradient per learner): blocks step one at a time. Kept
    trajectories are not counted (they go to the host)."""
    p = problem.num_params
    rows = problem.x.shape[0] * problem.x.shape[1]
    classes = max(1, p // problem.x.shape[-1])
    optimizer_vectors = {"sgd": 0, "momentum": 1, "nesterov": 1, "adam": 2}[spec.optimizer]
    state = 2 * (2 + optimizer_vectors) * p + 2 * (5 * grid_points + iteration_grid_points) + spec.staleness_bins
    pushes = spec.n * schemes.pushes_per_learner(spec)
    step = 2 * rows * classes + pushes * (1 + spec.batch_size * classes)
    if not schemes.cancels(spec):  # each learner's model and mini-batch (state); a gradient per learner
        state += 2 * spec.n * (p + spec.batch_size)
        step += spec.n * p
    data = sum(np.asarray(leaf).nbytes for leaf in jax.tree.leaves(problem))  # X, y, X^T X, ...
    return data + problem.x.dtype.itemsize * (runs * state + min(block, runs) * step)


def available_memory() -> int:
    """Bytes the default device can hold: its memory limit on an accelerator, physical memory on CPU."""
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def reach_levels(initial_error: float) -> np.ndarray:
    """The error levels whose first reaching every run records: five per decade, from the
    initial error down over twelve decades."""
    return max(initial_error, 1e-30) * np.logspace(0.0, -12.0, 61)


def summary_memory(runs: int, grid_points: int, iteration_grid_points: int, staleness_bins: int) -> int:
    """Bytes of every run's curves, gathered for the summary over all seeds at once (host and
    default device), with the summary's temporaries: about three copies."""
    per_run = 5 * grid_points + iteration_grid_points + 3 * reach_levels(1.0).size + staleness_bins + 1
    return 4 * 3 * runs * per_run


class RunLayout(NamedTuple):
    """How the C x S runs are laid out: in blocks of ``block`` runs per device (the vmapped
    batch of every compiled product), ``blocks`` of them per device per call (stepped in turn
    inside the compiled chunk), over ``devices`` devices, in ``batches`` calls per chunk (more
    than one only when all runs do not fit in memory). Positions past C x S are padding:
    copies of the last run, computed and dropped."""

    block: int
    devices: int
    blocks: int
    batches: int

    @property
    def lanes(self) -> int:  # runs per block over all devices
        return self.block * self.devices

    @property
    def per_call(self) -> int:
        return self.blocks * self.lanes


def call_memory(
    problem: Problem,
    spec: RunSpec,
    runs: int,
    blocks: int,
    grid_points: int,
    iteration_grid_points: int,
    devices: int = 1,
    block: int = 64,
) -> int:
    """Bytes a device needs to run ``blocks`` blocks of ``block`` runs per call (of ``runs`` in
    all): their state and one block's temporaries (``memory_estimate``), and every run's curves
    gathered for the summary (``summary_memory``) unless one call on one device holds all."""
    gathered = blocks < -(-runs // (block * devices)) or devices > 1
    curves = summary_memory(runs, grid_points, iteration_grid_points, spec.staleness_bins) if gathered else 0
    return memory_estimate(problem, spec, blocks * block, grid_points, iteration_grid_points, block) + curves


def run_layout(
    problem: Problem,
    spec: RunSpec,
    runs: int,
    grid_points: int,
    iteration_grid_points: int,
    devices: int = 1,
    block: int = 64,
) -> RunLayout:
    """The memory guard: every run in one call (``ceil(runs / (block x devices))`` blocks per
    device) when that fits in 80% of a device's memory (``memory_estimate``), else the largest
    number of blocks per device that fits, as evenly as the calls allow. Raises ConfigError
    when even one block per device does not fit beside the data and every run's curves."""
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise ConfigError("run.block", f"must be an integer >= 1, got {block!r}")
    budget = 0.8 * available_memory()
    whole = -(-runs // (block * devices))

    def need(blocks: int) -> int:
        return call_memory(problem, spec, runs, blocks, grid_points, iteration_grid_points, devices, block)

    blocks = whole
    if need(blocks) > budget and blocks > 1:
        per_block = need(2) - need(1)
        fits = max(1, int((budget - need(1)) // per_block) + 1) if per_block > 0 else 1
        batches = -(-whole // fits)
        blocks = -(-whole // batches)
    if need(blocks) > budget:
        raise ConfigError(
            "run.seeds",
            f"{runs} runs need about {need(blocks) / 2**30:.3g} GiB with {blocks * block} runs per device at a "
            f"time, more than 80% of the {budget / 0.8 / 2**30:.3g} GiB available; use fewer seeds, grid "
            "points or a smaller run.block",
        )
    return RunLayout(block, devices, blocks, -(-whole // blocks))


def _is_key(x) -> bool:
    return jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _gather(x: Array) -> np.ndarray:
    """A (possibly sharded, possibly multi-host) array as a fresh numpy array on this host."""
    if jax.process_count() > 1 and not x.is_fully_addressable:  # pragma: no cover (multi-host only)
        from jax.experimental import multihost_utils

        return np.array(multihost_utils.process_allgather(x, tiled=True))
    return np.array(x, copy=True)  # a copy: the device buffer is donated to the next chunk


def to_host(carry: Carry) -> list[np.ndarray]:
    """The carry's leaves as numpy arrays, PRNG keys as their raw key data (checkpoints, calls beyond the first)."""
    return [_gather(jax.random.key_data(x) if _is_key(x) else x) for x in jax.tree.leaves(carry)]


def to_device(leaves: list[np.ndarray], like: Carry, sharding) -> Carry:
    """Inverse of ``to_host``: ``like`` (an abstract carry, ``jax.eval_shape`` of ``_init``) gives
    the structure and which leaves are keys; leaves go on ``sharding`` (None: the default device)."""
    abstract, treedef = jax.tree.flatten(like)
    out = []
    for host, a in zip(leaves, abstract):
        x = (
            jnp.asarray(host)
            if sharding is None
            else jax.make_array_from_callback(host.shape, sharding, host.__getitem__)
        )
        out.append(jax.random.wrap_key_data(x) if _is_key(a) else x)
    return jax.tree.unflatten(treedef, out)


def _host_shapes(like: Carry) -> list[tuple[tuple[int, ...], np.dtype]]:
    return [
        (tuple(s.shape), np.dtype(s.dtype))
        for s in (jax.eval_shape(jax.random.key_data, a) if _is_key(a) else a for a in jax.tree.leaves(like))
    ]


@functools.cache
def _sharded_init(sharding):
    return jax.jit(_init_impl, static_argnames=("spec",), out_shardings=sharding)


def init_distributed() -> bool:
    """Start ``jax.distributed`` when ``FASTK_DISTRIBUTED=1`` (before any JAX computation): every
    host's devices then join one mesh and the seed axis is sharded over all of them. The
    coordinator, process count and id come from ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``
    and ``JAX_PROCESS_ID`` where set, else from what ``jax.distributed.initialize`` detects (a
    cluster environment such as SLURM). Returns whether it started. Tested with one process
    only: several hosts are not tested."""
    if os.environ.get("FASTK_DISTRIBUTED", "") not in ("1", "true", "yes"):
        return False
    if jax.distributed.is_initialized():
        return True
    names = {"coordinator_address": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES"}
    kwargs = {
        arg: os.environ[var] for arg, var in {**names, "process_id": "JAX_PROCESS_ID"}.items() if var in os.environ
    }
    try:
        kwargs.update({arg: int(kwargs[arg]) for arg in ("num_processes", "process_id") if arg in kwargs})
        jax.distributed.initialize(**kwargs)
    except (ValueError, RuntimeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FastkError(f"FASTK_DISTRIBUTED=1 but jax.distributed.initialize failed: {msg}") from None
    return True


class Progress(NamedTuple):
    """Passed to the progress callback after each chunk."""

    fraction: float  # of the work, by the slowest run
    iterations: int
    elapsed_s: float
    remaining_s: float  # estimate; nan before the first chunk


def share_progress(progress: Callable[[Progress], None] | None, offset: float, share: float):
    """A callback for one part of a larger job (the part is ``share`` of it, from ``offset``):
    forwards each report to ``progress`` with the fraction of the whole job."""
    if progress is None:
        return None
    return lambda p: progress(p._replace(fraction=offset + share * p.fraction))


class Simulation(NamedTuple):
    """What ``simulate`` returns: grids, the seed-averaged summary, optional trajectories."""

    time_grid: np.ndarray  # (G,)
    iteration_grid: np.ndarray  # (Gi,)
    levels: np.ndarray  # (L,) error levels of summary.reach_*
    summary: Summary  # numpy leaves, leading axis C
    iterations: int  # iterations each run made
    initial_error: float
    compile_s: float  # tracing + compilation of the chunk function (0 if reused; with one chunk, includes its run)
    run_s: float
    trajectories: schemes.Out | None  # leaves (C, S, iterations, ...) if kept
    resumed_from: int = 0  # iterations restored from a checkpoint (0: a fresh run)
    block: int = 0  # runs per block (a run's numbers depend on it; ``default_block``)


def simulate(
    problem: Problem,
    configs: SimConfig,
    *,
    seeds: int,
    time_horizon: float,
    spec: RunSpec,
    seed: int = 0,
    iterations: int | None = None,
    grid_points: int = 200,
    iteration_grid_points: int = 200,
    divergence_factor: float = 1e6,
    max_iterations: int | None = None,
    progress: Callable[[Progress], None] | None = None,
    block: int | None = None,
    devices: list | None = None,
    checkpoint: Slot | None = None,
) -> Simulation:
    """Run ``seeds`` runs of every configuration in ``configs`` (stacked, leading axis C).

    Runs go on until every run's clock has passed ``time_horizon`` and every run has made
    ``iterations`` updates (default: as many as the fastest configuration needs, by a Monte
    Carlo estimate of its mean iteration time, to reach the horizon), and at most
    ``max_iterations`` (default 20 x that). A run whose error exceeds ``divergence_factor``
    times the initial error, or is not finite, counts as diverged.

    **Runs, blocks and devices.** The C x S runs step in blocks of ``block`` runs per device
    (default ``default_block`` of the platform), the blocks of a call in turn inside the
    compiled chunk, the lanes of a block sharded over ``devices`` (default: every device,
    ``jax.devices()``; with ``FASTK_DISTRIBUTED=1`` those of every host). A run's numbers depend
    on its configuration, its seed and the block size only: not on how many runs are beside it,
    how many devices or calls (the memory guard, ``run_layout``) they take, or the chunk size.

    **Checkpoints.** With ``checkpoint`` (a ``checkpoint.Slot``) the state after a chunk is
    saved (every ``checkpoint.every_s`` seconds, and at the end) and a later call with the same
    arguments resumes from it, bit for bit. Trajectories are not checkpointed.
    """
    schemes.check(spec)
    num_configs = int(np.shape(configs.eta)[0])
    runs = num_configs * seeds
    devices = list(jax.devices() if devices is None else devices)
    block = default_block(devices[0].platform) if block is None else block
    layout = run_layout(problem, spec, runs, grid_points, iteration_grid_points, len(devices), block)
    if layout.batches > 1:
        warnings.warn(
            f"{num_configs} configurations x {seeds} seeds do not fit in memory at once: running them in "
            f"{layout.batches} calls of {layout.per_call} runs (the same numbers: blocks of {block} runs fix them)",
            stacklevel=2,
        )
    if checkpoint is not None and spec.keep_trajectories:
        raise ValueError("trajectories are not checkpointed: use checkpoint=None with keep_trajectories")
    first_k = [int(k) for k in np.asarray(configs.policy.k0)]
    if spec.max_k is not None:
        largest = max(policies.largest_k(jax.tree.map(lambda x, c=c: x[c], configs.policy)) for c in range(num_configs))
        if largest > spec.max_k:
            raise ConfigError("max_k", f"a policy reaches k={largest} > spec.max_k={spec.max_k}")
    fastest_mean = min(
        mean_iteration_time(jax.tree.map(lambda x, c=c: x[c], configs), spec, first_k[c]) for c in range(num_configs)
    )
    if iterations is None:
        iterations = max(1, math.ceil(time_horizon / fastest_mean))
    if max_iterations is None:
        max_iterations = 20 * iterations + spec.chunk
    initial_error = float(full_loss(problem, problem.init_params()) - problem.f_star)

    grids = Grids(
        time=jnp.linspace(0.0, time_horizon, grid_points),
        iteration=jnp.unique(jnp.linspace(0, iterations, iteration_grid_points).round().astype(jnp.int32)),
        error_limit=jnp.asarray(divergence_factor * max(initial_error, 1e-30)),
        levels=jnp.asarray(reach_levels(initial_error)),
    )
    seed_arr = jnp.asarray(seed, jnp.uint32)

    # position p of call b's (blocks, lanes) arrays holds run min(p, runs - 1): seed % S of configuration // S
    position = np.minimum(np.arange(layout.batches * layout.per_call), runs - 1).reshape(
        layout.batches, layout.blocks, layout.lanes
    )
    sharding = None
    if layout.devices > 1:
        sharding = NamedSharding(Mesh(np.asarray(devices), ("runs",)), PartitionSpec(None, "runs"))

    def put(x: np.ndarray) -> Array:
        x = np.asarray(x, np.int32)
        return jnp.asarray(x) if sharding is None else jax.make_array_from_callback(x.shape, sharding, x.__getitem__)

    run_config = [put(p // seeds) for p in position]
    run_seed = [put(p % seeds) for p in position]
    init = partial(_init if sharding is None else _sharded_init(sharding), spec=spec)
    like = jax.eval_shape(init, configs, problem, grids, seed_arr, run_config[0], run_seed[0])

    def fresh(b: int) -> Carry:
        return init(configs, problem, grids, seed_arr, run_config[b], run_seed[b])

    key = restored = None
    if checkpoint is not None:
        key = fingerprint(
            {
                "spec": repr(spec),
                "seeds": seeds,
                "seed": seed,
                "time_horizon": float(time_horizon),
                "iterations": iterations,
                "max_iterations": max_iterations,
                "grid_points": grid_points,
                "iteration_grid_points": iteration_grid_points,
                "divergence_factor": float(divergence_factor),
                "layout": list(layout),
                "platform": devices[0].platform,
                "key_impl": str(jax.random.key_impl(jax.random.key(0))),
                "versions": versions(),
            },
            problem,
            configs,
        )
        restored = checkpoint.load(key)
        if restored is not None:
            expected = _host_shapes(like)
            got = [[(tuple(a.shape), a.dtype) for a in leaves] for leaves in restored[0]]
            if len(got) != layout.batches or any(g != expected for g in got):
                warnings.warn(f"checkpoint {checkpoint.path} does not fit this run; starting over", stacklevel=2)
                restored = None

    # carries[b]: call b's state, on the device(s) while it is the only call, else on the host
    single = layout.batches == 1
    run_s_before, done_iterations = 0.0, 0
    if restored is not None:
        batches, meta = restored
        carries = [to_device(batches[0], like, sharding)] if single else batches
        done_iterations, run_s_before = int(meta["iterations"]), float(meta["run_s"])
    else:
        carries = [fresh(0)] if single else [to_host(fresh(b)) for b in range(layout.batches)]
    resumed_from = done_iterations

    one_call = layout.devices == 1 and single  # nothing leaves the device but the summary

    def host_carry(b: int) -> Carry:  # call b as a Carry of numpy leaves (keys as key data)
        return jax.tree.unflatten(jax.tree.structure(like), to_host(carries[b]) if single else carries[b])

    def slowest_clock() -> float:  # padding copies a real run, so the minimum over all positions is that of the runs
        if single:
            return float(jnp.min(carries[0].state.time))  # on the device(s); also waits for the chunk to finish
        return float(min(np.min(host_carry(b).state.time) for b in range(layout.batches)))

    def save(finished: bool) -> None:
        batches = [to_host(carries[0])] if single else carries
        run_s = run_s_before + _time.perf_counter() - start
        checkpoint.save(key, batches, {"iterations": done_iterations, "run_s": run_s, "finished": finished})

    start, traced = _time.perf_counter(), trace_count()
    kept, chunk_s = [], []
    slowest = slowest_clock() if done_iterations else -math.inf

    def finished() -> bool:
        return slowest > time_horizon and done_iterations > iterations

    while not (done_iterations and (finished() or done_iterations >= max_iterations)):
        t0 = _time.perf_counter()
        trajectories = []
        for b in range(layout.batches):
            carry = carries[b] if single else to_device(carries[b], like, sharding)
            carry, trajectory = _advance(carry, run_config[b], configs, problem, grids, spec=spec)
            carries[b] = carry if single else to_host(carry)
            if spec.keep_trajectories:
                trajectories.append(jax.tree.map(_gather, trajectory))
        slowest = slowest_clock()
        chunk_s.append(_time.perf_counter() - t0)
        done_iterations += spec.chunk
        if spec.keep_trajectories:
            kept.append(
                jax.tree.map(lambda *xs: by_config(np.concatenate(xs, axis=0), num_configs, seeds), *trajectories)
            )
        stop = finished() or done_iterations >= max_iterations
        if checkpoint is not None and (stop or checkpoint.due()):
            save(finished=stop)
        if progress is not None:
            fraction = min(1.0, slowest / time_horizon, done_iterations / (iterations + 1))
            elapsed = _time.perf_counter() - start
            done_before = min(1.0, resumed_from / (iterations + 1))
            rate = (fraction - done_before) / elapsed if elapsed > 0 else 0.0
            remaining = (1 - fraction) / rate if rate > 0 else math.nan
            progress(
                Progress(1.0 if finished() else fraction, done_iterations, elapsed, 0.0 if finished() else remaining)
            )
    if not finished():
        warnings.warn(
            f"stopped after {done_iterations} iterations (max_iterations) with the slowest run at "
            f"t = {slowest:.4g} < time_horizon = {time_horizon:g}; grid points it did not reach are "
            "left out of the means (see summary.error.runs)",
            stacklevel=2,
        )

    # the first chunk's time, less a typical chunk's, is the compilation (if it compiled)
    compile_s = 0.0
    if trace_count() != traced:
        compile_s = max(0.0, chunk_s[0] - (float(np.median(chunk_s[1:])) if len(chunk_s) > 1 else 0.0))
    if one_call:
        final = carries[0]  # one call of every run: summarized where it is
    else:  # every run on the host, summarized at once: calls and devices cannot change the reduction
        final = jax.tree.map(lambda *xs: np.concatenate(xs, axis=0), *[host_carry(b) for b in range(layout.batches)])
    summary = jax.device_get(_summarize(final, grids, num_configs=num_configs, seeds=seeds))
    trajectories = None
    if spec.keep_trajectories:
        trajectories = jax.tree.map(lambda *xs: np.concatenate(xs, axis=2), *kept)
    return Simulation(
        time_grid=np.asarray(grids.time),
        iteration_grid=np.asarray(grids.iteration),
        levels=np.asarray(grids.levels),
        summary=summary,
        iterations=done_iterations,
        initial_error=initial_error,
        compile_s=compile_s,
        run_s=run_s_before + _time.perf_counter() - start,
        trajectories=trajectories,
        resumed_from=resumed_from,
        block=block,
    )


def concatenate(sims: list[Simulation], order: list[int]) -> Simulation:
    """Simulations of configuration groups on the same grids as one: configuration c of the
    result is row ``order[c]`` of the groups' rows stacked in turn. ``iterations`` is the
    largest of the groups' (each configuration's own is ``summary.iterations``)."""
    first = sims[0]
    for sim in sims[1:]:
        if not (
            np.array_equal(sim.time_grid, first.time_grid) and np.array_equal(sim.iteration_grid, first.iteration_grid)
        ):
            raise ValueError("simulations on different grids cannot be concatenated")
    index = np.asarray(order)
    summary = jax.tree.map(lambda *xs: np.concatenate(xs, axis=0)[index], *[s.summary for s in sims])
    trajectories = None
    if all(s.trajectories is not None for s in sims):
        trajectories = jax.tree.map(lambda *xs: np.concatenate(xs, axis=0)[index], *[s.trajectories for s in sims])
    return first._replace(
        summary=summary,
        iterations=max(s.iterations for s in sims),
        compile_s=sum(s.compile_s for s in sims),
        run_s=sum(s.run_s for s in sims),
        trajectories=trajectories,
        resumed_from=max(s.resumed_from for s in sims),
    )


def delay_samples(configs: SimConfig, n: int, seeds: int, iterations: int, seed: int = 0) -> np.ndarray:
    """The delays fastest-k SGD (scheme k_sync) draws, shape (C, S, iterations, n): for tests and
    references. Iteration j of seed s uses fold_in(fold_in(key(seed), s), j) (``scheme_draws``)."""
    return scheme_draws(configs, RunSpec(n=n), 1, seeds, iterations, seed)["delays"][..., 0]


def scheme_draws(configs: SimConfig, spec: RunSpec, num_rows: int, seeds: int, iterations: int, seed: int = 0) -> dict:
    """Every random number the engine draws for ``spec.scheme``, as numpy arrays with leading axes
    (C, S): ``init_delays``, ``init_rows`` and, per iteration, ``delays``, ``restart``, ``rows``,
    ``restart_rows`` (see ``schemes.iteration_draws``). For the NumPy reference."""

    def one(config, s):
        key = seed_key(jnp.asarray(seed, jnp.uint32), s)
        init_delays, init_rows = schemes.initial_draws(config, key, spec, num_rows)
        per = jax.vmap(lambda j: schemes.iteration_draws(config, jax.random.fold_in(key, j), spec, num_rows))
        return {"init_delays": init_delays, "init_rows": init_rows, **per(jnp.arange(iterations))._asdict()}

    over = jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None))
    return jax.tree.map(np.asarray, over(configs, jnp.arange(seeds)))
