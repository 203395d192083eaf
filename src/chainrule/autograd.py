"""The graph and the backward pass.

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
"""
from __future__ import annotations

import heapq
import itertools
from contextlib import contextmanager

import numpy as np

__all__ = [
    "Node", "RowSparseGrad", "unbroadcast", "run_backward", "no_grad", "enable_grad",
    "is_grad_enabled", "record_deltas", "record_forward", "Deltas", "detect_anomaly",
]


class _State:
    __slots__ = ("grad_enabled", "anomaly", "deltas", "forward")

    def __init__(self):
        self.grad_enabled = True
        self.anomaly = False
        self.deltas = None   # a Deltas while record_deltas() is active
        self.forward = False  # True while record_forward() is active


STATE = _State()
_SEQ = itertools.count()


class Node:
    """One recorded application of an op: what backward needs and nothing more.

    ``parents[i]`` is the parent's Node, or the leaf Tensor itself, or None when input ``i`` needs
    no gradient (a constant, or a tensor that does not require grad).  The output tensor is *not*
    referenced, so intermediate values the backward rule does not need are freed as soon as the user
    drops them.
    """
    __slots__ = ("seq", "op", "parents", "saved", "needs", "shape", "dtype", "name", "hooks",
                 "nonfinite",      # set (only) by note_forward under detect_anomaly
                 "fwd")            # (output, input arrays, keyword params): set under record_forward()

    def __init__(self, op, parents, saved, needs, shape, dtype):
        self.seq = next(_SEQ)
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


# ----------------------------------------------------------------------------------------------
# Row-sparse gradients (embedding tables)
# ----------------------------------------------------------------------------------------------
class RowSparseGrad:
    """Gradient of a table of which only some rows were used: ``dense[indices[k]] += values[k]``.

    Produced by :func:`chainrule.take` with ``sparse=True`` (what ``nn.Embedding`` uses) for a leaf
    table, so a 100,000 x 50 table touched by 200 rows gets a 200 x 50 gradient.  Indices may repeat
    until :meth:`coalesce` sums them.  ``np.asarray(g)`` and :meth:`to_dense` give the dense array.
    """
    __slots__ = ("indices", "values", "shape")

    def __init__(self, indices, values, shape):
        self.indices = np.asarray(indices, dtype=np.intp).reshape(-1)
        self.values = values.reshape((self.indices.shape[0],) + tuple(shape[1:]))
        self.shape = tuple(shape)

    @property
    def dtype(self):
        return self.values.dtype

    @property
    def ndim(self):
        return len(self.shape)

    def _wrapped(self):
        """The indices with negative ones wrapped into 0..n-1."""
        idx = self.indices
        if idx.size and idx.min() < 0:
            idx = np.where(idx < 0, idx + self.shape[0], idx)
        return idx

    def coalesce(self):
        """Sum repeated rows (negative indices wrapped first); returns a RowSparseGrad with unique,
        sorted indices.  A stable sort, then one ``np.add.reduceat`` over the runs of equal indices."""
        idx = self._wrapped()
        order = np.argsort(idx, kind="stable")
        sidx = idx[order]
        vals = self.values[order]
        if sidx.size < 2 or np.all(sidx[1:] != sidx[:-1]):
            return RowSparseGrad(sidx, vals, self.shape)
        starts = np.flatnonzero(np.concatenate(([True], sidx[1:] != sidx[:-1])))
        return RowSparseGrad(sidx[starts], np.add.reduceat(vals, starts, axis=0), self.shape)

    def _summed(self):
        """``(indices, values)`` with every row once: as they are when the rows are already distinct
        (one sort tells, and nothing is copied), else :meth:`coalesce`'s.  What lets a scatter be one
        fancy-indexed assignment or add instead of ``np.add.at``, several times slower per row."""
        idx = self._wrapped()
        s = np.sort(idx)
        if s.size < 2 or (s[1:] != s[:-1]).all():
            return idx, self.values
        c = self.coalesce()
        return c.indices, c.values

    def add_to(self, out):
        """``out[indices[k]] += values[k]`` for every k, in place; returns ``out``."""
        idx, vals = self._summed()
        out[idx] += vals
        return out

    def to_dense(self):
        """The dense array: zeros with the rows written in (repeats summed)."""
        out = np.zeros(self.shape, dtype=self.values.dtype)
        idx, vals = self._summed()
        out[idx] = vals
        return out

    def __array__(self, dtype=None, copy=None):
        d = self.to_dense()
        return d if dtype is None else d.astype(dtype)

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, idx):
        """Index as the dense gradient would be: ``g[i]`` is row i's total gradient (zeros for an
        untouched row) computed from the rows alone; other indices go through :meth:`to_dense`."""
        key = idx[0] if isinstance(idx, tuple) and idx else idx
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            n = self.shape[0]
            if not -n <= key < n:
                raise IndexError(f"RowSparseGrad: row {key} out of range for shape {self.shape}")
            sel = self._wrapped() == key % n
            row = self.values[sel].sum(axis=0) if sel.any() else np.zeros(self.shape[1:], self.values.dtype)
            return row[idx[1:]] if isinstance(idx, tuple) else row
        return self.to_dense()[idx]

    def numpy(self):
        """The dense array (as ``np.asarray(g)``)."""
        return self.to_dense()

    def astype(self, dtype):
        return RowSparseGrad(self.indices, self.values.astype(dtype), self.shape)

    def __mul__(self, s):
        return RowSparseGrad(self.indices, self.values * s, self.shape)

    __rmul__ = __mul__

    def __repr__(self):
        return f"RowSparseGrad(rows={self.indices.shape[0]}, shape={self.shape}, dtype={self.dtype})"


