"""A study's results: each configuration's curves (mean and 95% band over seeds) on the grids,
and loading them back from a run folder (``io.files`` checks them first)."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np

from ..core.curves import Band, band
from ..errors import FastkError
from ..io.files import read_arrays


def band_names(metrics: tuple[str, ...] = ("error",)) -> tuple[str, ...]:
    """The bands of results recording ``metrics``: the tracked one (the first) on the time grid,
    with its iteration-grid curve ``iter_NAME`` and the levels reached; k and the communication;
    then the other metrics on the time grid."""
    tracked = metrics[0]
    return (tracked, "k", "downloads", "fetches", "updates", f"iter_{tracked}", "reach_time", "reach_downloads",
            "reach_total", *metrics[1:])


def run_fields(metrics: tuple[str, ...] = ("error",)) -> tuple[str, ...]:
    """The per-run curves kept with ``keep_runs``."""
    tracked = metrics[0]
    return (tracked, "k", "downloads", "fetches", "updates", f"iter_{tracked}", "reach_time", *metrics[1:])


def grid_of(name: str) -> str:
    """Which grid band ``name`` is on: time, iteration or level."""
    if name.startswith("iter_"):
        return "iteration"
    return "level" if name.startswith("reach_") else "time"


BANDS = band_names()  # of results that track F - F* alone
GRID_OF = {name: grid_of(name) for name in BANDS}
RUN_FIELDS = run_fields()


@dataclasses.dataclass(frozen=True)
class Results:
    """A study's curves, one row per configuration.

    ``configurations[c]`` says what row c is, as fields (``label``, ``policy`` (the kind) and
    the policy's parameters, ``scheme``, ``gradients``, ``batch_size``, ``lr``, ``lr_c``,
    ``eta``, ``delays`` (the cluster's label) and ``law``), so that figures and tables select
    rows by field (``index``), never by parsing labels. ``bands[name]`` is the mean over seeds
    and its 95% half-width (Student t) on the grid ``GRID_OF[name]``. With ``keep_runs``,
    ``runs[name]`` holds every run's curve, (C, S, grid), NaN where a run is not counted
    (diverged, or not yet at that grid point): medians, quantiles and paired differences
    come from them.
    """

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
    configurations: tuple[dict, ...] = ()  # (C,) each configuration's fields
    runs: dict[str, np.ndarray] | None = None  # run_fields(metrics), each (C, S, grid), NaN where not counted
    metrics: tuple[str, ...] = ("error",)  # the metrics recorded (``core.problems.METRICS``), the first tracked

    @property
    def metric(self) -> str:
        """The tracked metric: the name of the main curve (``bands[metric]``, ``iter_METRIC``) and
        of what the levels (``reach_*``) are levels of. ``error`` is F - F*."""
        return self.metrics[0]

    # ---- which rows

    def index(self, label: str | None = None, **fields) -> list[int]:
        """The rows whose label is ``label`` and whose fields equal ``fields`` (e.g.
        ``index(policy="fixed", k=10)``), in order."""
        rows = []
        for c, conf in enumerate(self._fields()):
            if label is not None and conf["label"] != label:
                continue
            if all(conf.get(name) == value for name, value in fields.items()):
                rows.append(c)
        return rows

    def _fields(self) -> tuple[dict, ...]:
        return self.configurations or tuple({"label": str(label)} for label in self.labels)

    def _row(self, which: int | str) -> int:
        if isinstance(which, str):
            rows = self.index(which)
            if len(rows) != 1:
                raise FastkError(f"no configuration labelled {which!r}; known: {', '.join(map(str, self.labels))}")
            return rows[0]
        return int(which)

    def grid(self, name: str) -> np.ndarray:
        """The x values of band or run field ``name``: times, iterations or error levels."""
        return {"time": self.time_grid, "iteration": self.iteration_grid, "level": self.levels}[grid_of(name)]

    # ---- statistics over seeds beyond the mean

    def _runs(self, name: str) -> np.ndarray:
        if self.runs is None:
            raise FastkError("these results have no per-run curves: run with keep_runs=True")
        if name not in self.runs:
            raise FastkError(f"no per-run field {name!r}; kept: {', '.join(self.runs)}")
        return self.runs[name]

    def quantiles(self, name: str, q) -> np.ndarray:
        """Quantiles ``q`` (in [0, 1]) over the seeds of every configuration's runs, shape
        (len(q), C, grid), over the runs counted at each point (NaN where none is)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN points stay NaN
            return np.nanquantile(self._runs(name), np.atleast_1d(q), axis=1)

    def median(self, name: str | None = None) -> np.ndarray:
        """The median over seeds, (C, grid): on log axes, where the mean of few seeds is pulled
        up by one bad run, the median shows the typical run."""
        return self.quantiles(name or self.metric, 0.5)[0]

    def geometric_mean(self, name: str | None = None) -> np.ndarray:
        """exp(mean(log x)) over the seeds, (C, grid), over the runs counted with x > 0."""
        x = self._runs(name or self.metric)
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.exp(np.nanmean(np.where(x > 0, np.log(np.where(x > 0, x, 1.0)), np.nan), axis=1))

    def paired_difference(self, a: int | str, b: int | str, name: str | None = None) -> Band:
        """Configuration ``a`` minus configuration ``b``, seed by seed, with its mean and 95%
        band over the seeds counted in both (grid,). Configurations share seeds (common random
        numbers), so this band is much tighter than the difference of the two bands whenever
        the runs of a seed are correlated."""
        x = self._runs(name or self.metric)
        d = x[self._row(a)] - x[self._row(b)]
        out = band(np.nan_to_num(d), ~np.isnan(d), axis=0)
        return Band(*(np.asarray(v) for v in out))

    # ---- other views

    def to_dataframe(self):
        """The curves in long format (a pandas DataFrame, ``pip install pandas``): one row per
        configuration, field and grid point, with the configuration's fields, ``field``,
        ``grid`` (time, iteration or level), ``x``, ``mean``, ``half_width``, ``low``, ``high``
        and ``runs`` (how many runs the mean is over)."""
        try:
            import pandas as pd
        except ImportError:
            raise FastkError("to_dataframe needs pandas (pip install pandas)") from None
        frames = []
        for c, conf in enumerate(self._fields()):
            for name, b in self.bands.items():
                x = self.grid(name)
                frame = {key: [value if not isinstance(value, list) else str(value)] * x.size for key, value in conf.items()}
                frame.update(
                    field=name,
                    grid=grid_of(name),
                    x=x,
                    mean=b.mean[c],
                    half_width=b.half_width[c],
                    low=b.mean[c] - b.half_width[c],
                    high=b.mean[c] + b.half_width[c],
                    runs=b.runs[c],
                )
                frames.append(pd.DataFrame(frame))
        return pd.concat(frames, ignore_index=True)

    def to_xarray(self):
        """The bands as an xarray Dataset (``pip install xarray``): variables ``NAME_mean``,
        ``NAME_half_width``, ``NAME_runs`` over (configuration, time | iteration | level), the
        configurations' fields as coordinates."""
        try:
            import xarray as xr
        except ImportError:
            raise FastkError("to_xarray needs xarray (pip install xarray)") from None
        variables = {}
        for name, b in self.bands.items():
            dims = ("configuration", grid_of(name))
            for part, values in zip(("mean", "half_width", "runs"), b):
                variables[f"{name}_{part}"] = (dims, np.asarray(values))
        fields = self._fields()
        keys = dict.fromkeys(k for conf in fields for k in conf)
        coords = {
            "configuration": np.arange(len(fields)),
            "time": self.time_grid,
            "iteration": self.iteration_grid,
            "level": self.levels,
            **{
                key: ("configuration", np.asarray([str(conf.get(key, "")) for conf in fields]))
                for key in keys
            },
        }
        attrs = {"seeds": self.seeds, "n_workers": self.n_workers, "metrics": list(self.metrics)}
        return xr.Dataset(variables, coords=coords, attrs=attrs)

    def plot(
        self, ax=None, kind: str = "error_vs_time", statistic: str = "mean", title: str = "", metric: str | None = None
    ):
        """Draw the curves of ``metric`` (default: the tracked one; ``kind``: error_vs_time or
        error_vs_iterations) on ``ax`` (default: a new figure), the ``statistic`` over seeds
        (mean with its 95% band, or, with kept runs, median with the interquartile band, or
        geometric mean); returns the axes."""
        from .plotting import draw_error

        return draw_error(self, ax=ax, kind=kind, statistic=statistic, title=title, metric=metric)


def to_arrays(r: Results) -> dict[str, np.ndarray]:
    """The arrays of ``results.npz`` (``load`` reads them back): the configurations' fields as
    one JSON string each, and the per-run curves as ``runs_NAME`` where kept."""
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
        "metrics": np.asarray(r.metrics, dtype=str),
    }
    if r.configurations:
        out["configurations"] = np.asarray([json.dumps(c, sort_keys=True) for c in r.configurations])
    for name, b in {**r.bands, "time_per_iteration": r.time_per_iteration}.items():
        out[f"{name}_mean"], out[f"{name}_half_width"], out[f"{name}_runs"] = b.mean, b.half_width, b.runs
    for name, values in (r.runs or {}).items():
        out[f"runs_{name}"] = values
    return out


def load(path: str | Path) -> Results:
    """Load results.npz (a folder or the file itself) without pickle, verified (``read_arrays``)."""
    a, _ = read_arrays(path)
    if Path(path).is_dir():
        path = Path(path) / "results.npz"
    try:
        metrics = tuple(str(m) for m in a["metrics"]) if "metrics" in a else ("error",)
        return Results(
            labels=a["labels"],
            n_workers=int(a["n_workers"]),
            mean_delay=a["mean_delay"],
            time_grid=a["time_grid"],
            iteration_grid=a["iteration_grid"],
            bands={n: Band(a[f"{n}_mean"], a[f"{n}_half_width"], a[f"{n}_runs"]) for n in band_names(metrics)},
            diverged=a["diverged"],
            seeds=int(a["seeds"]),
            time_per_iteration=Band(*(a[f"time_per_iteration_{f}"] for f in ("mean", "half_width", "runs"))),
            staleness=a["staleness"],
            levels=a["levels"],
            configurations=tuple(json.loads(str(c)) for c in a.get("configurations", ())),
            runs={name: a[f"runs_{name}"] for name in run_fields(metrics) if f"runs_{name}" in a} or None,
            metrics=metrics,
        )
    except KeyError as e:
        raise FastkError(f"{path} is missing array {e.args[0]!r}: not a fastk-jax results file") from None


