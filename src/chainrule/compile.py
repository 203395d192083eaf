"""``cr.compile(step_fn)``: a training step captured once and replayed without the engine's Python
overhead.

    step = cr.compile(train_step)       # train_step(*inputs): forward, backward, optimizer update
    for x, y in batches:
        loss = step(x, y)               # eager while capturing, then replayed

**Capture.**  The step runs eagerly (it must compute its loss with chainrule ops, call
``loss.backward()`` once, and may call ``opt.zero_grad()`` / ``opt.step()`` of chainrule optimizers)
while chainrule records, for every op of the graph behind the loss, its rule (the rule table's
forward and backward functions), where each input comes from -- another op's output, a parameter's
current ``.data``, an array reachable from the step's arguments (by identity, or a view of one), or
a constant -- and the calls to ``backward``, ``zero_grad`` and ``step``.  The step is captured
twice, on its first two calls with a given signature (the shapes and dtypes of every array reachable
from the arguments, and every other argument's value); if the two recordings differ (Python control
flow or an array computed outside chainrule ops from the inputs, e.g. ``np.stack`` of a target,
whose value changes between calls) it is captured again, and after two disagreements the step
stays eager, with :attr:`Compiled.fallback_reason` saying why (JAX re-traces data-dependent control
flow the same way; a tree minibatch with a new level schedule is a new signature).

**Replay.**  The third call records the plan as code: every rule of the step -- the forward rules,
then the backward rules in the engine's order with the engine's accumulation
(:func:`chainrule.sparse.add_grad` deciding on the recorded values) -- runs once more on *recorded
arrays* (``_Rec``: each carries its real value, and every NumPy call on it -- operators, ufuncs, the
array functions, the methods the rules use -- computes that value and writes one line of the plan).
That is the rule table evaluated on a recording namespace, not a second set of rules.  Fresh results
go into buffers allocated once (``np.multiply(a, b, out=B7)``; ``np.sum``/``np.max`` become
``np.add.reduce``/``np.maximum.reduce`` with ``out=``), views of buffers are made once, and each
rule's recorded result is checked bit for bit against the rule run on plain arrays: a rule that
disagrees or cannot be recorded (it reads a Python number from the data, calls ``np.asarray``,
returns a row-sparse gradient) becomes one opaque call made per replay, and the plan says so
(:meth:`Compiled.plans`).  A memory plan then gives the array of every buffer whose last use has
passed to a later buffer of the same shape, dtype and strides (the plan is recorded a second time
into those arrays and kept only if it writes the same code).  From then on a replay is that code:
no Tensor or Node, no validation, no graph, no allocation beyond what opaque calls and fancy
indexing make.  The optimizer's ``step`` is called from the plan; it updates through per-parameter
functions on scratch buffers (see :mod:`chainrule.optim`), reading the learning rate and step counts
at every call, so schedulers keep working.  A plan with a row-sparse gradient (the window model's
embedding) is replayed as the rules' calls without buffers.

**What a replay hands out.**  The returned loss tensors are copies.  The parameters' ``.grad``
arrays are the plan's buffers, written again by the next replay (as PyTorch's CUDA graphs' static
outputs): keep a copy of a ``.grad`` you want to keep across steps.  Gradients accumulated without
``zero_grad`` still add up as in eager mode.

**Fallback** (eager, with ``fallback_reason`` set and a one-time ``RuntimeWarning``): a step
without a ``backward`` call or with more than one, tensor hooks, ``detect_anomaly`` /
``record_deltas`` active, a return value other than Tensors (``loss.item()`` is data: return the
loss tensor and call ``.item()`` outside), two disagreeing captures, or ``max_signatures`` (32)
calls in a row with new signatures and none repeated (a tree minibatch of new composition has a
new level schedule every time: one plan per schedule never pays there; at most 32 plans are kept).

**Only what goes through chainrule is replayed**: the ops, ``backward``, and the optimizers'
``step``/``zero_grad``.  Other Python in the step (printing, counters, a hand-written NumPy
update, setting ``.grad``) runs during the two captures only -- as with ``jax.jit``, keep the
step pure apart from those calls.
"""
from __future__ import annotations

import heapq
import re
import warnings

import numpy as np

from . import autograd as ag
from .autograd import Node, RowSparseGrad, STATE, unbroadcast
from .sparse import ACC, IADD, NEW, SCATTER, accumulate, add_grad, deposit, keep_first
from .ops import rules as _R
from .tensor import Tensor

__all__ = ["compile", "Compiled", "CaptureError"]


class CaptureError(RuntimeError):
    """A step that cannot be captured (the message says why); the compiled step runs it eagerly."""


# ------------------------------------------------------------------------------------ argument walk
_LEAF_TYPES = (bool, int, float, str, bytes, type(None), np.generic)


def _walk(args, limit=4, paths=True):
    """(path, ndarray) for every array reachable from ``args`` (Tensors, arrays, tuples, lists,
    dicts, and plain objects' attributes, ``limit`` levels deep), and a hashable signature of
    everything: per item in depth-first order its kind and, for an array, shape, dtype and strides;
    for a number or string its value; for a container its length or keys; for an object its type and
    attribute names.  ``paths=False`` (every replay's signature): no arrays list and no paths -- the
    same signature entries without the path, which the kinds, lengths and keys before an entry fix."""
    arrays, sig = [], []
    add, ndarray, tensor, leaf = sig.append, np.ndarray, Tensor, _LEAF_TYPES
    stack = [((i,) if paths else None, a, 0) for i, a in reversed(list(enumerate(args)))]
    pop, push = stack.pop, stack.extend
    while stack:
        path, a, depth = pop()
        if isinstance(a, tensor):
            a = a.data
        if isinstance(a, ndarray):
            if paths:
                arrays.append((path, a))
            add((path, "a", a.shape, a.dtype, a.strides))
        elif isinstance(a, leaf):
            add((path, "v", a))
        elif depth < limit and isinstance(a, (tuple, list)):
            add((path, type(a).__name__, len(a)))
            push(((*path, k) if paths else None, v, depth + 1) for k, v in reversed(list(enumerate(a))))
        elif depth < limit and isinstance(a, dict):
            add((path, "dict", tuple(a)))
            push(((*path, k) if paths else None, v, depth + 1) for k, v in reversed(list(a.items())))
        elif depth < limit and hasattr(a, "__dict__"):
            d = vars(a)
            add((path, type(a).__name__, tuple(d)))
            push(((*path, "." + k) if paths else None, v, depth + 1) for k, v in reversed(list(d.items())))
        else:
            add((path, "obj", type(a).__name__))
    return arrays, tuple(sig)


def _fetch(args, path):
    a = args[path[0]]
    for k in path[1:]:
        if isinstance(a, Tensor):
            a = a.data
        a = getattr(a, k[1:]) if isinstance(k, str) and k.startswith(".") else a[k]
    return a.data if isinstance(a, Tensor) else a


# ------------------------------------------------------------------------------------ the plan
class _Plan:
    """What one capture recorded: the nodes in construction order, how to get each input, the
    backward call and the optimizer calls around it, and how to build the return value."""
    __slots__ = ("ops", "order", "root", "seed", "events", "ret", "leaves", "key", "fast", "unbuffered")


