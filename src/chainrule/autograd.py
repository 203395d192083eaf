"""The graph and the backward pass -- nothing else.

A value computed from tensors that require gradients records a :class:`Node`: the op that made it,
its parents (the nodes or leaf tensors it was computed from), what the op saved for its backward
rule, and a sequence number.  Sequence numbers grow with construction order, so construction order is
a topological order of the graph: backward pops nodes from a heap in decreasing sequence number, which
visits every node after all of its consumers -- the *distributed chain rule* of the lecture notes,

    dDiv/dx = sum_k  dDiv/dg_k * dg_k/dx,

is the accumulation of one gradient per consumer before the node is expanded.  No graph walk here
recurses, so a chain of a million ops backprops with a constant Python stack.

Broadcasting is undone in exactly one place, :func:`unbroadcast`, called by the backward loop for
every parent whose gradient came back with the op's (broadcast) shape instead of its own.

This module owns: :class:`Node`, grad mode (:func:`no_grad`, :func:`enable_grad`), :func:`unbroadcast`
and :func:`run_backward`.  Below it is only :mod:`chainrule.sparse`; the observers (``detect_anomaly``,
``record_deltas``) live in :mod:`chainrule.debug`, the function transforms in
:mod:`chainrule.transforms`.
"""
from __future__ import annotations

import gc
import heapq
import itertools
import weakref
from contextlib import contextmanager

import numpy as np

from .sparse import RowSparseGrad, accumulate, add_grad, deposit, keep_first  # noqa: F401  (RowSparseGrad, accumulate: old import paths)

__all__ = ["Node", "RowSparseGrad", "unbroadcast", "run_backward", "no_grad", "enable_grad",
           "is_grad_enabled", "STATE"]


class _State:
    """The engine's switches.  ``watch`` is true while any of ``anomaly``, ``forward`` and
    ``tangents`` is on, so that the per-op hot path (:func:`chainrule.tensor.apply`) tests one
    attribute instead of three; the three are properties that keep it up to date."""
    __slots__ = ("grad_enabled", "deltas", "observer", "edited", "watch", "_anomaly", "_forward", "_tangents")

    def __init__(self):
        self.grad_enabled = True
        self.deltas = None     # a Deltas while record_deltas() is active
        self.observer = None   # a debug.Observer while detect_anomaly() or record_deltas() is active
        self.edited = False    # some tensor was modified in place since import (version checks on)
        self._anomaly = False  # detect_anomaly: the forward notes non-finite values
        self._forward = False  # record_forward (explain): nodes keep their forward values
        self._tangents = ()    # the active forward-mode levels inside cr.jvp (see chainrule.forward)
        self.watch = False

    def _switch(name):
        def get(self):
            return getattr(self, name)

        def set(self, value):
            setattr(self, name, value)
            self.watch = bool(self._anomaly or self._forward or self._tangents)
        return property(get, set)

    anomaly, forward, tangents = _switch("_anomaly"), _switch("_forward"), _switch("_tangents")
    del _switch


STATE = _State()
_SEQ = itertools.count()


class _GcGuard:
    """Python's cyclic garbage collector and big graphs.

    A graph is millions of small tracked objects (nodes, tensors, tuples) that stay alive until
    backward frees them, and the collector's full (generation-2) passes traverse every one of them
    again and again while the graph grows (measured: ~57-71% of the forward of a 1e6-op chain).
    The graph has no reference cycles of its own, so those passes find nothing to free.  Every
    65,536 nodes the engine raises the generation-2 threshold (to at least 1000 generation-1
    collections, i.e. millions of allocations) and puts the caller's thresholds back when a backward
    pass has freed its graph -- or when the node that raised it is freed, so a big graph dropped
    without backward (an evaluation with gradients on, an exception) does not leave the collector
    slowed for the rest of the process.  Generations 0 and 1 still run: cyclic garbage is still
    collected.  ``benchmarks/scaling.py --gc`` measures the chain with the collector on and off."""
    saved = None
    EVERY = 1 << 16
    _token = None          # identifies the raise a node's finalizer may undo (not a later one)

    @classmethod
    def grow(cls, node):
        if cls.saved is None:
            t = gc.get_threshold()
            if t[0] > 0:                       # the collector's thresholds are the caller's to keep
                cls.saved = t
                cls._token = token = object()
                gc.set_threshold(t[0], t[1], max(t[2], 1000))
                weakref.finalize(node, cls.release, token)

    @classmethod
    def release(cls, token=None):
        if token is not None and token is not cls._token:
            return                             # a finalizer of an earlier raise, already undone
        t, cls.saved = cls.saved, None
        if t is not None:
            gc.set_threshold(*t)


