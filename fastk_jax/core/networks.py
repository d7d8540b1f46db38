"""Neural-network problems: a multilayer perceptron classifier, an instance of the problem
protocol (``problems.from_loss``) with no known F*.

The network maps a row x (d,) through hidden layers h = act(W h + b) to class scores (C,); the
loss is the mean softmax cross-entropy over the rows, plus (reg / 2) times the squared norm of
the weights (not the biases) where ``reg > 0``. Weights start from He (ReLU) or Glorot (tanh)
normal initialisation from ``init_seed``, biases at zero: every run of a study starts from the
same model, as with the convex problems (which start at zero, a point a network cannot start
from: its hidden units would stay equal).

The loss is an instance of a frozen dataclass (``MLPLoss``), so two problems of one
architecture compare equal as static arguments and share their compiled programs.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import DataError
from .problems import LossProblem, from_loss

Array = jax.Array

ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh, "gelu": jax.nn.gelu}


@dataclasses.dataclass(frozen=True)
class MLPScores:
    """Class scores of an MLP: params is a list of (W (d_in, d_out), b (d_out,)) per layer."""

    activation: str = "relu"

    def __call__(self, params, x: Array) -> Array:
        act = ACTIVATIONS[self.activation]
        h = x
        for weights, bias in params[:-1]:
            h = act(h @ weights + bias)
        weights, bias = params[-1]
        return h @ weights + bias


@dataclasses.dataclass(frozen=True)
class MLPLoss:
    """Mean softmax cross-entropy of an MLP over rows with integer labels, plus (reg/2)||W||^2."""

    activation: str = "relu"
    reg: float = 0.0

    def __call__(self, params, x: Array, y: Array) -> Array:
        scores = MLPScores(self.activation)(params, x)
        logp = jax.nn.log_softmax(scores, axis=-1)
        data = -jnp.mean(jnp.take_along_axis(logp, y[..., None].astype(jnp.int32), axis=-1))
        if self.reg:
            data = data + 0.5 * self.reg * sum(jnp.sum(jnp.square(w)) for w, _ in params)
        return data


def init_mlp(sizes: tuple[int, ...], activation: str, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Layers (W, b) for ``sizes`` = (d, hidden..., C): W normal with variance 2/d_in (ReLU,
    GELU: He) or 1/d_in (tanh: Glorot-like), b = 0, in float64 from ``seed``."""
    rng = np.random.default_rng(seed)
    gain = 1.0 if activation == "tanh" else 2.0
    return [
        (rng.normal(0.0, np.sqrt(gain / fan_in), (fan_in, fan_out)), np.zeros(fan_out))
        for fan_in, fan_out in itertools.pairwise(sizes)
    ]


def mlp_classifier(
    x: np.ndarray,
    labels: np.ndarray,
    n: int,
    *,
    hidden: tuple[int, ...] = (32,),
    activation: str = "relu",
    init_seed: int = 0,
    num_classes: int | None = None,
    reg: float = 0.0,
    test: tuple[np.ndarray, np.ndarray] | None = None,
) -> LossProblem:
    """An MLP classifier on rows ``x`` (m, d) with integer ``labels`` 0..C-1, split over ``n``
    workers; ``test``: held-out (rows, labels) for the test metrics."""
    if activation not in ACTIVATIONS:
        raise DataError(f"unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}")
    labels = np.asarray(labels).astype(np.int32)
    classes = int(labels.max()) + 1 if num_classes is None else num_classes
    sizes = (np.shape(x)[1], *hidden, classes)
    params = init_mlp(sizes, activation, init_seed)
    if test is not None:
        test = (np.asarray(test[0]), np.asarray(test[1]).astype(np.int32))
    return from_loss(
        MLPLoss(activation, float(reg)), params, x, labels, n, test=test, scores=MLPScores(activation)
    )


def mlp_flops(sizes: tuple[int, ...]) -> int:
    """Multiply-adds x 2 of one row's forward pass through layers ``sizes``."""
    return 2 * sum(a * b for a, b in itertools.pairwise(sizes))
