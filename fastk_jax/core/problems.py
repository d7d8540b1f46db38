"""Problems: the loss the workers' partial gradients come from, with its data split in shards.

**The protocol.** A problem is its training rows split into n equal shards, one per worker
(``x`` of shape (n, s, ...), targets ``y`` of shape (n, s, ...)), and a pure JAX loss
``loss(w, x, y) -> ()``, the *mean* loss over the rows given. Everything the engine needs follows
from it (``Problem``):

* ``shard_losses(w) -> (n,)``: the mean loss over each shard (the loss vmapped over the shards),
  so F(w) = mean(shard_losses(w)) (the shards are equal: the mean over all rows), and the
  partial gradient of worker i (eq. (3) of the adaptive paper) is grad shard_losses(w)[i]: the
  engine takes every fresh gradient in one reverse pass over the weighted shard losses;
* ``shard_loss(w, i)``: worker i's loss alone, at a model only worker i holds (stale models
  of asynchronous schemes);
* ``rows_loss(w, rows)``: the mean loss over a mini-batch of flat row indices (the async
  paper's mini-batches, drawn from all rows).

The model is a flat vector ``w`` of ``num_params`` entries. A problem built from a loss of a
parameter *pytree* (``from_loss``: a network's list of layers, a dict, ...) flattens it once
(``ParamLayout``) and unflattens inside its loss: the engine, optax and the memory guard all
see one vector. ``f_star`` is the optimal value where it is known (computed on the host in
float64), NaN where it is not (a neural network): then the curves record metrics that need no
F* (``METRICS``). Optional held-out rows (``test_x``, ``test_y``) give the test metrics.

Least squares and logistic regression are instances that keep their own closed-form paths
(least squares: the residual against w* and the error as a quadratic form; see
``LinearRegression``); any other loss runs through the generic methods of ``Problem``.

**When n does not divide m**, each shard gets s = m // n rows and the last m mod n rows are
dropped, from the problem as a whole: F, F* and every constant are those of the n*s rows kept.
A ``UserWarning`` says how many rows were dropped. We drop rather than pad or use uneven shards
because eq. (3) assumes equal shards: with uneven ones the fastest-k average (5) is no longer
an unbiased estimate of grad F under iid delays.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import DataError

Array = jax.Array


def split_shards(x: np.ndarray, y: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Split rows into n equal shards: (n, s, ...) with s = m // n, dropping m mod n rows."""
    m = x.shape[0]
    if y.shape[0] != m:
        raise DataError(f"labels do not match rows: {y.shape[0]} labels for {m} rows")
    if n < 1:
        raise DataError(f"n_workers must be >= 1, got {n}")
    s = m // n
    if s == 0:
        raise DataError(f"{n} workers need at least {n} rows, the data has {m}")
    if m % n:
        warnings.warn(
            f"n_workers={n} does not divide m={m}: each worker gets {s} rows, the last {m % n} rows are dropped",
            stacklevel=3,
        )
    keep = n * s
    return x[:keep].reshape(n, s, *x.shape[1:]), y[:keep].reshape(n, s, *y.shape[1:])


