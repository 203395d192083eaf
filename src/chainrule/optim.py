"""Optimizers (SGD with momentum/Nesterov, AdaGrad, RMSprop, Adam, AdamW), learning-rate schedules
and gradient clipping.  Updates are in place on ``p.data``.

**Parameter groups** (PyTorch's ``param_groups``).  ``params`` is an iterable of tensors, a Module,
or a list of dicts ``{'params': [...], 'lr': ..., 'weight_decay': ...}``; each dict is one group
whose missing hyperparameters come from the constructor's keyword arguments (``opt.defaults``).
``opt.param_groups`` is that list of dicts (assign ``group['lr']`` to change one group);
``opt.add_param_group(d)`` adds one.  ``opt.params`` is the flat list of every parameter, group by
group.  ``opt.lr`` (any hyperparameter name) reads the *first* group's value; assigning
``opt.lr = x`` sets it in *every* group (a shorthand for the one-group case; schedulers scale each
group from its own base lr instead).

``step()`` applies one update to every parameter whose ``.grad`` is not None;
``zero_grad()`` sets every ``.grad`` to None (``set_to_none=False``: to zeros).

**Per-parameter step counts.**  Every parameter counts the steps in which it had a gradient
(``opt.param_steps[i]``; PyTorch's ``state[p]['step']``): Adam's bias corrections use that count,
so a parameter that first gets a gradient at the optimizer's 5th step takes a first Adam step
(−lr·sign(g) in size), as in PyTorch.  ``opt.step_count`` counts ``step()`` calls.

**Row-sparse gradients** (:class:`cr.RowSparseGrad`, from ``nn.Embedding(..., sparse=True)``): the
gradient is first coalesced (duplicate rows summed, negative indices wrapped), then the update is
applied to the touched rows only -- the rows' parameters and state are gathered, updated with the
same formula as a dense gradient, and scattered back.  This is a *lazy* update (PyTorch's SparseAdam
semantics):

* rows not in the gradient are not changed at all: their parameters do not move, and their
  momentum buffers / Adam moments / AdaGrad accumulators do not decay;
* Adam's bias corrections use the parameter's step count t (the steps in which the table had any
  gradient), not a per-row count;
* weight decay (L2 or decoupled) is applied to the touched rows only;
* with all rows touched every step, the sparse update equals the dense one (except SGD momentum
  with ``dampening > 0``: a dense buffer starts as the first gradient, a sparse one starts at 0).

**State dicts** are flat: ``'type'`` (class name), ``'step'`` (``step()`` calls), the first group's
hyperparameters (``'lr'``, ``'momentum'``, ...), the other groups' as ``'group.<k>.<name>'``
(k ≥ 1), each parameter's step count ``'state.<i>.step'`` (an int) and one array per parameter
state, ``'state.<i>.<name>'`` (i = the parameter's position in ``opt.params``; e.g.
``'state.3.momentum'``, ``'state.0.m'``).  Values are ndarrays or Python scalars, so a checkpoint can
put the arrays in safetensors and the scalars in JSON; ``load_state_dict`` restores them exactly (a
resumed run is bit for bit the same).  A state dict written before per-parameter steps existed (no
``'state.<i>.step'``) gives every parameter with state the global step count.

**Differences from PyTorch** (names are PyTorch's where the concept is): ``Linear`` weights are
(in, out) so optimizer state is too; ``AdaGrad``'s accumulator argument is ``initial_accumulator``
(``initial_accumulator_value`` accepted); there is no ``closure`` re-evaluation loop beyond calling
it once; ``CosineLR`` stays at η_min after T_max.
"""
from __future__ import annotations

import math

import numpy as np

from .autograd import RowSparseGrad
from .tensor import Tensor

__all__ = ["Optimizer", "SGD", "AdaGrad", "RMSprop", "Adam", "AdamW", "StepLR", "CosineLR",
           "clip_grad_norm", "clip_grad_value", "clip_grad_norm_", "clip_grad_value_", "OptimizerStateError"]


class OptimizerStateError(ValueError):
    """A state dict that does not belong to this optimizer (wrong type, parameters, keys, shapes)."""


def _coalesce(g):
    """Unique, sorted, non-negative row indices with summed rows."""
    return g.coalesce()


def _py(v):
    return v.item() if isinstance(v, np.generic) else v


