r"""Attention: :class:`MultiHeadAttention` (scaled dot-product, key padding mask, causal mask) and
:class:`AttentionPooling` (a learned weighted average over the steps of a sequence).

Attention is a multiplicative network twice over (seed 004): the scores are products of queries and
keys, and the output is a product of the attention weights -- a softmax, a *vector* activation whose
Jacobian diag(a) − a aᵀ couples all its inputs -- and the values.  As everywhere in chainrule the
backward pass is the engine's; the formulas below are what its rules compose to.

Masks follow one rule: a masked-out score is replaced by a large negative constant before the softmax
(``where``), so its weight is exactly 0 (exp underflows) and, by the ``where`` rule, the score
receives zero gradient; a padded key or value then contributes nothing forward and gets zero
gradient backward.
"""
from __future__ import annotations

import math

import numpy as np

from ..ops import functional as F
from ..tensor import Tensor
from . import init as _init
from .layers import Linear
from .module import Module, Parameter

__all__ = ["MultiHeadAttention", "AttentionPooling", "scaled_dot_product_attention", "causal_mask", "NEG_INF"]

#: the score given to masked positions (finite, so a row with every key masked gives a uniform
#: average instead of NaN; exp(NEG_INF − max) is exactly 0 in float32 and float64)
NEG_INF = -1e9


def _data(x):
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def causal_mask(Tq, Tk=None):
    """Boolean (Tq, Tk) with True where query i may attend key j: j ≤ i + (Tk − Tq) (the last query
    is aligned with the last key, so Tq = Tk gives the lower triangle).

    >>> causal_mask(3).astype(int).tolist()
    [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    """
    Tk = Tq if Tk is None else Tk
    return np.arange(Tk)[None, :] <= np.arange(Tq)[:, None] + (Tk - Tq)


def scaled_dot_product_attention(q, k, v, allowed=None):
    r"""A = softmax(q kᵀ / √d) (masked), O = A v, over the last two axes (any leading batch axes).

    Forward:  S = q kᵀ / √d;  S ← where(allowed, S, −10⁹);  A = softmax_rows(S);  O = A v.
    Backward (Ō given):  v̄ = Aᵀ Ō;  Ā = Ō vᵀ;  S̄ = A ⊙ (Ā − rowsum(Ā ⊙ A))  (the softmax Jacobian
    diag(a) − a aᵀ applied row by row) and S̄ = 0 where masked;  q̄ = S̄ k / √d;  k̄ = S̄ᵀ q / √d.

    ``allowed``: a boolean array broadcastable to the scores' shape (True = may attend), or None.
    Returns (O, A).
    """
    d = q.shape[-1]
    kt = F.transpose(k, tuple(range(k.ndim - 2)) + (k.ndim - 1, k.ndim - 2))
    s = F.mul(F.matmul(q, kt), _data(q).dtype.type(1.0 / math.sqrt(d)))
    if allowed is not None:
        s = F.where(np.broadcast_to(allowed, s.shape), s, _data(s).dtype.type(NEG_INF))
    a = F.softmax(s, -1)
    return F.matmul(a, v), a


