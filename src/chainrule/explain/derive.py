"""Write the backward pass of a recorded graph as a hand derivation, and check every line.

:func:`derive` walks the graph under a loss (recorded inside :func:`chainrule.record_forward`, so
every node kept its forward value), runs a *symbolic* backward pass over it -- one written rule per
op, producing :mod:`.expr` trees -- and emits one equation per named tensor (its δ) and per parameter
(∂J/∂θ) in backward order.  Unnamed intermediates are folded into the equations of the named ones,
so ``z = x @ W.T + b; a = tanh(z)`` with only ``a`` named gives ``δ_x = W (δ_a ⊙ (1 − a²))``.

Every equation is then evaluated from the recorded forward values and the engine's δ's of the
tensors on its right-hand side and compared with the engine's δ of its left-hand side
(:func:`chainrule.record_deltas`), so a printed line that does not hold is reported, never hidden.
"""
from __future__ import annotations

import heapq

import numpy as np

from .. import autograd as ag
from ..tensor import Tensor
from . import expr as X


class ExplainError(ValueError):
    """The graph cannot be explained (no forward values, not a scalar, ...)."""


class _Key:
    """Lets ``Deltas.__getitem__`` (which looks for ``._node``) find the δ of a bare Node."""
    __slots__ = ("_node",)

    def __init__(self, node):
        self._node = node


class Equation:
    """One line of a derivation: ``lhs = rhs`` and how well it holds.

    Attributes: ``name`` (the tensor's name), ``kind`` ('delta' for δ_t, 'grad' for ∂J/∂θ),
    ``rhs`` (an :class:`~chainrule.explain.expr.Expr`), ``shape``, ``consumers`` (how many terms the
    distributed chain rule summed), ``max_abs`` / ``max_rel`` / ``ok`` (the numerical check),
    ``inputs`` (the names of the δ's the right-hand side uses).
    """

    def __init__(self, name, kind, key, rhs, shape, consumers, root):
        self.name, self.kind, self.key, self.rhs, self.shape = name, kind, key, rhs, tuple(shape)
        self.consumers, self.root = consumers, root
        self.max_abs = self.max_rel = None
        self.ok = None
        self.error = None
        self.inputs = sorted({e.name for e in rhs.walk() if isinstance(e, X.Delta)})
        self.opaque = any(isinstance(e, X.Opaque) for e in rhs.walk())

    def lhs_tex(self):
        s = X.sym_tex(self.name)
        if self.kind == "grad":
            return rf"\frac{{\partial {X.sym_tex(self.root)}}}{{\partial {s}}}"
        return rf"\delta_{{{s}}}"

    def lhs_txt(self):
        return f"∂{self.root}/∂{self.name}" if self.kind == "grad" else f"δ_{self.name}"

    def tex(self):
        return f"{self.lhs_tex()} = {self.rhs.tex()}"

    def txt(self):
        return f"{self.lhs_txt()} = {self.rhs.txt()}"

    def evaluate(self, ctx):
        """The right-hand side evaluated in ``ctx``, brought to this tensor's shape."""
        v = np.asarray(self.rhs.ev(ctx), dtype=np.float64)
        if v.shape != self.shape:
            if v.size == 1:
                v = np.broadcast_to(v.reshape(()), self.shape)
            else:
                raise ValueError(f"the right-hand side has shape {v.shape}, {self.lhs_txt()} has {self.shape}")
        return v

    def __repr__(self):
        status = "unchecked" if self.ok is None else ("ok" if self.ok else f"FAILS (max abs {self.max_abs:.3g})")
        return f"<Equation {self.txt()}  [{status}]>"


class Context:
    """Where expressions look up forward values and δ's (by key)."""

    def __init__(self, values, deltas):
        self.values, self.deltas = values, deltas

    def value(self, key):
        return self.values[key]

    def delta(self, key):
        return self.deltas[key]


def _rel(a, b):
    d = np.abs(a - b)
    return float(d.max()) if d.size else 0.0, float((d / (np.abs(b) + 1e-12)).max()) if d.size else 0.0


