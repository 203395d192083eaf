"""A small algebra of the expressions a hand derivation is written in.

Every equation :func:`chainrule.explain` prints is one of these trees, and the same tree both prints
itself (LaTeX with :meth:`Expr.tex`, plain Unicode with :meth:`Expr.txt`) and evaluates itself
(:meth:`Expr.ev`) from the recorded forward values and δ's -- so what is printed is exactly what is
checked.  The symbols a derivation uses:

* :class:`Val` -- the forward value of a named tensor (``a1``, ``W2``) or of a constant (``y``);
* :class:`Delta` -- the δ (adjoint ∂J/∂t) of a named tensor;
* operators: ``+``, ``−``, scalar factors, ``⊙`` (:class:`Had`), matrix products (:class:`MatMul`,
  :class:`Outer`), ``ᵀ`` (:class:`T`), ``f(·)`` (:class:`Fn`), ``f′(·)`` (:class:`Fp`), sums over a batch
  axis (:class:`SumTo`), and a few layer-level forms (the softmax Jacobian, the bilinear tensor term,
  the scatter into the columns of an embedding table).

Evaluation follows NumPy's broadcasting; a scalar ``1`` (the seed ∂J/∂J) disappears from products.
"""
from __future__ import annotations

import re

import numpy as np

# precedence: higher binds tighter
P_ADD, P_MUL, P_ATOM = 1, 2, 3


def sym_tex(name):
    """``a1`` -> ``a_{1}``, ``W2`` -> ``W_{2}``, ``o[v]`` -> ``o[v]``, ``loss`` -> ``\\mathrm{loss}``."""
    m = re.fullmatch(r"([A-Za-z]+)_?(\d+)", name)
    if m:
        base = m.group(1)
        base = base if len(base) == 1 else rf"\mathrm{{{base}}}"
        return f"{base}_{{{m.group(2)}}}"
    m = re.fullmatch(r"([A-Za-z]+)\[(.+)\]", name)
    if m:
        base = m.group(1) if len(m.group(1)) == 1 else rf"\mathrm{{{m.group(1)}}}"
        inner = m.group(2).replace("->", r"\to ").replace("_", r"\_")
        return rf"{base}[\mathrm{{{inner}}}]"
    if re.fullmatch(r"[A-Za-z]", name):
        return name
    safe = name.replace("\\", "").replace("{", "").replace("}", "").replace("_", r"\_").replace(" ", r"\ ")
    return rf"\mathrm{{{safe}}}"


class Expr:
    prec = P_ATOM

    def ev(self, ctx):                      # -> ndarray
        raise NotImplementedError

    def tex(self):
        raise NotImplementedError

    def txt(self):
        raise NotImplementedError

    def children(self):
        return ()

    def rebuild(self, kids):
        """The same node over new children (used by the slip diagnosis to mutate a tree)."""
        return self

    def ptex(self, prec):
        t = self.tex()
        return rf"\left({t}\right)" if self.prec < prec else t

    def ptxt(self, prec):
        t = self.txt()
        return f"({t})" if self.prec < prec else t

    def walk(self):
        """Every node of the tree, parents before children (iteratively)."""
        stack = [self]
        while stack:
            e = stack.pop()
            yield e
            stack.extend(reversed(e.children()))


def is_one(e):
    return isinstance(e, Num) and e.c == 1.0


def is_zero(e):
    return isinstance(e, Num) and e.c == 0.0


class Unary(Expr):
    """A node over one child ``a``; :meth:`rebuild` applies ``make`` (the simplifying constructor,
    or the class itself) to the new child and the attributes named in ``extra``."""
    make = None
    extra = ()

    def __init__(self, a):
        self.a = a

    def children(self):
        return (self.a,)

    def rebuild(self, kids):
        return (type(self).make or type(self))(kids[0], *(getattr(self, k) for k in self.extra))


class Binary(Expr):
    """A node over two children ``a``, ``b``; :meth:`rebuild` as :class:`Unary`'s."""
    make = None

    def __init__(self, a, b):
        self.a, self.b = a, b

    def children(self):
        return (self.a, self.b)

    def rebuild(self, kids):
        return (type(self).make or type(self))(*kids)


