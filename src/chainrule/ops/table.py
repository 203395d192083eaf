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

Three primitives in the rule table (``table_write``, ``table_gather``, ``table_read``).  Every write
records a *token* node (a zero-size output) whose backward rule hands its rows of ``G`` to the
written tensor; tokens form a chain (each write's token has the previous one as a parent), and a
gather or read has the latest token as its parent and returns a zero-size gradient to it.  Sequence
order does the rest: a token is created before every gather that reads its rows, so backward
expands it after all of them have added their share into ``G`` (the distributed chain rule with
the sum kept in one buffer), and the chain reaches every earlier token.  Every op has at most two
parents, so a level costs O(1) graph work whatever the depth.  The rows of ``G`` are zeroed as
their token hands them out, so the table may be backpropagated again (``retain_graph=True``).

The gradient path through the table is first order only (its rules use the shared buffer, not
differentiable operations): gradients of gradients through a NodeTable are not supported.
"""
from __future__ import annotations

import numpy as np

from ..autograd import RowSparseGrad
from ..tensor import Tensor, apply
from .rules import defop

__all__ = ["NodeTable"]


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

    def write(self, start, x):
        """Write the rows of ``x`` (a Tensor or array, first axis = rows) at ``start``."""
        if self._sealed:
            raise RuntimeError("NodeTable.write: the table was already read whole (read()); "
                               "write every row before reading it")
        data = x.data if isinstance(x, Tensor) else np.asarray(x)
        start = int(start)
        n = data.shape[0] if data.ndim else 0
        if data.ndim == 0 or start < 0 or start + n > self.rows:
            raise IndexError(f"NodeTable.write: rows {start}..{start + n} of a {data.shape} value "
                             f"do not fit a table of {self.rows} rows")
        if self._buf is None:
            self._buf = np.empty((self.rows,) + data.shape[1:], dtype=data.dtype)
        elif data.shape[1:] != self._buf.shape[1:]:
            raise ValueError(f"NodeTable.write: rows of shape {data.shape[1:]} for a table of rows "
                             f"{self._buf.shape[1:]}")
        done = self._written[start:start + n]
        if start < self._top and done.any():          # O(1) for writes in row order
            raise ValueError(f"NodeTable.write: rows {start}..{start + n} overlap rows already written")
        done[...] = True
        self._top = max(self._top, start + n)
        if start <= self._filled:
            self._filled = max(self._filled, start + n)
            if self._filled < self._top:              # writes out of row order: extend over the rest
                gap = np.flatnonzero(~self._written[self._filled:])
                self._filled = self.rows if not gap.size else self._filled + int(gap[0])
        tok = apply(TABLE_WRITE, (x, self._token), {"table": self, "start": start})
        if tok.requires_grad or getattr(tok, "_tangent", None) is not None:   # (a tangent: cr.jvp)
            self._token = tok
        self._writes += 1

    def gather(self, idx, distinct=False, flat=False):
        """Rows ``idx`` (an integer array of any shape; rows already written) as a Tensor of shape
        ``idx.shape + row_shape``.  ``distinct=True`` promises that no row appears twice in ``idx``
        (the children of one tree level), so backward adds with one fancy-indexed ``+=``.
        ``flat=True``: the rows of each ``idx[..., :]`` joined end to end (shape
        ``idx.shape[:-1] + (k·row_size,)``: the ``[a; b]`` of every node from its children's rows)."""
        idx = np.asarray(idx)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"NodeTable.gather: indices must be integers, got dtype {idx.dtype}")
        if self._buf is None:
            raise IndexError("NodeTable.gather: nothing has been written yet")
        if idx.size and not (idx.min() >= 0 and idx.max() < self._filled):    # the common case: 2 reductions
            lo = int(idx.min())
            try:
                ok = self._written[idx]
            except IndexError:
                ok = None
            if lo < 0 or ok is None:
                raise IndexError(f"NodeTable.gather: row {lo if lo < 0 else int(idx.max())} out of range "
                                 f"for a table of {self.rows} rows")
            if not ok.all():
                raise IndexError(f"NodeTable.gather: row {int(idx.reshape(-1)[np.argmin(ok.reshape(-1))])} "
                                 f"has not been written yet")
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
