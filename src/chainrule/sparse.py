"""Row-sparse gradients and gradient accumulation: the bottom layer of the engine.

:class:`RowSparseGrad` is the gradient of a table of which only some rows were used (an embedding
lookup), and :func:`accumulate` adds two gradient contributions whatever their kind (dense arrays,
row-sparse gradients, or -- under ``create_graph`` -- tensors).  :func:`add_grad` (with
:func:`fresh`) is the one in-place-accumulation rule of a backward pass and :func:`deposit` the one
way a finished gradient reaches a leaf's ``.grad``; the eager loop (:func:`chainrule.autograd.run_backward`) and the
compiled step's replay (:mod:`chainrule.compile`) both use them.  Nothing here knows about graphs.
"""
from __future__ import annotations

import numpy as np

__all__ = ["RowSparseGrad", "accumulate", "fresh", "add_grad", "deposit"]


class RowSparseGrad:
    """Gradient of a table of which only some rows were used: ``dense[indices[k]] += values[k]``.

    Produced by :func:`chainrule.take` with ``sparse=True`` (what ``nn.Embedding(..., sparse=True)`` uses) for a leaf
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

    def distinct_rows(self):
        """``(indices, values)`` with every row once: as they are when the rows are already distinct
        (one sort tells, and nothing is reordered or copied: 14 -> 4.4 µs for 192 rows of 100,000),
        else :meth:`coalesce`'s.  What lets a scatter or a sparse SGD step be one fancy-indexed
        update instead of ``np.add.at``, several times slower per row.  The arrays are the
        gradient's own: read them, do not modify them."""
        idx = self._wrapped()
        s = idx.copy()                  # = np.sort(idx), without its Python wrapper
        s.sort()
        if s.size < 2 or not np.count_nonzero(s[1:] == s[:-1]):      # no two equal neighbours
            return idx, self.values
        c = self.coalesce()
        return c.indices, c.values


    def add_to(self, out):
        """``out[indices[k]] += values[k]`` for every k, in place; returns ``out``."""
        idx, vals = self.distinct_rows()
        out[idx] += vals
        return out

    def to_dense(self):
        """The dense array: zeros with the rows written in (repeats summed)."""
        out = np.zeros(self.shape, dtype=self.values.dtype)
        idx, vals = self.distinct_rows()
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

    def copy(self):
        """A RowSparseGrad holding copies of the indices and rows (no checks: they were made once)."""
        c = object.__new__(RowSparseGrad)
        c.indices, c.values, c.shape = self.indices.copy(), self.values.copy(), self.shape
        return c

    def __mul__(self, s):
        return RowSparseGrad(self.indices, self.values * s, self.shape)

    __rmul__ = __mul__

    def __repr__(self):
        return f"RowSparseGrad(rows={self.indices.shape[0]}, shape={self.shape}, dtype={self.dtype})"


def accumulate(a, b):
    """a + b for dense arrays, RowSparseGrads and tensors (a new object; neither argument is modified)."""
    ta, tb = type(a) is RowSparseGrad, type(b) is RowSparseGrad
    if not ta and not tb:
        return a + b
    if ta and tb:
        return RowSparseGrad(np.concatenate([a.indices, b.indices]),
                             np.concatenate([a.values, b.values]), a.shape)
    dense, sp = (b, a) if ta else (a, b)
    return sp.add_to(np.array(dense, copy=True))


# How a contribution was added (the compiled step's code generator writes the same operation).
NEW, IADD, SCATTER, ACC = "new", "iadd", "scatter", "acc"


def fresh(gi, g, outs):
    """Whether ``gi``, a backward rule's output (one of ``outs``, or made from one by the glue), is an
    ndarray nobody else holds -- made fresh (``base is None``: not a view), not the incoming gradient
    ``g`` the rule was called with, and not returned twice -- so that a backward pass may keep it
    and add into it."""
    if gi is g or type(gi) is not np.ndarray or gi.base is not None:
        return False
    n = len(outs)               # (a result of the glue -- unbroadcast, astype -- is in none of them)
    if n == 1:
        return True
    if n == 2:                  # a binary op's two gradients, without a generator
        return outs[0] is not outs[1] or gi is not outs[0]
    k = 0
    for o in outs:
        if o is gi:
            k += 1
    return k <= 1


def keep_first(grads, owned, key, gi, g, outs, ownable):
    """Store the *first* contribution ``gi`` to ``grads[key]`` as it is (no copy); the pass owns it
    -- may add into it later -- when ``ownable`` (a leaf's gradient, or one sent by an op with an
    in-place form, ``Op.into``) and :func:`fresh`.  The other half of :func:`add_grad`'s rule."""
    grads[key] = gi
    if ownable and fresh(gi, g, outs):
        owned.add(key)


def add_grad(grads, owned, key, gi):
    """Add a *later* contribution ``gi`` to ``grads[key]``: the one in-place-accumulation rule of a
    backward pass (the distributed chain rule's Σ_k over a value's consumers).

    The rule: the first gradient reaching a node or leaf is stored as it is (``grads[key] = gi``, no
    copy); a leaf's -- or a node's, when the op that sent it has an in-place form (``Op.into``: the
    dense gradient of ``x[i]``, into which the next ``x[j]`` adds) -- is *owned* by the pass (``key``
    in the set ``owned``) when it is :func:`fresh`.
    A later one is added in place into an owned array (``+=``, or a scatter-add for a row-sparse
    one); otherwise the sum is a new array (:func:`accumulate`), owned from then on.  So the pass
    never writes into ``g``, a view, a tensor, a hook's result or anything the caller passed in.
    Returns how it added: ``IADD``, ``SCATTER`` or ``ACC``.
    """
    if key in owned:                    # owned entries are ndarrays
        if type(gi) is np.ndarray:
            grads[key] += gi
            return IADD
        if type(gi) is RowSparseGrad:
            gi.add_to(grads[key])
            return SCATTER
    s = grads[key] = accumulate(grads[key], gi)
    if type(s) is np.ndarray:
        owned.add(key)
    return ACC


def deposit(t, g, mine):
    """Put a leaf's finished gradient ``g`` into ``t.grad``: kept as it is if the pass owns it
    (``mine``), else copied (so ``.grad`` never aliases an array someone else holds); added in place
    into an existing dense ``.grad``; summed (:func:`accumulate`) otherwise."""
    if t.grad is None:
        if not mine:
            g = g.copy() if type(g) is np.ndarray or type(g) is RowSparseGrad else g
        t.grad = g
    elif type(t.grad) is np.ndarray and type(g) is np.ndarray:
        t.grad += g
    else:
        t.grad = accumulate(t.grad, g)