# ---------------------------------------------------------------------------------- atoms
class Val(Expr):
    """A forward value: a named tensor, a parameter, or a constant; ``key`` looks it up in ctx."""
    prec = P_ATOM + 2

    def __init__(self, key, name):
        self.key, self.name = key, name

    def ev(self, ctx):
        return ctx.value(self.key)

    def tex(self):
        return sym_tex(self.name)

    def txt(self):
        return self.name


class Delta(Expr):
    """δ_name: ∂J/∂(named tensor)."""
    prec = P_ATOM + 2

    def __init__(self, key, name):
        self.key, self.name = key, name

    def ev(self, ctx):
        return ctx.delta(self.key)

    def tex(self):
        return rf"\delta_{{{sym_tex(self.name)}}}"

    def txt(self):
        return f"δ_{self.name}"


def _fmt_num(c):
    if c == int(c) and abs(c) < 1e6:
        return str(int(c))
    inv = 1.0 / c if c else 0.0
    if c and abs(inv - round(inv)) < 1e-9 * abs(inv) and abs(inv) < 1e7:
        k = int(round(inv))
        return f"1/{k}"
    return f"{c:.6g}"


class Num(Expr):
    """A scalar number; 1/k prints as a fraction (the 1/m of a mean)."""

    def __init__(self, c, label=None):
        self.c = float(c)
        self.label = label

    def ev(self, ctx):
        return np.asarray(self.c)

    def tex(self):
        if self.label:
            return self.label
        s = _fmt_num(self.c)
        if "/" in s:
            a, b = s.split("/")
            return rf"\tfrac{{{a}}}{{{b}}}"
        return s

    def txt(self):
        return _fmt_num(self.c)


class Const(Expr):
    """A constant array (targets, masks); printed by its label."""
    prec = P_ATOM + 2

    def __init__(self, value, label):
        self.value, self.label = np.asarray(value), label

    def ev(self, ctx):
        return self.value

    def tex(self):
        return sym_tex(self.label)

    def txt(self):
        return self.label


# ---------------------------------------------------------------------------------- arithmetic
class Add(Expr):
    prec = P_ADD

    def __init__(self, terms):
        self.terms = list(terms)

    def children(self):
        return tuple(self.terms)

    def rebuild(self, kids):
        return add(*kids)

    def ev(self, ctx):
        out = self.terms[0].ev(ctx)
        for t in self.terms[1:]:
            out = out + t.ev(ctx)
        return out

    def tex(self):
        s = self.terms[0].tex()
        for t in self.terms[1:]:
            if isinstance(t, Neg):
                s += " - " + t.a.ptex(P_MUL)
            else:
                s += " + " + t.tex()
        return s

    def txt(self):
        s = self.terms[0].txt()
        for t in self.terms[1:]:
            if isinstance(t, Neg):
                s += " − " + t.a.ptxt(P_MUL)
            else:
                s += " + " + t.txt()
        return s


class Neg(Unary):
    prec = P_MUL
    make = staticmethod(lambda *kids: neg(*kids))

    def ev(self, ctx):
        return -self.a.ev(ctx)

    def tex(self):
        return "-" + self.a.ptex(P_ATOM)

    def txt(self):
        return "−" + self.a.ptxt(P_ATOM)


class Scale(Expr):
    """c · a with c a scalar expression (a number, 1/m, λ)."""
    prec = P_MUL

    def __init__(self, c, a):
        self.c, self.a = c, a

    def children(self):
        return (self.c, self.a)

    def rebuild(self, kids):
        return scale(kids[0], kids[1])

    def ev(self, ctx):
        return self.c.ev(ctx) * self.a.ev(ctx)

    def tex(self):
        return self.c.ptex(P_ATOM) + r"\," + self.a.ptex(P_MUL)

    def txt(self):
        return self.c.ptxt(P_ATOM) + "·" + self.a.ptxt(P_MUL)


