"""Key numbers read off a study's averaged curves: the time (and communication) a configuration
needs to reach a level of a metric, and a configuration's error floor.

Each reading takes the metric by name (``metric``; default: the results' tracked metric,
``Results.metric``, F - F* unless the study tracks another). "Reaching" a level means falling
to it, or for a metric that rises as runs improve (test accuracy) rising to it.

The reading is on the seed-averaged curves of ``results`` (as the papers read their figures),
on the time grid, so a time is known to one grid step. ``Reach.earliest`` and ``Reach.latest``
are where the lower and upper edges of the pointwise 95% band reach the level: a bracket that
shows how sharply the time is determined, not a confidence interval for it. NaN: not reached
within the horizon.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

from ..core.problems import HIGHER_IS_BETTER
from ..errors import FastkError
from .results import Results, grid_of


class Reach(NamedTuple):
    """Per configuration (C,): when the mean error first falls to a level, and at what cost."""

    time: np.ndarray  # first grid time with mean error <= level (NaN: never)
    earliest: np.ndarray  # same for the band's lower edge
    latest: np.ndarray  # same for the band's upper edge
    downloads: np.ndarray  # mean gradients received by then
    total: np.ndarray  # mean gradients received + model vectors sent by then
    index: np.ndarray  # the time grid index (-1: never)


def _first(time_grid: np.ndarray, below: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(C,) first grid time where ``below`` (C, G) holds, NaN where never; and its index (or -1)."""
    hit = below.any(axis=1)
    index = np.where(hit, np.argmax(below, axis=1), -1)
    return np.where(hit, time_grid[np.maximum(index, 0)], np.nan), index


def _band(results: Results, metric: str | None):
    name = metric or results.metric
    if name not in results.bands or grid_of(name) != "time":
        known = [m for m in results.metrics]
        raise FastkError(f"no metric {name!r} in these results; recorded: {', '.join(known)}")
    return results.bands[name]


def reach(results: Results, level: float, metric: str | None = None) -> Reach:
    """When each configuration's mean ``metric`` first reaches ``level`` (falls to it; rises to
    it for accuracy), and the communication by then."""
    err = _band(results, metric)
    rises = (metric or results.metric) in HIGHER_IS_BETTER
    sign = -1.0 if rises else 1.0  # reaching: sign * value <= sign * level
    with np.errstate(invalid="ignore"):
        time, index = _first(results.time_grid, sign * err.mean <= sign * level)
        earliest, _ = _first(results.time_grid, sign * (err.mean - sign * err.half_width) <= sign * level)
        latest, _ = _first(results.time_grid, sign * (err.mean + sign * err.half_width) <= sign * level)
    rows = np.arange(len(results.labels))

    def at(name: str) -> np.ndarray:
        values = results.bands[name].mean[rows, np.maximum(index, 0)]
        return np.where(index >= 0, values, np.nan)

    downloads = at("downloads")
    return Reach(time, earliest, latest, downloads, downloads + at("fetches"), index)


def error_floor(results: Results, tail: float = 0.1, metric: str | None = None) -> np.ndarray:
    """(C,) each configuration's mean ``metric`` over the last ``tail`` of the time grid: its
    floor, if it has reached it by the horizon."""
    err = _band(results, metric).mean
    start = int(np.floor((1 - tail) * err.shape[1]))
    with np.errstate(invalid="ignore"):
        return np.nanmean(err[:, start:], axis=1)


class AtTime(NamedTuple):
    """Per configuration (C,): the mean error and its 95% half-width at a time."""

    time: float  # the grid time read: the last at or before the time asked for
    mean: np.ndarray
    half_width: np.ndarray


def at_time(results: Results, t: float, metric: str | None = None) -> AtTime:
    """Each configuration's mean ``metric`` at the last time grid point at or before ``t``."""
    index = int(np.searchsorted(results.time_grid, t, side="right")) - 1
    if index < 0:
        raise ValueError(f"t={t} is before the time grid")
    err = _band(results, metric)
    return AtTime(float(results.time_grid[index]), err.mean[:, index], err.half_width[:, index])


class Envelope(NamedTuple):
    """The lower envelope of the fixed-k curves: at each grid time, the best fixed k in hindsight."""

    error: np.ndarray  # (G,) min over the fixed-k configurations of their mean error
    best: np.ndarray  # (G,) the configuration (row of results) attaining it, -1 where none is finite
    members: np.ndarray  # the rows of results that form the envelope


def envelope(error_mean: np.ndarray, members) -> Envelope:
    """The pointwise minimum of the mean error curves ``error_mean`` (C, G) of the
    configurations ``members`` (rows). It is read off noisy means, so it sits a little below
    the best fixed k's true curve (the minimum of estimates is biased low): regrets measured
    against it are on the high side."""
    members = np.asarray(members)
    err = np.asarray(error_mean)[members]
    finite = np.isfinite(err)
    best_local = np.argmin(np.where(finite, err, np.inf), axis=0)
    any_finite = finite.any(axis=0)
    error = np.where(any_finite, np.take_along_axis(err, best_local[None], axis=0)[0], np.nan)
    return Envelope(error, np.where(any_finite, members[best_local], -1), members)


class Regret(NamedTuple):
    """How far a configuration's mean error curve stays above the envelope (per configuration)."""

    max_ratio: np.ndarray  # max over grid times t > 0 of error(t) / envelope(t)
    mean_log10_ratio: np.ndarray  # time average over t > 0 of log10(error(t) / envelope(t))
    final_ratio: np.ndarray  # at the horizon
    time_ratio: np.ndarray  # (C, levels): time to reach a level / the envelope's time (NaN: not reached)


def regret(results: Results, env: Envelope, levels) -> Regret:
    """Each configuration's regret over the envelope: in error (ratio of the mean curves over
    time) and in time (time to reach each of ``levels`` against the envelope's, which is the
    soonest time any fixed k reaches it)."""
    err = _band(results, None).mean
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = err[:, 1:] / env.error[1:]
        log_ratio = np.log10(ratio)
        times = []
        for level in levels:
            r = reach(results, level)
            soonest = np.nanmin(r.time[env.members]) if np.isfinite(r.time[env.members]).any() else np.nan
            times.append(r.time / soonest)
    with warnings.catch_warnings():  # a configuration with no finite point gets NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        max_ratio = np.nanmax(np.where(np.isfinite(ratio), ratio, np.nan), axis=1)
        mean_log10 = np.nanmean(np.where(np.isfinite(log_ratio), log_ratio, np.nan), axis=1)
    return Regret(
        max_ratio=max_ratio,
        mean_log10_ratio=mean_log10,
        final_ratio=ratio[:, -1],
        time_ratio=np.stack(times, axis=1) if times else np.zeros((err.shape[0], 0)),
    )
