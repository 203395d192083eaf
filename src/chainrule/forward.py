"""Forward mode: tangents carried alongside the forward pass, one tangent rule per op.

While :func:`chainrule.jvp` evaluates its function, every op that :func:`~chainrule.tensor.apply` runs
also computes its output's tangent from its inputs' tangents with the op's tangent rule -- the
``jvp=`` of its row in :mod:`chainrule.ops.rules` (dual numbers, one op at a time):

    z = f(x₁, …, xₖ)        ż = Σᵢ ∂f/∂xᵢ · ẋᵢ        (``jvp(d, *saved)``, d = (ẋ₁, …, ẋₖ))

No graph is recorded for it and nothing is walked afterwards: the tangent of a value exists as soon
as the value does, and is dropped with it.  A tangent is an array of the value's shape (None where it
is zero, so ops on constants cost nothing extra); the rule may return it in a shape that broadcasts
to the output's (``ẋ`` alone for ``x + y``) and the engine broadcasts and casts it here, in one place.

**Levels.**  Each ``jvp`` call opens a *level* (a fresh id; ``STATE.tangents`` is the tuple of the
active ones) and a tensor keeps its tangents as ``{level: tangent}`` -- so ``jvp`` of a function
that calls ``jvp`` computes a second directional derivative without confusing the two
perturbations.  An outer level's tangent is computed before an inner one's, and an inner rule runs
*differentiably*: on chainrule tensors (``xp`` the tensor namespace) with only the outer levels
active, so its ops carry the outer tangents (and record a graph when an enclosing reverse-mode
transform will differentiate the tangent).  At a single level the rules run on NumPy arrays.

**Forward over reverse.**  ``jvp(grad(f))`` runs grad's backward pass on tensors (the rules on the
tensor namespace, without recording a graph) so that its ops carry tangents too: the tangent of the
gradient is the Hessian-vector product (see :func:`chainrule.hvp`).  Recorded nodes keep their
outputs' tangents (``Node.tangent``) for that pass.

**A primitive without a tangent rule** (a user's :func:`chainrule.primitive` without ``jvp=``) falls
back to the double-VJP trick for that op alone: its backward rule is linear in ``g``, so the VJP of
⟨VJP(u), ẋ⟩ with respect to u is the tangent.  That needs a backward written on ``xp`` (an old-style
rule on raw arrays raises naming the op) and gives first-order tangents only (under nested
transforms it raises naming the op).

This module owns the tangent hook of :func:`~chainrule.tensor.apply` and the levels; the transform
:func:`chainrule.jvp` is in :mod:`chainrule.transforms`.
"""
from __future__ import annotations

import itertools

import numpy as np

from .autograd import STATE, enable_grad
from .ops import rules as R
from .tensor import TANGENT_HOOK, Tensor, apply

__all__ = ["push_tangents", "tangent_of", "open_level", "close_level"]

_IDS = itertools.count(1)
_DIFF = {}        # level -> whether its tangents must be differentiable (an enclosing reverse transform)


def open_level(differentiable):
    """Start a forward-mode level (one ``jvp`` call); returns its id (the caller must close it)."""
    level = next(_IDS)
    _DIFF[level] = bool(differentiable)
    STATE.tangents = STATE.tangents + (level,)
    return level


def close_level(level):
    STATE.tangents = tuple(lv for lv in STATE.tangents if lv != level)
    _DIFF.pop(level, None)


def tangent_of(t, level):
    """The tangent of ``t`` at ``level`` (None: zero, or not a tensor)."""
    tg = getattr(t, "_tangent", None) if type(t) is Tensor else None
    return None if tg is None else tg.get(level)


def set_tangent(t, level, v):
    tg = getattr(t, "_tangent", None)
    if tg is None:
        t._tangent = tg = {}
    tg[level] = v
    if t._node is not None:
        t._node.tangent = tg


def push_tangents(op, args, kw, out, saved):
    """The hook of :func:`~chainrule.tensor.apply` while some level is active: set ``out``'s tangents."""
    levels = STATE.tangents
    if len(levels) == 1 and not _DIFF[levels[0]]:          # the common case, kept short
        level = levels[0]
        ds, some = [], False
        for a in args:
            tg = a._tangent if type(a) is Tensor and hasattr(a, "_tangent") else None
            d = None if tg is None else tg.get(level)
            if d is not None:
                some = True
                if type(d) is Tensor:
                    d = d.data
            ds.append(d)
        if some:
            rule = op.jvp
            if rule is not None and rule is not R.LINEAR and R.xp.name == "numpy":
                r = rule(tuple(ds), *saved)
            else:
                r = _fast(op, args, kw, out, saved, tuple(ds))
            if r is not None:
                data = out.data
                if type(r) is not np.ndarray or r.shape != data.shape or r.dtype != data.dtype:
                    r = _fit_array(r, data)
                out._tangent = tg = {level: r}
                if out._node is not None:
                    out._node.tangent = tg
        return
    for k, level in enumerate(levels):
        ds = tuple([tangent_of(a, level) for a in args])
        for d in ds:
            if d is not None:
                break
        else:
            continue
        if k == 0 and not _DIFF[level]:
            r = _fast(op, args, kw, out, saved, tuple([d.data if type(d) is Tensor else d for d in ds]))
            if r is not None:
                r = _fit_array(r, out.data)
        else:
            r = _differentiable(op, args, kw, out, saved, ds, levels[:k])
        if r is not None:
            set_tangent(out, level, r)


