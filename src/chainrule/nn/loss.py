"""Loss modules next to the loss functions of :mod:`chainrule.losses`, as PyTorch's ``nn.*Loss``:
the constructor takes the options, calling the module takes ``(prediction, target)``.

=========================== ==================================================================
``CrossEntropyLoss``         :func:`~chainrule.losses.cross_entropy` (weight, ignore_index, reduction, label_smoothing)
``NLLLoss``                  :func:`~chainrule.losses.nll_loss` (weight, ignore_index, reduction)
``MSELoss``                  :func:`~chainrule.losses.mse`
``L2Loss``                   :func:`~chainrule.losses.l2` (½‖y − d‖², seed 004; reduction 'sum' by default)
``BCELoss``                  :func:`~chainrule.losses.binary_cross_entropy`
``BCEWithLogitsLoss``        :func:`~chainrule.losses.binary_cross_entropy_with_logits`
``MultiLabelBCELoss``        :func:`~chainrule.losses.multilabel_bce` (seed 003)
=========================== ==================================================================

>>> import numpy as np
>>> from chainrule import nn
>>> loss = nn.CrossEntropyLoss(label_smoothing=0.1)
>>> float(loss(np.zeros((2, 3)), np.array([0, 2]))) == float(np.log(3))
True
"""
from __future__ import annotations

from .. import losses as L
from .module import Module

__all__ = ["CrossEntropyLoss", "NLLLoss", "MSELoss", "L2Loss", "BCELoss", "BCEWithLogitsLoss", "MultiLabelBCELoss"]


class _Loss(Module):
    _fn = None
    _opts = ()

    def __init__(self, **opts):
        super().__init__()
        self.opts = opts

    def forward(self, prediction, target):
        return type(self)._fn(prediction, target, **self.opts)

    def extra_repr(self):
        return ", ".join(f"{k}={v!r}" for k, v in self.opts.items())


class CrossEntropyLoss(_Loss):
    """``CrossEntropyLoss(weight=None, ignore_index=-100, reduction='mean', label_smoothing=0.0)``."""
    _fn = staticmethod(L.cross_entropy)

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(weight=weight, ignore_index=ignore_index, reduction=reduction,
                         label_smoothing=label_smoothing)


class NLLLoss(_Loss):
    """``NLLLoss(weight=None, ignore_index=-100, reduction='mean')`` on log-probabilities."""
    _fn = staticmethod(L.nll_loss)

    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__(weight=weight, ignore_index=ignore_index, reduction=reduction)


class MSELoss(_Loss):
    """``MSELoss(reduction='mean')``: mean of (y − d)² over all elements."""
    _fn = staticmethod(L.mse)

    def __init__(self, reduction="mean"):
        super().__init__(reduction=reduction)


class L2Loss(_Loss):
    """``L2Loss(reduction='sum')``: ½‖y − d‖² (seed 004's scaled L2 divergence)."""
    _fn = staticmethod(L.l2)

    def __init__(self, reduction="sum"):
        super().__init__(reduction=reduction)


class BCELoss(_Loss):
    """``BCELoss(reduction='mean', eps=1e-7)`` on probabilities."""
    _fn = staticmethod(L.binary_cross_entropy)

    def __init__(self, reduction="mean", eps=1e-7):
        super().__init__(reduction=reduction, eps=eps)


class BCEWithLogitsLoss(_Loss):
    """``BCEWithLogitsLoss(reduction='mean')`` on logits (stable)."""
    _fn = staticmethod(L.binary_cross_entropy_with_logits)

    def __init__(self, reduction="mean"):
        super().__init__(reduction=reduction)


class MultiLabelBCELoss(_Loss):
    """``MultiLabelBCELoss(from_logits=True)``: seed 003's summed-over-outputs, averaged-over-examples BCE."""
    _fn = staticmethod(L.multilabel_bce)

    def __init__(self, from_logits=True):
        super().__init__(from_logits=from_logits)