def close(a, b, dtype=np.float64):
    """The tolerance of every check: float64 to 1e-8 of the scale of b (1e-4 for float32 graphs)."""
    tol = 1e-8 if np.dtype(dtype) == np.float64 else 2e-4
    scale = float(np.max(np.abs(b))) if np.size(b) else 0.0
    return bool(np.all(np.abs(a - b) <= tol * (scale + 1.0)))


class Derivation:
    """The backward pass of one graph, written out: ``equations`` in backward order.

    ``ok`` is True when every equation's numerical check passed.  Render with :meth:`markdown`,
    :meth:`latex`, :meth:`html` or ``str()``."""

    def __init__(self, equations, root, ctx, dtype, graph, title=None, legend=None):
        self.equations, self.root, self.ctx, self.dtype, self.graph = equations, root, ctx, dtype, graph
        self.title = title
        self.legend = legend or {}

    @property
    def ok(self):
        return all(e.ok for e in self.equations)

    def __getitem__(self, name):
        for e in self.equations:
            if e.name == name:
                return e
        raise KeyError(f"explain: no equation for {name!r}; the derivation has {[e.name for e in self.equations]}")

    def names(self):
        return [e.name for e in self.equations]

    def failures(self):
        return [e for e in self.equations if not e.ok]

    def __str__(self):
        from .render import text
        return text(self)

    def markdown(self):
        from .render import markdown
        return markdown(self)

    def latex(self):
        from .render import latex
        return latex(self)

    def html(self, **kw):
        from .render import html
        return html(self, **kw)

    def render(self, format="text", **kw):
        fmt = {"text": "__str__", "txt": "__str__", "md": "markdown", "markdown": "markdown", "tex": "latex",
               "latex": "latex", "html": "html"}.get(format)
        if fmt is None:
            raise ValueError(f"explain: unknown format {format!r}; use text, md, tex or html")
        return getattr(self, fmt)(**kw) if fmt == "html" else getattr(self, fmt)()


