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
  devices. The block size is a rule of the problem and the platform (``default_block``) unless asked for, and
  results record it.
* *Speed.* A block's working set stays in cache for the whole chunk: on a 2-core CPU, Fig. 3's
  five policies x 1024 seeds ran at about 110k seed-iterations/s in blocks of 64 or 128 runs
  and 82k as one batch of 5120; logistic regression on the digits, whose logits are 9x larger
  per run, runs fastest in blocks of 16 (``default_block``).

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

CPU_BLOCKS = (16, 64)  # the smallest and largest default block on CPU
CPU_CACHE_BYTES = 2 * 2**20  # the cache a block's largest step temporary should fit in (see default_block)
ACCELERATOR_BLOCK = 16384  # the largest default block on an accelerator (measured on an H200: default_block)
ACCELERATOR_UNKNOWN_MEMORY_BLOCK = 4096  # the default block on an accelerator that reports no memory limit
ACCELERATOR_STEP_FRACTION = 0.25  # of an accelerator's memory, for one block's step temporaries


def step_bytes_per_run(problem: Problem, spec: RunSpec) -> int:
    """Bytes of the largest temporary of one run's step: a value per data row and class (the
    residuals or logits of all m rows, and their cotangents), the pushes' mini-batch values."""
    rows = problem.x.shape[0] * problem.x.shape[1]
    classes = max(1, problem.num_params // problem.x.shape[-1])
    pushes = spec.n * schemes.pushes_per_learner(spec)
    return problem.x.dtype.itemsize * max(rows * classes, pushes * spec.batch_size * classes)


def _power_of_two_at_most(x: float, low: int, high: int) -> int:
    block = low
    while block * 2 <= min(x, high):
        block *= 2
    return block


def default_block(platform: str, problem: Problem | None = None, spec: RunSpec | None = None, device=None) -> int:
    """Runs per block when none is asked for: a rule of the problem's size, measured on CPU.

    * **CPU**: the largest power of two in [16, 64] runs whose step temporaries (a value per data
      row and class per run, ``step_bytes_per_run``) fit in ``CPU_CACHE_BYTES`` (2 MiB: twice
      the 1 MiB L2 of a core of the 2-core AMD EPYC it was measured on; a constant, not read from
      the machine, so that the block, and with it the bits, is the same on every CPU). Fig. 3
      (m = 2000 rows, one class: 8 KB per run) gets 64; the digits' logistic regression (1780
      rows x 10 classes: 71 KB per run) gets 16. Measured on 2 cores, full step, in one process:
      Fig. 3 at 38k, 39k, 41k, 42k, 42k seed-iterations/s in blocks of 16 ... 256 (load 4.7: flat;
      at idle 73k, 98k, 110k, 110k for 16 ... 128 in an earlier measurement), logistic at 3.0k,
      4.3k, 4.1k, 2.6k, 2.2k in blocks of 8 ... 128 (load 1.4-4.7): past the cache its (block, m,
      C) logits cost a pass through memory each. The cap of 64 keeps small studies cheap (a study
      pays for at least one block).
    * **Accelerators**: the largest power of two up to 16384 runs whose step temporaries fit in
      a quarter of the device's memory (``device.memory_stats()["bytes_limit"]``; 4096 where the
      device reports no limit). Measured on an NVIDIA H200 (JAX 0.11.2, CUDA 13), Fig. 3's
      bench workload with 5 x 10,000 runs: 10.8M, 26.8M and 36.7M seed-iterations/s in blocks of
      4096, 16384 and 65536, so one block-iteration costs about 0.36, 0.47 and 1.36 ms. A study
      pays ceil(runs / block) block-iterations per update, and the block may not depend on the
      number of runs (it fixes the bits), so 16384 is the compromise: within 1.3x of 4096 for a
      study that fills one small block, 2.5x faster than 4096 and within 1.4x of 65536 at 50,000
      runs. On that device Fig. 3's temporaries ask for far more, so the cap decides; the
      quarter of the memory decides for large problems or small devices (an MLP on the digits on
      a 16 GB GPU gets 4096).

    Without a problem (``problem=None``) the size is the CPU's largest or the accelerator's."""
    if platform == "cpu":
        if problem is None or spec is None:
            return CPU_BLOCKS[1]
        return _power_of_two_at_most(CPU_CACHE_BYTES / step_bytes_per_run(problem, spec), *CPU_BLOCKS)
    if problem is None or spec is None:
        return ACCELERATOR_BLOCK
    stats = (device.memory_stats() if device is not None else None) or {}
    if "bytes_limit" not in stats:
        return ACCELERATOR_UNKNOWN_MEMORY_BLOCK
    fits = ACCELERATOR_STEP_FRACTION * stats["bytes_limit"] / step_bytes_per_run(problem, spec)
    return _power_of_two_at_most(fits, 1, ACCELERATOR_BLOCK)


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


def available_memory(device=None) -> int:
    """Bytes a device (default: the first) can hold: its memory limit on an accelerator
    (``memory_stats()["bytes_limit"]``), physical memory on CPU."""
    stats = (device if device is not None else jax.devices()[0]).memory_stats() or {}
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
