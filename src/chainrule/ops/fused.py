"""Fused primitives for hot paths: one graph node, one rule, where the composite costs several.

Each is a rule-table entry like the others (forward | backward in the docstring) and computes the
same mathematics as the composite it replaces, to rounding:

* ``sum_squares``: an L2 penalty c/2 Σ_i ‖x_i‖² over several tensors in one op (a ``vdot`` each)
  instead of a mul, a sum and an add per tensor and a scale (seed 002's C/(2m)(‖W‖² + ‖U‖²) was
  six graph ops and 21% of the window step).
* ``bce_with_logits``: Σ w (softplus(z) − d z), the reduced binary cross-entropy from logits in one
  op instead of seven (or of a concat plus a two-class softmax cross-entropy).
* ``linear``: the affine map z = x W + b of :class:`~chainrule.nn.Linear` in one op instead of a
  matmul and a broadcast add (one graph node, the bias gradient summed in the rule; 2 of the window
  step's 10 nodes, 3 of a small MLP's 6).
* ``composition``: the recursive networks' p = tanh(W c + b + cᵀ V c) for every node of a tree level
  in one op instead of five (matmul, add, bilinear, add, tanh); its backward rule *is* those five
  rules, called in reverse order (seed 000's RNTN: ~18 levels a minibatch, so ~90 graph nodes fewer).
  Its :class:`~chainrule.ops.table.RowRule` splits that rule for :meth:`NodeTable.levels
  <chainrule.ops.table.NodeTable.levels>`: c̄ per level (one GEMM with the weights stacked), W̄ and
  V̄ as one GEMM and b̄ as one sum over every level's rows.
"""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor, apply
from . import rules as _R
from .rules import defop, xp
from .table import RowRule

__all__ = ["sum_squares", "bce_with_logits", "linear", "composition"]


def _sum_squares(*xs, scale):
    """z = Σ_i c_i/2 ‖x_i‖² (every element of every x_i; c_i = ``scale[i]``)   |   x̄_i = c_i g x_i   |
    ż = Σ_i c_i ⟨x_i, ẋ_i⟩"""
    if not xs:
        return np.zeros((), np.float64), (xs, scale)
    acc = None                  # Σ in float64, rounded to the inputs' dtype once at the end
    for x, c in zip(xs, scale):
        t = np.vdot(x, x) * np.float64(0.5 * c)
        acc = (t if c > 0 else 0.0 + t) if acc is None else acc + t      # 0.0 + t: a −0 term gives +0
    # NumPy calls only (no float(), no np.asarray), so cr.compile records this rule; acc[...] is a 0-d array
    return acc[...].astype(np.result_type(*xs), copy=False), (xs, scale)


def _sum_squares_vjp(g, n, xs, scale):
    return tuple(x * (g * c) if need else None for x, c, need in zip(xs, scale, n))


def _sum_squares_jvp(d, xs, scale):
    z = None
    for x, c, dx in zip(xs, scale, d):
        if dx is not None:
            z = _R._plus(z, c * _R.xp.sum(x * dx))
    return z
SUM_SQUARES = defop("sum_squares", _sum_squares, _sum_squares_vjp, jvp=_sum_squares_jvp)


def sum_squares(xs, scale=1.0):
    """An L2 penalty over a list of tensors, as one op.

    z = Σ_i c_i/2 ‖x_i‖²   |   x̄_i = c_i g x_i

    Args:
        xs: a tensor or a list of tensors.
        scale: the c_i: one number for all tensors, or one per tensor.

    Returns:
        Tensor: a scalar of the tensors' dtype (0 for an empty list).

    >>> import chainrule as cr
    >>> W = cr.tensor([[1.0, 2.0]], requires_grad=True, dtype="float64")
    >>> p = cr.sum_squares([W], scale=0.5)        # 0.25 (1 + 4)
    >>> p.backward(); p.item(), W.grad.tolist()
    (1.25, [[0.5, 1.0]])
    """
    xs = [xs] if isinstance(xs, (Tensor, np.ndarray)) else list(xs)
    scale = [float(scale)] * len(xs) if isinstance(scale, (float, int)) or not np.ndim(scale) \
        else [float(c) for c in scale]
    if len(scale) != len(xs):
        raise ValueError(f"sum_squares: {len(scale)} scales for {len(xs)} tensors")
    return apply(SUM_SQUARES, tuple(xs), {"scale": tuple(scale)})


