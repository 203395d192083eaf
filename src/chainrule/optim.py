"""Optimizers (SGD with momentum/Nesterov, AdaGrad, Adam, AdamW), learning-rate schedules and
gradient clipping.  Updates are in place on ``p.data``.

Every optimizer keeps one flat list of parameters (``opt.params``) and its hyperparameters as
attributes (``opt.lr`` is what schedulers set).  ``step()`` applies one update to every parameter
whose ``.grad`` is not None; ``zero_grad()`` sets every ``.grad`` to None.

**Row-sparse gradients** (:class:`cr.RowSparseGrad`, from ``nn.Embedding``): the gradient is first
coalesced (duplicate rows summed, negative indices wrapped), then the update is applied to the
touched rows only -- the rows' parameters and state are gathered, updated with the same formula as
a dense gradient, and scattered back.  This is a *lazy* update (PyTorch's SparseAdam semantics):

* rows not in the gradient are not changed at all: their parameters do not move, and their
  momentum buffers / Adam moments / AdaGrad accumulators do not decay;
* Adam's bias corrections use the optimizer's global step count t (the number of ``step()``
  calls), not a per-row count;
* weight decay (L2 or decoupled) is applied to the touched rows only;
* with all rows touched every step, the sparse update equals the dense one (except SGD momentum
  with ``dampening > 0``: a dense buffer starts as the first gradient, a sparse one starts at 0).

**State dicts** are flat: ``'type'`` (class name), ``'step'``, one entry per hyperparameter
(``'lr'``, ``'momentum'``, ...), and one array per parameter state, keyed ``'state.<i>.<name>'``
(i = the parameter's position in ``opt.params``; e.g. ``'state.3.momentum'``, ``'state.0.m'``).
Values are ndarrays or Python scalars, so a checkpoint can put the arrays in safetensors and the
scalars in JSON; ``load_state_dict`` restores them exactly (a resumed run is bit for bit the same).
"""
from __future__ import annotations

import math

import numpy as np

from .autograd import RowSparseGrad
from .tensor import Tensor

__all__ = ["Optimizer", "SGD", "AdaGrad", "Adam", "AdamW", "StepLR", "CosineLR", "clip_grad_norm",
           "OptimizerStateError"]


class OptimizerStateError(ValueError):
    """A state dict that does not belong to this optimizer (wrong type, parameters, keys, shapes)."""


def _coalesce(g):
    """Unique, sorted, non-negative row indices with summed rows."""
    return g.coalesce()


def _py(v):
    return v.item() if isinstance(v, np.generic) else v


