"""Weight initialisers.

Every initialiser takes a shape (or a Tensor/Parameter, filled in place) and an explicit random
source ``rng``: a ``np.random.Generator``, an int seed, a ``np.random.SeedSequence``, or None (chainrule's
global generator: reproducible after ``cr.manual_seed(s)``).

**Fans and layout.**  chainrule's ``Linear`` stores W with shape (in_features, out_features), so that
the batched forward is ``x @ W`` (the transpose of the seeds' W in z = W x + b, and of PyTorch's
(out, in)).  Accordingly, for a 2-D shape (a, b): fan_in = a, fan_out = b.  For a 1-D shape (n,):
fan_in = fan_out = n.  For an N-D shape (…, b): fan_in = product of all but the last axis,
fan_out = the last axis.

Formulas (n_in = fan_in, n_out = fan_out):

* ``xavier_uniform``  (Glorot & Bengio 2010):  W ~ U(−a, a),   a = gain·√(6 / (n_in + n_out))
* ``xavier_normal``:                           W ~ N(0, σ²),   σ = gain·√(2 / (n_in + n_out))
* ``he_uniform``      (He et al. 2015):         W ~ U(−a, a),   a = √(6 / ((1 + s²) n_in))
* ``he_normal`` (= kaiming):                    W ~ N(0, σ²),   σ = √(2 / ((1 + s²) n_in))
  (s = the negative slope of a leaky ReLU; s = 0 for ReLU)
* ``normal(std)``: N(0, std²);  ``uniform(a)``: U(−a, a);  ``zeros``; ``ones``.

Both Xavier forms give Var(W) = 2 gain² / (n_in + n_out); both He forms give Var(W) = 2 / ((1+s²) n_in).

>>> import numpy as np
>>> from chainrule.nn import init
>>> W = init.xavier_uniform((784, 256), rng=0)
>>> W.shape, W.dtype
((784, 256), dtype('float32'))
"""
from __future__ import annotations

import math

import numpy as np

from .. import random as _random
from ..tensor import Tensor, get_default_dtype

__all__ = [
    "as_generator", "fans", "xavier_uniform", "xavier_normal", "he_uniform", "he_normal",
    "kaiming_uniform", "kaiming_normal", "normal", "uniform", "zeros", "ones", "get", "INITIALIZERS",
]


def as_generator(rng=None):
    """A ``np.random.Generator`` from a Generator (returned as is), an int seed, a SeedSequence, or
    None: chainrule's global generator (:func:`chainrule.manual_seed` makes it reproducible)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return _random.default_generator()
    if isinstance(rng, (int, np.integer, np.random.SeedSequence)):
        return np.random.default_rng(rng)
    raise TypeError(f"expected a np.random.Generator, an int seed or None for rng, got {type(rng).__name__}")


def fans(shape):
    """(fan_in, fan_out) of a weight of ``shape`` in chainrule's (in, out) layout (see module doc)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    return int(np.prod(shape[:-1])), shape[-1]


def _target(shape_or_tensor, dtype):
    """(shape, dtype, tensor-to-fill or None)."""
    if isinstance(shape_or_tensor, Tensor):
        return shape_or_tensor.shape, shape_or_tensor.dtype, shape_or_tensor
    if isinstance(shape_or_tensor, (int, np.integer)):
        shape = (int(shape_or_tensor),)
    else:
        shape = tuple(int(s) for s in shape_or_tensor)
    dt = np.dtype(dtype) if dtype is not None else get_default_dtype()
    if dt.kind != "f":
        raise TypeError(f"init: weights must have a floating dtype, got {dt}")
    return shape, dt, None


def _finish(arr, dtype, t):
    arr = np.asarray(arr, dtype=dtype)
    if t is not None:
        t.data[...] = arr
        return t
    return arr


_CHUNK = 1 << 16


def _draw(rng, method, params, shape, dt, t):
    """``rng.<method>(*params)`` over ``shape`` cast to ``dt`` (or written into Tensor ``t``), drawn
    in float64 chunks of 65,536 values written straight into the result: the same numbers as one
    float64 draw cast afterwards (the generator's stream is consumed in the same order), without
    the float64 copy of the whole table (``Embedding(100000, 50)`` in float32: 20 MB, not 60)."""
    gen = as_generator(rng)
    out = t.data if t is not None else np.empty(shape, dtype=dt)
    flat = out.reshape(-1) if out.flags.c_contiguous else None
    if flat is None:                                  # a strided tensor to fill: draw it whole
        out[...] = getattr(gen, method)(*params, size=out.shape)
        return t
    draw = getattr(gen, method)
    for lo in range(0, flat.size, _CHUNK):
        hi = min(lo + _CHUNK, flat.size)
        flat[lo:hi] = draw(*params, size=hi - lo)
    return t if t is not None else out


