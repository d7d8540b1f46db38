"""Studies that are theory only: the adaptive paper's Figs. 1-2 (Example 1) and the async paper's
Figs. 5 and 7. Each takes the ``[theory]`` table of its study file and returns the arrays, the
key numbers and a function that draws the figure; ``registry`` writes them like any study.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..analysis import plotting
from ..core import delays
from ..errors import ConfigError
from ..study import fields as study
from ..theory import async_theory, fastest_k_bounds
from ..theory.order_stats import order_statistic_moments


class TheoryOutput(NamedTuple):
    arrays: dict[str, np.ndarray]
    summary: dict[str, Any]
    draw: Callable[[Path], None]  # writes figure.png and figure.pdf into a folder


MAX_WORKERS = 1000  # order statistics cost O(n k) per quadrature node: n = 1000 takes seconds


def _float(params: dict, key: str) -> float:
    return float(study.number(params, key, "theory"))


def _int(params: dict, key: str, low: int = 1, high: int = MAX_WORKERS) -> int:
    return study.number(params, key, "theory", integer=True, low=low, high=high)


def _known(params: dict, fields: set[str]) -> None:
    """Refuse a field the kind does not read (a typo would otherwise be ignored)."""
    study.no_extra(params, fields, "theory")


def _bound_constants(params: dict) -> fastest_k_bounds.BoundConstants:
    return fastest_k_bounds.BoundConstants(**{f: _float(params, f) for f in fastest_k_bounds.BoundConstants._fields})


def example1(params: dict, quick: bool) -> TheoryOutput:
    """Example 1 of the adaptive paper (Figs. 1 and 2): Lemma 1's bound for every fixed k, the
    bound along Theorem 1's schedule, the best fixed k and the adaptive k against time.

    The parameters are the paper's, rate lambda = 1/5 as printed. The summary also gives every
    time under the reading lambda = 5, the one that reproduces the paper's printed fixed-k
    times (see ``theory.fastest_k_bounds``); times scale as 1/lambda, so the curves are the same.
    """
    _known(params, {"figure", "n", "rate", "printed_reading_rate", *fastest_k_bounds.BoundConstants._fields})
    constants, n, rate = _bound_constants(params), _int(params, "n"), _float(params, "rate")
    if rate <= 0:
        raise ConfigError("theory.rate", f"must be > 0, got {rate}")
    ex = fastest_k_bounds.example1(rate=rate, constants=constants, n=n, num=400 if quick else 2001)
    reading = params.get("printed_reading_rate")
    summary: dict[str, Any] = {
        "rate": rate,
        "mean_times": ex["mean_times"].tolist(),
        "error_floors": ex["floors"].tolist(),
        "best_fixed_k_changes": [
            {"time": float(t), "k": int(k)} for t, k in zip(ex["fixed_times"][1:], ex["fixed_ks"][1:])
        ],
        "theorem1_switching_times": ex["switching_times"].tolist(),
    }
    if reading is not None:
        other = fastest_k_bounds.example1(rate=_float(params, "printed_reading_rate"), constants=constants, n=n, num=2)
        summary["paper_printed"] = fastest_k_bounds.EXAMPLE1_PRINTED
        summary["at_the_printed_reading"] = {
            "rate": float(reading),
            "best_fixed_k_changes": other["fixed_times"][1:].tolist(),
            "theorem1_switching_times": other["switching_times"].tolist(),
            "note": (
                "the printed 1098 and 6623 are the first integer times at which k = 2 and k = 5 are the best fixed k "
                "at this rate; the printed 589 is not reproduced (Theorem 1 gives t_1 above); see fastk_jax.theory."
                "fastest_k_bounds"
            ),
        }
    arrays = {k: np.asarray(v) for k, v in ex.items()}
    figure = params.get("figure", "bounds")
    if figure not in ("bounds", "k"):
        raise ConfigError("theory.figure", f"must be 'bounds' (Fig. 1) or 'k' (Fig. 2), got {figure!r}")
    draw = plotting.example1_bounds if figure == "bounds" else plotting.example1_k
    return TheoryOutput(arrays, summary, lambda folder: plotting.save_figure(draw(ex), folder / "figure"))


def _law(spec: dict, where: str) -> delays.DelayLaw:
    if not isinstance(spec, dict) or "law" not in spec:
        raise ConfigError(where, "must be a table with a law and its parameters")
    return delays.make_law(spec["law"], **{k: v for k, v in spec.items() if k not in ("law", "label")})


def sync_async_speedup(params: dict, quick: bool) -> TheoryOutput:
    """The async paper's Fig. 5: log of E[T_sync] / E[T_async] = P E[X_(P:P)] / E[X] (Theorem 1)
    against P, per delay law; for exponentials also Corollary 1's P log P."""
    _known(params, {"p_max", "laws"})
    p_max = _int(params, "p_max", 2)
    laws = params.get("laws")
    if not isinstance(laws, list) or not laws:
        raise ConfigError("theory.laws", "must be a list of delay-law tables")
    ps = np.arange(1, p_max + 1)
    curves, labels = [], []
    for i, spec in enumerate(laws):
        law = _law(spec, f"theory.laws[{i}]")
        mean = float(np.asarray(law.mean()))
        curves.append(
            [
                async_theory.sync_async_speedup(int(p), mean, order_statistic_moments(law, int(p), int(p)).mean)
                for p in ps
            ]
        )
        labels.append(str(spec.get("label", spec["law"])))
    ratio = np.asarray(curves)
    asymptotic = np.array([async_theory.sync_async_speedup_asymptotic(int(p)) if p > 1 else 1.0 for p in ps])
    summary = {
        "P": ps.tolist(),
        "speedup": {label: r.tolist() for label, r in zip(labels, ratio)},
        "p_log_p": asymptotic.tolist(),
    }
    arrays = {"P": ps, "speedup": ratio, "labels": np.asarray(labels), "p_log_p": asymptotic}
    return TheoryOutput(
        arrays,
        summary,
        lambda folder: plotting.save_figure(plotting.speedup_vs_p(ps, ratio, labels, asymptotic), folder / "figure"),
    )


