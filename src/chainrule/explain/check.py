"""Check a hand derivation line by line: the first wrong equation, and the slip that explains it.

The user writes their derivation as code -- ``derive(values) -> {name: array}`` from the forward
values (every named tensor, parameter and labelled constant of the model) to their δ's and parameter
gradients, with the model's tensor names as keys (``'z1'`` is δ_z1, ``'W1'`` is ∂J/∂W1).
:func:`check_derivation` walks the equations of :func:`chainrule.explain` in backward order and, for
each name the user gave:

* **right** -- it matches the engine's δ (float64 tolerance);
* **inherits** -- it is wrong, but it is exactly what the correct formula gives from the user's own
  (wrong) inputs: the error came from an earlier line;
* **wrong** -- its inputs were right (or are not the cause) and its output is wrong.  The first such
  line is *the* wrong equation.  Its slip is diagnosed by trying candidate corrections numerically --
  the correct formula with one thing changed (a ᵀ removed or added, an f′ dropped or swapped for
  another activation's, the sign, a 1/m dropped or added, the regularisation term dropped or added,
  one consumer's term alone instead of the sum, the two children's halves swapped) -- and naming the
  one that reproduces the user's numbers.
"""
from __future__ import annotations

import inspect
import re
import traceback

import numpy as np

from . import expr as X
from .derive import Context, ExplainError, close, derive


class DerivationError(ExplainError):
    """The hand derivation cannot be checked: an unknown name, an impossible shape, or it raised."""


class Diagnosis:
    """The slip that explains a wrong line: ``kind`` (one of :data:`SLIP_KINDS`) and a sentence."""

    def __init__(self, kind, text, formula=None):
        self.kind, self.text, self.formula = kind, text, formula

    def __repr__(self):
        return f"<Diagnosis {self.kind}: {self.text}>"


SLIP_KINDS = ("transpose", "missing f′", "wrong f′", "sign", "missing 1/m", "extra 1/m",
              "missing regularisation", "extra regularisation", "missing sum over consumers",
              "swapped children", "missing term", "unexplained")


class Entry:
    """One checked line: ``name``, ``status`` ('right', 'wrong', 'inherits', 'not given'), the
    equation, the error (``max_abs``, ``max_rel``, ``worst`` index, user's and expected value there),
    ``diagnosis`` for wrong lines, ``inherits_from`` for inherited ones."""

    def __init__(self, eq, status, user=None, expected=None, note=None):
        self.eq, self.name, self.status = eq, eq.name, status
        self.user, self.expected, self.note = user, expected, note
        self.diagnosis = None
        self.inherits_from = []
        self.max_abs = self.max_rel = None
        self.worst = None
        if user is not None and expected is not None and status != "right":
            d = np.abs(user - expected)
            if d.size:
                k = np.unravel_index(int(np.argmax(d)), d.shape)
                self.worst = tuple(int(i) for i in k)
                self.max_abs = float(d[k])
                self.max_rel = float(np.max(d / (np.abs(expected) + 1e-12)))

    def label(self):
        return self.eq.lhs_txt()

    def describe(self):
        s = f"{self.label()}: {self.status}"
        if self.status == "wrong":
            s += f" (max abs err {self.max_abs:.3g}, max rel err {self.max_rel:.3g}"
            if self.worst is not None:
                s += (f"; worst element {list(self.worst)}: yours {self.user[self.worst]:.6g}, "
                      f"expected {self.expected[self.worst]:.6g}")
            s += ")"
        if self.status == "inherits":
            s += " the error of " + ", ".join(f"δ_{n}" for n in self.inherits_from) + " (its own formula is right)"
        if self.note:
            s += f"  [{self.note}]"
        return s


