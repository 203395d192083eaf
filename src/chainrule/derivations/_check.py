r"""Central finite differences and a relative-error measure, in plain NumPy.

This module exists so that the derivations can be checked against nothing but
their own loss functions: it imports nothing from chainrule's engine (the engine
has its own ``chainrule.gradcheck``; this is the independent witness's copy).

The finite difference is the central one,

$$\frac{\partial f}{\partial x_j} \approx \frac{f(x + \epsilon e_j) - f(x - \epsilon e_j)}{2\epsilon},$$

with the step ``eps = 6e-6`` by default: about the cube root of the machine
epsilon, the step that balances the truncation error (``eps**2 * |f'''| / 6``)
against the round-off (``ulp(f) / eps``), both near ``1e-11`` for a loss of
order one.

The error between an analytic gradient ``a`` and a numeric one ``b`` (one
parameter array at a time) is measured relative to the array's scale:

$$\operatorname{rel}(a, b) = \frac{\max_j |a_j - b_j|}{\max(\text{floor},\ \max_j |a_j| + \max_j |b_j|)}.$$

Why not divide entry by entry? An entry whose true value is ``1e-6`` carries the
same absolute finite-difference noise (about ``1e-11``) as every other, so its
element-wise ratio is about ``1e-5`` whatever the analytic formula: no
element-wise test at ``1e-7`` can pass on real networks. The measure above is
still strict: at a tolerance of ``1e-7`` it rejects any entry, small or large,
that is off by more than ``1e-7`` times the largest gradient entry, while a slip
in a formula typically makes an error of order one.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["numerical_gradient", "rel_error"]


def numerical_gradient(f: Callable[[], float], x: np.ndarray, eps: float = 6e-6) -> np.ndarray:
    """Central finite differences of the scalar ``f()`` with respect to the array ``x``.

    ``x`` is perturbed **in place** (one entry at a time, restored afterwards), so
    ``f`` must read the current contents of ``x``: pass a closure over the very
    array that the loss uses (for example ``params["W"]``).

    Args:
        f: a function of no arguments returning a Python float or 0-d array.
        x: a contiguous float64 array (any shape), modified temporarily.
        eps: the step (see the module docstring for the default ``6e-6``).

    Returns:
        An array shaped like ``x``.

    >>> x = np.array([1.0, 2.0])
    >>> g = numerical_gradient(lambda: float(np.sum(x ** 3)), x)
    >>> bool(np.allclose(g, 3 * x ** 2))
    True
    """
    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        raise TypeError(f"numerical_gradient needs a float64 ndarray, got {type(x).__name__} "
                        f"{getattr(x, 'dtype', '')}")
    if not x.flags.c_contiguous:
        raise ValueError("numerical_gradient needs a C-contiguous array (it is perturbed in place)")
    g = np.zeros_like(x)
    flat = x.reshape(-1)  # a view, since x is contiguous
    gflat = g.reshape(-1)
    for j in range(flat.size):
        old = flat[j]
        flat[j] = old + eps
        fp = float(f())
        flat[j] = old - eps
        fm = float(f())
        flat[j] = old
        gflat[j] = (fp - fm) / (2.0 * eps)
    return g


def rel_error(a, b, floor: float = 1e-8) -> float:
    """``max|a - b| / max(floor, max|a| + max|b|)``: the largest deviation relative to the array's scale.

    ``a`` and ``b`` must have the same shape (a transposed gradient is an error,
    not something to be broadcast away).

    >>> print(f"{rel_error(np.array([1.0, 3.0]), np.array([1.0, 3.0 + 6e-9])):.1e}")
    1.0e-09
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    den = max(floor, float(np.max(np.abs(a))) + float(np.max(np.abs(b))))
    return float(np.max(np.abs(a - b))) / den
