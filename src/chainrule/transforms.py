"""Function transforms: gradients of functions, to any order (HIPS autograd's differential operators).

* :func:`gradients` -- ∂output/∂inputs of tensors already computed (``create_graph=True``: tensors
  with a graph, to differentiate again);
* :func:`grad`, :func:`value_and_grad` -- of a function; they compose (``grad(grad(f))``): inside
  another transform they return tensors with a graph, at the outermost level arrays;
* :func:`vjp` (reverse mode), :func:`jvp` (forward mode: the tangent rules of the one rule table,
  carried alongside the forward pass by :mod:`chainrule.forward`), :func:`hvp` (reverse over
  reverse by default, ``mode="fwd"`` forward over reverse), :func:`jacobian`, :func:`hessian`.

Why tangent rules and not the double-VJP trick (the VJP u ↦ Jᵀu is linear in u, so its own VJP with
the tangent v is Jv; kept as :func:`jvp_by_double_vjp`, the reference the tests compare against):
measured by ``benchmarks/jvp.py`` in one run (interleaved, a loaded machine), a jvp by tangent rules
costs 1.7-3.3 forward passes (hand-written NumPy forward mode: 1.8-3.5 of its own forward), the
double-VJP 4.7-18 -- it records the backward pass as a graph and runs a second backward over it.
Forward over reverse (``hvp(mode="fwd")``) with the tangent rules costs about what reverse over
reverse does (2.3 against 2.3-2.5 gradients on the MLPs of ``benchmarks/hvp.py``, within the rounds'
spread; with the double-VJP jvp it was 4.7-5.4): both do about the same matrix products,
so ``cr.hvp`` keeps reverse over reverse as its default; ``mode="fwd"`` keeps no second graph.

Nothing here touches any tensor's ``.grad``.
"""
from __future__ import annotations

import numpy as np

from . import forward as _fwd
from .autograd import STATE, enable_grad, no_grad, run_backward
from .ops import rules as R
from .ops.functional import TENSORS, _Graph, run_backward_graph
from .sparse import RowSparseGrad
from .tensor import Tensor, apply

__all__ = ["gradients", "grad", "value_and_grad", "vjp", "jvp", "hvp", "jacobian", "hessian"]

_DEPTH = [0]      # how many transforms are evaluating their function right now (grad of grad: 2)
_REV = [0]        # how many of them are reverse mode (their function's values are differentiated)


def _seed_of(output, grad_output, create_graph):
    if grad_output is None:
        if output.data.size != 1:
            raise RuntimeError(f"gradients: a grad_output is required for a non-scalar output of shape "
                               f"{output.shape}")
        s = np.ones(output.shape, dtype=output.dtype)
        return Tensor._wrap(s) if create_graph else s
    if isinstance(grad_output, Tensor):
        if grad_output.shape != output.shape:
            raise ValueError(f"gradients: grad_output of shape {grad_output.shape} for an output of shape "
                             f"{output.shape}")
        if create_graph:
            return grad_output
        grad_output = grad_output.data
    g = np.asarray(grad_output, dtype=output.dtype)
    if g.shape != output.shape:
        raise ValueError(f"gradients: grad_output of shape {g.shape} for an output of shape {output.shape}")
    return Tensor._wrap(g) if create_graph else g


def gradients(output, inputs, grad_output=None, retain_graph=None, create_graph=False, *, _record=True):
    """∂output/∂input for each tensor in ``inputs`` (leaves or intermediate tensors).

    Returns a list of arrays (one array for a single input), zeros where an input does not influence
    the output.  ``create_graph=True`` returns tensors that carry a graph of the backward pass, so they
    can be differentiated again (and implies ``retain_graph=True``).  No ``.grad`` is touched.

    >>> import chainrule as cr
    >>> x = cr.tensor([1.0, 2.0], requires_grad=True, dtype="float64")
    >>> (g,) = cr.gradients((x ** 3).sum(), [x], create_graph=True)      # 3x²
    >>> cr.gradients(g.sum(), x)                                          # 6x
    array([ 6., 12.])
    """
    single = isinstance(inputs, Tensor)
    inputs = [inputs] if single else list(inputs)
    if retain_graph is None:
        retain_graph = create_graph
    if not output.requires_grad:
        raise RuntimeError("gradients: the output does not depend on any tensor that requires grad")
    seed = _seed_of(output, grad_output, create_graph)
    keys = [t._node if t._node is not None else t for t in inputs]
    if output._node is None:
        got = {output: seed}
    elif create_graph and not _record:
        got = _backward_on_tensors(output._node, seed, capture=dict.fromkeys(keys))
    elif create_graph:
        got = run_backward_graph(output._node, seed, capture=dict.fromkeys(keys))
    else:
        got = run_backward(output._node, seed, retain_graph, capture=dict.fromkeys(keys))
    res = []
    handed = {id(seed)}            # add passes one array to both inputs; the seed is the caller's
    for t, k in zip(inputs, keys):
        g = got.get(k)
        if create_graph:
            if g is None:
                g = Tensor._wrap(np.zeros(t.shape, dtype=t.dtype))
            elif type(g) is not Tensor:
                g = Tensor._wrap(np.asarray(g))
        elif g is None:
            g = np.zeros(t.shape, dtype=t.dtype)
        elif type(g) is RowSparseGrad:
            g = g.to_dense()
        elif g.base is not None or not g.flags.writeable or id(g) in handed:
            g = np.array(g)
        handed.add(id(g))
        res.append(g)
    return res[0] if single else res