def accumulate(a, b):
    """a + b for dense arrays and RowSparseGrads (a new object; neither argument is modified)."""
    ta, tb = type(a) is RowSparseGrad, type(b) is RowSparseGrad
    if not ta and not tb:
        return a + b
    if ta and tb:
        return RowSparseGrad(np.concatenate([a.indices, b.indices]),
                             np.concatenate([a.values, b.values]), a.shape)
    dense, sp = (b, a) if ta else (a, b)
    return sp.add_to(np.array(dense, copy=True))


# ----------------------------------------------------------------------------------------------
# The one place broadcasting is undone
# ----------------------------------------------------------------------------------------------
def unbroadcast(g, shape):
    """Sum ``g`` over the axes along which an input of ``shape`` was broadcast to ``g.shape``.

    If y = broadcast(x) then x̄ = Σ over the broadcast axes of ȳ: leading axes that x lacks, and
    axes where x has size 1 and y does not.
    """
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    if extra < 0:
        raise ValueError(f"unbroadcast: gradient of shape {g.shape} cannot belong to an input of shape {shape}")
    if extra:
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


@contextmanager
def detect_anomaly():
    """Make backward raise ``FloatingPointError`` at the first NaN/Inf gradient, naming the op
    (and the tensor name, if it has one) whose backward rule produced it.

    Ops *recorded* inside the block are also checked on the forward side: an op that turns finite
    inputs into NaN/Inf (log of a negative number, exp overflow) is named by backward as soon as a
    gradient reaches it -- its own rule may well be finite (d log x = g/x at x = −1) while the NaN
    shows up first in a consumer's rule."""
    prev = STATE.anomaly
    STATE.anomaly = True
    try:
        yield
    finally:
        STATE.anomaly = prev


def note_forward(node, out, inputs):
    """detect_anomaly, forward side: flag ``node`` if its op made NaN/Inf out of finite inputs."""
    if out.dtype.kind not in "fc" or np.isfinite(out).all():
        return
    for d in inputs:
        if isinstance(d, (np.ndarray, float, np.floating)) and np.asarray(d).dtype.kind in "fc" \
                and not np.isfinite(d).all():
            return                                  # NaN/Inf came in: not this op's doing
    node.nonfinite = "NaN" if np.isnan(out).any() else "Inf"


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
        g = g.to_dense() if type(g) is RowSparseGrad else np.array(g, copy=True)
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
    try:
        yield d
    finally:
        STATE.deltas = prev


