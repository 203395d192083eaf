"""Tensor creation as in NumPy/PyTorch: ``zeros, ones, full, empty, eye, arange, linspace`` and the
``*_like`` forms.

Floating results get the default dtype (float32, :func:`cr.set_default_dtype`) unless ``dtype``
is given; ``arange`` of integers gives int64 (as NumPy and PyTorch).  Shapes may be given as
several ints or one tuple: ``cr.zeros(2, 3) == cr.zeros((2, 3))``.  ``requires_grad=True`` makes a
leaf that requires gradients (floating dtypes only).  Every result owns fresh memory (``empty``
is zero-filled: no uninitialised memory leaks out).
"""
from __future__ import annotations

import numpy as np

from .tensor import Tensor, get_default_dtype

__all__ = ["zeros", "ones", "full", "empty", "eye", "arange", "linspace", "zeros_like", "ones_like",
           "full_like", "empty_like"]


def _shape(size, where):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    try:
        shape = tuple(int(s) for s in size)
    except (TypeError, ValueError):
        raise TypeError(f"{where}: the shape must be integers, got {size!r}") from None
    if any(s < 0 for s in shape):
        raise ValueError(f"{where}: negative dimension in shape {shape}")
    return shape


def _dt(dtype):
    return np.dtype(dtype) if dtype is not None else get_default_dtype()


def zeros(*size, dtype=None, requires_grad=False):
    """A tensor of zeros: ``cr.zeros(2, 3)``."""
    return Tensor(np.zeros(_shape(size, "zeros"), _dt(dtype)), requires_grad=requires_grad)


def ones(*size, dtype=None, requires_grad=False):
    """A tensor of ones: ``cr.ones(2, 3)``."""
    return Tensor(np.ones(_shape(size, "ones"), _dt(dtype)), requires_grad=requires_grad)


def empty(*size, dtype=None, requires_grad=False):
    """A new tensor of the shape (zero-filled here; PyTorch leaves it uninitialised)."""
    return Tensor(np.zeros(_shape(size, "empty"), _dt(dtype)), requires_grad=requires_grad)


def full(size, fill_value, dtype=None, requires_grad=False):
    """A tensor filled with ``fill_value``; the dtype follows the value (a float → the default
    float dtype, an int → int64, a bool → bool) unless given."""
    shape = _shape((size,) if isinstance(size, int) else (tuple(size),), "full")
    if dtype is None:
        dtype = get_default_dtype() if isinstance(fill_value, float) else np.asarray(fill_value).dtype
    return Tensor(np.full(shape, fill_value, dtype=dtype), requires_grad=requires_grad)


def eye(n, m=None, dtype=None, requires_grad=False):
    """The n × m identity (m = n by default)."""
    return Tensor(np.eye(int(n), None if m is None else int(m), dtype=_dt(dtype)), requires_grad=requires_grad)


def arange(start, end=None, step=1, dtype=None, requires_grad=False):
    """``arange(end)`` or ``arange(start, end, step)``: start, start + step, … < end.  Integer
    arguments give int64, any float argument the default float dtype."""
    if end is None:
        start, end = 0, start
    if dtype is None:
        is_int = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (start, end, step))
        dtype = np.int64 if is_int else get_default_dtype()
    if step == 0:
        raise ValueError("arange: step must not be zero")
    return Tensor(np.arange(start, end, step).astype(dtype), requires_grad=requires_grad)


def linspace(start, end, steps, dtype=None, requires_grad=False):
    """``steps`` evenly spaced values from start to end inclusive (PyTorch's argument order)."""
    if int(steps) < 0:
        raise ValueError(f"linspace: steps must be >= 0, got {steps}")
    return Tensor(np.linspace(start, end, int(steps)).astype(_dt(dtype)), requires_grad=requires_grad)


def _like(t, dtype):
    a = t.data if isinstance(t, Tensor) else np.asarray(t)
    return a.shape, (np.dtype(dtype) if dtype is not None else a.dtype)


def zeros_like(t, dtype=None, requires_grad=False):
    shape, dt = _like(t, dtype)
    return Tensor(np.zeros(shape, dt), requires_grad=requires_grad)


def ones_like(t, dtype=None, requires_grad=False):
    shape, dt = _like(t, dtype)
    return Tensor(np.ones(shape, dt), requires_grad=requires_grad)


def empty_like(t, dtype=None, requires_grad=False):
    return zeros_like(t, dtype, requires_grad)


def full_like(t, fill_value, dtype=None, requires_grad=False):
    shape, dt = _like(t, dtype)
    return Tensor(np.full(shape, fill_value, dt), requires_grad=requires_grad)