class Report:
    """What :func:`check_derivation` found: ``entries`` in backward order, ``first`` (the first
    wrong :class:`Entry`, or None), ``ok``; ``str(report)`` is the readable report."""

    def __init__(self, entries, derivation, unused_names):
        self.entries, self.derivation = entries, derivation
        self.first = next((e for e in entries if e.status == "wrong"), None)
        self.unused = unused_names

    @property
    def ok(self):
        return self.first is None and not any(e.status == "inherits" for e in self.entries)

    def __getitem__(self, name):
        for e in self.entries:
            if e.name == name:
                return e
        raise KeyError(name)

    def __str__(self):
        given = [e for e in self.entries if e.status != "not given"]
        lines = []
        if self.first is None:
            lines.append(f"All {len(given)} lines of the hand derivation are right "
                         f"(checked against the engine's δ in float64, in backward order).")
        else:
            f = self.first
            lines.append(f"The first wrong equation is {f.label()} "
                         f"(line {given.index(f) + 1} of {len(given)} in backward order; every line before it is right).")
            lines.append(f"  expected:  {f.eq.txt()}")
            lines.append(f"  error:     max abs {f.max_abs:.3g}, max rel {f.max_rel:.3g}; worst element "
                         f"{list(f.worst)}: yours {f.user[f.worst]:.6g}, expected {f.expected[f.worst]:.6g}")
            if f.diagnosis is not None:
                lines.append(f"  likely slip ({f.diagnosis.kind}): {f.diagnosis.text}")
        lines.append("")
        for e in given:
            lines.append("  " + e.describe())
        skipped = [e.label() for e in self.entries if e.status == "not given"]
        if skipped:
            lines.append(f"  not given (partial derivation): {', '.join(skipped)}")
        return "\n".join(lines)

    __repr__ = __str__


# ----------------------------------------------------------------------------------------------
def forward_values(d):
    """The dict a hand derivation receives: every named tensor's forward value, every parameter
    (named as in the model) and the labelled constants (targets, data)."""
    G = d.graph
    vals = {}
    for obj in G.nodes:
        nm = G.names.get(id(obj))
        if nm is not None and obj is not G.root:
            vals[nm] = np.asarray(obj.fwd[0])
    for t in G.leaves:
        vals[G.names[id(t)]] = t.data
    for k, v in G.values.items():
        if isinstance(k, tuple) and k[0] == "const":
            vals.setdefault(k[1], v)
    for lab, v in G.constants.items():
        vals.setdefault(lab, np.asarray(v))
    return vals


def _call(fn, values, eqs):
    """Run the user's function; on an exception, say which line and name it was computing."""
    out = {}
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = [None]
    try:
        if len(params) >= 2:
            r = fn(dict(values), out)
            res = out if r is None else r
        else:
            res = fn(dict(values))
    except Exception as ex:
        tb = traceback.format_exc()
        frames = traceback.extract_tb(ex.__traceback__)
        where = frames[-1] if frames else None
        line = (where.line or "") if where else ""
        names = {e.name for e in eqs}
        cand = [n for n in re.findall(r"""["']([^"']+)["']""", line) if n in names]
        if not cand:
            for var in re.findall(r"[A-Za-z_][A-Za-z_0-9]*", line.split("=")[0]):
                base = re.sub(r"^(delta_?|d_?|g_?|grad_?)", "", var)
                if base in names:
                    cand.append(base)
        if cand:
            checking = f"while computing {cand[0]!r}"
        elif out:
            nxt = [e.name for e in eqs if e.name not in out]
            checking = f"after producing {sorted(out)}" + (f"; next in backward order: {nxt[0]!r}" if nxt else "")
        else:
            checking = "before producing any entry"
        raise DerivationError(
            f"check_derivation: the hand derivation raised {type(ex).__name__}: {ex} -- {checking}"
            + (f" (at {where.filename}:{where.lineno}: {line.strip()})" if where else "")
            + f"\n{tb}") from ex
    if not isinstance(res, dict):
        raise DerivationError(f"check_derivation: the hand derivation must return a dict name -> array, "
                              f"got {type(res).__name__}")
    return res


def _as_array(name, v, eq, table_columns):
    """The user's entry as an array of the tensor's shape: accepts dense arrays, per-example lists
    (stacked), and for an embedding table a RowSparseGrad or {word: column} dict (seed 002)."""
    from ..autograd import RowSparseGrad
    shape = eq.shape
    if isinstance(v, RowSparseGrad):
        if table_columns and tuple(v.shape) == tuple(shape[::-1]):
            return v.to_dense().T, "given as rows of the transposed table (columns of the table)"
        v = v.to_dense()
    if isinstance(v, dict):
        if len(shape) != 2:
            raise DerivationError(f"check_derivation: {name!r}: a dict of columns only makes sense for a "
                                  f"table (2-D); {eq.lhs_txt()} has shape {shape}")
        dense = np.zeros(shape)
        for w, col in v.items():
            col = np.asarray(col, dtype=np.float64).reshape(-1)
            if table_columns:
                if col.shape[0] != shape[0]:
                    raise DerivationError(f"check_derivation: {name!r}[{w}]: a column of {name} has {shape[0]} "
                                          f"entries, got {col.shape[0]}")
                dense[:, int(w)] += col
            else:
                dense[int(w)] += col
        return dense, f"given as {len(v)} {'columns' if table_columns else 'rows'}"
    if isinstance(v, (list, tuple)) and len(v) and np.ndim(v[0]) >= 1 and len(shape) >= 1 and len(v) == shape[0]:
        v = np.stack([np.asarray(x, dtype=np.float64) for x in v])
        note = "given per example, stacked"
    else:
        note = None
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError) as ex:
        raise DerivationError(f"check_derivation: {name!r}: cannot be read as an array ({ex})") from None
    if a.shape == shape:
        return a, note
    if a.size == int(np.prod(shape)) and np.squeeze(a).shape == tuple(s for s in shape if s != 1):
        return a.reshape(shape), "reshaped from " + str(a.shape)
    if a.ndim == 2 and a.shape[::-1] == shape:
        return a, "transposed shape"           # kept: the diagnosis names the transpose
    raise DerivationError(
        f"check_derivation: {name!r} has shape {a.shape}, which cannot be {eq.lhs_txt()}: the tensor "
        f"{name} has shape {shape}")