class Node:
    """One recorded application of an op: what backward needs and nothing more.

    ``parents[i]`` is the parent's Node, or the leaf Tensor itself, or None when input ``i`` needs
    no gradient (a constant, or a tensor that does not require grad).  The output tensor is *not*
    referenced, so intermediate values the backward rule does not need are freed as soon as the user
    drops them.  ``saved`` is the tuple of values the op's backward rule takes after ``(g, needs)``.
    """
    __slots__ = ("seq", "op", "parents", "saved", "needs", "shape", "dtype", "name", "hooks", "__weakref__",
                 "nonfinite",      # set (only) by note_forward under detect_anomaly
                 "fwd",            # set (only) under record_forward: (out, inputs, params)
                 "edited",         # set (only) when the output tensor is modified in place: a seq number
                 "tangent")        # set (only) inside cr.jvp: the output's tangents (chainrule.forward)

    def __init__(self, op, parents, saved, needs, shape, dtype):
        seq = self.seq = next(_SEQ)
        if not seq & 0xFFFF:                   # a big graph: see _GcGuard
            _GcGuard.grow(self)
        self.op = op
        self.parents = parents
        self.saved = saved
        self.needs = needs
        self.shape = shape
        self.dtype = dtype
        self.name = None
        self.hooks = None

    def __lt__(self, other):       # heap tie-break; sequence numbers are unique, never reached
        return self.seq < other.seq

    def __repr__(self):
        nm = f" '{self.name}'" if self.name else ""
        return f"<Node #{self.seq} {self.op.name}{nm} {self.shape}>"


def describe(node_or_leaf):
    """'op' (or 'op' 'name') for error messages."""
    if type(node_or_leaf) is Node:
        n = node_or_leaf
        return f"op '{n.op.name}'" + (f" (tensor '{n.name}')" if n.name else "")
    name = getattr(node_or_leaf, "name", None)
    return "leaf tensor" + (f" '{name}'" if name else "")


_add_reduce = np.add.reduce          # = ndarray.sum without its Python wrapper (the same bits)


# ----------------------------------------------------------------------------------------------
# The one place broadcasting is undone
# ----------------------------------------------------------------------------------------------
def unbroadcast(g, shape):
    """Sum ``g`` over the axes along which an input of ``shape`` was broadcast to ``g.shape``.

    If y = broadcast(x) then x̄ = Σ over the broadcast axes of ȳ: leading axes that x lacks, and
    axes where x has size 1 and y does not.
    """
    gs = g.shape
    if gs == shape:
        return g
    extra = len(gs) - len(shape)
    if extra < 0:
        raise ValueError(f"unbroadcast: gradient of shape {g.shape} cannot belong to an input of shape {shape}")
    if extra:
        if gs[extra:] == shape and type(g) is np.ndarray:      # only leading axes (a bias): one reduction
            return _add_reduce(g, axis=0 if extra == 1 else tuple(range(extra)))
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    if g.shape != shape:
        raise ValueError(f"unbroadcast: gradient of shape {g.shape} cannot belong to an input of shape {shape}")
    return g