def _resolve(x, arrays_by_id, bases, slot_of):
    """How a forward input or keyword value ``x`` (not a graph parent) is found on replay."""
    if isinstance(x, np.ndarray):
        s = slot_of.get(id(x))
        if s is not None:
            return ("slot", s)
        p = arrays_by_id.get(id(x))
        if p is not None:
            return ("arg", p)
        b = x.base
        while b is not None:                      # a view of an argument array: same offset/strides
            p = arrays_by_id.get(id(b))
            if p is not None and b.dtype == x.dtype and b.flags.c_contiguous:
                off = x.__array_interface__["data"][0] - b.__array_interface__["data"][0]
                if off % x.itemsize == 0:
                    return ("view", p, off // x.itemsize, x.shape, x.strides)
            b = b.base
        return ("const", x)
    if isinstance(x, (tuple, list)) and any(isinstance(v, np.ndarray) for v in x):
        return ("seq", type(x), tuple(_resolve(v, arrays_by_id, bases, slot_of) for v in x))
    return ("const", x)


def _same(r1, r2):
    """Whether two resolved inputs of two captures are the same recipe (constants: equal values)."""
    if r1[0] != r2[0]:
        return False
    if r1[0] == "const":
        a, b = r1[1], r2[1]
        if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
            return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape
                    and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True))
        if type(a) is not type(b):
            return False
        if isinstance(a, (int, float, str, bool, type(None), np.generic, tuple)):
            try:
                return bool(a == b)
            except Exception:     # noqa: BLE001 -- e.g. a tuple holding arrays
                return False
        return True               # an object (a NodeTable, ...): the same kind; the latest is used
    if r1[0] == "seq":
        return len(r1[2]) == len(r2[2]) and all(_same(a, b) for a, b in zip(r1[2], r2[2]))
    return r1[1:] == r2[1:]


def _value(r, args, vals):
    kind = r[0]
    if kind == "slot":
        return vals[r[1]]
    if kind == "const":
        return r[1]
    if kind == "arg":
        return _fetch(args, r[1])
    if kind == "view":                                      # (path, element offset, shape, strides)
        flat = _fetch(args, r[1]).reshape(-1)
        return np.lib.stride_tricks.as_strided(flat[r[2]:], shape=r[3], strides=r[4])
    return r[1](_value(v, args, vals) for v in r[2])         # "seq"


def _build(root, seed, events, ret, args):
    """A :class:`_Plan` from the graph under ``root`` (a Node whose nodes kept their forward values)."""
    nodes, seen, stack = [], {id(root)}, [root]
    while stack:                                  # every node under the root (iterative)
        n = stack.pop()
        nodes.append(n)
        if n.hooks:
            raise CaptureError(f"{ag.describe(n)} has a hook; hooks cannot be captured")
        if n.parents is None:
            raise CaptureError("the graph was already freed before the step's backward")
        for p in n.parents:
            if type(p) is Node and id(p) not in seen:
                seen.add(id(p))
                stack.append(p)
    nodes.sort(key=lambda n: n.seq)
    slot_of = {}
    index = {id(n): i for i, n in enumerate(nodes)}
    arrays, _ = _walk(args)
    arrays_by_id = {id(a): p for p, a in arrays}
    ops, leaves = [], {}
    for i, n in enumerate(nodes):
        fwd = getattr(n, "fwd", None)
        if fwd is None:
            raise CaptureError(f"{ag.describe(n)} was recorded outside the capture")
        out, datas, kw = fwd
        ins = []
        for p, d in zip(n.parents, datas):
            if type(p) is Node:
                ins.append(("slot", index[id(p)]))
            elif p is not None:
                if p._hooks:
                    raise CaptureError(f"{ag.describe(p)} has a hook; hooks cannot be captured")
                leaves[id(p)] = p
                ins.append(("leaf", p))
            else:
                ins.append(_resolve(d, arrays_by_id, None, slot_of))
        kws = {k: _resolve(v, arrays_by_id, None, slot_of) for k, v in (kw or {}).items()}
        parents = tuple(("node", index[id(p)]) if type(p) is Node else (("leaf", p) if p is not None else None)
                        for p in n.parents)
        ops.append((n.op, tuple(ins), kws, n.needs, parents, n.shape, n.dtype))
        slot_of[id(out)] = i
    plan = _Plan()
    plan.ops, plan.root, plan.seed, plan.events = ops, index[id(root)], seed, events
    plan.order = list(range(len(nodes) - 1, -1, -1))        # backward: decreasing sequence number
    plan.leaves = leaves
    plan.ret = _ret_recipe(ret, index, slot_of)
    plan.fast = plan.unbuffered = None
    return plan


def _ret_recipe(ret, index, slot_of):
    if ret is None:
        return ("none",)
    if isinstance(ret, Tensor):
        if ret._node is not None and id(ret._node) in index:
            return ("tensor", index[id(ret._node)])
        if ret._node is None and ret.requires_grad:
            return ("leaf", ret)
        raise CaptureError("the step returns a tensor computed outside the graph of its loss")
    if isinstance(ret, (tuple, list)):
        return ("seq", type(ret), tuple(_ret_recipe(r, index, slot_of) for r in ret))
    raise CaptureError(f"the step returns a {type(ret).__name__}: only Tensors (or tuples of them) can be "
                       f"replayed -- return the loss tensor and call .item() outside the compiled step")


def _plans_agree(a, b):
    if len(a.ops) != len(b.ops) or a.root != b.root or a.events != b.events or len(a.leaves) != len(b.leaves):
        return "a different number of ops or optimizer calls"
    for k, (x, y) in enumerate(zip(a.ops, b.ops)):
        if x[0] is not y[0] or x[3] != y[3] or x[4] != y[4] or x[5] != y[5]:
            return f"op {k} ({x[0].name} vs {y[0].name})"
        if len(x[1]) != len(y[1]) or not all(_same(r, s) for r, s in zip(x[1], y[1])):
            return f"an input of op {k} ({x[0].name}) that is computed outside chainrule ops or changes between calls"
        if x[2].keys() != y[2].keys() or not all(_same(x[2][k2], y[2][k2]) for k2 in x[2]):
            return f"a parameter of op {k} ({x[0].name}) that changes between calls"
    return None


# ------------------------------------------------------------------------------------ replay
def _replay(plan, args, log=None):
    """Run ``plan`` by interpretation; with ``log`` (a list), record every data-flow decision the
    backward loop takes (which glue each gradient needs, how it is accumulated), from which
    :func:`_codegen` writes the same computation as straight-line code."""
    ops = plan.ops
    vals = [None] * len(ops)
    saved = [None] * len(ops)
    for i, (op, ins, kws, _, _, _, _) in enumerate(ops):
        xs = [(r[1].data if r[0] == "leaf" else _value(r, args, vals)) for r in ins]
        if kws:
            out, saved[i] = op.forward(*xs, **{k: _value(r, args, vals) for k, r in kws.items()})
        else:
            out, saved[i] = op.forward(*xs)
        if type(out) is not np.ndarray:
            out = np.asarray(out)
            if log is not None:
                log.append(("asarray", i))
        vals[i] = out
    result = None
    for ev in plan.events:
        if ev[0] == "backward":
            _backward(plan, vals, saved, log)
            result = _ret_value(plan.ret, vals)
        elif ev[0] == "zero_grad":
            ev[1].zero_grad(**ev[2])
        else:
            ev[1].step()
    return result


def _ret_value(r, vals):
    if r[0] == "none":
        return None
    if r[0] == "tensor":
        return Tensor._wrap(vals[r[1]])
    if r[0] == "leaf":
        return r[1]
    return r[1](_ret_value(x, vals) for x in r[2])