def check_derivation(loss, derivation, constants=None, params=None):
    """Compare a hand derivation with the engine's backward pass; return a :class:`Report`.

    Args:
        loss: the model's scalar loss recorded under ``cr.record_forward()`` (or a function that
            computes it), its tensors named as in the derivation.
        derivation: ``f(values) -> {name: array}`` (or ``f(values, out)`` filling ``out``): from the
            forward values -- a dict with every named tensor, parameter and labelled constant -- to
            the δ's of named tensors and the gradients of parameters, keyed by the same names.  Any
            subset of names may be given (a partial derivation).
        constants: ``{label: array}`` as in :func:`chainrule.explain`: the constant inputs the
            derivation sees by name (``y``, ``X``).
        params: a Module or ``{name: tensor}`` naming parameters that have no name of their own.

    Per-example lists are stacked; an embedding table's gradient may be a dense array, a
    :class:`chainrule.RowSparseGrad`, or a dict ``{word: column}`` (the columns of seed 002's L).
    """
    d = derive(loss, constants=constants, params=params)
    return check_against(d, derivation)


def check_against(d, derivation):
    """:func:`check_derivation` on an existing :class:`~chainrule.explain.derive.Derivation`."""
    vals = forward_values(d)
    user = _call(derivation, vals, d.equations)
    names = {e.name for e in d.equations}
    alias = {}
    for k in list(user):
        base = re.sub(r"^(δ_|delta_|d_)", "", k) if k not in names else k
        if base not in names:
            raise DerivationError(
                f"check_derivation: the hand derivation returned {k!r}, which is no tensor of the model; the "
                f"names are: {', '.join(e.name for e in d.equations)}")
        alias[base] = k
    ctx = d.ctx
    G = d.graph
    leaf_ids = {id(t) for t in G.leaves}
    got = {}
    entries = []
    for e in d.equations:
        if e.name not in alias:
            entries.append(Entry(e, "not given"))
            continue
        table_cols = e.kind == "grad" and any(isinstance(x, X.Scatter) and x.columns for x in e.rhs.walk())
        U, note = _as_array(e.name, user[alias[e.name]], e, table_cols)
        E = ctx.deltas[e.key]
        got[e.key] = U
        if U.shape == E.shape and close(U, E, d.dtype):
            entries.append(Entry(e, "right", note=note))
            continue
        # the formula evaluated from the user's own inputs (where they gave them)
        uctx = _UserCtx(ctx, got)
        wrong_inputs = [n.name for n in e.rhs.walk() if isinstance(n, X.Delta) and n.key in got
                        and not (got[n.key].shape == ctx.deltas[n.key].shape and close(got[n.key], ctx.deltas[n.key]))]
        wrong_inputs = list(dict.fromkeys(wrong_inputs))
        if wrong_inputs and U.shape == E.shape:
            try:
                R = e.evaluate(uctx)
            except Exception:
                R = None
            if R is not None and close(U, R, d.dtype):
                ent = Entry(e, "inherits", U, E, note=note)
                ent.inherits_from = wrong_inputs
                entries.append(ent)
                continue
        ent = Entry(e, "wrong", U if U.shape == E.shape else U.T, E, note=note)
        ent.diagnosis = diagnose(e, U, E, uctx, d, leaf_ids)
        entries.append(ent)
    return Report(entries, d, [])