class Optimizer:
    """Base class.  ``Optimizer(params, **defaults)``: ``params`` an iterable of Parameters (or leaf
    tensors with ``requires_grad``; a Module), or of dicts (parameter groups, see the module doc);
    ``defaults`` the hyperparameters, the values of every group that does not set its own.

    Subclasses define ``_check(h)`` (validate one group's hyperparameters), ``_new_state(p, h)``
    (dict name -> array, created the first time p gets a gradient) and ``_rule(w, g, st, new, h, t)``,
    which updates the arrays ``w`` (the parameter) and ``st`` in place given the dense gradient
    ``g``, the group's hyperparameters ``h`` and the parameter's step count ``t`` (1 at its first
    update) -- for a row-sparse gradient, ``w``, ``g`` and ``st`` are the gathered touched rows.
    A ``_rule`` that takes ``scratch`` (two arrays of w's shape and dtype, or None: allocate) computes
    its temporaries there with ``out=`` -- the same operations in the same order, so the same bits.
    """
    _aliases = {}

    def __init__(self, params, **defaults):
        name = type(self).__name__
        if isinstance(params, Tensor):
            raise TypeError(f"{name}: params must be an iterable of tensors (e.g. model.parameters()), "
                            f"got a single Tensor; wrap it in a list")
        if hasattr(params, "parameters") and callable(params.parameters):
            params = params.parameters()
        params = list(params)
        if not params:
            raise ValueError(f"{name}: got an empty parameter list")
        object.__setattr__(self, "defaults", dict(defaults))
        object.__setattr__(self, "param_groups", [])
        self.params, self.state, self.param_steps = [], [], []
        self.step_count = 0
        self._check(self.defaults)
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for g in groups:
            if not isinstance(g, dict):
                raise TypeError(f"{name}: mix of parameter groups (dicts) and tensors in params")
            self.add_param_group(g)

    @property
    def _hyper(self):
        return tuple(self.defaults)

    def add_param_group(self, group):
        """Add a group ``{'params': [...], <hyperparameter>: value, ...}``; unset hyperparameters
        take the constructor's defaults.  A parameter may belong to one group only."""
        name = type(self).__name__
        group = dict(group)
        if "params" not in group:
            raise ValueError(f"{name}.add_param_group: a parameter group needs a 'params' entry")
        ps = group.pop("params")
        if isinstance(ps, Tensor):
            ps = [ps]
        ps = list(ps)
        for k in list(group):
            if k in self._aliases:
                group.update(self._aliases[k](group.pop(k)))
        unknown = [k for k in group if k not in self.defaults]
        if unknown:
            raise ValueError(f"{name}.add_param_group: unknown hyperparameter(s) {unknown}; this optimizer "
                             f"has {list(self.defaults)}")
        h = {**self.defaults, **group}
        for k, v in self.defaults.items():
            if isinstance(v, (bool, float)) and not isinstance(h[k], type(v)):
                h[k] = type(v)(h[k])
        self._check(h)
        seen = {id(p) for p in self.params}
        for j, p in enumerate(ps):
            i = len(self.params) + j
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: parameter {i} is a {type(p).__name__}, expected a Tensor/Parameter")
            if not p.is_leaf:
                raise ValueError(f"{name}: parameter {i} (shape {p.shape}) is not a leaf tensor")
            if p.dtype.kind != "f":
                raise TypeError(f"{name}: parameter {i} has dtype {p.dtype}; only floating tensors can be optimized")
            if id(p) in seen:
                raise ValueError(f"{name}: parameter {i} (shape {p.shape}) appears twice in the parameter list"
                                 f"{'s' if self.param_groups else ''}")
            seen.add(id(p))
        object.__setattr__(self, "_ups", None)
        self.param_groups.append({"params": ps, **h})
        self.params.extend(ps)
        self.state.extend(dict() for _ in ps)
        self.param_steps.extend(0 for _ in ps)

    def __getattr__(self, k):
        # hyperparameters read as attributes: the first group's value (opt.lr, opt.momentum, ...)
        d = self.__dict__
        if k in d.get("defaults", ()) and d.get("param_groups"):
            return d["param_groups"][0][k]
        raise AttributeError(f"{type(self).__name__!s} object has no attribute {k!r}")

    def __setattr__(self, k, v):
        d = self.__dict__
        if k in d.get("defaults", ()) and d.get("param_groups"):
            for g in d["param_groups"]:
                g[k] = v
        else:
            object.__setattr__(self, k, v)

    def _check(self, h):
        pass

    # -------------------------------------------------------------- the update
    def zero_grad(self, set_to_none=True):
        """Set every parameter's ``.grad`` to None (default; the next backward writes fresh
        gradients) or, with ``set_to_none=False``, to dense zeros."""
        for p in self.params:
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad = np.zeros_like(p.data)

    def step(self, closure=None):
        """Apply one update to every parameter that has a gradient; increments ``step_count`` and
        the step count of every updated parameter.  ``closure`` (optional): called first (with
        gradients enabled); its value is returned."""
        loss = None
        if closure is not None:
            from .autograd import enable_grad
            with enable_grad():
                loss = closure()
        d = self.__dict__
        d["step_count"] += 1
        ups = d["_ups"]
        if ups is None:
            ups = self._updaters()
        for u in ups:
            u()
        return loss

    def _updaters(self):
        """One update function per parameter (built once, rebuilt when the groups or the state are
        replaced): for a dense gradient of the parameter's shape, once its state exists, the rule runs
        straight away on the parameter's scratch buffers (no per-step allocation, no checks beyond
        three); anything else takes :meth:`_update`.  A compiled step (``cr.compile``) calls
        ``step()`` too: the update is this same code."""
        import inspect
        takes_scratch = "scratch" in inspect.signature(self._rule).parameters
        ups, i = [], 0
        for h in self.param_groups:
            for p in h["params"]:
                ups.append(self._updater(i, p, h, takes_scratch))
                i += 1
        object.__setattr__(self, "_ups", ups)
        return ups

    def _updater(self, i, p, h, takes_scratch):
        fast = self._lean_updater(i, p, h)
        if fast is not None:
            return fast
        opt, update, rule, nd = self, self._update, self._rule, np.ndarray
        steps = self.param_steps
        sc = [None, None]                       # the parameter array the scratch was made for, scratch

        def upd():
            g = p.grad
            if g is None:
                return
            w = p.data
            st = opt.state[i]
            if type(g) is not nd or g.shape != w.shape or g.dtype is not w.dtype or not (st or steps[i]) \
                    or steps is not opt.param_steps:
                return update(i, p, h)
            t = steps[i] = steps[i] + 1
            if not takes_scratch:
                return rule(w, g, st, False, h, t)
            if sc[0] is not w:
                sc[:] = [w, (np.empty_like(w), np.empty_like(w))]
            rule(w, g, st, False, h, t, sc[1])
        return upd

    def _update(self, i, p, h):
        g = p.grad
        if g is None:
            return
        st = self.state[i]
        new = not st and self.param_steps[i] == 0
        if new:
            st.update(self._new_state(p, h))
        self.param_steps[i] += 1
        t = self.param_steps[i]
        if type(g) is RowSparseGrad:
            g = _coalesce(g)
            idx = g.indices
            w = p.data.take(idx, axis=0)                     # = p.data[idx], ~2 µs less a call
            rows = {k: a.take(idx, axis=0) for k, a in st.items()}
            self._rule(w, g.values, rows, False, h, t)
            p.data[idx] = w
            for k, a in rows.items():
                st[k][idx] = a
        else:
            if g.shape != p.shape:
                raise ValueError(f"{type(self).__name__}.step: parameter {i} has shape {p.shape} but its "
                                 f"gradient has shape {g.shape}")
            self._rule(p.data, g, st, new, h, t)

    def _lean_updater(self, i, p, h):
        """Optionally a subclass's update function for its simplest case (None: the general one)."""
        return None

    def _new_state(self, p, h):
        return {}

    def _rule(self, w, g, st, new, h, t, scratch=None):  # pragma: no cover - abstract
        raise NotImplementedError

    # -------------------------------------------------------------- state
    def state_dict(self):
        """Flat dict: 'type', 'step', the first group's hyperparameters, 'group.<k>.<name>' for the
        other groups, 'state.<i>.step' (ints) and 'state.<i>.<name>' arrays (copies)."""
        sd = {"type": type(self).__name__, "step": int(self.step_count)}
        for k in self._hyper:
            sd[k] = _py(self.param_groups[0][k])
        for gi, g in enumerate(self.param_groups[1:], start=1):
            for k in self._hyper:
                sd[f"group.{gi}.{k}"] = _py(g[k])
        for i, st in enumerate(self.state):
            if st:
                sd[f"state.{i}.step"] = int(self.param_steps[i])
            for k, a in st.items():
                sd[f"state.{i}.{k}"] = a.copy()
        return sd

    def load_state_dict(self, state_dict):
        """Restore a :meth:`state_dict` exactly: step counts, every group's hyperparameters (lr
        included) and every state array (copied).  Everything is checked first -- type, keys,
        parameter indices, shapes and dtypes -- and on any problem :class:`OptimizerStateError`
        lists them all and nothing is changed."""
        name = type(self).__name__
        sd = dict(state_dict)
        problems = []
        t = sd.get("type", name)
        if t != name:
            problems.append(f"it was saved by {t}, not {name}")
        group_keys = [(0, k, k) for k in self._hyper] + [
            (gi, k, f"group.{gi}.{k}") for gi in range(1, len(self.param_groups)) for k in self._hyper]
        for _, _, key in [(None, None, "step")] + group_keys:
            if key not in sd:
                problems.append(f"missing key '{key}'")
        new_state = [dict() for _ in self.params]
        new_steps = [None] * len(self.params)
        known = {"type", "step", *(key for _, _, key in group_keys)}
        for k, v in sd.items():
            if k in known:
                continue
            parts = k.split(".")
            if len(parts) != 3 or parts[0] != "state" or not parts[1].isdigit():
                problems.append(f"unexpected key '{k}'")
                continue
            i, sname = int(parts[1]), parts[2]
            if i >= len(self.params):
                problems.append(f"'{k}' is for parameter {i}, but this optimizer has {len(self.params)} parameters")
                continue
            if sname == "step":
                try:
                    new_steps[i] = int(v)
                except (TypeError, ValueError):
                    problems.append(f"'{k}' is not an integer step count: {v!r}")
                continue
            p = self.params[i]
            a = np.asarray(v.data if isinstance(v, Tensor) else v)
            if a.shape != p.shape or a.dtype != p.dtype:
                problems.append(f"'{k}' has shape {a.shape} dtype {a.dtype}, parameter {i} has shape "
                                f"{p.shape} dtype {p.dtype}")
                continue
            new_state[i][sname] = np.array(a, copy=True)
        groups = self._param_group_index()
        for i, st in enumerate(new_state):
            expect = set(self._new_state(self.params[i], self.param_groups[groups[i]]))
            if st and set(st) != expect:
                problems.append(f"parameter {i}: state {sorted(st)}, expected {sorted(expect)}")
        if problems:
            raise OptimizerStateError(f"{name}.load_state_dict: the state dict does not fit this optimizer "
                                      f"(nothing was changed):\n  " + "\n  ".join(problems))
        self.step_count = int(sd["step"])
        for gi, k, key in group_keys:
            cur = self.param_groups[gi][k]
            v = sd[key]
            self.param_groups[gi][k] = type(cur)(v) if isinstance(cur, (bool, int, float)) and not isinstance(v, type(cur)) else v
        self.state = new_state
        # old state dicts (one global step count): every parameter with state took every step
        self.param_steps = [s if s is not None else (self.step_count if st else 0)
                            for s, st in zip(new_steps, new_state)]
        object.__setattr__(self, "_ups", None)
        self._after_load()

    def _param_group_index(self):
        out = []
        for gi, g in enumerate(self.param_groups):
            out.extend([gi] * len(g["params"]))
        return out

    def _after_load(self):
        pass

    def __repr__(self):
        hp = ", ".join(f"{k}={self.param_groups[0][k]!r}" for k in self._hyper)
        ng = f", {len(self.param_groups)} groups" if len(self.param_groups) > 1 else ""
        return f"{type(self).__name__}({len(self.params)} parameters{ng}, {hp})"