class Problem(abc.ABC):
    """The protocol every problem follows (see the module docstring). A subclass is a frozen
    dataclass registered as a JAX pytree with array fields ``x`` (n, s, ...) and ``f_star`` ()
    (NaN: unknown), optional ``test_x``, ``test_y``, and defines ``loss``; the shard and row
    losses below then come for free, and a subclass overrides them only where it has a faster
    closed form."""

    x: Array
    f_star: Array
    test_x: Array | None = None
    test_y: Array | None = None

    # ---- what a problem defines

    @abc.abstractmethod
    def loss(self, w: Array, x: Array, y: Array) -> Array:
        """The mean loss over rows ``x`` (b, ...) with targets ``y`` (b, ...) at model ``w``."""

    @property
    def targets(self) -> Array:
        """The training targets, (n, s, ...)."""
        return self.y

    def init_params(self) -> Array:
        return jnp.zeros(self.num_params, self.x.dtype)

    @property
    @abc.abstractmethod
    def num_params(self) -> int:
        """Entries of the flat model vector."""

    def predict(self, w: Array, x: Array) -> Array | None:
        """Class scores (b, C) of rows ``x`` for the accuracy metric; None: not a classifier."""
        return None

    # ---- what follows from the loss

    @property
    def num_rows(self) -> int:
        return self.x.shape[0] * self.x.shape[1]

    def shard_losses(self, w: Array) -> Array:
        return jax.vmap(lambda x, y: self.loss(w, x, y))(self.x, self.targets)

    def shard_loss(self, w: Array, i: Array) -> Array:
        """Worker i's mean loss alone (for gradients at a model only worker i holds)."""
        return self.loss(w, self.x[i], self.targets[i])

    def rows_loss(self, w: Array, rows: Array) -> Array:
        """The mean loss over ``rows``, flat indices into the n*s kept rows (a mini-batch)."""
        flat = lambda a: a.reshape((-1,) + a.shape[2:])
        return self.loss(w, flat(self.x)[rows], flat(self.targets)[rows])

    @property
    def knows_f_star(self) -> bool:
        return bool(np.isfinite(np.asarray(self.f_star)))

    @property
    def has_test(self) -> bool:
        return self.test_x is not None

    @property
    def is_classifier(self) -> bool:
        """Whether ``predict`` gives class scores (the accuracy metric)."""
        return False

    def accuracy(self, w: Array, x: Array, y: Array) -> Array:
        """The fraction of rows whose highest class score is their label. Targets are integer
        labels (b,), one-hot rows (b, C), or 0/1 targets (b, 1) of a binary problem with one
        score per row (class 1 where the score is positive)."""
        scores = self.predict(w, x)
        if jnp.issubdtype(y.dtype, jnp.integer):
            hit = jnp.argmax(scores, axis=-1) == y
        elif y.shape[-1] == 1:
            hit = (scores[..., 0] > 0) == (y[..., 0] > 0.5)
        else:
            hit = jnp.argmax(scores, axis=-1) == jnp.argmax(y, axis=-1)
        return jnp.mean(hit.astype(w.dtype))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LinearRegression(Problem):
    """Least squares, F(w) = (1/2m) ||X w - y||^2 over the m = n*s rows kept.

    The adaptive paper writes F as a sum over rows (Sec. V-A) but its gradient step (2) and
    partial gradients (3) average over rows; we use the mean throughout, so eta is a step on
    the mean loss. With the paper's generator (rows in {1..10}^d, d=100) the Hessian
    X^T X / m has largest eigenvalue about 8.25 + 30.25 d ~ 3030, so the paper's
    eta = 0.0005 sits below 2/L ~ 6.6e-4 (see ``stable_step_limit``). Under the sum the same
    eta would diverge at once.

    F* = F(w*) with w* the float64 least-squares solution. The residual is evaluated as
    X (w - w*) + r*, with r* = X w* - y precomputed in float64: the same function as
    X w - y, but without the cancellation of two numbers of order |<x, w_bar>| ~ 3e4 that
    would cost float32 about three of its seven digits and blur errors below ~1e-3.

    The error F(w) - F* = (1/2) (w - w*)^T H (w - w*) with H = X^T X / m (``hessian``, computed
    on the host in float64): exact, because X^T r* = 0 at the least-squares solution, and free
    of the cancellation in F(w) - F* (a sum of squares, never a difference). It costs d^2 per
    evaluation instead of m d, and is kept only when d <= m (else H is larger than the data and
    the error is evaluated from the residuals).
    """

    x: Array  # (n, s, d)
    w_star: Array  # (d,) least-squares solution
    r_star: Array  # (n, s) residuals at w_star, X w* - y
    f_star: Array  # ()
    hessian: Array | None = None  # (d, d) X^T X / m over the kept rows; None: not kept (d > m)
    test_x: Array | None = None  # (t, d) held-out rows
    test_y: Array | None = None  # (t,)

    @property
    def num_params(self) -> int:
        return self.x.shape[-1]

    def loss(self, w: Array, x: Array, y: Array) -> Array:
        """(1/2) mean((x w - y)^2) over given rows (held-out ones; the training rows go
        through the residual at w*, below)."""
        return 0.5 * jnp.mean(jnp.square(x @ w - y))

    @property
    def y(self) -> Array:
        """Labels, recovered from the stored residuals (for references and reports)."""
        return jnp.einsum("nsd,d->ns", self.x, self.w_star) - self.r_star

    def shard_losses(self, w: Array) -> Array:
        r = jnp.einsum("nsd,d->ns", self.x, w - self.w_star) + self.r_star
        return 0.5 * jnp.mean(jnp.square(r), axis=1)

    def shard_loss(self, w: Array, i: Array) -> Array:
        """Worker i's mean loss alone (for gradients at a model only worker i holds)."""
        r = self.x[i] @ (w - self.w_star) + self.r_star[i]
        return 0.5 * jnp.mean(jnp.square(r))

    def rows_loss(self, w: Array, rows: Array) -> Array:
        """The mean loss over ``rows``, flat indices into the n*s kept rows (a mini-batch)."""
        d = self.x.shape[-1]
        r = self.x.reshape(-1, d)[rows] @ (w - self.w_star) + self.r_star.reshape(-1)[rows]
        return 0.5 * jnp.mean(jnp.square(r))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LogisticRegression(Problem):
    """L2-regularized one-vs-all logistic regression (eq. (8) of the adaptive paper).

    For each class u a weight vector w_u (d) and bias b_u; with z = <x, w_u> + b_u and target
    y_u in {0, 1} (one-hot label),

        F_u = (1/m) sum_l [log(1 + e^z) - y_u z] + (lam/2) ||w_u||^2,     F = (1/C) sum_u F_u.

    C = 1 is binary logistic regression. Decisions where eq. (8) is loose: its second log is
    read as log(1 - sigma) (cross-entropy); its sigma(z) = 1/(1 + e^(b+<x,w>)) is the usual
    sigmoid of -z, a sign convention that only flips w; rows are averaged (1/m) as in (2);
    the bias is not regularized; F is the mean over classes (the paper's "average log-loss").
    The paper takes per class the gradient of F_u, i.e. C times ours, so its step eta
    corresponds to C * eta here.

    Parameters are packed as w = [W.ravel() (d*C, row-major d x C), b (C)].
    F* comes from a damped Newton method in float64 per class (``logistic_optimum``).
    """

    x: Array  # (n, s, d)
    y: Array  # (n, s, C) one-hot targets
    reg: Array  # () lambda
    f_star: Array  # ()
    test_x: Array | None = None  # (t, d) held-out rows
    test_y: Array | None = None  # (t, C) their one-hot targets

    @property
    def num_classes(self) -> int:
        return self.y.shape[-1]

    @property
    def num_params(self) -> int:
        return (self.x.shape[-1] + 1) * self.num_classes

    def unpack(self, w: Array) -> tuple[Array, Array]:
        d, c = self.x.shape[-1], self.num_classes
        return w[: d * c].reshape(d, c), w[d * c :]

    def shard_losses(self, w: Array) -> Array:
        weights, bias = self.unpack(w)
        z = jnp.einsum("nsd,dc->nsc", self.x, weights) + bias
        data = jnp.mean(jax.nn.softplus(z) - self.y * z, axis=(1, 2))
        return data + self._penalty(weights)

    def shard_loss(self, w: Array, i: Array) -> Array:
        """Worker i's mean loss alone (for gradients at a model only worker i holds)."""
        return self._rows(w, self.x[i], self.y[i])

    def rows_loss(self, w: Array, rows: Array) -> Array:
        """The mean loss over ``rows``, flat indices into the n*s kept rows (a mini-batch)."""
        d, c = self.x.shape[-1], self.num_classes
        return self._rows(w, self.x.reshape(-1, d)[rows], self.y.reshape(-1, c)[rows])

    def loss(self, w: Array, x: Array, y: Array) -> Array:
        return self._rows(w, x, y)

    def _rows(self, w: Array, x: Array, y: Array) -> Array:
        weights, bias = self.unpack(w)
        z = x @ weights + bias
        return jnp.mean(jax.nn.softplus(z) - y * z) + self._penalty(weights)

    def _penalty(self, weights: Array) -> Array:
        return 0.5 * self.reg * jnp.sum(jnp.square(weights)) / self.num_classes

    @property
    def is_classifier(self) -> bool:
        return True

    def predict(self, w: Array, x: Array) -> Array:
        """The classes' scores z_u = <x, w_u> + b_u (one score for a binary problem)."""
        weights, bias = self.unpack(w)
        return x @ weights + bias