def _backward(plan, vals, saved, log=None):
    """The engine's backward loop (:func:`chainrule.autograd.run_backward`) over the plan: the same
    rules in the same order with the same accumulation (:func:`chainrule.sparse.add_grad`), without
    graph objects."""
    ops = plan.ops
    root = plan.root
    seed = plan.seed if plan.seed is not None else np.ones(ops[root][5], dtype=ops[root][6])
    grads = {root: seed}           # op index (a node) or leaf Tensor -> its gradient so far
    owned = set()
    leaves = []
    for i in plan.order:
        g = grads.pop(i, None)
        if g is None:
            continue
        op, _, _, needs, parents, _, _ = ops[i]
        outs = op.backward(g, needs, *saved[i])
        saved[i] = None
        if log is not None:
            log.append(("bwd", i))
        for k, (p, gi) in enumerate(zip(parents, outs)):
            if p is None or gi is None:
                continue
            glue = []
            if p[0] == "node":
                key = p[1]
                shape, dtype = ops[key][5], ops[key][6]
            else:
                key = p[1]
                shape, dtype = key.data.shape, key.data.dtype
            if gi.shape != shape:
                gi = unbroadcast(gi, shape)
                glue.append(("unb", shape))
            if gi.dtype != dtype:
                gi = gi.astype(dtype)
                glue.append(("astype", dtype))
            if p[0] == "node" and type(gi) is RowSparseGrad:
                gi = gi.to_dense()
                glue.append(("dense",))
            if key in grads:           # as run_backward: see sparse.add_grad
                how = add_grad(grads, owned, key, gi)
            else:
                how = NEW
                keep_first(grads, owned, key, gi, g, outs, p[0] == "leaf" or op.into is not None)
                if p[0] == "leaf":
                    leaves.append(key)
            if log is not None:
                log.append(("to_" + p[0], i, k, key, tuple(glue), how, key in owned))
    for t in leaves:
        deposit(t, grads.pop(t), t in owned)


def _codegen(plan, log):
    """The plan as one straight-line Python function ``run(args)``: the forward rules, then the
    backward rules with exactly the glue and accumulation ``log`` recorded, then the optimizer
    calls -- no interpretation, no dicts, no per-op dispatch."""
    ns = {"np": np, "_value": _value, "_unb": unbroadcast, "_acc": accumulate, "_deposit": deposit,
          "_wrap": Tensor._wrap, "_asarray": np.asarray}
    lines = ["def run(args):"]
    emit = lines.append
    ops = plan.ops
    asarr = {e[1] for e in log if e[0] == "asarray"}

    def name(obj, prefix):
        k = f"{prefix}{len(ns)}"
        ns[k] = obj
        return k

    def expr(r):
        if r[0] == "slot":
            return f"v{r[1]}"
        if r[0] == "leaf":
            return f"{name(r[1], 'T')}.data"
        if r[0] == "const":
            return name(r[1], "C")
        return f"_value({name(r, 'R')}, args, None)"

    for i, (op, ins, kws, _, _, _, _) in enumerate(ops):
        a = [expr(r) for r in ins] + [f"{k}={expr(r)}" for k, r in (kws or {}).items()]
        emit(f"    v{i}, s{i} = {name(op.forward, 'F')}({', '.join(a)})")
        if i in asarr:
            emit(f"    v{i} = _asarray(v{i})")
    result = "None"
    leaves = {}
    for ev in plan.events:
        if ev[0] == "zero_grad":
            emit(f"    {name(ev[1], 'O')}.zero_grad(**{name(ev[2], 'K')})")
        elif ev[0] == "step":
            emit(f"    {name(ev[1], 'O')}.step()")
        else:
            seed = plan.seed if plan.seed is not None else np.ones(ops[plan.root][5], dtype=ops[plan.root][6])
            seed.setflags(write=False)
            emit(f"    g{plan.root} = {name(seed, 'S')}")
            for e in log:
                if e[0] == "bwd":
                    i = e[1]
                    op, needs = ops[i][0], ops[i][3]
                    emit(f"    o = {name(op.backward, 'B')}(g{i}, {name(needs, 'N')}, *s{i}); s{i} = None")
                elif e[0] in ("to_node", "to_leaf"):
                    _, i, k, tgt, glue, how, own = e
                    emit(f"    t = o[{k}]")
                    for gl in glue:
                        if gl[0] == "unb":
                            emit(f"    t = _unb(t, {gl[1]!r})")
                        elif gl[0] == "astype":
                            emit(f"    t = t.astype({name(gl[1], 'D')})")
                        else:
                            emit("    t = t.to_dense()")
                    if e[0] == "to_node":
                        var = f"g{tgt}"
                    else:
                        lk = leaves.setdefault(id(tgt), (len(leaves), tgt))[0]
                        var = f"l{lk}"
                    emit({NEW: f"    {var} = t", IADD: f"    {var} += t", SCATTER: f"    t.add_to({var})",
                          ACC: f"    {var} = _acc({var}, t)"}[how])
                    if e[0] == "to_leaf" and how in (NEW, ACC):
                        emit(f"    f{lk} = {own}")         # add_grad's ownership, as recorded
            for lk, t in leaves.values():
                emit(f"    _deposit({name(t, 'T')}, l{lk}, f{lk})")
            result = _ret_expr(plan.ret, name)
    emit(f"    return {result}")
    src = "\n".join(lines)
    exec(compile_source(src), ns)             # noqa: S102 -- code written above from the plan
    run = ns["run"]
    run.source = src
    return run


def compile_source(src):
    import builtins
    return builtins.compile(src, "<chainrule.compile plan>", "exec")


def _ret_expr(r, name):
    if r[0] == "none":
        return "None"
    if r[0] == "tensor":
        return f"_wrap(v{r[1]})"
    if r[0] == "leaf":
        return name(r[1], "T")
    items = ", ".join(_ret_expr(x, name) for x in r[2])
    return f"{name(r[1], 'Y')}(({items},))"


# ------------------------------------------------------------------------------------ the recording namespace
class _Untraceable(Exception):
    """A rule did something a recorded array cannot stand for (a Python number or branch taken on the
    data, ``np.asarray``, an unknown kind of object): that rule is replayed as one opaque call."""


class _Abort(Exception):
    """Something outside the rules cannot be recorded: the plan is replayed without buffers."""


_STATIC = {np.ndim, np.shape, np.size, np.result_type}
_KW_OUT = {np.maximum, np.minimum}          # a positional out is deprecated for these (NumPy 2.x)
_REDUCE = {np.sum: np.add, np.max: np.maximum, np.amax: np.maximum, np.min: np.minimum, np.amin: np.minimum,
           np.prod: np.multiply}
_INTO = {np.concatenate, np.stack, np.einsum, np.dot}          # functions with an ``out=`` argument
_METHOD_AS = {"sum": np.sum, "max": np.max, "min": np.min, "prod": np.prod}


_REC_NS = None           # the recording namespace (made on first use: after _scatter is defined)
_NAME_ANY = re.compile(r"\b[A-Z][0-9]+\b")       # a name of the plan's namespace
_NAME_BX = re.compile(r"\b[Bx][0-9]+\b")         # a buffer's or a per-replay array's name


def _same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