# ----------------------------------------------------------------------------------------------
# The graph
# ----------------------------------------------------------------------------------------------
class Graph:
    """The recorded graph under a root: nodes, leaves, consumers, symbol names, forward exprs."""

    def __init__(self, root, constants=None, names=None):
        if not isinstance(root, Tensor):
            raise TypeError(f"explain: expected the loss tensor (or a function returning it), got {type(root).__name__}")
        if root.size != 1:
            raise ExplainError(f"explain: the loss must be a scalar, got shape {root.shape}")
        if root._node is None:
            raise ExplainError("explain: the loss was not computed from any tensor that requires grad")
        self.root_tensor = root
        self.root = root._node
        self.nodes, self.leaves = [], []
        self.consumers = {}                         # id(obj) -> [(consumer node, input index)]
        seen = {id(self.root)}
        stack = [self.root]
        while stack:
            n = stack.pop()
            self.nodes.append(n)
            if n.parents is None:
                raise ExplainError("explain: the graph was already freed by a backward pass; call explain before "
                                   "backward, or backward(retain_graph=True)")
            if getattr(n, "fwd", None) is None:
                raise ExplainError(
                    f"explain: op '{n.op.name}' has no recorded forward values. Build the loss inside "
                    "`with cr.record_forward():` (explain needs the forward values to check each equation), or "
                    "pass a function: cr.explain(lambda: compute_loss())")
            for i, p in enumerate(n.parents):
                if p is None:
                    continue
                self.consumers.setdefault(id(p), []).append((n, i))
                if id(p) not in seen:
                    seen.add(id(p))
                    if type(p) is ag.Node:
                        stack.append(p)
                    else:
                        self.leaves.append(p)
        self.nodes.sort(key=lambda n: -n.seq)
        # symbol names: node names and leaf names, made unique; unnamed leaves get θ1, θ2, ...
        self.names = {}
        used = {}
        k = 0
        for obj in sorted(self.nodes, key=lambda n: n.seq) + self.leaves:
            nm = obj.name if names is None or id(obj) not in names else names[id(obj)]
            if nm is None and type(obj) is not ag.Node:
                k += 1
                nm = f"θ{k}"
            if nm is None:
                continue
            if nm in used:
                used[nm] += 1
                nm = f"{nm}~{used[nm]}"
            else:
                used[nm] = 1
            self.names[id(obj)] = nm
        if id(self.root) not in self.names:
            self.names[id(self.root)] = "J"
        self.constants = dict(constants or {})
        self._const_label = {}
        self.values = {}
        for n in self.nodes:
            self.values[id(n)] = np.asarray(n.fwd[0])
        for t in self.leaves:
            self.values[id(t)] = t.data
        self._fwd = {}
        self._nconst = 0

    def name(self, obj):
        return self.names.get(id(obj))

    # -------------------------------------------------------------- forward expressions
    def const(self, value):
        """A constant input as an expression: a number, or an array labelled from ``constants``."""
        arr = np.asarray(value)
        if arr.ndim == 0 or arr.size == 1 and arr.dtype.kind in "fiub" and not self._labelled(arr):
            if arr.dtype.kind in "fiub":
                return X.Num(float(arr.reshape(())))
        lab = self._labelled(arr)
        if lab is None:
            key = id(value)
            lab = self._const_label.get(key)
            if lab is None:
                taken = set(self.names.values()) | set(self.constants)
                while True:
                    self._nconst += 1
                    lab = f"const{self._nconst}"
                    if lab not in taken:
                        break
                self._const_label[key] = lab
        key = ("const", lab)
        self.values[key] = arr
        return X.Val(key, lab)

    def _labelled(self, arr):
        for lab, v in self.constants.items():
            if v is arr:
                return lab
        for lab, v in self.constants.items():
            va = np.asarray(v)
            if va.shape == arr.shape and va.dtype.kind == arr.dtype.kind and np.array_equal(va, arr):
                return lab
        return None

    def arg(self, node, i):
        """Input ``i`` of ``node`` as an expression: the parent's forward expression, or a constant."""
        p = node.parents[i]
        if p is None:
            return self.const(node.fwd[1][i])
        return self.fwd(p)

    def fwd(self, obj):
        """The forward value of a node or leaf as an expression: its symbol if it is named, else the
        op applied to its inputs (printed structurally, evaluated from the recorded value)."""
        k = id(obj)
        e = self._fwd.get(k)
        if e is not None:
            return e
        nm = self.names.get(k)
        if nm is not None:
            e = X.Val(k, nm)
        else:
            e = _Fwd(k, _structural(self, obj))
        self._fwd[k] = e
        return e


class _Fwd(X.Expr):
    """An unnamed intermediate: printed as the op applied to its inputs, evaluated from its value."""

    def __init__(self, key, inner):
        self.key, self.inner = key, inner

    def ev(self, ctx):
        return ctx.value(self.key)

    def tex(self):
        return self.inner.tex()

    def txt(self):
        return self.inner.txt()

    @property
    def prec(self):
        return self.inner.prec


class _Label(X.Expr):
    def __init__(self, tex, txt):
        self._tex, self._txt = tex, txt

    def ev(self, ctx):                           # never evaluated: wrapped in _Fwd
        raise RuntimeError("label")

    def tex(self):
        return self._tex

    def txt(self):
        return self._txt


_ELEMENTWISE = ("tanh", "sigmoid", "relu", "exp", "log", "softplus", "sqrt", "abs")