# ----------------------------------------------------------------------------------------------
# Modes
# ----------------------------------------------------------------------------------------------
@contextmanager
def no_grad():
    """Within this block operations record no graph (inference, optimizer updates)."""
    prev = STATE.grad_enabled
    STATE.grad_enabled = False
    try:
        yield
    finally:
        STATE.grad_enabled = prev


@contextmanager
def enable_grad():
    prev = STATE.grad_enabled
    STATE.grad_enabled = True
    try:
        yield
    finally:
        STATE.grad_enabled = prev


def is_grad_enabled():
    return STATE.grad_enabled




def mark_edited(t):
    """Record that tensor ``t``'s values were modified in place (the version counter): a node recorded
    before now that saved ``t`` for its backward rule refuses to run (see :func:`run_backward`)."""
    stamp = next(_SEQ)
    if t._node is not None:
        t._node.edited = stamp
    else:
        t._version = stamp
    STATE.edited = True


# ----------------------------------------------------------------------------------------------
# Backward
# ----------------------------------------------------------------------------------------------
_FREED = ("backward: the graph through {what} was already freed by an earlier backward pass. "
          "Call backward(retain_graph=True) the first time if you need to backprop through it twice.")


def run_backward(root_node, seed, retain_graph=False, capture=None, graph=None):
    """Backpropagate ``seed`` = ∂out/∂(root's value) through the graph under ``root_node``.

    Nodes are expanded in decreasing sequence number (reverse construction order: a heap, bypassed
    when the node reached first is the next anyway, as along a chain), so each node's gradient is
    complete -- every consumer has added its share -- before its backward rule runs.
    Leaves are accumulated exactly like nodes (one ``grads`` entry each) and finished after the loop.

    Accumulation follows :func:`chainrule.sparse.add_grad` (the first gradient reaching a node or
    leaf is kept as it is; the pass adds in place only into an array it made itself) and a leaf's
    finished gradient reaches ``.grad`` through :func:`chainrule.sparse.deposit`.

    Without ``capture`` the gradients reaching leaf tensors are added to their ``.grad``.  With
    ``capture`` (a dict whose keys are Nodes or leaf Tensors) nothing's ``.grad`` is touched: the
    gradients of the captured nodes/leaves are written into the dict and returned.

    ``graph`` (create_graph): an object whose ``backward(node, g)`` runs the node's rule on tensors
    (recording a graph of the backward pass itself); the gradients are then Tensors.
    """
    obs = STATE.observer
    checked = STATE.edited or graph is not None    # version checks (some tensor was edited in place)
    watched = obs is not None or capture is not None or checked     # per-node extras, off the fast path
    grads = {root_node: seed}      # Node or leaf Tensor -> its gradient so far
    owned = set()                  # those whose gradient is an array this pass made (may add in place)
    heap = []                      # (-seq, node): reached nodes waiting for the rest of their consumers
    leaves = []
    pop, push, pushpop = heapq.heappop, heapq.heappush, heapq.heappushpop
    node = root_node
    while node is not None:
        g = grads.pop(node)
        if node.hooks:
            g = _run_hooks(node, node.hooks, g, obs)
        parents = node.parents
        if watched:
            _watch(node, g, obs, capture, checked)
        if parents is None:
            raise RuntimeError(_FREED.format(what=describe(node)))
        op = node.op
        into = op.into
        if graph is not None:
            outs = graph.backward(node, g)
        elif into is not None and obs is None and parents[0] in owned \
                and into(grads[parents[0]], g, *node.saved):
            outs = ()                  # x[i] for many i of one x: added into x's own buffer, not a dense x̄ each
        else:
            outs = op.backward(g, node.needs, *node.saved)
        nxt = None                     # the first node this one reached for the first time
        for p, gi in zip(parents, outs):
            if p is None or gi is None:
                continue
            if gi.shape != p.shape:
                gi = unbroadcast(gi, p.shape)
            dt = p.dtype
            if gi.dtype is not dt and gi.dtype != dt:
                gi = gi.astype(dt) if graph is None else graph.cast(gi, dt)
            if obs is not None:
                obs.edge(node, parents.index(p), p, gi)
            if p in grads:
                if p in owned and type(gi) is np.ndarray:
                    grads[p] += gi     # add_grad's in-place case, inline: a weight used at every step
                else:
                    add_grad(grads, owned, p, gi)
            else:                      # the first contribution: sparse.keep_first
                if type(p) is not Node:
                    leaves.append(p)
                    keep_first(grads, owned, p, gi, g, outs, True)
                    continue
                if into is None:
                    grads[p] = gi      # keep_first's plain case, inline (not ownable)
                else:
                    keep_first(grads, owned, p, gi, g, outs, True)   # x[i]'s dense x̄: the next x[j] adds into it
                if nxt is None:
                    nxt = p
                else:
                    push(heap, (-p.seq, p))
        if not retain_graph:
            node.parents = None
            node.saved = None
        # next: the reached node of largest sequence number; a chain never touches the heap
        if nxt is not None:
            node = pushpop(heap, (-nxt.seq, nxt))[1] if heap else nxt
        else:
            node = pop(heap)[1] if heap else None
    for t in leaves:
        g = grads.pop(t)
        mine = t in owned
        if t._hooks:
            h = _run_hooks(t, t._hooks, g, obs)
            if h is not g:
                g, mine = h, False
        if obs is not None:
            obs.reached(id(t), t, g)
        if capture is not None:
            if t in capture:
                capture[t] = g
            continue
        deposit(t, g, mine)
    if not retain_graph and _GcGuard.saved is not None:
        _GcGuard.release()
    return capture


