"""Figures: error against wall-clock time with 95% bands, and k(t), sized for a paper column."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np

from ..errors import FastkError

if TYPE_CHECKING:  # figures read Results by attribute; Results.plot calls draw_error
    from .results import Results

COLORS = plt.get_cmap("tab10").colors
SCHEME_COLORS = {
    "k_sync": COLORS[0], "k_batch_sync": COLORS[2], "rennala": COLORS[2], "k_async": COLORS[3],
    "k_batch_async": COLORS[4], "ringmaster": COLORS[5],
}
SCHEME_LINES = {
    "k_sync": "-", "k_batch_sync": "-.", "rennala": "-.", "k_async": "--", "k_batch_async": ":", "ringmaster": (0, (5, 1, 1, 1)),
}


def k_color(k: int):
    """The color of fixed k in every figure: golden-ratio steps along a darkened 'turbo' map,
    so that nearby k (10, 20, 30, 40 or 1, 2, 3) get well separated colors."""
    frac = (k * 0.6180339887) % 1.0
    r, g, b, _ = plt.get_cmap("turbo")(0.05 + 0.9 * frac)
    return (0.8 * r, 0.8 * g, 0.8 * b)


OTHER_COLORS = (  # policies that are not a fixed k, in order of appearance
    (0.0, 0.0, 0.0),
    (0.8, 0.0, 0.6),
    (0.6, 0.35, 0.0),
    (0.0, 0.45, 0.45),
    (0.45, 0.45, 0.45),
)


def styles(configurations) -> list[dict]:
    """A color and line style per configuration (its fields: ``Results.configurations``), the
    same in every figure: a fixed k takes ``k_color(k)``; the other policies take
    ``OTHER_COLORS`` in turn, Algorithm 1 (``adaptive``) first (black) and Theorem 1's schedule
    (``bound_optimal``) magenta; the scheme sets the line style. When two fixed-k
    configurations of one figure would look alike (several step sizes of one k), every
    configuration is colored by position instead."""
    configurations = list(configurations)
    out = []
    for conf in configurations:
        fixed = conf.get("policy") == "fixed"
        ls = SCHEME_LINES.get(conf.get("scheme", "k_sync"), "-")
        out.append({"color": k_color(int(conf["k"])) if fixed else None, "ls": ls})
    seen = [(st["color"], st["ls"]) for st in out if st["color"] is not None]
    if len(set(seen)) < len(seen):  # lookalikes: position colors for all
        return [{"color": COLORS[c % len(COLORS)], "ls": st["ls"]} for c, st in enumerate(out)]
    others = [conf for conf, st in zip(configurations, out) if st["color"] is None]
    bound = [conf["label"] for conf in others if conf.get("policy") == "bound_optimal"][:1]
    rest = [conf for conf in others if conf["label"] not in bound]
    rest.sort(key=lambda conf: conf.get("policy") != "adaptive")  # Algorithm 1 first: black
    palette = {label: OTHER_COLORS[1] for label in bound}
    free = [c for c in OTHER_COLORS if c not in palette.values()]
    for i, conf in enumerate(rest):
        palette.setdefault(conf["label"], free[i] if i < len(free) else COLORS[i % len(COLORS)])
    return [
        st if st["color"] is not None else {**st, "color": palette[conf["label"]]}
        for conf, st in zip(configurations, out)
    ]


def result_styles(results: Results) -> list[dict]:
    """``styles`` of every row of ``results``."""
    return styles(results._fields())


def seeds_title(results: Results, bands: str = ", 95% bands") -> str:
    """A legend's title that says how many seeds each mean averages: "mean of 8 seeds", or,
    where runs diverged (they are left out of the means), "mean of 3 of 8 seeds (5 diverged)"
    when every configuration lost as many, else that the diverged runs are left out (each
    label then says how many, ``seeds_label``)."""
    seeds, diverged = int(results.seeds), np.asarray(results.diverged)
    if not diverged.any():
        return f"mean of {seeds} seeds{bands}"
    if np.all(diverged == diverged[0]):
        return f"mean of {seeds - int(diverged[0])} of {seeds} seeds ({int(diverged[0])} diverged){bands}"
    return f"mean of {seeds} seeds less the diverged runs{bands}"


def seeds_label(results: Results, c: int) -> str:
    """Configuration ``c``'s legend label, with "(3 of 8 seeds: 5 diverged)" where some of its
    runs diverged and the title does not already say so."""
    diverged = np.asarray(results.diverged)
    d, seeds = int(diverged[c]), int(results.seeds)
    if d == 0 or np.all(diverged == diverged[0]) or d >= seeds:
        return str(results.labels[c])
    return f"{results.labels[c]} ({seeds - d} of {seeds} seeds: {d} diverged)"


METRIC_LABELS = {  # y-axis labels of the metrics (``core.problems.METRICS``), at time t (iteration j)
    "error": r"$F(w_{}) - F^*$",
    "loss": r"training loss $F(w_{})$",
    "grad_norm2": r"$\|\nabla F(w_{})\|^2$",
    "test_loss": "test loss",
    "test_accuracy": "test accuracy",
}


def metric_label(name: str, at: str = "t") -> str:
    """The axis label of metric ``name`` (or of its iteration curve ``iter_NAME``)."""
    name = name.removeprefix("iter_")
    return METRIC_LABELS.get(name, name).replace("{}", at)


def _log_scale(name: str) -> bool:
    """Losses and errors on log axes; accuracy (a fraction) on a linear one."""
    return name.removeprefix("iter_") != "test_accuracy"


def _error_bands(ax, xs, band, results: Results, log: bool = True) -> None:
    """Each configuration's mean error against its x values ``xs(c)`` on a log scale (``log``),
    with its 95% band. A band whose lower edge is at or below zero runs to the bottom of the
    panel (the edge is off the log axis); a configuration with no finite mean (every run
    diverged) is only named in the legend."""
    if not log:
        styles = result_styles(results)
        for c, label in enumerate(results.labels):
            b_mean, b_half = band.mean[c], band.half_width[c]
            ax.plot(xs(c), b_mean, lw=1.2, label=seeds_label(results, c), **styles[c])
            ok = np.isfinite(b_mean) & np.isfinite(b_half)
            ax.fill_between(xs(c), b_mean - b_half, b_mean + b_half, where=ok, color=styles[c]["color"], alpha=0.25, lw=0)
        return
    with np.errstate(invalid="ignore"):
        shown = band.mean > 0
        floor = 0.5 * np.min(band.mean[shown]) if shown.any() else 1.0
        lows = np.where(band.mean - band.half_width > 0, band.mean - band.half_width, floor)
    styles = result_styles(results)
    for c, label in enumerate(results.labels):
        color = styles[c]["color"]
        if not shown[c].any():
            ax.plot([], [], color=color, lw=1.2, label=f"{label} (no finite runs)")
            continue
        ax.plot(xs(c), np.where(shown[c], band.mean[c], np.nan), lw=1.2, label=seeds_label(results, c), **styles[c])
        ok = shown[c] & np.isfinite(band.half_width[c])
        ax.fill_between(xs(c), lows[c], band.mean[c] + band.half_width[c], where=ok, color=color, alpha=0.25, lw=0)
    if shown.any():
        ax.set_yscale("log")
    ax.legend(
        fontsize=6.5,
        frameon=False,
        ncol=2 if len(results.labels) > 4 else 1,
        title=seeds_title(results),
        title_fontsize=6.5,
    )


def error_vs_time(results: Results, title: str = "", metric: str | list[str] | None = None) -> plt.Figure:
    """Panels sharing the time axis (in units of the mean delay): the mean of each metric in
    ``metric`` (a name or a list; default: the tracked one, F(w_t) - F* unless the study tracks
    another) with its 95% band, on a log scale (accuracy: linear), and the mean k(t) (left out
    when no configuration changes k)."""
    names = [results.metric] if metric is None else [metric] if isinstance(metric, str) else list(metric)
    for name in names:
        if name not in results.metrics:
            raise FastkError(f"no metric {name!r} in these results; recorded: {', '.join(results.metrics)}")
    k = results.bands["k"]
    k_varies = bool(np.any(np.nanmax(k.mean, axis=1) != np.nanmin(k.mean, axis=1)))
    ratios = [3] * len(names) + ([1.3] if k_varies else [])
    fig, axes = plt.subplots(
        len(ratios),
        1,
        figsize=(3.5, 2.9 + 2.2 * (len(names) - 1) + (1.0 if k_varies else 0.0)),
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": ratios},
        constrained_layout=True,
    )
    axes = list(axes[:, 0])
    ax_k = axes[-1] if k_varies else None

    def time(c):
        return results.time_grid / results.mean_delay[c]

    for ax, name in zip(axes, names):
        _error_bands(ax, time, results.bands[name], results, log=_log_scale(name))
        ax.set_ylabel(metric_label(name))
        ax.grid(True, which="major", lw=0.3, alpha=0.5)
    if len(names) > 1:  # one legend is enough
        for ax in axes[1 : len(names)]:
            legend = ax.get_legend()
            if legend is not None:
                legend.remove()
    if ax_k is not None:
        for c, style in enumerate(result_styles(results)):
            ax_k.plot(time(c), k.mean[c], lw=1.2, **style)
    if title:
        axes[0].set_title(title, fontsize=8)
    same_unit = np.allclose(results.mean_delay, results.mean_delay[0])
    unit = "the mean delay" if same_unit else "each configuration's mean delay"
    axes[-1].set_xlabel(f"wall-clock time (units of {unit})")
    if ax_k is not None:
        ax_k.set_ylabel("mean $k$")
        ax_k.grid(True, lw=0.3, alpha=0.5)
    for ax in axes:
        ax.tick_params(which="both", labelsize=7)
        ax.xaxis.label.set_size(8)
        ax.yaxis.label.set_size(8)
    return fig


def save_figure(fig: plt.Figure, prefix: Path) -> None:
    """Write ``prefix``.png (200 dpi) and ``prefix``.pdf, then close the figure."""
    fig.savefig(prefix.with_suffix(".png"), dpi=200)
    fig.savefig(prefix.with_suffix(".pdf"))
    plt.close(fig)


def quietly(draw):
    """``draw`` (a figure writer) without NumPy's RuntimeWarnings: curves with no finite point
    (every run diverged) are drawn as gaps, which is what the warnings would say."""

    def quiet_draw(*args, **kwargs):
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            return draw(*args, **kwargs)

    return quiet_draw


def error_vs_iterations(results: Results, title: str = "") -> plt.Figure:
    """The tracked metric's mean (F(w_j) - F* unless the study tracks another) against the
    number of updates j, log scale, 95% bands."""
    fig, ax = plt.subplots(figsize=(3.5, 2.7), constrained_layout=True)
    _error_bands(ax, lambda c: results.iteration_grid, results.bands[f"iter_{results.metric}"], results)
    if title:
        ax.set_title(title, fontsize=8)
    _style(ax, "updates j", metric_label(results.metric, "j"))
    return fig


def communication(results: Results, title: str = "") -> plt.Figure:
    """The adaptive paper's Figs. 4 and 6: the communication needed to reach each error level,
    (a) gradients downloaded and (b) downloads plus model vectors uploaded. Read as the paper
    reads its figures: at the first time the seed-averaged error curve is at or below the level
    (``metrics.reach``), the mean communication by then, with the 95% band of that communication
    over seeds. (Each run's own first passage is in the results too, ``reach_*``: noisy runs dip
    below their floor early, so it answers a different question.)"""
    from . import metrics

    fig, axes = plt.subplots(1, 2, figsize=(7.0, 2.8), sharex=True, constrained_layout=True)
    reached = [metrics.reach(results, level) for level in results.levels]
    rows = np.arange(len(results.labels))
    for ax, field, band_names, what in zip(
        axes,
        ("downloads", "total"),
        (("downloads",), ("downloads", "fetches")),
        ("(a) download", "(b) download + upload"),
    ):
        styles = result_styles(results)
        for c, label in enumerate(results.labels):
            color = styles[c]["color"]
            hit = np.array([r.index[c] >= 0 for r in reached])
            if not hit.any():
                ax.plot([], [], color=color, lw=1.2, label=f"{label} (no level reached)")
                continue
            index = np.array([r.index[c] for r in reached])[hit]
            mean = np.array([getattr(r, field)[c] for r in reached])[hit]
            # the band of a sum of two counts: half-widths added, an upper bound on the sum's
            half = sum(np.nan_to_num(results.bands[n].half_width[rows[c], index]) for n in band_names)
            x = results.levels[hit]
            ax.plot(x, mean, lw=1.2, label=seeds_label(results, c), **styles[c])
            ax.fill_between(x, np.maximum(mean - half, 0.0), mean + half, color=color, alpha=0.25, lw=0)
        ax.set_xscale("log")
        ax.set_title(what, fontsize=8)
        _style(ax, r"error level $F(w) - F^*$ reached (mean curve)", "vectors communicated")
    axes[0].legend(fontsize=6.5, frameon=False, title=seeds_title(results), title_fontsize=6.5)
    if title:
        fig.suptitle(title, fontsize=8)
    return fig


def runtime_vs_k(results: Results, groups: list[dict], iterations: int, title: str = "") -> plt.Figure:
    """Expected runtime of ``iterations`` updates against k, one line per scheme, one panel per
    delay law: ``iterations`` x the measured mean time per update (95% band), with the theory of
    the async paper (``theory.async_theory``) dashed. ``groups`` describes each panel:
    {"title", "rows": {scheme: [(k, configuration index), ...]}, "theory": {name: [(k, value), ...]}}."""
    fig, axes = plt.subplots(
        1, len(groups), figsize=(3.5 * min(len(groups), 2), 2.7), constrained_layout=True, squeeze=False
    )
    tpi = results.time_per_iteration
    for ax, group in zip(axes[0], groups):
        for i, (scheme, rows) in enumerate(group["rows"].items()):
            ks = [k for k, _ in rows]
            idx = [c for _, c in rows]
            mean, half = iterations * tpi.mean[idx], iterations * tpi.half_width[idx]
            ax.errorbar(
                ks,
                mean,
                yerr=half,
                color=SCHEME_COLORS.get(scheme, COLORS[i % len(COLORS)]),
                lw=1.2,
                marker="o",
                ms=2.5,
                capsize=2,
                label=f"{scheme} (simulated)",
            )
        for i, (name, points) in enumerate(group["theory"].items()):
            ax.plot(*zip(*points), color="black", lw=0.9, ls=("--", ":", "-.")[i % 3], label=name)
        ax.set_title(group["title"], fontsize=8)
        ax.legend(fontsize=6, frameon=False)
        _style(ax, "K", f"runtime of {iterations} updates")
    if title:
        fig.suptitle(title, fontsize=8)
    return fig


# ---------------------------------------------------------------- theory figures


def _style(ax, xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(which="both", labelsize=7)
    ax.grid(True, which="major", lw=0.3, alpha=0.5)


def example1_bounds(ex: dict) -> plt.Figure:
    """Adaptive paper Fig. 1: Lemma 1's bound for each fixed k and along Theorem 1's schedule."""
    fig, ax = plt.subplots(figsize=(3.5, 2.7), constrained_layout=True)
    for k, bound in enumerate(ex["bounds"], start=1):
        ax.plot(ex["t"], bound, color=k_color(k), lw=1.1, label=f"k={k}")
    ax.plot(ex["t"], ex["adaptive_bound"], color="black", lw=1.2, ls="--", label="adaptive (Theorem 1)")
    ax.set_yscale("log")
    ax.legend(fontsize=6.5, frameon=False, ncol=2)
    _style(
        ax, f"wall-clock time (mean delay {ex['mean_times'][0] * len(ex['mean_times']):g})", r"bound on $F(w_t) - F^*$"
    )
    return fig


def example1_k(ex: dict) -> plt.Figure:
    """Adaptive paper Fig. 2: the bound-optimal fixed k (a) and Theorem 1's adaptive k (b)."""
    fig, axes = plt.subplots(1, 2, figsize=(3.5, 2.0), sharey=True, constrained_layout=True)
    for ax, key, title in zip(axes, ("best_fixed_k", "adaptive_k"), ("(a) best fixed k", "(b) adaptive k")):
        ax.step(ex["t"], ex[key], where="post", color="black", lw=1.1)
        ax.set_title(title, fontsize=8)
        _style(ax, "wall-clock time", "k" if key == "best_fixed_k" else "")
        ax.set_yticks(range(1, int(np.max(ex[key])) + 1))
        ax.xaxis.get_offset_text().set_fontsize(6.5)
    return fig