class Optimizer:
    """Base class.  ``Optimizer(params, **hyper)``: ``params`` an iterable of Parameters (or leaf
    tensors with ``requires_grad``; a Module's ``parameters()``); ``hyper`` the hyperparameters,
    stored as attributes and in the state dict.

    Subclasses define ``_new_state(p)`` (dict name -> array, created the first time p gets a
    gradient) and ``_rule(w, g, state, new)``, which updates the arrays ``w`` (the parameter) and
    ``state`` in place given the dense gradient ``g`` -- for a row-sparse gradient, ``w``, ``g`` and
    ``state`` are the gathered touched rows.
    """

    def __init__(self, params, **hyper):
        name = type(self).__name__
        if isinstance(params, Tensor):
            raise TypeError(f"{name}: params must be an iterable of tensors (e.g. model.parameters()), "
                            f"got a single Tensor; wrap it in a list")
        if hasattr(params, "parameters") and callable(params.parameters):
            params = params.parameters()
        params = list(params)
        if not params:
            raise ValueError(f"{name}: got an empty parameter list")
        seen = set()
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: parameter {i} is a {type(p).__name__}, expected a Tensor/Parameter")
            if not p.is_leaf:
                raise ValueError(f"{name}: parameter {i} (shape {p.shape}) is not a leaf tensor")
            if p.dtype.kind != "f":
                raise TypeError(f"{name}: parameter {i} has dtype {p.dtype}; only floating tensors can be optimized")
            if id(p) in seen:
                raise ValueError(f"{name}: parameter {i} (shape {p.shape}) appears twice in the list")
            seen.add(id(p))
        self.params = params
        self._hyper = tuple(hyper)
        for k, v in hyper.items():
            setattr(self, k, v)
        self.state = [dict() for _ in params]
        self.step_count = 0

    # -------------------------------------------------------------- the update
    def zero_grad(self):
        """Set every parameter's ``.grad`` to None (the next backward writes fresh gradients)."""
        for p in self.params:
            p.grad = None

    def _begin_step(self):
        """Per-step scalars (e.g. Adam's bias corrections), computed once per step."""

    def step(self):
        """Apply one update to every parameter that has a gradient; increments ``step_count``."""
        self.step_count += 1
        self._begin_step()
        for i, p in enumerate(self.params):
            g = p.grad
            if g is None:
                continue
            st = self.state[i]
            new = not st
            if new:
                st.update(self._new_state(p))
            if type(g) is RowSparseGrad:
                g = _coalesce(g)
                idx = g.indices
                w = p.data[idx]
                rows = {k: a[idx] for k, a in st.items()}
                self._rule(w, g.values, rows, False)
                p.data[idx] = w
                for k, a in rows.items():
                    st[k][idx] = a
            else:
                if g.shape != p.shape:
                    raise ValueError(f"{type(self).__name__}.step: parameter {i} has shape {p.shape} but its "
                                     f"gradient has shape {g.shape}")
                self._rule(p.data, g, st, new)

    def _new_state(self, p):
        return {}

    def _rule(self, w, g, st, new):  # pragma: no cover - abstract
        raise NotImplementedError

    # -------------------------------------------------------------- state
    def state_dict(self):
        """Flat dict: 'type', 'step', the hyperparameters (Python scalars) and 'state.<i>.<name>'
        arrays (copies)."""
        sd = {"type": type(self).__name__, "step": int(self.step_count)}
        for k in self._hyper:
            sd[k] = _py(getattr(self, k))
        for i, st in enumerate(self.state):
            for k, a in st.items():
                sd[f"state.{i}.{k}"] = a.copy()
        return sd

    def load_state_dict(self, state_dict):
        """Restore a :meth:`state_dict` exactly: step count, hyperparameters (lr included) and every
        state array (copied).  Everything is checked first -- type, keys, parameter indices,
        shapes and dtypes -- and on any problem :class:`OptimizerStateError` lists them all and
        nothing is changed."""
        name = type(self).__name__
        sd = dict(state_dict)
        problems = []
        t = sd.get("type", name)
        if t != name:
            problems.append(f"it was saved by {t}, not {name}")
        for k in ("step", *self._hyper):
            if k not in sd:
                problems.append(f"missing key '{k}'")
        new_state = [dict() for _ in self.params]
        known = {"type", "step", *self._hyper}
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
            p = self.params[i]
            a = np.asarray(v.data if isinstance(v, Tensor) else v)
            if a.shape != p.shape or a.dtype != p.dtype:
                problems.append(f"'{k}' has shape {a.shape} dtype {a.dtype}, parameter {i} has shape "
                                f"{p.shape} dtype {p.dtype}")
                continue
            new_state[i][sname] = np.array(a, copy=True)
        for i, st in enumerate(new_state):
            if st and set(st) != set(self._new_state_names(self.params[i])):
                problems.append(f"parameter {i}: state {sorted(st)}, expected {sorted(self._new_state_names(self.params[i]))}")
        if problems:
            raise OptimizerStateError(f"{name}.load_state_dict: the state dict does not fit this optimizer "
                                      f"(nothing was changed):\n  " + "\n  ".join(problems))
        self.step_count = int(sd["step"])
        for k in self._hyper:
            cur = getattr(self, k)
            v = sd[k]
            setattr(self, k, type(cur)(v) if isinstance(cur, (bool, int, float)) and not isinstance(v, type(cur)) else v)
        self.state = new_state
        self._after_load()

    def _new_state_names(self, p):
        return list(self._new_state(p))

    def _after_load(self):
        pass

    def __repr__(self):
        hp = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._hyper)
        return f"{type(self).__name__}({len(self.params)} parameters, {hp})"


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
        if momentum < 0 or weight_decay < 0 or not 0 <= dampening <= 1:
            raise ValueError(f"SGD: need momentum >= 0, weight_decay >= 0, 0 <= dampening <= 1 "
                             f"(got {momentum}, {weight_decay}, {dampening})")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum needs momentum > 0 and dampening = 0")
        super().__init__(params, lr=float(lr), momentum=float(momentum), nesterov=bool(nesterov),
                         weight_decay=float(weight_decay), dampening=float(dampening))

    def step(self):
        if self.momentum or self.weight_decay:
            return super().step()
        # plain SGD: the lean path (the MLP benchmark compares this with hand-written NumPy)
        self.step_count += 1
        lr = self.lr
        for p in self.params:
            g = p.grad
            if g is None:
                continue
            if type(g) is RowSparseGrad:
                g = _coalesce(g)
                p.data[g.indices] -= lr * g.values
            else:
                p.data -= lr * g

    def _new_state(self, p):
        return {"momentum": np.zeros_like(p.data)} if self.momentum else {}

    def _rule(self, w, g, st, new):
        if self.weight_decay:
            g = g + self.weight_decay * w
        mu = self.momentum
        if mu:
            b = st["momentum"]
            if new:
                b[...] = g
            else:
                b *= mu
                b += g if self.dampening == 0 else (1.0 - self.dampening) * g
            g = g + mu * b if self.nesterov else b
        w -= self.lr * g


