"""A study's results: each configuration's curves (mean and 95% band over seeds) on the grids,
and loading them back from a run folder (``io.files`` checks them first)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..core.curves import Band, band
from ..engine.driver import Simulation
from ..errors import FastkError
from ..io.files import read_arrays


BANDS = ("error", "k", "downloads", "fetches", "updates", "iter_error", "reach_time", "reach_downloads", "reach_total")


@dataclasses.dataclass(frozen=True)
class Results:
    """A study's curves, one row per configuration (label)."""

    labels: np.ndarray  # (C,) str
    n_workers: int
    mean_delay: np.ndarray  # (C,) E[X] of each configuration's delay law, its natural unit of time
    time_grid: np.ndarray  # (G,)
    iteration_grid: np.ndarray  # (Gi,)
    bands: dict[str, Band]  # each field (C, G), (C, Gi) or, for reach_*, (C, L)
    diverged: np.ndarray  # (C,) runs that diverged, left out of the curves
    seeds: int
    time_per_iteration: Band  # (C,) a run's clock over its updates, mean and 95% band over seeds
    staleness: np.ndarray  # (C, B) staleness histogram of the applied gradients (last bin: >= B-1)
    levels: np.ndarray  # (L,) error levels of the reach_* bands (time, downloads, total to reach)


def from_simulation(labels: list[str], sim: Simulation, n_workers: int, mean_delay, seeds: int) -> Results:
    """``mean_delay``: one number, or one per configuration."""
    s = sim.summary
    per_iteration = np.asarray(s.final_time, np.float64) / np.asarray(s.iterations)[:, None]  # (C, S)
    return Results(
        labels=np.asarray(labels, dtype=str),
        n_workers=n_workers,
        mean_delay=np.broadcast_to(np.asarray(mean_delay, np.float64), (len(labels),)).copy(),
        time_grid=np.asarray(sim.time_grid),
        iteration_grid=np.asarray(sim.iteration_grid),
        bands={name: Band(*(np.asarray(x) for x in getattr(s, name))) for name in BANDS},
        diverged=np.asarray(s.diverged),
        seeds=seeds,
        time_per_iteration=Band(
            *(np.asarray(x) for x in band(per_iteration, np.ones(per_iteration.shape, bool), axis=1))
        ),
        staleness=np.asarray(s.staleness),
        levels=np.asarray(sim.levels),
    )


def to_arrays(r: Results) -> dict[str, np.ndarray]:
    """The arrays of ``results.npz`` (``load`` reads them back)."""
    out = {
        "labels": r.labels,
        "n_workers": np.asarray(r.n_workers),
        "mean_delay": np.asarray(r.mean_delay),
        "time_grid": r.time_grid,
        "iteration_grid": r.iteration_grid,
        "diverged": r.diverged,
        "seeds": np.asarray(r.seeds),
        "staleness": r.staleness,
        "levels": r.levels,
    }
    for name, b in {**r.bands, "time_per_iteration": r.time_per_iteration}.items():
        out[f"{name}_mean"], out[f"{name}_half_width"], out[f"{name}_runs"] = b.mean, b.half_width, b.runs
    return out


def load(path: str | Path) -> Results:
    """Load results.npz (a folder or the file itself) without pickle, verified (``read_arrays``)."""
    a, _ = read_arrays(path)
    if Path(path).is_dir():
        path = Path(path) / "results.npz"
    try:
        return Results(
            labels=a["labels"],
            n_workers=int(a["n_workers"]),
            mean_delay=a["mean_delay"],
            time_grid=a["time_grid"],
            iteration_grid=a["iteration_grid"],
            bands={n: Band(a[f"{n}_mean"], a[f"{n}_half_width"], a[f"{n}_runs"]) for n in BANDS},
            diverged=a["diverged"],
            seeds=int(a["seeds"]),
            time_per_iteration=Band(*(a[f"time_per_iteration_{f}"] for f in ("mean", "half_width", "runs"))),
            staleness=a["staleness"],
            levels=a["levels"],
        )
    except KeyError as e:
        raise FastkError(f"{path} is missing array {e.args[0]!r}: not a fastk-jax results file") from None


