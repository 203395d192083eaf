"""A node table for level-batched trees and DAGs: rows written once, level by level, gathered by
later levels, backpropagated in time linear in the number of rows.

Batching a tree by level (TensorFlow Fold, DyNet's autobatching) keeps every node's vector in one
table: level h gathers the vectors of its children -- rows written by earlier levels -- computes its
own vectors in one batched op, and appends them.  Appending by ``concat`` copies the whole table at
every level, and the VJP of a ``take`` from it is a dense array of the whole table's size: both are
quadratic in the depth (a 1e5-deep tree never finishes).  :class:`NodeTable` is what a hand-written
level loop does instead: one preallocated buffer ``T`` that each level writes its rows into, and
during backward one gradient buffer ``G`` that each level's gather scatters into, so every row is
written, read and backpropagated once:

    write(start, x):   T[start:start+n] = x                  |  x̄ = G[start:start+n]
    gather(idx):       z = T[idx]                            |  G[idx] += g
    read():            z = T (the whole table)               |  G += g
    level(start, idx, op, *w):  T[start:start+n] = op(T[idx] joined, *w)   |  op's rule on
                       G[start:start+n], its first gradient added into G[idx], the others to w
    levels(schedule, op, *w):   level() for every level of a LevelSchedule, in order   |   per
                       level top down, op's rule for the children only; w's gradients once over
                       the rows of all levels (op's RowRule: one GEMM each for the composition)

Five primitives in the rule table (``table_write``, ``table_gather``, ``table_read``,
``table_level``: a gather, any primitive and a write as one graph node, one per tree level; its
rule calls the primitive's own rule, so the numbers are those of the three separate ops;
``table_levels``: a whole schedule of levels as one graph node, no Python per level beyond the
NumPy calls, its indices checked once per schedule).  Every write
records a *token* node (a zero-size output) whose backward rule hands its rows of ``G`` to the
written tensor; tokens form a chain (each write's token has the previous one as a parent), and a
gather or read has the latest token as its parent and returns a zero-size gradient to it.  Sequence
order does the rest: a token is created before every gather that reads its rows, so backward
expands it after all of them have added their share into ``G`` (the distributed chain rule with
the sum kept in one buffer), and the chain reaches every earlier token (a level's node is a gather
and a write: the latest token is its parent, its output the next token).  Every op has a fixed
number of parents, so a level costs O(1) graph work whatever the depth.  The rows of ``G`` are zeroed as
their token hands them out, so the table may be backpropagated again (``retain_graph=True``).

The gradient path through the table is first order only (its rules use the shared buffer, not
differentiable operations): gradients of gradients through a NodeTable are not supported.
"""
from __future__ import annotations

import numpy as np

from ..autograd import STATE, RowSparseGrad
from ..tensor import Tensor, apply
from .rules import defop

__all__ = ["NodeTable", "LevelSchedule", "RowRule"]


_EMPTY = {}


def _token(dtype):
    """A zero-size array (the tokens' value and gradient; shared: nothing can be written into it)."""
    e = _EMPTY.get(dtype)
    if e is None:
        e = _EMPTY[dtype] = np.empty(0, dtype=dtype)
    return e


def _write(x, prev, table, start):
    """T[start:start+n] = x (a token records the write; ``prev`` is the previous write's token)   |
    x̄ = G[start:start+n] (those rows of G are then zeroed), the previous token gets ∅   |
    Ṫ[start:start+n] = ẋ (forward mode: a tangent table beside T; the token carries the order)"""
    stop = start + x.shape[0]
    table._buf[start:stop] = x
    return _token(table._buf.dtype), (table, start, stop)


def _write_vjp(g, s, n):
    table, start, stop = s
    gx = None
    if n[0]:
        G = table._grad_buffer()
        gx = G[start:stop].copy()
        G[start:stop] = 0
    return gx, (_token(g.dtype) if n[1] else None)


def _write_jvp(d, s):
    table, start, stop = s
    if d[0] is not None:
        table._tangent_buffer()[start:stop] = d[0]
    return _token(table._buf.dtype)
TABLE_WRITE = defop("table_write", _write, _write_vjp, jvp=_write_jvp)