def _backward_on_tensors(node, seed, capture):
    """The backward pass with its rules run on tensors but no graph recorded: inside ``jvp`` only
    (forward over reverse), where the gradient's ops must carry tangents but nothing differentiates
    it by reverse mode."""
    with R.use_namespace(TENSORS), no_grad():
        return run_backward(node, seed, True, capture, graph=_Graph)


def _leaf(a):
    arr = a.data if isinstance(a, Tensor) else np.asarray(a)
    if arr.dtype.kind not in "fc":
        arr = arr.astype(np.float64)
    t = Tensor._wrap(arr, requires_grad=True)
    tg = getattr(a, "_tangent", None) if type(a) is Tensor else None
    if tg is not None:                # inside jvp: the new leaf is the same value, with the same tangents
        t._tangent = dict(tg)
    return t


def _call(f, args, kwargs, reverse=True):
    _DEPTH[0] += 1
    _REV[0] += reverse
    try:
        with enable_grad():
            return f(*args, **kwargs)
    finally:
        _DEPTH[0] -= 1
        _REV[0] -= reverse


def _keep_graph():
    """Whether a gradient computed now must record a graph: some enclosing reverse transform (or a
    forward-mode level whose tangents are differentiated) will differentiate it."""
    return _REV[0] > 0 or any(_fwd._DIFF.get(lv) for lv in STATE.tangents)


def _grad_impl(f, argnums, with_value):
    def wrapped(*args, **kwargs):
        nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
        nested = _DEPTH[0] > 0          # inside another transform: keep the graph, return tensors
        args = list(args)
        leaves = []
        for i in nums:
            a = args[i]
            t = a if nested and isinstance(a, Tensor) and a.requires_grad else _leaf(a)
            args[i] = t
            leaves.append(t)
        out = _call(f, args, kwargs)
        if not isinstance(out, Tensor) or out.data.size != 1:
            raise TypeError(f"grad: the function must return a scalar tensor, got "
                            f"{type(out).__name__}{' of shape ' + str(out.shape) if isinstance(out, Tensor) else ''}")
        if out.requires_grad:
            gs = gradients(out, leaves, create_graph=nested, _record=_keep_graph())
        else:
            gs = [np.zeros_like(t.data) for t in leaves]
            if nested:
                gs = [Tensor._wrap(z) for z in gs]
        g = gs[0] if isinstance(argnums, int) else tuple(gs)
        if not with_value:
            return g
        return (out if nested else out.item()), g
    wrapped.__name__ = f"grad_{getattr(f, '__name__', 'f')}"
    wrapped.__doc__ = f"Gradient of {getattr(f, '__name__', 'f')} with respect to argument(s) {argnums}."
    return wrapped


def grad(f, argnums=0):
    """``grad(f)(*args)`` = ∂f/∂args[argnums] as an ndarray (a tuple for several argnums).

    ``f`` must return a scalar tensor.  Composable to any order: ``grad(grad(f))`` differentiates the
    gradient (inside another transform the gradient is a tensor with a graph; the outermost call
    returns arrays).  Nothing's ``.grad`` is modified.

    >>> import chainrule as cr
    >>> f = lambda x: (x ** 3).sum()
    >>> cr.grad(f)(2.0), cr.grad(lambda x: cr.grad(f)(x).sum())(2.0)     # 3x², 6x
    (array(12.), array(12.))
    """
    return _grad_impl(f, argnums, False)