class Had(Binary):
    """Elementwise (Hadamard) product a ⊙ b, broadcasting (binds looser than a matrix product, so
    (δ ⊙ f′) W prints with its parentheses)."""
    prec = 1.5
    make = staticmethod(lambda *kids: had(*kids))

    def ev(self, ctx):
        return self.a.ev(ctx) * self.b.ev(ctx)

    def tex(self):
        return self.a.ptex(1.5) + r" \odot " + self.b.ptex(P_MUL)

    def txt(self):
        return self.a.ptxt(1.5) + " ⊙ " + self.b.ptxt(P_MUL)


class Div(Binary):
    prec = P_MUL

    def ev(self, ctx):
        return self.a.ev(ctx) / self.b.ev(ctx)

    def tex(self):
        return rf"\frac{{{self.a.tex()}}}{{{self.b.tex()}}}"

    def txt(self):
        return self.a.ptxt(P_MUL) + " ⊘ " + self.b.ptxt(P_ATOM)


class Pow(Unary):
    extra = ("p",)

    def __init__(self, a, p):
        self.a, self.p = a, float(p)

    def ev(self, ctx):
        return self.a.ev(ctx) ** self.p

    def tex(self):
        return self.a.ptex(P_ATOM + 1) + "^{" + _fmt_num(self.p) + "}"

    def txt(self):
        return self.a.ptxt(P_ATOM + 1) + "^" + _fmt_num(self.p)


def _mT(x):
    return x if x.ndim < 2 else np.swapaxes(x, -1, -2)


class T(Unary):
    """Transpose (the last two axes; a vector is a column, so ᵀ makes it a row)."""
    make = staticmethod(lambda *kids: transpose(*kids))

    def ev(self, ctx):
        return _mT(self.a.ev(ctx))

    def tex(self):
        return self.a.ptex(P_ATOM + 1) + r"^{\top}"

    def txt(self):
        return self.a.ptxt(P_ATOM + 1) + "ᵀ"


class MatMul(Binary):
    """Matrix product a b (NumPy's matmul semantics)."""
    prec = P_MUL
    make = staticmethod(lambda *kids: matmul(*kids))

    def ev(self, ctx):
        a, b = self.a.ev(ctx), self.b.ev(ctx)
        if a.ndim == 0 or b.ndim == 0:
            return a * b
        return a @ b

    def tex(self):
        return self.a.ptex(P_MUL) + r"\," + self.b.ptex(P_ATOM)

    def txt(self):
        return self.a.ptxt(P_MUL) + " " + self.b.ptxt(P_ATOM)


class Outer(Binary):
    """a bᵀ for two vectors (per example: a batch of outer products is a matrix product)."""
    prec = P_MUL

    def ev(self, ctx):
        a, b = self.a.ev(ctx), self.b.ev(ctx)
        return np.multiply.outer(a, b)

    def tex(self):
        return self.a.ptex(P_MUL) + r"\," + self.b.ptex(P_ATOM + 1) + r"^{\top}"

    def txt(self):
        return self.a.ptxt(P_MUL) + " " + self.b.ptxt(P_ATOM + 1) + "ᵀ"


# ---------------------------------------------------------------------------------- functions
def _sigmoid(x):
    return np.exp(-np.logaddexp(0.0, -x))


FORWARD = {
    "tanh": np.tanh, "sigmoid": _sigmoid, "relu": lambda x: np.maximum(x, 0), "exp": np.exp,
    "log": np.log, "softplus": lambda x: np.logaddexp(0.0, x), "sqrt": np.sqrt, "abs": np.abs,
}
FN_TEX = {"tanh": r"\tanh", "sigmoid": r"\sigma", "relu": r"\mathrm{relu}", "exp": r"\exp", "log": r"\log",
          "softplus": r"\mathrm{softplus}", "sqrt": r"\sqrt", "abs": r"\mathrm{abs}",
          "softmax": r"\mathrm{softmax}", "log_softmax": r"\log\mathrm{softmax}",
          "leaky_relu": r"\mathrm{lrelu}"}
FN_TXT = {"sigmoid": "σ", "log_softmax": "log softmax", "leaky_relu": "lrelu"}


