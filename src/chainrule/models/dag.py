"""Seed 001's DAG networks (:class:`chainrule.nn.DAGNetwork`) trained by the one training loop.

:func:`train` runs :class:`chainrule.train.Trainer` with an optimizer of the one table
(:func:`chainrule.optim.make_optimizer`) on ``(X, Y)``, minimising the spec's loss (the mean over
each batch); ``chainrule dag`` uses it.  The network itself (forward, loss, explain, spec) is
:mod:`chainrule.nn.dag`.
"""
from __future__ import annotations

import numpy as np

__all__ = ["train"]


def train(net, X, Y, epochs=500, lr=None, optimizer="sgd", batch_size=None, seed=0, out_dir=None, callback=None):
    """Train ``net`` on ``(X, Y)``; returns the loss history (one float per epoch: the mean training
    loss over that epoch's batches).

    ``optimizer``: a name of :data:`chainrule.optim.OPTIMIZERS` (``lr`` None: its default).
    ``batch_size=None`` is full batch; the examples are shuffled each epoch by the Trainer's
    generator seeded with ``seed``.  ``out_dir``: checkpoints, metrics and plot as every
    ``chainrule train`` run (None: nothing written).  ``callback(epoch, loss)`` after every epoch.
    """
    from .. import optim
    from ..train import ArrayDataset, TrainConfig, Trainer
    X = np.asarray(X, dtype=net._dtype())
    Y = np.asarray(Y)
    if X.ndim == 1:
        X = X.reshape(1, -1)
    n = X.shape[0]
    if Y.shape[0] != n:
        raise ValueError(f"train: {n} inputs but {Y.shape[0]} targets")
    opt = optim.make_optimizer(optimizer, list(net.parameters()), lr=lr)

    def loss_fn(model, batch):
        return model.loss(*batch), {}

    def on_epoch_start(epoch):
        if callback is not None and epoch > 0:
            callback(epoch - 1, trainer.history[-1]["train_loss"])

    tc = TrainConfig(epochs=int(epochs), batch_size=n if not batch_size else int(batch_size), seed=seed,
                     out_dir=out_dir, monitor="loss", mode="min", progress=False, verbose=False)
    trainer = Trainer(net, opt, loss_fn, None, tc, on_epoch_start=on_epoch_start)
    trainer.fit(ArrayDataset(X, Y))
    history = [rec["train_loss"] for rec in trainer.history]
    if callback is not None and history:
        callback(len(history) - 1, history[-1])
    return history
