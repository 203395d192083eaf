"""Mutation benchmark of ``cr.check_derivation``: single slips in the five seed derivations.

The seed derivations of :mod:`chainrule.derivations`, written line by line as hand derivations in
:mod:`chainrule.explain.hand`, are mutated one slip at a time by rewriting their source (Python's
``ast``): every line ``D[name] = ...`` gets each applicable slip --

* ``transpose``: a ``.T`` removed, an operand of ``@`` transposed, the arguments of ``np.outer`` swapped;
* ``missing f′``: ``dsig(a)`` / ``dtanh(a)`` / ``drelu(z)`` / the softmax Jacobian replaced by 1;
* ``wrong f′``: ``dsig`` and ``dtanh`` exchanged, the softmax Jacobian replaced by its diagonal;
* ``sign``: the right-hand side negated;
* ``missing 1/m`` / ``extra 1/m``: a ``/ m`` (``/ N``) removed, or one added;
* ``missing regularisation`` / ``extra regularisation``: a ``+ reg(c, W)`` removed, or one added to a
  parameter that has none;
* ``missing sum over consumers``: one term of ``consumers(...)`` dropped;
* ``swapped children``: the two halves ``[:d]`` / ``[d:]`` of δ_v given to the wrong children --

and :func:`chainrule.explain.check_derivation` is asked for the first wrong equation and the slip.
A mutant that changes no number (``.T`` of a vector) is not counted; one that raises is counted
apart (check_derivation reports it as an error naming the line).

Run: ``PYTHONPATH=src python benchmarks/explain_mutations.py`` (prints the table; exit status 1 if a
goal is missed: ≥ 95% localised exactly, ≥ 80% slip kind named, no false alarm on the unmutated five).
"""
from __future__ import annotations

import ast
import copy
import inspect
import sys
import textwrap
from collections import Counter, defaultdict

import numpy as np

from chainrule.explain import hand
from chainrule.explain.check import DerivationError, check_against
from chainrule.explain.derive import derive
from chainrule.explain.models import build

FP = {"dsig": "dtanh", "dtanh": "dsig"}
M_NAMES = ("m", "N")


def _target(stmt):
    """'name' for a statement ``D["name"] = ...``, else None."""
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        t = stmt.targets[0]
        if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name) and t.value.id == "D" \
                and isinstance(t.slice, ast.Constant) and isinstance(t.slice.value, str):
            return t.slice.value
    return None


def _walk_with_parent(node):
    for parent in ast.walk(node):
        for field, value in ast.iter_fields(parent):
            if isinstance(value, ast.AST):
                yield parent, field, None, value
            elif isinstance(value, list):
                for i, v in enumerate(value):
                    if isinstance(v, ast.AST):
                        yield parent, field, i, v


def _set(parent, field, i, new):
    if i is None:
        setattr(parent, field, new)
    else:
        getattr(parent, field)[i] = new