class Fn(Expr):
    """f(a), f an elementwise function (or softmax along ``axis``)."""

    def __init__(self, f, a, **kw):
        self.f, self.a, self.kw = f, a, kw

    def children(self):
        return (self.a,)

    def rebuild(self, kids):
        return Fn(self.f, kids[0], **self.kw)

    def ev(self, ctx):
        x = self.a.ev(ctx)
        if self.f == "softmax":
            ax = self.kw.get("axis", -1)
            e = np.exp(x - x.max(axis=ax, keepdims=True))
            return e / e.sum(axis=ax, keepdims=True)
        if self.f == "log_softmax":
            ax = self.kw.get("axis", -1)
            s = x - x.max(axis=ax, keepdims=True)
            return s - np.log(np.exp(s).sum(axis=ax, keepdims=True))
        if self.f == "leaky_relu":
            return np.where(x > 0, x, self.kw["slope"] * x)
        return FORWARD[self.f](x)

    def tex(self):
        return FN_TEX.get(self.f, rf"\mathrm{{{self.f}}}") + rf"\left({self.a.tex()}\right)"

    def txt(self):
        return FN_TXT.get(self.f, self.f) + f"({self.a.txt()})"


def fprime_value(f, z=None, out=None, slope=None):
    """f′ evaluated from the input z or (preferably, as the seeds write it) the output a = f(z)."""
    if f == "sigmoid":
        a = out if out is not None else _sigmoid(z)
        return a * (1 - a)
    if f == "tanh":
        a = out if out is not None else np.tanh(z)
        return 1 - a * a
    if f == "relu":
        return ((out if out is not None else z) > 0).astype(float)
    if f == "leaky_relu":
        pos = (out if out is not None else z) > 0
        return np.where(pos, 1.0, slope)
    if f == "softplus":
        return _sigmoid(z)
    if f == "exp":
        return out if out is not None else np.exp(z)
    if f == "log":
        return 1.0 / z
    if f == "sqrt":
        return 0.5 / (out if out is not None else np.sqrt(z))
    if f == "abs":
        return np.sign(z)
    if f == "identity":
        return np.ones_like(out if out is not None else z)
    raise KeyError(f)


class Fp(Expr):
    """f′ of an elementwise activation, as the seeds write it: σ′ = a ⊙ (1 − a), tanh′ = 1 − a²
    (from the named output ``a``), relu′ = 1[z > 0]; otherwise f′(z)."""

    def __init__(self, f, z, out=None, slope=None):
        self.f, self.z, self.out, self.slope = f, z, out, slope

    def children(self):
        return tuple(x for x in (self.z, self.out) if x is not None)

    def rebuild(self, kids):
        z = kids[0] if self.z is not None else None
        out = kids[-1] if self.out is not None else None
        return Fp(self.f, z, out, self.slope)

    def ev(self, ctx):
        out = self.out.ev(ctx) if self.out is not None else None
        z = self.z.ev(ctx) if (self.z is not None and (out is None or self.f in ("softplus", "log", "abs"))) else None
        return fprime_value(self.f, z, out, self.slope)

    def _out_named(self):
        return self.out is not None and isinstance(self.out, (Val, Const))

    def tex(self):
        if self.f == "sigmoid" and self._out_named():
            a = self.out.tex()
            return rf"{a} \odot (1 - {a})"
        if self.f == "tanh" and self._out_named():
            return rf"(1 - {self.out.ptex(P_ATOM + 1)}^{{2}})"
        if self.f == "relu":
            return rf"\mathbb{{1}}[{(self.z or self.out).tex()} > 0]"
        if self.f == "softplus":
            return rf"\sigma\left({self.z.tex()}\right)"
        arg = self.z if self.z is not None else self.out
        return FN_TEX.get(self.f, rf"\mathrm{{{self.f}}}") + rf"'\left({arg.tex()}\right)"

    def txt(self):
        if self.f == "sigmoid" and self._out_named():
            a = self.out.txt()
            return f"{a} ⊙ (1 − {a})"
        if self.f == "tanh" and self._out_named():
            return f"(1 − {self.out.ptxt(P_ATOM + 1)}²)"
        if self.f == "relu":
            return f"1[{(self.z or self.out).txt()} > 0]"
        if self.f == "softplus":
            return f"σ({self.z.txt()})"
        arg = self.z if self.z is not None else self.out
        return FN_TXT.get(self.f, self.f) + f"′({arg.txt()})"

    @property
    def prec(self):
        if self.f == "sigmoid" and self._out_named():
            return P_MUL
        return P_ATOM