def linear_regression(x: np.ndarray, y: np.ndarray, n: int) -> LinearRegression:
    """Least squares on (x, y) split over n workers; F* exact by float64 least squares."""
    xs, ys = split_shards(np.asarray(x, np.float64), np.asarray(y, np.float64), n)
    xk, yk = xs.reshape(-1, xs.shape[-1]), ys.reshape(-1)
    w_star = np.linalg.lstsq(xk, yk, rcond=None)[0]
    r_star = np.einsum("nsd,d->ns", xs, w_star) - ys
    f_star = 0.5 * np.mean(np.square(r_star))
    m, d = xk.shape
    hessian = jnp.asarray(xk.T @ xk / m) if d <= m else None
    return LinearRegression(
        x=jnp.asarray(xs),
        w_star=jnp.asarray(w_star),
        r_star=jnp.asarray(r_star),
        f_star=jnp.asarray(f_star),
        hessian=hessian,
    )


def logistic_regression(
    x: np.ndarray,
    labels: np.ndarray,
    n: int,
    reg: float,
    num_classes: int,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    optimum: Callable[[np.ndarray, np.ndarray, float], float] | None = None,
) -> LogisticRegression:
    """One-vs-all logistic regression on integer labels 0..C-1 (C = 1: labels are the 0/1
    targets); ``test``: held-out (rows, labels) for the test metrics. ``optimum(x, targets,
    reg) -> F*`` computes F* from the kept rows (m, d) and their targets (m, C), both float64
    (default: ``logistic_optimum``; the study path passes one that caches it on disk)."""
    if not np.isfinite(reg) or reg <= 0:
        raise DataError(f"logistic regression needs reg > 0 (strong convexity, a finite F*), got {reg}")

    def targets(labels):
        labels = np.asarray(labels).astype(np.int64)
        return labels[:, None].astype(np.float64) if num_classes == 1 else np.eye(num_classes)[labels]

    xs, ys = split_shards(np.asarray(x, np.float64), targets(labels), n)
    optimum = optimum or (lambda x, t, r: logistic_optimum(x, t, r)[0])
    f_star = optimum(xs.reshape(-1, xs.shape[-1]), ys.reshape(-1, ys.shape[-1]), reg)
    test_x, test_y = (None, None) if test is None else (jnp.asarray(np.asarray(test[0], np.float64)), jnp.asarray(targets(test[1])))
    return LogisticRegression(
        x=jnp.asarray(xs), y=jnp.asarray(ys), reg=jnp.asarray(reg), f_star=jnp.asarray(f_star), test_x=test_x, test_y=test_y
    )