def _structural(G, node):
    op = node.op.name
    kw = node.fwd[2] or {}
    a = lambda i: G.arg(node, i)   # noqa: E731
    if op == "add":
        return X.add(a(0), a(1))
    if op == "sub":
        return X.add(a(0), X.neg(a(1)))
    if op == "mul":
        return X.had(a(0), a(1))
    if op == "div":
        return X.Div(a(0), a(1))
    if op == "neg":
        return X.neg(a(0))
    if op == "matmul":
        return X.matmul(a(0), a(1))
    if op == "linear":                                        # the fused x W + b
        return X.matmul(a(0), a(1)) if node.parents[2] is None and node.fwd[1][2] is None \
            else X.add(X.matmul(a(0), a(1)), a(2))
    if op == "transpose":
        return X.transpose(a(0))
    if op == "reshape":
        return a(0)
    if op in ("getitem", "take"):
        ix = _fmt_index(kw.get("idx", node.fwd[1][1] if len(node.fwd[1]) > 1 else None))
        return _Label(a(0).ptex(X.P_ATOM) + r"_{[" + ix.replace("_", r"\_") + "]}", a(0).ptxt(X.P_ATOM) + f"[{ix}]")
    if op in _ELEMENTWISE:
        return X.Fn(op, a(0))
    if op in ("softmax", "log_softmax"):
        return X.Fn(op, a(0), axis=kw.get("axis", -1))
    if op == "leaky_relu":
        return X.Fn(op, a(0), slope=node.fwd[1][1] if len(node.fwd[1]) > 1 else kw.get("slope", 0.01))
    if op == "pow":
        y = node.fwd[1][1]
        return X.Pow(a(0), float(y)) if np.ndim(y) == 0 else _Label(rf"{a(0).ptex(4)}^{{y}}", "pow")
    if op == "sum":
        return _Label(r"\sum " + a(0).ptex(X.P_MUL), "Σ " + a(0).ptxt(X.P_MUL))
    if op in ("concat", "stack"):
        parts = [G.arg(node, i) for i in range(len(node.parents))]
        return _Label(r"\left[" + "; ".join(p.tex() for p in parts) + r"\right]", "[" + "; ".join(p.txt() for p in parts) + "]")
    return _Label(rf"\mathrm{{{op}}}(\cdot)", f"{op}(·)")


# ----------------------------------------------------------------------------------------------
# The symbolic backward rules: g is ∂J/∂(output) as an expression; returns ∂J/∂(input i)
# ----------------------------------------------------------------------------------------------
def _shape_of(G, node, i):
    p = node.parents[i]
    return p.shape if type(p) is ag.Node else p.data.shape


def _unb(G, node, i, e):
    """Undo broadcasting: Σ over the batch axes when the input was smaller than the output."""
    sh = _shape_of(G, node, i)
    if tuple(sh) != tuple(node.shape) and int(np.prod(sh)) < int(np.prod(node.shape)) and not _scalar(e):
        return X.SumTo(e, sh)
    return e


def _scalar(e):
    return isinstance(e, X.Num)


