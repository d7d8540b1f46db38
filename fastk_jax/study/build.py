"""From a study to what the engine runs: the problem with its data loaded, and every
configuration (a cluster x a policy x a step size) as arrays (``core.spec.SimConfig``) with
its static settings (``core.spec.RunSpec``) and its labelled fields."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, NamedTuple

import numpy as np

from .. import data
from ..core import delays, policies, problems
from ..core.spec import CLUSTER_FEATURES, Failures, Network, RunSpec, Shared, SimConfig, Straggle
from ..errors import ConfigError
from .definition import Study
from .model import MLP, BoundOptimal, Delays, Fixed, Linear, Logistic, Oracle, Policy, default_metrics


def build_problem(p: Linear | Logistic | MLP, say=None) -> problems.Problem:
    """The problem, data loaded and F* computed (may raise DataError): its kind's ``build``;
    ``say`` receives progress lines of a long step (F* by Newton's method on MNIST)."""
    return p.build(say=say)


def delay_law(d: dict, batch_size: int) -> delays.DelayLaw:
    """A resolved cluster's law (``Study.resolved["delays"][i]``); a work-dependent shift grows
    with the mini-batch size. A trace is read again from its file (parsed once per content),
    which must not have changed."""
    if d["law"] == "trace":
        trace = data.load_trace(d["file"], sha256=d["sha256"])
        return delays.make_law("trace", table=trace.table, counts=trace.counts)
    params = {k: d[k] for k in delays.parameter_names(d["law"])}
    if "shift_per_row" in d:
        params["shift"] = params["shift"] + batch_size * d["shift_per_row"]
    return delays.make_law(d["law"], **params)


def bound_optimal(pc, law, slowdown: np.ndarray, eta: float) -> policies.KPolicy:
    """Theorem 1's schedule for a problem's constants ``pc`` (``theory.constants``), a cluster
    and a step size, with mu_k = E[X_(k:n)] from ``theory.order_stats``."""
    from ..theory.fastest_k_bounds import BoundConstants, bound_optimal_policy, order_means

    if not 0 < eta * pc.c < 1:
        raise ConfigError("run.eta", f"Theorem 1 needs 0 < eta c < 1; eta={eta:g} and c={pc.c:.4g}")
    bc = BoundConstants(eta=eta, L=pc.L, c=pc.c, sigma2=pc.sigma2, s=pc.s, gap0=pc.initial_gap)
    iid = bool(np.all(slowdown == 1.0))
    return bound_optimal_policy(bc, order_means(law, slowdown.size, None if iid else slowdown))


class Configuration(NamedTuple):
    """One configuration of a study: a cluster x a policy x a step size."""

    label: str
    config: SimConfig
    spec: RunSpec
    delays: Delays  # the cluster
    policy: Policy  # the policy as the study states it
    settings: dict[str, Any]  # the scheme settings it runs with (``model.SCHEME_FIELDS``)
    eta: float
    mean_delay: float  # the cluster's mean delay: the time unit

    def fields(self) -> dict[str, Any]:
        """The configuration as labelled fields (for results, tables and figures): the label,
        the policy's kind and parameters, the scheme settings, eta, the cluster's label and law."""
        params = {k: list(v) if isinstance(v, tuple) else v for k, v in self.policy.parameters().items()}
        return {
            "label": self.label,
            "policy": self.policy.kind,
            **params,
            **self.settings,
            "eta": self.eta,
            "delays": self.delays.label or self.delays.law,
            "law": self.delays.law,
        }


def configurations(study: Study, problem: problems.Problem | None = None, custom: bool = False) -> list[Configuration]:
    """Every cluster x every policy x every eta, with labels. A bound-optimal policy needs the
    ``problem``; an oracle stands in as the smallest fixed k until ``runner.execute.run_all``
    knows the envelope it follows. ``custom``: ``problem`` is the user's, not the study's kind
    (the metrics default to what it can give)."""
    metrics = metrics_of(study, problem if custom else None)
    etas, run = study.run.etas, study.run
    out = []
    constants = None
    for cluster, d in zip(study.delays, study.resolved["delays"]):
        slowdown = np.asarray(d["slowdown"], np.float64)
        for p in study.policies:
            settings = study.scheme_of(p)
            law = delay_law(d, settings["batch_size"])
            for eta in etas:
                label = study.label_of(p) if len(etas) == 1 else f"{study.label_of(p)}, eta={eta:g}"
                if len(study.delays) > 1:
                    label = f"{label}, {d['label']}"
                if isinstance(p, BoundOptimal):
                    if problem is None:
                        raise ValueError("a bound-optimal policy needs the problem")
                    if constants is None:
                        from ..theory.constants import problem_constants

                        constants = problem_constants(problem)
                    # Markov stragglers enter as their stationary mean factor (Theorem 1 assumes iid
                    # workers, independent over iterations: with them, the schedule is a heuristic)
                    factor = float(Straggle(**d["markov"]).mean_factor()) if "markov" in d else 1.0
                    policy = bound_optimal(constants, law, slowdown * factor, eta)
                elif isinstance(p, Oracle):
                    policy = policies.fixed(min(q.k for q in study.policies if isinstance(q, Fixed)))
                else:
                    policy = p.build()
                straggle = Straggle(*(np.float64(v) for v in d.get("markov", Straggle()._asdict()).values()))
                config = SimConfig(
                    policy, np.float64(eta), law, slowdown, np.float64(settings["lr_c"]), straggle,
                    staleness_limit=np.float64(settings["staleness_limit"] or np.inf),
                    clip=np.float64(np.inf if settings["clip"] is None else settings["clip"]),
                    **cluster_parts(d, problem),
                )
                spec = RunSpec(
                    n=study.n_workers,
                    chunk=run.chunk,
                    optimizer=run.optimizer,
                    momentum=run.momentum,
                    scheme=settings["scheme"],
                    gradients=settings["gradients"],
                    batch_size=settings["batch_size"],
                    lr=settings["lr"],
                    staleness_bins=run.staleness_bins,
                    metrics=metrics,
                    cluster=tuple(name for name in CLUSTER_FEATURES if name in d),
                )
                out.append(Configuration(label, config, spec, cluster, p, settings, float(eta), d["mean"]))
    return out


def cluster_parts(d: dict[str, Any], problem: problems.Problem | None) -> dict[str, Any]:
    """The SimConfig fields of a resolved delay table's network, shared slowdown and failures
    (``core.spec``); a network's transfer time is bytes / bandwidth, 4 bytes per parameter
    unless the table gives ``bytes``."""
    out: dict[str, Any] = {}
    if "network" in d:
        net = d["network"]
        transfer = np.zeros(len(d["slowdown"]))
        if net["bandwidth"] is not None:
            if net["bytes"] is None and problem is None:
                raise ValueError("a network's transfer time needs the problem's size (or delays.network.bytes)")
            size = net["bytes"] if net["bytes"] is not None else 4 * problem.num_params
            transfer = size / np.asarray(net["bandwidth"], np.float64)
        out["network"] = Network(np.float64(net["latency"]), transfer)
    if "shared" in d:
        out["shared"] = Shared(np.float64(d["shared"]["prob"]), np.float64(d["shared"]["factor"]))
    if "failures" in d:
        out["failures"] = Failures(np.float64(d["failures"]["prob"]), np.float64(d["failures"]["downtime"]))
    return out


def metrics_of(study: Study, problem: problems.Problem | None = None) -> tuple[str, ...]:
    """The metrics a study records: its [run] metrics, else F - F* where the problem (``problem``,
    else the study's kind) knows F*, the training loss where not."""
    if study.run.metrics:
        return tuple(study.run.metrics)
    if problem is not None:
        return problems.default_metrics(problem)
    return default_metrics(type(study.problem))


NO_STEP_LIMIT = "no stable step-size limit is known for this problem ({kind}): run.eta is not checked"


def check_step_size(study: Study, problem: problems.Problem) -> float | None:
    """Warn (a ``UserWarning``) for each step size at or above the problem's stable limit
    2 / max_i L_i (``problems.stable_step_limit``: least squares and logistic regression, whose
    curvature is bounded), and return the limit; None where no curvature bound is known (a
    network). That case is not a warning (nothing is wrong, and every MLP study would print
    it): the command line says it once as a note (``NO_STEP_LIMIT``)."""
    limit = problems.stable_step_limit(problem)
    for eta in study.run.etas if limit is not None else ():
        if eta >= limit:
            warnings.warn(
                f"run.eta={eta:g} is above the stable limit 2/max_i L_i = {limit:.4g} of this problem "
                f"({eta / limit:.2g}x): runs may diverge",
                stacklevel=2,
            )
    return limit


class Prepared(NamedTuple):
    """A study ready to run: data loaded, F* computed, configurations built."""

    problem: problems.Problem
    configurations: list[Configuration]
    step_limit: float | None = None  # 2 / max_i L_i, None: no curvature bound known

    @property
    def labels(self) -> list[str]:
        return [c.label for c in self.configurations]


def prepare(study: Study, say=None) -> Prepared:
    """Load the data and build everything a run needs (may raise DataError); ``say``: progress
    lines of a long step."""
    problem = build_problem(study.problem, say)
    limit = check_step_size(study, problem)
    return Prepared(problem, configurations(study, problem), limit)


def same_cluster(a: Delays, b: Delays) -> bool:
    """Whether two clusters are the same but for their labels."""
    return dataclasses.replace(a, label=None) == dataclasses.replace(b, label=None)