OPTIMUM_VERSION = 1  # of logistic_optimum's result: bump it when a change moves F*, so cached values are not reused


def logistic_optimum(
    x: np.ndarray,
    targets: np.ndarray,
    reg: float,
    tol: float = 1e-12,
    progress: Callable[[int, int, int], None] | None = None,
) -> tuple[float, np.ndarray]:
    """F* and the packed minimizer of ``LogisticRegression``'s loss, by damped Newton in float64.

    The classes decouple, so each F_u is minimized on its own over (w_u, b_u), with an
    Armijo backtracking line search, until the Newton decrement is below ``tol``. A class
    with no positive or no negative rows has no finite minimizer (its bias runs off to
    infinity), and is refused. ``progress(done, classes, iterations)`` is called after each
    class (on all 60,000 MNIST images a class takes about 25 s).
    """
    m, d = x.shape
    xa = np.hstack([x, np.ones((m, 1))])
    reg_diag = np.full(d + 1, reg)
    reg_diag[-1] = 0.0

    def objective(v, t):
        z = xa @ v
        return np.mean(np.logaddexp(0.0, z) - t * z) + 0.5 * reg * v[:d] @ v[:d]

    values, params = [], []
    for u in range(targets.shape[1]):
        t = targets[:, u]
        if t.min() == t.max():
            which = "no" if t.max() == 0 else "only"
            raise DataError(f"class {u} has {which} positive rows among the {m} rows: F* is not attained")
        v = np.zeros(d + 1)
        f = objective(v, t)
        for iterations in range(100):
            p = 0.5 * (1.0 + np.tanh(0.5 * (xa @ v)))  # sigmoid, stable for large |z|
            grad = xa.T @ (p - t) / m + reg_diag * v
            hess = (xa.T * (p * (1 - p))) @ xa / m + np.diag(reg_diag)
            step = np.linalg.solve(hess, grad)
            decrement = grad @ step
            if decrement < tol:
                break
            alpha = 1.0
            while True:
                f_new = objective(v - alpha * step, t)
                if f_new <= f - 0.25 * alpha * decrement or alpha < 1e-12:
                    break
                alpha *= 0.5
            v, f = v - alpha * step, f_new
        values.append(f)
        params.append(v)
        if progress is not None:
            progress(u + 1, targets.shape[1], iterations)
    packed = np.concatenate([np.stack([v[:d] for v in params], axis=1).ravel(), np.array([v[d] for v in params])])
    return float(np.mean(values)), packed