def _gather(token, table, idx, distinct, flat):
    """z = T[idx] (rows written earlier; idx an integer array of any shape; ``flat``: the rows of each
    idx[..., :] joined end to end, z of shape idx.shape[:-1] + (k·row,))   |
    G[idx] += g (repeated rows summed unless ``distinct``), the latest token gets ∅   |   ż = Ṫ[idx]"""
    z = table._buf[idx]
    if flat:
        z = z.reshape(idx.shape[:-1] + (-1,))
    return z, (table, idx, distinct, flat)


def _gather_vjp(g, s, n):
    table, idx, distinct = s[:3]
    G = table._grad_buffer()
    g = g.reshape(idx.shape + G.shape[1:])
    if distinct:
        G[idx] += g
    else:
        RowSparseGrad(idx, g, G.shape).add_to(G)
    return (_token(g.dtype),)
def _gather_jvp(d, s):
    table, idx, _, flat = s
    z = table._tangent_buffer()[idx]
    return z.reshape(idx.shape[:-1] + (-1,)) if flat else z
TABLE_GATHER = defop("table_gather", _gather, _gather_vjp, jvp=_gather_jvp)


def _read(token, table):
    """z = T (the whole table)   |   G += g, the latest token gets ∅   |   ż = Ṫ"""
    return table._buf, table


def _read_vjp(g, table, n):
    table._grad_buffer()[...] += g
    return (_token(g.dtype),)
TABLE_READ = defop("table_read", _read, _read_vjp, jvp=lambda d, table: table._tangent_buffer())


def _level(token, *inputs, table, start, idx, distinct, op):
    """T[start:start+n] = op(T[idx] with each idx row's rows joined, *inputs) -- a gather, a primitive
    and a write in one graph node   |   z̄ = G[start:start+n] (then zeroed), op's rule on z̄, its first
    gradient added into G[idx] (as gather's), the others to ``inputs``; the previous token gets ∅   |
    Ṫ[start:start+n] = op's tangent rule at (Ṫ[idx] joined, the inputs' tangents)"""
    buf = table._buf
    z, saved = op.forward(buf[idx].reshape(idx.shape[:-1] + (-1,)), *inputs)
    stop = start + idx.shape[0]
    if z.shape != (stop - start,) + buf.shape[1:]:
        raise ValueError(f"op '{op.name}' gave rows of shape {z.shape} for rows {start}..{stop} of a table "
                         f"of rows {buf.shape[1:]}")
    buf[start:stop] = z
    return _token(buf.dtype), (table, start, stop, idx, distinct, op, saved)


def _level_vjp(g, s, n):
    table, start, stop, idx, distinct, op, saved = s
    G = table._grad_buffer()
    gz = G[start:stop].copy()
    G[start:stop] = 0
    grads = op.backward(gz, (True,) + tuple(n[1:]), *saved)
    _gather_vjp(grads[0], (table, idx, distinct), None)
    return (_token(g.dtype),) + tuple(grads[1:])


def _level_jvp(d, s):
    """Ṫ[start:start+n] = op's tangent rule at ċ = Ṫ[idx] joined and the inputs' tangents"""
    table, start, stop, idx, distinct, op, saved = s
    rule = op.jvp
    if rule is None or not callable(rule) or not op.differentiable:
        raise RuntimeError(f"NodeTable.level: op '{op.name}' has no tangent rule of its own, so forward mode "
                           f"(cr.jvp) cannot go through this level; write the level as gather, op and write")
    Td = table._tangent_buffer()
    Td[start:stop] = rule((Td[idx].reshape(idx.shape[:-1] + (-1,)),) + tuple(d[1:]), *saved)
    return _token(table._buf.dtype)
TABLE_LEVEL = defop("table_level", _level, _level_vjp, jvp=_level_jvp)


