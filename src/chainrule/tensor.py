"""Tensor: an ndarray plus the node of the graph that produced it.

Every operation goes through :func:`apply`, which runs a primitive's forward function on the
arrays and -- when gradients are enabled and some input requires them -- records a
:class:`~chainrule.autograd.Node` with what the op's backward rule needs.

Tensor's operators and op methods (``x + y``, ``x @ W``, ``x.sum()``, ``x.T``) are not written here:
they are the functions of :mod:`chainrule.ops.functional`, which installs them from its table
``TENSOR_METHODS`` (``Tensor.__add__ is functional.add``).  This module keeps the bookkeeping:
data, grad, backward, hooks, in-place rules, conversions.
"""
from __future__ import annotations

import operator

import numpy as np

from . import autograd as ag
from . import debug
from .autograd import STATE, Node

__all__ = ["Tensor", "tensor", "apply", "set_default_dtype", "get_default_dtype"]

_DEFAULT_DTYPE = [np.dtype(np.float32)]


def set_default_dtype(dtype):
    """Dtype given to Python floats and lists of floats (float32 unless changed)."""
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise TypeError(f"set_default_dtype: expected a floating dtype, got {dt}")
    _DEFAULT_DTYPE[0] = dt


def get_default_dtype():
    return _DEFAULT_DTYPE[0]


def _describe_args(args):
    parts = []
    for a in args:
        if isinstance(a, Tensor):
            parts.append(f"{a.shape} {a.dtype}")
        elif isinstance(a, np.ndarray):
            parts.append(f"array {a.shape} {a.dtype}")
        else:
            parts.append(type(a).__name__)
    return ", ".join(parts)


def apply(op, args, kw=None):
    """Run ``op`` on the arrays of ``args`` (Tensors or constants) and record it if needed.

    The recorded node's parents are the inputs' nodes (or the leaf tensors themselves), None for
    inputs that need no gradient.  Unary and binary ops take a short path: their Python overhead
    is what a chain of small ops pays.
    """
    n = len(args)
    if n == 1:
        a = args[0]
        if isinstance(a, Tensor):
            datas = (a.data,)
            needs = (a.requires_grad,)
            parents = ((a._node or a),) if a.requires_grad else None
        else:
            datas, needs, parents = args, (False,), None
    elif n == 2:
        a, b = args
        ra = isinstance(a, Tensor) and a.requires_grad
        rb = isinstance(b, Tensor) and b.requires_grad
        datas = (a.data if isinstance(a, Tensor) else a, b.data if isinstance(b, Tensor) else b)
        needs = (ra, rb)
        parents = ((a._node or a) if ra else None, (b._node or b) if rb else None) if ra or rb else None
    else:                                # one pass over the inputs (a third of three comprehensions' cost)
        datas, needs, parents = [], [], []
        for a in args:
            if isinstance(a, Tensor):
                datas.append(a.data)
                if a.requires_grad:
                    needs.append(True)
                    parents.append(a._node or a)
                    continue
            else:
                datas.append(a)
            needs.append(False)
            parents.append(None)
        needs = tuple(needs)
        parents = tuple(parents) if True in needs else None
    try:
        out, saved = op.forward(*datas, **kw) if kw else op.forward(*datas)
    except (ValueError, TypeError, IndexError) as e:
        raise type(e)(f"{op.name}: {e} (inputs: {_describe_args(args)})") from None
    if type(out) is not np.ndarray:
        out = np.asarray(out)
    t = _new(Tensor)
    t.data = out
    t.grad = t._name = t._hooks = None
    if parents is not None and STATE.grad_enabled:
        t._node = Node(op, parents, saved, needs, out.shape, out.dtype)
        t.requires_grad = True
    else:
        t._node = None
        t.requires_grad = False
    if STATE.watch:                      # detect_anomaly, record_forward or cr.jvp is on
        node = t._node
        if node is not None and STATE.anomaly:
            debug.note_forward(node, out, datas)
        if node is not None and STATE.forward:
            node.fwd = (out, datas, kw)
        if STATE.tangents:               # inside cr.jvp: carry the output's tangent (forward mode)
            TANGENT_HOOK[0](op, args, kw, t, saved)
    return t


