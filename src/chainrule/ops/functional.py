"""The ops as functions of tensors -- the one definition of every op, and of Tensor's operators.

Primitives call :func:`~chainrule.tensor.apply` with their rule from :mod:`chainrule.ops.rules`
(the rule's formula, forward | backward, is part of their docstring).  Composites (mean, split,
outer, rrelu, ...) are written with primitives and need no rule of their own.

The :class:`~chainrule.tensor.Tensor` operators and op methods *are* these functions: the table
:data:`TENSOR_METHODS` at the end of this section says which (``x + y`` is ``add(x, y)``, ``2 - x``
is ``sub(2, x)``, ``x.sum(1)`` is ``sum(x, 1)``, ``x.T`` is ``transpose(x)``) and installs them on
the class.  The tensor namespace :data:`TENSORS` that the rules run on under ``create_graph`` is
built from these functions too (the gradients then record a graph of their own: higher order from
the same rule table).

Every public op documents its formula, Args, Returns and a small example (run by pytest's
``--doctest-modules``).
"""
from __future__ import annotations

import builtins
import inspect
import textwrap
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
    """Put the rule's formula (``forward | backward``) after the first paragraph of the docstring."""
    def deco(f):
        head, _, rest = (f.__doc__ or "").partition("\n\n")
        formula = textwrap.indent(inspect.cleandoc(op.__doc__), "    ")
        f.__doc__ = f"{head}\n\n{formula}\n\n{rest}"
        f.op = op
        return f
    return deco


# ------------------------------------------------------------------ arithmetic
@_doc(R.ADD)
def add(x, y):
    """Elementwise sum, with NumPy broadcasting: ``x + y``.

    Args:
        x, y: tensors, arrays or numbers (broadcast against each other).

    Returns:
        Tensor: ``x + y``.

    >>> import chainrule as cr
    >>> x = cr.tensor([1.0, 2.0], requires_grad=True)
    >>> z = cr.add(x, 10); z.sum().backward()
    >>> z.tolist(), x.grad.tolist()
    ([11.0, 12.0], [1.0, 1.0])
    """
    return apply(R.ADD, (x, y))


@_doc(R.SUB)
def sub(x, y):
    """Elementwise difference, with broadcasting: ``x - y``.

    Args:
        x, y: tensors, arrays or numbers.

    Returns:
        Tensor: ``x - y``.

    >>> import chainrule as cr
    >>> y = cr.tensor([1.0, 2.0], requires_grad=True)
    >>> z = cr.sub(10, y); z.sum().backward()
    >>> z.tolist(), y.grad.tolist()
    ([9.0, 8.0], [-1.0, -1.0])
    """
    return apply(R.SUB, (x, y))


@_doc(R.MUL)
def mul(x, y):
    """Elementwise (Hadamard) product, with broadcasting: ``x * y``.

    Args:
        x, y: tensors, arrays or numbers.

    Returns:
        Tensor: ``x ⊙ y``.

    >>> import chainrule as cr
    >>> x = cr.tensor([1.0, 2.0], requires_grad=True)
    >>> z = cr.mul(x, [3.0, 4.0]); z.sum().backward()
    >>> z.tolist(), x.grad.tolist()
    ([3.0, 8.0], [3.0, 4.0])
    """
    return apply(R.MUL, (x, y))


@_doc(R.DIV)
def div(x, y):
    """Elementwise quotient, with broadcasting: ``x / y``.

    Args:
        x, y: tensors, arrays or numbers.

    Returns:
        Tensor: ``x / y``.

    >>> import chainrule as cr
    >>> y = cr.tensor([1.0, 2.0], requires_grad=True)
    >>> z = cr.div(1, y); z.sum().backward()
    >>> z.tolist(), y.grad.tolist()                 # ȳ = −1/y²
    ([1.0, 0.5], [-1.0, -0.25])
    """
    return apply(R.DIV, (x, y))


@_doc(R.NEG)
def neg(x):
    """Negation: ``-x``.

    Args:
        x: a tensor.

    Returns:
        Tensor: ``−x``.

    >>> import chainrule as cr
    >>> cr.neg(cr.tensor([1.0, -2.0])).tolist()
    [-1.0, 2.0]
    """
    return apply(R.NEG, (x,))


@_doc(R.POW)
def pow(x, y):
    """Elementwise power, with broadcasting: ``x ** y``.

    Args:
        x: the base (a tensor, array or number).
        y: the exponent (a number, or a tensor: its gradient needs x > 0, and is 0 where x ≤ 0).

    Returns:
        Tensor: ``x ** y``.

    >>> import chainrule as cr
    >>> x = cr.tensor([1.0, 3.0], requires_grad=True)
    >>> z = cr.pow(x, 2); z.sum().backward()
    >>> z.tolist(), x.grad.tolist()
    ([1.0, 9.0], [2.0, 6.0])
    """
    return apply(R.POW, (x, y))


# ------------------------------------------------------------------ elementwise functions
@_doc(R.EXP)
def exp(x):
    """Elementwise exponential.

    Args:
        x: a tensor.

    Returns:
        Tensor: ``eˣ``.

    >>> import chainrule as cr
    >>> x = cr.tensor([0.0, 1.0], requires_grad=True)
    >>> z = cr.exp(x); z.sum().backward()
    >>> print(z.data.round(4), x.grad.round(4))
    [1.     2.7183] [1.     2.7183]
    """
    return apply(R.EXP, (x,))


@_doc(R.LOG)
def log(x):
    """Elementwise natural logarithm.

    Args:
        x: a tensor (positive: log of 0 is −inf, of a negative number nan, as NumPy).

    Returns:
        Tensor: ``log x``.

    >>> import chainrule as cr
    >>> x = cr.tensor([1.0, 4.0], requires_grad=True)
    >>> cr.log(x).sum().backward(); x.grad.tolist()
    [1.0, 0.25]
    """
    return apply(R.LOG, (x,))


