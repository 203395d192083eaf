"""Multilayer perceptrons on digits / MNIST / Fashion-MNIST: the model of seed 003 and its relatives,
and seed 004's layer-by-layer network.

``--loss ce``: softmax cross-entropy on linear outputs (the usual classifier).
``--loss multilabel-bce``: K sigmoid outputs, binary cross-entropy summed over K and averaged over
N against one-hot targets (seed 003's J̃); prediction = the most probable output.
``--loss l2``: ½‖σ(z) − d‖² per example (seed 004's L2 divergence on sigmoid outputs), averaged over N.
``--l2 λ`` adds λ/2 Σ‖W‖² over the weight matrices (not the biases): seed 003's "+ λW" term.

Seed 003's network ("Alg 1") is ``build_model`` with ``activation='sigmoid'`` and the
``multilabel-bce`` loss with ``l2 = λ``; :func:`from_derivation` / :func:`derivation_grads` map its
parameters to and from the layout of :mod:`chainrule.derivations.multilabel_mlp` (``W_k`` is the
transpose of the k-th Linear's weight: ``nn.Linear`` computes ``x @ weight + bias``).

Seed 004's network (:func:`layerwise_loss`) is written in the document's own layout -- columns are
examples, ``z_k = W_k y_{k−1} + b_k`` -- because its layers (a maxout, a softmax over each column,
per-unit leaky slopes) are exactly what the document writes and no command trains it; it is the
engine's side of :mod:`chainrule.derivations.layerwise`.
"""
from __future__ import annotations

import time

import numpy as np

from .. import losses, nn
from ..ops import functional as F
from ..tensor import Tensor

LOSSES = ("ce", "multilabel-bce", "l2")
ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "rrelu")


def build_model(config, n_in, n_out):
    sizes = [n_in, *config["hidden"], n_out]
    return nn.MLP(sizes, activation=config["activation"], output=None, dropout=config.get("dropout", 0.0),
                  seed=config["seed"])


def weight_params(model):
    """The weight matrices (not the biases): what ``--l2`` penalises."""
    return [lin.weight for lin in _linears(model)]


def make_loss_fn(config, n_classes):
    kind = config["loss"]
    lam = float(config.get("l2", 0.0) or 0.0)

    def loss_fn(model, batch):
        onehot = None
        x, y = batch
        z = model(Tensor._wrap(x))
        if np.ndim(y) == 2:                 # a (N, K) target matrix (seed 003's multi-label y)
            onehot, y = np.asarray(y, dtype=z.dtype), np.asarray(y).argmax(axis=1)
        if kind == "ce":
            loss = losses.cross_entropy(z, y)
        else:
            if onehot is None:
                onehot = np.eye(n_classes, dtype=z.dtype)[y]
            if kind == "multilabel-bce":
                loss = losses.multilabel_bce(z, onehot, from_logits=True)
            else:
                loss = losses.l2(z.sigmoid(), onehot, reduction="mean")
        if lam:
            loss = loss + losses.l2_penalty(weight_params(model), C=lam, m=1)
        pred = z.data.argmax(axis=1)
        return loss, {"correct": int((pred == y).sum()), "count": len(y)}
    return loss_fn


def make_evaluate_fn(config, n_classes, batch_size=1024):
    """``evaluate_fn(model, data) -> {'loss', 'acc'}``, a :class:`~chainrule.train.ShardedEvaluation`
    (data-parallel training splits it across ranks): each part sums loss·n, correct and n over its
    examples in chunks of ``batch_size``; the sums of all parts give the means."""
    from ..train import ShardedEvaluation
    loss_fn = make_loss_fn(config, n_classes)

    def predict(model, data, lo, hi):
        tot, correct, n = 0.0, 0, 0
        for i in range(lo, hi, batch_size):
            idx = np.arange(i, min(i + batch_size, hi))
            loss, st = loss_fn(model, data.batch(idx))
            tot += float(loss.item()) * len(idx)
            correct += st["correct"]
            n += len(idx)
        return (np.array([[tot, correct, n]], dtype=np.float64),)

    def finish(data, parts):
        tot, correct, n = parts[0].sum(axis=0)
        if n == 0:            # no examples: undefined, not 0
            return {"loss": float("nan"), "acc": float("nan")}
        return {"loss": float(tot) / n, "acc": int(correct) / int(n)}
    return ShardedEvaluation(predict, finish)


def timed(fn, *a, **k):
    t = time.perf_counter()
    r = fn(*a, **k)
    return r, time.perf_counter() - t


# ---------------------------------------------------------------------------------------------
# The adapter to seed 003's layout (chainrule.derivations.multilabel_mlp)
# ---------------------------------------------------------------------------------------------
def _linears(model):
    return [m for m in model.layers if isinstance(m, nn.Linear)]


def from_derivation(params, activation="sigmoid"):
    """A float64 :class:`~chainrule.nn.MLP` (``activation`` hidden units, linear outputs) whose
    parameters are ``params`` in the derivation's layout ``{'W1': (H, D), 'b1', 'W2': (K, H), 'b2', ...}``
    (the seed's ``z = W x + b``; each Linear's weight is ``W_kᵀ``)."""
    n = sum(1 for k in params if k.startswith("W"))
    Ws = [np.asarray(params[f"W{k}"], dtype=np.float64) for k in range(1, n + 1)]
    sizes = [Ws[0].shape[1]] + [W.shape[0] for W in Ws]
    model = build_model({"hidden": sizes[1:-1], "activation": activation, "seed": 0}, sizes[0], sizes[-1]).to(np.float64)
    for k, lin in enumerate(_linears(model), start=1):
        lin.weight.data[...] = Ws[k - 1].T
        lin.bias.data[...] = params[f"b{k}"]
    return model


