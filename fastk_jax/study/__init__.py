"""Studies: the typed study model, its TOML reader, building what the engine runs, and the
named studies shipped with the package.

* ``model``: ``Study`` and its parts (``Linear``, ``Logistic``, ``Delays``, ``Run``, the
  policy kinds ``Fixed``, ``Adaptive``, ..., ``Figure``, ``Report``), the tables of kinds;
* ``reader``: the one validation (``resolve_tables``); ``fields``: reading one field;
* ``build``: data loaded, configurations as arrays (``prepare``);
* ``library``: the named studies (``fastk-jax studies``); ``toml_writer``: ``study.toml``.
"""

from __future__ import annotations

from pathlib import Path

from .build import Configuration, Prepared, build_problem, configurations, delay_law, prepare
from .definition import Study
from .fields import read_toml, tomllib
from .model import (
    MLP,
    POLICIES,
    PROBLEMS,
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
    Policy,
    Report,
    Run,
    Schedule,
    delays,
)


def resolve(raw: dict, seeds: int | None = None, default_name: str = "study", quick: bool = False) -> Study:
    """A study from parsed TOML tables, checked (``Study.from_table``)."""
    return Study.from_table(raw, seeds=seeds, quick=quick, default_name=default_name)


def load_study(path: str | Path, seeds: int | None = None, quick: bool = False) -> Study:
    """A study from a TOML file, checked (``Study.from_toml``); ``seeds`` overrides run.seeds."""
    return Study.from_table(read_toml(path), seeds=seeds, quick=quick, default_name=Path(path).stem)


__all__ = [
    "MLP",
    "POLICIES",
    "PROBLEMS",
    "Adaptive",
    "BoundOptimal",
    "Configuration",
    "Delays",
    "Doubling",
    "Figure",
    "Fixed",
    "GradientNorm",
    "Linear",
    "Logistic",
    "LossRatio",
    "Markov",
    "Oracle",
    "Policy",
    "Prepared",
    "Report",
    "Run",
    "Schedule",
    "Study",
    "build_problem",
    "configurations",
    "delay_law",
    "delays",
    "load_study",
    "prepare",
    "read_toml",
    "resolve",
    "tomllib",
]