def _watch(node, g, obs, capture, checked):
    """The per-node extras of a backward pass: the observer, captured gradients, version checks."""
    if obs is not None:
        obs.reached(node, node, g)
    if capture is not None and node in capture:
        capture[node] = g
    if checked and STATE.edited and node.parents is not None:
        _check_versions(node)


def _run_hooks(owner, hooks, g, obs):
    for h in hooks:
        r = h(g)
        if r is not None:
            if obs is not None:
                obs.hooked(owner, h, g, r)
            g = r
    return g


def _check_versions(node):
    """The version counter: refuse to run a rule whose saved input (or output) was modified in place
    after the op was recorded -- its gradient would silently use the new values."""
    parents = node.parents
    for what in node.op.plan:
        if what == "ans":
            cands = ((node, "its output"),)
        elif type(what) is int:
            cands = ((parents[what], f"its input {what}"),) if what < len(parents) else ()
        elif type(what) is tuple:
            cands = tuple((p, f"its input {what[1] + j}") for j, p in enumerate(parents[what[1]:]))
        else:
            continue
        for p, whose in cands:
            if p is None:
                continue
            stamp = getattr(p, "edited", None) if type(p) is Node else getattr(p, "_version", None)
            if stamp and stamp > node.seq:
                who = "" if p is node else f" ({describe(p)})"
                raise RuntimeError(
                    f"backward: {whose}{who} of {describe(node)} was modified in place after the op was "
                    f"recorded (its version changed), so the gradient would use the new values. Modify a "
                    f"copy, or run the forward pass again after the change.")


# Old import paths (``chainrule.autograd.record_deltas`` etc.): these moved to debug.py and
# transforms.py, which import this module -- so they are looked up lazily, on first use.
_MOVED = {"detect_anomaly": "debug", "record_deltas": "debug", "record_forward": "debug", "Deltas": "debug",
          "note_forward": "debug", "gradients": "transforms", "grad": "transforms",
          "value_and_grad": "transforms", "accumulate": "sparse"}


def __getattr__(name):
    mod = _MOVED.get(name)
    if mod is None:
        raise AttributeError(f"module 'chainrule.autograd' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f"chainrule.{mod}"), name)
