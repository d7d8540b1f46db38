"""fastk-jax: Monte Carlo studies of distributed SGD with straggling workers, in JAX.

In a notebook::

    import fastk_jax as fk

    study = fk.Study.from_toml("adaptive-fig3")          # a shipped study, or a path
    study = study.replace(seeds=200, eta=(5e-4, 1e-3))     # edits are checked again
    results = fk.run(study, progress="tqdm", keep_runs=True)
    results.plot()                                          # or .to_dataframe(), .median("error")

or a study built directly: ``fk.Study(problem=fk.Linear(n_workers=50, m=2000, d=100),
delays=fk.delays("exponential", rate=1.0), run=fk.Run(eta=5e-4, time_horizon=8000.0),
policies=[fk.Fixed(k=10), fk.Adaptive(k_min=10, k_max=40, thresh=10, burnin=200, step=10)])``.

The package, layer by layer (each imports only the layers above it in this list):

* ``core``: the pure JAX model: delay laws (``core.delays``), problems, k policies, schemes
  (one update of fastest-k SGD or an asynchronous variant), curves; ``theory``: order
  statistics, Lemma 1 / Theorem 1, the async paper's runtime laws, problem constants;
* ``engine``: ``engine.simulate``, many runs as one compiled scan over runs in blocks;
* ``study``: the typed study model, its TOML reader, the named studies;
* ``analysis``: ``Results`` (``load``), metrics, figures; ``io``: result files;
* ``runner``: ``run`` (a study to Results), run folders (``runner.folder``), sweeps, theory
  studies, ``check-bounds``; ``reference``: the NumPy reference simulators; ``cli``, ``bench``.
"""

import importlib
from typing import TYPE_CHECKING

from .errors import ConfigError, DataError, FastkError

__version__ = "0.1.0"

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
    **{name: "core.policies" for name in ("KPolicy", "adaptive", "fixed", "schedule")},
    **{name: "core.spec" for name in ("RunSpec", "SimConfig", "stack_configs")},
    **{name: "core.problems" for name in ("from_loss", "METRICS")},
    **{name: "core.networks" for name in ("mlp_classifier",)},
    **{name: "engine" for name in ("Progress", "Simulation", "simulate")},
    **{name: "analysis.results" for name in ("Results", "load")},
    **{name: "runner.execute" for name in ("run",)},
    **{
        name: "study"
        for name in (
            "Adaptive",
            "BoundOptimal",
            "Delays",
            "Doubling",
            "Figure",
            "Fixed",
            "GradientNorm",
            "Linear",
            "Logistic",
            "LossRatio",
            "MLP",
            "Markov",
            "Oracle",
            "Report",
            "Run",
            "Schedule",
            "Study",
            "delays",
        )
    },
}

if TYPE_CHECKING:  # pragma: no cover
    from .analysis.results import Results, load
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
    from .core.networks import mlp_classifier
    from .core.policies import KPolicy, adaptive, fixed, schedule
    from .core.problems import METRICS, from_loss
    from .core.spec import RunSpec, SimConfig, stack_configs
    from .engine import Progress, Simulation, simulate
    from .runner.execute import run
    from .study import (
        MLP,
        Adaptive,
        BoundOptimal,
        Delays,
        Doubling,
        Figure,
        Fixed,
        GradientNorm,
        Linear,
        Logistic,
        LossRatio,
        Markov,
        Oracle,
        Report,
        Run,
        Schedule,
        Study,
        delays,
    )


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


__all__ = [
    "METRICS",
    "MLP",
    "Adaptive",
    "BoundOptimal",
    "ConfigError",
    "DataError",
    "Delays",
    "Doubling",
    "Exponential",
    "FastkError",
    "Figure",
    "Fixed",
    "GradientNorm",
    "HyperExponential",
    "KPolicy",
    "Linear",
    "LogNormal",
    "Logistic",
    "LossRatio",
    "Markov",
    "Oracle",
    "Pareto",
    "Progress",
    "Report",
    "Results",
    "Run",
    "RunSpec",
    "Schedule",
    "ShiftedExponential",
    "SimConfig",
    "Simulation",
    "Study",
    "Uniform",
    "Weibull",
    "adaptive",
    "delays",
    "fixed",
    "from_loss",
    "load",
    "make_law",
    "mlp_classifier",
    "run",
    "schedule",
    "simulate",
    "stack_configs",
]