def derivation_grads(model, loss):
    """The engine's gradients of ``loss`` w.r.t. the MLP's parameters in the derivation's layout
    (``W_k`` = the k-th Linear's weight gradient transposed); no ``.grad`` is touched."""
    from ..autograd import gradients
    lins = _linears(model)
    gs = gradients(loss, [t for lin in lins for t in (lin.weight, lin.bias)])
    out = {}
    for k in range(len(lins)):
        out[f"W{k + 1}"], out[f"b{k + 1}"] = np.asarray(gs[2 * k]).T, np.asarray(gs[2 * k + 1])
    return out


def bound_to(params, activation="sigmoid"):
    """The MLP of :func:`from_derivation` as a *function* of derivation-layout tensors (what the
    function transforms ``cr.hvp`` / ``cr.hessian`` differentiate): each Linear's weight and bias
    are bound to ``W_kᵀ`` and ``b_k`` computed from the given tensors (not copied into Parameters),
    so the loss of the returned model depends on ``params`` through the model's own forward."""
    from ..tensor import Tensor
    model = from_derivation({k: np.asarray(v.data if isinstance(v, Tensor) else v) for k, v in params.items()},
                            activation)
    for k, lin in enumerate(_linears(model), start=1):
        W, b = (v if isinstance(v, Tensor) else Tensor._wrap(np.asarray(v)) for v in (params[f"W{k}"], params[f"b{k}"]))
        lin.__dict__["weight"], lin.__dict__["bias"] = F.transpose(W), b   # bypass the Parameter-only setattr
    return model


def multilabel_loss(model, X, Y, lam=0.0):
    """Seed 003's J = (1/N) Σ_i Σ_k BCE(σ(z3_ik), y_ik) + λ/2 Σ‖W‖² of ``model`` on ``(X, Y)``: the
    ``multilabel-bce`` loss of ``chainrule train mlp`` with ``--l2 λ``, for a target matrix ``Y``."""
    loss, _ = make_loss_fn({"loss": "multilabel-bce", "l2": lam}, np.shape(Y)[1])(model, (X, Y))
    return loss


# ---------------------------------------------------------------------------------------------
# Seed 004: the layer-by-layer network in the document's layout (chainrule.derivations.layerwise)
# ---------------------------------------------------------------------------------------------
def layers_to_tensors(layers, dtype=np.float64):
    """The layer dicts of ``derivations.layerwise.init_layers`` with ``'W'`` and ``'b'`` as leaf tensors
    (named ``W1, b1, W2, ...``); the other keys (activation, alpha, pieces) are copied."""
    out = []
    for k, layer in enumerate(layers, start=1):
        new = dict(layer)
        new["W"] = Tensor(np.array(layer["W"], dtype=dtype), requires_grad=True, name=f"W{k}")
        new["b"] = Tensor(np.array(layer["b"], dtype=dtype), requires_grad=True, name=f"b{k}")
        out.append(new)
    return out


def _activation(layer, z):
    act = layer["activation"]
    if act == "maxout":
        p = layer["pieces"]
        return z.reshape((z.shape[0] // p, p) + tuple(z.shape[1:])).max(axis=1)
    if act == "softmax":
        return F.softmax(z, axis=0)                      # columns are examples
    if act == "leaky_relu":
        return F.leaky_relu(z, layer.get("alpha", 0.01))
    if act == "identity":
        return z
    if act in ("sigmoid", "tanh", "relu"):
        return getattr(F, act)(z)
    raise ValueError(f"layerwise_loss: unknown activation {act!r}")


def layerwise_loss(layers, x, d, div="l2"):
    """Seed 004's stack ``z_k = W_k y_{k-1} + b_k``, ``y_k = f_k(z_k)`` and a divergence, engine ops.

    Layout as in ``derivations.layerwise``: ``x`` is ``(n0,)`` or ``(n0, B)`` (one column per example),
    ``layers`` a list of dicts with tensors ``'W'`` ``(n_k, n_{k-1})``, ``'b'`` ``(n_k,)`` (see
    :func:`layers_to_tensors`) and an ``'activation'`` among sigmoid, tanh, relu, leaky_relu
    (``'alpha'``, a number or an array of slopes), identity, softmax (over axis 0) and maxout
    (``'pieces'``).  The tensors are named ``z1, y1, z2, ...``.  ``div``:

    * ``'l2'``: ½ Σ (y − d)²;  * ``'bce'``: Σ −d log y − (1 − d) log(1 − y);  * ``'ce'``: −Σ d log y

    (summed over the columns of a batch, as the document's divergences are).
    """
    y = np.asarray(x)
    for k, layer in enumerate(layers, start=1):
        b = layer["b"] if y.ndim == 1 else layer["b"].reshape(-1, 1)
        z = layer["W"] @ y + b
        z.name = f"z{k}"
        y = _activation(layer, z)
        if y is not z:
            y.name = f"y{k}"
    d = np.asarray(d, dtype=y.dtype)
    if div == "l2":
        return losses.l2(y, d, reduction="sum")
    if div == "bce":
        return (F.log(y) * (-d) - F.log(1.0 - y) * (1.0 - d)).sum()
    if div == "ce":
        return -(F.log(y) * d).sum()
    raise ValueError(f"layerwise_loss: unknown divergence {div!r}; use 'l2', 'bce' or 'ce'")