class AdaGrad(Optimizer):
    """AdaGrad (Duchi et al. 2011).  Per parameter w with gradient g:

        g ← g + λ w                 (weight_decay λ, if λ ≠ 0)
        G ← G + g ⊙ g               (G starts at ``initial_accumulator``)
        w ← w − η g / (√G + ε)

    State: ``'sum'`` (G).  :meth:`reset_state` sets every G back to ``initial_accumulator`` --
    Stanford CoreNLP's classifiers reset the AdaGrad history at the start of every epoch.
    """

    def __init__(self, params, lr=0.01, eps=1e-8, initial_accumulator=0.0, weight_decay=0.0):
        if lr < 0 or eps <= 0 or initial_accumulator < 0 or weight_decay < 0:
            raise ValueError(f"AdaGrad: need lr >= 0, eps > 0, initial_accumulator >= 0, weight_decay >= 0 "
                             f"(got {lr}, {eps}, {initial_accumulator}, {weight_decay})")
        super().__init__(params, lr=float(lr), eps=float(eps), initial_accumulator=float(initial_accumulator),
                         weight_decay=float(weight_decay))

    def _new_state(self, p):
        return {"sum": np.full_like(p.data, self.initial_accumulator)}

    def _rule(self, w, g, st, new):
        if self.weight_decay:
            g = g + self.weight_decay * w
        G = st["sum"]
        G += g * g
        d = np.sqrt(G)
        d += self.eps
        w -= self.lr * (g / d)

    def reset_state(self):
        """Forget the squared-gradient history: every accumulator G back to initial_accumulator."""
        for st in self.state:
            if "sum" in st:
                st["sum"].fill(self.initial_accumulator)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with PyTorch's semantics.  At step t (the global step count), per
    parameter w with gradient g:

        g ← g + λ w                                   (weight_decay λ: L2 added to the gradient)
        m ← β₁ m + (1 − β₁) g
        v ← β₂ v + (1 − β₂) g ⊙ g
        w ← w − (η / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)

    i.e. w − η m̂ / (√v̂ + ε) with m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ).  State: ``'m'``, ``'v'``.
    For row-sparse gradients see the module docstring (lazy: untouched rows' m, v do not decay;
    t is global).
    """
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        b1, b2 = betas
        name = type(self).__name__
        if lr < 0 or eps <= 0 or weight_decay < 0 or not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"{name}: need lr >= 0, 0 <= betas < 1, eps > 0, weight_decay >= 0 "
                             f"(got lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay})")
        super().__init__(params, lr=float(lr), beta1=float(b1), beta2=float(b2), eps=float(eps),
                         weight_decay=float(weight_decay))

    @property
    def betas(self):
        return (self.beta1, self.beta2)

    def _begin_step(self):
        t = self.step_count
        self._bc1 = 1.0 - self.beta1 ** t
        self._sqrt_bc2 = math.sqrt(1.0 - self.beta2 ** t)

    def _new_state(self, p):
        return {"m": np.zeros_like(p.data), "v": np.zeros_like(p.data)}

    def _rule(self, w, g, st, new):
        lr, wd = self.lr, self.weight_decay
        if wd:
            if self._decoupled:
                w *= 1.0 - lr * wd
            else:
                g = g + wd * w
        m, v = st["m"], st["v"]
        m *= self.beta1
        m += (1.0 - self.beta1) * g
        v *= self.beta2
        v += (1.0 - self.beta2) * (g * g)
        d = np.sqrt(v)
        d /= self._sqrt_bc2
        d += self.eps
        u = m / d
        u *= lr / self._bc1
        w -= u


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), PyTorch's AdamW:

        w ← w (1 − η λ)             (decay applied to the weights, not added to the gradient)
        then the Adam update of :class:`Adam` with λ = 0.

    Default ``weight_decay = 0.01``.  With row-sparse gradients only touched rows decay.
    """
    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


