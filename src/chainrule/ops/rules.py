"""The rule table: every primitive op as a forward function on ndarrays next to its backward rule
(and its tangent rule, for forward mode).

Read it like a table of derivatives.  For an op ``z = f(x, y, ...)`` and the incoming gradient
``g = ∂L/∂z`` (same shape as z), the backward rule returns the vector-Jacobian products
``x̄ = ∂L/∂x = gᵀ ∂z/∂x`` for each input whose ``needs`` flag is set (``None`` for the others).

Conventions every rule follows:

* ``forward(*arrays, **params) -> (out, saved)``: ``saved`` is a tuple of exactly what backward needs.
* ``backward(g, needs, *saved) -> tuple`` with one entry per input.  The backward function's parameter
  names after ``(g, needs)`` name the saved values, and the names *mean* something: a name of one of
  the forward's inputs (``x``, ``y``, ...) is that input, ``ans`` is the op's output, a name listed in
  ``derive=`` is a value computed from the inputs (and how to recompute it differentiably), and any
  other name (``axis``, ``shape``, ``mask``) is a constant.  That is what lets the same rule run
  again on tensors to record a graph of the backward pass itself (``create_graph``): the engine
  hands the rule the input/output *tensors* instead of their arrays.
* Rules compute with operators (``g * y``, ``g @ b.T``, ``g[idx]``) and with the functions of the
  array namespace ``xp`` (``xp.exp``, ``xp.sum``, ``xp.where``, ...): NumPy on the fast path,
  chainrule's own differentiable ops under ``create_graph`` (see :func:`use_namespace`).  A later
  CuPy backend is a change of namespace.  A rule never modifies ``g`` or anything saved, and never
  returns the same fresh array for two inputs (the engine adds into fresh arrays in place).
* A rule returns gradients in the *broadcast* shape; the engine's single ``unbroadcast`` sums them
  back to each input's shape.
* Points of non-differentiability get a documented subgradient: relu'(0) = 0, |x|'(0) = 0,
  leaky_relu'(0) = slope, and ties in max/min/maximum/minimum share the gradient equally.
* Forward mode: each row also carries the tangent rule (``jvp=``, the third formula after the
  second ``|`` in the docstring), ``ż = Σᵢ ∂z/∂xᵢ · ẋᵢ`` from the inputs' tangents ``d`` (None where
  zero) and the same saved values, written on ``xp`` like the backward so it is differentiable too;
  ``jvp=LINEAR`` for ops linear in their inputs (ż is the op applied to the tangents).  The same
  subgradients apply.  :mod:`chainrule.forward` carries the tangents alongside the forward pass.

This module knows nothing of tensors or graphs: below it is only :mod:`chainrule.sparse`.
"""
from __future__ import annotations

import inspect
import itertools
import string
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np

from ..sparse import RowSparseGrad

__all__ = ["Op", "RULES", "defop", "xp", "NUMPY", "use_namespace", "LINEAR"]


class Op:
    """A primitive: name, forward, backward (vjp), and the formula as documentation.

    ``plan`` says, per saved value (the backward's parameters after ``g, needs``), what it is: an int
    (that input), ``"ans"`` (the output), ``("*", i)`` (the tuple of inputs i, i+1, ...), a function
    (a derived value: recomputed from the other saved values under ``create_graph``) or None (a
    constant).  ``differentiable``: whether the rule may run on tensors (higher order)."""
    __slots__ = ("name", "forward", "backward", "plan", "names", "differentiable", "into", "jvp", "__dict__")

    def __init__(self, name, forward, backward, doc, plan=(), names=(), differentiable=True, jvp=None):
        self.name, self.forward, self.backward, self.__doc__ = name, forward, backward, doc
        self.plan, self.names, self.differentiable = plan, names, differentiable
        # the tangent rule (forward mode): ``jvp(d, *saved) -> ż`` with ``d`` the inputs' tangents
        # (None where zero) and the same saved values as the backward; or LINEAR: ż = op(ẋ₁, ..., params)
        self.jvp = jvp
        # optional in-place form of a one-input backward whose x̄ is mostly zeros (getitem):
        # ``into(buf, g, *saved)`` adds x̄ into the gradient buffer the engine owns and returns True,
        # or returns False to take the ordinary rule.  It keeps n consumers x[i] of one x linear.
        self.into = None

    def __repr__(self):
        return f"<op {self.name}>"


RULES: dict[str, Op] = {}
LINEAR = "linear"      # jvp=LINEAR: the op is linear in its tensor inputs (ż = op(ẋ₁, ..., params))