class MultiHeadAttention(Module):
    r"""Multi-head scaled dot-product attention (Vaswani et al. 2017), batch first.

    For queries X_q (N, T_q, E) and keys/values X_k, X_v (N, T_k, ·), with h heads of size
    d = E / h::

        Q = X_q W_q + b_q,   K = X_k W_k + b_k,   V = X_v W_v + b_v        (each split into h heads)
        A_j = softmax(Q_j K_jᵀ / √d  masked)   O_j = A_j V_j              (per head j)
        Y = [O_1 … O_h] W_o + b_o

    Derivatives per head (Ō_j the gradient of O_j; see :func:`scaled_dot_product_attention`)::

        V̄_j = A_jᵀ Ō_j     Ā_j = Ō_j V_jᵀ     S̄_j = A_j ⊙ (Ā_j − rowsum(Ā_j ⊙ A_j))
        Q̄_j = S̄_j K_j / √d     K̄_j = S̄_jᵀ Q_j / √d

    and the projections' as for :class:`~chainrule.nn.Linear` (W̄ = Xᵀ Ȳ, X̄ = Ȳ Wᵀ).

    Args:
        embed_dim: E (model size, also the size of the queries); num_heads: h (must divide E).
        kdim, vdim: sizes of the keys' and values' inputs (default E).
        bias: biases in the four projections.
    forward(query, key=None, value=None, key_padding_mask=None, causal=False, attn_mask=None,
    need_weights=False):
        ``key``/``value`` default to ``query`` (self-attention).  ``key_padding_mask`` (N, T_k)
        booleans, **True at padding** (keys to ignore; PyTorch's convention).  ``causal=True``: query
        i attends only keys j ≤ i (see :func:`causal_mask`), so the output at step t does not depend
        on inputs after t.  ``attn_mask``: an extra boolean (T_q, T_k) or (N, T_q, T_k) mask, True =
        may attend.  Returns Y (N, T_q, E), and the weights (N, h, T_q, T_k) if ``need_weights``.

    >>> import numpy as np
    >>> mha = MultiHeadAttention(8, 2, rng=0)
    >>> mha(np.ones((3, 5, 8), dtype=np.float32), causal=True).shape
    (3, 5, 8)
    """

    def __init__(self, embed_dim, num_heads=1, kdim=None, vdim=None, bias=True, rng=None, dtype=None):
        super().__init__()
        E, h = int(embed_dim), int(num_heads)
        if E <= 0 or h <= 0 or E % h:
            raise ValueError(f"MultiHeadAttention: num_heads ({h}) must divide embed_dim ({E})")
        self.embed_dim, self.num_heads, self.head_dim = E, h, E // h
        self.kdim, self.vdim = int(kdim or E), int(vdim or E)
        g = _init.as_generator(rng)
        self.q_proj = Linear(E, E, bias=bias, rng=g, dtype=dtype)
        self.k_proj = Linear(self.kdim, E, bias=bias, rng=g, dtype=dtype)
        self.v_proj = Linear(self.vdim, E, bias=bias, rng=g, dtype=dtype)
        self.out_proj = Linear(E, E, bias=bias, rng=g, dtype=dtype)

    def _heads(self, x, N, T):
        x = F.reshape(x, (N, T, self.num_heads, self.head_dim))
        return F.transpose(x, (0, 2, 1, 3))          # (N, h, T, d)

    def forward(self, query, key=None, value=None, key_padding_mask=None, causal=False, attn_mask=None,
                need_weights=False):
        key = query if key is None else key
        value = key if value is None else value
        qs, ks, vs = _data(query).shape, _data(key).shape, _data(value).shape
        if len(qs) != 3 or qs[-1] != self.embed_dim:
            raise ValueError(f"MultiHeadAttention(embed_dim={self.embed_dim}): query of shape {qs}, expected "
                             f"(N, T_q, {self.embed_dim})")
        if len(ks) != 3 or ks[-1] != self.kdim or len(vs) != 3 or vs[-1] != self.vdim or ks[:2] != vs[:2] \
                or ks[0] != qs[0]:
            raise ValueError(f"MultiHeadAttention: key {ks} / value {vs} do not fit query {qs} "
                             f"(expected (N, T_k, {self.kdim}) and (N, T_k, {self.vdim}))")
        N, Tq, Tk = qs[0], qs[1], ks[1]
        Q = self._heads(self.q_proj(query), N, Tq)
        K = self._heads(self.k_proj(key), N, Tk)
        V = self._heads(self.v_proj(value), N, Tk)
        allowed = None
        if key_padding_mask is not None:
            kpm = np.asarray(_data(key_padding_mask))
            if kpm.dtype != bool or kpm.shape != (N, Tk):
                raise ValueError(f"MultiHeadAttention: key_padding_mask must be boolean of shape ({N}, {Tk}) "
                                 f"(True at padding), got {kpm.dtype} {kpm.shape}")
            allowed = ~kpm[:, None, None, :]
        if causal:
            cm = causal_mask(Tq, Tk)[None, None]
            allowed = cm if allowed is None else allowed & cm
        if attn_mask is not None:
            am = np.asarray(_data(attn_mask))
            if am.dtype != bool:
                raise ValueError("MultiHeadAttention: attn_mask must be boolean (True = may attend)")
            am = am[None, None] if am.ndim == 2 else am[:, None]
            allowed = am if allowed is None else allowed & am
        O, A = scaled_dot_product_attention(Q, K, V, allowed)
        O = F.transpose(O, (0, 2, 1, 3))
        O = F.reshape(O, (N, Tq, self.embed_dim))
        Y = self.out_proj(O)
        return (Y, A) if need_weights else Y

    def extra_repr(self):
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, kdim={self.kdim}, vdim={self.vdim}"