def _bce_with_logits(z, d, weight):
    """L = Σ w ⊙ (max(z, 0) − z ⊙ d + log(1 + e^(−|z|))) = Σ w ⊙ BCE(σ(z), d), overflow-free   |
    z̄ = g w ⊙ (σ(z) − d),  σ(z) = 1/(1 + e) for z ≥ 0 and e/(1 + e) for z < 0, e = e^(−|z|)   |
    L̇ = Σ w ⊙ (σ(z) − d) ⊙ ż"""
    e = np.exp(-np.abs(z))
    per = np.maximum(z, 0) - z * d + np.log1p(e)
    loss = per.sum(keepdims=True) * weight if type(weight) is float or not np.ndim(weight) \
        else (per * weight).sum(keepdims=True)
    # a 0-d array by reshape/astype, not np.asarray (the same bits), so cr.compile records this rule
    return loss.reshape(()).astype(z.dtype, copy=False), (z, d, e, weight)


def _bce_with_logits_vjp(g, n, z, d, e, weight):
    sig = xp.where(xp.const(z) >= 0, 1.0, e)        # σ(z) from the saved e = e^(−|z|), no overflow:
    sig /= 1 + e                                   # 1/(1 + e) for z ≥ 0, e/(1 + e) for z < 0
    sig -= d                                       # (in place on the fast path: sig is fresh; on
    sig *= g * weight                              #  tensors, under create_graph, new tensors)
    return (sig, None, None)


BCE_WITH_LOGITS = defop("bce_with_logits", _bce_with_logits, _bce_with_logits_vjp,
                        derive={"e": lambda z, **_: xp.exp(z * -xp.sign(xp.const(z)))},      # e^(−|z|)
                        jvp=lambda dots, z, d, e, weight: xp.sum((xp.sigmoid(z) - d) * weight * dots[0]))


def bce_with_logits(z, d, weight):
    """Binary cross-entropy from logits, reduced with weights, as one op (overflow-free).

    L = Σ w ⊙ (max(z, 0) − z ⊙ d + log(1 + e^(−|z|))) = Σ w ⊙ BCE(σ(z), d)   |   z̄ = g w ⊙ (σ(z) − d)

    Args:
        z: the logits (a tensor).
        d: the targets in [0, 1] (a constant of z's shape).
        weight: a scalar (1/size for the mean) or an array broadcasting to z.

    Returns:
        Tensor: a scalar.

    >>> import chainrule as cr
    >>> from chainrule.ops.fused import bce_with_logits
    >>> z = cr.tensor([0.0, 0.0], requires_grad=True)
    >>> L = bce_with_logits(z, [1.0, 0.0], 0.5); L.backward()
    >>> print(round(L.item(), 4), z.grad.tolist())   # log 2; (σ(z) − d)/2
    0.6931 [-0.25, 0.25]
    """
    zd = z.data if isinstance(z, Tensor) else np.asarray(z)
    dd = np.asarray(d.data if isinstance(d, Tensor) else d, dtype=zd.dtype)
    if dd.shape != zd.shape:
        raise ValueError(f"bce_with_logits: targets of shape {dd.shape} for logits of shape {zd.shape}")
    w = weight if type(weight) is float or np.ndim(weight) == 0 else np.asarray(weight, dtype=zd.dtype)
    return apply(BCE_WITH_LOGITS, (z, dd, w))


# ------------------------------------------------------------------------------------------------ linear
def _linear(x, W, b):
    """z = x W + b (x (..., m), W (m, n), b (n,) or None; every row of x mapped alike)   |
    x̄ = g Wᵀ,  W̄ = xᵀ g,  b̄ = Σ_rows g  (x and g as (rows, m) and (rows, n) matrices: one GEMM
    each)   |   ż = ẋ W + x Ẇ + ḃ"""
    if W.ndim != 2 or x.ndim < 1 or x.shape[-1] != W.shape[0] or (b is not None and b.shape != W.shape[1:]):
        raise ValueError(f"need x (..., m), W (m, n) and b (n,); got x {x.shape}, W {W.shape}, "
                         f"b {None if b is None else b.shape}")
    z = x @ W
    if b is not None:
        if b.dtype == z.dtype:
            z += b                                 # in place: the same bits as z + b, no second array
        else:
            z = z + b
    return z, (x, W)