_new = object.__new__
TANGENT_HOOK = [None]    # chainrule.forward.push_tangents (set when that module is imported)


class Tensor:
    """An n-dimensional array that remembers how it was computed.

    Attributes: ``data`` (the ndarray), ``grad`` (accumulated ∂L/∂self as an ndarray of the same
    shape -- or a :class:`RowSparseGrad` for an embedding table -- summed over backward calls until
    reset with ``zero_grad()`` or ``t.grad = None``), ``requires_grad``, ``name``.

    >>> import chainrule as cr
    >>> x = cr.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> y = (x * x).sum()
    >>> y.backward()
    >>> x.grad
    array([2., 4., 6.], dtype=float32)
    """
    __slots__ = ("data", "grad", "requires_grad", "_node", "_name", "_hooks", "__weakref__",
                 "_version",          # set (only) when modified in place: see autograd.mark_edited
                 "_tangent")          # set (only) inside cr.jvp: {level: tangent}, see chainrule.forward
    __array_ufunc__ = None          # ndarray (op) Tensor defers to Tensor's reflected operators

    def __init__(self, data, requires_grad=False, dtype=None, name=None):
        arr = _to_array(data, dtype, requires_grad)
        self.data = arr
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._node = None
        self._name = name
        self._hooks = None

    # ---------------------------------------------------------------- attributes
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    @property
    def is_leaf(self):
        return self._node is None

    @property
    def name(self):
        return self._name

    @name.setter
    def name(self, value):
        self._name = value
        if self._node is not None:
            self._node.name = value

    def __len__(self):
        return len(self.data)

    def numpy(self):
        """The underlying ndarray (not a copy)."""
        return self.data

    def item(self):
        return self.data.item()

    def tolist(self):
        return self.data.tolist()

    def detach(self):
        """A tensor sharing this one's data, cut from the graph."""
        return Tensor._wrap(self.data)

    def astype(self, dtype):
        """A copy with another dtype, cut from the graph (use for data, not inside a model)."""
        return Tensor._wrap(self.data.astype(dtype))

    def requires_grad_(self, flag=True):
        if flag and self.data.dtype.kind not in "fc":
            raise TypeError(f"requires_grad: only floating tensors can require gradients, got {self.dtype}")
        if self._node is not None and not flag:
            raise RuntimeError("requires_grad_: a computed tensor cannot stop requiring grad; use detach()")
        self.requires_grad = flag
        return self

    def zero_grad(self):
        self.grad = None

    @staticmethod
    def _wrap(arr, requires_grad=False):
        t = Tensor.__new__(Tensor)
        t.data = arr
        t.grad = None
        t.requires_grad = requires_grad
        t._node = None
        t._name = None
        t._hooks = None
        return t

    def __repr__(self):
        extra = f", name='{self._name}'" if self._name else ""
        if self._node is not None:
            extra += f", op={self._node.op.name}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        body = np.array2string(self.data, separator=", ", prefix="tensor(")
        return f"tensor({body}, dtype={self.dtype}{extra})"

    def __bool__(self):
        return bool(self.data)

    def __float__(self):
        return float(self.data)

    def __int__(self):
        return int(self.data)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __array__(self, dtype=None, copy=None):
        """``np.asarray(t)`` is ``t.data`` (no copy unless a dtype or ``copy=True`` asks for one);
        the result is a plain array, cut from the graph."""
        a = self.data
        if dtype is not None and np.dtype(dtype) != a.dtype:
            return a.astype(dtype)
        return a.copy() if copy else a

    def numel(self):
        """Number of elements (PyTorch's ``numel()``; NumPy's ``size``)."""
        return self.data.size

    def dim(self):
        """Number of axes (PyTorch's ``dim()``; NumPy's ``ndim``)."""
        return self.data.ndim

    __hash__ = object.__hash__

    # ---------------------------------------------------------------- autograd
    def backward(self, grad=None, retain_graph=None, create_graph=False):
        """Compute ∂self/∂t for every leaf t that requires grad and add it to ``t.grad``.

        ``grad`` is the seed ∂L/∂self; it may be omitted only for a tensor with one element.
        The graph is freed afterwards unless ``retain_graph=True``.  ``create_graph=True`` records
        the backward pass itself (the gradients added to ``.grad`` are then tensors with a graph, so
        they can be differentiated again); it implies ``retain_graph=True``, as in PyTorch.
        """
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad and has no graph "
                               "(was it computed under no_grad(), or from tensors without requires_grad=True?)")
        if retain_graph is None:
            retain_graph = create_graph
        seed = _seed(self, grad)
        if self._node is None:                       # a leaf: ∂t/∂t = 1
            self.grad = seed.copy() if self.grad is None else self.grad + seed
            return
        if create_graph:
            GRAPH_MODE[0](self._node, Tensor._wrap(seed), None)
        else:
            ag.run_backward(self._node, seed, retain_graph)

    def register_hook(self, fn):
        """Call ``fn(grad)`` with the gradient flowing into this tensor during backward; if it
        returns an array, that array replaces the gradient.  Returns a handle with ``.remove()``."""
        if not self.requires_grad:
            raise RuntimeError("register_hook: cannot register a hook on a tensor that does not require grad")
        owner = self._node if self._node is not None else self
        if owner is self:
            if self._hooks is None:
                self._hooks = []
            lst = self._hooks
        else:
            if owner.hooks is None:
                owner.hooks = []
            lst = owner.hooks
        lst.append(fn)
        return _HookHandle(lst, fn)

    # ---------------------------------------------------------------- operators and methods
    # ``x + y``, ``x @ W``, ``x.sum(1)``, ``x.exp()``, ``x[i]``, ``x.T`` ...: each operator and op method
    # IS a function of chainrule.ops.functional (``Tensor.__add__ is functional.add``), installed from
    # its table TENSOR_METHODS -- one definition, one docstring (``help(Tensor.sum)``).

    def __pos__(self):
        return self

    # ---------------------------------------------------------------- in place
    # The rule (docs/coming-from-pytorch.md): a tensor that requires grad is never changed in
    # place while gradients are recorded.  On a leaf (a parameter) ``w += 1`` and ``w[i] = v`` raise,
    # as PyTorch; under ``with cr.no_grad():`` they write into ``w.data`` (an update step).  On a
    # computed tensor ``z += 1`` is ``z = z + 1`` (a new tensor in the graph; other references keep
    # the old value) and ``z[i] = v`` raises (use ``cr.index_put``).  A tensor that does not require
    # grad is an array: ``+=`` and ``[i] =`` write into its data (views and aliases see the change).
    def _inplace(self, o, op, ufunc, sym):
        """``self (op)= o``: ``op`` the operator (``operator.add``: ``self + o`` for a computed tensor),
        ``ufunc`` the NumPy function that writes into the data of a plain one."""
        if self.requires_grad and STATE.grad_enabled:
            if self._node is None:
                raise RuntimeError(
                    f"in-place '{sym}=' on a leaf tensor that requires grad (shape {self.shape}): it would bypass "
                    f"the graph (PyTorch refuses too).  Write 'x = x {sym} ...' for a new tensor, or change the "
                    f"values under 'with cr.no_grad():' (e.g. a hand-written update step)")
            return op(self, o)
        if self._node is not None or (STATE.tangents and hasattr(self, "_tangent")):   # (cr.jvp: keep ż)
            return op(self, o)
        try:
            ufunc(self.data, _data(o), out=self.data)
        except TypeError as e:
            raise TypeError(f"in-place '{sym}=' on a tensor of dtype {self.dtype}: {e}") from None
        ag.mark_edited(self)
        return self

    def __iadd__(self, o):
        return self._inplace(o, operator.add, np.add, "+")

    def __isub__(self, o):
        return self._inplace(o, operator.sub, np.subtract, "-")

    def __imul__(self, o):
        return self._inplace(o, operator.mul, np.multiply, "*")

    def __itruediv__(self, o):
        return self._inplace(o, operator.truediv, np.true_divide, "/")

    def __ipow__(self, o):
        return self._inplace(o, operator.pow, np.power, "**")

    def __setitem__(self, idx, value):
        if self.requires_grad and (STATE.grad_enabled or self._node is not None):
            raise TypeError(
                f"item assignment on a tensor that requires grad (shape {self.shape}) would bypass the graph; "
                f"use 'y = cr.index_put(x, idx, values)' (or 'cr.where(mask, values, x)'): gradients then flow "
                f"to both x and values" + (" (or assign under 'with cr.no_grad():' to change a parameter's values)"
                                           if self._node is None else ""))
        if STATE.tangents and hasattr(self, "_tangent"):
            raise TypeError(f"item assignment on a tensor that carries a tangent (inside cr.jvp, shape "
                            f"{self.shape}) would bypass forward mode; use 'y = cr.index_put(x, idx, values)'")
        self.data[plain_index(idx)] = _data(value)
        ag.mark_edited(self)         # the version counter: graphs that saved this tensor refuse it

    # comparisons give plain boolean tensors (no gradient)
    def __lt__(self, o):
        return Tensor._wrap(self.data < _data(o))

    def __le__(self, o):
        return Tensor._wrap(self.data <= _data(o))

    def __gt__(self, o):
        return Tensor._wrap(self.data > _data(o))

    def __ge__(self, o):
        return Tensor._wrap(self.data >= _data(o))

    def t(self):
        """Transpose of a matrix (a 0-D or 1-D tensor is returned as is), as PyTorch's ``t()``."""
        if self.ndim > 2:
            raise ValueError(f"t: expects a tensor with at most 2 axes, got shape {self.shape}; use "
                             f"transpose(a, b) or permute(...)")
        return self if self.ndim < 2 else self.T


