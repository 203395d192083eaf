"""The rule table: every primitive op as a forward function on ndarrays next to its backward rule.

Read it like a table of derivatives.  For an op ``z = f(x, y, ...)`` and the incoming gradient
``g = ∂L/∂z`` (same shape as z), the backward rule returns the vector-Jacobian products
``x̄ = ∂L/∂x = gᵀ ∂z/∂x`` for each input whose ``needs`` flag is set (``None`` for the others).

Conventions every rule follows:

* ``forward(*arrays, **params) -> (out, saved)``: ``saved`` is exactly what backward needs.
* ``backward(g, saved, needs) -> tuple`` with one entry per input.  A rule may return ``g`` itself or
  a view of it, or a fresh array -- never the same fresh array for two inputs.  Rules never modify
  ``g`` or anything saved.
* A rule returns gradients in the *broadcast* shape; the engine's single ``unbroadcast`` sums them
  back to each input's shape.
* Points of non-differentiability get a documented subgradient: relu'(0) = 0, |x|'(0) = 0,
  leaky_relu'(0) = slope, and ties in max/min/maximum/minimum share the gradient equally.

This module is pure NumPy: it knows nothing of tensors or graphs.
"""
from __future__ import annotations

import itertools
import string

import numpy as np

from ..autograd import RowSparseGrad


class Op:
    """A primitive: name, forward, backward (vjp), and the formula as documentation."""

    def __init__(self, name, forward, backward, doc):
        self.name, self.forward, self.backward, self.__doc__ = name, forward, backward, doc

    def __repr__(self):
        return f"<op {self.name}>"


RULES: dict[str, Op] = {}


def defop(name, forward, backward):
    """Register a primitive; its documentation is the forward function's docstring (both formulas)."""
    op = Op(name, forward, backward, forward.__doc__)
    RULES[name] = op
    return op


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
    return np.expand_dims(g, _axes(axis, ndim))


# ------------------------------------------------------------------ arithmetic
def _add(x, y):
    """z = x + y   |   x̄ = g,  ȳ = g"""
    return x + y, None
ADD = defop("add", _add, lambda g, s, n: (g, g))


def _sub(x, y):
    """z = x − y   |   x̄ = g,  ȳ = −g"""
    return x - y, None
SUB = defop("sub", _sub, lambda g, s, n: (g, -g if n[1] else None))


def _mul(x, y):
    """z = x ⊙ y   |   x̄ = g ⊙ y,  ȳ = g ⊙ x"""
    return x * y, (x, y)
MUL = defop("mul", _mul, lambda g, s, n: (g * s[1] if n[0] else None, g * s[0] if n[1] else None))


def _div(x, y):
    """z = x / y   |   x̄ = g / y,  ȳ = −g ⊙ z / y"""
    z = x / y
    return z, (y, z)
DIV = defop("div", _div, lambda g, s, n: (g / s[0] if n[0] else None,
                                          -g * s[1] / s[0] if n[1] else None))


def _neg(x):
    """z = −x   |   x̄ = −g"""
    return -x, None
NEG = defop("neg", _neg, lambda g, s, n: (-g,))


def _pow(x, y):
    """z = x ** y (y a tensor or a constant)   |   x̄ = g ⊙ y ⊙ x^(y−1),  ȳ = g ⊙ z ⊙ log x"""
    z = x ** y
    return z, (x, y, z)


def _pow_vjp(g, s, n):
    x, y, z = s
    gx = g * y * x ** (y - 1) if n[0] else None
    gy = None
    if n[1]:
        with np.errstate(divide="ignore", invalid="ignore"):
            gy = g * z * np.where(x > 0, np.log(np.where(x > 0, x, 1)), 0)
    return gx, gy
POW = defop("pow", _pow, _pow_vjp)


# ------------------------------------------------------------------ elementwise functions
def _exp(x):
    """z = exp(x)   |   x̄ = g ⊙ z"""
    z = np.exp(x)
    return z, z
EXP = defop("exp", _exp, lambda g, z, n: (g * z,))


def _log(x):
    """z = log(x)   |   x̄ = g / x"""
    return np.log(x), x
LOG = defop("log", _log, lambda g, x, n: (g / x,))


def _sqrt(x):
    """z = √x   |   x̄ = g / (2 z)"""
    z = np.sqrt(x)
    return z, z