@_doc(R.SIN)
def sin(x):
    """Elementwise sine.

    Args:
        x: a tensor (radians).

    Returns:
        Tensor: ``sin x``.

    >>> import chainrule as cr
    >>> x = cr.tensor([0.0], requires_grad=True)
    >>> cr.sin(x).sum().backward(); x.grad.tolist()
    [1.0]
    """
    return apply(R.SIN, (x,))


@_doc(R.COS)
def cos(x):
    """Elementwise cosine.

    Args:
        x: a tensor (radians).

    Returns:
        Tensor: ``cos x``.

    >>> import chainrule as cr
    >>> x = cr.tensor([0.0], requires_grad=True)
    >>> z = cr.cos(x); z.sum().backward()
    >>> z.tolist(), x.grad.tolist()
    ([1.0], [-0.0])
    """
    return apply(R.COS, (x,))


@_doc(R.SQRT)
def sqrt(x):
    """Elementwise square root.

    Args:
        x: a tensor (non-negative; the gradient at 0 is inf).

    Returns:
        Tensor: ``√x``.

    >>> import chainrule as cr
    >>> x = cr.tensor([4.0, 16.0], requires_grad=True)
    >>> z = cr.sqrt(x); z.sum().backward()
    >>> z.tolist(), x.grad.tolist()
    ([2.0, 4.0], [0.25, 0.125])
    """
    return apply(R.SQRT, (x,))


@_doc(R.ABS)
def abs(x):
    """Elementwise absolute value: ``abs(x)``.

    Args:
        x: a tensor.

    Returns:
        Tensor: ``|x|``.

    >>> import chainrule as cr
    >>> x = cr.tensor([-2.0, 0.0, 3.0], requires_grad=True)
    >>> z = cr.abs(x); z.sum().backward()
    >>> z.tolist(), x.grad.tolist()
    ([2.0, 0.0, 3.0], [-1.0, 0.0, 1.0])
    """
    return apply(R.ABS, (x,))


@_doc(R.TANH)
def tanh(x):
    """Elementwise hyperbolic tangent.

    Args:
        x: a tensor.

    Returns:
        Tensor: ``tanh x``, in (−1, 1).

    >>> import chainrule as cr
    >>> x = cr.tensor([0.0, 1.0], requires_grad=True)
    >>> z = cr.tanh(x); z.sum().backward()
    >>> print(z.data.round(4), x.grad.round(4))
    [0.     0.7616] [1.   0.42]
    """
    return apply(R.TANH, (x,))


@_doc(R.SIGMOID)
def sigmoid(x):
    """Elementwise logistic sigmoid.

    Args:
        x: a tensor (any magnitude: no overflow for large |x|).

    Returns:
        Tensor: ``σ(x)``, in (0, 1).

    >>> import chainrule as cr
    >>> x = cr.tensor([0.0, 2.0], requires_grad=True)
    >>> z = cr.sigmoid(x); z.sum().backward()
    >>> print(z.data.round(4), x.grad.round(4))
    [0.5    0.8808] [0.25  0.105]
    """
    return apply(R.SIGMOID, (x,))


@_doc(R.RELU)
def relu(x):
    """Rectified linear unit, elementwise.

    Args:
        x: a tensor.

    Returns:
        Tensor: ``max(x, 0)``.

    >>> import chainrule as cr
    >>> x = cr.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    >>> z = cr.relu(x); z.sum().backward()
    >>> z.tolist(), x.grad.tolist()
    ([0.0, 0.0, 2.0], [0.0, 0.0, 1.0])
    """
    return apply(R.RELU, (x,))


@_doc(R.LEAKY_RELU)
def leaky_relu(x, negative_slope=0.01):
    """Leaky ReLU, elementwise: x for x > 0, ``negative_slope · x`` otherwise.

    Args:
        x: a tensor.
        negative_slope: the slope a for x ≤ 0 (a number, or an array broadcasting to x).

    Returns:
        Tensor: x's shape.

    >>> import chainrule as cr
    >>> x = cr.tensor([-2.0, 2.0], requires_grad=True)
    >>> z = cr.leaky_relu(x, 0.25); z.sum().backward()
    >>> z.tolist(), x.grad.tolist()
    ([-0.5, 2.0], [0.25, 1.0])
    """
    return apply(R.LEAKY_RELU, (x,), {"slope": negative_slope})


def rrelu(x, lower=1.0 / 8, upper=1.0 / 3, training=False, generator=None):
    """Randomised leaky ReLU: while training every element gets its own slope a ~ U[lower, upper];
    in eval the slope is the mean (lower + upper)/2.

    Composite of :func:`leaky_relu` with an array of slopes:
    z = x if x > 0 else a ⊙ x  |  x̄ = g if x > 0 else a ⊙ g.

    Args:
        x: a tensor.
        lower, upper: the range of the slopes, 0 ≤ lower ≤ upper.
        training: draw a slope per element (True) or use the mean slope (False).
        generator: a ``np.random.Generator`` for the slopes (seed it for reproducibility; default
            chainrule's generator, see :func:`chainrule.manual_seed`).

    Returns:
        Tensor: x's shape.

    >>> import numpy as np, chainrule as cr
    >>> x = cr.tensor([-4.0, 4.0])
    >>> cr.rrelu(x, 0.25, 0.75).tolist()            # eval: slope (0.25 + 0.75)/2
    [-2.0, 4.0]
    >>> z = cr.rrelu(x, 0.25, 0.75, training=True, generator=np.random.default_rng(0))
    >>> bool(-3.0 <= z.data[0] <= -1.0), float(z.data[1])
    (True, 4.0)
    """
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
    """Softplus, elementwise: a smooth ReLU.

    Args:
        x: a tensor (any magnitude: no overflow).

    Returns:
        Tensor: ``log(1 + eˣ)``.

    >>> import chainrule as cr
    >>> x = cr.tensor([0.0], requires_grad=True)
    >>> z = cr.softplus(x); z.sum().backward()
    >>> print(z.data.round(4), x.grad)
    [0.6931] [0.5]
    """
    return apply(R.SOFTPLUS, (x,))


