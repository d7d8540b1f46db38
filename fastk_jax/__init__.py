"""fastk-jax: Monte Carlo studies of distributed SGD with straggling workers, in JAX.

The public API, by concept (each lives in the module of the same name):

* delay laws: ``delays.make_law``, ``Exponential``, ``ShiftedExponential``, ``Pareto``, ...
* problems: ``problems.linear_regression``, ``problems.logistic_regression``
* data: ``data.synthetic_linear``, ``data.load_digits``, ``data.load_mnist``
* k policies: ``policies.fixed``, ``policies.schedule``, ``policies.adaptive``
* fastest-k SGD and the asynchronous variants: ``schemes.step``; the engine that runs them: ``engine.simulate``
* studies from TOML files: ``study.load_study``, ``study.run_study``; named ones: ``registry.run_file``
* results on disk: ``results.load``; key numbers: ``metrics.reach``, ``metrics.error_floor``
* theory: ``theory.order_stats``, ``theory.fastest_k_bounds``, ``theory.async_theory``, ``theory.constants``;
  against the simulator: ``check_bounds.run_checks``
* the NumPy reference simulators: ``reference.simulate_run``, ``reference_schemes.simulate_scheme_run``
"""

import importlib
from typing import TYPE_CHECKING

from .errors import ConfigError, DataError, FastkError

# The rest is imported on first use (PEP 562), so that ``fastk-jax`` starts, and answers a
# Ctrl-C, before JAX is imported.
_LAZY = {
    **{
        name: "core.delays"
        for name in (
            "Exponential",
            "HyperExponential",
            "LogNormal",
            "Pareto",
            "ShiftedExponential",
            "Uniform",
            "Weibull",
            "make_law",
        )
    },
    "Simulation": "engine.driver",
    "simulate": "engine.driver",
    **{name: "core.policies" for name in ("KPolicy", "adaptive", "fixed", "schedule")},
    **{name: "core.spec" for name in ("RunSpec", "SimConfig", "stack_configs")},
}

if TYPE_CHECKING:  # pragma: no cover
    from .core.delays import (
        Exponential,
        HyperExponential,
        LogNormal,
        Pareto,
        ShiftedExponential,
        Uniform,
        Weibull,
        make_law,
    )
    from .core.policies import KPolicy, adaptive, fixed, schedule
    from .core.spec import RunSpec, SimConfig, stack_configs
    from .engine.driver import Simulation, simulate


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    try:  # a subpackage or module: fastk_jax.engine, fastk_jax.analysis, ...
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__():
    return sorted({*globals(), *_LAZY})


__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "Exponential",
    "FastkError",
    "HyperExponential",
    "KPolicy",
    "LogNormal",
    "Pareto",
    "RunSpec",
    "ShiftedExponential",
    "SimConfig",
    "Simulation",
    "Uniform",
    "Weibull",
    "adaptive",
    "fixed",
    "make_law",
    "schedule",
    "simulate",
    "stack_configs",
]