def _scratch(scratch, w):
    """The two temporaries of an update: the parameter's scratch buffers, or new arrays."""
    if scratch is not None:
        return scratch
    return np.empty_like(w), np.empty_like(w)


def _nonneg(h, where, *names):
    bad = [f"{k}={h[k]}" for k in names if h[k] is None or h[k] < 0]
    if bad:
        raise ValueError(f"{where}: need {', '.join(names)} >= 0, got {', '.join(bad)}")


# ------------------------------------------------------------------------------------------------
class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and L2 weight decay,
    with PyTorch's semantics.  Per parameter w with gradient g, at every step:

        g ← g + λ w                                  (weight_decay λ, if λ ≠ 0)
        b ← g                     at the first step   (momentum μ ≠ 0)
        b ← μ b + (1 − τ) g       afterwards          (dampening τ, default 0)
        g ← g + μ b  (nesterov)   or   g ← b
        w ← w − η g                                   (lr η)

    Plain SGD (μ = λ = 0) is just ``w -= η g``.  State: ``'momentum'`` (b) when μ ≠ 0.
    Seed 002 trains with plain SGD one example at a time (its L rows get row-sparse updates).
    """

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0, dampening=0.0):
        if lr is None or lr < 0:
            raise ValueError(f"SGD: lr must be >= 0, got {lr}")
        super().__init__(params, lr=float(lr), momentum=float(momentum), nesterov=bool(nesterov),
                         weight_decay=float(weight_decay), dampening=float(dampening))

    def _check(self, h):
        _nonneg(h, "SGD", "lr")
        if h["momentum"] < 0 or h["weight_decay"] < 0 or not 0 <= h["dampening"] <= 1:
            raise ValueError(f"SGD: need momentum >= 0, weight_decay >= 0, 0 <= dampening <= 1 "
                             f"(got {h['momentum']}, {h['weight_decay']}, {h['dampening']})")
        if h["nesterov"] and (h["momentum"] <= 0 or h["dampening"] != 0):
            raise ValueError("SGD: Nesterov momentum needs momentum > 0 and dampening = 0")

    def _update(self, i, p, h):
        if h["momentum"] or h["weight_decay"]:
            return super()._update(i, p, h)
        # plain SGD, a first or row-sparse update: the lean path
        g = p.grad
        if g is None:
            return
        self.param_steps[i] += 1
        if type(g) is RowSparseGrad:
            idx, rows = g.distinct_rows()        # each row once (coalesced only if rows repeat)
            w = p.data.take(idx, axis=0)         # = p.data[idx] -= η rows (the same operations; take and
            w -= h["lr"] * rows                  # an assignment cost ~2.5 µs less than the fancy -=)
            p.data[idx] = w
        else:
            p.data -= h["lr"] * g

    def _lean_updater(self, i, p, h):
        """Plain SGD (μ = λ = 0 when the step runs), a dense gradient: w -= η g, η g in a scratch
        buffer -- the same two operations as :meth:`_rule`, with nothing else on the path (the
        small-MLP benchmark's update is six of these)."""
        opt, update, nd, mul = self, self._update, np.ndarray, np.multiply
        steps = self.param_steps
        sc = [None, None]

        def upd():
            g = p.grad
            if g is None:
                return
            w = p.data
            if type(g) is not nd or g.shape != w.shape or g.dtype is not w.dtype or h["momentum"] \
                    or h["weight_decay"] or steps is not opt.param_steps:
                return update(i, p, h)
            steps[i] += 1
            if sc[0] is not w:
                sc[0], sc[1] = w, np.empty_like(w)
            w -= mul(g, h["lr"], out=sc[1])
        return upd

    def _new_state(self, p, h):
        return {"momentum": np.zeros_like(p.data)} if h["momentum"] else {}

    def _rule(self, w, g, st, new, h, t, scratch=None):
        s0, s1 = _scratch(scratch, w)
        if h["weight_decay"]:
            g = np.add(g, np.multiply(w, h["weight_decay"], out=s0), out=s0)       # g + λw
        mu = h["momentum"]
        if mu:
            b = st["momentum"]
            if new:
                b[...] = g
            else:
                b *= mu
                b += g if h["dampening"] == 0 else np.multiply(g, 1.0 - h["dampening"], out=s1)
            g = np.add(g, np.multiply(b, mu, out=s1), out=s1) if h["nesterov"] else b
        w -= np.multiply(g, h["lr"], out=s1)


class AdaGrad(Optimizer):
    """AdaGrad (Duchi et al. 2011).  Per parameter w with gradient g:

        g ← g + λ w                 (weight_decay λ, if λ ≠ 0)
        G ← G + g ⊙ g               (G starts at ``initial_accumulator``)
        w ← w − η g / (√G + ε)

    Defaults as PyTorch's ``Adagrad``: lr = 0.01, ε = 1e-10 (it was 1e-8 before; the built-in
    commands that record results -- ``train mlp --optimizer adagrad``, ``train window``, ``train
    sequence`` -- pass ε = 1e-8 explicitly, so their recorded results are unchanged; the RNTN uses
    CoreNLP's 1e-3).  ``initial_accumulator_value`` (PyTorch's name) is accepted for
    ``initial_accumulator``.  State: ``'sum'`` (G).  :meth:`reset_state` sets every G back to
    ``initial_accumulator`` -- Stanford CoreNLP's classifiers reset the AdaGrad history at the
    start of every epoch.
    """
    _aliases = {"initial_accumulator_value": lambda v: {"initial_accumulator": v}}

    def __init__(self, params, lr=0.01, eps=1e-10, initial_accumulator=0.0, weight_decay=0.0,
                 initial_accumulator_value=None):
        if initial_accumulator_value is not None:
            initial_accumulator = initial_accumulator_value
        super().__init__(params, lr=float(lr), eps=float(eps), initial_accumulator=float(initial_accumulator),
                         weight_decay=float(weight_decay))

    def _check(self, h):
        if h["lr"] < 0 or h["eps"] <= 0 or h["initial_accumulator"] < 0 or h["weight_decay"] < 0:
            raise ValueError(f"AdaGrad: need lr >= 0, eps > 0, initial_accumulator >= 0, weight_decay >= 0 "
                             f"(got {h['lr']}, {h['eps']}, {h['initial_accumulator']}, {h['weight_decay']})")

    def _new_state(self, p, h):
        return {"sum": np.full_like(p.data, h["initial_accumulator"])}

    def _rule(self, w, g, st, new, h, t, scratch=None):
        s0, s1 = _scratch(scratch, w)
        if h["weight_decay"]:
            g = np.add(g, np.multiply(w, h["weight_decay"], out=s0), out=s0)
        G = st["sum"]
        G += np.multiply(g, g, out=s1)
        d = np.sqrt(G, out=s1)
        d += h["eps"]
        u = np.divide(g, d, out=s1)
        w -= np.multiply(u, h["lr"], out=s1)

    def reset_state(self):
        """Forget the squared-gradient history: every accumulator G back to initial_accumulator."""
        groups = self._param_group_index()
        for i, st in enumerate(self.state):
            if "sum" in st:
                st["sum"].fill(self.param_groups[groups[i]]["initial_accumulator"])


class RMSprop(Optimizer):
    """RMSprop (Tieleman & Hinton 2012) with PyTorch's semantics and defaults (lr = 0.01,
    α = 0.99, ε = 1e-8).  Per parameter w with gradient g:

        g ← g + λ w                                   (weight_decay λ, if λ ≠ 0)
        v ← α v + (1 − α) g ⊙ g
        centered:  ḡ ← α ḡ + (1 − α) g;  d = √(v − ḡ ⊙ ḡ) + ε     else  d = √v + ε
        momentum μ > 0:  b ← μ b + g / d;  w ← w − η b             else  w ← w − η g / d

    State: ``'square_avg'`` (v), ``'grad_avg'`` (ḡ, centered), ``'momentum'`` (b, μ > 0).
    """

    def __init__(self, params, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
        super().__init__(params, lr=float(lr), alpha=float(alpha), eps=float(eps),
                         weight_decay=float(weight_decay), momentum=float(momentum), centered=bool(centered))

    def _check(self, h):
        if h["lr"] < 0 or not 0 <= h["alpha"] < 1 or h["eps"] <= 0 or h["weight_decay"] < 0 or h["momentum"] < 0:
            raise ValueError(f"RMSprop: need lr >= 0, 0 <= alpha < 1, eps > 0, weight_decay >= 0, momentum >= 0 "
                             f"(got lr={h['lr']}, alpha={h['alpha']}, eps={h['eps']}, "
                             f"weight_decay={h['weight_decay']}, momentum={h['momentum']})")

    def _new_state(self, p, h):
        st = {"square_avg": np.zeros_like(p.data)}
        if h["centered"]:
            st["grad_avg"] = np.zeros_like(p.data)
        if h["momentum"]:
            st["momentum"] = np.zeros_like(p.data)
        return st

    def _rule(self, w, g, st, new, h, t):
        if h["weight_decay"]:
            g = g + h["weight_decay"] * w
        a = h["alpha"]
        v = st["square_avg"]
        v *= a
        v += (1.0 - a) * (g * g)
        if h["centered"]:
            gb = st["grad_avg"]
            gb *= a
            gb += (1.0 - a) * g
            d = np.sqrt(v - gb * gb)
        else:
            d = np.sqrt(v)
        d += h["eps"]
        if h["momentum"]:
            b = st["momentum"]
            b *= h["momentum"]
            b += g / d
            w -= h["lr"] * b
        else:
            w -= h["lr"] * (g / d)


def _betas(b):
    b1, b2 = b
    return {"beta1": b1, "beta2": b2}


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with PyTorch's semantics.  Per parameter w with gradient g, at the
    parameter's t-th update (t counts the steps in which *this parameter* had a gradient, as
    PyTorch's ``state[p]['step']`` -- not the optimizer's global step):

        g ← g + λ w                                   (weight_decay λ: L2 added to the gradient)
        m ← β₁ m + (1 − β₁) g
        v ← β₂ v + (1 − β₂) g ⊙ g
        w ← w − (η / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)

    i.e. w − η m̂ / (√v̂ + ε) with m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ).  State: ``'m'``, ``'v'``.
    In a parameter group ``betas=(β₁, β₂)`` is accepted (stored as ``beta1``, ``beta2``).
    For row-sparse gradients see the module docstring (lazy: untouched rows' m, v do not decay).
    """
    _decoupled = False
    _aliases = {"betas": _betas}

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        b1, b2 = betas
        super().__init__(params, lr=float(lr), beta1=float(b1), beta2=float(b2), eps=float(eps),
                         weight_decay=float(weight_decay))

    def _check(self, h):
        if h["lr"] < 0 or h["eps"] <= 0 or h["weight_decay"] < 0 or not (0 <= h["beta1"] < 1 and 0 <= h["beta2"] < 1):
            raise ValueError(f"{type(self).__name__}: need lr >= 0, 0 <= betas < 1, eps > 0, weight_decay >= 0 "
                             f"(got lr={h['lr']}, betas={(h['beta1'], h['beta2'])}, eps={h['eps']}, "
                             f"weight_decay={h['weight_decay']})")

    @property
    def betas(self):
        return (self.beta1, self.beta2)

    def _new_state(self, p, h):
        return {"m": np.zeros_like(p.data), "v": np.zeros_like(p.data)}

    def _rule(self, w, g, st, new, h, t, scratch=None):
        lr, wd, b1, b2 = h["lr"], h["weight_decay"], h["beta1"], h["beta2"]
        s0, s1 = _scratch(scratch, w)
        if wd:
            if self._decoupled:
                w *= 1.0 - lr * wd
            else:
                g = np.add(g, np.multiply(w, wd, out=s0), out=s0)
        m, v = st["m"], st["v"]
        m *= b1
        m += np.multiply(g, 1.0 - b1, out=s1)
        v *= b2
        v += np.multiply(np.multiply(g, g, out=s1), 1.0 - b2, out=s1)
        d = np.sqrt(v, out=s1)
        d /= math.sqrt(1.0 - b2 ** t)
        d += h["eps"]
        u = np.divide(m, d, out=s1)
        u *= lr / (1.0 - b1 ** t)
        w -= u


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), PyTorch's AdamW:

        w ← w (1 − η λ)             (decay applied to the weights, not added to the gradient)
        then the Adam update of :class:`Adam` with λ = 0 (per-parameter step counts t).

    Default ``weight_decay = 0.01``.  With row-sparse gradients only touched rows decay.
    """
    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


# ------------------------------------------------------------------------------------------------
def _with_grads(params):
    if hasattr(params, "parameters") and callable(params.parameters):
        params = params.parameters()
    if isinstance(params, Tensor):
        params = [params]
    return [p for p in params if p.grad is not None]


def clip_grad_norm(params, max_norm, error_if_nonfinite=False):
    """Scale all gradients together so that their global L2 norm is at most ``max_norm``:

        n = √(Σ_p ‖g_p‖²);   if n > max_norm:  g_p ← g_p · max_norm / (n + 1e-6)

    in place (dense arrays, or the values of row-sparse gradients, which are coalesced first so
    that repeated rows are summed before squaring).  Returns n, the norm *before* clipping (a
    float).  A non-finite n leaves the gradients unchanged (or raises with
    ``error_if_nonfinite=True``).  ``clip_grad_norm_`` is the same function (PyTorch's name)."""
    params = _with_grads(params)
    sq = 0.0
    for p in params:
        g = p.grad
        if type(g) is RowSparseGrad:
            g = p.grad = _coalesce(g)
            g = g.values
        sq += float(np.vdot(g, g))
    total = math.sqrt(sq)
    if not math.isfinite(total):
        if error_if_nonfinite:
            raise FloatingPointError(f"clip_grad_norm: the total gradient norm is {total}")
        return total
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for p in params:
            g = p.grad
            arr = g.values if type(g) is RowSparseGrad else g
            arr *= arr.dtype.type(coef)
    return total


def clip_grad_value(params, clip_value):
    """Clamp every gradient element into [−c, c] in place: g ← min(max(g, −c), c) (dense arrays,
    or the values of row-sparse gradients after coalescing, so repeated rows are summed first).
    ``clip_grad_value_`` is the same function (PyTorch's name).  Returns None."""
    c = float(clip_value)
    if not c >= 0:
        raise ValueError(f"clip_grad_value: clip_value must be >= 0, got {clip_value}")
    for p in _with_grads(params):
        g = p.grad
        if type(g) is RowSparseGrad:
            g = p.grad = _coalesce(g)
            np.clip(g.values, -c, c, out=g.values)
        elif isinstance(g, np.ndarray) and g.flags.writeable:
            np.clip(g, -c, c, out=g)
        else:
            p.grad = np.clip(g, -c, c)


clip_grad_norm_ = clip_grad_norm
clip_grad_value_ = clip_grad_value


# ------------------------------------------------------------------------------------------------
class _Scheduler:
    """Sets every parameter group's lr from the epoch count; call :meth:`step` once at the end of
    each epoch.  Each group's lr is computed in closed form from its own base lr (its lr at
    construction), so a restored scheduler reproduces it exactly."""
    _hyper = ()

    def __init__(self, optimizer):
        if not hasattr(optimizer, "param_groups"):
            raise TypeError(f"{type(self).__name__}: expected a chainrule optimizer (with param_groups)")
        self.optimizer = optimizer
        self.base_lrs = [float(g["lr"]) for g in optimizer.param_groups]
        self.epoch = 0
        self._apply()

    @property
    def base_lr(self):
        return self.base_lrs[0]

    def _lr(self, base_lr, epoch):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_lr(self, epoch, group=0):
        """The lr of parameter group ``group`` at epoch ``epoch``."""
        return self._lr(self.base_lrs[group], epoch)

    def _apply(self):
        for gi, g in enumerate(self.optimizer.param_groups):
            g["lr"] = self.get_lr(self.epoch, gi)

    def get_last_lr(self):
        """The current lr of every parameter group (a list, as PyTorch's ``get_last_lr``)."""
        return [g["lr"] for g in self.optimizer.param_groups]

    @property
    def last_lr(self):
        return self.optimizer.param_groups[0]["lr"]

    def step(self):
        """End of an epoch: epoch += 1 and every group's lr set for the next one; returns the
        first group's lr."""
        self.epoch += 1
        self._apply()
        return self.last_lr

    def state_dict(self):
        """JSON-serialisable: {'type', 'epoch', 'base_lr', 'base_lrs', hyperparameters...}."""
        return {"type": type(self).__name__, "epoch": self.epoch, "base_lr": self.base_lr,
                "base_lrs": list(self.base_lrs), **{k: getattr(self, k) for k in self._hyper}}

    def load_state_dict(self, sd):
        name = type(self).__name__
        if sd.get("type", name) != name:
            raise ValueError(f"{name}.load_state_dict: state was saved by {sd.get('type')}")
        missing = [k for k in ("epoch", "base_lr", *self._hyper) if k not in sd]
        if missing:
            raise ValueError(f"{name}.load_state_dict: missing keys {missing}")
        base = [float(b) for b in sd.get("base_lrs", [sd["base_lr"]])]
        if len(base) != len(self.optimizer.param_groups):
            raise ValueError(f"{name}.load_state_dict: state for {len(base)} parameter groups, the optimizer "
                             f"has {len(self.optimizer.param_groups)}")
        self.epoch, self.base_lrs = int(sd["epoch"]), base
        for k in self._hyper:
            setattr(self, k, type(getattr(self, k))(sd[k]))
        self._apply()

    def __repr__(self):
        hp = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._hyper)
        return f"{type(self).__name__}({hp}, epoch={self.epoch}, lr={self.last_lr:.6g})"


