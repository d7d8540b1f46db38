"""How the runs are laid out: blocks of a fixed number of runs, devices, calls, and the memory
guard that splits the runs into several calls per chunk when they do not fit at once.

**Blocks.** The runs are laid out in blocks of ``block`` runs: the chunk's scan is vmapped over
the runs of a block, and the blocks step in turn (``lax.map``) inside the same compiled call.
This is for two reasons, both measured:

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
"""

from __future__ import annotations

import os
from typing import NamedTuple

import jax
import numpy as np

from ..core import schemes
from ..core.problems import Problem
from ..core.spec import RunSpec
from ..errors import ConfigError
from .grids import reach_levels

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
    keep_runs: bool = False,
) -> int:
    """Bytes a device needs to run ``blocks`` blocks of ``block`` runs per call (of ``runs`` in
    all): their state and one block's temporaries (``memory_estimate``), and every run's curves
    gathered for the summary (``summary_memory``) unless one call on one device holds all and
    the per-run curves are not kept (``keep_runs``)."""
    gathered = blocks < -(-runs // (block * devices)) or devices > 1 or keep_runs
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
    keep_runs: bool = False,
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
        return call_memory(problem, spec, runs, blocks, grid_points, iteration_grid_points, devices, block, keep_runs)

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
