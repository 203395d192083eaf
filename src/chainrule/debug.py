"""Observers of the backward pass: :func:`detect_anomaly` and :func:`record_deltas`.

Neither changes what backward computes.  Both set a flag in :data:`chainrule.autograd.STATE`; the
backward loop then hands every gradient it completes (:meth:`Observer.reached`) and every gradient it
passes along an edge (:meth:`Observer.edge`) to one optional :class:`Observer`.  Without either
block the loop runs with ``observer = None`` and pays nothing.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from .autograd import STATE, describe
from .sparse import RowSparseGrad

__all__ = ["detect_anomaly", "record_deltas", "record_forward", "Deltas", "Observer", "note_forward"]


class Observer:
    """What the backward loop calls when ``detect_anomaly`` or ``record_deltas`` is active."""
    __slots__ = ("anomaly", "deltas")

    def __init__(self, anomaly, deltas):
        self.anomaly, self.deltas = anomaly, deltas

    def reached(self, key, node_or_leaf, g):
        """The gradient ``g`` of a node or leaf is complete (all consumers summed, hooks applied)."""
        if self.deltas is not None:
            name = getattr(node_or_leaf, "name", None)
            op = node_or_leaf.op.name if hasattr(node_or_leaf, "op") else "leaf"
            self.deltas._record(key, name, op, g)
        if self.anomaly and hasattr(node_or_leaf, "op"):
            _check_forward(node_or_leaf)

    def edge(self, node, i, parent, gi):
        """``node``'s backward rule gave ``gi`` for its input ``i`` (``parent``)."""
        if self.anomaly:
            if hasattr(parent, "op"):
                _check_forward(parent)
            _check_finite(gi, node, i)

    def hooked(self, owner, hook, g_in, g_out):
        """A hook registered on ``owner`` turned ``g_in`` into ``g_out``: blame the hook, not an op."""
        if self.anomaly and _finite(g_in) and not _finite(g_out):
            kind = "NaN" if np.isnan(_values(g_out)).any() else "Inf"
            raise FloatingPointError(
                f"detect_anomaly: the hook {getattr(hook, '__qualname__', repr(hook))} registered on "
                f"{describe(owner)} returned {kind} from a finite gradient (shape {np.shape(_values(g_in))})")


def _refresh():
    STATE.observer = Observer(STATE.anomaly, STATE.deltas) if (STATE.anomaly or STATE.deltas is not None) \
        else None


def _values(g):
    if type(g) is RowSparseGrad:
        return g.values
    return getattr(g, "data", g) if not isinstance(g, np.ndarray) else g


def _finite(g):
    v = np.asarray(_values(g))
    return v.dtype.kind not in "fc" or bool(np.isfinite(v).all())


@contextmanager
def detect_anomaly():
    """Make backward raise ``FloatingPointError`` at the first NaN/Inf gradient, naming the op
    (and the tensor name, if it has one) whose backward rule produced it -- or the hook, when a hook
    registered with ``register_hook`` turned a finite gradient into NaN/Inf.

    Ops *recorded* inside the block are also checked on the forward side: an op that turns finite
    inputs into NaN/Inf (log of a negative number, exp overflow) is named by backward as soon as a
    gradient reaches it -- its own rule may well be finite (d log x = g/x at x = −1) while the NaN
    shows up first in a consumer's rule."""
    prev = STATE.anomaly
    STATE.anomaly = True
    _refresh()
    try:
        yield
    finally:
        STATE.anomaly = prev
        _refresh()


def note_forward(node, out, inputs):
    """detect_anomaly, forward side: flag ``node`` if its op made NaN/Inf out of finite inputs."""
    if out.dtype.kind not in "fc" or np.isfinite(out).all():
        return
    for d in inputs:
        if isinstance(d, (np.ndarray, float, np.floating)) and np.asarray(d).dtype.kind in "fc" \
                and not np.isfinite(d).all():
            return                                  # NaN/Inf came in: not this op's doing
    node.nonfinite = "NaN" if np.isnan(out).any() else "Inf"


def _check_forward(node):
    kind = getattr(node, "nonfinite", None)       # the slot is unset unless note_forward flagged it
    if kind is not None:
        raise FloatingPointError(
            f"detect_anomaly: {describe(node)} produced {kind} in its forward pass from finite inputs "
            f"(output shape {node.shape}); the gradient through it is meaningless")


def _check_finite(gi, node, i):
    vals = np.asarray(_values(gi))
    if not np.all(np.isfinite(vals)):
        kind = "NaN" if np.isnan(vals).any() else "Inf"
        raise FloatingPointError(
            f"detect_anomaly: the backward rule of {describe(node)} produced {kind} in the gradient "
            f"of its input {i} (output shape {node.shape})")


class Deltas:
    """The gradients of the backward pass's output with respect to every tensor it went through
    (the δ's of the derivations).  Index by tensor (``deltas[h]``) or by name (``deltas['h1']``).

    Each entry is a copy taken when the gradient of that tensor was complete (all consumers summed).
    """

    def __init__(self):
        self._by_key = {}      # Node or leaf Tensor id -> array
        self._by_name = {}
        self._order = []       # (label, array) in backward order

    def _record(self, key, name, opname, g):
        if type(g) is RowSparseGrad:
            g = g.to_dense()
        else:
            g = np.array(getattr(g, "data", g) if not isinstance(g, np.ndarray) else g, copy=True)
        self._by_key[key] = g
        if name:
            self._by_name[name] = g
        self._order.append((name or opname, g))

    def __getitem__(self, key):
        if isinstance(key, str):
            try:
                return self._by_name[key]
            except KeyError:
                raise KeyError(f"record_deltas: no tensor named {key!r} took part in the backward pass; "
                               f"named ones: {sorted(self._by_name)}") from None
        node = getattr(key, "_node", None)
        k = node if node is not None else id(key)
        try:
            return self._by_key[k]
        except KeyError:
            raise KeyError("record_deltas: this tensor took no part in the recorded backward pass") from None

    def __contains__(self, key):
        try:
            self[key]
            return True
        except KeyError:
            return False

    def names(self):
        return list(self._by_name)

    def items(self):
        """(name or op name, delta) in the order backward produced them (output first)."""
        return list(self._order)

    def __len__(self):
        return len(self._order)


@contextmanager
def record_deltas():
    """Record δ = ∂out/∂t for every tensor t of the next backward passes inside the block::

        with cr.record_deltas() as deltas:
            loss.backward()
        deltas['h1']      # ∂loss/∂h1
    """
    prev = STATE.deltas
    d = Deltas()
    STATE.deltas = d
    _refresh()
    try:
        yield d
    finally:
        STATE.deltas = prev
        _refresh()


@contextmanager
def record_forward():
    """Nodes recorded inside the block keep their forward values: ``node.fwd = (output, input
    arrays, keyword parameters)`` -- what :func:`chainrule.explain` needs to write and check a
    derivation (it evaluates each printed equation from these values).  Costs the memory of every
    intermediate, so use it for explaining and checking, not for training."""
    prev = STATE.forward
    STATE.forward = True
    try:
        yield
    finally:
        STATE.forward = prev