# ----------------------------------------------------------------------------------------------
# Backward
# ----------------------------------------------------------------------------------------------
_FREED = ("backward: the graph through {what} was already freed by an earlier backward pass. "
          "Call backward(retain_graph=True) the first time if you need to backprop through it twice.")


def run_backward(root_node, seed, retain_graph=False, capture=None):
    """Backpropagate ``seed`` = ∂out/∂(root's value) through the graph under ``root_node``.

    Nodes are expanded in decreasing sequence number (reverse construction order, a heap), so each
    node's gradient is complete -- every consumer has added its share -- before its backward rule runs.

    Without ``capture`` the gradients reaching leaf tensors are added to their ``.grad``.  With
    ``capture`` (a dict mapping Node or id(leaf) -> None) nothing's ``.grad`` is touched: the
    gradients of the captured nodes/leaves are written into the dict and returned.
    """
    state = STATE
    anomaly = state.anomaly
    deltas = state.deltas
    grads = {root_node: seed}
    heap = [(-root_node.seq, root_node)]
    leaf = {}                      # id(tensor) -> [tensor, grad, owned]
    owned = set()                  # nodes whose entry in grads is a sum this pass made (only it holds it)
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        node = pop(heap)[1]
        g = grads.pop(node)
        if node.hooks:
            for h in node.hooks:
                r = h(g)
                if r is not None:
                    g = r
        if deltas is not None:
            deltas._record(node, node.name, node.op.name, g)
        if capture is not None and node in capture:
            capture[node] = g
        parents = node.parents
        if parents is None:
            raise RuntimeError(_FREED.format(what=describe(node)))
        if anomaly:
            _check_forward(node)
        outs = node.op.backward(g, node.saved, node.needs)
        for p, gi in zip(parents, outs):
            if p is None or gi is None:
                continue
            if type(p) is Node:
                if gi.shape != p.shape:
                    gi = unbroadcast(gi, p.shape)
                if gi.dtype != p.dtype:
                    gi = gi.astype(p.dtype)
                if anomaly:
                    _check_forward(p)
                    _check_finite(gi, node, parents.index(p))
                if type(gi) is RowSparseGrad:
                    gi = gi.to_dense()
                if p in grads:
                    if p in owned:                # made by this pass's own sum: add in place
                        grads[p] += gi
                    else:
                        grads[p] = accumulate(grads[p], gi)
                        owned.add(p)
                else:
                    grads[p] = gi
                    push(heap, (-p.seq, p))
            else:
                d = p.data
                if gi.shape != d.shape:
                    gi = unbroadcast(gi, d.shape)
                if gi.dtype != d.dtype:
                    gi = gi.astype(d.dtype)
                if anomaly:
                    _check_finite(gi, node, parents.index(p))
                k = id(p)
                ent = leaf.get(k)
                if ent is None:
                    leaf[k] = [p, gi, _fresh(gi, g, outs)]
                elif ent[2] and type(ent[1]) is np.ndarray and type(gi) is not RowSparseGrad:
                    ent[1] += gi
                else:
                    ent[1] = accumulate(ent[1], gi)
                    ent[2] = True
        if not retain_graph:
            node.parents = None
            node.saved = None
    for k, (t, g, owned) in leaf.items():
        if t._hooks:
            for h in t._hooks:
                r = h(g)
                if r is not None:
                    g, owned = r, False
        if deltas is not None:
            deltas._record(k, t.name, "leaf", g)
        if capture is not None:
            if k in capture:
                capture[k] = g
            continue
        if t.grad is None:
            t.grad = g if owned else (g.copy() if type(g) is not RowSparseGrad
                                      else RowSparseGrad(g.indices.copy(), g.values.copy(), g.shape))
        elif type(t.grad) is np.ndarray and type(g) is not RowSparseGrad:
            t.grad += g
        else:
            t.grad = accumulate(t.grad, g)
    return capture