def vjp(G, node, i, g):
    op = node.op.name
    kw = node.fwd[2] or {}
    ins = node.fwd[1]
    a = lambda j: G.arg(node, j)   # noqa: E731
    out = G.fwd(node)
    if op == "add":
        return _unb(G, node, i, g)
    if op == "sub":
        return _unb(G, node, i, g if i == 0 else X.neg(g))
    if op == "mul":
        return _unb(G, node, i, X.had(g, a(1 - i)))
    if op == "div":
        if i == 0:
            d = a(1)
            return _unb(G, node, i, X.scale(X.Num(1.0 / d.c), g) if isinstance(d, X.Num) else X.Div(g, d))
        return _unb(G, node, i, X.neg(X.Div(X.had(g, out), a(1))))
    if op == "neg":
        return X.neg(g)
    if op == "pow" and i == 0 and np.ndim(ins[1]) == 0:
        c = float(ins[1])
        base = a(0) if c == 2 else X.Pow(a(0), c - 1)
        return X.scale(X.Num(c), X.had(g, base))
    if op in _ELEMENTWISE:
        if op == "exp":
            return X.had(g, out)
        if op == "log":
            return X.Div(g, a(0))
        return X.had(g, X.Fp(op, a(0), out if op in ("sigmoid", "tanh") else None))
    if op == "leaky_relu":
        slope = ins[1] if len(ins) > 1 else kw.get("slope", 0.01)
        return X.had(g, X.Fp("leaky_relu", a(0), None, slope=slope))
    if op == "sum":
        if _scalar(g):
            return g
        return X.Expand(g, kw.get("axis"), kw.get("keepdims", False), _shape_of(G, node, 0))
    if op == "linear" and i == 2:                             # x W + b: b̄ = Σ over the rows of g
        return _unb(G, node, i, g)
    if op in ("matmul", "linear"):
        sa, sb = np.shape(ins[0]), np.shape(ins[1])
        A, B = a(0), a(1)
        if len(sa) == 1 and len(sb) == 1:                     # a · b
            return X.had(g, B if i == 0 else A)
        if i == 0:
            if len(sb) == 1:                                  # W y: ∂W = δ yᵀ
                e = X.Outer(g, B) if len(sa) == 2 else X.matmul(X.Expand(g, -1, False, sa[:-1] + (1,)), X.transpose(B))
                return e
            if len(sa) == 1:                                  # x M: ∂x = M δ
                return X.matmul(B, g)
            e = X.matmul(g, X.transpose(B))
            return e if len(sa) >= len(node.shape) else X.SumTo(e, sa)   # Σ over a broadcast batch
        if len(sa) == 1:                                      # x M: ∂M = x δᵀ
            return X.Outer(A, g)
        if len(sb) == 1:                                      # W y: ∂y = Wᵀ δ
            return X.matmul(X.transpose(A), g)
        e = X.matmul(X.transpose(A), g)
        return e if len(sb) >= len(node.shape) else X.SumTo(e, sb)
    if op == "transpose":
        axes = kw.get("axes")
        if axes is None:
            return _transpose_adj(g)
        return X.Permute(g, tuple(np.argsort(axes)))
    if op == "reshape":
        return X.Reshape(g, _shape_of(G, node, 0))
    if op == "take":
        shape = _shape_of(G, node, 0)
        if kw.get("flat"):                                    # the window's rows joined: back to one row each
            g = X.Reshape(g, np.shape(kw["idx"]) + tuple(shape[1:]))
        return X.Scatter(g, kw["idx"], shape, table=G.name(node.parents[0]) or "L")
    if op == "getitem":
        return _GetitemAdj(g, kw.get("idx", ins[1] if len(ins) > 1 else None), _shape_of(G, node, 0))
    if op == "concat":
        ax = kw.get("axis", 0)
        sizes = [np.shape(x)[ax] for x in ins]
        lo = int(np.sum(sizes[:i]))
        axn = ax % len(np.shape(ins[0]))
        return X.Slice(g, axn, lo, lo + sizes[i])
    if op == "stack":
        ax = kw.get("axis", 0) % (len(node.shape))
        return X.Index(g, ax, i)
    if op == "softmax":
        return X.SoftmaxJac(out, g, kw.get("axis", -1))
    if op == "log_softmax":
        ax = kw.get("axis", -1)
        return X.add(g, X.neg(X.had(X.Fn("softmax", a(0), axis=ax), _SumKeep(g, ax))))
    if op == "softmax_cross_entropy":
        z, t, w = ins
        tgt = np.asarray(t)
        Y = np.eye(np.shape(z)[-1])[tgt] if tgt.dtype.kind in "iu" else tgt
        lab = G._labelled(np.asarray(t)) or "y"
        key = ("const", lab)
        G.values[key] = Y
        p = X.add(X.Fn("softmax", a(0), axis=-1), X.neg(X.Val(key, lab)))
        wv = np.asarray(w)
        we = X.Num(float(wv)) if wv.ndim == 0 else G.const(w)
        return X.had(g, X.had(we, p) if not isinstance(we, X.Num) else X.scale(we, p))
    if op == "sum_squares":                                   # Σ c_i/2 ‖x_i‖²: x̄_i = c_i g x_i (an L2 penalty)
        c = kw.get("scale")
        c = float(c[i]) if c is not None and np.ndim(c) else float(c if c is not None else 1.0)
        return X.scale(X.Num(c), X.had(g, a(i)))
    if op == "bce_with_logits":                               # Σ w BCE(σ(z), d): z̄ = g w (σ(z) − d)
        d, w = G.const(ins[1]), ins[2]
        p = X.add(X.Fn("sigmoid", a(0)), X.neg(d))
        we = X.Num(float(w)) if np.ndim(w) == 0 else G.const(w)
        return X.had(g, X.scale(we, p) if isinstance(we, X.Num) else X.had(we, p))
    if op == "broadcast_to":
        return _unb(G, node, i, g)
    if op == "cast":
        return g
    if op == "bilinear":
        if i == 0:
            return X.BilinearX(g, a(0), a(1))
        return X.BilinearV(g, a(0))
    if op in ("max", "min"):
        return X.MaxRoute(g, a(0), out, kw.get("axis"), kw.get("keepdims", False))
    if op == "smax":
        return X.SmaxJac(g, a(0), kw.get("axis", -1), kw.get("keepdims", False))
    return _opaque(G, node, i, g)