def _linear_vjp(g, n, x, W):
    m, k = W.shape
    if x.ndim == 2:
        x2, g2 = x, g
    else:                                          # the rows of any leading axes as one matrix
        x2, g2 = x.reshape(-1, m), g.reshape(-1, k)
    gx = gW = gb = None
    if n[0]:
        gx = _R._outer_or_matmul(g2, W.T)
        if x.ndim != 2:
            gx = gx.reshape(x.shape)
    if n[1]:
        gW = _R._outer_or_matmul(x2.T, g2)
    if n[2]:
        gb = g2.sum(axis=0)                        # (a method: ndarray.sum without np.sum's wrapper)
    return gx, gW, gb


def _linear_jvp(d, x, W):
    dx, dW, db = d
    return _R._plus(_R._plus(None if dx is None else dx @ W, None if dW is None else x @ dW), db)
LINEAR_OP = defop("linear", _linear, _linear_vjp, jvp=_linear_jvp)


def linear(x, W, b=None):
    """The affine map ``x @ W + b`` of every row of ``x`` as one op (what :class:`~chainrule.nn.Linear`
    computes; W is stored (in, out), the transpose of PyTorch's ``F.linear`` weight).  The same
    numbers, bit for bit, as ``matmul`` then ``add``; the gradients are matmul's and add's (for
    ``x`` of more than two axes W̄ is one GEMM over all rows, so it may differ from theirs by rounding).

    z = x W + b   |   x̄ = g Wᵀ,  W̄ = xᵀ g,  b̄ = Σ_rows g

    Args:
        x: ``(..., m)``;  W: ``(m, n)``;  b: ``(n,)`` or None.
    Returns:
        ``(..., n)``.

    >>> import numpy as np, chainrule as cr
    >>> W = cr.tensor([[1.0], [2.0]], requires_grad=True)
    >>> b = cr.tensor([0.5], requires_grad=True)
    >>> z = linear(np.array([[1.0, 1.0], [0.0, 1.0]]), W, b); z.sum().backward()
    >>> z.tolist(), W.grad.tolist(), b.grad.tolist()
    ([[3.5], [2.5]], [[1.0], [2.0]], [2.0])
    """
    return apply(LINEAR_OP, (x, W, b))


def _composition(c, W, b, V):
    """p = tanh(c W + b + bilinear(c, V)) for every row c = [a; b] (the children of a tree level; W of
    shape (m, d) as :class:`~chainrule.nn.Linear` stores it; V None: the plain RNN's tanh(c W + b))   |
    z̄ = g ⊙ (1 − p²) (tanh's rule), then matmul's, add's and bilinear's rules on z̄:
    c̄ = z̄ Wᵀ + bilinear's x̄,  W̄ = cᵀ z̄,  b̄ = z̄ (summed over the rows by unbroadcast),
    V̄ = bilinear's V̄ = cᵀ (c ⊗ z̄)   |   ṗ = (ċ W + c Ẇ + ḃ + bilinear's ż) ⊙ (1 − p²)"""
    if c.ndim != 2 or W.ndim != 2 or np.ndim(b) != 1:
        raise ValueError(f"need c (n, m), W (m, d) and b (d,); got c {c.shape}, W {W.shape}, b {np.shape(b)}")
    z = c @ W
    z = z + b
    U = None
    if V is not None:
        t, (_, _, U) = _R._bilinear(c, V)
        z += t
    return np.tanh(z, out=z), (c, W, V, U, z)


def _composition_vjp(g, n, c, W, V, U, ans):
    gz = _R.TANH.backward(g, (True,), ans)[0]
    gc, gW = _R._matmul_vjp(gz, (n[0], n[1]), c, W)
    gV = None
    if V is not None and (n[0] or n[3]):
        gcv, gV = _R._bilinear_vjp(gz, (n[0], n[3]), c, V, U)
        if n[0]:
            gc = gc + gcv
    return gc, gW, (gz if n[2] else None), gV
def _composition_jvp(d, c, W, V, U, ans):
    """ṗ = (ċ W + c Ẇ + ḃ + bilinear's ż(ċ, V̇)) ⊙ (1 − p²): matmul's, add's, bilinear's and tanh's
    tangent rules in order."""
    dc, dW, db, dV = d
    dz = _R._plus(_R.MATMUL.jvp((dc, dW), c, W), db)
    if V is not None and (dc is not None or dV is not None):
        dz = _R._plus(dz, _R._bilinear_jvp((dc, dV), c, V, U))
    return _R.TANH.jvp((dz,), ans)