def _fresh(gi, g, outs):
    """Whether a rule's output ``gi`` is an array nobody else holds, so the pass may add into it in
    place: not the incoming gradient ``g``, not a view of another array, and not returned twice by
    the rule (``outs``)."""
    arr = gi.values if type(gi) is RowSparseGrad else gi
    if gi is g or arr.base is not None:
        return False
    return len(outs) == 1 or sum(o is gi for o in outs) == 1


def _check_forward(node):
    kind = getattr(node, "nonfinite", None)       # the slot is unset unless note_forward flagged it
    if kind is not None:
        raise FloatingPointError(
            f"detect_anomaly: {describe(node)} produced {kind} in its forward pass from finite inputs "
            f"(output shape {node.shape}); the gradient through it is meaningless")


def _check_finite(gi, node, i):
    vals = gi.values if type(gi) is RowSparseGrad else gi
    if not np.all(np.isfinite(vals)):
        kind = "NaN" if np.isnan(vals).any() else "Inf"
        raise FloatingPointError(
            f"detect_anomaly: the backward rule of {describe(node)} produced {kind} in the gradient "
            f"of its input {i} (output shape {node.shape})")


# ----------------------------------------------------------------------------------------------
# Functional gradients
# ----------------------------------------------------------------------------------------------
def gradients(output, inputs, grad_output=None, retain_graph=False):
    """∂output/∂input for each tensor in ``inputs`` (leaves or intermediate tensors), returned as a
    list of arrays (zeros where an input does not influence the output).  No ``.grad`` is touched."""
    from .tensor import Tensor, _seed
    single = isinstance(inputs, Tensor)
    inputs = [inputs] if single else list(inputs)
    if not output.requires_grad:
        raise RuntimeError("gradients: the output does not depend on any tensor that requires grad")
    seed = _seed(output, grad_output)
    keys = [t._node if t._node is not None else id(t) for t in inputs]
    if output._node is None:
        got = {id(output): seed}
    else:
        got = run_backward(output._node, seed, retain_graph, capture=dict.fromkeys(keys))
    res = []
    handed = {id(seed)}            # add passes one array to both inputs; the seed is the caller's
    for t, k in zip(inputs, keys):
        g = got.get(k)
        if g is None:
            g = np.zeros(t.shape, dtype=t.dtype)
        elif type(g) is RowSparseGrad:
            g = g.to_dense()
        elif g.base is not None or not g.flags.writeable or id(g) in handed:
            g = np.array(g)
        handed.add(id(g))
        res.append(g)
    return res[0] if single else res


def _grad_impl(f, argnums, with_value):
    from .tensor import Tensor

    def wrapped(*args, **kwargs):
        nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
        args = list(args)
        leaves = []
        for i in nums:
            a = args[i]
            arr = a.data if isinstance(a, Tensor) else np.asarray(a)
            if arr.dtype.kind not in "fc":
                arr = arr.astype(np.float64)
            t = Tensor._wrap(arr, requires_grad=True)
            args[i] = t
            leaves.append(t)
        with enable_grad():
            out = f(*args, **kwargs)
        if not isinstance(out, Tensor) or out.data.size != 1:
            raise TypeError(f"grad: the function must return a scalar tensor, got "
                            f"{type(out).__name__}{' of shape ' + str(out.shape) if isinstance(out, Tensor) else ''}")
        gs = gradients(out, leaves) if out.requires_grad else [np.zeros_like(t.data) for t in leaves]
        g = gs[0] if isinstance(argnums, int) else tuple(gs)
        return (out.item(), g) if with_value else g
    wrapped.__name__ = f"grad_{getattr(f, '__name__', 'f')}"
    wrapped.__doc__ = f"Gradient of {getattr(f, '__name__', 'f')} with respect to argument(s) {argnums}."
    return wrapped


def grad(f, argnums=0):
    """``grad(f)(*args)`` = ∂f/∂args[argnums] as an ndarray (a tuple for several argnums).
    ``f`` must return a scalar tensor.  Nothing's ``.grad`` is modified."""
    return _grad_impl(f, argnums, False)


def value_and_grad(f, argnums=0):
    """Like :func:`grad` but returns ``(f(*args) as a float, gradient)``."""
    return _grad_impl(f, argnums, True)