class _UserCtx(Context):
    """Forward values as recorded; δ's of the user where they gave them, else the engine's."""

    def __init__(self, ctx, user):
        self.values, self.deltas, self.user = ctx.values, ctx.deltas, user

    def delta(self, key):
        u = self.user.get(key)
        if u is not None and u.shape == self.deltas[key].shape:
            return u
        return self.deltas[key]


# ----------------------------------------------------------------------------------------------
# Diagnosis: the correct formula with one thing changed, evaluated; the one that gives the user's numbers
# ----------------------------------------------------------------------------------------------
_FP_NAMES = {"sigmoid": "σ′", "tanh": "tanh′", "relu": "relu′", "identity": "1", "leaky_relu": "lrelu′"}


def _positions(root):
    """(path, node) for every occurrence of every node of the tree (a shared subtree -- one δ ⊙ f′
    used by two terms -- has one position per use), iteratively."""
    out, stack = [], [((), root)]
    while stack:
        path, e = stack.pop()
        out.append((path, e))
        for i, k in enumerate(e.children()):
            stack.append((path + (i,), k))
    return out


def _replace(root, path, new):
    """A copy of ``root`` with the node at ``path`` replaced by ``new`` (the tree is shallow: the
    depth of an equation, not of the graph)."""
    if not path:
        return new
    kids = list(root.children())
    kids[path[0]] = _replace(kids[path[0]], path[1:], new)
    return root.rebuild(kids)


def _candidates(e, d, leaf_ids):
    """(kind, sentence, mutated tree) for every single change of the correct formula."""
    rhs = e.rhs
    out = []
    for path, node in _positions(rhs):
        if isinstance(node, X.Fp):
            fname = _FP_NAMES.get(node.f, node.f + "′")
            arg = (node.out or node.z).txt()
            out.append(("missing f′", f"the factor {fname}({arg}) = {node.txt()} is missing", _replace(rhs, path, X.Num(1.0))))
            for other in ("sigmoid", "tanh", "relu", "identity"):
                if other != node.f:
                    alt = X.Fp(other, node.z, node.out if other in ("sigmoid", "tanh", "relu") else node.out)
                    out.append(("wrong f′", f"{_FP_NAMES.get(other, other)} was used where {fname} belongs "
                                f"(the activation of {arg} is {node.f})", _replace(rhs, path, alt)))
        elif isinstance(node, X.SoftmaxJac):
            diag = X.had(node.g, X.Fp("sigmoid", None, node.y))
            out.append(("wrong f′", "the softmax Jacobian was replaced by the elementwise y ⊙ (1 − y) (its "
                        "diagonal only): softmax is a vector activation", _replace(rhs, path, diag)))
            out.append(("missing f′", "the softmax Jacobian (diag(y) − y yᵀ) is missing", _replace(rhs, path, node.g)))
        elif isinstance(node, X.T):
            out.append(("transpose", f"the transpose on {node.a.txt()} is missing", _replace(rhs, path, node.a)))
        elif isinstance(node, (X.MatMul, X.Outer)):
            for side in ("a", "b"):
                sub = getattr(node, side)
                if isinstance(sub, X.T):
                    continue
                new = type(node)(X.T(sub), node.b) if side == "a" else type(node)(node.a, X.T(sub))
                out.append(("transpose", f"an extra transpose on {sub.txt()}", _replace(rhs, path, new)))
        elif isinstance(node, X.Scale) and isinstance(node.c, X.Num) and node.c.c not in (1.0, -1.0):
            c = node.c.c
            inv = 1.0 / c if c else 0
            is_m = c and abs(inv - round(inv)) < 1e-9 * abs(inv) and round(inv) > 1
            if _is_reg(node, leaf_ids):
                continue
            kind = "missing 1/m" if is_m else "missing term"
            out.append((kind, f"the factor {node.c.txt()} is missing" + (f" (the 1/m of the mean, m = {int(round(inv))})"
                                                                       if is_m else ""), _replace(rhs, path, node.a)))
        elif isinstance(node, X.Slice):
            size = node.hi - node.lo
            other_lo = node.hi if node.lo == 0 else node.lo - size
            if other_lo >= 0:
                new = X.Slice(node.a, node.axis, other_lo, other_lo + size)
                out.append(("swapped children", f"the other child's half {new.txt()} was used instead of {node.txt()} "
                            "(left and right children swapped)", _replace(rhs, path, new)))
    if isinstance(rhs, X.Add) or (isinstance(rhs, X.Scale) and isinstance(rhs.a, X.Add)):
        add = rhs if isinstance(rhs, X.Add) else rhs.a
        apath = () if add is rhs else (1,)
        for t in add.terms:
            rest = X.add(*[u for u in add.terms if u is not t])
            new = _replace(rhs, apath, rest)
            if _is_reg(t, leaf_ids):
                out.append(("missing regularisation", f"the regularisation term {t.txt()} is missing", new))
            elif e.consumers > 1:
                out.append(("missing sum over consumers", f"the term {t.txt()} of one of the {e.consumers} consumers is "
                            "missing: a value that fans out gets the sum of its consumers' δ's", new))
            else:
                out.append(("missing term", f"the term {t.txt()} is missing", new))
        if e.consumers > 1 and len(add.terms) > 2:
            for t in add.terms:
                out.append(("missing sum over consumers", f"only the term {t.txt()} was kept, of the sum over the "
                            f"{e.consumers} consumers", _replace(rhs, apath, t)))
    out.append(("sign", "the sign is wrong", X.neg(rhs)))
    # an extra 1/m, or an extra / missing-by-half regularisation term
    for k in _batch_sizes(d):
        out.append(("extra 1/m", f"an extra factor 1/{k} (1/m applied twice, or where the sum has none)",
                    X.scale(X.Num(1.0 / k), rhs)))
        out.append(("missing 1/m", f"the 1/m of the mean (m = {k}) is missing", X.scale(X.Num(float(k)), rhs)))
    if e.kind == "grad":
        own = X.Val(e.key, e.name)
        has_reg = any(_is_reg(t, leaf_ids) for t in (rhs.terms if isinstance(rhs, X.Add) else [rhs]))
        for c in _reg_coefs(d, leaf_ids):
            if not has_reg:
                out.append(("extra regularisation", f"a regularisation term {X.Num(c).txt()}·{e.name} was added, but "
                            f"{e.name} is not regularised", X.add(rhs, X.scale(X.Num(c), own))))
            else:
                for f, what in ((0.5, "half"), (2.0, "twice")):
                    out.append(("missing regularisation", f"the regularisation term is {what} what it should be "
                                f"(d/dθ of λ/2‖θ‖² is λθ)", X.add(rhs, X.scale(X.Num(c * (f - 1)), own))))
    return out