COMPOSITION = defop("composition", _composition, _composition_vjp, jvp=_composition_jvp, derive={
    "U": lambda c, V, **_: None if V is None else _R.BILINEAR.plan[2](x=c, V=V)})


def _composition_start(rows, c, W, V, U, ans):
    """A buffer of ``rows`` rows [z̄ | c ⊗ z̄] (d + m·d columns; z̄ alone without V) and the stacked
    weights [W; Vₛ]ᵀ, Vₛ[i, j, k] = V[i, j, k] + V[j, i, k] (bilinear's x̄ = Σ_k g_k (V^[k] + V^[k]ᵀ) x
    = (x ⊗ g) Vₛᵀ, so no U is read in backward)"""
    m, d = W.shape
    if V is None:
        return np.empty((rows, d), dtype=ans.dtype), W.T
    Vs = (V + V.transpose(1, 0, 2)).reshape(m, m * d)
    return np.empty((rows, d + m * d), dtype=ans.dtype), np.concatenate([W.T, Vs.T], axis=0)


def _composition_level(g, state, r0, r1, c, W, V, U, ans):
    """c̄ of one level: z̄ = g ⊙ (1 − p²) (tanh's rule), c̄ = z̄ Wᵀ + (c ⊗ z̄) Vₛᵀ (matmul's and
    bilinear's x̄) as one GEMM [z̄ | c ⊗ z̄] [W; Vₛ]ᵀ; z̄ and c ⊗ z̄ stay in the buffer's rows"""
    buf, Wcat = state
    m, d = W.shape
    rows = buf[r0:r1]
    gz = np.multiply(ans, ans, out=rows[:, :d])
    np.subtract(1, gz, out=gz)
    np.multiply(g, gz, out=gz)
    if V is not None:
        np.einsum("nj,nk->njk", c, gz, out=rows[:, d:].reshape(-1, m, d))
    return _R._outer_or_matmul(rows, Wcat)


def _composition_weights(n, state, C, c, W, V, U, ans):
    """[W̄ | V̄] = Cᵀ [z̄ | C ⊗ z̄] (one GEMM over the rows C of every level), b̄ = Σ_rows z̄"""
    buf = state[0]
    m, d = W.shape
    gb = np.add.reduce(buf[:, :d], axis=0) if n[1] else None
    if V is not None and n[2]:
        both = _R._outer_or_matmul(C.T, buf if n[0] else buf[:, d:])
        gW, gV = (both[:, :d] if n[0] else None), both[:, -m * d:].reshape(V.shape)
    else:
        gW, gV = (_R._outer_or_matmul(C.T, buf[:, :d]) if n[0] else None), None
    return gW, gb, gV


COMPOSITION.row_rule = RowRule(_composition_start, _composition_level, _composition_weights,
                               lean=lambda s: s[:3] + (None,) + s[4:])        # U: only the tangent rule reads it


def composition(c, W, b, V=None):
    """The recursive networks' composition ``p = tanh(c W + b + cᵀ V c)`` of every row of ``c`` in one
    op (seed 000's p = f(cᵀ V c + W c) with W stored transposed, as :class:`~chainrule.nn.Linear` does;
    ``V=None``: the RNN's ``tanh(c W + b)``).  The same numbers, bit for bit, as
    ``tanh(c @ W + b + bilinear(c, V))`` written with the five ops it replaces, and the same gradients.

    p = tanh(c W + b + cᵀ V c)   |   z̄ = g ⊙ (1 − p²), then c̄, W̄, b̄, V̄ by matmul's, add's and bilinear's rules on z̄

    Args:
        c: ``(n, m)`` -- each row the children's vectors ``[a; b]`` (m = 2d).
        W: ``(m, d)``;  b: ``(d,)``;  V: ``(m, m, d)`` or None.
    Returns:
        ``(n, d)``: each row's parent vector.

    >>> import numpy as np, chainrule as cr
    >>> c = cr.tensor(np.ones((2, 2)), dtype="float64")
    >>> W = cr.tensor(np.array([[1.0], [0.0]]), requires_grad=True, dtype="float64")
    >>> composition(c, W, cr.tensor(np.zeros(1), dtype="float64")).data.round(4).tolist()
    [[0.7616], [0.7616]]
    """
    return apply(COMPOSITION, (c, W, b, V))
