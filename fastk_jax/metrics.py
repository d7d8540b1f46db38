"""Key numbers read off a study's averaged curves: the time (and communication) a configuration
needs to reach an error level, and a configuration's error floor.

The reading is on the seed-averaged curves of ``results`` (as the papers read their figures),
on the time grid, so a time is known to one grid step. ``Reach.earliest`` and ``Reach.latest``
are where the lower and upper edges of the pointwise 95% band reach the level: a bracket that
shows how sharply the time is determined, not a confidence interval for it. NaN: not reached
within the horizon.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .results import Results


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


def reach(results: Results, level: float) -> Reach:
    """When each configuration's mean error first falls to ``level``, and the communication by then."""
    err = results.bands["error"]
    with np.errstate(invalid="ignore"):
        time, index = _first(results.time_grid, err.mean <= level)
        earliest, _ = _first(results.time_grid, err.mean - err.half_width <= level)
        latest, _ = _first(results.time_grid, err.mean + err.half_width <= level)
    rows = np.arange(len(results.labels))

    def at(name: str) -> np.ndarray:
        values = results.bands[name].mean[rows, np.maximum(index, 0)]
        return np.where(index >= 0, values, np.nan)

    downloads = at("downloads")
    return Reach(time, earliest, latest, downloads, downloads + at("fetches"), index)


def error_floor(results: Results, tail: float = 0.1) -> np.ndarray:
    """(C,) each configuration's mean error over the last ``tail`` of the time grid: its floor,
    if it has reached it by the horizon."""
    err = results.bands["error"].mean
    start = int(np.floor((1 - tail) * err.shape[1]))
    with np.errstate(invalid="ignore"):
        return np.nanmean(err[:, start:], axis=1)


class AtTime(NamedTuple):
    """Per configuration (C,): the mean error and its 95% half-width at a time."""

    time: float  # the grid time read: the last at or before the time asked for
    mean: np.ndarray
    half_width: np.ndarray


def at_time(results: Results, t: float) -> AtTime:
    """Each configuration's mean error at the last time grid point at or before ``t``."""
    index = int(np.searchsorted(results.time_grid, t, side="right")) - 1
    if index < 0:
        raise ValueError(f"t={t} is before the time grid")
    err = results.bands["error"]
    return AtTime(float(results.time_grid[index]), err.mean[:, index], err.half_width[:, index])
