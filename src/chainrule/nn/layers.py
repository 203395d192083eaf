"""Layers: Linear, Embedding, the activations, Dropout, and the MLP builder.

Every forward is a composition of engine ops (:mod:`chainrule.ops`); gradients come from the
engine's rule table, so no layer has backward code of its own.
"""
from __future__ import annotations

import numpy as np

from ..ops import functional as F
from ..ops.fused import linear as _linear
from ..tensor import Tensor, get_default_dtype
from . import init as _init
from .module import Module, Parameter, Sequential

__all__ = [
    "Linear", "Embedding", "Identity", "Flatten", "Sigmoid", "Tanh", "ReLU", "LeakyReLU", "RReLU", "Softplus",
    "Softmax", "LogSoftmax", "Dropout", "MLP", "ACTIVATIONS", "activation",
]


def _as_input(x, where):
    """A Tensor or ndarray as is; anything else (lists, scalars) as an ndarray."""
    if isinstance(x, (Tensor, np.ndarray)):
        return x
    try:
        return np.asarray(x)
    except Exception as e:  # pragma: no cover
        raise TypeError(f"{where}: cannot use a {type(x).__name__} as input: {e}") from None


def _float_dtype(dtype, where):
    dt = np.dtype(dtype) if dtype is not None else get_default_dtype()
    if dt.kind != "f":
        raise TypeError(f"{where}: parameters must have a floating dtype, got {dt}")
    return dt


_WARNED = set()


def match_dtype(x, dtype, where):
    """The dtype promotion rule of layers: an input that is a constant (an ndarray, a list, a
    Tensor that does not require grad) is cast to the parameters' dtype -- a float32 model given
    float64 (or integer) data computes in float32, as it would after ``x.astype(np.float32)``.
    A tensor that requires grad is never cast (that would cut its graph): if its floating dtype
    differs, NumPy's promotion applies (float32 with float64 gives float64) and a warning is given
    once per layer type.  ``model.to(np.float64)`` changes the parameters' dtype."""
    if isinstance(x, Tensor):
        if x.dtype == dtype:
            return x
        if not x.requires_grad:
            return Tensor._wrap(x.data.astype(dtype))
        if where not in _WARNED:
            _WARNED.add(where)
            import warnings
            warnings.warn(f"{where}: an input of dtype {x.dtype} that requires grad meets parameters of dtype "
                          f"{dtype}; computing in {np.result_type(x.dtype, dtype)} (cast the model with "
                          f".to(...) or the input to match)", stacklevel=3)
        return x
    if x.dtype != dtype:
        return x.astype(dtype)
    return x


# ------------------------------------------------------------------------------------------------
class Linear(Module):
    """Affine layer  y = x W + b.

    **Layout.**  ``weight`` has shape (in_features, out_features) and ``bias`` shape
    (out_features,).  This is the *transpose* of the seeds' W in z = W x + b (and of PyTorch's
    (out, in)): with examples as the rows of x (shape (N, in)), the batched forward is then
    ``x @ W + b`` with no transpose, and ∂L/∂W = xᵀ ∂L/∂y, ∂L/∂b = Σ_n ∂L/∂y_n, ∂L/∂x = ∂L/∂y Wᵀ
    (one fused op, :func:`chainrule.ops.fused.linear`, with matmul's and add's rules).  x may
    have any number of leading axes; its last axis must be ``in_features``.

    Args:
        in_features, out_features: sizes.
        bias: add a bias (initialised to zero).
        init: 'xavier' (= xavier_uniform, the default), 'xavier_normal', 'he' (= he_normal, for
            ReLU-family activations), 'he_uniform', 'normal', 'zeros', ... or a callable
            ``init(shape, rng=..., dtype=...)`` (see :mod:`chainrule.nn.init`).
        rng: a ``np.random.Generator``, an int seed, or None (chainrule's global generator, seeded
            by ``cr.manual_seed``).
        dtype: parameter dtype (default: ``cr.get_default_dtype()``, float32).

    >>> import numpy as np
    >>> from chainrule import nn
    >>> lin = nn.Linear(3, 2, rng=0)
    >>> lin(np.ones((5, 3), dtype=np.float32)).shape
    (5, 2)
    """

    def __init__(self, in_features, out_features, bias=True, init="xavier", rng=None, dtype=None):
        super().__init__()
        if int(in_features) <= 0 or int(out_features) <= 0:
            raise ValueError(f"Linear: in_features and out_features must be positive, got "
                             f"({in_features}, {out_features})")
        self.in_features, self.out_features = int(in_features), int(out_features)
        dt = _float_dtype(dtype, "Linear")
        fn = _init.get(init, "Linear")
        self.init = init if isinstance(init, str) else getattr(init, "__name__", "custom")
        self.weight = Parameter(fn((self.in_features, self.out_features), rng=_init.as_generator(rng), dtype=dt))
        self.bias = Parameter(np.zeros(self.out_features, dtype=dt)) if bias else None

    def forward(self, x):
        W = self.weight
        if type(x) is not Tensor or x.data.dtype is not W.data.dtype:     # (the common case: as it is)
            x = match_dtype(_as_input(x, "Linear"), W.dtype, "Linear")
        shp = x.shape
        if len(shp) == 0 or shp[-1] != self.in_features:
            raise ValueError(f"Linear(in_features={self.in_features}, out_features={self.out_features}): "
                             f"input of shape {tuple(shp)}, expected (..., {self.in_features})")
        return _linear(x, W, self.bias)         # x W + b as one graph node (ops/fused.py)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, init={self.init!r}")