SQRT = defop("sqrt", _sqrt, lambda g, z, n: (g / (2 * z),))


def _abs(x):
    """z = |x|   |   x̄ = g ⊙ sign(x)   (subgradient 0 at x = 0)"""
    return np.abs(x), x
ABS = defop("abs", _abs, lambda g, x, n: (g * np.sign(x),))


def _tanh(x):
    """z = tanh(x)   |   x̄ = g ⊙ (1 − z²)"""
    z = np.tanh(x)
    return z, z
TANH = defop("tanh", _tanh, lambda g, z, n: (g * (1 - z * z),))


def stable_sigmoid(x):
    """σ(x) = 1 / (1 + e^(−x)), evaluated without overflow: e^(−|x|) is never larger than 1."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def _sigmoid(x):
    """z = σ(x) = 1/(1+e^(−x)) (overflow-safe)   |   x̄ = g ⊙ z ⊙ (1 − z)"""
    z = stable_sigmoid(x)
    return z, z
SIGMOID = defop("sigmoid", _sigmoid, lambda g, z, n: (g * z * (1 - z),))


def _relu(x):
    """z = max(x, 0)   |   x̄ = g ⊙ [x > 0]   (subgradient 0 at x = 0)"""
    z = np.maximum(x, 0)
    return z, z
RELU = defop("relu", _relu, lambda g, z, n: (g * (z > 0),))


def _leaky_relu(x, slope):
    """z = x if x > 0 else a·x (a a constant, or an array of slopes: rrelu)   |
    x̄ = g if x > 0 else a·g   (at x = 0 the left slope a is used)"""
    pos = x > 0
    return np.where(pos, x, slope * x), (pos, slope)
LEAKY_RELU = defop("leaky_relu", _leaky_relu,
                   lambda g, s, n: (np.where(s[0], g, s[1] * g),))


def _softplus(x):
    """z = log(1 + eˣ) (computed as logaddexp(0, x))   |   x̄ = g ⊙ σ(x)"""
    return np.logaddexp(0, x).astype(x.dtype, copy=False), x
SOFTPLUS = defop("softplus", _softplus, lambda g, x, n: (g * stable_sigmoid(x),))


def _maximum(x, y):
    """z = max(x, y) elementwise   |   x̄ = g ⊙ ([x > y] + ½[x = y]),  ȳ = g ⊙ ([y > x] + ½[x = y])"""
    return np.maximum(x, y), (x, y)


def _maximum_vjp(g, s, n):
    x, y = s
    wx = (x > y) + 0.5 * (x == y)
    return (g * wx if n[0] else None, g * (1 - wx) if n[1] else None)
MAXIMUM = defop("maximum", _maximum, _maximum_vjp)


def _minimum(x, y):
    """z = min(x, y) elementwise   |   x̄ = g ⊙ ([x < y] + ½[x = y]),  ȳ = g ⊙ ([y < x] + ½[x = y])"""
    return np.minimum(x, y), (x, y)


def _minimum_vjp(g, s, n):
    x, y = s
    wx = (x < y) + 0.5 * (x == y)
    return (g * wx if n[0] else None, g * (1 - wx) if n[1] else None)
MINIMUM = defop("minimum", _minimum, _minimum_vjp)


def _clip(x, lo, hi):
    """z = min(max(x, lo), hi)   |   x̄ = g ⊙ [lo ≤ x ≤ hi]  (the gradient passes at the bounds)"""
    return np.clip(x, lo, hi), (x, lo, hi)


def _clip_vjp(g, s, n):
    x, lo, hi = s
    m = np.ones(x.shape, dtype=bool)
    if lo is not None:
        m &= x >= lo
    if hi is not None:
        m &= x <= hi
    return (g * m,)
CLIP = defop("clip", _clip, _clip_vjp)


def _where(c, x, y):
    """z = x where c else y   |   x̄ = g ⊙ [c],  ȳ = g ⊙ [¬c]   (c: a boolean constant)"""
    return np.where(c, x, y), c
WHERE = defop("where", _where, lambda g, c, n: (None, np.where(c, g, 0) if n[1] else None,
                                                np.where(c, 0, g) if n[2] else None))


# ------------------------------------------------------------------ reductions
def _sum(x, axis=None, keepdims=False):
    """z = Σ_axis x   |   x̄ = g broadcast back over the summed axes"""
    return np.sum(x, axis=axis, keepdims=keepdims), (x.shape, axis, keepdims)


def _sum_vjp(g, s, n):
    shape, axis, keepdims = s
    return (np.broadcast_to(_expand(g, axis, len(shape), keepdims), shape),)
SUM = defop("sum", _sum, _sum_vjp)


def _extreme(fn):
    def forward(x, axis=None, keepdims=False):
        z = fn(x, axis=axis, keepdims=True)
        return (z if keepdims else np.squeeze(z, axis=_axes(axis, x.ndim))), (x, z, axis, keepdims)
    return forward


def _extreme_vjp(g, s, n):
    x, z, axis, keepdims = s
    mask = x == z
    count = mask.sum(axis=_axes(axis, x.ndim), keepdims=True)
    return (_expand(g, axis, x.ndim, keepdims) * mask / count,)


_max = _extreme(np.max)
_max.__doc__ = """z = max_axis x   |   x̄ = g ⊙ [x = z] / #{x = z}
(subgradient: the gradient goes to the maximum; k tied maxima each receive g/k)"""
MAX = defop("max", _max, _extreme_vjp)
_min = _extreme(np.min)
_min.__doc__ = """z = min_axis x   |   x̄ = g ⊙ [x = z] / #{x = z}
(subgradient: the gradient goes to the minimum; k tied minima each receive g/k)"""
MIN = defop("min", _min, _extreme_vjp)


def _logsumexp(x, axis=-1, keepdims=False):
    """z = log Σ_axis exp(x) (shifted by the max: stable for |x| ~ 1e4)   |   x̄ = g ⊙ exp(x − z)"""
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    z = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return (z if keepdims else np.squeeze(z, axis=_axes(axis, x.ndim))), (x, z, axis, keepdims)


def _logsumexp_vjp(g, s, n):
    x, z, axis, keepdims = s
    return (_expand(g, axis, x.ndim, keepdims) * np.exp(x - z),)
LOGSUMEXP = defop("logsumexp", _logsumexp, _logsumexp_vjp)


# ------------------------------------------------------------------ vector activations
def softmax_array(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _softmax(x, axis=-1):
    """y = exp(x) / Σ exp(x) along axis   |   x̄ = y ⊙ (g − Σ_axis g ⊙ y)
    (the Jacobian diag(y) − y yᵀ applied to g without forming it)"""
    y = softmax_array(x, axis)
    return y, (y, axis)


def _softmax_vjp(g, s, n):
    y, axis = s
    gy = g * y
    return (gy - y * np.sum(gy, axis=axis, keepdims=True),)
SOFTMAX = defop("softmax", _softmax, _softmax_vjp)


def _log_softmax(x, axis=-1):
    """y = x − logsumexp(x) along axis   |   x̄ = g − exp(y) ⊙ Σ_axis g"""
    m = np.max(x, axis=axis, keepdims=True)
    sh = x - m
    y = sh - np.log(np.sum(np.exp(sh), axis=axis, keepdims=True))
    return y, (y, axis)
LOG_SOFTMAX = defop("log_softmax", _log_softmax,
                    lambda g, s, n: (g - np.exp(s[0]) * np.sum(g, axis=s[1], keepdims=True),))


def _smax(a, axis=-1, keepdims=False):
    """Soft maximum (seed 001): o = Σ_i s_i a_i with s = softmax(a) along axis   |
    ā_i = g ⊙ s_i (1 + a_i − o)"""
    s = softmax_array(a, axis)
    o = np.sum(s * a, axis=axis, keepdims=True)
    return (o if keepdims else np.squeeze(o, axis=axis)), (a, s, o, axis, keepdims)


def _smax_vjp(g, sv, n):
    a, s, o, axis, keepdims = sv
    return (_expand(g, axis, a.ndim, keepdims) * s * (1 + a - o),)
SMAX = defop("smax", _smax, _smax_vjp)


def _softmax_cross_entropy(z, target, weight):
    """Mean cross-entropy from logits, fused: L = Σ_n w_n (logsumexp(z_n) − Σ_k t_nk z_nk)
    with t the class indices (one-hot) or soft target rows, and w_n = 1/N by default   |
    z̄ = g · w_n ((Σ_k t_nk) softmax(z_n) − t_n)   (= softmax(z_n) − t_n when the rows sum to 1)"""
    m = np.max(z, axis=-1, keepdims=True)
    sh = z - m
    lse = np.log(np.sum(np.exp(sh), axis=-1, keepdims=True))
    logp = sh - lse
    if target.dtype.kind in "iu":
        nll = (-logp[np.arange(logp.shape[0]), target] if logp.ndim == 2
               else -np.take_along_axis(logp, target[..., None], axis=-1)[..., 0])
    else:
        nll = -np.sum(target * logp, axis=-1)
    loss = np.sum(nll * weight)
    return np.asarray(loss, dtype=z.dtype), (logp, target, weight)


def _softmax_cross_entropy_vjp(g, s, n):
    logp, target, weight = s
    p = np.exp(logp)
    if target.dtype.kind in "iu":
        if p.ndim == 2:
            p[np.arange(p.shape[0]), target] -= 1
        else:
            np.put_along_axis(p, target[..., None], np.take_along_axis(p, target[..., None], -1) - 1, -1)
    else:
        p *= np.sum(target, axis=-1, keepdims=True)
        p -= target
    p *= (g * weight)[..., None] if np.ndim(weight) else g * weight
    return (p, None, None)
SOFTMAX_CROSS_ENTROPY = defop("softmax_cross_entropy", _softmax_cross_entropy,
                              _softmax_cross_entropy_vjp)


# ------------------------------------------------------------------ linear algebra
def _matmul(a, b):
    """z = a @ b (vectors, matrices, batched with broadcasting)   |   ā = g @ bᵀ,  b̄ = aᵀ @ g
    (1-D operands are promoted to a row/column and the promoted axis removed again)"""
    return a @ b, (a, b)


def _matmul_vjp(g, s, n):
    a, b = s
    if a.ndim == 2 and b.ndim == 2:
        return (g @ b.T if n[0] else None, a.T @ g if n[1] else None)
    if a.ndim == 1 and b.ndim == 1:
        return (g * b if n[0] else None, g * a if n[1] else None)
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    g2 = g
    if a.ndim == 1:
        g2 = np.expand_dims(g2, -2)
    if b.ndim == 1:
        g2 = np.expand_dims(g2, -1)
    ga = gb = None
    if n[0]:
        ga = g2 @ np.swapaxes(b2, -1, -2)
        if a.ndim == 1:
            ga = ga[..., 0, :]
    if n[1]:
        gb = np.swapaxes(a2, -1, -2) @ g2
        if b.ndim == 1:
            gb = gb[..., 0]
    return ga, gb
MATMUL = defop("matmul", _matmul, _matmul_vjp)


def _bilinear(x, V):
    """z[..., k] = Σ_ij x_i V[i, j, k] x_j (x (..., m), V (m, m, k); the RNTN's tensor term xᵀV^[k]x)   |
    x̄ = Σ_k g_k (V^[k] + V^[k]ᵀ) x,   V̄[i, j, k] = Σ_batch x_i x_j g_k
    Computed as U = x V (one GEMM, U[n, j, k] = Σ_i x_i V[i, j, k]) then z = Σ_j x_j U[n, j, k]; the
    backward reuses U: x̄ = U g + (x ⊗ g) Vᵀ, V̄ = xᵀ (x ⊗ g)."""
    if V.ndim != 3 or V.shape[0] != V.shape[1] or x.ndim < 1 or x.shape[-1] != V.shape[0]:
        raise ValueError(f"bilinear: x {x.shape} and V {V.shape} do not fit: need x (..., m) and V (m, m, k)")
    m, k = V.shape[1], V.shape[2]
    x2 = x.reshape(-1, m)
    U = (x2 @ V.reshape(m, m * k)).reshape(-1, m, k)
    z = (x2[:, None, :] @ U)[:, 0, :]
    return z.reshape(x.shape[:-1] + (k,)), (x2, U, V, x.shape)


def _bilinear_vjp(g, s, n):
    x2, U, V, xshape = s
    m, k = V.shape[1], V.shape[2]
    g2 = g.reshape(-1, k)
    xg = np.einsum("nj,nk->njk", x2, g2).reshape(-1, m * k)          # (x ⊗ g) per row
    gx = gV = None
    if n[0]:
        gx = ((U @ g2[:, :, None])[:, :, 0] + xg @ V.reshape(m, m * k).T).reshape(xshape)
    if n[1]:
        gV = (x2.T @ xg).reshape(V.shape)
    return gx, gV
BILINEAR = defop("bilinear", _bilinear, _bilinear_vjp)


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
    indices (diagonals) are scattered onto the diagonal."""
    ins, out = parse_einsum(subscripts, [o.shape for o in ops])
    spec = ",".join(ins) + "->" + out
    return np.einsum(spec, *ops, optimize=len(ops) > 2), (ins, out, ops)


def _einsum_vjp(g, s, n):
    ins, out, ops = s
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
        gi = np.einsum(spec, g, *[o for _, o in others], optimize=len(others) > 1)
        x = ops[i]
        dims = {c: x.shape[sub.index(c)] for c in uniq}
        if keep != uniq:                              # indices only operand i had: broadcast
            gi = np.broadcast_to(np.expand_dims(gi, tuple(k for k, c in enumerate(uniq) if c not in keep)),
                                 tuple(dims[c] for c in uniq))
        if uniq != sub:                               # repeated indices: write onto the diagonal
            full = np.zeros(x.shape, dtype=np.result_type(g, x))
            np.einsum(sub + "->" + uniq, full)[...] = gi
            gi = full
        grads.append(gi)
    return (None, *grads)
EINSUM = defop("einsum", _einsum, _einsum_vjp)


# ------------------------------------------------------------------ shape ops
def _reshape(x, shape):
    """z = reshape(x, shape)   |   x̄ = reshape(g, x.shape)"""
    return np.reshape(x, shape), x.shape
RESHAPE = defop("reshape", _reshape, lambda g, shape, n: (np.reshape(g, shape),))


def _transpose(x, axes=None):
    """z = transpose(x, axes) (axes=None reverses them)   |   x̄ = transpose(g, axes⁻¹)"""
    return np.transpose(x, axes), (None if axes is None else np.argsort(axes))
TRANSPOSE = defop("transpose", _transpose, lambda g, inv, n: (np.transpose(g, inv),))


def _is_basic(idx):
    if not isinstance(idx, tuple):
        idx = (idx,)
    return all(i is None or i is Ellipsis or isinstance(i, (int, np.integer, slice)) for i in idx)


def _getitem(x, idx):
    """z = x[idx] (basic slicing or integer-array indexing)   |
    x̄ = zeros_like(x) with x̄[idx] += g (a scatter-add: repeated indices accumulate)"""
    return x[idx], (x.shape, x.dtype, idx)


def _getitem_vjp(g, s, n):
    shape, dtype, idx = s
    out = np.zeros(shape, dtype=np.result_type(dtype, g))
    if _is_basic(idx):
        out[idx] = g
    else:
        np.add.at(out, idx, g)
    return (out,)
GETITEM = defop("getitem", _getitem, _getitem_vjp)


def _take(x, idx, sparse=False):
    """z = x[idx] along axis 0 (embedding lookup; idx an integer array of any shape)   |
    x̄[idx[k]] += g[k] -- dense, or row-sparse (indices + rows) when sparse=True"""
    return x[idx], (x.shape, idx, sparse)


def _take_vjp(g, s, n):
    shape, idx, sparse = s
    if sparse:
        return (RowSparseGrad(idx, g, shape),)
    return (RowSparseGrad(idx, g, shape).to_dense(),)      # one assignment; repeats summed first
TAKE = defop("take", _take, _take_vjp)


def _concat(*xs, axis=0):
    """z = concatenate(x₁, …, xₖ) along axis   |   x̄ᵢ = the i-th block of g along axis"""
    ends = list(itertools.accumulate(x.shape[axis] for x in xs))
    return np.concatenate(xs, axis=axis), (ends, axis % xs[0].ndim)


def _concat_vjp(g, s, n):
    ends, axis = s
    lead = (slice(None),) * axis
    return tuple(g[lead + (slice(a, b),)] for a, b in zip([0] + ends[:-1], ends))
CONCAT = defop("concat", _concat, _concat_vjp)


def _stack(*xs, axis=0):
    """z = stack(x₁, …, xₖ) along a new axis   |   x̄ᵢ = g taken at index i of that axis"""
    z = np.stack(xs, axis=axis)
    return z, (len(xs), axis % z.ndim)
STACK = defop("stack", _stack, lambda g, s, n: tuple(np.take(g, i, axis=s[1]) for i in range(s[0])))