def value_and_grad(f, argnums=0):
    """Like :func:`grad` but returns ``(f(*args) as a float, gradient)``."""
    return _grad_impl(f, argnums, True)


def _as_list(x):
    return (list(x), True) if isinstance(x, (tuple, list)) else ([x], False)


def vjp(f, *primals):
    """Reverse mode: ``y, vjp_fn = vjp(f, *primals)``; ``vjp_fn(u)`` is uᵀ ∂f/∂primals (a tuple, one
    array per primal).  ``y`` is f's value as an array; the graph is kept, so ``vjp_fn`` may be called
    many times (one backward pass each)."""
    leaves = [_leaf(p) for p in primals]
    y = _call(f, leaves, {})
    if not isinstance(y, Tensor):
        raise TypeError(f"vjp: the function must return a tensor, got {type(y).__name__}")

    def vjp_fn(u):
        if not y.requires_grad:
            return tuple(np.zeros_like(t.data) for t in leaves)
        return tuple(gradients(y, leaves, grad_output=u, retain_graph=True))
    return y.data, vjp_fn


def jvp(f, primals, tangents):
    """Forward mode: ``(f(*primals), J·tangents)`` as arrays, J the Jacobian of f at ``primals``
    (tuples of arrays when f returns a tuple of tensors).

    Computed with the tangent rules of the rule table (:mod:`chainrule.forward`): while f runs, every
    op also computes its output's tangent ż = Σᵢ ∂z/∂xᵢ · ẋᵢ from its inputs' tangents -- one pass,
    no graph.  Measured (``benchmarks/jvp.py``): 1.7-3.3 forward passes, against 4.7-18 for the
    double-VJP trick (:func:`jvp_by_double_vjp`) it replaced.  An op without a tangent rule (a
    user's primitive) falls back to the double-VJP trick for that op alone.  Composes with the other
    transforms: ``jvp(grad(f), ...)`` is a Hessian-vector product (forward over reverse),
    ``jvp`` of a ``jvp`` a second directional derivative, ``grad`` of a ``jvp`` differentiates the
    tangent.  Inside another transform, or when a primal or tangent is a tensor that requires grad,
    the results are tensors (the tangent with a graph: ``backward`` through it works).

    >>> import chainrule as cr, numpy as np
    >>> y, dy = cr.jvp(lambda x: x * x, (np.array([1.0, 3.0]),), (np.array([1.0, 0.0]),))
    >>> dy
    array([2., 0.])
    """
    primals, _ = _as_list(primals)
    tangents, _ = _as_list(tangents)
    if len(primals) != len(tangents):
        raise ValueError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    nested = _DEPTH[0] > 0
    diff = _keep_graph() or (STATE.grad_enabled and any(
        isinstance(a, Tensor) and a.requires_grad for a in (*primals, *tangents)))
    xs, vs = [], []
    for p, v in zip(primals, tangents):
        x = _primal(p)
        vd = v if isinstance(v, Tensor) and diff else np.asarray(v.data if isinstance(v, Tensor) else v)
        if vd.shape != x.shape:
            raise ValueError(f"jvp: a tangent of shape {vd.shape} for a primal of shape {x.shape}")
        if vd.dtype != x.dtype:
            vd = vd.astype(x.dtype) if type(vd) is np.ndarray else apply(R.CAST, (vd,), {"dtype": x.dtype})
        xs.append(x)
        vs.append(vd)
    level = _fwd.open_level(diff)
    try:
        for x, v in zip(xs, vs):
            _fwd.set_tangent(x, level, v)
        y = _call(f, xs, {}, reverse=False)
    finally:
        _fwd.close_level(level)
    many = isinstance(y, (tuple, list))
    ys = list(y) if many else [y]
    for yi in ys:
        if not isinstance(yi, Tensor):
            raise TypeError(f"jvp: the function must return a tensor (or a tuple of tensors), got "
                            f"{type(yi).__name__}")
    outs, douts = [], []
    for yi in ys:
        dy = _fwd.tangent_of(yi, level)
        if dy is None:
            dy = np.zeros_like(yi.data)
        if nested or diff:
            outs.append(yi)
            douts.append(dy if type(dy) is Tensor else Tensor._wrap(dy))
            continue
        if type(dy) is Tensor:
            dy = dy.data
        if dy.base is not None or not dy.flags.writeable or any(dy is v for v in vs):
            dy = np.array(dy)             # never hand out a view of the caller's tangent or a broadcast
        outs.append(yi.data)
        douts.append(dy)
    return (tuple(outs), tuple(douts)) if many else (outs[0], douts[0])