def speedup_vs_p(ps: np.ndarray, speedup: np.ndarray, labels: list[str], p_log_p: np.ndarray) -> plt.Figure:
    """Async paper Fig. 5: log E[T_sync] / E[T_async] against P per delay law (Theorem 1)."""
    fig, ax = plt.subplots(figsize=(3.5, 2.6), constrained_layout=True)
    for i, (label, ratio) in enumerate(zip(labels, speedup)):
        ax.plot(ps, np.log(ratio), color=COLORS[i % len(COLORS)], lw=1.2, marker="o", ms=2.5, label=label)
    ax.plot(ps, np.log(p_log_p), color="gray", lw=1.0, ls=":", label=r"$P \log P$ (Corollary 1)")
    ax.legend(fontsize=6.5, frameon=False)
    _style(ax, "learners P", r"$\log\, E[T_{sync}] / E[T_{async}]$")
    return fig


def tradeoff(times: np.ndarray, curves, floors: dict, mean_delay: float) -> plt.Figure:
    """Async paper Fig. 7: the error bounds of Sync (K = P) and Async (K = 1) SGD against time."""
    fig, ax = plt.subplots(figsize=(3.5, 2.6), constrained_layout=True)
    t = times / mean_delay
    for i, (name, curve) in enumerate((("sync", curves.synchronous), ("async", curves.asynchronous))):
        color = COLORS[i]
        ax.plot(t, curve, color=color, lw=1.2, label=f"{name} SGD")
        ax.axhline(floors[name], color=color, lw=0.7, ls=":")
    ax.set_yscale("log")
    ax.legend(fontsize=6.5, frameon=False)
    _style(ax, "wall-clock time (units of the mean delay)", r"bound on $F(w) - F^*$")
    return fig


