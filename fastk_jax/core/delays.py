"""Delay laws: the random time a worker takes to compute its partial gradient.

Each law is a frozen dataclass registered as a JAX pytree whose fields are its parameters.
The parameters are data (arrays), so many laws of one kind, with different parameters,
stack along a leading axis and vmap in one compiled call; the kind of law (the class) is
the static structure. Times are in arbitrary units; studies report them in units of the
mean delay.

Every law knows

* ``sample(key, shape)``: iid draws, in JAX;
* ``mean()``: E[X], ``inf`` where it does not exist (Pareto with shape <= 1);
* ``check()``: host-side validation of the parameters, raising ``ConfigError``.

``Trace`` is the exception to "iid": measured times per worker (``fastk_jax.data.read_trace``),
resampled with replacement, where each worker may have its own column of measurements.

The exponential and shifted exponential also know the mean of their k-th order statistic
in closed form, E[X_(k:n)] = shift + (H_n - H_(n-k)) / rate (eq. (7) of the adaptive paper).
Order statistics of the other laws belong to the theory module.

Persistent stragglers (workers of different speeds) are not a law of their own: the engine
multiplies worker i's draw by ``slowdown[i]`` (see ``fastk_jax.engine.SimConfig``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from ..errors import ConfigError

Array = jax.Array


def _positive(law: str, **params) -> None:
    for name, value in params.items():
        v = np.asarray(value, dtype=float)
        if not np.all(np.isfinite(v)) or np.any(v <= 0):
            raise ConfigError(f"delays.{name}", f"{law} needs a finite {name} > 0, got {value!r}")


def _finite(law: str, **params) -> None:
    for name, value in params.items():
        v = np.asarray(value, dtype=float)
        if not np.all(np.isfinite(v)):
            raise ConfigError(f"delays.{name}", f"{law} needs a finite {name}, got {value!r}")


def harmonic(n: int) -> float:
    """H_n = 1 + 1/2 + ... + 1/n (H_0 = 0), summed from the small terms up."""
    return float(np.sum(1.0 / np.arange(n, 0, -1, dtype=np.float64))) if n > 0 else 0.0


def _exponential_order_mean(k: int, n: int) -> float:
    if not 1 <= k <= n:
        raise ConfigError("k", f"order statistic needs 1 <= k <= n, got k={k}, n={n}")
    return float(np.sum(1.0 / np.arange(n - k + 1, n + 1, dtype=np.float64)))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Exponential:
    """X ~ Exp(rate): mean 1/rate."""

    rate: Array
    name: ClassVar[str] = "exponential"

    def sample(self, key: Array, shape: tuple[int, ...]) -> Array:
        return jax.random.exponential(key, shape) / self.rate

    def mean(self) -> Array:
        return 1.0 / jnp.asarray(self.rate)

    def order_statistic_mean(self, k: int, n: int) -> float:
        """E[X_(k:n)] = (H_n - H_(n-k)) / rate, eq. (7) of the adaptive paper (host, float64)."""
        return _exponential_order_mean(k, n) / float(self.rate)

    def check(self) -> None:
        _positive(self.name, rate=self.rate)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Constant:
    """X = value: a deterministic compute time (with a slowdown profile, the literature's
    tau_i = sqrt(i) or tau_i = i workers). It breaks the papers' random, identically
    distributed delays: the order statistics are the sorted slowdowns times ``value``."""

    value: Array
    name: ClassVar[str] = "constant"

    def sample(self, key: Array, shape: tuple[int, ...]) -> Array:
        del key
        return jnp.full(shape, self.value, dtype=jnp.result_type(float))

    def mean(self) -> Array:
        return jnp.asarray(self.value)

    def order_statistic_mean(self, k: int, n: int) -> float:
        return float(self.value)

    def check(self) -> None:
        _positive(self.name, value=self.value)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ShiftedExponential:
    """X = shift + Exp(rate): a fixed compute time plus a memoryless straggle."""

    shift: Array
    rate: Array
    name: ClassVar[str] = "shifted_exponential"

    def sample(self, key: Array, shape: tuple[int, ...]) -> Array:
        return self.shift + jax.random.exponential(key, shape) / self.rate

    def mean(self) -> Array:
        return jnp.asarray(self.shift) + 1.0 / jnp.asarray(self.rate)

    def order_statistic_mean(self, k: int, n: int) -> float:
        """E[X_(k:n)] = shift + (H_n - H_(n-k)) / rate (host, float64)."""
        return float(self.shift) + _exponential_order_mean(k, n) / float(self.rate)

    def check(self) -> None:
        _positive(self.name, rate=self.rate)
        v = np.asarray(self.shift, dtype=float)
        if not np.all(np.isfinite(v)) or np.any(v < 0):
            raise ConfigError("delays.shift", f"{self.name} needs a finite shift >= 0, got {self.shift!r}")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Pareto:
    """X = scale * U^(-1/shape): P[X > x] = (scale/x)^shape for x >= scale.

    The mean shape*scale/(shape-1) is infinite for shape <= 1.
    """

    shape: Array
    scale: Array
    name: ClassVar[str] = "pareto"

    def sample(self, key: Array, shape: tuple[int, ...]) -> Array:
        return self.scale * jax.random.pareto(key, self.shape, shape)

    def mean(self) -> Array:
        a = jnp.asarray(self.shape)
        return jnp.where(a > 1, a * self.scale / jnp.where(a > 1, a - 1, 1.0), jnp.inf)

    def check(self) -> None:
        _positive(self.name, shape=self.shape, scale=self.scale)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Uniform:
    """X ~ U(low, high)."""

    low: Array
    high: Array
    name: ClassVar[str] = "uniform"

    def sample(self, key: Array, shape: tuple[int, ...]) -> Array:
        return jax.random.uniform(key, shape, minval=self.low, maxval=self.high)

    def mean(self) -> Array:
        return 0.5 * (jnp.asarray(self.low) + self.high)

    def check(self) -> None:
        _finite(self.name, low=self.low, high=self.high)
        low, high = np.asarray(self.low, float), np.asarray(self.high, float)
        if np.any(low < 0) or np.any(high <= low):
            raise ConfigError("delays.high", f"uniform needs 0 <= low < high, got low={self.low!r}, high={self.high!r}")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LogNormal:
    """X = exp(mu + sigma Z), Z ~ N(0, 1): mean exp(mu + sigma^2/2)."""

    mu: Array
    sigma: Array
    name: ClassVar[str] = "lognormal"

    def sample(self, key: Array, shape: tuple[int, ...]) -> Array:
        return jnp.exp(self.mu + self.sigma * jax.random.normal(key, shape))

    def mean(self) -> Array:
        return jnp.exp(jnp.asarray(self.mu) + 0.5 * jnp.square(self.sigma))

    def check(self) -> None:
        _finite(self.name, mu=self.mu)
        _positive(self.name, sigma=self.sigma)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Weibull:
    """X = scale * E^(1/shape), E ~ Exp(1): mean scale * Gamma(1 + 1/shape)."""

    shape: Array
    scale: Array
    name: ClassVar[str] = "weibull"

    def sample(self, key: Array, shape: tuple[int, ...]) -> Array:
        return self.scale * jax.random.exponential(key, shape) ** (1.0 / self.shape)

    def mean(self) -> Array:
        return self.scale * jnp.exp(gammaln(1.0 + 1.0 / jnp.asarray(self.shape)))

    def check(self) -> None:
        _positive(self.name, shape=self.shape, scale=self.scale)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class HyperExponential:
    """A mixture of exponentials: with probability probs[i], X ~ Exp(rates[i]).

    Its hazard rate decreases with time: the "new-shorter-than-used" case of the async paper,
    where a worker that has already waited is likely to wait longer.
    """

    probs: Array
    rates: Array
    name: ClassVar[str] = "hyperexponential"

    def sample(self, key: Array, shape: tuple[int, ...]) -> Array:
        k_branch, k_exp = jax.random.split(key)
        branch = jax.random.categorical(k_branch, jnp.log(self.probs), shape=shape)
        return jax.random.exponential(k_exp, shape) / jnp.asarray(self.rates)[branch]

    def mean(self) -> Array:
        return jnp.sum(jnp.asarray(self.probs) / self.rates, axis=-1)

    def check(self) -> None:
        _positive(self.name, rates=self.rates)
        p = np.asarray(self.probs, dtype=float)
        if p.shape != np.shape(self.rates) or p.ndim != 1 or p.size < 1:
            raise ConfigError("delays.probs", "hyperexponential needs probs and rates of the same length")
        if not np.all(np.isfinite(p)) or np.any(p <= 0) or not math.isclose(p.sum(), 1.0, abs_tol=1e-6):
            raise ConfigError(
                "delays.probs", f"hyperexponential needs positive probs that sum to 1, got {self.probs!r}"
            )


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Trace:
    """Measured times, resampled with replacement (a bootstrap of a trace).

    ``table`` (R, c) holds column j's measurements in its first ``counts[j]`` rows (the rest is
    padding, any valid time); c = n gives worker i its own column, c = 1 one pool shared by all
    workers (then the workers are iid). A draw is a uniformly random entry of the worker's
    column, row floor(u * counts[j]), u ~ U(0, 1). Unlike the other laws the workers need not be
    identical, so ``sample`` needs the worker axis first: shape[0] == c unless c == 1. The
    mean, the time unit of a study, is the average over workers of each worker's mean.
    """

    table: Array  # (R, c) times, column j valid in rows < counts[j]
    counts: Array  # (c,) samples per column, 1 <= counts <= R (float, like every parameter)
    name: ClassVar[str] = "trace"

    def sample(self, key: Array, shape: tuple[int, ...]) -> Array:
        table = jnp.asarray(self.table)
        columns = table.shape[-1]
        if columns == 1:
            worker = jnp.zeros((), jnp.int32)
            counts = jnp.asarray(self.counts)[0]
        else:
            if not shape or shape[0] != columns:
                raise ValueError(f"a trace of {columns} workers draws shape (n={columns}, ...), got {shape}")
            axes = (columns,) + (1,) * (len(shape) - 1)
            worker = jnp.arange(columns).reshape(axes)
            counts = jnp.asarray(self.counts).reshape(axes)
        u = jax.random.uniform(key, shape)
        row = jnp.minimum(jnp.floor(u * counts), counts - 1).astype(jnp.int32)  # u * count may round up to count
        return table[row, worker]

    def sample_workers(self, key: Array, workers: Array) -> Array:
        """One draw for each entry of ``workers`` (int, any shape), from that worker's column (the
        one pool when c == 1); for ``workers`` = arange(c) along axis 0 the same numbers as
        ``sample(key, workers.shape)``."""
        table = jnp.asarray(self.table)
        column = jnp.zeros_like(workers) if table.shape[-1] == 1 else workers
        counts = jnp.asarray(self.counts)[column]
        u = jax.random.uniform(key, workers.shape)
        row = jnp.minimum(jnp.floor(u * counts), counts - 1).astype(jnp.int32)
        return table[row, column]

    def worker_means(self) -> Array:
        """(c,) each column's mean over its valid rows (leading axes: stacked laws)."""
        table, counts = jnp.asarray(self.table), jnp.asarray(self.counts)
        valid = jnp.arange(table.shape[-2])[:, None] < counts[..., None, :]
        return jnp.sum(jnp.where(valid, table, 0.0), axis=-2) / counts

    def mean(self) -> Array:
        return jnp.mean(self.worker_means(), axis=-1)

    def check(self) -> None:
        table, counts = np.asarray(self.table, dtype=float), np.asarray(self.counts, dtype=float)
        if table.ndim != 2 or table.size == 0:
            raise ConfigError("delays.table", f"trace needs a (rows, columns) table of times, got shape {table.shape}")
        if not np.all(np.isfinite(table)) or np.any(table <= 0):
            raise ConfigError("delays.table", "trace needs finite times > 0")
        if counts.shape != table.shape[1:]:
            raise ConfigError(
                "delays.counts", f"trace needs one count per column ({table.shape[1]}), got {counts.shape}"
            )
        if np.any(counts != np.round(counts)) or np.any(counts < 1) or np.any(counts > table.shape[0]):
            raise ConfigError("delays.counts", f"trace needs integer counts from 1 to {table.shape[0]} (the rows)")