class StepLR(_Scheduler):
    """lr(e) = base_lr · γ^⌊e / step_size⌋ for epoch e = 0, 1, ... (decay by γ every step_size epochs)."""
    _hyper = ("step_size", "gamma")

    def __init__(self, optimizer, step_size, gamma=0.1):
        if int(step_size) <= 0:
            raise ValueError(f"StepLR: step_size must be a positive number of epochs, got {step_size}")
        self.step_size, self.gamma = int(step_size), float(gamma)
        super().__init__(optimizer)

    def _lr(self, base_lr, epoch):
        return base_lr * self.gamma ** (epoch // self.step_size)


class CosineLR(_Scheduler):
    """Cosine annealing (Loshchilov & Hutter 2017) without restarts:

        lr(e) = η_min + (base_lr − η_min) · (1 + cos(π · min(e, T_max) / T_max)) / 2,

    from base_lr at e = 0 down to η_min at e = T_max, and η_min after that (it stays there, unlike
    PyTorch's CosineAnnealingLR which climbs back up)."""
    _hyper = ("T_max", "eta_min")

    def __init__(self, optimizer, T_max, eta_min=0.0):
        if int(T_max) <= 0:
            raise ValueError(f"CosineLR: T_max must be a positive number of epochs, got {T_max}")
        self.T_max, self.eta_min = int(T_max), float(eta_min)
        super().__init__(optimizer)

    def _lr(self, base_lr, epoch):
        e = min(epoch, self.T_max)
        return self.eta_min + (base_lr - self.eta_min) * (1.0 + math.cos(math.pi * e / self.T_max)) / 2.0


# ------------------------------------------------------------------------------------------------
# The optimizer table: every ``chainrule train`` command (and ``chainrule dag``) builds its optimizer
# and schedule from these two tables with :func:`make_optimizer` / :func:`make_scheduler`.  A new
# optimizer is one line here (its ``--optimizer`` choice appears in every command that accepts it).
#
# ``lr`` is the one default learning rate of each optimizer (``--lr`` omitted); the other entries are
# the commands' defaults where they differ from the class's own: AdaGrad's ε stays 1e-8 (the
# commands' recorded results predate the class's PyTorch default of 1e-10).
OPTIMIZERS = {
    "sgd": (SGD, {"lr": 0.1}),
    "adam": (Adam, {"lr": 1e-3}),
    "adamw": (AdamW, {"lr": 1e-3}),
    "adagrad": (AdaGrad, {"lr": 0.01, "eps": 1e-8}),
    "rmsprop": (RMSprop, {"lr": 0.01}),
}

# name -> f(optimizer, epochs): the learning-rate schedule over a run of ``epochs`` epochs.
SCHEDULES = {
    "none": lambda opt, epochs: None,
    "step": lambda opt, epochs: StepLR(opt, step_size=max(1, epochs // 3), gamma=0.1),
    "cosine": lambda opt, epochs: CosineLR(opt, T_max=epochs),
}


def default_lr(name):
    """The default learning rate of optimizer ``name`` (the ``lr`` of :data:`OPTIMIZERS`)."""
    return _entry(name)[1]["lr"]


def _entry(name):
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name]


def make_optimizer(name, params, **options):
    """The optimizer ``name`` of :data:`OPTIMIZERS` over ``params``: the table's defaults, updated
    by ``options`` (hyperparameters such as ``lr``, ``weight_decay``, ``momentum``, ``eps``).

    An option whose value is None is left at its default, and an option the optimizer does not have
    is ignored (a command passes its ``--weight-decay`` and ``--momentum`` whichever optimizer was
    chosen; ``momentum`` means something to SGD and RMSprop only).

    >>> import chainrule as cr
    >>> w = cr.tensor([1.0], requires_grad=True)
    >>> make_optimizer("adagrad", [w], lr=None, momentum=0.9)
    AdaGrad(1 parameters, lr=0.01, eps=1e-08, initial_accumulator=0.0, weight_decay=0.0)
    """
    import inspect
    cls, defaults = _entry(name)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "params"}
    hyper = dict(defaults)
    hyper.update({k: v for k, v in options.items() if v is not None and k in accepted})
    return cls(params, **hyper)


def make_scheduler(name, optimizer, epochs):
    """The schedule ``name`` of :data:`SCHEDULES` (``'none'`` gives None) for a run of ``epochs`` epochs."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose from {', '.join(SCHEDULES)}")
    return SCHEDULES[name](optimizer, epochs)