# ---------------------------------------------------------------- sweeps

SWEEP_METRICS = {
    "time_to_eps": "time to reach eps",
    "error_at_deadline": r"$F(w) - F^*$ at the deadline",
    "final_error": r"$F(w) - F^*$ at the horizon",
    "downloads_to_eps": "gradients downloaded to reach eps",
    "communication_to_eps": "downloads + uploads to reach eps",
    "diverged": "diverged runs",
    "time_per_iteration": "time per update",
    "time_to_eps_over_best_fixed": "time to reach eps / best fixed k's",
    "error_at_deadline_over_best_fixed": "error at the deadline / best fixed k's",
}


def _numeric(values: np.ndarray) -> bool:
    return values.dtype.kind in "iuf"


def _log_worthy(values: np.ndarray) -> bool:
    """Positive numbers spanning more than a factor of 20: drawn on a log scale."""
    v = values[np.isfinite(values)] if _numeric(values) else np.zeros(0)
    return v.size > 1 and bool(np.all(v > 0)) and v.max() / v.min() > 20


def sweep_figure(
    columns: dict[str, np.ndarray],
    axes: list[str],
    plot: dict,
    eps: float,
    deadline: float,
    title: str = "",
    fields: dict[str, dict] | None = None,
) -> plt.Figure:
    """A metric of a sweep's table against one axis (a line per configuration label and value
    of the other axes) or two axes (a heat map per label). Empty cells / gaps: eps not reached
    (or every run diverged); an x marks a cell with diverged runs."""
    fields = fields or {}  # a row's label (and a policy's label) -> its configuration's fields

    def fields_of(label: str) -> dict:
        return {**fields.get(label, {}), "label": label}

    if plot["kind"] == "bars":
        return _sweep_bars(columns, plot["metric"], title, fields_of)
    original_columns = columns
    if "case" in columns:  # a line or a panel per case and configuration
        columns = {**columns, "label": np.char.add(np.char.add(columns["case"], ": "), columns["label"])}
    metric, x = plot["metric"], plot["x"]
    name = SWEEP_METRICS[metric].replace("eps", f"eps={eps:g}").replace("deadline", f"deadline t={deadline:g}")
    labels = list(dict.fromkeys(columns["label"].tolist()))
    values = np.asarray(columns[metric], np.float64)
    if "y" in plot:
        return _sweep_heat_maps(columns, plot, labels, values, name, title)
    others = [a for a in axes if a != x]
    series: dict[tuple, list[int]] = {}
    for r in range(len(values)):
        key = (columns["label"][r], *(columns[a][r] for a in others))
        series.setdefault(key, []).append(r)
    fig, ax = plt.subplots(figsize=(3.5, 2.7), constrained_layout=True)
    xs_all = columns[x]
    numeric_x = _numeric(xs_all)
    categories = list(dict.fromkeys(xs_all.tolist()))
    styles = _styles_of_series(series, original_columns, fields)
    if len(series) > len(labels):  # several lines per label: position colors
        styles = [{"color": COLORS[i % len(COLORS)], "ls": s["ls"]} for i, s in enumerate(styles)]
    for (key, rows), style in zip(series.items(), styles):
        rows = sorted(rows, key=lambda r: xs_all[r] if numeric_x else categories.index(xs_all[r]))
        xv = xs_all[rows] if numeric_x else [categories.index(v) for v in xs_all[rows]]
        text = ", ".join([str(key[0])] + [f"{a}={v}" for a, v in zip(others, key[1:])])
        ax.plot(xv, values[rows], marker="o", ms=2.5, lw=1.2, label=text, **style)
        bad = [i for i, r in enumerate(rows) if columns["diverged"][r] > 0]
        if bad:
            ax.plot(np.asarray(xv)[bad], values[rows][bad], "x", color="red", ms=5)
    if numeric_x and _log_worthy(xs_all.astype(np.float64)):
        ax.set_xscale("log")
    if not numeric_x:
        ax.set_xticks(range(len(categories)), [str(c) for c in categories])
    if _log_worthy(values):
        ax.set_yscale("log")
    ax.legend(fontsize=6, frameon=False)
    _style(ax, x, name)
    if title:
        ax.set_title(title, fontsize=8)
    return fig