LAWS: dict[str, type] = {
    law.name: law
    for law in (Exponential, Constant, ShiftedExponential, Pareto, Uniform, LogNormal, Weibull, HyperExponential, Trace)
}

DelayLaw = Exponential | Constant | ShiftedExponential | Pareto | Uniform | LogNormal | Weibull | HyperExponential | Trace


def parameter_names(law: str) -> tuple[str, ...]:
    """The parameter names of a law, in constructor order."""
    return tuple(f.name for f in dataclasses.fields(LAWS[law]))


def make_law(law: str, **params) -> DelayLaw:
    """Build and check a delay law from its name and parameters (host values)."""
    if law not in LAWS:
        raise ConfigError("delays.law", f"unknown delay law {law!r}; known: {', '.join(sorted(LAWS))}")
    names = parameter_names(law)
    missing = [p for p in names if p not in params]
    extra = [p for p in params if p not in names]
    if missing:
        raise ConfigError(f"delays.{missing[0]}", f"{law} needs parameters {', '.join(names)}")
    if extra:
        raise ConfigError(f"delays.{extra[0]}", f"not a parameter of {law} (it has {', '.join(names)})")
    values = {}
    for p in names:
        try:
            values[p] = np.asarray(params[p], dtype=np.float64)
        except (TypeError, ValueError):
            raise ConfigError(f"delays.{p}", f"must be a number, got {params[p]!r}") from None
    instance = LAWS[law](**values)
    instance.check()
    return instance


def law_params(law: DelayLaw) -> dict[str, list | float]:
    """The parameters of a law as plain Python values (for JSON)."""
    return {f.name: np.asarray(getattr(law, f.name)).tolist() for f in dataclasses.fields(law)}