class _Rec:
    """A recorded array: its value in the recording run (``v``, computed for real, so shapes, dtypes and
    the engine's decisions are those of the eager step) and the name it has in the written plan.  NumPy
    calls on it (operators, ufuncs, the array functions, the methods rules use) compute ``v`` and write
    one line of the plan; ``persistent``: the name is a buffer (or a view of one) the plan owns, written
    in place by every replay; ``fresh``: an array the plan made (the engine may add into it)."""
    __slots__ = ("v", "name", "tr", "persistent", "fresh", "__weakref__")
    __array_priority__ = 1e9
    __hash__ = object.__hash__

    def __init__(self, tr, v, name, persistent=False, fresh=False):
        self.tr, self.v, self.name, self.persistent, self.fresh = tr, v, name, persistent, fresh
        tr.alive.append(self)
        tr.by_id[id(v)] = self
        if type(v) is np.ndarray:                  # which buffer's memory this name uses (liveness)
            r = v
            while r.base is not None:
                r = r.base
            owner = tr.owner.get(id(r))
            if owner is not None:
                tr.alias[name] = owner

    def __array__(self, *a, **k):
        raise _Untraceable("np.asarray of a recorded array")

    def __array_ufunc__(self, uf, method, *inputs, **kw):
        return self.tr.ufunc(uf, method, inputs, kw)

    def __array_function__(self, func, types, args, kw):
        return self.tr.function(func, args, kw)

    shape = property(lambda s: s.v.shape)
    ndim = property(lambda s: s.v.ndim)
    dtype = property(lambda s: s.v.dtype)
    size = property(lambda s: s.v.size)
    itemsize = property(lambda s: s.v.itemsize)
    strides = property(lambda s: s.v.strides)
    T = property(lambda s: s.tr.method(s, "transpose", (), {}))
    base = property(lambda s: None if s.fresh else s)

    def __len__(self):
        return len(self.v)

    def _no(self, *a, **k):
        raise _Untraceable("a Python value of recorded data")
    __float__ = __int__ = __bool__ = __index__ = __complex__ = item = tolist = __iter__ = _no

    def __getitem__(self, idx):
        return self.tr.method(self, "__getitem__", (idx,), {})

    def __setitem__(self, idx, val):
        self.tr.setitem(self, idx, val)

    def __getattr__(self, k):
        if k.startswith("__"):
            raise AttributeError(k)
        if k in _METHOD_AS:
            f = _METHOD_AS[k]
            return lambda *a, **kw: self.tr.function(f, (self, *a), kw)
        if k in ("reshape", "transpose", "swapaxes", "squeeze", "ravel", "copy", "astype", "view", "fill",
                 "flatten", "dot", "clip", "mean", "argmax", "argmin", "nonzero", "any", "all", "cumsum", "repeat"):
            return lambda *a, **kw: self.tr.method(self, k, a, kw)
        raise _Untraceable(f"attribute {k!r} of a recorded array")

    def __repr__(self):
        return f"<recorded {self.name} {self.v.shape} {self.v.dtype}>"


def _binop(uf, reflected=False):
    if reflected:
        return lambda s, o: s.tr.ufunc(uf, "__call__", (o, s), {})
    return lambda s, o: s.tr.ufunc(uf, "__call__", (s, o), {})


def _inplace(uf):
    return lambda s, o: s.tr.ufunc(uf, "__call__", (s, o), {"out": (s,)})


for _n, _u in (("add", np.add), ("sub", np.subtract), ("mul", np.multiply), ("truediv", np.true_divide),
               ("floordiv", np.floor_divide), ("mod", np.remainder), ("pow", np.power), ("matmul", np.matmul),
               ("and", np.bitwise_and), ("or", np.bitwise_or), ("xor", np.bitwise_xor)):
    setattr(_Rec, f"__{_n}__", _binop(_u))
    setattr(_Rec, f"__r{_n}__", _binop(_u, True))
    setattr(_Rec, f"__i{_n}__", _inplace(_u))
for _n, _u in (("lt", np.less), ("le", np.less_equal), ("gt", np.greater), ("ge", np.greater_equal),
               ("eq", np.equal), ("ne", np.not_equal)):
    setattr(_Rec, f"__{_n}__", _binop(_u))
for _n, _u in (("neg", np.negative), ("pos", np.positive), ("abs", np.absolute), ("invert", np.invert)):
    setattr(_Rec, f"__{_n}__", (lambda u: lambda s: s.tr.ufunc(u, "__call__", (s,), {}))(_u))