class RowRule:
    """How a row-wise primitive's rule splits over a level schedule (:meth:`NodeTable.levels`): the
    inputs' part per level, the weights' part once over the rows of every level.

    * ``start(rows, *saved) -> state``: once per backward (``saved``: any level's saved values), the
      buffers of ``rows`` rows the level part fills and what it needs from the weights;
    * ``level(g, state, r0, r1, *saved) -> c̄``: the first input's gradient of one level (rows
      ``r0:r1`` of the buffers are this level's), writing the per-row factors the weights need;
    * ``weights(needs, state, C, *saved) -> tuple``: the weights' gradients from the buffers and
      ``C``, the first input of every level stacked (``needs`` per weight);
    * ``lean(saved) -> saved``: a level's saved values without those ``level`` and ``weights`` do
      not read (kept when forward mode needs them), so a schedule holds no more than it needs.

    For :func:`~chainrule.ops.fused.composition`: [z̄ | c ⊗ z̄] per row, c̄ = [z̄ | c ⊗ z̄] [W; Vₛ]ᵀ per
    level (one GEMM; Vₛ = V + V's first two axes swapped), then [W̄ | V̄] = Cᵀ [z̄ | C ⊗ z̄] and
    b̄ = Σ z̄ over all levels -- one GEMM where a level loop makes two per level plus sums."""
    __slots__ = ("start", "level", "weights", "lean")

    def __init__(self, start, level, weights, lean=None):
        self.start, self.level, self.weights, self.lean = start, level, weights, lean


def _levels(token, *inputs, table, starts, children, distinct, op):
    """T[s_i:s_{i+1}] = op(T[idx_i] with each idx_i row's rows joined, *inputs) for the levels
    i = 0, 1, ... of a schedule in order (s = ``starts``, idx_i = ``children[i]``) -- every level of a
    tree in one graph node   |   for i = last..0: z̄_i = G[s_i:s_{i+1}], op's rule on z̄_i for the
    first input only, its gradient added into G[idx_i]; then the inputs' gradients once over the rows
    of all levels (op's :class:`RowRule`; without one, per level and summed); the rows of G zeroed;
    the previous token gets ∅   |   per level in order, Ṫ[s_i:s_{i+1}] = op's tangent rule at
    (Ṫ[idx_i] joined, the inputs' tangents)"""
    buf = table._buf
    st = starts.tolist()
    row = buf.shape[1:]
    k = children[0].shape[1]
    C = np.empty((st[-1] - st[0], k * int(np.prod(row, dtype=np.int64))), dtype=buf.dtype)   # every level's c
    saved = []
    base = st[0]
    lean = None if STATE.tangents else getattr(getattr(op, "row_rule", None), "lean", None)
    for i, ch in enumerate(children):
        s0, s1 = st[i], st[i + 1]
        c = C[s0 - base:s1 - base]
        np.take(buf, ch, axis=0, out=c.reshape(ch.shape + row), mode="clip")     # indices checked once
        z, sv = op.forward(c, *inputs)
        if z.shape != (s1 - s0,) + row:
            raise ValueError(f"op '{op.name}' gave rows of shape {z.shape} for rows {s0}..{s1} of a table "
                             f"of rows {row}")
        buf[s0:s1] = z
        saved.append(sv if lean is None else lean(sv))
    return _token(buf.dtype), (table, st, children, distinct, op, saved, C)


def _levels_vjp(g, s, n):
    table, st, children, distinct, op, saved, C = s
    G = table._grad_buffer()
    nw = tuple(n[1:])
    rule = getattr(op, "row_rule", None)
    state = rule.start(C.shape[0], *saved[0]) if rule is not None else None
    wgrads = (None,) * len(nw)
    base = st[0]
    for i in range(len(children) - 1, -1, -1):
        s0, s1 = st[i], st[i + 1]
        gz = G[s0:s1]                   # complete: every consumer of these rows came later
        if rule is not None:
            gc = rule.level(gz, state, s0 - base, s1 - base, *saved[i])
        else:
            grads = op.backward(gz, (True,) + nw, *saved[i])
            gc = grads[0]
            wgrads = tuple(a if b is None else (b if a is None else a + b) for a, b in zip(wgrads, grads[1:]))
        _gather_vjp(gc, (table, children[i], distinct), None)
    if rule is not None and any(nw):
        wgrads = rule.weights(nw, state, C, *saved[0])
    G[base:st[-1]] = 0
    return (_token(g.dtype),) + tuple(wgrads)


def _levels_jvp(d, s):
    """Ṫ[s_i:s_{i+1}] = op's tangent rule at ċ = Ṫ[idx_i] joined and the inputs' tangents, level by level"""
    table, st, children, distinct, op, saved, C = s
    for i, ch in enumerate(children):
        _level_jvp(d, (table, st[i], st[i + 1], ch, distinct, op, saved[i]))
    return _token(table._buf.dtype)