def xavier_uniform(shape, rng=None, gain=1.0, dtype=None):
    """W ~ U(−a, a) with a = gain·√(6/(fan_in + fan_out)) (Glorot uniform).  Returns a new array of
    ``shape`` (default dtype unless ``dtype``), or fills a Tensor/Parameter in place and returns it."""
    shape, dt, t = _target(shape, dtype)
    fi, fo = fans(shape)
    a = gain * math.sqrt(6.0 / (fi + fo))
    return _draw(rng, "uniform", (-a, a), shape, dt, t)


def xavier_normal(shape, rng=None, gain=1.0, dtype=None):
    """W ~ N(0, σ²) with σ = gain·√(2/(fan_in + fan_out)) (Glorot normal)."""
    shape, dt, t = _target(shape, dtype)
    fi, fo = fans(shape)
    s = gain * math.sqrt(2.0 / (fi + fo))
    return _draw(rng, "normal", (0.0, s), shape, dt, t)


def he_uniform(shape, rng=None, negative_slope=0.0, dtype=None):
    """W ~ U(−a, a) with a = √(6/((1 + s²)·fan_in)) (He/Kaiming uniform; s the leaky-ReLU slope)."""
    shape, dt, t = _target(shape, dtype)
    fi, _ = fans(shape)
    a = math.sqrt(6.0 / ((1.0 + negative_slope ** 2) * fi))
    return _draw(rng, "uniform", (-a, a), shape, dt, t)


def he_normal(shape, rng=None, negative_slope=0.0, dtype=None):
    """W ~ N(0, σ²) with σ = √(2/((1 + s²)·fan_in)) (He/Kaiming normal; s the leaky-ReLU slope)."""
    shape, dt, t = _target(shape, dtype)
    fi, _ = fans(shape)
    s = math.sqrt(2.0 / ((1.0 + negative_slope ** 2) * fi))
    return _draw(rng, "normal", (0.0, s), shape, dt, t)


kaiming_uniform = he_uniform
kaiming_normal = he_normal


def normal(shape, rng=None, std=1.0, dtype=None):
    """W ~ N(0, std²) (the default for Embedding, as in PyTorch)."""
    shape, dt, t = _target(shape, dtype)
    return _draw(rng, "normal", (0.0, std), shape, dt, t)


def uniform(shape, rng=None, a=0.1, dtype=None):
    """W ~ U(−a, a)."""
    shape, dt, t = _target(shape, dtype)
    return _draw(rng, "uniform", (-a, a), shape, dt, t)


def zeros(shape, rng=None, dtype=None):
    """W = 0 (``rng`` is accepted and ignored, so every initialiser has the same signature)."""
    shape, dt, t = _target(shape, dtype)
    return _finish(np.zeros(shape), dt, t)


def ones(shape, rng=None, dtype=None):
    """W = 1."""
    shape, dt, t = _target(shape, dtype)
    return _finish(np.ones(shape), dt, t)


INITIALIZERS = {
    "xavier": xavier_uniform, "glorot": xavier_uniform, "xavier_uniform": xavier_uniform,
    "glorot_uniform": xavier_uniform, "xavier_normal": xavier_normal, "glorot_normal": xavier_normal,
    "he": he_normal, "kaiming": he_normal, "he_normal": he_normal, "kaiming_normal": he_normal,
    "he_uniform": he_uniform, "kaiming_uniform": he_uniform,
    "normal": normal, "uniform": uniform, "zeros": zeros, "ones": ones,
}


def get(init, where="init"):
    """The initialiser for a name (``'xavier'`` = xavier_uniform, ``'he'`` = he_normal, ... see
    ``INITIALIZERS``) or a callable ``init(shape, rng=..., dtype=...)`` returned as is."""
    if callable(init):
        return init
    try:
        return INITIALIZERS[str(init).lower()]
    except KeyError:
        raise ValueError(f"{where}: unknown init {init!r}; choose one of {sorted(INITIALIZERS)} "
                         f"or pass a callable init(shape, rng=..., dtype=...)") from None