class _Tracer:
    """Writes the plan as code while the recorded arrays compute: one line per NumPy call, fresh
    results in buffers allocated once (``out=``), views of buffers made once."""

    def __init__(self):
        self.lines, self.ns = [], {"np": np}
        self.alive, self.by_id = [], {}
        self.k = 0
        self.owner, self.alias = {}, {}     # id(buffer array) -> its name; name -> the buffer it uses
        self.allocs, self.assign = [], None  # buffers in allocation order; arrays to use instead (reuse)
        self.pinned, self.no_reuse = set(), None

    # -- names
    def const(self, obj, prefix="C"):
        k = f"{prefix}{len(self.ns)}"
        self.ns[k] = obj
        return k

    def fresh_name(self, prefix="x"):
        self.k += 1
        return f"{prefix}{self.k}"

    def local(self, v, expr, fresh=False):
        name = self.fresh_name()
        self.lines.append(f"{name} = {expr}")
        return _Rec(self, v, name, fresh=fresh)

    def buffer(self, v, fresh=True):
        name = self.const(v, "B")
        if fresh:
            self.owner[id(v)] = name
        return _Rec(self, v, name, persistent=True, fresh=fresh)

    def alloc(self, like, shape=None, dtype=None):
        """A new buffer's array: of ``like``'s shape, dtype and layout (or ``shape``/``dtype``) -- or, on
        the second recording, the array the memory plan gives this allocation (a dead buffer's)."""
        k = len(self.allocs)
        a = self.assign.get(k) if self.assign is not None else None
        if a is None:
            a = np.empty_like(like) if like is not None else np.empty(shape, dtype)
        elif (like is not None and (a.shape, a.dtype, a.strides) != (like.shape, like.dtype, like.strides)) or \
                (like is None and (a.shape, a.dtype) != (tuple(shape), np.dtype(dtype))):
            raise _Abort("the memory plan does not fit the second recording")
        self.allocs.append(a)
        return a

    def zeros(self, shape, dtype):
        a = self.alloc(None, shape, dtype)
        a.fill(0)
        rec = self.buffer(a)
        self.lines.append(f"{rec.name}.fill(0)")
        return rec

    def expr(self, x):
        if type(x) is _Rec or type(x) is _Var or type(x) is _Name:
            return str(x.name) if type(x) is not _Name else x
        if x is None or type(x) in (bool, int, str) or x is Ellipsis:
            return repr(x)
        if type(x) is float:
            return repr(x) if np.isfinite(x) else self.const(x)
        if type(x) is tuple:
            return "(" + "".join(self.expr(e) + ", " for e in x) + ")"
        if type(x) is list:
            return "[" + ", ".join(self.expr(e) for e in x) + "]"
        if type(x) is slice:
            return f"slice({self.expr(x.start)}, {self.expr(x.stop)}, {self.expr(x.step)})"
        if type(x) is dict:
            return "{" + ", ".join(f"{k!r}: {self.expr(v)}" for k, v in x.items()) + "}"
        return self.const(x)          # constants: an array here depends on constants only (see _Rec)

    def call_expr(self, fn, args, kw):
        a = [self.expr(x) for x in args] + [f"{k}={self.expr(v)}" for k, v in kw.items()]
        return f"{fn}({', '.join(a)})"

    # -- values
    @staticmethod
    def val(x):
        if type(x) is _Rec or type(x) is _Var:
            return x.v
        if type(x) in (tuple, list):
            return type(x)(_Tracer.val(e) for e in x)
        if type(x) is dict:
            return {k: _Tracer.val(v) for k, v in x.items()}
        return x

    def result(self, v, expr, opaque=False, depth=0):
        """The recorded value of a call made per replay (no buffer): an array, a NumPy scalar, or a
        tuple of them; of an opaque rule call (``opaque``), any other value too, as a :class:`_Var`."""
        if isinstance(v, (np.ndarray, np.generic)):
            same = self.by_id.get(id(v))
            if same is not None and same.v is v:
                return same
            return self.local(v, expr, fresh=type(v) is np.ndarray and v.base is None)
        if type(v) is tuple and (not opaque or _has_array(v) or depth < 2):     # (out, saved), outs
            name = self.fresh_name("r")
            self.lines.append(f"{name} = {expr}")
            return tuple(self.result(e, f"{name}[{i}]", opaque, depth + 1) for i, e in enumerate(v))
        if v is None:
            return None
        if opaque:
            if type(v) is RowSparseGrad:          # an embedding's gradient: kept whole, its arrays' buffers
                for a in (v.indices, v.values):   # kept alive (it is deposited later in the plan)
                    o = self.owner.get(id(_root(a))) if type(a) is np.ndarray else None
                    if o is not None:
                        self.pinned.add(o)
                return _Var(v, self, expr)
            if _has_array(v):
                self.no_reuse = f"an opaque call gives a {type(v).__name__} holding arrays"
            return _Var(v, self, expr)
        if isinstance(v, (bool, int, str, np.dtype, slice)):
            return v
        raise _Untraceable(f"a {type(v).__name__} computed from recorded data")

    def _fn_name(self, f):
        nm = getattr(f, "__name__", None)
        if nm and getattr(np, nm, None) is f:
            return f"np.{nm}"
        return self.const(f, "F")

    def _uf(self, uf, method="__call__"):
        """A ufunc (or its ``reduce``) as a global name of the plan: ``u_add(a, b, B3)`` -- no module
        attribute lookup and a positional ``out``, ~50 ns a call less than ``np.add(a, b, out=B3)``."""
        nm = getattr(uf, "__name__", None)
        if not nm or getattr(np, nm, None) is not uf:
            return None
        name = ("u_" if method == "__call__" else "r_") + nm
        if name not in self.ns:
            self.ns[name] = uf if method == "__call__" else uf.reduce
        return name

    def into_buffer(self, call, v, write):
        """``v`` computed without ``out=``; ``write(buf)`` computes it into ``buf``.  If the two agree bit for
        bit, the plan writes into a buffer allocated once; else the call is made per replay."""
        if isinstance(v, np.ndarray):
            buf = self.alloc(v)
        elif isinstance(v, np.generic):
            buf = self.alloc(None, (), v.dtype)
        else:
            return None
        try:
            r = write(buf)
        except Exception:     # noqa: BLE001 -- this call cannot write into a buffer: made per replay
            return None
        if r is not buf or not _same_bits(v, buf):
            return None
        rec = self.buffer(buf)
        self.lines.append(call(rec.name))
        return rec

    # -- NumPy entry points
    def ufunc(self, uf, method, inputs, kw):
        if method not in ("__call__", "reduce", "at") or uf.nout != 1:
            raise _Untraceable(f"{uf.__name__}.{method}")
        out = kw.get("out")
        if out is not None:
            out = out if type(out) is tuple else (out,)
            if len(out) != 1 or type(out[0]) is not _Rec:
                raise _Untraceable(f"{uf.__name__} writing into an array that is not recorded")
        vals, kv = self.val(inputs), self.val(kw)
        fn = self._fn_name(uf) + ("" if method == "__call__" else f".{method}")
        if method == "at":
            if type(inputs[0]) is not _Rec:
                raise _Untraceable(f"{uf.__name__}.at into an array that is not recorded")
            uf.at(*vals, **kv)
            self.lines.append(self.call_expr(fn, inputs, kw))
            return None
        f = getattr(uf, method) if method != "__call__" else uf
        short = self._uf(uf) if method == "__call__" and len(inputs) == uf.nin and set(kw) <= {"out"} \
            and uf not in _KW_OUT else None
        if out is not None:                              # in place into a recorded array
            kv["out"] = out[0].v
            f(*vals, **kv)
            if short is not None:
                self.lines.append(self.call_expr(short, (*inputs, out[0]), {}))
            else:
                self.lines.append(self.call_expr(fn, inputs, dict(kw, out=out[0])))
            return out[0]
        v = f(*vals, **kv)
        if short is not None:
            call = lambda b: self.call_expr(short, (*inputs, _Name(b)), {})          # noqa: E731
        else:
            call = lambda b: self.call_expr(fn, inputs, dict(kw, out=_Name(b)))      # noqa: E731
        rec = self.into_buffer(call, v, lambda buf: f(*vals, **kv, out=buf))
        return rec if rec is not None else self.result(v, self.call_expr(fn, inputs, kw))

    def function(self, func, args, kw):
        vals, kv = self.val(args), self.val(kw)
        v = func(*vals, **kv)
        if func in _STATIC:
            return v
        if func is np.empty_like and type(v) is np.ndarray:   # a rule's scratch array: a buffer the plan
            return self.buffer(self.alloc(v))                   # allocates once (its contents are undefined)
        if kw.get("out") is not None:
            raise _Untraceable(f"np.{func.__name__}(out=...)")
        red = _REDUCE.get(func)
        if red is not None and kw.get("initial") is None and kw.get("where") is None:
            axis = kv.get("axis", vals[1] if len(vals) > 1 else None)
            keep = kv.get("keepdims", False)
            dt = kv.get("dtype")
            x = args[0]
            kwr = {"axis": axis, "keepdims": keep}
            if dt is not None:
                kwr["dtype"] = dt
            rn = self._uf(red, "reduce")             # reduce(array, axis, dtype, out, keepdims), positionally
            rec = self.into_buffer(lambda b: self.call_expr(rn, (x, axis, dt, _Name(b), keep), {}),
                                   v, lambda buf: red.reduce(self.val(x), **kwr, out=buf))
            if rec is not None:
                return rec
        elif func in _INTO:
            rec = self.into_buffer(lambda b: self.call_expr(self._fn_name(func), args, dict(kw, out=_Name(b))), v,
                                   lambda buf: func(*vals, **kv, out=buf))
            if rec is not None:
                return rec
        return self._maybe_view(v, args, self.call_expr(self._fn_name(func), args, kw))

    def method(self, rec, name, args, kw):
        vals, kv = self.val(args), self.val(kw)
        v = getattr(rec.v, name)(*vals, **kv)
        if v is rec.v:
            return rec
        if name == "fill":
            self.lines.append(f"{rec.name}.fill({self.expr(args[0])})")
            return None
        if name in ("copy", "astype", "flatten") and isinstance(v, np.ndarray):
            out = self.into_buffer(lambda b: f"np.copyto({b}, {rec.name}, casting='unsafe')", v,
                                   lambda buf: (np.copyto(buf, rec.v, casting="unsafe"), buf)[1])
            if out is not None:
                return out
        if name == "__getitem__":
            expr = f"{rec.name}[{self.expr(args[0])}]"
        else:
            expr = f"{rec.name}.{name}({', '.join([self.expr(a) for a in args] + [f'{k}={self.expr(x)}' for k, x in kw.items()])})"
        return self._maybe_view(v, (rec, *args), expr)

    def _maybe_view(self, v, args, expr):
        """A view of arrays the plan owns is made once; anything else per replay."""
        if isinstance(v, np.ndarray) and v.base is not None:
            recs = [a for a in _flat(args) if type(a) is _Rec]
            if recs and all(r.persistent for r in recs) and any(np.shares_memory(v, r.v) for r in recs):
                return self.buffer(v, fresh=False)
        return self.result(v, expr)

    def setitem(self, rec, idx, val):
        if type(val) is _Rec and _R._is_basic(self.val(idx)):
            dst = rec.v[self.val(idx)]
            if _same_memory(dst, val.v):      # x[i] += g writes the view back onto itself: nothing to do
                return
        rec.v[self.val(idx)] = self.val(val)
        self.lines.append(f"{rec.name}[{self.expr(idx)}] = {self.expr(val)}")


class _Name(str):
    """A name already in the plan (a buffer), written as it is."""


def _flat(x):
    if type(x) in (tuple, list):
        for e in x:
            yield from _flat(e)
    elif type(x) is dict:
        for e in x.values():
            yield from _flat(e)
    else:
        yield x


