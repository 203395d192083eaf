"""Finite-difference checks of gradients: of the engine's ops and modules (:func:`gradcheck`) and of
a hand-derived gradient function (:func:`check_gradient`).

Numerical derivatives are central differences in float64,

    ∂f/∂x_i ≈ (f(x + ε e_i) − f(x − ε e_i)) / 2ε,

whose error is O(ε²) for smooth f.  An element where the one-sided differences
(f(x+εe_i) − f(x))/ε and (f(x) − f(x−εe_i))/ε disagree sits at a kink (ReLU at 0, a max tie):
there any value between the two one-sided slopes is a valid subgradient, and such points are
reported as non-differentiable rather than as wrong gradients.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from .autograd import no_grad
from .transforms import gradients
from .tensor import Tensor

__all__ = ["gradcheck", "gradgradcheck", "check_gradient", "gradcheck_params", "GradcheckError",
           "GradcheckReport"]


class GradcheckError(AssertionError):
    """Raised when an analytic gradient disagrees with finite differences; the message has, per
    input, the max absolute and relative error and the worst element with both values."""

    def __init__(self, message, report=None):
        super().__init__(message)
        self.report = report


@dataclass
class Comparison:
    """One input (or parameter) compared: analytic vs. reference."""
    name: str
    reference: str
    max_abs: float
    max_rel: float
    worst_index: tuple
    analytic_value: float
    reference_value: float
    ok: bool
    kinks: list = field(default_factory=list)

    def line(self):
        s = (f"{self.name} vs {self.reference}: max abs err {self.max_abs:.3e}, max rel err {self.max_rel:.3e}, "
             f"worst at index {self.worst_index}: analytic {self.analytic_value:.10g}, "
             f"{self.reference} {self.reference_value:.10g}")
        if self.kinks:
            s += f"; {len(self.kinks)} non-differentiable point(s) skipped, e.g. index {self.kinks[0]}"
        return s + ("" if self.ok else "   <-- MISMATCH")


@dataclass
class GradcheckReport:
    comparisons: list

    @property
    def ok(self):
        return all(c.ok for c in self.comparisons)

    def __str__(self):
        return "\n".join(c.line() for c in self.comparisons)

    def max_rel(self, name=None):
        return max(c.max_rel for c in self.comparisons if name is None or c.name == name)


def _compare(name, reference, analytic, numeric, atol, rtol, kinks=()):
    a = np.asarray(analytic, dtype=np.float64)
    b = np.asarray(numeric, dtype=np.float64)
    if a.shape != b.shape:
        raise GradcheckError(f"{name}: analytic gradient has shape {a.shape}, expected {b.shape}")
    # np.asarray: arithmetic on 0-d arrays gives NumPy scalars, which cannot be assigned into
    diff = np.asarray(np.abs(a - b))
    rel = np.asarray(diff / np.maximum(np.abs(a) + np.abs(b), 1e-12) * 2) if a.size else diff
    bad = np.asarray(diff > atol + rtol * np.abs(b))
    kink_set = set(kinks)
    if kink_set:                                  # also for 0-d inputs (the kink's index is ())
        for k in kink_set:
            bad[k] = False
            rel[k] = 0.0
            diff[k] = 0.0
    if a.size == 0:
        return Comparison(name, reference, 0.0, 0.0, (), 0.0, 0.0, True, sorted(kink_set))
    worst = np.unravel_index(int(np.argmax(diff + rel * (diff > atol))), a.shape) if a.ndim else ()
    return Comparison(name, reference, float(diff.max()), float(rel.max()), tuple(int(i) for i in worst),
                      float(a[worst]), float(b[worst]), not bool(bad.any()), sorted(kink_set))


def _plus_minus(fun, x, i, eps):
    """``(f(x + eps·e_i), f(x − eps·e_i))``, perturbing ``x[i]`` in place and restoring it: the one
    central-difference step of every loop here."""
    old = x[i]
    x[i] = old + eps
    fp = fun()
    x[i] = old - eps
    fm = fun()
    x[i] = old
    return fp, fm


def _numeric(fun, x, eps, kink_tol):
    """Central differences of scalar ``fun`` w.r.t. every element of float64 array ``x`` (modified
    in place and restored).  Also returns the indices that look like kinks."""
    g = np.zeros_like(x)
    kinks = []
    f0 = None
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    for _ in it:
        i = it.multi_index
        fp, fm = _plus_minus(fun, x, i, eps)
        g[i] = (fp - fm) / (2 * eps)
        # one-sided slopes: disagreement far beyond O(eps) curvature means a kink.  The floor is
        # small (1e-3, i.e. a jump of 1e-5 at the default kink_tol): a kink whose slopes are small
        # (a tie weighted by a small projection coefficient) is still a kink, and a jump below the
        # floor cannot make central differences disagree with a valid subgradient beyond atol.
        if f0 is None:
            f0 = fun()
        right, left = (fp - f0) / eps, (f0 - fm) / eps
        if abs(right - left) > kink_tol * max(1e-3, abs(right) + abs(left)):
            kinks.append((i, min(left, right), max(left, right)))
    return g, kinks


def _as64(x, what):
    if isinstance(x, Tensor):
        arr, rg, name = x.data, x.requires_grad, x.name
    else:
        arr, rg, name = np.asarray(x), False, None
    if arr.dtype.kind == "f" and arr.dtype != np.float64:
        warnings.warn(f"{what}: a {arr.dtype} input is checked in float64 (finite differences in single "
                      f"precision are meaningless)", stacklevel=3)
    if arr.dtype.kind == "f":
        arr = arr.astype(np.float64)
    return arr, rg, name


def gradcheck(f, *inputs, eps=1e-6, atol=1e-5, rtol=1e-3, mode="full", n_directions=8, seed=0,
              kink_tol=1e-2, raise_on_error=True, order=1):
    """Compare the engine's gradients of ``f(*inputs)`` with central finite differences, in float64.

    ``f`` returns a tensor; if it is not a scalar, the check is on L = Σ r ⊙ f(...) for a fixed
    random r (which checks every row of the Jacobian at once).  Every input that is a Tensor with
    ``requires_grad`` is checked.  ``mode='full'`` perturbs each element; ``mode='random'`` compares
    ``n_directions`` random directional derivatives ∇L·v with (L(x+εv) − L(x−εv))/2ε (for large
    inputs).  Kinks (ReLU at 0, max ties) are reported, not failed, when the engine's value is a
    valid subgradient (between the one-sided slopes).

    ``order=2`` checks second derivatives instead (see :func:`gradgradcheck`).

    Returns True, or raises :class:`GradcheckError` (or returns False with ``raise_on_error=False``).

    >>> import chainrule as cr, numpy as np
    >>> x = cr.tensor(np.random.randn(3, 4), requires_grad=True)
    >>> cr.gradcheck(lambda x: (x.tanh() * x).sum(), x)
    True
    >>> cr.gradcheck(lambda x: (x.tanh() * x).sum(), x, order=2)
    True
    """
    if order == 2:
        return gradgradcheck(f, *inputs, eps=eps, atol=atol, rtol=rtol, mode=mode, n_directions=n_directions,
                             seed=seed, kink_tol=kink_tol, raise_on_error=raise_on_error)
    if order != 1:
        raise ValueError(f"gradcheck: order must be 1 or 2, got {order!r}")
    arrs, flags, names = [], [], []
    for k, x in enumerate(inputs):
        a, rg, nm = _as64(x, "gradcheck")
        arrs.append(a)
        flags.append(rg)
        names.append(nm or f"input {k}")
    if not any(flags):
        raise ValueError("gradcheck: no input requires grad; pass tensors made with requires_grad=True")
    leaves = [Tensor._wrap(a, requires_grad=rg) if a.dtype.kind == "f" else Tensor._wrap(a)
              for a, rg in zip(arrs, flags)]
    out = f(*leaves)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: f must return a Tensor, got {type(out).__name__}")
    rng = np.random.default_rng(seed)
    r = None if out.data.size == 1 else rng.standard_normal(out.shape)

    def scalar(o):
        d = np.asarray(o.data, dtype=np.float64)
        return float(d.sum()) if r is None else float(np.sum(d * r))

    wanted = [t for t, rg in zip(leaves, flags) if rg]
    if not out.requires_grad:
        analytic = [np.zeros_like(t.data) for t in wanted]
    else:
        seedg = None if r is None else r.astype(out.dtype)
        analytic = gradients(out, wanted, grad_output=seedg)

    def evaluate():
        with no_grad():
            return scalar(f(*leaves))

    comps = []
    wi = 0
    for k, (t, rg) in enumerate(zip(leaves, flags)):
        if not rg:
            continue
        an = analytic[wi]
        wi += 1
        if mode == "full":
            num, kinks = _numeric(evaluate, t.data, eps, kink_tol)
            ok_kinks = [i for i, lo, hi in kinks if lo - atol <= an[i] <= hi + atol]
            comps.append(_compare(names[k], "finite differences", an, num, atol, rtol, ok_kinks))
        elif mode == "random":
            dirs = rng.standard_normal((n_directions,) + t.shape)
            an_d, num_d = [], []
            base = t.data.copy()
            for v in dirs:
                t.data[...] = base + eps * v
                fp = evaluate()
                t.data[...] = base - eps * v
                fm = evaluate()
                t.data[...] = base
                an_d.append(float(np.sum(an * v)))
                num_d.append((fp - fm) / (2 * eps))
            comps.append(_compare(names[k] + " (directional)", "finite differences",
                                  np.array(an_d), np.array(num_d), atol, rtol))
        else:
            raise ValueError(f"gradcheck: mode must be 'full' or 'random', got {mode!r}")
    report = GradcheckReport(comps)
    if not report.ok:
        if raise_on_error:
            raise GradcheckError("gradcheck failed:\n" + str(report), report)
        return False
    return True


def gradgradcheck(f, *inputs, eps=1e-6, atol=1e-5, rtol=1e-3, mode="full", n_directions=8, seed=0,
                  kink_tol=1e-2, raise_on_error=True):
    """Check second derivatives: the engine's gradient of S(x) = Σᵢ ⟨∇ᵢL(x), vᵢ⟩ (computed with
    ``create_graph``: the backward pass differentiated again) against central finite differences of
    S -- that is, finite differences of the engine's own analytic gradient -- in float64.  L is f's
    output (or Σ r ⊙ f(...) for a fixed random r when f is not scalar), the vᵢ fixed random
    directions.  Same arguments, modes and report format as :func:`gradcheck`.

    >>> import chainrule as cr, numpy as np
    >>> x = cr.tensor(np.random.randn(4), requires_grad=True, dtype="float64")
    >>> cr.gradgradcheck(lambda x: (cr.sigmoid(x) * x).sum(), x)
    True
    """
    from .autograd import enable_grad
    rng = np.random.default_rng(seed + 1)
    state = {}

    def second(*xs):
        with enable_grad():
            out = f(*xs)
            wanted = [x for x in xs if isinstance(x, Tensor) and x.requires_grad]
            if "r" not in state:
                state["r"] = None if out.data.size == 1 else rng.standard_normal(out.shape).astype(out.dtype)
                state["v"] = [rng.standard_normal(x.shape) for x in wanted]
            if not out.requires_grad:
                return Tensor._wrap(np.zeros((), dtype=np.float64))
            r = state["r"]
            gs = gradients(out, wanted, grad_output=r, create_graph=True)
            s = None
            for g, v in zip(gs, state["v"]):
                term = (g * v.astype(g.dtype)).sum()
                s = term if s is None else s + term
            return s
    return gradcheck(second, *inputs, eps=eps, atol=atol, rtol=rtol, mode=mode, n_directions=n_directions,
                     seed=seed, kink_tol=kink_tol, raise_on_error=raise_on_error)


def check_gradient(loss_fn, grad_fn, params, eps=1e-6, atol=1e-6, rtol=1e-4, raise_on_error=True):
    """Check a hand-derived gradient function -- the student's backprop -- against central finite
    differences and, when ``loss_fn`` is written with chainrule ops, against the engine.

    ``params`` is a dict name -> array (or a list of arrays); ``loss_fn(params)`` returns the scalar
    loss (a float or a scalar Tensor); ``grad_fn(params)`` returns a dict (or list) of gradients of
    the same shapes.  Returns a :class:`GradcheckReport`; raises :class:`GradcheckError` on mismatch.
    """
    is_dict = isinstance(params, dict)
    keys = list(params) if is_dict else list(range(len(params)))
    p64 = {k: _as64(params[k], "check_gradient")[0].copy() for k in keys}

    def pack(d):
        return dict(d) if is_dict else [d[k] for k in keys]

    def value(v):
        return float(v.item() if isinstance(v, Tensor) else np.asarray(v, dtype=np.float64).sum())

    def evaluate():
        with no_grad():
            return value(loss_fn(pack(p64)))

    hand = grad_fn(pack({k: v.copy() for k, v in p64.items()}))
    if hand is None:
        raise TypeError("check_gradient: grad_fn returned None")
    hand = {k: np.asarray(hand[k], dtype=np.float64) for k in keys}

    engine = None
    leaves = {k: Tensor._wrap(p64[k].copy(), requires_grad=True) for k in keys}
    try:
        out = loss_fn(pack(leaves))
        if isinstance(out, Tensor) and out.requires_grad:
            gs = gradients(out, [leaves[k] for k in keys])
            engine = dict(zip(keys, gs))
    except Exception:      # loss_fn is plain NumPy: the engine column is left out
        engine = None

    comps = []
    for k in keys:
        if hand[k].shape != p64[k].shape:
            raise GradcheckError(f"check_gradient: gradient for {k!r} has shape {hand[k].shape}, "
                                 f"parameter has shape {p64[k].shape}")
        num, kinks = _numeric(evaluate, p64[k], eps, 1e-2)
        ok_kinks = [i for i, lo, hi in kinks if lo - atol <= hand[k][i] <= hi + atol]
        comps.append(_compare(str(k), "finite differences", hand[k], num, atol, rtol, ok_kinks))
        if engine is not None:
            comps.append(_compare(str(k), "engine", hand[k], engine[k], atol, rtol))
    report = GradcheckReport(comps)
    if not report.ok and raise_on_error:
        raise GradcheckError("check_gradient: the hand-derived gradient disagrees:\n" + str(report), report)
    return report


def gradcheck_params(loss_fn, named_params, eps=1e-6, atol=1e-6, rtol=1e-4, max_elements=None, seed=0):
    """Check a model's parameter gradients: ``loss_fn()`` builds the scalar loss from the current
    parameter values (float64 parameters, please).  Engine gradients from one backward pass are
    compared with central differences of ``loss_fn`` on each parameter element (or on
    ``max_elements`` randomly chosen elements per parameter, for big models).
    Returns a :class:`GradcheckReport` (never raises; check ``report.ok``)."""
    named_params = list(named_params)
    for _, p in named_params:
        p.grad = None
    loss = loss_fn()
    loss.backward()
    analytic = {n: np.asarray(p.grad, dtype=np.float64) if p.grad is not None else np.zeros(p.shape)
                for n, p in named_params}
    rng = np.random.default_rng(seed)

    def evaluate():
        with no_grad():
            return float(loss_fn().item())

    comps = []
    for name, p in named_params:
        x = p.data
        if max_elements is None or x.size <= max_elements:
            num, kinks = _numeric(evaluate, x, eps, 1e-2)
            ok_k = [i for i, lo, hi in kinks if lo - atol <= analytic[name][i] <= hi + atol]
            comps.append(_compare(name, "finite differences", analytic[name], num, atol, rtol, ok_k))
        else:
            flat = rng.choice(x.size, size=max_elements, replace=False)
            idxs = [np.unravel_index(int(f), x.shape) for f in flat]
            an, nu = [], []
            for i in idxs:
                fp, fm = _plus_minus(evaluate, x, i, eps)
                an.append(analytic[name][i])
                nu.append((fp - fm) / (2 * eps))
            comps.append(_compare(f"{name} ({max_elements} sampled)", "finite differences",
                                  np.array(an), np.array(nu), atol, rtol))
    for _, p in named_params:
        p.grad = None
    return GradcheckReport(comps)