class AttentionPooling(Module):
    r"""Attention pooling over the steps of a sequence (Bahdanau-style scoring; Yang et al. 2016):

        u_t = tanh(h_t W + b)         (N, T, A)    [skipped when ``attention_size`` is None]
        e_t = u_t · w                 (N, T)       (e_t = h_t · w without the hidden layer)
        α   = softmax_t(e)  over the real steps (masked steps: e_t = −10⁹, so α_t = 0)
        y   = Σ_t α_t h_t             (N, D)

    Derivatives: h̄_t ⊇ α_t ȳ (the weighted sum), ᾱ_t = ȳ · h_t, ē = α ⊙ (ᾱ − Σ_s α_s ᾱ_s) (softmax
    Jacobian), w̄ = Σ_{n,t} ē_t u_t, ū_t = ē_t w, and through tanh: (ū_t ⊙ (1 − u_t²)) Wᵀ adds to h̄_t.
    A padded step has α_t = 0 and a masked score, so h̄_t = 0 there.

    forward(h, lengths=None, mask=None, return_weights=False): ``h`` (N, T, D); ``mask`` (N, T)
    booleans, True at real steps (or ``lengths``).  Returns y (N, D) (and α (N, T)).
    """

    def __init__(self, input_size, attention_size=None, rng=None, dtype=None):
        super().__init__()
        self.input_size = int(input_size)
        self.attention_size = None if attention_size is None else int(attention_size)
        g = _init.as_generator(rng)
        if self.attention_size:
            self.proj = Linear(self.input_size, self.attention_size, rng=g, dtype=dtype)
            n = self.attention_size
        else:
            self.proj = None
            n = self.input_size
        self.context = Parameter(_init.uniform((n,), rng=g, a=1.0 / math.sqrt(n), dtype=dtype))

    def forward(self, h, lengths=None, mask=None, return_weights=False):
        hs = _data(h).shape
        if len(hs) != 3 or hs[-1] != self.input_size:
            raise ValueError(f"AttentionPooling(input_size={self.input_size}): input of shape {hs}, "
                             f"expected (N, T, {self.input_size})")
        N, T = hs[0], hs[1]
        if lengths is not None:
            if mask is not None:
                raise ValueError("AttentionPooling: give lengths or mask, not both")
            lengths = np.asarray(_data(lengths))
            mask = np.arange(T)[None, :] < lengths[:, None]
        u = F.tanh(self.proj(h)) if self.proj is not None else h
        e = F.matmul(u, self.context)                       # (N, T)
        if mask is not None:
            mask = np.asarray(_data(mask))
            if mask.dtype != bool or mask.shape != (N, T):
                raise ValueError(f"AttentionPooling: mask must be boolean of shape ({N}, {T}), got "
                                 f"{mask.dtype} {mask.shape}")
            e = F.where(mask, e, _data(e).dtype.type(NEG_INF))
        alpha = F.softmax(e, -1)
        a3 = F.reshape(alpha, (N, 1, T))
        y = F.reshape(F.matmul(a3, h), (N, self.input_size))
        return (y, alpha) if return_weights else y

    def extra_repr(self):
        return f"{self.input_size}, attention_size={self.attention_size}"