def _primal(p):
    """The leaf jvp runs f on: ``p`` itself when it carries a graph or outer tangents (through an
    identity op, so the new level's tangent is not written onto the caller's tensor), else a new
    tensor of the same values (floats)."""
    if isinstance(p, Tensor) and (p.requires_grad or getattr(p, "_tangent", None) is not None):
        return apply(R.RESHAPE, (p,), {"shape": p.shape})
    arr = p.data if isinstance(p, Tensor) else np.asarray(p)
    if arr.dtype.kind not in "fc":
        arr = arr.astype(np.float64)
    return Tensor._wrap(arr)


def jvp_by_double_vjp(f, primals, tangents):
    """:func:`jvp` by the double-VJP trick, the reference the tangent rules are checked against (and
    what ``cr.jvp`` was before them): with a dummy cotangent u, the VJP u ↦ Jᵀu is a linear function
    of u recorded as a graph (create_graph); the VJP of ⟨Jᵀu, tangents⟩ with respect to u is
    J·tangents.  About one forward and two backward passes, the second on a recorded graph.

    >>> import chainrule as cr, numpy as np
    >>> cr.transforms.jvp_by_double_vjp(lambda x: x * x, (np.array([1.0, 3.0]),), (np.array([1.0, 0.0]),))[1]
    array([2., 0.])
    """
    primals, _ = _as_list(primals)
    tangents, _ = _as_list(tangents)
    if len(primals) != len(tangents):
        raise ValueError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    leaves = [_leaf(p) for p in primals]
    for t, v in zip(leaves, tangents):
        if np.shape(v.data if isinstance(v, Tensor) else v) != t.shape:
            raise ValueError(f"jvp: a tangent of shape {np.shape(v)} for a primal of shape {t.shape}")
    y = _call(f, leaves, {})
    if not isinstance(y, Tensor):
        raise TypeError(f"jvp: the function must return a tensor, got {type(y).__name__}")
    if not y.requires_grad:
        return y.data, np.zeros_like(y.data)
    u = Tensor._wrap(np.zeros(y.shape, dtype=y.dtype), requires_grad=True)
    gs = gradients(y, leaves, grad_output=u, create_graph=True)
    s = None
    for gi, v in zip(gs, tangents):
        if gi.requires_grad:
            term = (gi * (v.data if isinstance(v, Tensor) else np.asarray(v, dtype=gi.dtype))).sum()
            s = term if s is None else s + term
    if s is None:
        return y.data, np.zeros_like(y.data)
    return y.data, gradients(s, u)


def hvp(f, x, v, mode="rev"):
    """Hessian-vector product ∇²f(x)·v of a scalar function, as an array.  ``x`` and ``v`` may also be
    tuples (one per argument of f); the result is then a tuple.

    ``mode="rev"`` (the default): reverse over reverse -- the gradient g(x) recorded with
    create_graph, then ∇⟨g, v⟩.  ``mode="fwd"``: forward over reverse -- ``jvp(grad(f), x, v)``, the
    backward pass run on tensors carrying tangents (no second graph recorded, no second backward).
    Measured (``benchmarks/hvp.py``, both in one run): see the README's second-order section; the
    default is the one that was not slower on the MLPs there.

    >>> import chainrule as cr, numpy as np
    >>> cr.hvp(lambda x: (x ** 3).sum(), np.array([1.0, 2.0]), np.array([1.0, 1.0]))   # 6x ⊙ v
    array([ 6., 12.])
    >>> cr.hvp(lambda x: (x ** 3).sum(), np.array([1.0, 2.0]), np.array([1.0, 1.0]), mode="fwd")
    array([ 6., 12.])
    """
    xs, multi = _as_list(x)
    vs, _ = _as_list(v)
    if len(xs) != len(vs):
        raise ValueError(f"hvp: {len(xs)} arguments but {len(vs)} vectors")
    if mode == "fwd":
        gf = _grad_impl(f, tuple(range(len(xs))), False)
        res = jvp(lambda *a: gf(*a), tuple(xs), tuple(vs))[1]
        return tuple(res) if multi else res[0]
    if mode != "rev":
        raise ValueError(f"hvp: mode must be 'rev' (reverse over reverse) or 'fwd' (forward over reverse), "
                         f"got {mode!r}")
    leaves = [_leaf(a) for a in xs]
    out = _call(f, leaves, {})
    if not isinstance(out, Tensor) or out.data.size != 1:
        raise TypeError("hvp: the function must return a scalar tensor")
    zeros = [np.zeros_like(t.data) for t in leaves]
    if not out.requires_grad:
        return tuple(zeros) if multi else zeros[0]
    gs = gradients(out, leaves, create_graph=True)
    s = None
    for gi, vi in zip(gs, vs):
        if gi.requires_grad:
            term = (gi * (vi.data if isinstance(vi, Tensor) else np.asarray(vi, dtype=gi.dtype))).sum()
            s = term if s is None else s + term
    res = zeros if s is None else gradients(s, leaves)
    return tuple(res) if multi else res[0]


