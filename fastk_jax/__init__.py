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

__version__ = "0.1.0"

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
from .core.policies import KPolicy, adaptive, fixed, schedule
from .core.spec import RunSpec, SimConfig, stack_configs
from .engine import Progress, Simulation, simulate
from .errors import ConfigError, DataError, FastkError
from .runner.execute import run
from .study import (
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

__all__ = [
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
    "load",
    "make_law",
    "run",
    "schedule",
    "simulate",
    "stack_configs",
]