# run_backward with create_graph=True: installed by chainrule.ops.functional, which has the tensor
# namespace the rules then run on (a function (node, seed tensor, capture) -> capture).
GRAPH_MODE = [None]


class _HookHandle:
    __slots__ = ("_lst", "_fn")

    def __init__(self, lst, fn):
        self._lst, self._fn = lst, fn

    def remove(self):
        if self._fn in self._lst:
            self._lst.remove(self._fn)


def plain_index(idx):
    """An index with its Tensors replaced by their arrays (and a list made an array, NumPy's
    integer-array index)."""
    if isinstance(idx, Tensor):
        return idx.data
    if isinstance(idx, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in idx)
    if isinstance(idx, list):
        return np.asarray(idx)
    return idx


def _data(o):
    return o.data if isinstance(o, Tensor) else o


def _seed(t, grad):
    if grad is None:
        if t.data.size != 1:
            raise RuntimeError(f"backward: a seed gradient is required for a non-scalar output of shape "
                               f"{t.shape}; call backward(grad) with an array of that shape")
        g = np.empty(t.shape, dtype=t.dtype)     # = np.ones (without its Python wrapper)
        g.fill(1)
        return g
    g = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=t.dtype)
    if g.shape != t.shape:
        raise ValueError(f"backward: seed gradient of shape {g.shape} for an output of shape {t.shape}")
    return g


def _to_array(data, dtype, requires_grad):
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, np.ndarray) or isinstance(data, np.generic):
        arr = np.asarray(data, dtype=dtype)
    else:
        try:
            arr = np.asarray(data, dtype=dtype)
        except (ValueError, TypeError) as e:
            raise TypeError(f"tensor: cannot make a tensor from {type(data).__name__}: {e}") from None
        if dtype is None and (arr.dtype.kind == "f" or (requires_grad and arr.dtype.kind in "biu")):
            arr = arr.astype(_DEFAULT_DTYPE[0])
    if arr.dtype.kind not in "biufc":
        raise TypeError(f"tensor: unsupported dtype {arr.dtype} (numbers only)")
    if requires_grad and arr.dtype.kind not in "fc":
        raise TypeError(f"tensor: only floating tensors can require gradients, got dtype {arr.dtype}")
    return arr


def tensor(data, requires_grad=False, dtype=None, name=None):
    """Make a :class:`Tensor`.  Python floats and lists of floats become the default dtype
    (float32, see :func:`set_default_dtype`); lists of ints stay int64 unless ``requires_grad``;
    ndarrays keep their dtype unless ``dtype`` is given."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, name=name)
