"""The ops as functions of tensors -- the one definition of every op.

Primitives call :func:`~chainrule.tensor.apply` with their rule from :mod:`chainrule.ops.rules`
(their docstrings are the rule's: forward | backward formula).  Composites (mean, split, outer,
rrelu, ...) are written with primitives and need no rule of their own.

The :class:`~chainrule.tensor.Tensor` operators (``x + y``, ``x @ W``, ...) are one-line methods in
:mod:`chainrule.tensor` that apply the same rules directly, and its PyTorch-style methods
(``unsqueeze``, ``max(dim=)``, ...) delegate to the functions here; generating both from one table is
still to do (issue 11).  The tensor namespace :data:`TENSORS` that the rules run on under
``create_graph`` is built from these functions (the gradients then record a graph of their own:
higher order from the same rule table).
"""
from __future__ import annotations

import builtins
from types import SimpleNamespace

import numpy as np

from .. import autograd as ag
from .. import random as _random
from ..sparse import RowSparseGrad
from ..tensor import GRAPH_MODE, Tensor, apply, plain_index
from . import rules as R

__all__ = [
    "primitive",
    "add", "sub", "mul", "div", "neg", "pow", "exp", "log", "sin", "cos", "sqrt", "abs", "tanh", "sigmoid",
    "relu", "leaky_relu", "rrelu", "softplus", "maximum", "minimum", "clip", "where", "sum", "mean",
    "max", "min", "matmul", "transpose", "permute", "reshape", "concat", "stack", "split", "take",
    "einsum", "bilinear", "outer", "softmax", "log_softmax", "logsumexp", "smax", "softmax_cross_entropy",
    "getitem", "cat", "unsqueeze", "squeeze", "flatten", "broadcast_to", "expand", "clone", "swapaxes",
    "argmax", "argmin", "index_put", "view",
]


def _doc(op):
    def deco(f):
        f.__doc__ = (f.__doc__ or "") + "\n\n" + op.__doc__
        return f
    return deco


@_doc(R.ADD)
def add(x, y):
    return apply(R.ADD, (x, y))


@_doc(R.SUB)
def sub(x, y):
    return apply(R.SUB, (x, y))


@_doc(R.MUL)
def mul(x, y):
    return apply(R.MUL, (x, y))


@_doc(R.DIV)
def div(x, y):
    return apply(R.DIV, (x, y))


@_doc(R.NEG)
def neg(x):
    return apply(R.NEG, (x,))


@_doc(R.POW)
def pow(x, y):
    return apply(R.POW, (x, y))


@_doc(R.EXP)
def exp(x):
    return apply(R.EXP, (x,))


@_doc(R.LOG)
def log(x):
    return apply(R.LOG, (x,))


@_doc(R.SIN)
def sin(x):
    return apply(R.SIN, (x,))


@_doc(R.COS)
def cos(x):
    return apply(R.COS, (x,))


@_doc(R.SQRT)
def sqrt(x):
    return apply(R.SQRT, (x,))


@_doc(R.ABS)
def abs(x):
    return apply(R.ABS, (x,))


@_doc(R.TANH)
def tanh(x):
    return apply(R.TANH, (x,))


@_doc(R.SIGMOID)
def sigmoid(x):
    return apply(R.SIGMOID, (x,))


@_doc(R.RELU)
def relu(x):
    return apply(R.RELU, (x,))


@_doc(R.LEAKY_RELU)
def leaky_relu(x, negative_slope=0.01):
    return apply(R.LEAKY_RELU, (x,), {"slope": negative_slope})


def rrelu(x, lower=1.0 / 8, upper=1.0 / 3, training=False, generator=None):
    """Randomised leaky ReLU: while training every element gets its own slope a ~ U[lower, upper]
    drawn from ``generator`` (a ``np.random.Generator``; seed it for reproducibility); in eval the
    slope is the mean (lower + upper)/2.  Composite of :func:`leaky_relu` with an array of slopes:
    z = x if x > 0 else a ⊙ x  |  x̄ = g if x > 0 else a ⊙ g."""
    if not (0 <= lower <= upper):
        raise ValueError(f"rrelu: need 0 <= lower <= upper, got lower={lower}, upper={upper}")
    if not training:
        return leaky_relu(x, (lower + upper) / 2)
    rng = generator if generator is not None else _random.default_generator()
    xd = x.data if isinstance(x, Tensor) else np.asarray(x)
    slopes = rng.uniform(lower, upper, size=xd.shape).astype(xd.dtype)
    return apply(R.LEAKY_RELU, (x,), {"slope": slopes})