TABLE_LEVELS = defop("table_levels", _levels, _levels_vjp, jvp=_levels_jvp)


class LevelSchedule:
    """The levels of a tree (or DAG) minibatch for :meth:`NodeTable.levels`, checked once: level i
    writes rows ``starts[i]:starts[i+1]`` from the rows ``children[i]`` (an integer array of shape
    (rows of the level, children per node)), all of them rows of earlier levels or rows below
    ``starts[0]``.  A :class:`~chainrule.models.rntn.TreeBatch` builds its own (``batch.schedule``),
    so a training step pays no index check per level.

    ``distinct``: no row is a child twice within a level (true of trees; found here), so backward
    adds each level's gradients with one fancy-indexed ``+=``.

    >>> import numpy as np
    >>> s = LevelSchedule([2, 3, 4], [np.array([[0, 1]]), np.array([[2, 0]])])
    >>> s.distinct, s.rows, s.below
    (True, (2, 4), 1)
    """

    def __init__(self, starts, children):
        starts = np.asarray(starts)
        children = list(children)
        if starts.ndim != 1 or starts.dtype.kind not in "iu" or len(starts) != len(children) + 1:
            raise ValueError(f"LevelSchedule: starts must be 1-D integers, one more than the {len(children)} "
                             f"levels; got {starts.dtype} of shape {starts.shape}")
        st = starts.tolist()
        if st and (st[0] < 0 or any(b < a for a, b in zip(st, st[1:]))):
            raise ValueError(f"LevelSchedule: starts must be non-negative and non-decreasing, got {st}")
        k = None
        for i, ch in enumerate(children):               # shapes per level; the values at once below
            if not isinstance(ch, np.ndarray) or ch.dtype.kind not in "iu" or ch.ndim != 2:
                raise ValueError(f"LevelSchedule: children[{i}] must be a 2-D integer array (rows, children), "
                                 f"got {getattr(ch, 'dtype', type(ch).__name__)} of shape {np.shape(ch)}")
            if ch.shape[0] != st[i + 1] - st[i] or (k is not None and ch.shape[1] != k):
                raise ValueError(f"LevelSchedule: level {i} writes rows {st[i]}..{st[i + 1]} but children[{i}] "
                                 f"has shape {ch.shape} (every level needs the same number of children)")
            k = ch.shape[1]
        below, distinct = -1, True
        if children and st[-1] > st[0] and k:
            rows = np.concatenate(children).reshape(-1)
            own = np.repeat(starts[:-1], np.diff(starts) * k)          # each entry's level: its first row
            bad = (rows < 0) | (rows >= own)
            if bad.any():
                j = int(np.argmax(bad))
                i = int(np.searchsorted(starts, own[j], side="right")) - 1
                raise IndexError(f"LevelSchedule: level {i} (rows {st[i]}..{st[i + 1]}) reads row "
                                 f"{int(rows[j])}; a level reads rows below its own")
            low = rows[rows < st[0]]
            below = int(low.max()) if low.size else -1
            if np.bincount(rows).max() > 1:               # a row read twice: by one level, or by two?
                distinct = all(np.unique(ch).size == ch.size for ch in children)
        self.starts, self.children, self.distinct = starts, children, distinct
        self.rows = (st[0], st[-1]) if st else (0, 0)
        self.below = below            # the highest row read that the schedule does not write (-1: none)

    def __len__(self):
        return len(self.children)


