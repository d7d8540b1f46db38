"""Devices and hosts: moving a carry between host and devices (PRNG keys as key data), and
``jax.distributed`` for several hosts."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import FastkError
from .loop import Carry

Array = jax.Array


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


def init_distributed() -> bool:
    """Start ``jax.distributed`` when ``FASTK_DISTRIBUTED=1`` (before any JAX computation): every
    host's devices then join one mesh and the seed axis is sharded over all of them. The
    coordinator, process count and id come from ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``
    and ``JAX_PROCESS_ID`` where set, else from what ``jax.distributed.initialize`` detects (a
    cluster environment such as SLURM). Returns whether it started. Tested with one process
    only: several hosts are not tested."""
    if os.environ.get("FASTK_DISTRIBUTED", "") not in ("1", "true", "yes"):
        check_platform()
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
    check_platform()
    return True


def check_platform() -> None:
    """Start JAX's backend (``jax.devices()``), or raise a one-line FastkError naming the platform
    when ``JAX_PLATFORMS`` asks for one that is not installed or does not start (JAX's own
    error is a long traceback, or a bare AssertionError for some platforms)."""
    try:
        jax.devices()
    except (RuntimeError, AssertionError) as e:
        wanted = os.environ.get("JAX_PLATFORMS", "") or jax.config.jax_platforms or ""
        first = str(e).splitlines()[0].split(" (set JAX_PLATFORMS")[0] if str(e) else type(e).__name__
        if len(first) > 240:
            first = first[:240] + "..."
        where = f"JAX_PLATFORMS={wanted!r}" if wanted else "the default platform"
        raise FastkError(
            f"{where}: that JAX backend is not available here ({first}); install its jaxlib plugin, "
            "or set JAX_PLATFORMS=cpu (or unset it to use what is available)"
        ) from None