# ------------------------------------------------------------------------------------------------
def clip_grad_norm(params, max_norm, error_if_nonfinite=False):
    """Scale all gradients together so that their global L2 norm is at most ``max_norm``:

        n = √(Σ_p ‖g_p‖²);   if n > max_norm:  g_p ← g_p · max_norm / (n + 1e-6)

    in place (dense arrays, or the values of row-sparse gradients, which are coalesced first so
    that repeated rows are summed before squaring).  Returns n, the norm *before* clipping (a
    float).  A non-finite n leaves the gradients unchanged (or raises with
    ``error_if_nonfinite=True``)."""
    if hasattr(params, "parameters") and callable(params.parameters):
        params = params.parameters()
    if isinstance(params, Tensor):
        params = [params]
    params = [p for p in params if p.grad is not None]
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


# ------------------------------------------------------------------------------------------------
class _Scheduler:
    """Sets ``optimizer.lr`` from the epoch count; call :meth:`step` once at the end of each epoch.
    The lr is computed in closed form from ``base_lr`` (the optimizer's lr at construction), so a
    restored scheduler reproduces it exactly."""
    _hyper = ()

    def __init__(self, optimizer):
        if not hasattr(optimizer, "lr"):
            raise TypeError(f"{type(self).__name__}: expected an optimizer with an 'lr' attribute")
        self.optimizer = optimizer
        self.base_lr = float(optimizer.lr)
        self.epoch = 0
        self.optimizer.lr = self.get_lr(0)

    def get_lr(self, epoch):  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def last_lr(self):
        return self.optimizer.lr

    def step(self):
        """End of an epoch: epoch += 1 and the optimizer's lr set for the next one."""
        self.epoch += 1
        self.optimizer.lr = self.get_lr(self.epoch)
        return self.optimizer.lr

    def state_dict(self):
        """JSON-serialisable: {'type', 'epoch', 'base_lr', hyperparameters...}."""
        return {"type": type(self).__name__, "epoch": self.epoch, "base_lr": self.base_lr,
                **{k: getattr(self, k) for k in self._hyper}}

    def load_state_dict(self, sd):
        name = type(self).__name__
        if sd.get("type", name) != name:
            raise ValueError(f"{name}.load_state_dict: state was saved by {sd.get('type')}")
        missing = [k for k in ("epoch", "base_lr", *self._hyper) if k not in sd]
        if missing:
            raise ValueError(f"{name}.load_state_dict: missing keys {missing}")
        self.epoch, self.base_lr = int(sd["epoch"]), float(sd["base_lr"])
        for k in self._hyper:
            setattr(self, k, type(getattr(self, k))(sd[k]))
        self.optimizer.lr = self.get_lr(self.epoch)

    def __repr__(self):
        hp = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._hyper)
        return f"{type(self).__name__}({hp}, epoch={self.epoch}, lr={self.optimizer.lr:.6g})"


class StepLR(_Scheduler):
    """lr(e) = base_lr · γ^⌊e / step_size⌋ for epoch e = 0, 1, ... (decay by γ every step_size epochs)."""
    _hyper = ("step_size", "gamma")

    def __init__(self, optimizer, step_size, gamma=0.1):
        if int(step_size) <= 0:
            raise ValueError(f"StepLR: step_size must be a positive number of epochs, got {step_size}")
        self.step_size, self.gamma = int(step_size), float(gamma)
        super().__init__(optimizer)

    def get_lr(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


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

    def get_lr(self, epoch):
        e = min(epoch, self.T_max)
        return self.eta_min + (self.base_lr - self.eta_min) * (1.0 + math.cos(math.pi * e / self.T_max)) / 2.0