# ---------------------------------------------------------------------------------- shape forms
class SumTo(Unary):
    """Σ over the axes along which a value of ``shape`` was broadcast (the batch sum of a bias
    gradient, Σ_i δ_i): the one place a derivation undoes broadcasting."""

    extra = ("shape",)

    def __init__(self, a, shape):
        self.a, self.shape = a, tuple(shape)

    def ev(self, ctx):
        g = np.asarray(self.a.ev(ctx))
        return _sum_to(g, self.shape)

    def tex(self):
        return r"\sum_{i} " + self.a.ptex(P_MUL)

    def txt(self):
        return "Σᵢ " + self.a.ptxt(P_MUL)


def _sum_to(g, shape):
    if g.shape == shape:
        return g
    if g.size == 1 and int(np.prod(shape)) != 1:
        return np.broadcast_to(g.reshape(()), shape)
    extra = g.ndim - len(shape)
    if extra > 0:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return np.broadcast_to(g, shape)


class Expand(Unary):
    """A gradient broadcast back over the axes a sum reduced (prints as itself)."""

    extra = ("axis", "keepdims", "shape")

    def __init__(self, a, axis, keepdims, shape):
        self.a, self.axis, self.keepdims, self.shape = a, axis, keepdims, tuple(shape)

    def ev(self, ctx):
        g = np.asarray(self.a.ev(ctx))
        if not self.keepdims and g.ndim and self.axis is not None:
            ax = (self.axis,) if isinstance(self.axis, int) else tuple(self.axis)
            g = np.expand_dims(g, tuple(a % len(self.shape) for a in ax))
        return np.broadcast_to(g, self.shape)

    def tex(self):
        return self.a.tex()

    def txt(self):
        return self.a.txt()

    @property
    def prec(self):
        return self.a.prec


class Reshape(Unary):
    extra = ("shape", "label")

    def __init__(self, a, shape, label=None):
        self.a, self.shape, self.label = a, tuple(shape), label

    def ev(self, ctx):
        return np.reshape(self.a.ev(ctx), self.shape)

    def tex(self):
        return self.a.tex()

    def txt(self):
        return self.a.txt()

    @property
    def prec(self):
        return self.a.prec


class Permute(Unary):
    """A transpose with explicit axes (printed as ᵀ)."""

    extra = ("axes",)

    def __init__(self, a, axes):
        self.a, self.axes = a, axes

    def ev(self, ctx):
        return np.transpose(self.a.ev(ctx), self.axes)

    def tex(self):
        return self.a.ptex(P_ATOM + 1) + r"^{\top}"

    def txt(self):
        return self.a.ptxt(P_ATOM + 1) + "ᵀ"


class Slice(Unary):
    """Rows ``lo:hi`` along ``axis`` of a vector: the part of δ_{[a;b]} that belongs to one block."""

    extra = ("axis", "lo", "hi", "label")

    def __init__(self, a, axis, lo, hi, label=None):
        self.a, self.axis, self.lo, self.hi, self.label = a, axis, lo, hi, label

    def ev(self, ctx):
        g = np.asarray(self.a.ev(ctx))
        idx = [slice(None)] * g.ndim
        idx[self.axis] = slice(self.lo, self.hi)
        return g[tuple(idx)]

    def tex(self):
        lab = self.label or f"{self.lo + 1}:{self.hi}"
        return r"\left[" + self.a.tex() + r"\right]_{" + lab + "}"

    def txt(self):
        lab = self.label or f"{self.lo + 1}:{self.hi}"
        return "[" + self.a.txt() + "]_" + lab