class ParamLayout(NamedTuple):
    """How a parameter pytree sits in the flat model vector: its tree structure and each leaf's
    shape, in leaf order. Hashable, so two problems of the same layout share compiled programs."""

    treedef: Any
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, params) -> ParamLayout:
        leaves, treedef = jax.tree.flatten(params)
        return cls(treedef, tuple(tuple(np.shape(leaf)) for leaf in leaves))

    @property
    def size(self) -> int:
        return sum(math.prod(shape) for shape in self.shapes)

    def ravel(self, params, dtype) -> Array:
        return jnp.concatenate([jnp.ravel(jnp.asarray(leaf, dtype)) for leaf in jax.tree.leaves(params)])

    def unravel(self, w: Array):
        leaves, start = [], 0
        for shape in self.shapes:
            size = math.prod(shape)
            leaves.append(w[start : start + size].reshape(shape))
            start += size
        return jax.tree.unflatten(self.treedef, leaves)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LossProblem(Problem):
    """A problem from a user's loss of a parameter pytree (``from_loss``): ``fn(params, x, y)``
    is the mean loss over rows ``x`` with targets ``y``, ``scores(params, x)`` (optional) the
    class scores of a classifier. Both are static: give the same function objects (or equal
    ones, such as instances of a frozen dataclass) and a second problem of the same shapes
    reuses the compiled programs."""

    x: Array  # (n, s, ...)
    y: Array  # (n, s, ...)
    w0: Array  # (p,) the initial model, flattened
    f_star: Array  # () NaN: unknown
    test_x: Array | None = None
    test_y: Array | None = None
    fn: Callable = dataclasses.field(default=None, metadata={"static": True})
    layout: ParamLayout = dataclasses.field(default=None, metadata={"static": True})
    scores: Callable | None = dataclasses.field(default=None, metadata={"static": True})

    @property
    def num_params(self) -> int:
        return self.w0.shape[0]

    def init_params(self) -> Array:
        return self.w0

    def params(self, w: Array):
        """The flat model ``w`` as the user's parameter pytree."""
        return self.layout.unravel(w)

    def loss(self, w: Array, x: Array, y: Array) -> Array:
        return self.fn(self.layout.unravel(w), x, y)

    @property
    def is_classifier(self) -> bool:
        return self.scores is not None

    def predict(self, w: Array, x: Array) -> Array | None:
        return None if self.scores is None else self.scores(self.layout.unravel(w), x)


