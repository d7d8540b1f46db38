"""The engine: many runs of a scheme as one compiled ``lax.scan`` over runs in blocks.

* ``driver``: ``simulate``, a thin driver over the pieces below, and ``Simulation``;
* ``plan``: the run plan (layout, updates, grids, stopping rule); ``grids``: the grids and the
  one default-iteration rule; ``layout``: blocks, devices, calls and the memory guard;
* ``loop``: the compiled init/advance/summarize programs; ``runs``: the runs in flight;
* ``devices``: host <-> device moves, ``jax.distributed``; ``checkpoint``: state on disk;
* ``progress``: progress reports and meters; ``draws``: every random number, for references.
"""

from .checkpoint import Slot, Store
from .devices import init_distributed, to_device, to_host
from .draws import delay_samples, scheme_draws
from .driver import Simulation, concatenate, simulate
from .grids import default_iterations, fastest_iteration_time, mean_iteration_time, reach_levels
from .layout import RunLayout, call_memory, default_block, memory_estimate, run_layout
from .loop import matmul_precision, trace_count
from .plan import RunPlan, make_plan
from .progress import Progress, TextMeter, TqdmMeter, meter, share_progress

__all__ = [
    "Progress",
    "RunLayout",
    "RunPlan",
    "Simulation",
    "Slot",
    "Store",
    "TextMeter",
    "TqdmMeter",
    "call_memory",
    "concatenate",
    "default_block",
    "default_iterations",
    "delay_samples",
    "fastest_iteration_time",
    "init_distributed",
    "make_plan",
    "matmul_precision",
    "mean_iteration_time",
    "memory_estimate",
    "meter",
    "reach_levels",
    "run_layout",
    "scheme_draws",
    "share_progress",
    "simulate",
    "to_device",
    "to_host",
    "trace_count",
]