class Index(Unary):
    """Item ``i`` along ``axis`` (the adjoint of stack; per-time-step pieces)."""

    extra = ("axis", "i")

    def __init__(self, a, axis, i):
        self.a, self.axis, self.i = a, axis, i

    def ev(self, ctx):
        return np.take(np.asarray(self.a.ev(ctx)), self.i, axis=self.axis)

    def tex(self):
        return self.a.ptex(P_ATOM) + rf"[{self.i}]"

    def txt(self):
        return self.a.ptxt(P_ATOM) + f"[{self.i}]"


class Scatter(Unary):
    """∂J/∂(table) from ∂J/∂(rows taken): row ``idx[k]`` receives block k (repeats add).  Seed 002:
    the blocks of δ_x go to the columns ``L[:, w_c]``."""

    extra = ("idx", "shape", "columns", "table")

    def __init__(self, a, idx, shape, columns=False, table="L"):
        self.a, self.idx, self.shape, self.columns, self.table = a, np.asarray(idx), tuple(shape), columns, table

    def ev(self, ctx):
        g = np.asarray(self.a.ev(ctx))
        shape = self.shape[::-1] if self.columns else self.shape
        out = np.zeros(shape, dtype=np.result_type(g.dtype, np.float64))
        blocks = g.reshape(self.idx.shape + shape[1:])
        np.add.at(out, self.idx, blocks)
        return out.T if self.columns else out

    def tex(self):
        if self.idx.ndim == 0:
            w = int(self.idx)
            return (self.a.ptex(P_MUL) + rf"\, e_{{{w}}}^{{\top}}" if self.columns
                    else rf"e_{{{w}}}\, " + self.a.ptex(P_ATOM + 1) + r"^{\top}")
        if self.columns:
            return (r"\sum_{c} \left[" + self.a.tex() + r"\right]_{c}\, e_{w_c}^{\top}"
                    r"\quad(\text{block } c \text{ of the window to column } w_c)")
        return r"\sum_{k} e_{w_k} \left[" + self.a.tex() + r"\right]_{k}^{\top}"

    def txt(self):
        if self.idx.ndim == 0:
            w = int(self.idx)
            return (self.a.ptxt(P_MUL) + f" e_{w}ᵀ" if self.columns else f"e_{w} " + self.a.ptxt(P_ATOM + 1) + "ᵀ")
        if self.columns:
            return f"Σ_c [{self.a.txt()}]_c e_(w_c)ᵀ   (block c to column w_c)"
        return f"Σ_k e_(w_k) [{self.a.txt()}]_kᵀ"


class SoftmaxJac(Expr):
    """Seed 004's vector activation: δ_z = J_softmax(z)ᵀ δ_y = (diag(y) − y yᵀ) δ_y, evaluated as
    y ⊙ (δ_y − ⟨δ_y, y⟩) along ``axis`` (the dense Jacobian is never formed)."""

    def __init__(self, y, g, axis):
        self.y, self.g, self.axis = y, g, axis

    def children(self):
        return (self.y, self.g)

    def rebuild(self, kids):
        return SoftmaxJac(kids[0], kids[1], self.axis)

    def ev(self, ctx):
        y, g = self.y.ev(ctx), self.g.ev(ctx)
        return y * (g - np.sum(g * y, axis=self.axis, keepdims=True))

    def tex(self):
        y = self.y.tex()
        return rf"\left(\mathrm{{diag}}({y}) - {y}\,{y}^{{\top}}\right) " + self.g.ptex(P_ATOM)

    def txt(self):
        y = self.y.txt()
        return f"(diag({y}) − {y} {y}ᵀ) " + self.g.ptxt(P_ATOM)


class BilinearX(Expr):
    """Seed 000: ∂/∂v of vᵀ V^{[1:d]} v is Σ_k δ_k (V^{[k]} + V^{[k]ᵀ}) v."""
    prec = P_MUL

    def __init__(self, g, x, V):
        self.g, self.x, self.V = g, x, V

    def children(self):
        return (self.g, self.x, self.V)

    def rebuild(self, kids):
        return BilinearX(*kids)

    def ev(self, ctx):
        g, x, V = self.g.ev(ctx), self.x.ev(ctx), self.V.ev(ctx)
        return np.einsum("...k,ijk,...j->...i", g, V, x) + np.einsum("...k,ijk,...i->...j", g, V, x)

    def tex(self):
        V = self.V.tex()
        return (rf"\sum_{{k}} \left[{self.g.tex()}\right]_k \left({V}^{{[k]}} + {V}^{{[k]\top}}\right) "
                + self.x.ptex(P_ATOM))

    def txt(self):
        V = self.V.txt()
        return f"Σ_k [{self.g.txt()}]_k ({V}^[k] + {V}^[k]ᵀ) {self.x.ptxt(P_ATOM)}"


