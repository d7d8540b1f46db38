"""The NumPy reference simulators: test oracles and the speed baseline."""

from .linear import simulate_run
from .schemes import simulate_scheme_run

__all__ = ["simulate_run", "simulate_scheme_run"]