def from_loss(
    loss: Callable,
    params,
    x: np.ndarray,
    y: np.ndarray,
    n: int,
    *,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    f_star: float | None = None,
    scores: Callable | None = None,
    dtype=None,
) -> LossProblem:
    """A problem from a pure JAX loss: ``loss(params, x_rows, y_rows) -> ()``, the mean loss
    over the rows, for a parameter pytree like ``params`` (the initial model). The rows
    ``x`` (m, ...) and targets ``y`` (m, ...) are split over ``n`` workers (``split_shards``);
    ``test`` is a held-out split for the test metrics, ``f_star`` the optimal value where known,
    ``scores(params, x_rows) -> (b, C)`` class scores for the accuracy metric. The model and
    the float data are in ``dtype`` (default: the parameters' float type as JAX runs it,
    float32 unless 64-bit mode is on)."""
    layout = ParamLayout.of(params)
    if dtype is None:
        dtype = jax.dtypes.canonicalize_dtype(np.result_type(*jax.tree.leaves(params), np.float32))
    if layout.size == 0:
        raise DataError("the parameters have no entries")
    xs, ys = split_shards(np.asarray(x), np.asarray(y), n)
    cast = lambda a: jnp.asarray(a, dtype) if np.issubdtype(np.asarray(a).dtype, np.floating) else jnp.asarray(a)
    test_x, test_y = (None, None) if test is None else (cast(test[0]), cast(test[1]))
    return LossProblem(
        x=cast(xs),
        y=cast(ys),
        w0=layout.ravel(params, dtype),
        f_star=jnp.asarray(np.nan if f_star is None else f_star, dtype),
        test_x=test_x,
        test_y=test_y,
        fn=loss,
        layout=layout,
        scores=scores,
    )


def full_loss(problem: Problem, w: Array) -> Array:
    """F(w): the mean loss over all kept rows."""
    return jnp.mean(problem.shard_losses(w))


def excess_loss(problem: Problem, w: Array, shard_losses: Array | None = None) -> Array:
    """F(w) - F*, the error the curves record.

    Least squares with its ``hessian``: (1/2) e^T H e, e = w - w* (see ``LinearRegression``).
    Otherwise mean(shard_losses) - F*, from ``shard_losses`` (the (n,) shard losses at w) when
    the caller has them, else computed here.
    """
    if isinstance(problem, LinearRegression) and problem.hessian is not None:
        e = w - problem.w_star
        return 0.5 * jnp.dot(e, problem.hessian @ e)
    if shard_losses is None:
        shard_losses = problem.shard_losses(w)
    return jnp.mean(shard_losses) - problem.f_star


METRICS = {  # what the curves can record at each model w_j, by name
    "error": "F(w) - F*, the excess training loss (needs F*)",
    "loss": "F(w), the training loss",
    "grad_norm2": "||grad F(w)||^2, the squared gradient norm of the full objective",
    "test_loss": "the mean loss over the held-out rows",
    "test_accuracy": "the fraction of held-out rows classified right",
}
HIGHER_IS_BETTER = frozenset({"test_accuracy"})


def metric_names_problem(names) -> str | None:
    """Why ``names`` cannot be a run's metrics (unknown, repeated, or a first, tracked one that
    rises as runs improve), or None when they can."""
    if not names or len(set(names)) != len(names):
        return f"needs one or more distinct names, got {list(names)}"
    for name in names:
        if name not in METRICS:
            return f"unknown metric {name!r}; known: {', '.join(METRICS)}"
    if names[0] in HIGHER_IS_BETTER:
        return (
            f"the first metric is the tracked one (divergence, levels reached) and must fall as runs improve; "
            f"{names[0]!r} rises: put it after another"
        )
    return None


def metric_problem(problem: Problem, name: str) -> str | None:
    """Why ``problem`` cannot give metric ``name``, or None when it can."""
    if name not in METRICS:
        return f"unknown metric {name!r}; known: {', '.join(METRICS)}"
    if name == "error" and not problem.knows_f_star:
        return "'error' (F - F*) needs F*, which is not known for this problem: track 'loss' instead"
    if name.startswith("test_") and not problem.has_test:
        return f"{name!r} needs held-out rows: give the problem a test split"
    if name == "test_accuracy" and not problem.is_classifier:
        return "'test_accuracy' needs a classifier"
    return None


def default_metrics(problem: Problem) -> tuple[str, ...]:
    """F - F* where F* is known, else the training loss."""
    return ("error",) if problem.knows_f_star else ("loss",)


