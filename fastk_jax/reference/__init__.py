"""The NumPy reference simulators: test oracles and the speed baseline.

What they model, and what they refuse (instead of running it as something else):

* ``linear.simulate_run``: fastest-k SGD (K-sync) with fixed k, schedules in time or
  iterations (doubling is one) and Algorithm 1, plain SGD or (Nesterov) momentum, on the
  linear and logistic problems, given the delays of every worker at every iteration, so any
  cluster (iid, slowdowns, Markov stragglers, traces) that ``engine.delay_samples`` draws. The
  loss-ratio and gradient-norm rules are refused.
* ``schemes.simulate_scheme_run``: the four schemes (K-sync, K-batch-sync, K-async,
  K-batch-async), shard or mini-batch gradients, the fixed, staleness (eq. (13)) and
  delay-adaptive rates, given every random number the engine draws (``engine.scheme_draws``),
  with the same policies as ``simulate_run``.
"""

from .linear import simulate_run
from .schemes import simulate_scheme_run

__all__ = ["simulate_run", "simulate_scheme_run"]