class NodeTable:
    """A ``(rows, *row_shape)`` table filled by :meth:`write` (each row once), read by :meth:`gather`
    and :meth:`read`, with gradients flowing back to the written tensors in linear time.

    The buffer is allocated at the first write (row shape and dtype from it).  Gathering a row
    that has not been written, writing a row twice, or writing after :meth:`read` is an error.

    >>> import numpy as np, chainrule as cr
    >>> leaves = cr.tensor(np.array([[1.0], [2.0]]), requires_grad=True)
    >>> t = cr.NodeTable(3)
    >>> t.write(0, leaves)
    >>> c = t.gather(np.array([[0, 1]]))               # children of the one node of level 1
    >>> t.write(2, c.sum(axis=1) * 10.0)
    >>> t.read().sum().backward()
    >>> leaves.grad.ravel().tolist()
    [11.0, 11.0]
    """

    def __init__(self, rows):
        self.rows = int(rows)
        if self.rows < 0:
            raise ValueError(f"NodeTable: negative number of rows {rows}")
        self._buf = None
        self._grad = None
        self._written = np.zeros(self.rows, dtype=bool)
        self._filled = 0         # rows 0.._filled-1 are written (a level loop writes in row order)
        self._top = 0            # no row at or after _top is written
        self._token = None       # the latest write's token Tensor (None: no write needs a gradient)
        self._writes = 0
        self._sealed = False

    @property
    def shape(self):
        return None if self._buf is None else self._buf.shape

    def _grad_buffer(self):
        if self._grad is None:
            self._grad = np.zeros(self._buf.shape, dtype=self._buf.dtype)
        return self._grad

    def _tangent_buffer(self):
        """Ṫ, the rows' tangents under cr.jvp (zero for rows written without one)."""
        if getattr(self, "_tbuf", None) is None:
            self._tbuf = np.zeros(self._buf.shape, dtype=self._buf.dtype)
        return self._tbuf

    def _free_rows(self, start, n, what, shape):
        """Check that rows start..start+n may be written (``shape``: the value's, for the message)."""
        if self._sealed:
            raise RuntimeError(f"NodeTable.{what}: the table was already read whole (read()); "
                               "write every row before reading it")
        if start < 0 or start + n > self.rows:
            raise IndexError(f"NodeTable.{what}: rows {start}..{start + n} of a {shape} value "
                             f"do not fit a table of {self.rows} rows")
        if start < self._top and self._written[start:start + n].any():    # O(1) for writes in row order
            raise ValueError(f"NodeTable.{what}: rows {start}..{start + n} overlap rows already written")

    def _mark(self, start, n, tok):
        self._written[start:start + n] = True
        self._top = max(self._top, start + n)
        if start <= self._filled:
            self._filled = max(self._filled, start + n)
            if self._filled < self._top:              # writes out of row order: extend over the rest
                gap = np.flatnonzero(~self._written[self._filled:])
                self._filled = self.rows if not gap.size else self._filled + int(gap[0])
        if tok.requires_grad or getattr(tok, "_tangent", None) is not None:   # (a tangent: cr.jvp)
            self._token = tok
        self._writes += 1

    def _index(self, idx, what):
        """``idx`` as an integer array of rows already written (else a clear error)."""
        idx = np.asarray(idx)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"NodeTable.{what}: indices must be integers, got dtype {idx.dtype}")
        if self._buf is None:
            raise IndexError(f"NodeTable.{what}: nothing has been written yet")
        if idx.size and not (idx.min() >= 0 and idx.max() < self._filled):    # the common case: 2 reductions
            lo = int(idx.min())
            try:
                ok = self._written[idx]
            except IndexError:
                ok = None
            if lo < 0 or ok is None:
                raise IndexError(f"NodeTable.{what}: row {lo if lo < 0 else int(idx.max())} out of range "
                                 f"for a table of {self.rows} rows")
            if not ok.all():
                raise IndexError(f"NodeTable.{what}: row {int(idx.reshape(-1)[np.argmin(ok.reshape(-1))])} "
                                 f"has not been written yet")
        return idx

    def write(self, start, x):
        """Write the rows of ``x`` (a Tensor or array, first axis = rows) at ``start``."""
        data = x.data if isinstance(x, Tensor) else np.asarray(x)
        start = int(start)
        if data.ndim == 0:
            raise IndexError(f"NodeTable.write: a 0-d value {data.shape} has no rows to write")
        self._free_rows(start, data.shape[0], "write", data.shape)
        if self._buf is None:
            self._buf = np.empty((self.rows,) + data.shape[1:], dtype=data.dtype)
        elif data.shape[1:] != self._buf.shape[1:]:
            raise ValueError(f"NodeTable.write: rows of shape {data.shape[1:]} for a table of rows "
                             f"{self._buf.shape[1:]}")
        self._mark(start, data.shape[0], apply(TABLE_WRITE, (x, self._token), {"table": self, "start": start}))

    def level(self, start, idx, op, *inputs, distinct=False):
        """One level of a tree in one graph node: rows ``start, start+1, …`` become
        ``op(c, *inputs)`` where row i of ``c`` is the rows ``idx[i, :]`` joined end to end (the
        ``[a; b]`` of node i's children).  ``op`` is a primitive of the rule table (e.g.
        :data:`chainrule.ops.fused.COMPOSITION`) whose output has one row per row of ``idx``.  The
        same values and gradients, bit for bit, as ``write(start, f(gather(idx, distinct,
        flat=True), *inputs))`` with ``f`` the op's function -- three graph nodes fewer a level.
        ``distinct`` as for :meth:`gather`."""
        idx = self._index(idx, "level")
        start = int(start)
        if idx.ndim != 2:
            raise ValueError(f"NodeTable.level: idx must be (rows, children), got shape {idx.shape}")
        self._free_rows(start, idx.shape[0], "level", idx.shape)
        tok = apply(TABLE_LEVEL, (self._token, *inputs), {"table": self, "start": start, "idx": idx,
                                                          "distinct": bool(distinct), "op": op})
        self._mark(start, idx.shape[0], tok)

    def levels(self, schedule, op, *inputs):
        """Every level of a :class:`LevelSchedule` in one graph node: level i's rows
        ``starts[i], starts[i]+1, …`` become ``op(c, *inputs)``, row j of ``c`` the rows
        ``children[i][j, :]`` joined end to end, level after level.  The same values as
        :meth:`level` called per level; in backward, ``op``'s rule runs per level for the children's
        gradient only and once over the rows of every level for the ``inputs`` (the weights: one GEMM
        each, when ``op`` has a :class:`RowRule` -- :data:`~chainrule.ops.fused.COMPOSITION` does), so
        the gradients agree with :meth:`level`'s to rounding (another summation order).  The schedule
        is checked when it is made, here only that its rows are free and the rows it reads below its
        first level are written."""
        if not isinstance(schedule, LevelSchedule):
            raise TypeError(f"NodeTable.levels: a LevelSchedule is needed, got {type(schedule).__name__}")
        if not len(schedule):
            return
        if self._buf is None:
            raise IndexError("NodeTable.levels: nothing has been written yet")
        lo, hi = schedule.rows
        self._free_rows(lo, hi - lo, "levels", (hi - lo,))
        if schedule.below >= self._filled and not self._written[:schedule.below + 1].all():
            raise IndexError(f"NodeTable.levels: the schedule reads rows up to {schedule.below}, "
                             f"not all of them written yet")
        tok = apply(TABLE_LEVELS, (self._token, *inputs),
                    {"table": self, "starts": schedule.starts, "children": schedule.children,
                     "distinct": schedule.distinct, "op": op})
        self._mark(lo, hi - lo, tok)

    def gather(self, idx, distinct=False, flat=False):
        """Rows ``idx`` (an integer array of any shape; rows already written) as a Tensor of shape
        ``idx.shape + row_shape``.  ``distinct=True`` promises that no row appears twice in ``idx``
        (the children of one tree level), so backward adds with one fancy-indexed ``+=``.
        ``flat=True``: the rows of each ``idx[..., :]`` joined end to end (shape
        ``idx.shape[:-1] + (k·row_size,)``: the ``[a; b]`` of every node from its children's rows)."""
        idx = self._index(idx, "gather")
        if flat and idx.ndim == 0:
            raise ValueError("NodeTable.gather: flat=True needs an index array of at least one axis")
        return apply(TABLE_GATHER, (self._token,), {"table": self, "idx": idx, "distinct": bool(distinct),
                                                    "flat": bool(flat)})

    def read(self):
        """The whole table as a Tensor (every row must have been written); seals the table."""
        if self._buf is None or not self._written.all():
            raise RuntimeError(f"NodeTable.read: rows not written yet "
                               f"(first: {int(np.argmin(self._written))} of {self.rows})")
        self._sealed = True
        return apply(TABLE_READ, (self._token,), {"table": self})

    def __repr__(self):
        return f"NodeTable(rows={self.rows}, shape={self.shape}, writes={self._writes})"