# ------------------------------------------------------------------------------------------------
class Embedding(Module):
    """Lookup table: ``E(idx) = weight[idx]`` for an integer array ``idx`` of any shape; the output
    has shape idx.shape + (embedding_dim,).  ``weight`` has shape (num_embeddings, embedding_dim):
    row i is word i's vector (the seeds' L stores words as *columns*; this is its transpose).

    **Sparse gradients.**  By default (``sparse=False``, as PyTorch) the weight's gradient is a
    dense array, so ``emb.weight.grad[2]`` is row 2's gradient and every optimizer behaves as on
    any other parameter.  With ``sparse=True`` the lookup is ``cr.take(weight, idx, sparse=True)``:
    the gradient is a :class:`cr.RowSparseGrad` (the looked-up indices + one gradient row per lookup,
    repeats allowed until coalesced), so a 100,000 x 50 table used by a batch of 200 lookups gets a
    200 x 50 gradient, and the optimizers update only those rows (*lazily*: untouched rows' Adam
    moments do not decay -- PyTorch's SparseAdam semantics, see :mod:`chainrule.optim`).  A
    RowSparseGrad still reads like an array: ``np.asarray(g)``, ``g[2]``, ``g.shape``.

    Why dense by default (measured with ``benchmarks/embedding_sparse_dense.py``, one step of a
    32 x 20 batch, d = 50, busy 2-core machine): a dense step costs about 1-5x a sparse one on a
    1,000-word table, 12-20x on 20,000 words (still a few ms), 120-160x on a 400,000-word GloVe
    table.  PyTorch users expect dense gradients and dense Adam; large vocabularies should pass
    ``sparse=True`` -- the built-in window, sequence, RNTN and Tree-LSTM models do.

    **padding_idx.**  The row ``padding_idx`` is initialised to zero, the output at positions where
    ``idx == padding_idx`` is zero, and the gradient that row receives is zero (the output is
    multiplied by the constant mask [idx ≠ padding_idx]), so it stays zero under every optimizer
    here (with sparse gradients it is "touched" with a zero gradient row).

    Args: ``init`` ('normal' = N(0, 1) by default, as PyTorch; any :mod:`~chainrule.nn.init` name or
    callable), ``rng``, ``dtype`` as for :class:`Linear`.  See :meth:`from_pretrained`.
    """

    def __init__(self, num_embeddings, embedding_dim, sparse=False, padding_idx=None, init="normal",
                 rng=None, dtype=None):
        super().__init__()
        n, d = int(num_embeddings), int(embedding_dim)
        if n <= 0 or d <= 0:
            raise ValueError(f"Embedding: num_embeddings and embedding_dim must be positive, got ({n}, {d})")
        self.num_embeddings, self.embedding_dim, self.sparse = n, d, bool(sparse)
        if padding_idx is not None:
            if not -n <= int(padding_idx) < n:
                raise ValueError(f"Embedding({n}, {d}): padding_idx {padding_idx} out of range")
            padding_idx = int(padding_idx) % n
        self.padding_idx = padding_idx
        dt = _float_dtype(dtype, "Embedding")
        self.init = init if isinstance(init, str) else getattr(init, "__name__", "custom")
        self.weight = Parameter(_init.get(init, "Embedding")((n, d), rng=_init.as_generator(rng), dtype=dt))
        if padding_idx is not None:
            self.weight.data[padding_idx] = 0

    @classmethod
    def from_pretrained(cls, vectors, sparse=False, padding_idx=None, freeze=False, copy=True):
        """An Embedding whose table is ``vectors`` (num_embeddings x dim, floating; copied unless
        ``copy=False``).  ``freeze=True`` makes the table non-trainable."""
        v = np.array(vectors.data if isinstance(vectors, Tensor) else vectors, copy=copy)
        if v.ndim != 2 or v.dtype.kind != "f":
            raise ValueError(f"Embedding.from_pretrained: expected a 2-D floating array, got shape {v.shape} "
                             f"dtype {v.dtype}")
        e = cls(v.shape[0], v.shape[1], sparse=sparse, padding_idx=None, init="zeros", dtype=v.dtype)
        e.weight = Parameter(v)
        if padding_idx is not None:
            e.padding_idx = int(padding_idx) % v.shape[0]
            e.weight.data[e.padding_idx] = 0
        e.weight.requires_grad = not freeze
        return e

    def forward(self, idx, flat=False):
        """``weight[idx]``: shape ``idx.shape + (embedding_dim,)``; ``flat=True``: the vectors of each
        ``idx[..., :]`` joined end to end (a window of words as one vector), shape
        ``idx.shape[:-1] + (-1,)`` -- the lookup and the reshape as one graph node."""
        i = idx.data if isinstance(idx, Tensor) else np.asarray(idx)
        n = self.num_embeddings
        if i.dtype.kind not in "iu":
            raise TypeError(f"Embedding({n}, {self.embedding_dim}): indices must be integers, got dtype {i.dtype}")
        if flat and i.ndim < 1:
            raise ValueError(f"Embedding({n}, {self.embedding_dim}): flat=True needs indices with at least one "
                             f"axis, got shape {i.shape}")
        if i.size and i.min() < 0:                 # wrap negative indices (one row id per row)
            i = np.where(i < 0, i + n, i)
        pad = self.padding_idx is not None
        try:                                       # the upper bound: checked by the lookup itself
            out = F.take(self.weight, i, sparse=self.sparse, flat=flat and not pad)
        except IndexError:
            bad = int(i.max()) if i.max() >= n else int(i.min())
            raise IndexError(f"Embedding({n}, {self.embedding_dim}): index {bad - n if bad < 0 else bad} "
                             f"out of range [0, {n}) (indices of shape {i.shape})") from None
        if pad:
            keep = (i != self.padding_idx).astype(self.weight.dtype)[..., None]
            out = F.mul(out, keep)
            if flat:
                out = F.reshape(out, i.shape[:-1] + (-1,))
        return out

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}, sparse={self.sparse}"
        return s + (f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")


# ------------------------------------------------------------------------------------------------
# Activations
# ------------------------------------------------------------------------------------------------
class Identity(Module):
    """y = x."""

    def forward(self, x):
        return x


class Flatten(Module):
    """Merge axes ``start_axis`` … ``end_axis`` into one, as PyTorch's ``nn.Flatten`` (defaults
    1, −1: keep the batch axis, flatten the rest).  A reshape: x̄ = ȳ reshaped back."""

    def __init__(self, start_axis=1, end_axis=-1):
        super().__init__()
        self.start_axis, self.end_axis = int(start_axis), int(end_axis)

    def forward(self, x):
        return F.flatten(x, self.start_axis, self.end_axis)

    def extra_repr(self):
        return f"start_axis={self.start_axis}, end_axis={self.end_axis}"


class Sigmoid(Module):
    """y = σ(x) = 1/(1 + e^(−x)) (overflow-safe);  x̄ = ȳ ⊙ y ⊙ (1 − y)."""

    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    """y = tanh(x);  x̄ = ȳ ⊙ (1 − y²)."""

    def forward(self, x):
        return F.tanh(x)


class ReLU(Module):
    """y = max(x, 0);  x̄ = ȳ ⊙ [x > 0]  (subgradient 0 at x = 0)."""

    def forward(self, x):
        return F.relu(x)


class LeakyReLU(Module):
    """y = x if x > 0 else a·x;  x̄ = ȳ if x > 0 else a·ȳ  (a = negative_slope, default 0.01)."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class RReLU(Module):
    """Randomised leaky ReLU (seed 004): y = x if x > 0 else a ⊙ x.

    In training mode every element draws its own slope a ~ U[lower, upper] from this module's
    generator ``self.rng`` (a ``np.random.Generator`` seeded by ``seed``: the same seed gives the
    same slopes; the trainer checkpoints the generator's state; ``seed=None``: chainrule's global
    generator, see ``cr.manual_seed``); in eval mode a = (lower + upper)/2.
    The gradient is x̄ = ȳ where x > 0, a ⊙ ȳ elsewhere, with the slopes drawn in that forward pass.
    """

    def __init__(self, lower=1.0 / 8, upper=1.0 / 3, seed=None):
        super().__init__()
        if not 0 <= lower <= upper:
            raise ValueError(f"RReLU: need 0 <= lower <= upper, got lower={lower}, upper={upper}")
        self.lower, self.upper = float(lower), float(upper)
        self.rng = _init.as_generator(seed)

    def forward(self, x):
        return F.rrelu(x, self.lower, self.upper, training=self.training, generator=self.rng)

    def extra_repr(self):
        return f"lower={self.lower:.4g}, upper={self.upper:.4g}"


class Softplus(Module):
    """y = log(1 + eˣ) (stable);  x̄ = ȳ ⊙ σ(x)."""

    def forward(self, x):
        return F.softplus(x)


class Softmax(Module):
    """y = exp(x)/Σ exp(x) along ``axis`` (a vector activation: every output depends on every
    input);  x̄ = y ⊙ (ȳ − Σ ȳ ⊙ y), the Jacobian diag(y) − y yᵀ applied without forming it."""

    def __init__(self, axis=-1):
        super().__init__()
        self.axis = axis

    def forward(self, x):
        return F.softmax(x, self.axis)

    def extra_repr(self):
        return f"axis={self.axis}"


class LogSoftmax(Softmax):
    """y = x − logsumexp(x) along ``axis``;  x̄ = ȳ − softmax(x) ⊙ Σ ȳ."""

    def forward(self, x):
        return F.log_softmax(x, self.axis)


class Dropout(Module):
    """Inverted dropout.  Training: y = x ⊙ m / (1 − p) with m_i ~ Bernoulli(1 − p) drawn from the
    module's own generator ``self.rng`` (seeded by ``seed``; ``seed=None``: chainrule's global
    generator, see ``cr.manual_seed``), so E[y] = x and nothing needs
    rescaling at test time; x̄ = ȳ ⊙ m / (1 − p).  Eval (or p = 0): y = x.  p = 1 gives zeros.
    Composite: one multiplication by a constant mask."""

    def __init__(self, p=0.5, seed=None):
        super().__init__()
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = float(p)
        self.rng = _init.as_generator(seed)

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        xd = x.data if isinstance(x, Tensor) else np.asarray(x)
        dt = xd.dtype if xd.dtype.kind == "f" else get_default_dtype()
        if self.p == 1.0:
            mask = np.zeros(xd.shape, dtype=dt)
        else:
            u = self.rng.random(xd.shape, dtype=np.float32 if dt == np.float32 else np.float64)
            mask = (u >= self.p).astype(dt)
            mask *= dt.type(1.0 / (1.0 - self.p))
        return F.mul(x, mask)

    def extra_repr(self):
        return f"p={self.p}"


ACTIVATIONS = {
    "identity": Identity, "linear": Identity, "none": Identity, "sigmoid": Sigmoid, "tanh": Tanh,
    "relu": ReLU, "leaky_relu": LeakyReLU, "rrelu": RReLU, "softplus": Softplus, "softmax": Softmax,
    "log_softmax": LogSoftmax,
}
_RELU_FAMILY = {"relu", "leaky_relu", "rrelu"}


def activation(name, seed=None):
    """A new activation module from its name (see ``ACTIVATIONS``); ``seed`` seeds RReLU."""
    if isinstance(name, Module):
        return name
    if isinstance(name, type) and issubclass(name, Module):
        return name()
    if callable(name):
        m = name()
        if not isinstance(m, Module):
            raise TypeError(f"activation: the factory {name!r} returned a {type(m).__name__}, not a Module")
        return m
    key = str(name).lower()
    if key not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return RReLU(seed=seed) if key == "rrelu" else ACTIVATIONS[key]()


class MLP(Module):
    """Multilayer perceptron: Linear → activation (→ Dropout) for each hidden layer, then a last
    Linear, then the ``output`` activation.

    Args:
        sizes: [n_in, h_1, ..., h_k, n_out] (at least two entries).
        activation: hidden activation: 'relu' (default), 'sigmoid', 'tanh', 'leaky_relu', 'rrelu',
            'softplus', a Module class, or a zero-argument factory returning a Module.
        output: None (raw logits / linear outputs -- pair with ``losses.cross_entropy`` or
            ``binary_cross_entropy_with_logits``), 'sigmoid', 'softmax', 'log_softmax', 'tanh', ...
        dropout: dropout probability after each hidden activation (0 = no Dropout modules).
        init: weight initialiser for every Linear; None = 'he' (he_normal) for the ReLU family,
            'xavier' (xavier_uniform) otherwise.
        seed: seeds the weights and the generators of Dropout/RReLU (independent streams spawned
            from ``np.random.SeedSequence(seed)``); None (the default) = a seed drawn from
            chainrule's global generator, so ``cr.manual_seed(s)`` makes it reproducible.
        bias, dtype: passed to every Linear.

    The layers are ``self.layers`` (a Sequential), so parameter names are 'layers.0.weight',
    'layers.0.bias', 'layers.2.weight', ... (index = position in the stack).

    >>> from chainrule import nn
    >>> m = nn.MLP([4, 8, 3], activation="tanh", output="softmax", seed=0)
    >>> [type(l).__name__ for l in m.layers]
    ['Linear', 'Tanh', 'Linear', 'Softmax']
    """

    def __init__(self, sizes, activation="relu", output=None, dropout=0.0, init=None, seed=None,
                 bias=True, dtype=None):
        super().__init__()
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) <= 0:
            raise ValueError(f"MLP: sizes must list at least an input and an output size, all positive; got {sizes}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"MLP: dropout must be in [0, 1), got {dropout}")
        self.sizes = sizes
        act_name = activation if isinstance(activation, str) else getattr(activation, "__name__", type(activation).__name__)
        if init is None:
            init = "he" if str(act_name).lower() in _RELU_FAMILY else "xavier"
        n_lin = len(sizes) - 1
        if seed is None:
            seed = int(_init.as_generator(None).integers(2 ** 63))
        streams = np.random.SeedSequence(seed).spawn(3 * n_lin + 1)
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(Linear(a, b, bias=bias, init=init, rng=np.random.default_rng(streams[i]), dtype=dtype))
            if i < n_lin - 1:
                layers.append(_make_activation(activation, streams[n_lin + i]))
                if dropout > 0:
                    layers.append(Dropout(dropout, seed=streams[2 * n_lin + i]))
        if output is not None:
            layers.append(_make_activation(output, streams[-1]))
        self.layers = Sequential(*layers)
        self.activation, self.output, self.dropout = str(act_name), output, float(dropout)

    def forward(self, x):
        return self.layers(x)

    def extra_repr(self):
        return f"sizes={self.sizes}, activation={self.activation!r}, output={self.output!r}"


def _make_activation(name, seedseq):
    return activation(name, seed=np.random.default_rng(seedseq))