def _transpose_adj(g):
    if isinstance(g, X.Add):
        return X.add(*[_transpose_adj(t) for t in g.terms])
    if isinstance(g, X.Scatter) and not g.columns:
        return X.Scatter(g.a, g.idx, g.shape[::-1], columns=True, table=g.table)
    if isinstance(g, X.MatMul):                  # (Aᵀ B)ᵀ = Bᵀ A holds for matmul with 1-D operands too
        return X.matmul(X.transpose(g.b), X.transpose(g.a))
    if isinstance(g, X.Outer):
        return X.Outer(g.b, g.a)
    return X.transpose(g)


class _SumKeep(X.Expr):
    def __init__(self, a, axis):
        self.a, self.axis = a, axis

    def children(self):
        return (self.a,)

    def rebuild(self, kids):
        return _SumKeep(kids[0], self.axis)

    def ev(self, ctx):
        return np.sum(self.a.ev(ctx), axis=self.axis, keepdims=True)

    def tex(self):
        return r"\textstyle\sum " + self.a.ptex(X.P_MUL)

    def txt(self):
        return "Σ " + self.a.ptxt(X.P_MUL)


def _fmt_index(idx):
    """``(slice(None), slice(0, 6))`` -> ``:, 0:6``; arrays and other indices -> ``·``."""
    def one(i):
        if isinstance(i, slice):
            a = "" if i.start is None else str(i.start)
            b = "" if i.stop is None else str(i.stop)
            return f"{a}:{b}" + ("" if i.step in (None, 1) else f":{i.step}")
        if isinstance(i, (int, np.integer)):
            return str(int(i))
        if i is Ellipsis:
            return "…"
        return "·"
    if isinstance(idx, tuple):
        return ", ".join(one(i) for i in idx)
    return one(idx)


class _GetitemAdj(X.Expr):
    def __init__(self, a, idx, shape):
        self.a, self.idx, self.shape = a, idx, tuple(shape)

    def children(self):
        return (self.a,)

    def rebuild(self, kids):
        return _GetitemAdj(kids[0], self.idx, self.shape)

    def ev(self, ctx):
        out = np.zeros(self.shape)
        np.add.at(out, self.idx, np.asarray(self.a.ev(ctx)))
        return out

    def tex(self):
        return r"\mathrm{pad}_{[" + _fmt_index(self.idx) + r"]}\left(" + self.a.tex() + r"\right)"

    def txt(self):
        return f"pad[{_fmt_index(self.idx)}]({self.a.txt()})"


def _opaque(G, node, i, g):
    saved, needs = node.saved, tuple(j == i for j in range(len(node.parents)))
    op = node.op
    shape = _shape_of(G, node, i)

    def fn(gv, op=op, saved=saved, needs=needs, i=i, shape=shape):
        r = op.backward(np.asarray(gv, dtype=node.dtype) if np.ndim(gv) else
                        np.broadcast_to(np.asarray(gv, dtype=node.dtype), node.shape), needs, *saved)[i]
        r = r.to_dense() if isinstance(r, ag.RowSparseGrad) else r
        return ag.unbroadcast(np.asarray(r), tuple(shape))
    return X.Opaque(node.op.name, g, fn, str(i))


# ----------------------------------------------------------------------------------------------
def _param_names(params):
    """{id(tensor): name} from a Module (its ``named_parameters()``, dots dropped: ``0.weight`` ->
    ``W0``-style names are the user's choice; here ``layers.0.weight`` stays as it is) or a dict."""
    if params is None:
        return None
    items = params.named_parameters() if callable(getattr(params, "named_parameters", None)) else dict(params).items()
    return {id(t): n for n, t in items}


