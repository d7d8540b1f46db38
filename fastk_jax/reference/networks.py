"""A plain NumPy reference of fastest-k SGD on an MLP classifier: the test oracle of the
network path (the engine differentiates the loss with ``jax.grad``; here the backward pass is
written out by hand) and the speed baseline of ``fastk-jax bench``'s MLP workload.

One run of scheme k_sync with a fixed k and plain SGD, given every worker's delay at every
iteration (``engine.delay_samples``): at iteration j the k fastest workers (stable argsort of
the delays: ties to the lower index, as in the engine) send the gradient of their shard's mean
cross-entropy at w_j; the master averages the k gradients and steps w_(j+1) = w_j - eta g_j.
Written as a careful researcher would: float64 (or the dtype asked for), one forward and one
backward pass over the rows of the selected shards only, stacked into one batch, no loop over
workers; the training loss F(w_j) over all rows is computed only where asked (``record``).
Nothing here imports JAX.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class MLPRun(NamedTuple):
    """One run: per iteration j, the clock t_j and (where recorded) the training loss F(w_j)."""

    time: np.ndarray  # (J,)
    loss: np.ndarray  # (J,) NaN where not recorded
    params: list  # the final layers [(W, b), ...]


def _act(name: str):
    if name == "relu":
        return (lambda z: np.maximum(z, 0.0)), (lambda z, h: (z > 0).astype(z.dtype))
    if name == "tanh":
        return np.tanh, (lambda z, h: 1.0 - h * h)
    raise ValueError(f"the reference has relu and tanh, not {name!r}")


def forward(params: list, x: np.ndarray, activation: str = "relu"):
    """Class scores of rows ``x`` and the layers' pre-activations and outputs (for backward)."""
    act, _ = _act(activation)
    hs, zs = [x], []
    for w, b in params[:-1]:
        z = hs[-1] @ w + b
        zs.append(z)
        hs.append(act(z))
    w, b = params[-1]
    return hs[-1] @ w + b, zs, hs


def loss_and_grad(params: list, x: np.ndarray, labels: np.ndarray, activation: str = "relu"):
    """Mean softmax cross-entropy over the rows and its gradient, layer by layer."""
    scores, zs, hs = forward(params, x, activation)
    scores = scores - scores.max(axis=1, keepdims=True)
    logp = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    rows = np.arange(x.shape[0])
    loss = -logp[rows, labels].mean()
    delta = np.exp(logp)
    delta[rows, labels] -= 1.0
    delta /= x.shape[0]
    _, act_grad = _act(activation)
    grads = []
    for layer in range(len(params) - 1, -1, -1):
        w, _ = params[layer]
        grads.append((hs[layer].T @ delta, delta.sum(axis=0)))
        if layer:
            delta = (delta @ w.T) * act_grad(zs[layer - 1], hs[layer])
    return loss, grads[::-1]


def simulate_mlp_run(
    params: list,
    xs: np.ndarray,
    ys: np.ndarray,
    k: int,
    eta: float,
    delays: np.ndarray,
    activation: str = "relu",
    record: bool = True,
    dtype=np.float64,
) -> MLPRun:
    """Fastest-k SGD with fixed ``k`` from layers ``params`` on shards ``xs`` (n, s, d) with
    integer labels ``ys`` (n, s), given ``delays`` (J, n)."""
    params = [(np.array(w, dtype), np.array(b, dtype)) for w, b in params]
    xs = np.asarray(xs, dtype)
    ys = np.asarray(ys)
    n, s = ys.shape
    flat_x, flat_y = xs.reshape(n * s, -1), ys.reshape(-1)
    iterations = delays.shape[0]
    time, losses = np.zeros(iterations), np.full(iterations, np.nan)
    t = 0.0
    for j in range(iterations):
        time[j] = t
        if record:
            losses[j] = loss_and_grad(params, flat_x, flat_y, activation)[0]
        chosen = np.argsort(delays[j], kind="stable")[:k]
        t += float(delays[j][chosen[-1]])
        # the mean of the k shard gradients is the gradient of the mean loss over their rows
        _, grads = loss_and_grad(params, xs[chosen].reshape(k * s, -1), ys[chosen].reshape(-1), activation)
        params = [(w - eta * gw, b - eta * gb) for (w, b), (gw, gb) in zip(params, grads)]
    return MLPRun(time, losses, params)