class BilinearV(Expr):
    """Seed 000: ∂J/∂V^{[k]} = δ_k v vᵀ (summed over the nodes / examples)."""
    prec = P_MUL

    def __init__(self, g, x):
        self.g, self.x = g, x

    def children(self):
        return (self.g, self.x)

    def rebuild(self, kids):
        return BilinearV(*kids)

    def ev(self, ctx):
        g, x = self.g.ev(ctx), self.x.ev(ctx)
        return np.einsum("...k,...i,...j->ijk", g, x, x)

    def tex(self):
        x = self.x.tex()
        return rf"\left[{self.g.tex()}\right]_k\, {x}\,{x}^{{\top}}\ \ (\text{{slice }} k)"

    def txt(self):
        x = self.x.txt()
        return f"[{self.g.txt()}]_k {x} {x}ᵀ (slice k)"


class MaxRoute(Expr):
    """Maxout / max: the gradient goes to the arg-max piece (ties share it)."""

    def __init__(self, g, x, out, axis, keepdims):
        self.g, self.x, self.out, self.axis, self.keepdims = g, x, out, axis, keepdims

    def children(self):
        return (self.g, self.x, self.out)

    def rebuild(self, kids):
        return MaxRoute(kids[0], kids[1], kids[2], self.axis, self.keepdims)

    def ev(self, ctx):
        g, x, z = np.asarray(self.g.ev(ctx)), self.x.ev(ctx), np.asarray(self.out.ev(ctx))
        if not self.keepdims and self.axis is not None:
            g, z = np.expand_dims(g, self.axis), np.expand_dims(z, self.axis)
        mask = (x == z)
        return g * mask / mask.sum(axis=self.axis, keepdims=True)

    def tex(self):
        return self.g.ptex(P_MUL) + rf" \odot \mathbb{{1}}[{self.x.tex()} = \max]"

    def txt(self):
        return self.g.ptxt(P_MUL) + f" ⊙ 1[{self.x.txt()} = max]"


class SmaxJac(Expr):
    """Seed 001's soft maximum o = Σ_i s_i a_i, s = softmax(a): ∂o/∂a_i = s_i (1 + a_i − o)."""
    prec = P_MUL

    def __init__(self, g, a, axis, keepdims):
        self.g, self.a, self.axis, self.keepdims = g, a, axis, keepdims

    def children(self):
        return (self.g, self.a)

    def rebuild(self, kids):
        return SmaxJac(kids[0], kids[1], self.axis, self.keepdims)

    def ev(self, ctx):
        g, a = np.asarray(self.g.ev(ctx)), self.a.ev(ctx)
        e = np.exp(a - a.max(axis=self.axis, keepdims=True))
        s = e / e.sum(axis=self.axis, keepdims=True)
        o = np.sum(s * a, axis=self.axis, keepdims=True)
        if not self.keepdims:
            g = np.expand_dims(g, self.axis)
        return g * s * (1 + a - o)

    def tex(self):
        a = self.a.tex()
        return self.g.ptex(P_MUL) + rf" \odot \sigma_s({a}) \odot \left(1 + {a} - o\right)"

    def txt(self):
        a = self.a.txt()
        return self.g.ptxt(P_MUL) + f" ⊙ σ_s({a}) ⊙ (1 + {a} − o)"