def _plan(name, forward, backward, derive):
    """What each of ``backward``'s saved parameters is, from the names (see :class:`Op`)."""
    fsig = inspect.signature(forward).parameters
    pos = [k for k, p in fsig.items() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    var = [k for k, p in fsig.items() if p.kind == p.VAR_POSITIONAL]
    bnames = list(inspect.signature(backward).parameters)[2:]
    plan = []
    for b in bnames:
        if b in derive:
            plan.append(derive[b])
        elif b == "ans":
            plan.append("ans")
        elif var and b == var[0]:
            plan.append(("*", len(pos)))
        elif b in pos:
            plan.append(pos.index(b))
        else:
            plan.append(None)
    return tuple(plan), tuple(bnames)


def defop(name, forward, backward, derive=None, replace=False, jvp=None):
    """Register a primitive and return its :class:`Op`.

    ``forward(*arrays, **params) -> (out, saved)`` runs on ndarrays; ``backward(g, needs, *saved)``
    returns one gradient (or None) per input, named as described in this module's docstring.  Its
    documentation is the forward function's docstring (both formulas).  ``derive``: for saved values
    computed from the inputs, ``{name: fn}`` with ``fn(**other_saved)`` recomputing the value with
    ``xp`` functions (used only under ``create_graph``).

    ``jvp``: the tangent rule (forward mode, :func:`chainrule.jvp`).  ``jvp(d, *saved) -> ż`` takes
    ``d``, the tuple of the inputs' tangents ẋᵢ (None for an input whose tangent is zero; at least one
    is not None), and the same saved values as the backward (same names, same meaning), and returns
    the output's tangent ż = Σᵢ ∂z/∂xᵢ · ẋᵢ -- written with operators and ``xp`` like the backward, so
    it is differentiable too.  It may return ż in a broadcast-compatible shape (``ẋ`` alone for
    ``x + y``): the engine broadcasts it to the output's shape and casts it to the output's dtype.
    ``jvp=LINEAR`` says the op is linear in its tensor inputs, so ż is the op applied to the tangents
    with the same parameters (reshape, getitem, concat, ...).  Without a tangent rule, forward mode
    falls back to the double-VJP trick for this op (first order only: see :mod:`chainrule.forward`).

    Registering a name that exists raises (``replace=True`` to replace it on purpose).

    Old-style rules ``backward(g, saved, needs)`` (the saved object as one value, the needs last)
    are still accepted; they compute on raw arrays, so they give first derivatives only and
    ``create_graph`` through them raises an error naming the op.
    """
    if name in RULES and not replace:
        raise ValueError(f"defop: a primitive named {name!r} already exists ({RULES[name]!r}); "
                         f"choose another name (or pass replace=True to replace it on purpose)")
    params = list(inspect.signature(backward).parameters)
    if len(params) >= 2 and params[1] in ("n", "needs"):
        op = Op(name, forward, backward, forward.__doc__, *_plan(name, forward, backward, derive or {}), jvp=jvp)
    else:                                           # old style: backward(g, saved, needs)
        def fwd(*a, **k):
            out, saved = forward(*a, **k)
            return out, (saved,)
        old = backward
        op = Op(name, fwd, lambda g, n, s: old(g, s, n), forward.__doc__, (None,), ("saved",),
                differentiable=False, jvp=jvp)
    RULES[name] = op
    return op


# ----------------------------------------------------------------------------------------------
# The array namespace the rules compute with
# ----------------------------------------------------------------------------------------------
def stable_sigmoid(x):
    """σ(x) = 1 / (1 + e^(−x)), evaluated without overflow: e^(−|x|) is never larger than 1, and
    σ = 1/(1 + e) for x ≥ 0, e/(1 + e) for x < 0 -- one division of the selected numerator, in
    place (7 array passes instead of 10; the same values bit for bit)."""
    if getattr(x, "ndim", 0) == 0 or x.dtype.kind not in "fc":   # scalars, lists, integers (an array or a
                                                                   # recorded one, cr.compile, goes on)
        xa = np.array(x, ndmin=1)
        r = stable_sigmoid(xa if xa.dtype.kind in "fc" else xa.astype(np.float64))
        return r[0] if np.ndim(x) == 0 else r
    e = np.abs(x)
    np.negative(e, out=e)
    np.exp(e, out=e)
    num = np.maximum(e, x >= 0)     # = where(x ≥ 0, 1, e) (e ≤ 1 there; NaN stays NaN), without a branch
                                    # per element: np.where on a mixed mask costs ~25x a maximum
    e += 1
    return np.divide(num, e, out=num)


def _max_keep(x, axis):
    """``x.max(axis, keepdims=True)``.  Over a short last axis with many rows (the classes of a
    softmax: an RNTN minibatch's 881 nodes × 5 classes) as a running ``np.maximum`` over the columns:
    NumPy's reduction costs ~40 ns a row there (35 µs for 881 × 5 float32; the columns 6.5 µs).  The
    same values: a maximum is exact, taken in the same order."""
    k = x.shape[-1] if x.ndim else 0
    if 2 <= k <= 16 and axis in (-1, x.ndim - 1) and x.size >= 32 * k * k:
        m = np.maximum(x[..., 0:1], x[..., 1:2])
        for j in range(2, k):
            np.maximum(m, x[..., j:j + 1], out=m)
        return m
    return x.max(axis=axis, keepdims=True)


def softmax_array(x, axis=-1):
    e = np.exp(x - _max_keep(x, axis))
    e /= e.sum(axis=axis, keepdims=True)
    return e


def log_softmax_array(x, axis=-1):
    sh = x - _max_keep(x, axis)
    return sh - np.log(np.exp(sh).sum(axis=axis, keepdims=True))


def _scatter_array(g, idx, shape, dtype=None):
    """zeros(shape) with [idx] += g (repeated indices accumulate): the transpose of x[idx]."""
    out = np.zeros(shape, dtype=np.result_type(dtype or g.dtype, g.dtype))
    if _is_basic(idx):
        out[idx] = g
    else:
        np.add.at(out, idx, g)
    return out


def _row_grad_array(idx, g, shape, sparse):
    rs = RowSparseGrad(idx, g, shape)
    return rs if sparse else rs.to_dense()           # dense: one assignment, repeats summed first


NUMPY = SimpleNamespace(
    name="numpy", exp=np.exp, log=np.log, sin=np.sin, cos=np.cos, tanh=np.tanh, sqrt=np.sqrt, sign=np.sign, sum=np.sum, where=np.where,
    broadcast_to=np.broadcast_to, expand_dims=np.expand_dims, reshape=np.reshape,
    transpose=np.transpose, swapaxes=np.swapaxes, einsum=np.einsum, equal=np.equal,
    sigmoid=stable_sigmoid, softmax=softmax_array, log_softmax=log_softmax_array,
    scatter=_scatter_array, row_grad=_row_grad_array, const=lambda x: x,
    cast=lambda x, dtype: x.astype(dtype),
)
NUMPY.__doc__ = """The fast-path namespace: NumPy, plus the few helpers the rules need (``const`` gives
the raw array of a value -- for masks and counts, which carry no gradient; ``scatter`` is the
transpose of indexing; ``row_grad`` the gradient of an embedding lookup)."""

# What the rules compute with: one object, whose functions are NumPy's on the fast path and are
# replaced in place by chainrule's (once per create_graph pass) -- so ``from ...rules import xp`` in a
# user's rule sees the swap too, and an attribute lookup costs what it costs on a module.
xp = SimpleNamespace(**vars(NUMPY))


@contextmanager
def use_namespace(ns):
    """Run the rules on namespace ``ns`` inside the block (the engine uses it for create_graph)."""
    prev = dict(vars(xp))
    vars(xp).update(vars(ns))
    try:
        yield xp
    finally:
        vars(xp).clear()
        vars(xp).update(prev)


def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    return tuple(sorted(a % ndim if ndim else a for a in axis))


def _expand(g, axis, ndim, keepdims):
    """Re-insert reduced axes into g so it broadcasts against the input."""
    if keepdims or ndim == 0:
        return g
    return xp.expand_dims(g, _axes(axis, ndim))


# ------------------------------------------------------------------ arithmetic
# Each row: forward, backward (vjp) and tangent (jvp).  In a tangent rule d = (ẋ, ẏ, ...), None
# where an input's tangent is zero; _plus adds two terms of which either may be absent.
def _plus(a, b):
    return b if a is None else a if b is None else a + b


def _add(x, y):
    """z = x + y   |   x̄ = g,  ȳ = g   |   ż = ẋ + ẏ"""
    return x + y, ()
ADD = defop("add", _add, lambda g, n: (g, g), jvp=lambda d: _plus(d[0], d[1]))


def _sub(x, y):
    """z = x − y   |   x̄ = g,  ȳ = −g   |   ż = ẋ − ẏ"""
    return x - y, ()
SUB = defop("sub", _sub, lambda g, n: (g, -g if n[1] else None),
            jvp=lambda d: d[0] if d[1] is None else -d[1] if d[0] is None else d[0] - d[1])


def _mul(x, y):
    """z = x ⊙ y   |   x̄ = g ⊙ y,  ȳ = g ⊙ x   |   ż = ẋ ⊙ y + x ⊙ ẏ"""
    return x * y, (x, y)
MUL = defop("mul", _mul, lambda g, n, x, y: (g * y if n[0] else None, g * x if n[1] else None),
            jvp=lambda d, x, y: _plus(None if d[0] is None else d[0] * y, None if d[1] is None else x * d[1]))


def _div(x, y):
    """z = x / y   |   x̄ = g / y,  ȳ = −g ⊙ z / y   |   ż = (ẋ − z ⊙ ẏ) / y"""
    z = x / y
    return z, (y, z)
DIV = defop("div", _div, lambda g, n, y, ans: (g / y if n[0] else None, -g * ans / y if n[1] else None),
            jvp=lambda d, y, ans: _plus(d[0], None if d[1] is None else -(ans * d[1])) / y)


def _neg(x):
    """z = −x   |   x̄ = −g   |   ż = −ẋ"""
    return -x, ()
NEG = defop("neg", _neg, lambda g, n: (-g,), jvp=lambda d: -d[0])


def _pow(x, y):
    """z = x ** y (y a tensor or a constant)   |   x̄ = g ⊙ y ⊙ x^(y−1),  ȳ = g ⊙ z ⊙ log x   |
    ż = ẋ ⊙ y ⊙ x^(y−1) + ẏ ⊙ z ⊙ log x   (log x taken as 0 where x ≤ 0, as in the backward)"""
    z = x ** y
    return z, (x, y, z)


def _pow_vjp(g, n, x, y, ans):
    gx = g * y * x ** (y - 1) if n[0] else None
    gy = None
    if n[1]:
        pos = xp.const(x) > 0
        gy = g * ans * xp.where(pos, xp.log(xp.where(pos, x, 1)), 0)
    return gx, gy


def _pow_jvp(d, x, y, ans):
    dx = None if d[0] is None else d[0] * y * x ** (y - 1)
    dy = None
    if d[1] is not None:
        pos = xp.const(x) > 0
        dy = d[1] * ans * xp.where(pos, xp.log(xp.where(pos, x, 1)), 0)
    return _plus(dx, dy)
POW = defop("pow", _pow, _pow_vjp, jvp=_pow_jvp)


# ------------------------------------------------------------------ elementwise functions
def _exp(x):
    """z = exp(x)   |   x̄ = g ⊙ z   |   ż = ẋ ⊙ z"""
    z = np.exp(x)
    return z, (z,)
EXP = defop("exp", _exp, lambda g, n, ans: (g * ans,), jvp=lambda d, ans: d[0] * ans)


def _log(x):
    """z = log(x)   |   x̄ = g / x   |   ż = ẋ / x"""
    return np.log(x), (x,)
LOG = defop("log", _log, lambda g, n, x: (g / x,), jvp=lambda d, x: d[0] / x)


def _sin(x):
    """z = sin(x)   |   x̄ = g ⊙ cos(x)   |   ż = ẋ ⊙ cos(x)"""
    return np.sin(x), (x,)
SIN = defop("sin", _sin, lambda g, n, x: (g * xp.cos(x),), jvp=lambda d, x: d[0] * xp.cos(x))


def _cos(x):
    """z = cos(x)   |   x̄ = −g ⊙ sin(x)   |   ż = −ẋ ⊙ sin(x)"""
    return np.cos(x), (x,)
COS = defop("cos", _cos, lambda g, n, x: (-g * xp.sin(x),), jvp=lambda d, x: -d[0] * xp.sin(x))


def _sqrt(x):
    """z = √x   |   x̄ = g / (2 z)   |   ż = ẋ / (2 z)"""
    z = np.sqrt(x)
    return z, (z,)
SQRT = defop("sqrt", _sqrt, lambda g, n, ans: (g / (2 * ans),), jvp=lambda d, ans: d[0] / (2 * ans))


def _abs(x):
    """z = |x|   |   x̄ = g ⊙ sign(x)   |   ż = ẋ ⊙ sign(x)   (subgradient 0 at x = 0)"""
    return np.abs(x), (x,)
ABS = defop("abs", _abs, lambda g, n, x: (g * xp.sign(xp.const(x)),),
            jvp=lambda d, x: d[0] * xp.sign(xp.const(x)))


def _tanh(x):
    """z = tanh(x)   |   x̄ = g ⊙ (1 − z²)   |   ż = ẋ ⊙ (1 − z²)"""
    z = np.tanh(x)
    return z, (z,)
TANH = defop("tanh", _tanh, lambda g, n, ans: (g * (1 - ans * ans),), jvp=lambda d, ans: d[0] * (1 - ans * ans))


def _sigmoid(x):
    """z = σ(x) = 1/(1+e^(−x)) (overflow-safe)   |   x̄ = g ⊙ z ⊙ (1 − z)   |   ż = ẋ ⊙ z ⊙ (1 − z)"""
    z = stable_sigmoid(x)
    return z, (z,)
SIGMOID = defop("sigmoid", _sigmoid, lambda g, n, ans: (g * ans * (1 - ans),),
                jvp=lambda d, ans: d[0] * ans * (1 - ans))


_ZERO_ROWS = {}


def _zero_row(x):
    """A read-only zero array of shape x.shape[-1:] and x's dtype (one per shape and dtype)."""
    key = (x.shape[-1], x.dtype)
    z = _ZERO_ROWS.get(key)
    if z is None:
        z = _ZERO_ROWS[key] = np.zeros(key[0], key[1])
        z.flags.writeable = False
    return z


def _relu(x):
    """z = max(x, 0)   |   x̄ = g ⊙ [x > 0]   |   ż = ẋ ⊙ [x > 0]   (subgradient 0 at x = 0)

    Against a row of zeros broadcast, not the scalar 0, for larger float arrays: NumPy's loop with a
    scalar operand is ~2x slower there (13 µs vs 7 µs for 128 × 256 float32); the same values."""
    z = np.maximum(x, _zero_row(x) if x.size >= 4096 and x.dtype.kind == "f" else 0)
    return z, (z,)
RELU = defop("relu", _relu, lambda g, n, ans: (g * (xp.const(ans) > 0),),
             jvp=lambda d, ans: d[0] * (xp.const(ans) > 0))


def _leaky_relu(x, slope):
    """z = x if x > 0 else a·x (a a constant, or an array of slopes: rrelu)   |
    x̄ = g if x > 0 else a·g   |   ż = ẋ if x > 0 else a·ẋ   (at x = 0 the left slope a is used)"""
    return np.where(x > 0, x, slope * x), (x, slope)
LEAKY_RELU = defop("leaky_relu", _leaky_relu,
                   lambda g, n, x, slope: (xp.where(xp.const(x) > 0, g, slope * g),),
                   jvp=lambda d, x, slope: xp.where(xp.const(x) > 0, d[0], slope * d[0]))


def _softplus(x):
    """z = log(1 + eˣ) (computed as logaddexp(0, x))   |   x̄ = g ⊙ σ(x)   |   ż = ẋ ⊙ σ(x)"""
    return np.logaddexp(0, x).astype(x.dtype, copy=False), (x,)
SOFTPLUS = defop("softplus", _softplus, lambda g, n, x: (g * xp.sigmoid(x),),
                 jvp=lambda d, x: d[0] * xp.sigmoid(x))


def _maximum(x, y):
    """z = max(x, y) elementwise   |   x̄ = g ⊙ ([x > y] + ½[x = y]),  ȳ = g ⊙ ([y > x] + ½[x = y])   |
    ż = ẋ ⊙ ([x > y] + ½[x = y]) + ẏ ⊙ ([y > x] + ½[x = y])"""
    return np.maximum(x, y), (x, y)


def _maximum_vjp(g, n, x, y):
    x, y = xp.const(x), xp.const(y)
    wx = (x > y) + 0.5 * (x == y)
    return (g * wx if n[0] else None, g * (1 - wx) if n[1] else None)


def _maximum_jvp(d, x, y):
    x, y = xp.const(x), xp.const(y)
    wx = (x > y) + 0.5 * (x == y)
    return _plus(None if d[0] is None else d[0] * wx, None if d[1] is None else d[1] * (1 - wx))
MAXIMUM = defop("maximum", _maximum, _maximum_vjp, jvp=_maximum_jvp)


def _minimum(x, y):
    """z = min(x, y) elementwise   |   x̄ = g ⊙ ([x < y] + ½[x = y]),  ȳ = g ⊙ ([y < x] + ½[x = y])   |
    ż = ẋ ⊙ ([x < y] + ½[x = y]) + ẏ ⊙ ([y < x] + ½[x = y])"""
    return np.minimum(x, y), (x, y)


def _minimum_vjp(g, n, x, y):
    x, y = xp.const(x), xp.const(y)
    wx = (x < y) + 0.5 * (x == y)
    return (g * wx if n[0] else None, g * (1 - wx) if n[1] else None)


def _minimum_jvp(d, x, y):
    x, y = xp.const(x), xp.const(y)
    wx = (x < y) + 0.5 * (x == y)
    return _plus(None if d[0] is None else d[0] * wx, None if d[1] is None else d[1] * (1 - wx))
MINIMUM = defop("minimum", _minimum, _minimum_vjp, jvp=_minimum_jvp)


def _clip(x, lo, hi):
    """z = min(max(x, lo), hi)   |   x̄ = g ⊙ [lo ≤ x ≤ hi]   |   ż = ẋ ⊙ [lo ≤ x ≤ hi]
    (the gradient passes at the bounds)"""
    return np.clip(x, lo, hi), (x, lo, hi)


def _clip_mask(x, lo, hi):
    x = xp.const(x)
    m = np.ones(x.shape, dtype=bool)
    if lo is not None:
        m &= x >= lo
    if hi is not None:
        m &= x <= hi
    return m
CLIP = defop("clip", _clip, lambda g, n, x, lo, hi: (g * _clip_mask(x, lo, hi),),
             jvp=lambda d, x, lo, hi: d[0] * _clip_mask(x, lo, hi))


def _where(c, x, y):
    """z = x where c else y   |   x̄ = g ⊙ [c],  ȳ = g ⊙ [¬c]   |   ż = ẋ where c else ẏ
    (c: a boolean constant)"""
    return np.where(c, x, y), (c,)
WHERE = defop("where", _where, lambda g, n, c: (None, xp.where(c, g, 0) if n[1] else None,
                                                xp.where(c, 0, g) if n[2] else None),
              jvp=lambda d, c: xp.where(c, 0 if d[1] is None else d[1], 0 if d[2] is None else d[2]))


# ------------------------------------------------------------------ reductions
def _sum(x, axis=None, keepdims=False):
    """z = Σ_axis x   |   x̄ = g broadcast back over the summed axes   |   ż = Σ_axis ẋ"""
    return np.sum(x, axis=axis, keepdims=keepdims), (x.shape, axis, keepdims)


def _sum_vjp(g, n, shape, axis, keepdims):
    return (xp.broadcast_to(_expand(g, axis, len(shape), keepdims), shape),)
SUM = defop("sum", _sum, _sum_vjp, jvp=LINEAR)


def _extreme(fn):
    def forward(x, axis=None, keepdims=False):
        z = fn(x, axis=axis, keepdims=True)
        return (z if keepdims else np.squeeze(z, axis=_axes(axis, x.ndim))), (x, z, axis, keepdims)
    return forward


def _extreme_vjp(g, n, x, zk, axis, keepdims):
    mask = xp.const(x) == xp.const(zk)
    count = mask.sum(axis=_axes(axis, x.ndim), keepdims=True)
    return (_expand(g, axis, x.ndim, keepdims) * (mask / count),)


def _extreme_jvp(d, x, zk, axis, keepdims):
    mask = xp.const(x) == xp.const(zk)
    count = mask.sum(axis=_axes(axis, x.ndim), keepdims=True)
    return xp.sum(d[0] * (mask / count), axis=_axes(axis, x.ndim), keepdims=keepdims)


_max = _extreme(np.max)
_max.__doc__ = """z = max_axis x   |   x̄ = g ⊙ [x = z] / #{x = z}   |   ż = Σ_axis ẋ ⊙ [x = z] / #{x = z}
(subgradient: the gradient goes to the maximum; k tied maxima each receive g/k)"""
MAX = defop("max", _max, _extreme_vjp, jvp=_extreme_jvp)
_min = _extreme(np.min)
_min.__doc__ = """z = min_axis x   |   x̄ = g ⊙ [x = z] / #{x = z}   |   ż = Σ_axis ẋ ⊙ [x = z] / #{x = z}
(subgradient: the gradient goes to the minimum; k tied minima each receive g/k)"""
MIN = defop("min", _min, _extreme_vjp, jvp=_extreme_jvp)


def _logsumexp(x, axis=-1, keepdims=False):
    """z = log Σ_axis exp(x) (shifted by the max: stable for |x| ~ 1e4)   |   x̄ = g ⊙ exp(x − z)   |
    ż = Σ_axis ẋ ⊙ exp(x − z)"""
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    z = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return (z if keepdims else np.squeeze(z, axis=_axes(axis, x.ndim))), (x, z, axis, keepdims)


def _logsumexp_vjp(g, n, x, zk, axis, keepdims):
    return (_expand(g, axis, x.ndim, keepdims) * xp.exp(x - zk),)
LOGSUMEXP = defop("logsumexp", _logsumexp, _logsumexp_vjp,
                  derive={"zk": lambda x, axis, keepdims, **_: _lse_keep(x, axis)},
                  jvp=lambda d, x, zk, axis, keepdims: xp.sum(d[0] * xp.exp(x - zk), axis=axis, keepdims=keepdims))


def _lse_keep(x, axis):
    """logsumexp with the axis kept, on the current namespace (for create_graph)."""
    m = np.max(xp.const(x), axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    return xp.log(xp.sum(xp.exp(x - m), axis=axis, keepdims=True)) + m


# ------------------------------------------------------------------ vector activations
def _softmax(x, axis=-1):
    """y = exp(x) / Σ exp(x) along axis   |   x̄ = y ⊙ (g − Σ_axis g ⊙ y)   |   ẏ = y ⊙ (ẋ − Σ_axis ẋ ⊙ y)
    (the Jacobian diag(y) − y yᵀ applied to g or ẋ without forming it: it is symmetric)"""
    y = softmax_array(x, axis)
    return y, (y, axis)


def _softmax_vjp(g, n, ans, axis):
    gy = g * ans
    return (gy - ans * xp.sum(gy, axis=axis, keepdims=True),)
SOFTMAX = defop("softmax", _softmax, _softmax_vjp, jvp=lambda d, ans, axis: _softmax_vjp(d[0], None, ans, axis)[0])


def _log_softmax(x, axis=-1):
    """y = x − logsumexp(x) along axis   |   x̄ = g − exp(y) ⊙ Σ_axis g   |   ẏ = ẋ − Σ_axis exp(y) ⊙ ẋ"""
    y = log_softmax_array(x, axis)
    return y, (y, axis)
LOG_SOFTMAX = defop("log_softmax", _log_softmax,
                    lambda g, n, ans, axis: (g - xp.exp(ans) * xp.sum(g, axis=axis, keepdims=True),),
                    jvp=lambda d, ans, axis: d[0] - xp.sum(xp.exp(ans) * d[0], axis=axis, keepdims=True))


def _smax(a, axis=-1, keepdims=False):
    """Soft maximum (seed 001): o = Σ_i s_i a_i with s = softmax(a) along axis   |
    ā_i = g ⊙ s_i (1 + a_i − o)   |   ȯ = Σ_i ȧ_i ⊙ s_i (1 + a_i − o)"""
    s = softmax_array(a, axis)
    o = np.sum(s * a, axis=axis, keepdims=True)
    return (o if keepdims else np.squeeze(o, axis=axis)), (a, s, o, axis, keepdims)


def _smax_vjp(g, n, a, s, ok, axis, keepdims):
    return (_expand(g, axis, a.ndim, keepdims) * s * (1 + a - ok),)
SMAX = defop("smax", _smax, _smax_vjp, derive={
    "s": lambda a, axis, **_: xp.softmax(a, axis),
    "ok": lambda a, axis, **_: xp.sum(xp.softmax(a, axis) * a, axis=axis, keepdims=True)},
    jvp=lambda d, a, s, ok, axis, keepdims: xp.sum(d[0] * s * (1 + a - ok), axis=axis, keepdims=keepdims))


def _softmax_cross_entropy(z, target, weight):
    """Mean cross-entropy from logits, fused: L = Σ_n w_n (logsumexp(z_n) − Σ_k t_nk z_nk)
    with t the class indices (one-hot) or soft target rows, and w_n = 1/N by default   |
    z̄ = g · w_n ((Σ_k t_nk) softmax(z_n) − t_n)   (= softmax(z_n) − t_n when the rows sum to 1)   |
    L̇ = Σ_n w_n Σ_k ((Σ_k t_nk) softmax(z_n) − t_n)_k ż_nk"""
    logp = log_softmax_array(z, -1)
    if target.dtype.kind in "iu":
        nll = (-logp[np.arange(logp.shape[0]), target] if logp.ndim == 2
               else -np.take_along_axis(logp, target[..., None], axis=-1)[..., 0])
    else:
        nll = -np.sum(target * logp, axis=-1)
    loss = (nll * weight).sum(keepdims=True).reshape(()).astype(z.dtype, copy=False)     # a 0-d array
    return loss, (z, logp, target, weight)


def _sce_residual(logp, target):
    """(Σ_k t_k) softmax(z) − t per row: ∂L_n/∂z_n up to the weight."""
    p = xp.exp(logp)
    if target.dtype.kind in "iu":            # the one-hot t of the class indices (a constant)
        t = xp.equal(target[..., None], np.arange(p.shape[-1])).astype(p.dtype)
    else:
        t = target
        p = p * np.sum(target, axis=-1, keepdims=True)
    return p - t


def _softmax_cross_entropy_vjp(g, n, z, logp, target, weight):
    gw = g * weight
    if np.ndim(weight):
        gw = xp.expand_dims(gw, -1)
    return (_sce_residual(logp, target) * gw, None, None)


def _softmax_cross_entropy_jvp(d, z, logp, target, weight):
    return xp.sum(xp.sum(_sce_residual(logp, target) * d[0], axis=-1) * weight)
SOFTMAX_CROSS_ENTROPY = defop("softmax_cross_entropy", _softmax_cross_entropy,
                              _softmax_cross_entropy_vjp,
                              derive={"logp": lambda z, **_: xp.log_softmax(z, -1)},
                              jvp=_softmax_cross_entropy_jvp)


# ------------------------------------------------------------------ linear algebra
def _matmul(a, b):
    """z = a @ b (vectors, matrices, batched with broadcasting)   |   ā = g @ bᵀ,  b̄ = aᵀ @ g   |
    ż = ȧ @ b + a @ ḃ   (1-D operands are promoted to a row/column and the promoted axis removed again)"""
    return a @ b, (a, b)


def _outer_or_matmul(a, b):
    """a @ b for a (..., m, k), b (..., k, n); when k = 1 (an outer product: a weight gradient from one row,
    an RNTN level of one node) the broadcast product a * b -- the same exact products, but NumPy's
    matmul takes a slow non-BLAS loop for k = 1 (~3 ns an element: 186 µs for (50, 1) @ (1, 1250)
    against 17 µs)."""
    return a * b if a.shape[-1] == 1 else a @ b


def _matmul_vjp(g, n, a, b):
    if a.ndim == 2 and b.ndim == 2:
        return (_outer_or_matmul(g, b.T) if n[0] else None, _outer_or_matmul(a.T, g) if n[1] else None)
    if a.ndim == 1 and b.ndim == 1:
        return (g * b if n[0] else None, g * a if n[1] else None)
    a2 = xp.expand_dims(a, 0) if a.ndim == 1 else a
    b2 = xp.expand_dims(b, 1) if b.ndim == 1 else b
    g2 = g
    if a.ndim == 1:
        g2 = xp.expand_dims(g2, -2)
    if b.ndim == 1:
        g2 = xp.expand_dims(g2, -1)
    ga = gb = None
    if n[0]:
        ga = _outer_or_matmul(g2, xp.swapaxes(b2, -1, -2))
        if a.ndim == 1:
            ga = ga[..., 0, :]
    if n[1]:
        gb = _outer_or_matmul(xp.swapaxes(a2, -1, -2), g2)
        if b.ndim == 1:
            gb = gb[..., 0]
    return ga, gb
MATMUL = defop("matmul", _matmul, _matmul_vjp,
               jvp=lambda d, a, b: _plus(None if d[0] is None else d[0] @ b, None if d[1] is None else a @ d[1]))


def _bilinear(x, V):
    """z[..., k] = Σ_ij x_i V[i, j, k] x_j (x (..., m), V (m, m, k); the RNTN's tensor term xᵀV^[k]x)   |
    x̄ = Σ_k g_k (V^[k] + V^[k]ᵀ) x,   V̄[i, j, k] = Σ_batch x_i x_j g_k   |
    ż_k = ẋᵀ V^[k] x + xᵀ V^[k] ẋ + xᵀ V̇^[k] x
    Computed as U = x V (one GEMM, U[n, j, k] = Σ_i x_i V[i, j, k]) then z = Σ_j x_j U[n, j, k]; the
    backward reuses U: x̄ = U g + (x ⊗ g) Vᵀ, V̄ = xᵀ (x ⊗ g)."""
    if V.ndim != 3 or V.shape[0] != V.shape[1] or x.ndim < 1 or x.shape[-1] != V.shape[0]:
        raise ValueError(f"bilinear: x {x.shape} and V {V.shape} do not fit: need x (..., m) and V (m, m, k)")
    m, k = V.shape[1], V.shape[2]
    x2 = x.reshape(-1, m)
    U = (x2 @ V.reshape(m, m * k)).reshape(-1, m, k)
    z = (x2[:, None, :] @ U)[:, 0, :]
    return z.reshape(x.shape[:-1] + (k,)), (x, V, U)


def _bilinear_vjp(g, n, x, V, U):      # methods and indexing, not xp.reshape/expand_dims: the same
    m, k = V.shape[1], V.shape[2]      # on tensors, ~5 µs less a call (one per RNTN tree level)
    x2 = x.reshape(-1, m)
    g2 = g.reshape(-1, k)
    xg = xp.einsum("nj,nk->njk", x2, g2).reshape(-1, m * k)             # (x ⊗ g) per row
    gx = gV = None
    if n[0]:
        gx = ((U @ g2[:, :, None])[:, :, 0] + xg @ V.reshape(m, m * k).T).reshape(x.shape)
    if n[1]:
        gV = _outer_or_matmul(x2.T, xg).reshape(V.shape)
    return gx, gV


def _bilinear_jvp(d, x, V, U):
    """ż = Σ_j ẋ_j U[j, k] + Σ_j x_j (ẋ V + x V̇)[j, k]  (U = x V, as in the forward)."""
    m, k = V.shape[1], V.shape[2]
    x2 = xp.reshape(x, (-1, m))
    xrow = xp.expand_dims(x2, 1)                                             # (n, 1, m)
    inner = None                                                             # ẋ V + x V̇, (n, m·k)
    if d[0] is not None:
        dx2 = xp.reshape(d[0], (-1, m))
        inner = dx2 @ xp.reshape(V, (m, m * k))
    if d[1] is not None:
        inner = _plus(inner, x2 @ xp.reshape(d[1], (m, m * k)))
    z = (xrow @ xp.reshape(inner, (-1, m, k)))[:, 0, :]
    if d[0] is not None:
        z = z + (xp.expand_dims(dx2, 1) @ U)[:, 0, :]
    return xp.reshape(z, x.shape[:-1] + (k,))
BILINEAR = defop("bilinear", _bilinear, _bilinear_vjp, jvp=_bilinear_jvp, derive={
    "U": lambda x, V, **_: xp.reshape(xp.reshape(x, (-1, V.shape[0])) @ xp.reshape(V, (V.shape[0], -1)),
                                      (-1, V.shape[0], V.shape[2]))})


_LETTERS = string.ascii_letters


def parse_einsum(subscripts, shapes):
    """Normalise einsum subscripts: expand '...', make the output explicit.
    Returns (list of input subscript strings, output subscript string)."""
    subscripts = subscripts.replace(" ", "")
    if "->" in subscripts:
        ins, out = subscripts.split("->")
    else:
        ins, out = subscripts, None
    ins = ins.split(",")
    if len(ins) != len(shapes):
        raise ValueError(f"einsum: {len(ins)} operand subscripts for {len(shapes)} operands")
    used = set(subscripts) - set(".,->")
    free = [c for c in _LETTERS if c not in used]
    ell_nd = 0
    for sub, shp in zip(ins, shapes):
        if "..." in sub:
            ell_nd = max(ell_nd, len(shp) - (len(sub) - 3))
        elif len(sub) != len(shp):
            raise ValueError(f"einsum: subscripts '{sub}' for an operand of shape {shp}")
    ell = "".join(free[:ell_nd])
    new_ins = []
    for sub, shp in zip(ins, shapes):
        if "..." in sub:
            k = len(shp) - (len(sub) - 3)
            sub = sub.replace("...", ell[ell_nd - k:] if k else "")
        new_ins.append(sub)
    if out is None:
        counts = {}
        for c in "".join(new_ins):
            counts[c] = counts.get(c, 0) + 1
        out = ell + "".join(sorted(c for c, k in counts.items() if k == 1 and c not in ell))
    else:
        out = out.replace("...", ell)
    return new_ins, out


def _einsum(subscripts, *ops):
    """z = einsum(subscripts, x₁, …, xₖ)   |
    x̄ᵢ = einsum(out, x₁..x̂ᵢ..xₖ → subsᵢ)(g, others): contract g with every other operand onto
    operand i's indices; indices of operand i found nowhere else are broadcast back, and repeated
    indices (diagonals) are scattered onto the diagonal   |   ż = Σᵢ einsum(subscripts, x₁, …, ẋᵢ, …, xₖ)
    (the product rule: einsum is linear in each operand)"""
    ins, out = parse_einsum(subscripts, [o.shape for o in ops])
    spec = ",".join(ins) + "->" + out
    return np.einsum(spec, *ops, optimize=einsum_path(spec, ops)), (ins, out, ops)


_PATHS = {}


def einsum_path(spec, ops):
    """The contraction order for ``np.einsum(spec, *ops)``: False for two operands or fewer (one
    pairwise contraction), else NumPy's greedy path (what ``optimize=True`` computes), cached per
    (spec, shapes) -- computing it costs more than a small contraction (the per-node RNTN path
    spent 400 of 700 ms a minibatch recomputing it).  Same path, same result bit for bit."""
    if len(ops) <= 2:
        return False
    key = (spec, tuple(np.shape(o) for o in ops))
    path = _PATHS.get(key)
    if path is None:
        if len(_PATHS) > 4096:
            _PATHS.clear()
        path = _PATHS[key] = np.einsum_path(spec, *ops, optimize="greedy")[0]
    return path


def _einsum_vjp(g, n, ins, out, ops):
    grads = []
    for i, sub in enumerate(ins):
        if not n[i + 1]:
            grads.append(None)
            continue
        others = [(ins[j], ops[j]) for j in range(len(ops)) if j != i]
        avail = set(out).union(*[set(sj) for sj, _ in others]) if others else set(out)
        uniq = "".join(dict.fromkeys(sub))            # operand i's distinct indices, in order
        keep = "".join(c for c in uniq if c in avail)
        spec = ",".join([out] + [sj for sj, _ in others]) + "->" + keep
        gi = xp.einsum(spec, g, *[o for _, o in others],
                       optimize=einsum_path(spec, [g] + [o for _, o in others]) if xp.name == "numpy" else len(others) > 1)
        x = ops[i]
        dims = {c: x.shape[sub.index(c)] for c in uniq}
        if keep != uniq:                              # indices only operand i had: broadcast
            gi = xp.broadcast_to(xp.expand_dims(gi, tuple(k for k, c in enumerate(uniq) if c not in keep)),
                                 tuple(dims[c] for c in uniq))
        if uniq != sub:                               # repeated indices: write onto the diagonal
            gi = xp.einsum(uniq + "," + ",".join(f"{c}{c.upper()}" for c in uniq if sub.count(c) > 1)
                           + "->" + _diag_out(sub), gi,
                           *[np.eye(dims[c], dtype=np.result_type(xp.const(g), xp.const(x)))
                             for c in uniq if sub.count(c) > 1])
        grads.append(gi)
    return (None, *grads)


def _diag_out(sub):
    """Output subscripts that put a repeated index's second (and later) occurrences on the upper-case
    copy an identity matrix ties to it: 'ii' -> 'iI' (so einsum('i,iI->iI', g, eye) is diag(g))."""
    seen, out = set(), []
    for c in sub:
        out.append(c.upper() if c in seen else c)
        seen.add(c)
    return "".join(out)
def _einsum_jvp(d, ins, out, ops):
    spec = ",".join(ins) + "->" + out
    z = None
    for i, di in enumerate(d[1:]):
        if di is not None:
            args = ops[:i] + (di,) + ops[i + 1:]
            z = _plus(z, xp.einsum(spec, *args, optimize=einsum_path(spec, args) if xp.name == "numpy" else False))
    return z
EINSUM = defop("einsum", _einsum, _einsum_vjp, jvp=_einsum_jvp)


# ------------------------------------------------------------------ shape ops
def _reshape(x, shape):
    """z = reshape(x, shape)   |   x̄ = reshape(g, x.shape)   |   ż = reshape(ẋ, shape)"""
    return np.reshape(x, shape), (x.shape,)
RESHAPE = defop("reshape", _reshape, lambda g, n, xshape: (xp.reshape(g, xshape),), jvp=LINEAR)


def _transpose(x, axes=None):
    """z = transpose(x, axes) (axes=None reverses them)   |   x̄ = transpose(g, axes⁻¹)   |   ż = transpose(ẋ, axes)"""
    return np.transpose(x, axes), (None if axes is None else tuple(int(a) for a in np.argsort(axes)),)
TRANSPOSE = defop("transpose", _transpose, lambda g, n, inv: (xp.transpose(g, inv),), jvp=LINEAR)


def _broadcast_to(x, shape):
    """z = x broadcast to ``shape``   |   x̄ = g summed over the broadcast axes (the engine's unbroadcast)   |
    ż = ẋ broadcast to ``shape``"""
    return np.broadcast_to(x, shape), ()
BROADCAST_TO = defop("broadcast_to", _broadcast_to, lambda g, n: (g,), jvp=LINEAR)


def _cast(x, dtype):
    """z = x converted to ``dtype``   |   x̄ = g converted back to x's dtype   |   ż = ẋ converted to ``dtype``"""
    return x.astype(dtype), (x.dtype,)
CAST = defop("cast", _cast, lambda g, n, xdtype: (xp.cast(g, xdtype),), jvp=LINEAR)


def _is_basic(idx):
    if not isinstance(idx, tuple):
        idx = (idx,)
    return all(i is None or i is Ellipsis or isinstance(i, (int, np.integer, slice)) for i in idx)


def _getitem(x, idx):
    """z = x[idx] (basic slicing or integer-array indexing)   |
    x̄ = zeros_like(x) with x̄[idx] += g (a scatter-add: repeated indices accumulate)   |   ż = ẋ[idx]"""
    return x[idx], (x.shape, x.dtype, idx)
GETITEM = defop("getitem", _getitem, lambda g, n, xshape, xdtype, idx: (xp.scatter(g, idx, xshape, xdtype),),
                jvp=LINEAR)


def _getitem_into(buf, g, xshape, xdtype, idx):
    """x̄[idx] += g, in place into x's gradient so far (basic indices only: then this is exactly the
    rule's zeros-plus-scatter added to it, element for element)."""
    if buf.dtype != g.dtype or not _is_basic(idx):
        return False
    buf[idx] += g
    return True
GETITEM.into = _getitem_into


def _scatter(g, idx, shape, dtype=None):
    """z = zeros(shape) with z[idx] += g (the transpose of getitem)   |   ḡ = gz[idx]   |
    ż = zeros(shape) with ż[idx] += ġ"""
    return _scatter_array(g, idx, shape, dtype), (idx,)
SCATTER = defop("scatter", _scatter, lambda g, n, idx: (g[idx],), jvp=LINEAR)


def _take(x, idx, sparse=False, flat=False):
    """z = x[idx] along axis 0 (embedding lookup; idx an integer array of any shape; ``flat``: the rows
    of each idx[..., :] joined end to end, z of shape idx.shape[:-1] + (-1,))   |
    x̄[idx[k]] += g[k] -- dense, or row-sparse (indices + rows) when sparse=True   |   ż = ẋ[idx]"""
    z = np.take(x, idx, axis=0)        # = x[idx] (the same copy; NumPy's take is ~2 µs faster a call)
    return (z.reshape(idx.shape[:-1] + (-1,)) if flat else z), (x.shape, idx, sparse, flat)


def _take_vjp(g, n, xshape, idx, sparse, flat):
    return (xp.row_grad(idx, g.reshape(idx.shape + xshape[1:]) if flat else g, xshape, sparse),)
TAKE = defop("take", _take, _take_vjp, jvp=LINEAR)


def _concat(*xs, axis=0):
    """z = concatenate(x₁, …, xₖ) along axis   |   x̄ᵢ = the i-th block of g along axis   |
    ż = concatenate(ẋ₁, …, ẋₖ) along axis"""
    ends = list(itertools.accumulate(x.shape[axis] for x in xs))
    return np.concatenate(xs, axis=axis), (ends, axis % xs[0].ndim)


def _concat_vjp(g, n, ends, axis):
    lead = (slice(None),) * axis
    return tuple(g[lead + (slice(a, b),)] if nd else None for a, b, nd in zip([0] + ends[:-1], ends, n))
CONCAT = defop("concat", _concat, _concat_vjp, jvp=LINEAR)


def _stack(*xs, axis=0):
    """z = stack(x₁, …, xₖ) along a new axis   |   x̄ᵢ = g at index i of that axis (a view: linear in k)   |
    ż = stack(ẋ₁, …, ẋₖ)"""
    z = np.stack(xs, axis=axis)
    return z, (len(xs), axis % z.ndim)


def _stack_vjp(g, n, k, axis):
    lead = (slice(None),) * axis
    return tuple(g[lead + (i,)] if n[i] else None for i in range(k))
STACK = defop("stack", _stack, _stack_vjp, jvp=LINEAR)