@_doc(R.MAXIMUM)
def maximum(x, y):
    """Elementwise maximum of two tensors, with broadcasting.

    Args:
        x, y: tensors, arrays or numbers.

    Returns:
        Tensor: ``max(x, y)`` elementwise.

    >>> import chainrule as cr
    >>> x = cr.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> z = cr.maximum(x, 2.0); z.sum().backward()
    >>> z.tolist(), x.grad.tolist()                 # a tie shares the gradient
    ([2.0, 2.0, 3.0], [0.0, 0.5, 1.0])
    """
    return apply(R.MAXIMUM, (x, y))


@_doc(R.MINIMUM)
def minimum(x, y):
    """Elementwise minimum of two tensors, with broadcasting.

    Args:
        x, y: tensors, arrays or numbers.

    Returns:
        Tensor: ``min(x, y)`` elementwise.

    >>> import chainrule as cr
    >>> x = cr.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> z = cr.minimum(x, 2.0); z.sum().backward()
    >>> z.tolist(), x.grad.tolist()
    ([1.0, 2.0, 2.0], [1.0, 0.5, 0.0])
    """
    return apply(R.MINIMUM, (x, y))


@_doc(R.CLIP)
def clip(x, lo=None, hi=None):
    """Clamp every element into [lo, hi] (PyTorch's ``clamp``).

    Args:
        x: a tensor.
        lo, hi: the bounds (numbers or arrays; None for no bound).

    Returns:
        Tensor: x's shape.

    >>> import chainrule as cr
    >>> x = cr.tensor([-2.0, 0.5, 2.0], requires_grad=True)
    >>> z = cr.clip(x, -1, 1); z.sum().backward()
    >>> z.tolist(), x.grad.tolist()
    ([-1.0, 0.5, 1.0], [0.0, 1.0, 0.0])
    """
    return apply(R.CLIP, (x,), {"lo": lo, "hi": hi})


@_doc(R.WHERE)
def where(cond, x, y):
    """Select elementwise: x where ``cond`` is True, y elsewhere (with broadcasting).

    Args:
        cond: a boolean array or tensor (no gradient).
        x, y: tensors, arrays or numbers.

    Returns:
        Tensor: the broadcast shape of cond, x and y.

    >>> import numpy as np, chainrule as cr
    >>> x = cr.tensor([1.0, 2.0], requires_grad=True)
    >>> z = cr.where(np.array([True, False]), x, 0.0); z.sum().backward()
    >>> z.tolist(), x.grad.tolist()
    ([1.0, 0.0], [1.0, 0.0])
    """
    c = cond.data if isinstance(cond, Tensor) else np.asarray(cond)
    if c.dtype != bool:
        raise TypeError(f"where: the condition must be boolean, got dtype {c.dtype}")
    return apply(R.WHERE, (c, x, y))


