"""The global random generator and random tensors.

One ``np.random.Generator`` serves everything in chainrule that draws random numbers without being
given a generator or a seed: parameter initialisation (``nn.Linear(3, 2)``, ``nn.Embedding``, the
recurrent and attention layers, ``nn.init.*(rng=None)``), ``nn.Dropout`` and ``nn.RReLU`` built
without a seed, ``nn.MLP(seed=None)``, ``cr.rrelu(training=True)``, ``cr.rand/randn/randint`` and
``data.DataLoader(shuffle=True)`` without a seed.  ``cr.manual_seed(s)`` re-seeds it, so

>>> import chainrule as cr
>>> _ = cr.manual_seed(0); a = cr.nn.Linear(3, 2).weight.data.copy()
>>> _ = cr.manual_seed(0); b = cr.nn.Linear(3, 2).weight.data.copy()
>>> bool((a == b).all())
True

At import the generator is seeded from OS entropy (every run differs until ``manual_seed``).
``np.random.seed`` does not affect it (NumPy's legacy global state is a different generator).
Anything given an explicit ``rng``/``seed`` uses that instead and does not touch the global one.
"""
from __future__ import annotations

import numpy as np

from .creation import _shape
from .tensor import Tensor, get_default_dtype

__all__ = ["manual_seed", "seed", "default_generator", "get_rng_state", "set_rng_state", "rand", "randn",
           "randint", "randperm", "rand_like", "randn_like", "randint_like"]

_GEN = [np.random.default_rng()]


def manual_seed(s):
    """Re-seed the global generator with the integer ``s`` (in place: layers built earlier that draw
    from it, such as ``nn.Dropout()``, follow the new seed, as in PyTorch); returns the generator."""
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
        raise ValueError(f"manual_seed: expected a non-negative integer seed, got {s!r}")
    _GEN[0].bit_generator.state = np.random.default_rng(int(s)).bit_generator.state
    return _GEN[0]


def seed():
    """Re-seed the global generator from OS entropy; returns the seed used (an int)."""
    s = int(np.random.SeedSequence().entropy % (2 ** 63))
    manual_seed(s)
    return s


def default_generator():
    """The global ``np.random.Generator`` (always the same object; :func:`manual_seed` re-seeds it)."""
    return _GEN[0]


def get_rng_state():
    """The global generator's state (a JSON-serialisable dict)."""
    return _GEN[0].bit_generator.state


def set_rng_state(state):
    """Restore a state returned by :func:`get_rng_state` (in place, as :func:`manual_seed`)."""
    _GEN[0].bit_generator.state = state


def _gen(generator):
    return _GEN[0] if generator is None else generator


def _float(dtype, where):
    dt = np.dtype(dtype) if dtype is not None else get_default_dtype()
    if dt.kind != "f":
        raise TypeError(f"{where}: dtype must be floating, got {dt}")
    return dt


def rand(*size, dtype=None, requires_grad=False, generator=None):
    """Uniform samples on [0, 1): ``cr.rand(2, 3)`` or ``cr.rand((2, 3))``."""
    dt = _float(dtype, "rand")
    shape = _shape(size, "rand")
    return Tensor(_gen(generator).random(shape).astype(dt, copy=False), requires_grad=requires_grad)


def randn(*size, dtype=None, requires_grad=False, generator=None):
    """Standard normal samples: ``cr.randn(2, 3)`` or ``cr.randn((2, 3))``."""
    dt = _float(dtype, "randn")
    shape = _shape(size, "randn")
    return Tensor(_gen(generator).standard_normal(shape).astype(dt, copy=False), requires_grad=requires_grad)


def randint(low, high=None, size=(), dtype=np.int64, generator=None):
    """Integers uniform on [low, high) (``randint(high, size)`` means low = 0), as PyTorch's
    ``torch.randint(low, high, size)``; ``size`` a tuple."""
    if high is None:
        low, high = 0, low
    if isinstance(size, int):
        size = (size,)
    if high <= low:
        raise ValueError(f"randint: need low < high, got low={low}, high={high}")
    shape = _shape(tuple(size), "randint")
    return Tensor(_gen(generator).integers(low, high, size=shape).astype(dtype, copy=False))


def randperm(n, generator=None):
    """A random permutation of 0 … n−1 (int64)."""
    return Tensor(_gen(generator).permutation(int(n)).astype(np.int64))


def _like(t):
    return t.data if isinstance(t, Tensor) else np.asarray(t)


def rand_like(t, dtype=None, requires_grad=False, generator=None):
    a = _like(t)
    return rand(a.shape, dtype=dtype or (a.dtype if a.dtype.kind == "f" else None), requires_grad=requires_grad,
                generator=generator)


def randn_like(t, dtype=None, requires_grad=False, generator=None):
    a = _like(t)
    return randn(a.shape, dtype=dtype or (a.dtype if a.dtype.kind == "f" else None), requires_grad=requires_grad,
                 generator=generator)


def randint_like(t, low, high=None, dtype=None, generator=None):
    a = _like(t)
    return randint(low, high, a.shape, dtype=dtype or a.dtype, generator=generator)