def evaluate(problem: Problem, w: Array, names: tuple[str, ...], shard_losses: Array | None = None) -> Array:
    """The metrics ``names`` at model ``w``, shape (len(names),); ``shard_losses``: the (n,)
    shard losses at w where the caller has them (the reverse pass of a gradient gives them)."""
    values = []
    for name in names:
        if name == "error":
            values.append(excess_loss(problem, w, shard_losses))
        elif name == "loss":
            values.append(full_loss(problem, w) if shard_losses is None else jnp.mean(shard_losses))
        elif name == "grad_norm2":
            g = jax.grad(full_loss, argnums=1)(problem, w)
            values.append(jnp.vdot(g, g))
        elif name == "test_loss":
            values.append(problem.loss(w, problem.test_x, problem.test_y))
        elif name == "test_accuracy":
            values.append(problem.accuracy(w, problem.test_x, problem.test_y))
        else:
            raise ValueError(f"unknown metric {name!r}")
    return jnp.stack([jnp.asarray(v, w.dtype) for v in values])


def hessian_spectrum_linear(problem: LinearRegression) -> dict[str, float]:
    """Host float64 curvature of least squares: L = lambda_max(X^T X / m), c = lambda_min, and
    the largest single-shard L_i = lambda_max(X_i^T X_i / s)."""
    xs = np.asarray(problem.x, np.float64)
    n, s, _ = xs.shape
    full = np.linalg.eigvalsh(np.einsum("nsd,nse->de", xs, xs) / (n * s))
    shard = np.linalg.eigvalsh(np.einsum("nsd,nse->nde", xs, xs) / s)[:, -1]
    return {"L": float(full[-1]), "c": float(full[0]), "L_shard_max": float(shard.max())}


def logistic_curvature(x: np.ndarray, reg: float, num_classes: int) -> np.ndarray:
    """The curvature bound of ``LogisticRegression``'s loss over rows ``x`` (..., r, d): for
    each leading index, lambda_max(X_a^T X_a / 4r + diag(lam, .., lam, 0)) / C (float64).

    Why: over r rows, F = (1/C) sum_u F_u and F_u depends on (w_u, b_u) alone, so the Hessian
    of F is block diagonal with blocks (1/C) (X_a^T diag(p_u (1 - p_u)) X_a / r + diag(lam, ..,
    lam, 0)), X_a = [X, 1] (the bias column, not regularized), p_u the sigmoid of the class's
    scores. p (1 - p) <= 1/4 bounds every block by the same matrix, whose largest eigenvalue
    this is: a bound on lambda_max of the Hessian at every w, attained at w = 0 (p = 1/2
    everywhere), where runs start. The 1/C is our class-averaged loss: the adaptive paper
    steps on each F_u, whose bound is C times this, hence its limits read 2C / max_i L_i.
    """
    x = np.asarray(x, np.float64)
    r, d = x.shape[-2:]
    xa = np.concatenate([x, np.ones(x.shape[:-1] + (1,))], axis=-1)
    bound = np.swapaxes(xa, -1, -2) @ xa / (4 * r) + np.diag(np.r_[np.full(d, reg), 0.0])
    return np.linalg.eigvalsh(bound)[..., -1] / num_classes


def stable_step_limit(problem: Problem) -> float | None:
    """A step size 2 / max_i L_i above which fastest-k SGD may diverge, L_i the curvature
    bound of shard i; None for a problem with no known curvature bound (a network).

    Least squares (L_i = lambda_max(X_i^T X_i / s)): the error w - w* evolves as
    (I - eta H_R)(w - w*) + eta * noise, where H_R is the mean of the selected shards'
    Hessians. H_R is symmetric PSD with lambda_max(H_R) <= max_i L_i, so for eta < 2 / max_i L_i
    every factor has spectral norm <= 1 and the iterates stay bounded whatever workers are
    selected. (2/L of the full Hessian is the limit for full-batch GD.)

    Logistic regression (L_i = ``logistic_curvature`` of shard i): the mean of the selected
    shards' losses has an L-smooth gradient with L <= max_i L_i, so below the limit every step
    of the mean of the selected gradients is a descent step of that mean. The bound is attained
    at w = 0, where runs start: above it the first steps overshoot along the top eigenvector.
    The curvature falls as the scores grow, so a run above the limit can still settle; the
    limit says where stability stops being guaranteed.
    """
    if isinstance(problem, LinearRegression):
        return 2.0 / hessian_spectrum_linear(problem)["L_shard_max"]
    if isinstance(problem, LogisticRegression):
        return 2.0 / float(logistic_curvature(problem.x, float(problem.reg), problem.num_classes).max())
    return None