def jacobian(f, argnum=0, mode="rev"):
    """``jacobian(f)(*args)``: the array J of shape f(x).shape + x.shape with J[i, j] = ∂f_i/∂x_j.

    ``mode="rev"`` (the default): one reverse pass per output element, over one retained graph.
    ``mode="fwd"``: one :func:`jvp` per input element (a forward pass carrying the tangent eⱼ gives
    column j) -- fewer passes when x has fewer elements than f(x) (JAX's ``jacfwd``).

    >>> import chainrule as cr, numpy as np
    >>> cr.jacobian(lambda x: cr.stack([x[0] * x[1], x[0], x[1] ** 2]), mode="fwd")(np.array([2.0, 3.0]))
    array([[3., 2.],
           [1., 0.],
           [0., 6.]])
    """
    if mode not in ("rev", "fwd"):
        raise ValueError(f"jacobian: mode must be 'rev' or 'fwd', got {mode!r}")

    def wrapped(*args):
        args = list(args)
        if mode == "fwd":
            return _jacobian_fwd(f, args, argnum)
        x = _leaf(args[argnum])
        args[argnum] = x
        y = _call(f, args, {})
        if not isinstance(y, Tensor):
            raise TypeError(f"jacobian: the function must return a tensor, got {type(y).__name__}")
        J = np.zeros(y.shape + x.shape, dtype=np.result_type(y.dtype, x.dtype))
        if not y.requires_grad:
            return J
        _vjp_rows(y, x, J.reshape((y.size,) + x.shape))
        return J
    return wrapped


def _jacobian_fwd(f, args, argnum):
    x0 = _leaf(args[argnum]).data
    e = np.zeros(x0.size, dtype=x0.dtype)
    J = None

    def g(x):
        return f(*args[:argnum], x, *args[argnum + 1:])
    for j in range(x0.size):
        e[j] = 1
        y, dy = jvp(g, (x0,), (e.reshape(x0.shape),))
        e[j] = 0
        if J is None:
            J = np.zeros(np.shape(y) + (x0.size,), dtype=np.result_type(np.asarray(dy).dtype, x0.dtype))
        J[..., j] = dy.data if isinstance(dy, Tensor) else dy
    if J is None:                                   # x has no elements: one call for y's shape
        y = g(Tensor._wrap(x0))
        J = np.zeros(y.shape + (0,), dtype=np.result_type(y.dtype, x0.dtype))
    return J.reshape(J.shape[:-1] + x0.shape)


def hessian(f, argnum=0):
    """``hessian(f)(*args)``: the array H of shape x.shape + x.shape with H[i, j] = ∂²f/∂x_i∂x_j for a
    scalar f (the gradient recorded once with create_graph, then one reverse pass per row).

    >>> import chainrule as cr, numpy as np
    >>> cr.hessian(lambda x: x[0] * x[1] ** 2)(np.array([1.0, 2.0]))
    array([[0., 4.],
           [4., 2.]])
    """
    def wrapped(*args):
        args = list(args)
        x = _leaf(args[argnum])
        args[argnum] = x
        out = _call(f, args, {})
        if not isinstance(out, Tensor) or out.data.size != 1:
            raise TypeError("hessian: the function must return a scalar tensor")
        H = np.zeros(x.shape + x.shape, dtype=x.dtype)
        if not out.requires_grad:
            return H
        g = gradients(out, x, create_graph=True)
        if not g.requires_grad:
            return H
        _vjp_rows(g, x, H.reshape((x.size,) + x.shape))
        return H
    return wrapped


def _vjp_rows(y, x, rows):
    """rows[i] = ∂y_i/∂x (one reverse pass per element of y, the graph kept between them)."""
    e = np.zeros(y.size, dtype=y.dtype)
    for i in range(y.size):
        e[i] = 1
        rows[i] = gradients(y, x, grad_output=e.reshape(y.shape), retain_graph=True)
        e[i] = 0
