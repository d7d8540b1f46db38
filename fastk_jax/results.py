"""Results on disk: ``results.npz`` (arrays only, loads with allow_pickle=False), ``config.json``
(the resolved study), ``summary.json`` (key numbers, timings and versions).

Files are written into a fresh temporary folder beside the output folder and moved in only
when all of them are complete, so an interrupted or failed run never leaves half a result.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .curves import Band, band
from .engine import Simulation
from .errors import FastkError

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


def finite_json(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None, so that the file is strict JSON."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def check_writable(out_dir: str | Path) -> None:
    """Raise FastkError unless ``out_dir`` is, or can be created as, a writable folder: called
    before a run, so that a bad --out fails in a second, not after the simulation."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FastkError(f"output folder {out_dir} exists and is not a folder")
    existing = out_dir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise FastkError(f"cannot write output folder {out_dir}: {existing} is not a writable folder")


def save(
    out_dir: str | Path, arrays: dict[str, np.ndarray], config: dict[str, Any], summary: dict[str, Any], figures=()
) -> Path:
    """Write ``arrays`` as results.npz, config.json, summary.json and ``figures`` (callables taking
    a folder and writing files into it) atomically into ``out_dir``."""
    out_dir = Path(out_dir)
    check_writable(out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    except OSError as e:
        raise FastkError(f"cannot write output folder {out_dir}: {e.strerror or e}") from None
    try:
        np.savez(staging / "results.npz", **arrays)
        for name, obj in (("config.json", config), ("summary.json", summary)):
            (staging / name).write_text(json.dumps(finite_json(obj), indent=2, allow_nan=False) + "\n")
        for draw in figures:
            draw(staging)
        out_dir.mkdir(exist_ok=True)
        for f in sorted(staging.iterdir()):
            os.replace(f, out_dir / f.name)
    except OSError as e:
        raise FastkError(f"cannot write output folder {out_dir}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def load(path: str | Path) -> Results:
    """Load results.npz (a folder or the file itself) without pickle."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.npz"
    try:
        with np.load(path, allow_pickle=False) as f:
            a = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise FastkError(f"no results at {path}") from None
    except (OSError, ValueError, EOFError) as e:
        raise FastkError(
            f"{path} is not a readable results file: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from None
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