def sync_async_tradeoff(params: dict, quick: bool) -> TheoryOutput:
    """The async paper's Fig. 7: the error bounds of Sync (Lemma 3, K = P) and Async SGD
    (Theorem 3, K = 1) against wall-clock time, with the same eta. The paper gives no
    parameters for this figure; the study file states ours."""
    _known(params, {"P", "L", "c", "sigma2", "M_G", "m", "eta", "initial_gap", "delays", "gamma", "p0", "time_horizon"})
    consts = async_theory.TradeoffConstants(
        L=_float(params, "L"),
        c=_float(params, "c"),
        sigma2=_float(params, "sigma2"),
        M_G=_float(params, "M_G"),
        m=_int(params, "m", high=study.INT_MAX),
        eta=_float(params, "eta"),
        initial_gap=_float(params, "initial_gap"),
    )
    p = _int(params, "P", 2)
    law = _law(params.get("delays"), "theory.delays")
    mean = float(np.asarray(law.mean()))
    gamma = _float(params, "gamma")
    p0 = _float(params, "p0") if "p0" in params else 1.0 / p
    times = np.linspace(0.0, _float(params, "time_horizon"), 200 if quick else 1000)
    order_mean = order_statistic_moments(law, p, p).mean
    tradeoff = async_theory.sync_async_tradeoff(times, consts, p, mean, order_mean, gamma, p0)
    floors = {
        "sync": async_theory.k_sync_error_floor(consts, p),
        "async": async_theory.k_async_error_floor(consts, 1, gamma, p0),
    }
    above = tradeoff.asynchronous[1:] > tradeoff.synchronous[1:]  # both start at the initial gap at t = 0
    crossing = np.flatnonzero(above[1:] & ~above[:-1]) + 1
    summary = {
        "error_floors": floors,
        "gamma_prime": async_theory.gamma_prime(gamma, p0),
        "p0": p0,
        "time_per_iteration": {"sync": order_mean, "async": mean / p},
        "curves_cross_at": float(times[crossing[0] + 1]) if crossing.size else None,
    }
    arrays = {"time": times, "sync": tradeoff.synchronous, "async": tradeoff.asynchronous}
    return TheoryOutput(
        arrays,
        summary,
        lambda folder: plotting.save_figure(plotting.tradeoff(times, tradeoff, floors, mean), folder / "figure"),
    )


KINDS: dict[str, Callable[[dict, bool], TheoryOutput]] = {
    "example1": example1,
    "sync_async_speedup": sync_async_speedup,
    "sync_async_tradeoff": sync_async_tradeoff,
}
