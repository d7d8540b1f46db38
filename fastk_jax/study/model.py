"""The typed study model: the parts of a study, as frozen dataclasses read by attribute.

A ``Study`` is a problem, one or more clusters (``Delays``), the run options (``Run``), the k
policies (one class per kind: ``Fixed``, ``Schedule``, ``Adaptive``, ``BoundOptimal``,
``Doubling``, ``Oracle``, ``LossRatio``, ``GradientNorm``), and optionally a ``Figure`` and a
``Report``. The configurations it runs are every cluster x every policy x every step size.

The TOML reader (``reader``) and the Python API build the same objects and share one
validation: constructing a ``Study`` (``definition``) checks it by reading its own TOML form
(``Study.to_table``) with the reader, so a study built in a notebook fails with exactly the
one-line ``ConfigError`` a file with the same fields would (``policy[1].k: k must satisfy
1 <= k <= n_workers=50, got 60``). ``study.replace(...)`` and ``dataclasses.replace`` make an
edited copy, checked again.

Every policy may override the scheme settings of ``Run`` (``scheme``, ``gradients``,
``batch_size``, ``lr``, ``lr_c``): None means "as in the run". Its ``label`` defaults to the
kind's label (``k=10``, ``adaptive 10->40``, ...), with the scheme appended where the policy
sets one.

Kinds are tables (``POLICIES``, ``PROBLEMS``; delay laws are ``core.delays.LAWS``): a kind is
one class that holds everything about it: its fields, ``read`` (its fields of a TOML table,
checked), ``default_label`` and ``build`` (what the engine runs). Adding a kind is adding a
class to its table; the reader, the labels, the configurations and the figures follow.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar

import numpy as np

from ..core import policies as kpolicies
from ..errors import ConfigError, DataError
from .fields import MAX_DATA_ENTRIES, TIME_RANGE, is_number, number, show, string

# ---------------------------------------------------------------- problems


@dataclasses.dataclass(frozen=True)
class Linear:
    """Least squares on the adaptive paper's synthetic data (``data.synthetic_linear``): m rows,
    d features, split over ``n_workers`` shards; loss (1/2m)||Xw - y||^2."""

    n_workers: int
    m: int
    d: int
    data_seed: int = 0
    kind: ClassVar[str] = "linear"
    knows_f_star: ClassVar[bool] = True  # which metrics it can record (``core.problems.METRICS``)
    classifier: ClassVar[bool] = False

    @classmethod
    def read(cls, t: dict, where: str) -> dict[str, Any]:
        """The kind's own fields of a [problem] table (n_workers and data_seed are every kind's)."""
        m, d = number(t, "m", where, integer=True, low=1), number(t, "d", where, integer=True, low=1)
        if m * d > MAX_DATA_ENTRIES:
            raise ConfigError(f"{where}.m", f"m x d = {m * d:.3g} exceeds {MAX_DATA_ENTRIES:.0e} entries")
        return {"m": m, "d": d}

    @property
    def has_test(self) -> bool:
        return False

    def build(self, say=None):
        """The problem with its data (``core.problems``); ``say``: progress lines (none here)."""
        from .. import data
        from ..core import problems

        x, y, _ = data.synthetic_linear(self.m, self.d, self.data_seed)
        return problems.linear_regression(x, y, self.n_workers)


def _read_images(t: dict, where: str, default_test: float | None) -> dict[str, Any]:
    """The image-data fields of a classification problem: ``dataset`` (scikit-learn's digits or
    MNIST IDX files ``images``, ``labels``), ``classes`` (a subset; two: binary), ``m`` (training
    rows, subsampled), ``test_fraction`` (rows held out for the test metrics, before ``m``)."""
    out: dict[str, Any] = {"dataset": string(t, "dataset", where, "digits", choices=("digits", "mnist"))}
    if out["dataset"] == "mnist":
        out["images"] = string(t, "images", where)
        out["labels"] = string(t, "labels", where)
    classes = t.get("classes")
    integers = isinstance(classes, list) and all(isinstance(c, int) and not isinstance(c, bool) for c in classes)
    if classes is not None and (not integers or len(classes) < 2 or not all(0 <= c <= 9 for c in classes)):
        raise ConfigError(f"{where}.classes", f"must be a list of at least two labels from 0 to 9, got {show(classes)}")
    out["classes"] = classes
    out["m"] = number(t, "m", where, None, integer=True, low=1)
    fraction = number(t, "test_fraction", where, default_test, strict_low=0)
    if fraction is not None and fraction >= 1:
        raise ConfigError(f"{where}.test_fraction", f"must lie strictly between 0 and 1, got {show(fraction)}")
    out["test_fraction"] = fraction
    return out


def _load_images(p) -> tuple[Any, Any, Any, int]:
    """(train rows, train labels, (test rows, test labels) or None, number of classes) of a
    classification kind: classes selected, the test split held out, then ``m`` rows subsampled.

    The selection runs on row numbers, and only the rows kept are gathered and (MNIST) turned
    from uint8 into float64: the same rows and values as selecting on the images themselves
    (the same permutations of the same labels), without a float64 copy of every image (376 MB
    for MNIST's 60,000, and more for the copies each step made)."""
    from .. import data

    if p.dataset == "digits":
        pixels, labels = data.load_digits()
        rows_of = lambda i: pixels[i]
    else:
        pixels, labels = data.load_mnist(p.images, p.labels, scaled=False)
        rows_of = lambda i: data.scale_pixels(pixels[i])
    classes = tuple(p.classes) if p.classes else None
    index, labels = data.select_classes(np.arange(labels.shape[0]), labels, classes)
    test = None
    if p.test_fraction:
        (index, labels), (test_index, test_labels) = data.split_test(index, labels, p.test_fraction, p.data_seed)
        test = (rows_of(test_index), test_labels)
    index, labels = data.subsample(index, labels, p.m, p.data_seed)
    return rows_of(index), labels, test, len(classes) if classes else 10


def _check_classes_present(p, labels, num_classes: int) -> None:
    """Refuse a subsample that misses a class: its one-vs-all loss has no minimizer (F* is not
    attained), and the cause is an ``m`` too small for the classes, which the message says."""
    missing = sorted(set(range(num_classes)) - set(np.unique(labels).tolist()))
    if missing:
        name = p.classes[missing[0]] if p.classes else missing[0]
        if p.m is None:  # all rows kept: the data (or what the test split left) lacks the class
            raise DataError(
                f"problem.classes: class {name} has no rows among the {len(labels)} training rows "
                "(choose classes that the data holds, or a smaller test_fraction)"
            )
        raise DataError(
            f"problem.m: class {name} has no rows among the m={len(labels)} rows subsampled: m is too small "
            f"for the {num_classes} classes (use a larger m or fewer classes)"
        )


@dataclasses.dataclass(frozen=True)
class Logistic:
    """One-vs-all logistic regression (eq. (8) of the adaptive paper) on scikit-learn's digits
    or on MNIST IDX files (``images``, ``labels``); ``classes`` picks a subset (two: binary),
    ``m`` subsamples rows, ``reg`` is the L2 weight, ``test_fraction`` holds rows out for the
    test metrics (none by default: the papers train on all rows)."""

    n_workers: int
    dataset: str = "digits"
    images: str | None = None
    labels: str | None = None
    classes: tuple[int, ...] | None = None
    m: int | None = None
    reg: float = 0.01
    test_fraction: float | None = None
    data_seed: int = 0
    kind: ClassVar[str] = "logistic"
    knows_f_star: ClassVar[bool] = True
    classifier: ClassVar[bool] = True

    @classmethod
    def read(cls, t: dict, where: str) -> dict[str, Any]:
        out = _read_images(t, where, None)
        out["reg"] = number(t, "reg", where, 0.01, strict_low=0)
        return out

    @property
    def has_test(self) -> bool:
        return bool(self.test_fraction)

    def build(self, say=None):
        """The problem with its data loaded and F* computed (may raise DataError): F* from the
        cache on disk where this data has been solved before (``study.fstar_cache``), else by Newton's
        method, with progress lines to ``say`` when it takes more than a second."""
        from ..core import problems
        from . import fstar_cache as cache

        x, labels, test, classes = _load_images(self)
        _check_classes_present(self, labels, classes)
        num_classes = 1 if classes == 2 else classes
        return problems.logistic_regression(
            x, labels, self.n_workers, self.reg, num_classes, test=test,
            optimum=lambda x, t, r: cache.optimum(x, t, r, say),
        )


@dataclasses.dataclass(frozen=True)
class MLP:
    """A multilayer perceptron classifier (``core.networks``) on digits or MNIST IDX files:
    ``hidden`` layer sizes, ``activation`` (relu, tanh, gelu), weights drawn from
    ``init_seed``, an optional L2 weight ``reg``; 20% of the rows held out by default for the
    test metrics. F* is not known: the curves track the training loss (or another metric that
    needs no F*)."""

    n_workers: int
    dataset: str = "digits"
    images: str | None = None
    labels: str | None = None
    classes: tuple[int, ...] | None = None
    m: int | None = None
    hidden: tuple[int, ...] = (32,)
    activation: str = "relu"
    init_seed: int = 0
    reg: float = 0.0
    test_fraction: float | None = 0.2
    data_seed: int = 0
    kind: ClassVar[str] = "mlp"
    knows_f_star: ClassVar[bool] = False
    classifier: ClassVar[bool] = True

    @classmethod
    def read(cls, t: dict, where: str) -> dict[str, Any]:
        from ..core.networks import ACTIVATIONS

        out = _read_images(t, where, 0.2)
        hidden = t.get("hidden", [32])
        if not isinstance(hidden, list) or not hidden or not all(
            isinstance(h, int) and not isinstance(h, bool) and 1 <= h <= 65536 for h in hidden
        ):
            raise ConfigError(f"{where}.hidden", f"must be a list of layer sizes from 1 to 65536, got {show(hidden)}")
        out["hidden"] = hidden
        out["activation"] = string(t, "activation", where, "relu", choices=tuple(ACTIVATIONS))
        out["init_seed"] = number(t, "init_seed", where, 0, integer=True, low=0, high=2**32 - 1)
        out["reg"] = float(number(t, "reg", where, 0.0, low=0))
        return out

    @property
    def has_test(self) -> bool:
        return bool(self.test_fraction)

    def build(self, say=None):
        """The network with its data loaded (may raise DataError)."""
        from ..core import networks

        x, labels, test, classes = _load_images(self)
        return networks.mlp_classifier(
            x.astype("float32"),
            labels,
            self.n_workers,
            hidden=tuple(self.hidden),
            activation=self.activation,
            init_seed=self.init_seed,
            num_classes=classes,
            reg=self.reg,
            test=None if test is None else (test[0].astype("float32"), test[1]),
        )


PROBLEMS: dict[str, type] = {"linear": Linear, "logistic": Logistic, "mlp": MLP}


def default_metrics(kind: type) -> tuple[str, ...]:
    """What a problem kind records unless [run] metrics says: F - F* where it knows F*, else the
    training loss (``core.problems.default_metrics`` for a built problem)."""
    return ("error",) if kind.knows_f_star else ("loss",)

# ---------------------------------------------------------------- clusters


@dataclasses.dataclass(frozen=True)
class Markov:
    """Stragglers that stay slow a while (``core.spec.Straggle``): fast -> slow with probability
    ``enter`` per update, slow stays slow with ``stay``; a slow worker's delays are ``slow``
    times longer."""

    slow: float
    enter: float
    stay: float


@dataclasses.dataclass(frozen=True)
class Network:
    """Communication time (``core.spec.Network``): each upload of a gradient and each download of
    a model takes ``latency`` plus ``bytes`` / the worker's ``bandwidth`` (one number, or one per
    worker; bytes per time unit; None: no size cost). ``bytes``: a vector's size on the wire
    (None: 4 bytes, float32, per parameter)."""

    latency: float = 0.0
    bandwidth: float | tuple[float, ...] | None = None
    bytes: int | None = None


@dataclasses.dataclass(frozen=True)
class SharedSlowdown:
    """A slowdown of every worker at once (``core.spec.Shared``): with probability ``prob`` the
    durations drawn at an update are ``factor`` times longer (a congested network)."""

    prob: float
    factor: float


@dataclasses.dataclass(frozen=True)
class Failures:
    """Workers that fail and return (``core.spec.Failures``): a computation meets a failure with
    probability ``prob``, loses the work done and waits Exp(mean ``downtime``) before redoing it."""

    prob: float
    downtime: float


CLUSTER_PARTS = {"network": Network, "shared": SharedSlowdown, "failures": Failures}  # [delays] sub-tables


@dataclasses.dataclass(frozen=True)
class Delays:
    """A cluster: worker i's delay is ``slowdown[i] * X`` with X from the delay law ``law``
    (a name of ``core.delays.LAWS``) with parameters ``params`` (e.g. ``{"rate": 1.0}``), in the
    study's time unit; optionally work-dependent (``shift_per_row``, shifted exponential only),
    Markov stragglers, or a measured ``trace`` (``file``, a CSV; ``sha256`` pins its content).
    ``label`` names the cluster when a study has several."""

    law: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    label: str | None = None
    slowdown: float | tuple[float, ...] = 1.0
    shift_per_row: float | None = None
    markov: Markov | None = None
    file: str | None = None
    sha256: str | None = None
    network: Network | None = None
    shared: SharedSlowdown | None = None
    failures: Failures | None = None


def delays(law: str, *, label: str | None = None, slowdown: Any = 1.0, shift_per_row: float | None = None,
           markov: Markov | dict | None = None, file: str | None = None, network: Network | dict | None = None,
           shared: SharedSlowdown | dict | None = None, failures: Failures | dict | None = None, **params) -> Delays:
    """``Delays(law, params)`` with the law's parameters as keywords: ``delays("exponential",
    rate=1.0)``, ``delays("pareto", scale=0.5, shape=2.0, slowdown=[1] * 9 + [4])``,
    ``delays("constant", value=1.0, slowdown="sqrt", network={"latency": 0.1})``."""
    if isinstance(markov, dict):
        markov = Markov(**markov)
    parts = {name: CLUSTER_PARTS[name](**v) if isinstance(v, dict) else v
             for name, v in (("network", network), ("shared", shared), ("failures", failures))}
    return Delays(law, params, label, slowdown, shift_per_row, markov, file, **parts)


# ---------------------------------------------------------------- run options


@dataclasses.dataclass(frozen=True)
class Run:
    """How the configurations run. ``eta``: one step size or several (every policy runs with
    each); ``time_horizon`` in the time unit of the delay laws; ``seeds`` runs per configuration
    (seed s's keys: fold_in(key(seed), s)); ``block``: runs per compiled block (None: the
    platform's; with the seed it fixes a run's bits). The scheme settings are the defaults of
    every policy."""

    eta: float | tuple[float, ...]
    time_horizon: float
    seeds: int = 100
    seed: int = 0
    iterations: int | None = None
    optimizer: str = "sgd"
    momentum: float = 0.9
    grid_points: int = 200
    chunk: int = 500
    block: int | None = None
    divergence_factor: float = 1e6
    scheme: str = "k_sync"
    gradients: str = "shard"
    batch_size: int = 1
    lr: str = "fixed"
    lr_c: float = 1.0
    staleness_limit: int | None = None  # R of the ringmaster scheme (None: n)
    clip: float | None = None  # the largest norm of an update's direction (None: no clipping)
    staleness_bins: int = 32
    metrics: tuple[str, ...] | None = None  # recorded on the grids, the first tracked (None: the problem's default)

    @property
    def etas(self) -> tuple[float, ...]:
        return self.eta if isinstance(self.eta, tuple) else (self.eta,)


SCHEME_FIELDS = ("scheme", "gradients", "batch_size", "lr", "lr_c", "staleness_limit", "clip")  # a policy may override these


# ---------------------------------------------------------------- policies


@dataclasses.dataclass(frozen=True, kw_only=True)
class Policy(abc.ABC):
    """What every k policy has: a label and the scheme settings it overrides (None: the run's)."""

    label: str | None = None
    scheme: str | None = None
    gradients: str | None = None
    batch_size: int | None = None
    lr: str | None = None
    lr_c: float | None = None
    staleness_limit: int | None = None
    clip: float | None = None
    kind: ClassVar[str] = ""

    @classmethod
    def read(cls, t: dict, where: str, n: int) -> dict[str, Any]:
        """The kind's own fields from a [[policy]] table, checked, defaults filled in (``n``:
        the number of workers, the default k_max)."""
        return {}

    def parameters(self) -> dict[str, Any]:
        """The kind's own fields (not the label or scheme settings)."""
        common = {f.name for f in dataclasses.fields(Policy)}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in common}

    @abc.abstractmethod
    def default_label(self) -> str:
        """The label of a policy of this kind when none is given."""

    @abc.abstractmethod
    def build(self) -> kpolicies.KPolicy:
        """The policy as arrays for the engine (``core.policies``)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fixed(Policy):
    """k fixed for the whole run (fastest-k SGD, eq. (5) of the adaptive paper)."""

    k: int
    kind: ClassVar[str] = "fixed"

    @classmethod
    def read(cls, t, where, n):
        return {"k": number(t, "k", where, integer=True, low=1)}

    def default_label(self) -> str:
        return f"k={self.k}"

    def build(self) -> kpolicies.KPolicy:
        return kpolicies.fixed(self.k)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Schedule(Policy):
    """k0 until ``at[0]``, then ``ks[0]`` until ``at[1]``, ...; ``by`` "time" or "iterations"."""

    k0: int
    at: tuple[float, ...]
    ks: tuple[int, ...]
    by: str = "time"
    kind: ClassVar[str] = "schedule"

    @classmethod
    def read(cls, t, where, n):
        at, ks = t.get("at"), t.get("ks")
        if not isinstance(at, list) or not all(map(is_number, at)):
            raise ConfigError(f"{where}.at", f"must be a list of numbers, got {show(at)}")
        if not isinstance(ks, list) or not all(isinstance(k, int) and not isinstance(k, bool) for k in ks):
            raise ConfigError(f"{where}.ks", f"must be a list of integers, got {show(ks)}")
        if any(not 1 <= k <= n for k in ks):
            bad = next(k for k in ks if not 1 <= k <= n)
            raise ConfigError(f"{where}.ks", f"k must satisfy 1 <= k <= n_workers={n}, got {show(bad)}")
        return {
            "k0": number(t, "k0", where, integer=True, low=1),
            "at": [float(a) for a in at],
            "ks": ks,
            "by": string(t, "by", where, "time", choices=("time", "iterations")),
        }

    def default_label(self) -> str:
        return f"schedule {self.k0}->{self.ks[-1] if self.ks else self.k0}"

    def build(self) -> kpolicies.KPolicy:
        return kpolicies.schedule(self.k0, list(self.at), list(self.ks), by=self.by)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Adaptive(Policy):
    """Algorithm 1 of the adaptive paper: a Pflug-style counter of the signs of consecutive
    gradient inner products; after ``burnin`` updates at a k, once the counter falls below
    -``thresh``, k -> min(factor k + step, ...), from ``k_min`` up to ``k_max`` (``step``
    defaults to 1, or 0 where a ``factor`` is given)."""

    k_min: int
    k_max: int | None = None
    thresh: int
    burnin: int
    step: int | None = None
    factor: int = 1
    kind: ClassVar[str] = "adaptive"

    @classmethod
    def read(cls, t, where, n):
        return {
            "k_min": number(t, "k_min", where, integer=True, low=1),
            "k_max": number(t, "k_max", where, n, integer=True, low=1),
            "thresh": number(t, "thresh", where, integer=True, low=0),
            "burnin": number(t, "burnin", where, integer=True, low=0),
            "step": number(t, "step", where, 0 if "factor" in t else 1, integer=True, low=0),
            "factor": number(t, "factor", where, 1, integer=True, low=1),
        }

    def default_label(self) -> str:
        return f"adaptive {self.k_min}->{self.k_max}"

    def build(self) -> kpolicies.KPolicy:
        return kpolicies.adaptive(self.k_min, self.k_max, self.thresh, self.burnin, step=self.step, factor=self.factor)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Doubling(Policy):
    """k0, doubled every ``every`` time units, up to ``k_max``."""

    k0: int
    every: float
    k_max: int | None = None
    kind: ClassVar[str] = "doubling"

    @classmethod
    def read(cls, t, where, n):
        out = {
            "k0": number(t, "k0", where, integer=True, low=1),
            "every": float(number(t, "every", where, strict_low=0, high=TIME_RANGE[1])),
            "k_max": number(t, "k_max", where, n, integer=True, low=1),
        }
        if out["k_max"] < out["k0"]:
            raise ConfigError(f"{where}.k_max", f"must be >= k0={out['k0']}, got {out['k_max']}")
        return out

    def default_label(self) -> str:
        return f"doubling {self.k0}->{self.k_max} every {self.every:g}"

    def build(self) -> kpolicies.KPolicy:
        return kpolicies.doubling(self.k0, self.every, self.k_max)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LossRatio(Policy):
    """AdaSync-style: k = ceil(k0 sqrt(F(w_0) / F(w_t))), never decreasing, at most ``k_max``."""

    k0: int
    k_max: int | None = None
    kind: ClassVar[str] = "loss_ratio"

    @classmethod
    def read(cls, t, where, n):
        return {"k0": number(t, "k0", where, integer=True, low=1), "k_max": number(t, "k_max", where, n, integer=True, low=1)}

    def default_label(self) -> str:
        return f"loss ratio {self.k0}->{self.k_max}"

    def build(self) -> kpolicies.KPolicy:
        return kpolicies.loss_ratio(self.k0, self.k_max)


@dataclasses.dataclass(frozen=True, kw_only=True)
class GradientNorm(Policy):
    """FLANP-style: k -> factor k + step once the smoothed squared gradient norm has fallen to
    ``gamma`` times its level ``burnin`` updates after the last switch."""

    k0: int
    k_max: int | None = None
    gamma: float
    burnin: int
    step: int = 0
    factor: int = 2
    kind: ClassVar[str] = "gradient_norm"

    @classmethod
    def read(cls, t, where, n):
        return {
            "k0": number(t, "k0", where, integer=True, low=1),
            "k_max": number(t, "k_max", where, n, integer=True, low=1),
            "gamma": float(number(t, "gamma", where, strict_low=0, high=1)),
            "burnin": number(t, "burnin", where, integer=True, low=1),
            "step": number(t, "step", where, 0, integer=True, low=0),
            "factor": number(t, "factor", where, 2, integer=True, low=1),
        }

    def default_label(self) -> str:
        return f"gradient norm {self.k0}->{self.k_max}"

    def build(self) -> kpolicies.KPolicy:
        return kpolicies.gradient_norm(self.k0, self.k_max, self.gamma, self.burnin, step=self.step, factor=self.factor)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BoundOptimal(Policy):
    """Theorem 1's schedule from the problem's constants L, c, sigma^2 and the cluster's order
    statistics mu_k (built by ``study.build``, which knows the problem)."""

    kind: ClassVar[str] = "bound_optimal"

    def default_label(self) -> str:
        return "bound-optimal (Theorem 1)"

    def build(self) -> kpolicies.KPolicy:
        raise TypeError("a bound-optimal policy is built from the problem: study.build.configurations")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Oracle(Policy):
    """Follows the lower envelope of the study's fixed-k curves of its scheme (run first): not
    causal, a yardstick."""

    kind: ClassVar[str] = "oracle"

    def default_label(self) -> str:
        return "oracle (envelope)"

    def build(self) -> kpolicies.KPolicy:
        raise TypeError("an oracle is built from the fixed-k curves: runner.execute.run_all")


POLICIES: dict[str, type[Policy]] = {
    cls.kind: cls for cls in (Fixed, Schedule, Adaptive, BoundOptimal, Doubling, Oracle, LossRatio, GradientNorm)
}

# ---------------------------------------------------------------- figure and report


@dataclasses.dataclass(frozen=True)
class Figure:
    """Which figure the study draws: error_vs_time (a panel per metric of ``metrics``),
    error_vs_iterations, runtime_vs_k (with the runtime of ``iterations`` updates),
    communication or envelope."""

    kind: str = "error_vs_time"
    iterations: int | None = None
    metrics: tuple[str, ...] | None = None  # error_vs_time: a panel per metric (None: the tracked one)


@dataclasses.dataclass(frozen=True)
class Report:
    """Error levels whose time and communication to reach go into summary.json, and a
    reference policy (by label) whose error floor is one more level."""

    levels: tuple[float, ...] = ()
    reference: str | None = None
    metric: str | None = None  # the recorded metric the levels are of (None: the tracked one)