def _fit_array(r, data):
    """The tangent as an array of the output's shape and dtype (the one place this is done)."""
    if type(r) is not np.ndarray:
        r = np.asarray(r.data if type(r) is Tensor else r)
    if r.shape != data.shape:
        r = np.broadcast_to(r, data.shape)
    if r.dtype != data.dtype:
        r = r.astype(data.dtype)
    return r


def _fast(op, args, kw, out, saved, ds):
    """The tangent rule on NumPy arrays (one level, nothing differentiates the tangent)."""
    ns = vars(R.xp)
    swap = ns["name"] != "numpy"              # inside a backward pass on tensors (forward over reverse)
    if swap:
        prev = dict(ns)
        ns.update(vars(R.NUMPY))
    try:
        rule = op.jvp
        if rule is R.LINEAR:
            return op.forward(*_linear_args(args, ds), **(kw or {}))[0]
        if rule is None:
            return _by_double_vjp(op, ds, saved, out)
        return rule(ds, *saved)
    finally:
        if swap:
            ns.clear()
            ns.update(prev)


def _linear_args(args, ds):
    return [a if d is None and type(a) is not Tensor else
            (np.zeros(a.shape, a.dtype) if d is None else d) for a, d in zip(args, ds)]


def _differentiable(op, args, kw, out, saved, ds, outer):
    """The tangent rule on tensors, with only the ``outer`` levels active (so its ops carry their
    tangents and, when grad is enabled, record a graph)."""
    from .ops.functional import TENSORS
    if op.jvp is None or not op.differentiable:
        why = ("has no tangent rule (jvp=), and the double-VJP fallback gives first-order tangents only"
               if op.jvp is None else "has a first-order-only rule (on raw arrays)")
        raise RuntimeError(f"jvp: op '{op.name}' {why}, so its tangent cannot be differentiated again "
                           f"(nested jvp, or grad of a jvp). Give it a tangent rule written on "
                           f"chainrule.ops.rules.xp (defop/primitive jvp=...).")
    prev_levels = STATE.tangents
    STATE.tangents = outer
    try:
        with R.use_namespace(TENSORS):
            if op.jvp is R.LINEAR:
                r = apply(op, tuple(_linear_args(args, ds)), kw)
            else:
                r = op.jvp(ds, *_saved_values(op, args, out, saved))
            if type(r) is not Tensor:
                r = Tensor._wrap(np.asarray(r))
            if r.shape != out.data.shape:
                r = apply(R.BROADCAST_TO, (r,), {"shape": out.data.shape})
            if r.dtype != out.data.dtype:
                r = apply(R.CAST, (r,), {"dtype": out.data.dtype})
    finally:
        STATE.tangents = prev_levels
    return r


def _saved_values(op, args, out, saved):
    """The saved values as tensors (inputs and output with their tangents and graph; derived values
    recomputed from them; constants as they are) -- what the rule sees when run differentiably."""
    vals, derived = [], []
    for k, (what, v) in enumerate(zip(op.plan, saved)):
        if what is None:
            vals.append(v)
        elif what == "ans":
            vals.append(out)
        elif type(what) is int:
            vals.append(args[what] if what < len(args) and type(args[what]) is Tensor else v)
        elif type(what) is tuple:
            vals.append(tuple(args[what[1]:]))
        else:
            vals.append(None)
            derived.append(k)
    if derived:
        named = {nm: v for k, (nm, v) in enumerate(zip(op.names, vals)) if k not in derived}
        for k in derived:
            vals[k] = op.plan[k](**named)
    return vals


def _by_double_vjp(op, ds, saved, out):
    """The tangent of one op without a tangent rule: ż = ∂⟨VJP(u), ẋ⟩/∂u (the backward is linear in u)."""
    from .ops.functional import TENSORS
    from .transforms import gradients
    if not op.differentiable:
        raise RuntimeError(f"jvp: op '{op.name}' has no tangent rule (jvp=) and its backward rule computes on "
                           f"raw NumPy arrays, so forward mode cannot use it either. Give it a tangent rule "
                           f"(defop/primitive jvp=...) or write its backward on chainrule.ops.rules.xp.")
    prev_levels = STATE.tangents
    STATE.tangents = ()
    try:
        # the saved values stay constants (arrays): only u is differentiated
        u = Tensor._wrap(np.zeros(out.data.shape, dtype=out.data.dtype), requires_grad=True)
        with R.use_namespace(TENSORS), enable_grad():
            needs = tuple(d is not None for d in ds)
            outs = op.backward(u, needs, *saved)
            s = None
            for gi, d in zip(outs, ds):
                if gi is not None and d is not None:
                    if type(gi) is not Tensor:
                        raise RuntimeError(f"jvp: the backward rule of op '{op.name}' returned a "
                                           f"{type(gi).__name__}, not a tensor: write it on chainrule.ops.rules.xp")
                    term = (gi * d).sum()
                    s = term if s is None else s + term
        return None if s is None or not s.requires_grad else gradients(s, u)
    finally:
        STATE.tangents = prev_levels


TANGENT_HOOK[0] = push_tangents