def _rhs_mutants(rhs, name, params, has_m, reg_arg):
    """(kind, description, new rhs) for every single slip of one right-hand side."""
    out = []
    if not isinstance(rhs, ast.Name):
        out.append(("sign", "negated", ast.UnaryOp(op=ast.USub(), operand=copy.deepcopy(rhs))))
    # every sub-node position (the right-hand side itself included): mutate a deep copy at the same path
    holder = ast.Expression(body=rhs)
    positions = list(_walk_with_parent(holder))
    in_reg = {id(n) for c in ast.walk(rhs) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
              and c.func.id == "reg" for n in ast.walk(c)}
    for k, (parent, field, i, node) in enumerate(positions):
        def mutate(make, kind, what, k=k):
            r = copy.deepcopy(holder)
            p, f, j, n = list(_walk_with_parent(r))[k]
            new = make(n)
            if new is None:
                return
            _set(p, f, j, new)
            out.append((kind, what, r.body))
        if isinstance(node, ast.Attribute) and node.attr == "T":
            mutate(lambda n: n.value, "transpose", "a .T removed")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
            for side in ("left", "right"):
                sub = getattr(node, side)
                if not (isinstance(sub, ast.Attribute) and sub.attr == "T"):
                    def mk(n, side=side):
                        setattr(n, side, ast.Attribute(value=getattr(n, side), attr="T", ctx=ast.Load()))
                        return n
                    mutate(mk, "transpose", f"the {side} operand of @ transposed")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "outer":
            def sw(n):
                n.args = n.args[::-1]
                return n
            mutate(sw, "transpose", "np.outer's arguments swapped (the transposed outer product)")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            fn = node.func.id
            if fn in ("dsig", "dtanh", "drelu"):
                mutate(lambda n: ast.Constant(1.0), "missing f′", f"{fn}(·) dropped")
            if fn in FP:
                def swap(n, to=FP[fn]):
                    n.func = ast.Name(id=to, ctx=ast.Load())
                    return n
                mutate(swap, "wrong f′", f"{fn} replaced by {FP[fn]}")
            if fn == "softmax_jac":
                mutate(lambda n: n.args[1], "missing f′", "the softmax Jacobian dropped")
                mutate(lambda n: ast.BinOp(left=n.args[1], op=ast.Mult(),
                                           right=ast.Call(func=ast.Name(id="dsig", ctx=ast.Load()),
                                                          args=[n.args[0]], keywords=[])),
                       "wrong f′", "the softmax Jacobian replaced by its diagonal y ⊙ (1 − y)")
            if fn == "consumers" and len(node.args) >= 2:
                for a in range(len(node.args)):
                    def drop(n, a=a):
                        n.args = [x for j, x in enumerate(n.args) if j != a]
                        return n if len(n.args) > 1 else n.args[0]
                    mutate(drop, "missing sum over consumers", f"consumer term {a + 1} dropped")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Name) \
                and node.right.id in M_NAMES and id(node) not in in_reg:
            mutate(lambda n: n.left, "missing 1/m", f"/ {node.right.id} removed")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add) and isinstance(node.right, ast.Call) \
                and isinstance(node.right.func, ast.Name) and node.right.func.id == "reg":
            mutate(lambda n: n.left, "missing regularisation", "+ reg(·) removed")
    if has_m:
        out.append(("extra 1/m", f"/ {has_m} added", ast.BinOp(left=copy.deepcopy(rhs), op=ast.Div(),
                                                              right=ast.Name(id=has_m, ctx=ast.Load()))))
    src = ast.unparse(rhs)
    if name in params and reg_arg is not None and "reg(" not in src and not isinstance(rhs, ast.Name):
        extra = ast.Call(func=ast.Name(id="reg", ctx=ast.Load()),
                         args=[copy.deepcopy(reg_arg), ast.parse(f'v["{name}"]', mode="eval").body], keywords=[])
        out.append(("extra regularisation", "+ reg(·) added", ast.BinOp(left=copy.deepcopy(rhs), op=ast.Add(), right=extra)))
    return out


def mutants(seed_name):
    """(kind, truth name, description, function) for every single-slip mutant of one seed."""
    fn = hand.SEEDS[seed_name]
    src = textwrap.dedent(inspect.getsource(fn))
    tree = ast.parse(src)
    fdef = tree.body[0]
    body = fdef.body
    assigned = {n.id for st in ast.walk(fdef) if isinstance(st, ast.Assign) for t in st.targets
                for n in ast.walk(t) if isinstance(n, ast.Name)}
    has_m = next((m for m in M_NAMES if m in assigned), None)
    reg_arg = next((n.args[0] for n in ast.walk(fdef) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                    and n.func.id == "reg"), None)
    J, consts, _ = build(seed_name)
    d = derive(J, constants=consts)
    params = {e.name for e in d.equations if e.kind == "grad"}
    out = []
    for si, st in enumerate(body):
        name = _target(st)
        if name is None:
            continue
        for kind, what, rhs in _rhs_mutants(st.value, name, params, has_m, reg_arg):
            t2 = copy.deepcopy(tree)
            t2.body[0].body[si].value = rhs
            out.append((kind, name, f"{name}: {what}", t2))
    # swapped children: the halves [:d] and [d:] of one δ_v exchanged between its two children
    halves = defaultdict(list)
    for si, st in enumerate(body):
        name = _target(st)
        if name is None:
            continue
        for n in ast.walk(st.value):
            if isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Slice) and isinstance(n.value, ast.Subscript) \
                    and isinstance(n.value.slice, ast.Constant):
                halves[n.value.slice.value].append((si, name))
    order = [e.name for e in d.equations]
    for parent, uses in halves.items():
        if len(uses) == 2:
            t2 = copy.deepcopy(tree)
            for si, _ in uses:
                for n in ast.walk(t2.body[0].body[si].value):
                    if isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Slice) \
                            and isinstance(n.value, ast.Subscript) and getattr(n.value.slice, "value", None) == parent:
                        n.slice.lower, n.slice.upper = n.slice.upper, n.slice.lower
            truth = min((u[1] for u in uses), key=order.index)
            out.append(("swapped children", truth, f"children of δ_{parent} swapped", t2))
    funcs = []
    for kind, truth, what, t2 in out:
        ast.fix_missing_locations(t2)
        ns = dict(vars(hand))
        exec(compile(t2, f"<mutant {what}>", "exec"), ns)
        funcs.append((kind, truth, what, ns[fdef.name]))
    return d, funcs