def _is_reg(t, leaf_ids):
    """c·θ with θ a parameter (the gradient of a λ/2‖θ‖² penalty)."""
    return isinstance(t, X.Scale) and isinstance(t.c, X.Num) and isinstance(t.a, X.Val) and t.a.key in leaf_ids


def _reg_coefs(d, leaf_ids):
    cs = []
    for e in d.equations:
        if e.kind == "grad":
            for t in (e.rhs.terms if isinstance(e.rhs, X.Add) else [e.rhs]):
                if _is_reg(t, leaf_ids) and t.c.c not in cs:
                    cs.append(t.c.c)
    return cs


def _batch_sizes(d):
    ks = []
    for e in d.equations:
        for n in e.rhs.walk():
            if isinstance(n, X.Num) and n.c and 0 < n.c < 1:
                inv = 1.0 / n.c
                if abs(inv - round(inv)) < 1e-9 * inv and round(inv) not in ks:
                    ks.append(int(round(inv)))
    return ks


def diagnose(e, U, E, uctx, d, leaf_ids):
    """The single change of the correct formula that reproduces the user's value ``U``."""
    if U.shape != E.shape:
        if U.shape == E.shape[::-1] and close(U.T, E, d.dtype):
            return Diagnosis("transpose", f"the result is transposed: {e.lhs_txt()} must have the shape of "
                             f"{e.name}, {E.shape}; yours is {U.shape}", e.txt())
        return Diagnosis("transpose", f"the shape {U.shape} is the transpose of {E.shape}, and the values differ too",
                         e.txt())
    for kind, text, tree in _candidates(e, d, leaf_ids):
        try:
            v = np.asarray(tree.ev(uctx), dtype=np.float64)
        except Exception:
            continue
        if v.shape != E.shape:
            if v.size == 1:
                v = np.broadcast_to(v.reshape(()), E.shape)
            else:
                continue
        if close(U, v, d.dtype) and not close(v, E, d.dtype):
            return Diagnosis(kind, text, e.txt())
    return Diagnosis("unexplained", "no single slip of the kinds tried (transpose, f′, sign, 1/m, regularisation, "
                     "sum over consumers, children) reproduces your numbers", e.txt())