def derive(loss, constants=None, check=True, title=None, legend=None, params=None):
    """The :class:`Derivation` of ``loss`` (a scalar tensor recorded under ``cr.record_forward()``,
    or a function of no arguments returning one, which is then run under it).

    Args:
        loss: the scalar tensor, or a zero-argument callable computing it.
        constants: ``{label: array}`` -- names for constant inputs (targets ``y``, a data matrix
            ``X``) so they print by name; matched by identity, then by value.
        check: evaluate every equation and compare it with the engine's δ (default True).
        params: a Module (its ``named_parameters()``) or ``{name: tensor}``: names for parameters
            that have none of their own (an ``nn.Linear``'s weight prints as ``0.weight``, not θ1).
    """
    if callable(loss) and not isinstance(loss, Tensor):
        with ag.record_forward():
            loss = loss()
    G = Graph(loss, constants, _param_names(params))
    rootname = G.names[id(G.root)]
    # symbolic backward pass: decreasing sequence number (every consumer before its input)
    pending = {id(G.root): [X.Num(1.0)]}
    order, eqs = [], []
    heap = [(-G.root.seq, 0, G.root)]
    leaf_terms, leaf_pos = {}, {}
    tick = 0
    consumers = {k: {id(n) for n, _ in v} for k, v in G.consumers.items()}
    while heap:
        _, _, node = heapq.heappop(heap)
        terms = pending.pop(id(node))
        total = X.add(*terms)
        nm = G.names.get(id(node))
        if node is not G.root and nm is not None:
            eqs.append(Equation(nm, "delta", id(node), total, node.shape, len(consumers[id(node)]), rootname))
            order.append(node.seq)
            g = X.Delta(id(node), nm)
        else:
            g = total
        # a fused linear x W + b: its bias first, so the lines come in the order of matmul-then-add
        inputs = (2, 0, 1) if node.op.name == "linear" else range(len(node.parents))
        for j, i in enumerate(inputs):
            p = node.parents[i]
            if p is None:
                continue
            e = vjp(G, node, i, g)
            if type(p) is ag.Node:
                if id(p) not in pending:
                    tick += 1
                    pending[id(p)] = []
                    heapq.heappush(heap, (-p.seq, tick, p))
                pending[id(p)].append(e)
            else:
                leaf_terms.setdefault(id(p), (p, []))[1].append(e)
                leaf_pos[id(p)] = node.seq - j / (2 * len(inputs))     # the last consumer's, in input order
    for k, (t, terms) in leaf_terms.items():
        eqs.append(Equation(G.names[k], "grad", k, X.add(*terms), t.data.shape, len(consumers[k]), rootname))
        order.append(leaf_pos[k] - 0.5)
    eqs = [e for _, e in sorted(zip(order, eqs), key=lambda p: -p[0])]
    deltas, rec = engine_deltas(G)
    ctx = Context(G.values, deltas)
    d = Derivation(eqs, rootname, ctx, G.root.dtype, G, title=title, legend=legend)
    d.recorded = rec
    if check:
        check_equations(d)
    return d


def engine_deltas(G):
    """The engine's δ of every node and leaf of the graph (float64 copies), by key; the graph is
    kept (retain_graph) and nobody's ``.grad`` is touched."""
    with ag.record_deltas() as rec:
        ag.gradients(G.root_tensor, list(G.leaves), retain_graph=True)
    out = {}
    for n in G.nodes:
        try:
            out[id(n)] = np.asarray(rec[_Key(n)], dtype=np.float64)
        except KeyError:
            out[id(n)] = np.zeros(n.shape)
    for t in G.leaves:
        try:
            out[id(t)] = np.asarray(rec[t], dtype=np.float64)
        except KeyError:
            out[id(t)] = np.zeros(t.data.shape)
    return out, rec


def check_equations(d):
    for e in d.equations:
        want = d.ctx.deltas[e.key]
        try:
            got = e.evaluate(d.ctx)
        except Exception as ex:                      # a printed line that cannot even be evaluated fails
            e.ok, e.error = False, f"{type(ex).__name__}: {ex}"
            e.max_abs = e.max_rel = float("inf")
            continue
        e.max_abs, e.max_rel = _rel(got, want)
        e.ok = close(got, want, d.dtype)
    return d