def run(verbose=False):
    rows = []
    false_alarms = []
    for seed_name in hand.SEEDS:
        d, funcs = mutants(seed_name)
        base = check_against(d, hand.SEEDS[seed_name])
        if not base.ok:
            false_alarms.append(seed_name)
        ref = hand.SEEDS[seed_name](_values(d))
        for kind, truth, what, f in funcs:
            try:
                outv = f(_values(d))
            except Exception:
                rows.append((seed_name, kind, truth, what, "raises", None, None))
                continue
            if _same(outv, ref):
                continue                                    # an equivalent mutant: no number changed
            try:
                rep = check_against(d, f)
            except DerivationError:
                rows.append((seed_name, kind, truth, what, "raises", None, None))
                continue
            first = rep.first
            got_name = first.name if first is not None else None
            got_kind = first.diagnosis.kind if first is not None and first.diagnosis is not None else None
            rows.append((seed_name, kind, truth, what, "checked", got_name, got_kind))
    return rows, false_alarms


def _values(d):
    from chainrule.explain.check import forward_values
    return forward_values(d)


def _same(a, b):
    if set(a) != set(b):
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, dict):
            if set(x) != set(y) or any(not np.allclose(x[w], y[w], rtol=0, atol=1e-13) for w in x):
                return False
        elif np.shape(x) != np.shape(y) or not np.allclose(x, y, rtol=0, atol=1e-13):
            return False
    return True


def summarise(rows, false_alarms, out=sys.stdout):
    checked = [r for r in rows if r[4] == "checked"]
    raised = [r for r in rows if r[4] == "raises"]
    loc = [r for r in checked if r[5] == r[2]]
    kind = [r for r in checked if r[5] == r[2] and r[6] == r[1]]
    by_kind = defaultdict(lambda: [0, 0, 0])
    by_seed = defaultdict(lambda: [0, 0, 0])
    for r in checked:
        for tab, key in ((by_kind, r[1]), (by_seed, r[0])):
            tab[key][0] += 1
            tab[key][1] += r[5] == r[2]
            tab[key][2] += r[5] == r[2] and r[6] == r[1]
    n = len(checked)
    res = {"mutants": n, "raised": len(raised), "localised": len(loc) / max(n, 1), "kind": len(kind) / max(n, 1),
           "false_alarms": false_alarms, "by_kind": dict(by_kind), "by_seed": dict(by_seed)}
    print(f"single-slip mutants checked: {n} (plus {len(raised)} that raise, reported as errors; "
          f"equivalent mutants not counted)", file=out)
    print(f"first wrong equation localised exactly: {len(loc)}/{n} = {100 * res['localised']:.1f}%  (goal ≥ 95%)",
          file=out)
    print(f"slip kind named correctly:             {len(kind)}/{n} = {100 * res['kind']:.1f}%  (goal ≥ 80%)", file=out)
    print(f"false alarms on the unmutated five:    {len(false_alarms)} {false_alarms or ''}", file=out)
    print("\n| slip kind | mutants | localised | kind named |\n|---|---|---|---|", file=out)
    for k, (a, b, c) in sorted(by_kind.items()):
        print(f"| {k} | {a} | {b} | {c} |", file=out)
    print("\n| seed model | mutants | localised | kind named |\n|---|---|---|---|", file=out)
    for k, (a, b, c) in sorted(by_seed.items()):
        print(f"| {k} | {a} | {b} | {c} |", file=out)
    return res


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    rows, fa = run()
    res = summarise(rows, fa)
    if "-v" in argv:
        for r in rows:
            if r[4] == "checked" and (r[5] != r[2] or r[6] != r[1]):
                print("MISS", r[0], r[3], "->", r[5], r[6])
    ok = res["localised"] >= 0.95 and res["kind"] >= 0.80 and not fa and res["mutants"] >= 100
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
