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

**Replay.**  From the third call, the recorded plan runs: each op's forward rule on the arrays of the
new inputs and the parameters' current values, the backward rules in the engine's order with the
engine's accumulation (so results are bit-for-bit those of the eager step), the gradients set on
the parameters as ``backward`` would, then the optimizer calls.  No Tensor or Node is created (the
returned loss is wrapped in one Tensor), nothing is validated again, no heap or dict of the graph
is built.  What the replay does *not* do yet: the rules still allocate their outputs (they are
NumPy functions, not ``out=`` kernels), and the optimizer update runs as the optimizer's own
(eager, in-place) ``step``.

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

import warnings

import numpy as np

from . import autograd as ag
from .autograd import Node, RowSparseGrad, STATE, unbroadcast
from .sparse import ACC, IADD, NEW, SCATTER, accumulate, add_grad, deposit, fresh
from .tensor import Tensor

__all__ = ["compile", "Compiled", "CaptureError"]


class CaptureError(RuntimeError):
    """A step that cannot be captured (the message says why); the compiled step runs it eagerly."""


# ------------------------------------------------------------------------------------ argument walk
def _walk(args, limit=4):
    """(path, ndarray) for every array reachable from ``args`` (Tensors, arrays, tuples, lists,
    dicts, and one level of plain objects' attributes), and a hashable signature of everything."""
    arrays, sig = [], []
    stack = [((i,), a, 0) for i, a in reversed(list(enumerate(args)))]
    while stack:
        path, a, depth = stack.pop()
        if isinstance(a, Tensor):
            a = a.data
        if isinstance(a, np.ndarray):
            arrays.append((path, a))
            sig.append((path, "a", a.shape, a.dtype.str, a.strides))
        elif isinstance(a, (bool, int, float, str, bytes, type(None), np.generic)):
            sig.append((path, "v", a))
        elif depth < limit and isinstance(a, (tuple, list)):
            sig.append((path, type(a).__name__, len(a)))
            stack.extend(((*path, k), v, depth + 1) for k, v in reversed(list(enumerate(a))))
        elif depth < limit and isinstance(a, dict):
            sig.append((path, "dict", tuple(a)))
            stack.extend(((*path, k), v, depth + 1) for k, v in reversed(list(a.items())))
        elif depth < limit and hasattr(a, "__dict__"):
            sig.append((path, type(a).__name__))
            stack.extend(((*path, "." + k), v, depth + 1) for k, v in reversed(list(vars(a).items())))
        else:
            sig.append((path, "obj", type(a).__name__))
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
    __slots__ = ("ops", "order", "root", "seed", "events", "ret", "leaves", "key", "fast")


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
    plan.fast = None
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
                how, grads[key] = NEW, gi
                if p[0] == "leaf":
                    leaves.append(key)
                    if fresh(gi, g, outs):
                        owned.add(key)
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
            sig = _walk(args)[1]
        plan = self._plans.get(sig)
        if plan is not None:
            self.stats["replays"] += 1
            if plan.fast is not None:
                return plan.fast(args)
            log = []
            out = _replay(plan, args, log)            # the first replay interprets and logs,
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