def _short(v: float) -> str:
    """A cell's number in at most about five characters."""
    return f"{v:.0f}" if 10 <= abs(v) < 1e5 else f"{v:.2g}"


def _text_color(image, value: float) -> str:
    """Black on light cells (and empty ones), white on dark."""
    if not np.isfinite(value):
        return "black"
    r, g, b, _ = image.cmap(image.norm(value))
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _sweep_heat_maps(columns, plot, labels, values, name, title) -> plt.Figure:
    from matplotlib.colors import LogNorm, Normalize

    x, y = plot["x"], plot["y"]
    xs, ys = list(dict.fromkeys(columns[x].tolist())), list(dict.fromkeys(columns[y].tolist()))
    if _numeric(columns[x]):
        xs.sort()
    if _numeric(columns[y]):
        ys.sort()
    ncols = min(len(labels), 3)
    nrows = math.ceil(len(labels) / ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(max(2.6, 0.45 * len(xs) + 0.9) * ncols + 0.6, max(2.3, 0.3 * len(ys) + 1.0) * nrows),
        constrained_layout=True,
        squeeze=False,
    )
    finite = values[np.isfinite(values)]
    norm = Normalize()
    if _log_worthy(values):
        norm = LogNorm(finite.min(), finite.max())
    elif finite.size:
        norm = Normalize(finite.min(), finite.max())
    image = None
    for ax, label in zip(axes.flat, labels):
        grid = np.full((len(ys), len(xs)), np.nan)
        diverged = np.zeros_like(grid, bool)
        for r in np.flatnonzero(columns["label"] == label):
            # with more than two axes, a cell shows the best value over the others
            i, j = ys.index(columns[y][r].item()), xs.index(columns[x][r].item())
            if np.isnan(grid[i, j]) or values[r] < grid[i, j]:
                grid[i, j] = values[r]
            diverged[i, j] |= columns["diverged"][r] > 0
        image = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis", norm=norm)
        ax.set_facecolor((0.85, 0.85, 0.85))
        if grid.size <= 64:
            for i in range(len(ys)):
                for j in range(len(xs)):
                    text = "-" if np.isnan(grid[i, j]) else _short(grid[i, j])
                    ax.text(
                        j,
                        i,
                        text + (" x" if diverged[i, j] else ""),
                        ha="center",
                        va="center",
                        fontsize=5.5,
                        color=_text_color(image, grid[i, j]),
                    )
        ax.set_xticks(range(len(xs)), [f"{v:g}" if isinstance(v, float) else str(v) for v in xs])
        ax.set_yticks(range(len(ys)), [f"{v:g}" if isinstance(v, float) else str(v) for v in ys])
        ax.set_title(str(label), fontsize=8)
        _style(ax, x, y)
        ax.grid(False)
    for ax in list(axes.flat)[len(labels) :]:
        ax.set_visible(False)
    if image is not None:
        bar = fig.colorbar(image, ax=axes, shrink=0.9)
        bar.set_label(f"{name} (-: not reached)", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    if title:
        fig.suptitle(title, fontsize=8)
    return fig


def envelope(results: Results, env, title: str = "") -> plt.Figure:
    """The fixed-k curves (thin), their lower envelope (the best fixed k in hindsight, thick
    gray) and the other policies (with 95% bands); below, each other policy's error over the
    envelope, and the best fixed k in hindsight against the policies' mean k. ``env`` is
    ``metrics.envelope``."""
    fig, (ax_err, ax_ratio, ax_k) = plt.subplots(
        3, 1, figsize=(4.8, 4.6), sharex=True, gridspec_kw={"height_ratios": [3, 1.4, 1.2]}, layout="constrained"
    )
    t = results.time_grid / results.mean_delay[0]
    styles = result_styles(results)
    members = set(env.members.tolist())
    err = results.bands[results.metric]
    ax_err.plot(t, env.error, color=(0.6, 0.6, 0.6), lw=4, alpha=0.6, label="envelope (best fixed k)", zorder=1)
    for c, label in enumerate(results.labels):
        if c in members:
            ax_err.plot(t, err.mean[c], lw=0.7, alpha=0.8, label=seeds_label(results, c), **styles[c])
            continue
        with np.errstate(invalid="ignore"):
            low = np.where(err.mean[c] - err.half_width[c] > 0, err.mean[c] - err.half_width[c], np.nan)
        ax_err.plot(t, err.mean[c], lw=1.4, label=seeds_label(results, c), zorder=3, **styles[c])
        ax_err.fill_between(t, low, err.mean[c] + err.half_width[c], color=styles[c]["color"], alpha=0.12, lw=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ax_ratio.plot(t[1:], err.mean[c, 1:] / env.error[1:], lw=1.2, **styles[c])
        ax_k.plot(t, results.bands["k"].mean[c], lw=1.2, **styles[c])
    best_k = np.where(env.best >= 0, results.bands["k"].mean[np.maximum(env.best, 0), 0], np.nan)
    ax_k.step(t, best_k, where="post", color=(0.6, 0.6, 0.6), lw=2.5, alpha=0.7, zorder=1)
    ax_ratio.axhline(1.0, color=(0.6, 0.6, 0.6), lw=2.5, alpha=0.7, zorder=1)
    ax_err.set_yscale("log")
    ax_ratio.set_yscale("log")
    fig.legend(
        *ax_err.get_legend_handles_labels(),
        loc="outside right upper",
        fontsize=6,
        frameon=False,
        title=seeds_title(results, bands=""),
        title_fontsize=6,
    )
    _style(ax_err, "", metric_label(results.metric))
    _style(ax_ratio, "", "error / envelope")
    _style(ax_k, "wall-clock time (units of the mean delay)", "k (gray: best\nfixed k)")
    if title:
        ax_err.set_title(title, fontsize=8)
    return fig


def _styles_of_series(series: dict[tuple, list[int]], columns: dict, fields: dict[str, dict]) -> list[dict]:
    """``styles`` of a sweep figure's lines: each line's configuration fields, by the label of
    its first row."""
    return styles([{**fields.get(str(columns["label"][rows[0]]), {}), "label": key[0]} for key, rows in series.items()])


def _sweep_bars(columns: dict[str, np.ndarray], metric: str, title: str, fields_of) -> plt.Figure:
    """A sweep of cases: a panel per case, a group of bars per cluster, a bar per policy (colors
    as in every figure). A missing bar is marked "n/r": eps not reached (or every run diverged)."""
    cases = list(dict.fromkeys(columns["case"].tolist())) if "case" in columns else [""]
    clusters = list(dict.fromkeys(columns["cluster"].tolist()))
    names = list(dict.fromkeys(columns["policy"].tolist()))
    palette = dict(zip(names, styles([fields_of(name) for name in names])))
    values = np.asarray(columns[metric], np.float64)
    fig, axes = plt.subplots(
        len(cases),
        1,
        figsize=(max(3.5, 0.18 * len(names) * len(clusters) + 2.2), 2.2 * len(cases) + 0.6),
        squeeze=False,
        layout="constrained",
    )
    width = 0.8 / len(names)
    for ax, case in zip(axes[:, 0], cases):
        below = matplotlib.transforms.blended_transform_factory(ax.transData, ax.transAxes)
        for i, name in enumerate(names):
            for j, cluster in enumerate(clusters):
                rows = np.flatnonzero(
                    (columns["policy"] == name)
                    & (columns["cluster"] == cluster)
                    & ((columns["case"] == case) if "case" in columns else True)
                )
                x = j - 0.4 + (i + 0.5) * width
                v = values[rows[0]] if rows.size else np.nan
                if np.isfinite(v):
                    ax.bar(x, v, width, color=palette[name]["color"], label=name if j == 0 else None)
                else:
                    ax.bar(x, 0, width, color=palette[name]["color"], label=name if j == 0 else None)
                    ax.text(x, 0.02, "n/r", ha="center", va="bottom", fontsize=4.5, rotation=90, transform=below)
        ax.set_xticks(range(len(clusters)), clusters)
        if metric.endswith("_over_best_fixed"):
            ax.axhline(1.0, color="black", lw=0.6, ls=":")
        if _log_worthy(values):
            ax.set_yscale("log")
        _style(ax, "", SWEEP_METRICS[metric])
        ax.set_title(case, fontsize=8)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", fontsize=5.5, frameon=False, ncol=4)
    if title:
        fig.suptitle(title, fontsize=8)
    return fig


def draw_error(
    results: Results,
    ax=None,
    kind: str = "error_vs_time",
    statistic: str = "mean",
    title: str = "",
    metric: str | None = None,
):
    """Every configuration's curve of ``metric`` (default: the tracked one) on ``ax`` (default:
    a new figure), log scale (accuracy: linear): the ``statistic`` over seeds: "mean" (95%
    band), "median" (band: the interquartile range) or "geomean" (no band), the last two from
    kept runs. ``kind``: error_vs_time (x in time units) or error_vs_iterations (the tracked
    metric only). Returns the axes."""
    from ..errors import ConfigError

    metric = metric or results.metric
    if metric not in results.metrics:
        raise ConfigError("metric", f"no metric {metric!r} in these results; recorded: {', '.join(results.metrics)}")
    if kind == "error_vs_iterations" and metric != results.metric:
        raise ConfigError("metric", f"only the tracked metric {results.metric!r} is recorded on the iteration grid")
    name = {"error_vs_time": metric, "error_vs_iterations": f"iter_{metric}"}.get(kind)
    if name is None:
        raise ConfigError("kind", f"must be error_vs_time or error_vs_iterations, got {kind!r}")
    if statistic == "mean":
        b = results.bands[name]
        center, low, high = b.mean, b.mean - b.half_width, b.mean + b.half_width
    elif statistic == "median":
        low, center, high = results.quantiles(name, [0.25, 0.5, 0.75])
    elif statistic == "geomean":
        center = results.geometric_mean(name)
        low = high = center
    else:
        raise ConfigError("statistic", f"must be mean, median or geomean, got {statistic!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(3.5, 2.7), constrained_layout=True)
    x = results.grid(name)
    log = _log_scale(metric)
    with np.errstate(invalid="ignore"):
        for c, style in enumerate(result_styles(results)):
            shown = center[c] > 0 if log else np.isfinite(center[c])
            ax.plot(x, np.where(shown, center[c], np.nan), lw=1.2, label=str(results.labels[c]), **style)
            ok = shown & np.isfinite(low[c]) & np.isfinite(high[c]) & ((low[c] > 0) if log else True)
            if statistic != "geomean":
                ax.fill_between(x, low[c], high[c], where=ok, color=style["color"], alpha=0.25, lw=0)
    if log:
        ax.set_yscale("log")
    what = {"mean": "mean, 95% bands", "median": "median, interquartile bands", "geomean": "geometric mean"}[statistic]
    ax.legend(fontsize=6.5, frameon=False, title=f"{what}, {results.seeds} seeds", title_fontsize=6.5)
    _style(ax, "time" if kind == "error_vs_time" else "iterations", metric_label(metric, "t" if kind == "error_vs_time" else "j"))
    if title:
        ax.set_title(title, fontsize=8)
    return ax