class _Var:
    """Any other value an opaque rule call returns (a shape, an axis, a count...), named in the plan:
    a rule given one is called opaquely too (its Python code might branch on it)."""
    __slots__ = ("v", "name")

    def __init__(self, v, tr, expr):
        self.v, self.name = v, tr.fresh_name("y")
        tr.lines.append(f"{self.name} = {expr}")


def _same_memory(a, b):
    """Whether two arrays are the same elements in the same layout (one a view of the other's memory)."""
    return (type(a) is np.ndarray and type(b) is np.ndarray and a.shape == b.shape and a.strides == b.strides
            and a.dtype == b.dtype and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


def _root(a):
    while a.base is not None:
        a = a.base
    return a


_PLAIN = (type(None), bool, int, float, complex, str, bytes, slice, type(Ellipsis), np.dtype, np.ndarray, np.generic,
          tuple, list, dict, _Rec, _Var, type)


def _leak(out, given):
    """Why a recorded result may not stand for the replays' values (None if it may): an array or NumPy
    scalar that is neither recorded nor one of the arguments was read from somewhere else (an object's
    state, say) -- the plan would keep this call's value forever."""
    ids = {id(a) for a in _flat(given)}
    for o in _flat(out):
        if isinstance(o, (np.ndarray, np.generic)) and id(o) not in ids:
            return f"it returns a {type(o).__name__} that is not recorded (read from an object's state?)"
    return None


def _has_array(x):
    return any(isinstance(e, (np.ndarray, np.generic)) for e in _flat(x))


def _agree(a, b):
    """Whether a recorded result ``a`` is bit for bit the eager result ``b`` (same structure)."""
    if type(a) is _Rec:
        return isinstance(b, (np.ndarray, np.generic)) and _same_bits(a.v, b)
    if isinstance(a, (np.ndarray, np.generic)) or isinstance(b, (np.ndarray, np.generic)):
        return isinstance(a, (np.ndarray, np.generic)) and isinstance(b, (np.ndarray, np.generic)) and _same_bits(a, b)
    if type(a) in (tuple, list):
        return type(b) is type(a) and len(a) == len(b) and all(_agree(x, y) for x, y in zip(a, b))
    if type(a) is RowSparseGrad or type(b) is RowSparseGrad:
        return False
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:      # noqa: BLE001
        return False


def _call_rule(tr, fn, args, kw=None):
    """``fn(*args, **kw)`` (a rule of the table) on recorded arrays, each NumPy call a line of the plan;
    checked bit for bit against ``fn`` on the values.  If the rule cannot be recorded or disagrees (it
    branches on the type of its arguments, say) it becomes one opaque call, made per replay."""
    kw = kw or {}
    mark = len(tr.lines)
    ref = fn(*tr.val(args), **tr.val(kw))
    why = "it is given a value of an opaque call"
    if not any(type(a) is _Var for a in _flat((args, kw))):
        try:
            out = fn(*args, **kw)
            if _agree(out, ref):
                leak = _leak(out, (args, kw))
                if leak is None:
                    return out
                why = leak
            else:
                why = "its recorded result differs from the eager one"
        except _Abort:
            raise
        except Exception as e:    # noqa: BLE001 -- _Untraceable, or a rule NumPy's protocols cannot carry
            why = f"{type(e).__name__}: {e}"
        del tr.lines[mark:]
    tr.opaque.append((getattr(fn, "__name__", "?"), why))
    odd = [type(a).__name__ for a in _flat((args, kw)) if not isinstance(a, _PLAIN)]
    if odd:                 # an object an opaque call may keep buffers in, or read state from
        raise _Abort(f"{getattr(fn, '__name__', '?')} is replayed opaquely and is given a {odd[0]}")
    return tr.result(ref, tr.call_expr(tr.const(fn, "F"), args, kw), opaque=True)


def _scatter(g, idx, shape, dtype=None):
    """The recording namespace's ``scatter`` (the transpose of indexing): zeros in a buffer the plan
    owns, re-zeroed by every replay, then the rows written in -- the rule table's own otherwise."""
    if type(g) is not _Rec:
        return _R.NUMPY.scatter(g, idx, shape, dtype)
    out = g.tr.zeros(shape, np.result_type(dtype or g.dtype, g.dtype))
    if _R._is_basic(idx):
        out[idx] = g
    else:
        np.add.at(out, idx, g)
    return out


def _record(plan, args):
    """See :func:`_record_plan`: the rules run on the recording namespace (NumPy's, with a scatter
    that writes into a buffer)."""
    global _REC_NS
    if _REC_NS is None:
        from types import SimpleNamespace
        _REC_NS = SimpleNamespace(**{**vars(_R.NUMPY), "name": "recording", "scatter": _scatter})
    with _R.use_namespace(_REC_NS):
        run, tr = _record_plan(plan, args)
        assign = _memory_plan(tr) if tr.no_reuse is None else None
        if assign:                      # record again, each buffer in the array the plan gives it
            try:
                run2, tr2 = _record_plan(plan, args, assign)
            except _Abort:
                return run
            if tr2.lines == tr.lines:
                run2.reused = len(assign) - len({id(a) for a in assign.values()})
                return run2
        return run


def _memory_plan(tr):
    """Buffer reuse: each buffer lives from the first line of the plan that writes it to the last line
    that uses it (itself, a view of it, or a per-replay name aliasing it); a buffer whose life has
    ended gives its array to a later one of the same shape, dtype and strides.  Buffers handed out
    (``.grad``) are never given away.  Returns {allocation index: array} for the second recording."""
    first, last = {}, {}
    for L, ln in enumerate(tr.lines):
        for nm in _NAME_BX.findall(ln):
            b = tr.alias.get(nm)
            if b is not None:
                first.setdefault(b, L)
                last[b] = L
    for b in tr.pinned:
        last[b] = len(tr.lines) + 1
    dying, free, assign = [], {}, {}
    allocs = sorted((first[tr.owner[id(a)]], k, a) for k, a in enumerate(tr.allocs)
                    if tr.owner.get(id(a)) in first)
    for f, k, a in allocs:
        while dying and dying[0][0] < f:                 # dead before this buffer is first written
            _, _, key, arr = heapq.heappop(dying)
            free.setdefault(key, []).append(arr)
        key = (a.shape, a.dtype.str, a.strides)
        pool = free.get(key)
        arr = pool.pop() if pool else a
        assign[k] = arr
        heapq.heappush(dying, (last[tr.owner[id(a)]], k, key, arr))
    return assign


def _record_plan(plan, args, assign=None):
    """The plan written as straight-line code on buffers: every rule of the step (forward, then backward
    in the engine's order with the engine's accumulation) evaluated on recorded arrays.  Returns
    ``run(args)``; raises :class:`_Abort` when something outside the rules cannot be recorded."""
    tr = _Tracer()
    tr.opaque, tr.assign = [], assign
    ns = tr.ns
    ns.update({"_value": _value, "_deposit": deposit, "_wrap": Tensor._wrap})
    ops = plan.ops
    vals, saved, inputs = [None] * len(ops), [None] * len(ops), {}
    plain_args = all(type(a) is np.ndarray for a in args)       # as Compiled.__call__'s quick signature

    def inp(r):
        kind = r[0]
        if kind == "slot":
            return vals[r[1]]
        if kind == "const":
            return r[1]
        if kind == "seq":
            return r[1](inp(x) for x in r[2])
        key = ("leaf", id(r[1])) if kind == "leaf" else r
        rec = inputs.get(key)
        if rec is None:
            if kind == "leaf":
                rec = tr.local(r[1].data, f"{tr.const(r[1], 'T')}.data")
            elif r[0] == "arg" and len(r[1]) == 1 and plain_args:      # the plan's key says: an ndarray
                rec = tr.local(args[r[1][0]], f"args[{r[1][0]}]")
            else:
                rec = tr.local(_value(r, args, None), f"_value({tr.const(r, 'R')}, args, None)")
            inputs[key] = rec
        return rec

    for i, (op, ins, kws, _, _, _, _) in enumerate(ops):
        xs = [inp(r) for r in ins]
        kw = {k: inp(r) for k, r in kws.items()}
        res = _call_rule(tr, op.forward, xs, kw)
        if type(res) is not tuple or len(res) != 2:
            raise _Abort(f"{op.name}'s forward did not give (out, saved)")
        out, saved[i] = res
        if type(out) is not _Rec:
            raise _Abort(f"{op.name}'s forward gave a {type(out).__name__}")
        if type(out.v) is not np.ndarray:                      # as apply: a NumPy scalar -> 0-d array
            out = tr.local(np.asarray(out.v), f"np.asarray({out.name})")
        vals[i] = out
    result = "None"
    for ev in plan.events:
        if ev[0] == "zero_grad":
            tr.lines.append(f"{tr.const(ev[1], 'O')}.zero_grad(**{tr.const(ev[2], 'K')})")
        elif ev[0] == "step":
            tr.lines.append(f"{tr.const(ev[1], 'O')}.step()")
        else:
            _record_backward(plan, tr, vals, saved)
            result = _ret_code(plan.ret, tr, vals)
    tr.lines.append(f"return {result}")
    src = "def run(args):\n" + "".join(f"    {ln}\n" for ln in tr.lines)
    used = set(_NAME_ANY.findall(src))
    for k in [k for k in ns if k[0] in "BC" and k not in used]:     # failed recordings' buffers
        del ns[k]
    exec(compile_source(src), ns)             # noqa: S102 -- code written above from the plan
    run = ns["run"]
    run.source, run.opaque, run.reused = src, tr.opaque, 0
    arrays = {id(r): r for r in (_root(ns[k]) for k in ns if k[0] == "B")}
    run.buffers, run.nbytes = len(arrays), sum(a.nbytes for a in arrays.values())
    return run, tr


def _ret_code(r, tr, vals):
    if r[0] == "none":
        return "None"
    if r[0] == "tensor":                # a copy: the buffer is written again by the next replay
        return f"_wrap(np.array({vals[r[1]].name}))"
    if r[0] == "leaf":
        return tr.const(r[1], "T")
    items = ", ".join(_ret_code(x, tr, vals) for x in r[2])
    return f"{tr.const(r[1], 'Y')}(({items},))"


def _record_into(tr, op, buf, g, saved):
    """``op.into(buf, g, *saved)`` recorded (it adds into ``buf`` in place); False (nothing changed) if
    the op declines or cannot be recorded."""
    mark, before = len(tr.lines), buf.v.copy()
    try:
        if op.into(buf, g, *saved):
            return True
    except _Abort:
        raise
    except Exception:        # noqa: BLE001 -- not recordable: the ordinary rule instead
        pass
    buf.v[...] = before
    del tr.lines[mark:]
    return False


def _record_backward(plan, tr, vals, saved):
    """:func:`_backward` on recorded arrays: the same rules in the same order, and the same
    accumulation -- :func:`chainrule.sparse.add_grad` decides on the recorded values exactly as in
    the eager pass, and the plan writes what it did (a first gradient kept, ``+=`` into an owned
    buffer, a sum into a new buffer).  A leaf's owned gradient buffer is handed out as its ``.grad``
    (see the module docstring)."""
    ops = plan.ops
    root = plan.root
    seed = plan.seed if plan.seed is not None else np.ones(ops[root][5], dtype=ops[root][6])
    seed = np.array(seed)
    seed.setflags(write=False)
    recs = {root: _Rec(tr, seed, tr.const(seed, "S"), persistent=True)}    # key -> its gradient (recorded)
    grads, owned, leaves = {root: seed}, set(), []                          # the same, as add_grad sees it
    mark = len(tr.lines)
    for i in plan.order:
        g = recs.pop(i, None)
        if g is None:
            continue
        grads.pop(i)
        op, _, _, needs, parents, _, _ = ops[i]
        p0 = parents[0][1] if parents and parents[0] is not None else None
        if op.into is not None and p0 is not None and p0 in owned and _record_into(tr, op, recs[p0], g, saved[i]):
            outs = ()                               # as run_backward: added into x's own gradient buffer
        else:
            outs = _call_rule(tr, op.backward, (g, needs, *saved[i]))
        saved[i] = None
        if type(outs) is not tuple:
            raise _Abort(f"{op.name}'s backward did not give a tuple")
        vouts = tuple(o.v if type(o) is _Rec or type(o) is _Var else o for o in outs)
        for p, gi in zip(parents, outs):
            if p is None or gi is None:
                continue
            key = p[1]
            if type(gi) is _Var and type(gi.v) is RowSparseGrad and p[0] == "leaf" and key not in recs \
                    and gi.v.shape == key.data.shape and gi.v.dtype == key.data.dtype:
                grads[key] = gi.v                   # a leaf's first gradient, row-sparse: kept, not owned
                recs[key] = gi
                leaves.append(key)
                continue
            if type(gi) is not _Rec:
                raise _Abort(f"{op.name}'s backward gave a {type(gi).__name__}")
            shape, dtype = (ops[key][5], ops[key][6]) if p[0] == "node" else (key.data.shape, key.data.dtype)
            if gi.shape != shape:
                gi = _call_rule(tr, unbroadcast, (gi, shape))
            if gi.dtype != dtype:
                gi = gi.astype(dtype)
            prev = recs.get(key)
            if key in grads:                        # as run_backward: see sparse.add_grad
                how = add_grad(grads, owned, key, gi.v)
            else:
                how = NEW
                keep_first(grads, owned, key, gi.v, g.v, vouts, p[0] == "leaf" or op.into is not None)
            if how is NEW:
                recs[key] = gi
                if p[0] == "leaf":
                    leaves.append(key)
            elif how is IADD:                       # add_grad added into prev's value: write the same
                tr.lines.append(f"{tr._uf(np.add)}({prev.name}, {gi.name}, {prev.name})")
            elif how is ACC and type(grads[key]) is np.ndarray:
                s = grads[key]
                buf = tr.alloc(s)
                np.add(prev.v, gi.v, out=buf)
                if not _same_bits(buf, s):
                    raise _Abort("a gradient sum differs written into a buffer")
                grads[key] = buf
                recs[key] = tr.buffer(buf)
                tr.lines.append(f"{tr._uf(np.add)}({prev.name}, {gi.name}, {recs[key].name})")
            else:
                raise _Abort("a row-sparse gradient sum")
    guard = []
    for t in leaves:
        g, mine = recs.pop(t), t in owned
        T = tr.const(t, "T")
        if mine and g.persistent:          # handed out: if still the .grad (no zero_grad), keep its values
            tr.pinned.add(tr.alias.get(g.name, g.name))
            guard.append(f"if {T}.grad is {g.name}: {T}.grad = {g.name}.copy()")
        if mine:                           # deposit's common case written out: .grad None -> the array
            tr.lines.append(f"if {T}.grad is None: {T}.grad = {g.name}")
            tr.lines.append(f"else: _deposit({T}, {g.name}, True)")
        else:
            tr.lines.append(f"_deposit({T}, {g.name}, False)")
    tr.lines[mark:mark] = guard


# ------------------------------------------------------------------------------------ capture
class _Capture:
    """Patches Tensor.backward and the optimizers' step/zero_grad for one eager run of the step."""

    def __init__(self):
        self.events, self.root, self.seed, self.error = [], None, None, None

    def __enter__(self):
        from .optim import Optimizer
        cap = self
        self._saved = (Tensor.backward, Optimizer.step, Optimizer.zero_grad, STATE.forward)
        orig_backward, orig_step, orig_zero = self._saved[:3]

        def backward(t, grad=None, retain_graph=False):
            if cap.root is not None:
                cap.error = cap.error or "the step calls backward more than once"
            elif t._node is None:
                cap.error = cap.error or "backward of a leaf tensor"
            else:
                cap.root = t._node
                cap.seed = None if grad is None else np.array(grad.data if isinstance(grad, Tensor) else grad,
                                                               dtype=t.dtype)
                cap.events.append(("backward",))
                cap.root_tensor = t
            return orig_backward(t, grad, retain_graph=True)      # keep the graph for the plan

        def step(opt, closure=None):
            if closure is not None:
                cap.error = cap.error or "optimizer.step(closure) cannot be captured"
            cap.events.append(("step", opt))
            return orig_step(opt, closure)

        def zero_grad(opt, set_to_none=True):
            cap.events.append(("zero_grad", opt, {"set_to_none": set_to_none}))
            return orig_zero(opt, set_to_none)

        Tensor.backward, Optimizer.step, Optimizer.zero_grad = backward, step, zero_grad
        STATE.forward = True
        return self

    def __exit__(self, *exc):
        from .optim import Optimizer
        Tensor.backward, Optimizer.step, Optimizer.zero_grad, STATE.forward = self._saved
        return False


class Compiled:
    """A step function captured by :func:`compile`.  Attributes: ``fallback_reason`` (None while
    the step can be captured), ``stats`` (counts of ``captures``, ``replays``, ``eager`` runs)."""

    def __init__(self, fn, max_captures=4, max_signatures=32):
        self.fn = fn
        self.fallback_reason = None
        self.max_captures = max_captures
        self.max_signatures = max_signatures
        self._plans = {}           # signature -> plan (None while capturing)
        self._pending = {}         # signature -> first capture's plan
        self._disagree = {}        # signature -> number of disagreeing capture pairs
        self.stats = {"captures": 0, "replays": 0, "eager": 0}
        self.__name__ = f"compiled_{getattr(fn, '__name__', 'step')}"
        self.__doc__ = getattr(fn, "__doc__", None)

    def plans(self):
        """One dict per captured signature: ``buffered`` (the plan runs on buffers; else why not),
        ``opaque`` (the rules replayed as one opaque call each, with the reason), ``buffers`` and
        ``bytes`` (the distinct arrays the plan owns, after reuse), ``lines`` (of generated code)."""
        out = []
        for plan in self._plans.values():
            run = plan.fast
            out.append({"buffered": plan.unbuffered is None if run is not None else None,
                        "why_not": plan.unbuffered, "opaque": list(getattr(run, "opaque", ())),
                        "buffers": getattr(run, "buffers", 0), "bytes": getattr(run, "nbytes", 0),
                        "lines": run.source.count("\n") if run is not None else 0})
        return out

    def _fallback(self, reason):
        if self.fallback_reason is None:
            self.fallback_reason = reason
            warnings.warn(f"cr.compile({getattr(self.fn, '__name__', 'step')}): running eagerly: {reason}",
                          RuntimeWarning, stacklevel=3)

    def __call__(self, *args):
        if self.fallback_reason is not None:
            self.stats["eager"] += 1
            return self.fn(*args)
        if all(type(a) is np.ndarray for a in args):          # the common case, quickly
            sig = tuple((a.shape, a.dtype.str, a.strides) for a in args)
        else:
            sig = _walk(args, paths=False)[1]
        plan = self._plans.get(sig)
        if plan is not None:
            self.stats["replays"] += 1
            if plan.fast is not None:
                return plan.fast(args)
            try:                                      # the first replay records the plan on buffers
                plan.fast = _record(plan, args)
            except Exception as e:                    # noqa: BLE001 -- e.g. a row-sparse gradient
                plan.unbuffered = f"{type(e).__name__}: {e}"
            else:
                return plan.fast(args)
            log = []
            out = _replay(plan, args, log)            # else it interprets and logs,
            plan.fast = _codegen(plan, log)           # later ones run the plan as written code
            return out
        return self._capture(sig, args)

    def _capture(self, sig, args):
        """Run the step eagerly while recording it; keep the plan once two captures agree."""
        if STATE.anomaly or STATE.deltas is not None or STATE.forward:
            self._fallback("detect_anomaly, record_deltas or record_forward is active")
            return self.fn(*args)
        self.stats["captures"] += 1
        with _Capture() as cap:
            ret = self.fn(*args)
        try:
            if cap.error:
                raise CaptureError(cap.error)
            if cap.root is None:
                raise CaptureError("the step never calls backward (compile captures training steps)")
            kinds = [e[0] for e in cap.events]
            if "step" in kinds[:kinds.index("backward")]:
                raise CaptureError("the optimizer steps before the backward pass")
            plan = _build(cap.root, cap.seed, tuple(cap.events), ret, args)
        except CaptureError as e:
            self._fallback(str(e))
            return ret
        finally:
            _free(cap.root)
        first = self._pending.pop(sig, None)
        if first is None:
            if len(self._pending) >= self.max_signatures:
                if not self._plans:                   # nothing ever repeated: capturing cannot pay
                    self._fallback(f"{self.max_signatures + 1} calls with as many different signatures and "
                                   f"none repeated (e.g. a new tree level schedule every minibatch): "
                                   f"a captured plan would never be replayed")
                    self._pending.clear()
                    return ret
                self._pending.pop(next(iter(self._pending)))      # forget the oldest
            self._pending[sig] = plan
            return ret
        why = _plans_agree(first, plan)
        if why is None:
            if len(self._plans) >= self.max_signatures:
                self._plans.pop(next(iter(self._plans)))         # keep the most recent plans
            self._plans[sig] = plan
            return ret
        n = self._disagree[sig] = self._disagree.get(sig, 0) + 1
        if n >= 2 or self.stats["captures"] >= self.max_captures * 2:
            self._fallback(f"two captures of the step disagree ({why}): data-dependent Python control "
                           f"flow or arrays computed from the inputs outside chainrule ops")
        else:
            self._pending[sig] = plan
        return ret


def _free(root):
    """Free the captured graph (the capture ran backward with retain_graph=True)."""
    if root is None:
        return
    stack, seen = [root], {id(root)}
    while stack:
        n = stack.pop()
        ps = n.parents
        n.parents = n.saved = None
        if hasattr(n, "fwd"):
            try:
                del n.fwd
            except AttributeError:
                pass
        for p in ps or ():
            if type(p) is Node and id(p) not in seen:
                seen.add(id(p))
                stack.append(p)


def compile(step_fn):     # noqa: A001 -- the name users expect (torch.compile, jax.jit's role)
    """Capture ``step_fn`` (forward, ``loss.backward()``, optimizer update) and replay it on later
    calls with arguments of the same shapes and dtypes; see :mod:`chainrule.compile`.

    >>> import numpy as np, chainrule as cr
    >>> from chainrule import nn, optim, losses
    >>> model = nn.Linear(3, 2, rng=0, dtype=np.float64); opt = optim.SGD(model.parameters(), lr=0.1)
    >>> def train_step(x, y):
    ...     loss = losses.cross_entropy(model(x), y)
    ...     opt.zero_grad(); loss.backward(); opt.step()
    ...     return loss
    >>> step = cr.compile(train_step)
    >>> x, y = np.ones((4, 3)), np.array([0, 1, 1, 0])
    >>> losses_ = [step(x, y).item() for _ in range(4)]
    >>> step.stats
    {'captures': 2, 'replays': 2, 'eager': 0}
    """
    return Compiled(step_fn)
