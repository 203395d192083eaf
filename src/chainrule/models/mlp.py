"""Multilayer perceptrons on digits / MNIST / Fashion-MNIST: the model of seed 003 and its relatives.

``--loss ce``: softmax cross-entropy on linear outputs (the usual classifier).
``--loss multilabel-bce``: K sigmoid outputs, binary cross-entropy summed over K and averaged over
N against one-hot targets (seed 003's J̃); prediction = the most probable output.
``--loss l2``: ½‖σ(z) − d‖² per example (seed 004's L2 divergence on sigmoid outputs), averaged over N.
``--l2 λ`` adds λ/2 Σ‖W‖² over the weight matrices (not the biases): seed 003's "+ λW" term.
"""
from __future__ import annotations

import time

import numpy as np

from .. import losses, nn
from ..tensor import Tensor

LOSSES = ("ce", "multilabel-bce", "l2")
ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "rrelu")


def build_model(config, n_in, n_out):
    sizes = [n_in, *config["hidden"], n_out]
    return nn.MLP(sizes, activation=config["activation"], output=None, dropout=config.get("dropout", 0.0),
                  seed=config["seed"])


def weight_params(model):
    return [p for name, p in model.named_parameters() if name.endswith("weight")]


def make_loss_fn(config, n_classes):
    kind = config["loss"]
    lam = float(config.get("l2", 0.0) or 0.0)

    def loss_fn(model, batch):
        x, y = batch
        z = model(Tensor._wrap(x))
        if kind == "ce":
            loss = losses.cross_entropy(z, y)
        else:
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