@_doc(R.SOFTPLUS)
def softplus(x):
    return apply(R.SOFTPLUS, (x,))


@_doc(R.MAXIMUM)
def maximum(x, y):
    return apply(R.MAXIMUM, (x, y))


@_doc(R.MINIMUM)
def minimum(x, y):
    return apply(R.MINIMUM, (x, y))


@_doc(R.CLIP)
def clip(x, lo=None, hi=None):
    return apply(R.CLIP, (x,), {"lo": lo, "hi": hi})


@_doc(R.WHERE)
def where(cond, x, y):
    c = cond.data if isinstance(cond, Tensor) else np.asarray(cond)
    if c.dtype != bool:
        raise TypeError(f"where: the condition must be boolean, got dtype {c.dtype}")
    return apply(R.WHERE, (c, x, y))


@_doc(R.SUM)
def sum(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    axis, keepdims = _pt_axis(axis, keepdims, dim, keepdim, "sum")
    return apply(R.SUM, (x,), {"axis": axis, "keepdims": keepdims})


def mean(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """z = (1/n) Σ_axis x, n the number of elements reduced (composite: sum, then scale)."""
    axis, keepdims = _pt_axis(axis, keepdims, dim, keepdim, "mean")
    shape = x.shape if isinstance(x, Tensor) else np.shape(x)
    axes = R._axes(axis, len(shape))
    n = int(np.prod([shape[a] for a in axes])) if axes else 1
    if n == 0:       # as NumPy and PyTorch: the mean of nothing is nan (with NumPy's warning), never 0
        import warnings
        warnings.warn("mean of an empty array: the result is nan", RuntimeWarning, stacklevel=2)
    return apply(R.SUM, (x,), {"axis": axis, "keepdims": keepdims}) * (1.0 / n if n else float("nan"))


@_doc(R.MAX)
def max(x, axis=None, keepdims=False, *, dim=None, keepdim=None, return_indices=None):
    """``return_indices=True`` gives ``(values, indices)`` (a namedtuple, as ``torch.max(x, dim)``;
    the indices are an int64 tensor without gradient); it is the default when the axis is given
    with PyTorch's keyword ``dim=``, so ``values, idx = x.max(dim=1)`` works as in PyTorch, while
    ``x.max(axis=1)`` / ``x.max(1)`` give the values only, as NumPy."""
    return _extreme(R.MAX, "argmax", x, axis, keepdims, dim, keepdim, return_indices)


@_doc(R.MIN)
def min(x, axis=None, keepdims=False, *, dim=None, keepdim=None, return_indices=None):
    """As :func:`max`: ``(values, indices)`` with ``return_indices=True`` or ``dim=``."""
    return _extreme(R.MIN, "argmin", x, axis, keepdims, dim, keepdim, return_indices)


@_doc(R.MATMUL)
def matmul(a, b):
    return apply(R.MATMUL, (a, b))


@_doc(R.TRANSPOSE)
def transpose(x, axes=None):
    return apply(R.TRANSPOSE, (x,), {"axes": None if axes is None else tuple(axes)})


permute = transpose


@_doc(R.RESHAPE)
def reshape(x, shape):
    return apply(R.RESHAPE, (x,), {"shape": tuple(shape) if not isinstance(shape, int) else shape})


@_doc(R.CONCAT)
def concat(xs, axis=0, *, dim=None):
    axis, _ = _pt_axis(axis, False, dim, None, "concat", default_axis=0)
    xs = list(xs)
    if not xs:
        raise ValueError("concat: need at least one tensor")
    return apply(R.CONCAT, tuple(xs), {"axis": axis})


@_doc(R.STACK)
def stack(xs, axis=0, *, dim=None):
    axis, _ = _pt_axis(axis, False, dim, None, "stack", default_axis=0)
    xs = list(xs)
    if not xs:
        raise ValueError("stack: need at least one tensor")
    return apply(R.STACK, tuple(xs), {"axis": axis})


def split(x, sections, axis=0, *, dim=None):
    """Split along ``axis`` into ``sections`` equal parts (an int) or at the given indices (a list);
    composite: each part is a slice (getitem), so each part's gradient lands in its block."""
    axis, _ = _pt_axis(axis, False, dim, None, "split", default_axis=0)
    n = x.shape[axis]
    if isinstance(sections, int):
        if sections <= 0 or n % sections:
            raise ValueError(f"split: axis {axis} of size {n} does not divide into {sections} equal parts")
        step = n // sections
        bounds = list(range(0, n + 1, step))
    else:
        bounds = [0] + [int(i) for i in sections] + [n]
    ax = axis % x.ndim
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        idx = (slice(None),) * ax + (slice(lo, hi),)
        out.append(apply(R.GETITEM, (x,), {"idx": idx}))
    return out


@_doc(R.GETITEM)
def getitem(x, idx):
    if isinstance(idx, Tensor):
        idx = idx.data
    elif isinstance(idx, tuple):
        idx = tuple(i.data if isinstance(i, Tensor) else i for i in idx)
    elif isinstance(idx, list):
        idx = np.asarray(idx)
    return apply(R.GETITEM, (x,), {"idx": idx})


@_doc(R.TAKE)
def take(x, indices, sparse=False):
    idx = indices.data if isinstance(indices, Tensor) else np.asarray(indices)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"take: indices must be integers, got dtype {idx.dtype}")
    sparse = bool(sparse) and isinstance(x, Tensor) and x.is_leaf
    try:                  # the bounds are checked by the lookup itself: no extra pass on the hot path
        return apply(R.TAKE, (x,), {"idx": idx, "sparse": sparse})
    except IndexError:
        n = np.shape(x)[0]
        bad = int(idx.max()) if idx.max() >= n else int(idx.min())
        raise IndexError(f"take: index {bad} out of range for a table of {n} rows "
                         f"(shape {np.shape(x)})") from None


@_doc(R.EINSUM)
def einsum(subscripts, *operands):
    return apply(R.EINSUM, (subscripts, *operands))


@_doc(R.BILINEAR)
def bilinear(x, V):
    return apply(R.BILINEAR, (x, V))


def outer(a, b):
    """z = a bᵀ for vectors (flattened, as np.outer) -- composite: a[:, None] * b[None, :]."""
    return reshape(a, (-1, 1)) * reshape(b, (1, -1))


@_doc(R.SOFTMAX)
def softmax(x, axis=-1, *, dim=None):
    axis, _ = _pt_axis(axis, False, dim, None, "softmax", default_axis=-1)
    return apply(R.SOFTMAX, (x,), {"axis": axis})


@_doc(R.LOG_SOFTMAX)
def log_softmax(x, axis=-1, *, dim=None):
    axis, _ = _pt_axis(axis, False, dim, None, "log_softmax", default_axis=-1)
    return apply(R.LOG_SOFTMAX, (x,), {"axis": axis})


@_doc(R.LOGSUMEXP)
def logsumexp(x, axis=-1, keepdims=False, *, dim=None, keepdim=None):
    axis, keepdims = _pt_axis(axis, keepdims, dim, keepdim, "logsumexp", default_axis=-1)
    return apply(R.LOGSUMEXP, (x,), {"axis": axis, "keepdims": keepdims})


@_doc(R.SMAX)
def smax(a, axis=-1, keepdims=False):
    return apply(R.SMAX, (a,), {"axis": axis, "keepdims": keepdims})


@_doc(R.SOFTMAX_CROSS_ENTROPY)
def softmax_cross_entropy(logits, targets, weight=None):
    """``targets``: class indices (N,) or one-hot/soft rows (N, K).  ``weight``: per-example weights
    (default 1/N, i.e. the mean).  Returns a scalar."""
    t = targets.data if isinstance(targets, Tensor) else np.asarray(targets)
    z = logits.data if isinstance(logits, Tensor) else np.asarray(logits)
    if t.dtype.kind in "iu":
        if t.shape != z.shape[:-1]:
            raise ValueError(f"softmax_cross_entropy: class-index targets of shape {t.shape} for logits of shape {z.shape}")
        if t.size and (t.min() < 0 or t.max() >= z.shape[-1]):
            raise ValueError(f"softmax_cross_entropy: class index out of range [0, {z.shape[-1]}) in targets")
    else:
        if t.shape != z.shape:
            raise ValueError(f"softmax_cross_entropy: soft targets of shape {t.shape} for logits of shape {z.shape}")
        t = t.astype(z.dtype, copy=False)
    n = int(np.prod(z.shape[:-1])) if z.ndim > 1 else 1
    w = (1.0 / builtins.max(n, 1)) if weight is None else np.asarray(weight.data if isinstance(weight, Tensor) else weight,
                                                             dtype=z.dtype)
    return apply(R.SOFTMAX_CROSS_ENTROPY, (logits, t, w))


# ------------------------------------------------------------------------------------------------
# Composites a NumPy/PyTorch user reaches for (no rules of their own: built on the primitives above)
# ------------------------------------------------------------------------------------------------
def _pt_axis(axis, keepdims, dim, keepdim, where, default_axis=None):
    """NumPy's ``axis``/``keepdims`` are the names; PyTorch's ``dim``/``keepdim`` are accepted."""
    if dim is not None:
        if axis is not None and axis != default_axis:
            raise TypeError(f"{where}: got both axis={axis!r} and dim={dim!r}; use one (axis is NumPy's name, "
                            f"dim PyTorch's)")
        axis = dim
    if keepdim is not None:
        keepdims = keepdim
    return axis, bool(keepdims)


def _shape_of(x):
    return x.shape if isinstance(x, Tensor) else np.shape(x)


def _arr(x):
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def cat(xs, axis=0, *, dim=None):
    """PyTorch's name for :func:`concat`."""
    return concat(xs, axis, dim=dim)


def unsqueeze(x, axis=None, *, dim=None):
    """Insert an axis of size 1 at position ``axis`` (negative counts from the end of the result,
    as ``np.expand_dims``/``torch.unsqueeze``).  Composite: a reshape."""
    axis, _ = _pt_axis(axis, False, dim, None, "unsqueeze")
    if axis is None:
        raise TypeError("unsqueeze: missing the axis (unsqueeze(x, axis))")
    shp = list(_shape_of(x))
    n = len(shp) + 1
    if not -n <= axis < n:
        raise IndexError(f"unsqueeze: axis {axis} out of range for a result with {n} axes (input shape {tuple(shp)})")
    shp.insert(axis % n, 1)
    return reshape(x, tuple(shp))


def squeeze(x, axis=None, *, dim=None):
    """Remove axes of size 1: all of them (``axis=None``), or the given one(s) -- an axis that is
    not of size 1 is an error (NumPy's rule; PyTorch silently keeps it).  Composite: a reshape."""
    axis, _ = _pt_axis(axis, False, dim, None, "squeeze")
    shp = _shape_of(x)
    if axis is None:
        axes = [i for i, s in enumerate(shp) if s == 1]
    else:
        axes = [a % len(shp) for a in (axis if isinstance(axis, (tuple, list)) else (axis,))]
        bad = [a for a in axes if shp[a] != 1]
        if bad:
            raise ValueError(f"squeeze: axis {bad[0]} of shape {tuple(shp)} has size {shp[bad[0]]}, not 1")
    return reshape(x, tuple(s for i, s in enumerate(shp) if i not in axes))


def flatten(x, start_axis=0, end_axis=-1, *, start_dim=None, end_dim=None):
    """Merge axes start_axis … end_axis (inclusive) into one (PyTorch's ``flatten``; ``start_dim``,
    ``end_dim`` accepted).  ``flatten(x)`` is 1-D.  Composite: a reshape."""
    start_axis = start_axis if start_dim is None else start_dim
    end_axis = end_axis if end_dim is None else end_dim
    shp = tuple(_shape_of(x))
    if not shp:
        return reshape(x, (1,))
    a, b = start_axis % len(shp), end_axis % len(shp)
    if a > b:
        raise ValueError(f"flatten: start axis {start_axis} comes after end axis {end_axis} for shape {shp}")
    return reshape(x, shp[:a] + (-1 if 0 not in shp[a:b + 1] else 0,) + shp[b + 1:])


def view(x, *shape):
    """PyTorch's name for :func:`reshape` (chainrule arrays need no contiguity)."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return reshape(x, shape)


def broadcast_to(x, shape):
    """x broadcast to ``shape`` (NumPy's rules).  Composite: x + zeros(shape), so the gradient is
    summed back over the broadcast axes by the one ``unbroadcast``."""
    shape = tuple(int(s) for s in shape)
    a = _arr(x)
    try:
        np.broadcast_shapes(a.shape, shape)
        if np.broadcast_shapes(a.shape, shape) != shape:
            raise ValueError
    except ValueError:
        raise ValueError(f"broadcast_to: cannot broadcast shape {a.shape} to {shape}") from None
    if a.shape == shape:
        return x if isinstance(x, Tensor) else Tensor._wrap(a)
    return add(x, np.zeros(shape, dtype=a.dtype))


def expand(x, *shape):
    """PyTorch's ``expand``: :func:`broadcast_to` where −1 keeps that axis's size."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    cur = _shape_of(x)
    lead = len(shape) - len(cur)
    if lead < 0:
        raise ValueError(f"expand: {len(shape)} sizes for a tensor of shape {tuple(cur)}")
    shape = tuple(cur[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(shape))
    return broadcast_to(x, shape)


def clone(x):
    """A copy that stays in the graph (∂/∂x = identity), as PyTorch's ``clone``; use
    ``x.detach()`` to cut it from the graph.  Composite: x · 1."""
    a = _arr(x)
    return mul(x, a.dtype.type(1)) if a.dtype.kind in "fc" else Tensor._wrap(a.copy())


def swapaxes(x, axis1, axis2):
    """Swap two axes (NumPy's ``swapaxes``; what PyTorch's ``transpose(a, b)`` does)."""
    n = len(_shape_of(x))
    axes = list(range(n))
    try:
        axes[axis1], axes[axis2] = axes[axis2], axes[axis1]
    except IndexError:
        raise IndexError(f"swapaxes: axes ({axis1}, {axis2}) out of range for a tensor with {n} axes") from None
    return transpose(x, axes)


def _arg(fn, where, x, axis, keepdims, dim, keepdim):
    axis, keepdims = _pt_axis(axis, keepdims, dim, keepdim, where)
    a = _arr(x)
    out = getattr(np, fn)(a, axis=axis)
    if keepdims:
        out = np.expand_dims(out, axis) if axis is not None else out.reshape((1,) * a.ndim)
    return Tensor._wrap(np.asarray(out, dtype=np.int64))


def argmax(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """Index of the largest element (over the flattened tensor when ``axis`` is None; the first
    one on ties); an int64 tensor, no gradient."""
    return _arg("argmax", "argmax", x, axis, keepdims, dim, keepdim)


def argmin(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """Index of the smallest element (see :func:`argmax`)."""
    return _arg("argmin", "argmin", x, axis, keepdims, dim, keepdim)


class _ValuesIndices(tuple):
    """``(values, indices)`` with attribute access, as PyTorch's ``torch.return_types.max``."""
    __slots__ = ()

    def __new__(cls, values, indices):
        return tuple.__new__(cls, (values, indices))

    values = property(lambda self: self[0])
    indices = property(lambda self: self[1])


def _extreme(op, argname, x, axis, keepdims, dim, keepdim, return_indices):
    if return_indices is None:
        return_indices = dim is not None
    axis, keepdims = _pt_axis(axis, keepdims, dim, keepdim, op.name)
    values = apply(op, (x,), {"axis": axis, "keepdims": keepdims})
    if not return_indices:
        return values
    if axis is not None and not isinstance(axis, int):
        raise TypeError(f"{op.name}: indices need a single axis, got axis={axis!r}")
    return _ValuesIndices(values, _arg(argname, argname, x, axis, keepdims, None, None))


def index_put(x, idx, values):
    """Functional item assignment: a new tensor equal to x except ``out[idx] = values`` (NumPy's
    assignment semantics: ``values`` broadcast to ``x[idx]``'s shape; with repeated indices the
    last write wins).  Gradients: x̄ = g with the written positions zeroed; v̄ = g[idx] (summed
    over broadcast axes).  Composite: ``where(mask, gather(values), x)`` -- the values are
    gathered into x's shape through an integer index, so the gradient is the engine's getitem
    scatter-add.  ``t[idx] = v`` on a tensor that requires grad refuses and points here."""
    a = _arr(x)
    idx = plain_index(idx)
    try:
        target_shape = a[idx].shape
        v = _arr(values)
        np.broadcast_shapes(v.shape, target_shape)
    except (IndexError, ValueError) as e:
        raise type(e)(f"index_put: {e} (tensor of shape {a.shape}, values of shape {np.shape(_arr(values))})") from None
    pos = np.zeros(a.shape, dtype=np.intp)
    mask = np.zeros(a.shape, dtype=bool)
    pos[idx] = np.arange(int(np.prod(target_shape)), dtype=np.intp).reshape(target_shape)
    mask[idx] = True
    flat = reshape(broadcast_to(values if isinstance(values, Tensor) else v.astype(a.dtype, copy=False),
                                target_shape), (-1,))
    if flat.shape[0] == 0:
        return clone(x)
    return where(mask, apply(R.GETITEM, (flat,), {"idx": pos}), x)


# ================================================================================================
# The tensor namespace (what the rules compute with under create_graph)
# ================================================================================================
def _const(x):
    return x.data if isinstance(x, Tensor) else x


def _expand_dims(x, axes):
    shape = list(x.shape)
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    n = len(shape) + len(axes)
    for a in sorted(a % n for a in axes):
        shape.insert(a, 1)
    return reshape(x, tuple(shape))


def _scatter(g, idx, shape, dtype=None):
    return apply(R.SCATTER, (g,), {"idx": idx, "shape": shape, "dtype": dtype})


def _row_grad(idx, g, shape, sparse):
    return apply(R.SCATTER, (g,), {"idx": idx, "shape": shape})     # dense under create_graph


def _cast(x, dtype):
    return x if x.dtype == dtype else apply(R.CAST, (x,), {"dtype": np.dtype(dtype)})


def _einsum_ns(spec, *ops, optimize=False):
    return einsum(spec, *ops)


TENSORS = SimpleNamespace(
    name="chainrule", exp=exp, log=log, sin=sin, cos=cos, tanh=tanh,
    sqrt=sqrt, sign=np.sign, sum=sum, where=lambda c, x, y: where(_const(c), x, y),
    broadcast_to=lambda x, shape: apply(R.BROADCAST_TO, (x,), {"shape": tuple(shape)}), expand_dims=_expand_dims, reshape=reshape,
    transpose=transpose, swapaxes=lambda x, a, b: transpose(x, _swapped(x.ndim, a, b)),
    einsum=_einsum_ns, equal=np.equal, sigmoid=sigmoid, softmax=softmax, log_softmax=log_softmax,
    scatter=_scatter, row_grad=_row_grad, const=_const, cast=_cast,
)
TENSORS.__doc__ = "chainrule's differentiable ops under the names of rules.NUMPY (create_graph)."


def _swapped(ndim, a, b):
    axes = list(range(ndim))
    axes[a], axes[b] = axes[b], axes[a]
    return tuple(axes)


def _attached(value, node):
    t = Tensor._wrap(value, requires_grad=True)
    t._node = node
    tg = getattr(node, "tangent", None)            # forward over reverse: the value's tangents
    if tg is not None:
        t._tangent = tg
    return t


def _as_input(value, parent):
    if parent is None:
        return value                              # a constant input: stays an array
    if type(parent) is ag.Node:
        return _attached(value, parent)
    return parent                                 # the leaf tensor itself


def _saved_tensors(node):
    """The node's saved values as its backward rule must see them under create_graph: inputs and
    output as tensors attached to the graph, derived values recomputed from them, constants as is."""
    parents, plan = node.parents, node.op.plan
    vals, derived = [], []
    for k, (what, v) in enumerate(zip(plan, node.saved)):
        if what is None:
            vals.append(v)
        elif what == "ans":
            vals.append(_attached(v, node))
        elif type(what) is int:
            vals.append(_as_input(v, parents[what] if what < len(parents) else None))
        elif type(what) is tuple:
            vals.append(tuple(_as_input(vi, p) for vi, p in zip(v, parents[what[1]:])))
        else:
            vals.append(None)
            derived.append(k)
    if derived:
        named = {nm: v for k, (nm, v) in enumerate(zip(node.op.names, vals)) if k not in derived}
        for k in derived:
            vals[k] = plan[k](**named)
    return vals


def _graph_backward(node, g):
    """One node's backward rule run on tensors (create_graph): the gradients it returns are tensors
    with a graph of their own."""
    op = node.op
    if not op.differentiable:
        raise RuntimeError(
            f"create_graph: the backward rule of op '{op.name}' computes on raw NumPy arrays (an old-style "
            f"rule backward(g, saved, needs)), so its gradient cannot be differentiated again. Write it as "
            f"backward(g, needs, <saved names>) with operators and chainrule.ops.rules.xp functions "
            f"(see chainrule.primitive) to get higher-order gradients.")
    saved = _saved_tensors(node)
    try:
        outs = op.backward(g, node.needs, *saved)
    except Exception as e:
        raise RuntimeError(
            f"create_graph: the backward rule of op '{op.name}' could not run on chainrule tensors "
            f"({type(e).__name__}: {e}). A rule that should give higher-order gradients may use only "
            f"operators and the functions of the namespace chainrule.ops.rules.xp, not NumPy directly.") from e
    for o in outs:
        if o is not None and type(o) is not Tensor:
            raise RuntimeError(
                f"create_graph: the backward rule of op '{op.name}' returned a "
                f"{'row-sparse gradient' if type(o) is RowSparseGrad else type(o).__name__} instead of a "
                f"tensor: it computed outside chainrule (with NumPy directly), so its gradient cannot be "
                f"differentiated again. Use operators and chainrule.ops.rules.xp functions in the rule.")
    return outs


class _Graph:
    """What run_backward calls under create_graph."""
    backward = staticmethod(_graph_backward)
    cast = staticmethod(_cast)


def run_backward_graph(node, seed, capture=None):
    """run_backward with create_graph: the rules run on :data:`TENSORS` (set once for the pass),
    gradients are tensors, and the graph is kept (it is differentiated through again)."""
    with R.use_namespace(TENSORS), ag.enable_grad():
        return ag.run_backward(node, seed, True, capture, graph=_Graph)


GRAPH_MODE[0] = run_backward_graph


# ================================================================================================
# A user's own primitive
# ================================================================================================
def primitive(name, forward, backward, derive=None, jvp=None):
    """Add a primitive op -- a forward on NumPy arrays and its backward rule -- and return the function
    that applies it to tensors (PyTorch's ``autograd.Function``, HIPS autograd's ``defvjp``).

    Args:
        name: the op's name in the rule table (error messages, ``draw``, ``detect_anomaly``).  A name
            that exists already raises ``ValueError``: a built-in is never replaced silently.
        forward: ``forward(*arrays, **params) -> (out, saved)``, ``saved`` the tuple of values the
            backward needs.
        backward: ``backward(g, needs, *saved) -> tuple`` of one gradient (or None) per input,
            ``g = ∂L/∂out``; ``needs[i]`` says whether input i needs one.  Its parameter names say
            what each saved value is: a name of one of forward's inputs *is* that input, ``ans`` is
            the output, anything else a constant.
        derive: ``{name: fn(**other_saved)}`` for saved values computed from the inputs (see
            :func:`chainrule.ops.rules.defop`).
        jvp: the tangent rule for forward mode (:func:`chainrule.jvp`), ``jvp(d, *saved) -> ż`` with
            ``d`` the inputs' tangents (None where zero) and the backward's saved values; without
            one, forward mode uses the double-VJP trick for this op (first order only).

    Returns:
        ``f(*tensors, **params)`` recording the op.

    Written with operators and the namespace ``chainrule.ops.rules.xp`` (``xp.exp``, ``xp.sum``,
    ``xp.where``, ...), a rule gives higher-order gradients for free: under ``create_graph`` it runs on
    tensors.  A rule that calls NumPy directly gives first derivatives, and ``create_graph`` through it
    raises an error naming the op.

    >>> import numpy as np, chainrule as cr
    >>> from chainrule.ops.rules import xp
    >>> def fwd(x):
    ...     return np.sin(x), (x,)
    >>> def bwd(g, needs, x):                   # d sin x = cos x; d cos x = −sin x: written on xp
    ...     return (g * xp.cos(x),)
    >>> sin = cr.primitive("my_sin", fwd, bwd)
    >>> x = cr.tensor([0.0, 1.0], requires_grad=True, dtype="float64")
    >>> cr.gradcheck(lambda x: sin(x).sum(), x, order=2)
    True
    >>> np.round(cr.grad(lambda x: cr.grad(lambda x: sin(x).sum())(x).sum())(x.data), 6)   # −sin x
    array([-0.      , -0.841471])
    >>> _ = cr.ops.RULES.pop("my_sin")           # (the table is global: tidy up after the example)
    """
    op = R.defop(name, forward, backward, derive=derive, jvp=jvp)

    def f(*args, **params):
        return apply(op, args, params or None)
    f.__name__ = name
    f.__doc__ = forward.__doc__
    f.op = op
    return f