# ------------------------------------------------------------------ reductions
@_doc(R.SUM)
def sum(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """Sum over ``axis`` (all axes when None).

    Args:
        x: a tensor.
        axis: an int, a tuple of ints, or None (NumPy's name; PyTorch's ``dim`` is accepted).
        keepdims: keep the summed axes with size 1 (PyTorch's ``keepdim`` is accepted).

    Returns:
        Tensor: x's shape without the summed axes (a scalar for ``axis=None``).

    >>> import chainrule as cr
    >>> x = cr.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    >>> z = cr.sum(x, axis=1); z.sum().backward()
    >>> z.tolist(), x.grad.tolist()
    ([3.0, 7.0], [[1.0, 1.0], [1.0, 1.0]])
    """
    if dim is not None or keepdim is not None:
        axis, keepdims = _pt_axis(axis, keepdims, dim, keepdim, "sum")
    return apply(R.SUM, (x,), {"axis": axis, "keepdims": keepdims})


def mean(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """Mean over ``axis`` (all axes when None).

    z = (1/n) Σ_axis x, n the number of elements reduced   |   x̄ = g/n broadcast back (composite:
    sum, then scale).  The mean of nothing is nan, with NumPy's warning.

    Args:
        x: a tensor.
        axis: an int, a tuple of ints, or None (``dim`` accepted).
        keepdims: keep the reduced axes with size 1 (``keepdim`` accepted).

    Returns:
        Tensor: x's shape without the reduced axes.

    >>> import chainrule as cr
    >>> x = cr.tensor([[1.0, 2.0], [3.0, 5.0]], requires_grad=True)
    >>> z = cr.mean(x); z.backward()
    >>> z.item(), x.grad.tolist()
    (2.75, [[0.25, 0.25], [0.25, 0.25]])
    """
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
    """Largest element over ``axis`` (all axes when None).

    Args:
        x: a tensor.
        axis: an int, a tuple of ints, or None (NumPy's name).
        keepdims: keep the reduced axes with size 1 (``keepdim`` accepted).
        dim: PyTorch's name for the axis; given this way, the indices are returned too, as
            ``values, idx = x.max(dim=1)`` in PyTorch.
        return_indices: return ``(values, indices)`` (a namedtuple, as ``torch.max(x, dim)``; the
            indices an int64 tensor without gradient).  Default: True when ``dim=`` is given.

    Returns:
        Tensor: the maxima (x's shape without the reduced axes), or ``(values, indices)``.

    >>> import chainrule as cr
    >>> x = cr.tensor([[1.0, 3.0], [4.0, 2.0]], requires_grad=True)
    >>> z = cr.max(x, axis=1); z.sum().backward()
    >>> z.tolist(), x.grad.tolist()
    ([3.0, 4.0], [[0.0, 1.0], [1.0, 0.0]])
    >>> x.max(dim=1).indices.tolist()
    [1, 0]
    """
    if dim is None and keepdim is None and not return_indices:
        return apply(R.MAX, (x,), {"axis": axis, "keepdims": keepdims})
    return _extreme(R.MAX, "argmax", x, axis, keepdims, dim, keepdim, return_indices)


@_doc(R.MIN)
def min(x, axis=None, keepdims=False, *, dim=None, keepdim=None, return_indices=None):
    """Smallest element over ``axis`` (all axes when None); see :func:`max` for the arguments.

    Args:
        x: a tensor.
        axis, keepdims, dim, keepdim, return_indices: as :func:`max` (``dim=`` returns
            ``(values, indices)``).

    Returns:
        Tensor: the minima, or ``(values, indices)``.

    >>> import chainrule as cr
    >>> x = cr.tensor([[1.0, 3.0], [4.0, 2.0]], requires_grad=True)
    >>> z = cr.min(x, axis=0); z.sum().backward()
    >>> z.tolist(), x.grad.tolist()
    ([1.0, 2.0], [[1.0, 0.0], [0.0, 1.0]])
    """
    if dim is None and keepdim is None and not return_indices:
        return apply(R.MIN, (x,), {"axis": axis, "keepdims": keepdims})
    return _extreme(R.MIN, "argmin", x, axis, keepdims, dim, keepdim, return_indices)


@_doc(R.LOGSUMEXP)
def logsumexp(x, axis=-1, keepdims=False, *, dim=None, keepdim=None):
    """log Σ exp(x) over ``axis``, without overflow.

    Args:
        x: a tensor.
        axis: an int or tuple of ints (default the last axis; ``dim`` accepted).
        keepdims: keep the reduced axes with size 1 (``keepdim`` accepted).

    Returns:
        Tensor: x's shape without the reduced axes.

    >>> import chainrule as cr
    >>> x = cr.tensor([[0.0, 0.0], [1000.0, 1000.0]], requires_grad=True, dtype="float64")
    >>> z = cr.logsumexp(x, axis=1); z.sum().backward()
    >>> z.data.round(4).tolist(), x.grad.round(4).tolist()      # x̄ = softmax(x)
    ([0.6931, 1000.6931], [[0.5, 0.5], [0.5, 0.5]])
    """
    if dim is not None or keepdim is not None:
        axis, keepdims = _pt_axis(axis, keepdims, dim, keepdim, "logsumexp", default_axis=-1)
    return apply(R.LOGSUMEXP, (x,), {"axis": axis, "keepdims": keepdims})


# ------------------------------------------------------------------ vector activations
@_doc(R.SOFTMAX)
def softmax(x, axis=-1, *, dim=None):
    """Softmax along ``axis``: positive values that sum to 1.

    Args:
        x: a tensor (any magnitude: shifted by the max).
        axis: the axis normalised over (default the last; ``dim`` accepted).

    Returns:
        Tensor: x's shape.

    >>> import chainrule as cr
    >>> x = cr.tensor([0.0, 0.0, 0.0, 0.0], requires_grad=True)
    >>> z = cr.softmax(x); z[0].backward()
    >>> z.tolist(), x.grad.tolist()                 # y₀ (δ₀ⱼ − yⱼ)
    ([0.25, 0.25, 0.25, 0.25], [0.1875, -0.0625, -0.0625, -0.0625])
    """
    if dim is not None:
        axis, _ = _pt_axis(axis, False, dim, None, "softmax", default_axis=-1)
    return apply(R.SOFTMAX, (x,), {"axis": axis})


@_doc(R.LOG_SOFTMAX)
def log_softmax(x, axis=-1, *, dim=None):
    """Log of the softmax along ``axis``, computed stably (x − logsumexp(x)).

    Args:
        x: a tensor.
        axis: the axis normalised over (default the last; ``dim`` accepted).

    Returns:
        Tensor: x's shape.

    >>> import chainrule as cr
    >>> x = cr.tensor([0.0, 0.0, 0.0, 0.0], requires_grad=True)
    >>> z = cr.log_softmax(x); z[0].backward()
    >>> print(z.data.round(4), x.grad.tolist())
    [-1.3863 -1.3863 -1.3863 -1.3863] [0.75, -0.25, -0.25, -0.25]
    """
    if dim is not None:
        axis, _ = _pt_axis(axis, False, dim, None, "log_softmax", default_axis=-1)
    return apply(R.LOG_SOFTMAX, (x,), {"axis": axis})


@_doc(R.SMAX)
def smax(a, axis=-1, keepdims=False):
    """Seed 001's soft maximum: the softmax-weighted mean of a along ``axis``.

    Args:
        a: a tensor of the n linear pieces.
        axis: the axis of the pieces (default the last).
        keepdims: keep that axis with size 1.

    Returns:
        Tensor: a's shape without ``axis``.

    >>> import chainrule as cr
    >>> a = cr.tensor([0.0, 0.0], requires_grad=True)
    >>> o = cr.smax(a); o.backward()
    >>> o.item(), a.grad.tolist()                   # s (1 + a − o) = ½ (1 + 0 − 0)
    (0.0, [0.5, 0.5])
    """
    return apply(R.SMAX, (a,), {"axis": axis, "keepdims": keepdims})


@_doc(R.SOFTMAX_CROSS_ENTROPY)
def softmax_cross_entropy(logits, targets, weight=None, *, check=True):
    """Cross-entropy of softmax(logits) against targets, in one fused op (see also
    :func:`chainrule.losses.cross_entropy`).

    Args:
        logits: a tensor (N, K) (or (..., K)).
        targets: class indices (N,) or one-hot / soft rows (N, K) (constants).
        weight: per-example weights w_n (default 1/N: the mean).
        check: validate the targets' shape and range; ``check=False`` takes targets and weight as
            given (for a caller that validated them already: ``losses.cross_entropy``).

    Returns:
        Tensor: a scalar.

    >>> import numpy as np, chainrule as cr
    >>> z = cr.tensor([[0.0, 0.0]], requires_grad=True)
    >>> L = cr.softmax_cross_entropy(z, np.array([1])); L.backward()
    >>> print(round(L.item(), 4), z.grad.tolist())  # log 2; softmax − onehot
    0.6931 [[0.5, -0.5]]
    """
    if not check:
        return apply(R.SOFTMAX_CROSS_ENTROPY, (logits, targets, weight))
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


# ------------------------------------------------------------------ linear algebra
@_doc(R.MATMUL)
def matmul(a, b):
    """Matrix product: ``a @ b``.

    Args:
        a, b: tensors or arrays: vectors, matrices, or stacks of matrices (leading axes broadcast).

    Returns:
        Tensor: as ``np.matmul``.

    >>> import numpy as np, chainrule as cr
    >>> a = cr.tensor([[1.0, 2.0]], requires_grad=True)
    >>> z = cr.matmul(a, np.array([[3.0], [4.0]])); z.sum().backward()
    >>> z.tolist(), a.grad.tolist()
    ([[11.0]], [[3.0, 4.0]])
    """
    return apply(R.MATMUL, (a, b))


@_doc(R.EINSUM)
def einsum(subscripts, *operands):
    """Einstein summation, as ``np.einsum`` (``...``, implicit and explicit output).

    Args:
        subscripts: the subscripts string, e.g. ``"ij,jk->ik"``.
        *operands: tensors or arrays.

    Returns:
        Tensor: the contraction.

    >>> import numpy as np, chainrule as cr
    >>> a = cr.tensor([1.0, 2.0], requires_grad=True)
    >>> z = cr.einsum("i,i->", a, np.array([3.0, 4.0])); z.backward()
    >>> z.item(), a.grad.tolist()
    (11.0, [3.0, 4.0])
    """
    return apply(R.EINSUM, (subscripts, *operands))


@_doc(R.BILINEAR)
def bilinear(x, V):
    """The bilinear tensor term of seed 000's RNTN: ``z_k = xᵀ V[:, :, k] x`` for every k.

    Args:
        x: a tensor (..., m).
        V: a tensor (m, m, k).

    Returns:
        Tensor: (..., k).

    >>> import numpy as np, chainrule as cr
    >>> x = cr.tensor([1.0, 2.0], requires_grad=True)
    >>> V = np.eye(2).reshape(2, 2, 1)              # xᵀ I x = ‖x‖²
    >>> z = cr.bilinear(x, V); z.sum().backward()
    >>> z.tolist(), x.grad.tolist()
    ([5.0], [2.0, 4.0])
    """
    return apply(R.BILINEAR, (x, V))


def outer(a, b):
    """Outer product of two vectors (flattened first, as ``np.outer``).

    z = a bᵀ   |   ā = g b,  b̄ = gᵀ a  (composite: ``a[:, None] * b[None, :]``).

    Args:
        a, b: tensors (flattened to vectors).

    Returns:
        Tensor: (a.size, b.size).

    >>> import numpy as np, chainrule as cr
    >>> a = cr.tensor([1.0, 2.0], requires_grad=True)
    >>> z = cr.outer(a, np.array([3.0, 4.0])); z.sum().backward()
    >>> z.tolist(), a.grad.tolist()
    ([[3.0, 4.0], [6.0, 8.0]], [7.0, 7.0])
    """
    return reshape(a, (-1, 1)) * reshape(b, (1, -1))


# ------------------------------------------------------------------ shape ops
@_doc(R.TRANSPOSE)
def transpose(x, *axes):
    """Permute the axes: reversed (``transpose(x)``, ``x.T``: for a matrix the transpose); two ints
    swap those two axes, as PyTorch's ``transpose(x, a, b)``; one tuple (or three or more ints) is
    a full permutation, as NumPy's ``axes``.

    Args:
        x: a tensor.
        *axes: nothing, two axes to swap, or a permutation.

    Returns:
        Tensor: a view of x with its axes permuted.

    >>> import numpy as np, chainrule as cr
    >>> x = cr.tensor(np.zeros((2, 3, 4)))
    >>> cr.transpose(x).shape, cr.transpose(x, 0, 2).shape, cr.transpose(x, (1, 2, 0)).shape
    ((4, 3, 2), (4, 3, 2), (3, 4, 2))
    >>> w = cr.tensor([[1.0, 2.0]], requires_grad=True)
    >>> (w.T * np.array([[3.0], [4.0]])).sum().backward(); w.grad.tolist()
    [[3.0, 4.0]]
    """
    if not axes:
        return apply(R.TRANSPOSE, (x,))
    if len(axes) == 1:
        if axes[0] is None:
            return apply(R.TRANSPOSE, (x,))
        axes = tuple(axes[0])
    elif len(axes) == 2 and isinstance(axes[0], (int, np.integer)) and isinstance(axes[1], (int, np.integer)):
        return swapaxes(x, int(axes[0]), int(axes[1]))
    return apply(R.TRANSPOSE, (x,), {"axes": axes})


@_doc(R.TRANSPOSE)
def permute(x, *axes):
    """A permutation of the axes, as PyTorch's ``permute``: every axis named once.

    Args:
        x: a tensor.
        *axes: the permutation, as ints (``permute(x, 2, 0, 1)``) or one tuple.

    Returns:
        Tensor: a view of x, axis i of the result being axis ``axes[i]`` of x.

    >>> import numpy as np, chainrule as cr
    >>> cr.permute(cr.tensor(np.zeros((2, 3, 4))), 2, 0, 1).shape
    (4, 2, 3)
    """
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    ndim = len(_shape_of(x))
    if len(axes) != ndim:
        raise ValueError(f"permute: {len(axes)} axes given for a tensor with {ndim} axes (shape {_shape_of(x)})")
    return apply(R.TRANSPOSE, (x,), {"axes": axes})


def swapaxes(x, axis1, axis2):
    """Swap two axes (NumPy's ``swapaxes``; what PyTorch's ``transpose(x, a, b)`` does).

    Composite: a :func:`transpose` by the permutation that exchanges axis1 and axis2 (x̄ = g with
    the two axes swapped back).

    Args:
        x: a tensor.
        axis1, axis2: the two axes.

    Returns:
        Tensor: a view of x.

    >>> import numpy as np, chainrule as cr
    >>> cr.swapaxes(cr.tensor(np.zeros((2, 3, 4))), 0, 1).shape
    (3, 2, 4)
    """
    n = len(_shape_of(x))
    axes = list(range(n))
    try:
        axes[axis1], axes[axis2] = axes[axis2], axes[axis1]
    except IndexError:
        raise IndexError(f"swapaxes: axes ({axis1}, {axis2}) out of range for a tensor with {n} axes") from None
    return apply(R.TRANSPOSE, (x,), {"axes": tuple(axes)})


@_doc(R.RESHAPE)
def reshape(x, *shape):
    """The same elements in another shape (one entry may be −1: inferred).

    Args:
        x: a tensor.
        *shape: the new shape, as one tuple (``reshape(x, (2, 3))``, NumPy) or as ints
            (``x.reshape(2, 3)``, PyTorch).

    Returns:
        Tensor: a view of x when NumPy can make one.

    >>> import numpy as np, chainrule as cr
    >>> x = cr.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    >>> z = cr.reshape(x, (2, 2)); (z * np.array([[1.0], [2.0]])).sum().backward()
    >>> z.tolist(), x.grad.tolist()
    ([[1.0, 2.0], [3.0, 4.0]], [1.0, 1.0, 2.0, 2.0])
    """
    if len(shape) == 1:
        shape = shape[0]
        if isinstance(shape, list):
            shape = tuple(shape)
    return apply(R.RESHAPE, (x,), {"shape": shape})


view = reshape       # PyTorch's name (chainrule's arrays need no contiguity)


@_doc(R.CONCAT)
def concat(xs, axis=0, *, dim=None):
    """Join tensors along an existing axis.

    Args:
        xs: a sequence of tensors (the same shape except along ``axis``).
        axis: the axis (``dim`` accepted).

    Returns:
        Tensor: the joined tensor.

    >>> import numpy as np, chainrule as cr
    >>> a = cr.tensor([1.0, 2.0], requires_grad=True)
    >>> z = cr.concat([a, np.array([3.0])]); (z * np.array([1.0, 2.0, 3.0])).sum().backward()
    >>> z.tolist(), a.grad.tolist()
    ([1.0, 2.0, 3.0], [1.0, 2.0])
    """
    axis, _ = _pt_axis(axis, False, dim, None, "concat", default_axis=0)
    xs = list(xs)
    if not xs:
        raise ValueError("concat: need at least one tensor")
    return apply(R.CONCAT, tuple(xs), {"axis": axis})


def cat(xs, axis=0, *, dim=None):
    """PyTorch's name for :func:`concat`.

    Args:
        xs: a sequence of tensors.
        axis: the axis (``dim`` accepted).

    Returns:
        Tensor: the joined tensor.

    >>> import chainrule as cr
    >>> cr.cat([cr.tensor([1.0]), cr.tensor([2.0])], dim=0).tolist()
    [1.0, 2.0]
    """
    return concat(xs, axis, dim=dim)


@_doc(R.STACK)
def stack(xs, axis=0, *, dim=None):
    """Join tensors of one shape along a new axis.

    Args:
        xs: a sequence of tensors of the same shape.
        axis: the position of the new axis (``dim`` accepted).

    Returns:
        Tensor: shape with ``len(xs)`` inserted at ``axis``.

    >>> import chainrule as cr
    >>> a = cr.tensor([1.0, 2.0], requires_grad=True)
    >>> z = cr.stack([a, 2 * a], axis=1); z.sum().backward()
    >>> z.tolist(), a.grad.tolist()
    ([[1.0, 2.0], [2.0, 4.0]], [3.0, 3.0])
    """
    axis, _ = _pt_axis(axis, False, dim, None, "stack", default_axis=0)
    xs = list(xs)
    if not xs:
        raise ValueError("stack: need at least one tensor")
    return apply(R.STACK, tuple(xs), {"axis": axis})


def split(x, sections, axis=0, *, dim=None):
    """Split along ``axis`` into equal parts or at given indices.

    Composite: each part is a slice (:func:`getitem`), so each part's gradient lands in its block.

    Args:
        x: a tensor.
        sections: the number of equal parts (an int), or the indices to split at (a list).
        axis: the axis (``dim`` accepted).

    Returns:
        list of Tensor: the parts.

    >>> import chainrule as cr
    >>> [p.tolist() for p in cr.split(cr.tensor([1.0, 2.0, 3.0]), [1])]
    [[1.0], [2.0, 3.0]]
    """
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
    """Indexing: ``x[idx]`` (NumPy's basic slicing and integer-array or boolean indexing).

    Args:
        x: a tensor.
        idx: an index: ints, slices, None, ``...``, integer or boolean arrays (or tensors), lists.

    Returns:
        Tensor: ``x[idx]``.

    >>> import chainrule as cr
    >>> x = cr.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> z = cr.getitem(x, [0, 0, 2]); z.sum().backward()
    >>> z.tolist(), x.grad.tolist()                 # a repeated index accumulates
    ([1.0, 1.0, 3.0], [2.0, 0.0, 1.0])
    """
    return apply(R.GETITEM, (x,), {"idx": plain_index(idx)})


@_doc(R.TAKE)
def take(x, indices, sparse=False, flat=False):
    """Rows of a table: ``x[indices]`` along axis 0 (an embedding lookup).

    Args:
        x: a tensor (rows, ...), e.g. word vectors.
        indices: an integer array (or tensor) of any shape.
        sparse: give a leaf x a row-sparse gradient (:class:`~chainrule.RowSparseGrad`: only the
            touched rows) instead of a dense one.
        flat: join the rows of each ``indices[..., :]`` end to end (a window of words as one
            vector): the lookup and that reshape as one graph node.

    Returns:
        Tensor: ``indices.shape + x.shape[1:]``; with ``flat``, ``indices.shape[:-1] + (-1,)``.

    >>> import numpy as np, chainrule as cr
    >>> L = cr.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], requires_grad=True)
    >>> z = cr.take(L, np.array([2, 0, 2])); z.sum().backward()
    >>> z.tolist(), L.grad.tolist()
    ([[5.0, 6.0], [1.0, 2.0], [5.0, 6.0]], [[1.0, 1.0], [0.0, 0.0], [2.0, 2.0]])
    """
    idx = indices.data if isinstance(indices, Tensor) else np.asarray(indices)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"take: indices must be integers, got dtype {idx.dtype}")
    sparse = bool(sparse) and isinstance(x, Tensor) and x.is_leaf
    kw = {"idx": idx, "sparse": sparse}
    if flat:
        if idx.ndim < 1:
            raise ValueError(f"take: flat=True needs indices with at least one axis, got shape {idx.shape}")
        kw["flat"] = True
    try:                  # the bounds are checked by the lookup itself: no extra pass on the hot path
        return apply(R.TAKE, (x,), kw)
    except IndexError:
        n = np.shape(x)[0]
        bad = int(idx.max()) if idx.max() >= n else int(idx.min())
        raise IndexError(f"take: index {bad} out of range for a table of {n} rows "
                         f"(shape {np.shape(x)})") from None


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


def unsqueeze(x, axis=None, *, dim=None):
    """Insert an axis of size 1 (``np.expand_dims``, ``torch.unsqueeze``).

    Composite: a :func:`reshape` (x̄ = g reshaped back).

    Args:
        x: a tensor.
        axis: the position of the new axis in the result (negative counts from its end; ``dim``
            accepted).

    Returns:
        Tensor: a view of x with one more axis.

    >>> import chainrule as cr
    >>> cr.unsqueeze(cr.tensor([1.0, 2.0]), 1).tolist()
    [[1.0], [2.0]]
    """
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
    """Remove axes of size 1: all of them, or the given ones (an axis that is not of size 1 is an
    error: NumPy's rule; PyTorch silently keeps it).

    Composite: a :func:`reshape`.

    Args:
        x: a tensor.
        axis: None (every axis of size 1), an int or a tuple of ints (``dim`` accepted).

    Returns:
        Tensor: a view of x without those axes.

    >>> import chainrule as cr
    >>> cr.squeeze(cr.tensor([[1.0], [2.0]])).tolist()
    [1.0, 2.0]
    """
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
    """Merge the axes start_axis … end_axis (inclusive) into one, as PyTorch's ``flatten``.

    Composite: a :func:`reshape`.

    Args:
        x: a tensor.
        start_axis, end_axis: the first and last axis merged (``start_dim``, ``end_dim`` accepted);
            by default all (the result is 1-D).

    Returns:
        Tensor: a view of x.

    >>> import numpy as np, chainrule as cr
    >>> x = cr.tensor(np.zeros((2, 3, 4)))
    >>> cr.flatten(x).shape, cr.flatten(x, 1).shape
    ((24,), (2, 12))
    """
    start_axis = start_axis if start_dim is None else start_dim
    end_axis = end_axis if end_dim is None else end_dim
    shp = tuple(_shape_of(x))
    if not shp:
        return reshape(x, (1,))
    a, b = start_axis % len(shp), end_axis % len(shp)
    if a > b:
        raise ValueError(f"flatten: start axis {start_axis} comes after end axis {end_axis} for shape {shp}")
    return reshape(x, shp[:a] + (-1 if 0 not in shp[a:b + 1] else 0,) + shp[b + 1:])


def broadcast_to(x, shape):
    """x broadcast to ``shape`` (NumPy's rules).

    Composite: ``x + zeros(shape)``, so the gradient is summed back over the broadcast axes by the
    engine's one ``unbroadcast``.

    Args:
        x: a tensor.
        shape: the target shape.

    Returns:
        Tensor: of that shape.

    >>> import chainrule as cr
    >>> x = cr.tensor([1.0, 2.0], requires_grad=True)
    >>> cr.broadcast_to(x, (3, 2)).sum().backward(); x.grad.tolist()
    [3.0, 3.0]
    """
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
    """PyTorch's ``expand``: :func:`broadcast_to` where −1 keeps that axis's size.

    Composite: :func:`broadcast_to` (x̄ = g summed over the broadcast axes).

    Args:
        x: a tensor.
        *shape: the target shape (ints, or one tuple).

    Returns:
        Tensor: of that shape.

    >>> import chainrule as cr
    >>> cr.expand(cr.tensor([[1.0], [2.0]]), -1, 3).tolist()
    [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]
    """
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    cur = _shape_of(x)
    lead = len(shape) - len(cur)
    if lead < 0:
        raise ValueError(f"expand: {len(shape)} sizes for a tensor of shape {tuple(cur)}")
    shape = tuple(cur[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(shape))
    return broadcast_to(x, shape)


def clone(x):
    """A copy that stays in the graph (x̄ = g), as PyTorch's ``clone``; ``x.detach()`` cuts it
    from the graph instead.

    Composite: x · 1 (a floating x; other dtypes are copied).

    Args:
        x: a tensor.

    Returns:
        Tensor: a new tensor with x's values.

    >>> import chainrule as cr
    >>> x = cr.tensor([1.0, 2.0], requires_grad=True)
    >>> y = cr.clone(x); y.sum().backward()
    >>> y.data is x.data, x.grad.tolist()
    (False, [1.0, 1.0])
    """
    a = _arr(x)
    return mul(x, a.dtype.type(1)) if a.dtype.kind in "fc" else Tensor._wrap(a.copy())


def _arg(fn, where, x, axis, keepdims, dim, keepdim):
    axis, keepdims = _pt_axis(axis, keepdims, dim, keepdim, where)
    a = _arr(x)
    out = getattr(np, fn)(a, axis=axis)
    if keepdims:
        out = np.expand_dims(out, axis) if axis is not None else out.reshape((1,) * a.ndim)
    return Tensor._wrap(np.asarray(out, dtype=np.int64))


def argmax(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """Index of the largest element (the first one on ties); not differentiable.

    Args:
        x: a tensor.
        axis: an int, or None for the index into the flattened tensor (``dim`` accepted).
        keepdims: keep the reduced axis with size 1 (``keepdim`` accepted).

    Returns:
        Tensor: int64, without gradient.

    >>> import chainrule as cr
    >>> cr.argmax(cr.tensor([[1.0, 3.0], [4.0, 2.0]]), axis=1).tolist()
    [1, 0]
    """
    return _arg("argmax", "argmax", x, axis, keepdims, dim, keepdim)


def argmin(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """Index of the smallest element (the first one on ties); not differentiable.

    Args:
        x: a tensor.
        axis: an int, or None for the index into the flattened tensor (``dim`` accepted).
        keepdims: keep the reduced axis with size 1 (``keepdim`` accepted).

    Returns:
        Tensor: int64, without gradient.

    >>> import chainrule as cr
    >>> cr.argmin(cr.tensor([[1.0, 3.0], [4.0, 2.0]]), axis=1).tolist()
    [0, 1]
    """
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
    """Functional item assignment: a new tensor equal to x except ``out[idx] = values``.

    NumPy's assignment semantics (``values`` broadcast to ``x[idx]``'s shape; with repeated indices
    the last write wins).  x̄ = g with the written positions zeroed; v̄ = g[idx] (summed over
    broadcast axes).  Composite: ``where(mask, gather(values), x)``.  ``t[idx] = v`` on a tensor
    that requires grad refuses and points here.

    Args:
        x: a tensor.
        idx: an index, as for :func:`getitem`.
        values: a tensor or array broadcasting to ``x[idx]``'s shape.

    Returns:
        Tensor: x's shape.

    >>> import numpy as np, chainrule as cr
    >>> x = cr.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> v = cr.tensor([9.0], requires_grad=True)
    >>> z = cr.index_put(x, [1], v); (z * np.array([1.0, 2.0, 3.0])).sum().backward()
    >>> z.tolist(), x.grad.tolist(), v.grad.tolist()
    ([1.0, 9.0, 3.0], [1.0, 0.0, 3.0], [2.0])
    """
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
# Tensor's operators and methods: each one IS the function of this module on its row
# ================================================================================================
def _reflected(f, symbol):
    """The reflected operator of ``f``: ``o ⊕ x`` when o is not a Tensor (``2 - x``, ``A @ x`` with A an
    ndarray) is ``f(o, x)``."""
    def reflected(x, o):
        return f(o, x)
    reflected.__name__ = reflected.__qualname__ = f"reflected_{f.__name__}"
    reflected.__doc__ = f"``o {symbol} x`` with o not a Tensor: ``{f.__name__}(o, x)`` (see :func:`{f.__name__}`)."
    reflected.reflects = f
    return reflected


#: Tensor attribute -> the function of this module it is (``x + y`` calls ``add(x, y)``; a reflected
#: operator ``__radd__`` calls ``add(o, x)``).  Installed on :class:`~chainrule.tensor.Tensor` below.
TENSOR_METHODS = {
    # operators
    "__add__": add, "__radd__": _reflected(add, "+"),
    "__sub__": sub, "__rsub__": _reflected(sub, "-"),
    "__mul__": mul, "__rmul__": _reflected(mul, "*"),
    "__truediv__": div, "__rtruediv__": _reflected(div, "/"),
    "__pow__": pow, "__rpow__": _reflected(pow, "**"),
    "__matmul__": matmul, "__rmatmul__": _reflected(matmul, "@"),
    "__neg__": neg, "__abs__": abs, "__getitem__": getitem,
    "T": property(transpose, doc="The axes reversed (a matrix's transpose): ``transpose(x)``."),
    # methods, under NumPy's and PyTorch's names
    "add": add, "sub": sub, "mul": mul, "div": div, "neg": neg, "pow": pow, "matmul": matmul,
    "exp": exp, "log": log, "sin": sin, "cos": cos, "sqrt": sqrt, "abs": abs, "tanh": tanh,
    "sigmoid": sigmoid, "relu": relu, "softplus": softplus, "clip": clip,
    "sum": sum, "mean": mean, "max": max, "min": min, "argmax": argmax, "argmin": argmin,
    "logsumexp": logsumexp, "softmax": softmax, "log_softmax": log_softmax,
    "reshape": reshape, "view": view, "transpose": transpose, "permute": permute, "swapaxes": swapaxes,
    "unsqueeze": unsqueeze, "squeeze": squeeze, "flatten": flatten, "expand": expand,
    "broadcast_to": broadcast_to, "clone": clone, "index_put": index_put,
}
for _name, _f in TENSOR_METHODS.items():
    setattr(Tensor, _name, _f)
del _name, _f


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