class Opaque(Expr):
    """A gradient this module has no written form for: evaluated by the op's own rule (so the check
    of such a line is not independent; the report says so)."""

    def __init__(self, opname, g, fn, label):
        self.opname, self.g, self.fn, self.label = opname, g, fn, label

    def children(self):
        return (self.g,)

    def rebuild(self, kids):
        return Opaque(self.opname, kids[0], self.fn, self.label)

    def ev(self, ctx):
        return self.fn(np.asarray(self.g.ev(ctx)))

    def tex(self):
        return rf"\overline{{\mathrm{{{self.opname}}}}}_{{{self.label}}}\left({self.g.tex()}\right)"

    def txt(self):
        return f"vjp_{self.opname}[{self.label}]({self.g.txt()})"


# ---------------------------------------------------------------------------------- smart constructors
def _coef(t):
    """t = c · base with c a plain number: (c, base)."""
    if isinstance(t, Neg):
        c, b = _coef(t.a)
        return -c, b
    if isinstance(t, Scale) and isinstance(t.c, Num) and not t.c.label:
        c, b = _coef(t.a)
        return t.c.c * c, b
    return 1.0, t


def add(*terms):
    """A sum with like terms collected (x + x = 2x), a common number factored out
    (⅕y − ⅕σ(z) = ⅕(y − σ(z))) and the positive terms first."""
    flat = []
    for t in terms:
        if t is None or is_zero(t):
            continue
        flat.extend(t.terms if isinstance(t, Add) else [t])
    if not flat:
        return Num(0.0)
    if len(flat) == 1:
        return flat[0]
    coefs, order = {}, []
    for t in flat:
        c, b = _coef(t)
        k = b.txt()
        if k in coefs:
            coefs[k][0] += c
        else:
            coefs[k] = [c, b]
            order.append(k)
    items = [(coefs[k][0], coefs[k][1]) for k in order if coefs[k][0] != 0.0]
    if not items:
        return Num(0.0)
    mags = {abs(c) for c, _ in items}
    common = mags.pop() if len(mags) == 1 else 1.0
    items.sort(key=lambda cb: (cb[0] < 0, not any(type(e).__name__ == "Delta" for e in cb[1].walk())))
    out = [scale(Num(c / common), b) for c, b in items]
    body = out[0] if len(out) == 1 else Add(out)
    return scale(Num(common), body) if common != 1.0 else body


def neg(a):
    if isinstance(a, Neg):
        return a.a
    if isinstance(a, Num):
        return Num(-a.c)
    return Neg(a)


def scale(c, a):
    if isinstance(c, (int, float)):
        c = Num(c)
    if isinstance(a, Num) and isinstance(c, Num) and not c.label and not a.label:
        return Num(c.c * a.c)
    if is_one(c):
        return a
    if is_one(a):
        return c
    if isinstance(c, Num) and c.c == -1.0:
        return neg(a)
    if isinstance(a, Neg):
        return neg(scale(c, a.a))
    if isinstance(a, Scale) and isinstance(a.c, Num) and isinstance(c, Num) and not a.c.label and not c.label:
        return scale(Num(a.c.c * c.c), a.a)
    if isinstance(c, Num) and c.c < 0 and not c.label:
        return neg(scale(Num(-c.c), a))
    return Scale(c, a)


def had(a, b):
    if is_one(a):
        return b
    if is_one(b):
        return a
    if isinstance(a, Num) and not a.label:
        return scale(a, b)
    if isinstance(b, Num) and not b.label:
        return scale(b, a)
    if isinstance(a, Neg):
        return neg(had(a.a, b))
    if isinstance(b, Neg):
        return neg(had(a, b.a))
    if isinstance(a, Scale):
        return scale(a.c, had(a.a, b))
    return Had(a, b)


def matmul(a, b):
    if isinstance(a, Neg):
        return neg(matmul(a.a, b))
    if isinstance(b, Neg):
        return neg(matmul(a, b.a))
    if isinstance(a, Scale):
        return scale(a.c, matmul(a.a, b))
    if isinstance(b, Scale):
        return scale(b.c, matmul(a, b.a))
    return MatMul(a, b)


def transpose(a):
    inner = getattr(a, "inner", None)        # an unnamed intermediate that is itself a transpose
    if isinstance(inner, T):
        return inner.a
    if isinstance(a, T):
        return a.a
    return T(a)
