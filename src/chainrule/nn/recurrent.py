r"""Recurrent layers: :class:`LSTMCell`, :class:`GRUCell`, and the sequence layers :class:`LSTM` and
:class:`GRU` over padded batches (variable lengths, masks, several layers, both directions).

These are the *multiplicative networks* of seed 004: a gate is a sigmoid vector that multiplies
another vector, so the derivative of the layer's output with respect to one factor is the other
factor (∂(a ⊙ b)/∂a = diag(b)), and the error reaching time step t has passed through products of
gate activations of every later step.  The cells have no backward rule of their own: every step is
written with the engine's primitives (one fused matmul for all gates, slices, sigmoid, tanh, ⊙, +,
``where``), so backpropagation through time is the engine's ordinary backward pass over the
unrolled graph -- which is how :class:`GRU` runs.  :class:`LSTM` runs each layer and direction as
one :func:`chainrule.ops.lstm.lstm_sequence` node instead (the same mathematics, the sweep through
time in its rule, as a hand-written BPTT: no per-step graph nodes, one GEMM for each weight
gradient); its outputs and gradients are the cell loop's to rounding.

Conventions
-----------
* Batches are batch-first: ``x`` of shape (N, T, D), or -- cheaper when the input needs a gradient,
  see below -- a list of T arrays/tensors of shape (N, D) (time-major list).
* ``lengths`` (N,) integers, or ``mask`` (N, T) booleans with True at real tokens.  A masked step
  leaves the state unchanged, h_t = h_{t−1}, c_t = c_{t−1}, and its output is zero.  Hence the final
  state of every sequence is the state after its own last token, a padded position does not change
  anything, and (the ``where`` rule: x̄ = g ⊙ [c]) it receives exactly zero gradient.
* Weights use chainrule's (in, out) layout: ``weight_ih`` (D, G·H), ``weight_hh`` (H, G·H), the gate
  blocks side by side along the last axis, so the gate pre-activations of the whole batch are
  ``x W_ih + h W_hh + b``: one matmul per step, ``[x, h] @ [W_ih; W_hh]``, when the input needs a
  gradient (its backward gives x̄ and h̄ in one matmul too); two when the input is a constant (then
  backward skips x̄).
* Initialisation as PyTorch: every weight and bias ~ U(−1/√H, 1/√H); the LSTM forget-gate bias is
  then set to ``forget_bias`` (1.0 by default; Jozefowicz et al. 2015) so the cell starts out
  remembering.

Input as a tensor that needs a gradient: the LSTM's sequence op takes it whole (x̄ is one GEMM); the
GRU's cell loop slices step t out of it, which the engine backpropagates into one gradient buffer.
A list of per-step tensors (e.g. one embedding lookup per step, as
:class:`chainrule.models.sequence.SequenceClassifier` does) works for both (the LSTM stacks it
once); constant inputs (arrays or tensors without ``requires_grad``) are sliced for free.
"""
from __future__ import annotations

import math

import numpy as np

from ..ops import functional as F
from ..ops.lstm import lstm_sequence
from ..tensor import Tensor, get_default_dtype
from . import init as _init
from .layers import match_dtype
from .module import Module, ModuleList, Parameter

__all__ = ["LSTMCell", "GRUCell", "LSTM", "GRU", "lengths_to_mask"]

def _cols(t, lo, hi):
    """t[..., lo:hi] (a basic slice of the last axis)."""
    return t[..., lo:hi]


def _dtype(dtype, where):
    dt = np.dtype(dtype) if dtype is not None else get_default_dtype()
    if dt.kind != "f":
        raise TypeError(f"{where}: parameters must be floating, got dtype {dt}")
    return dt


def _uniform(rng, shape, k, dt):
    return rng.uniform(-k, k, size=shape).astype(dt)


def lengths_to_mask(lengths, T=None):
    """Boolean mask (N, T) with True at positions t < lengths[n].

    >>> lengths_to_mask([2, 3, 1]).astype(int).tolist()
    [[1, 1, 0], [1, 1, 1], [1, 0, 0]]
    """
    lengths = np.asarray(lengths.data if isinstance(lengths, Tensor) else lengths)
    if lengths.ndim != 1 or lengths.dtype.kind not in "iu":
        raise ValueError(f"lengths_to_mask: expected a 1-D integer array of lengths, got shape {lengths.shape} "
                         f"dtype {lengths.dtype}")
    T = int(lengths.max()) if T is None and lengths.size else int(T or 0)
    if lengths.size and (lengths.min() < 0 or lengths.max() > T):
        raise ValueError(f"lengths_to_mask: lengths must lie in [0, {T}], got min {lengths.min()} max {lengths.max()}")
    return np.arange(T)[None, :] < lengths[:, None]


def _data(x):
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def _steps(x, where):
    """(list of T per-step inputs (N, D), N, T, D) from an (N, T, D) array/tensor or a list."""
    if isinstance(x, (list, tuple)):
        if not x:
            raise ValueError(f"{where}: empty list of time steps")
        shp = _data(x[0]).shape if not isinstance(x[0], Tensor) else x[0].shape
        if len(shp) != 2:
            raise ValueError(f"{where}: every step must have shape (N, D), got {shp}")
        return list(x), shp[0], len(x), shp[1]
    if isinstance(x, Tensor):
        if x.ndim != 3:
            raise ValueError(f"{where}: input of shape {x.shape}, expected (N, T, D) (batch first)")
        N, T, D = x.shape
        if x.requires_grad:
            return [x[:, t] for t in range(T)], N, T, D
        x = x.data
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"{where}: input of shape {x.shape}, expected (N, T, D) (batch first)")
    N, T, D = x.shape
    return [x[:, t] for t in range(T)], N, T, D


def _full_mask(lengths, mask, N, T, where):
    """The (N, T) boolean mask (True at real tokens) from ``lengths`` or ``mask``, or None for neither."""
    if lengths is not None and mask is not None:
        raise ValueError(f"{where}: give lengths or mask, not both")
    if lengths is not None:
        lengths = np.asarray(_data(lengths))
        if lengths.shape != (N,):
            raise ValueError(f"{where}: lengths of shape {lengths.shape} for a batch of {N}")
        mask = lengths_to_mask(lengths, T)
    if mask is None:
        return None
    mask = np.asarray(_data(mask))
    if mask.dtype != bool:
        raise TypeError(f"{where}: mask must be boolean (True at real tokens), got dtype {mask.dtype}")
    if mask.shape != (N, T):
        raise ValueError(f"{where}: mask of shape {mask.shape} for input (N, T) = ({N}, {T})")
    return mask


def _step_masks(lengths, mask, N, T, where):
    """Per-step (N, 1) boolean masks, None for a step where every sequence is present."""
    mask = _full_mask(lengths, mask, N, T, where)
    if mask is None:
        return [None] * T
    out = []
    for t in range(T):
        m = mask[:, t]
        out.append(None if m.all() else np.ascontiguousarray(m[:, None]))
    return out


# ================================================================================================
# Cells
# ================================================================================================
class LSTMCell(Module):
    r"""One step of a long short-term memory (Hochreiter & Schmidhuber 1997, with forget gate).

    Forward, for the batch rows x (N, D), previous state (h, c) (N, H)::

        [a_i a_f a_o a_g] = x W_ih + h W_hh + b              (one matmul, four blocks of H columns)
        i = σ(a_i)   f = σ(a_f)   o = σ(a_o)   g = tanh(a_g)
        c' = f ⊙ c + i ⊙ g
        h' = o ⊙ tanh(c')

    Backward (what the engine's rules compose to; ḡ means ∂L/∂·, with h̄' and c̄' the total
    gradients arriving from the output, the next step and the layer above)::

        c̄  = c̄' + h̄' ⊙ o ⊙ (1 − tanh²(c'))          (the total gradient of c')
        ō  = h̄' ⊙ tanh(c')           ā_o = ō ⊙ o(1 − o)
        f̄  = c̄ ⊙ c                  ā_f = f̄ ⊙ f(1 − f)
        ī  = c̄ ⊙ g                  ā_i = ī ⊙ i(1 − i)
        ḡ  = c̄ ⊙ i                  ā_g = ḡ ⊙ (1 − g²)
        c̄_prev = c̄ ⊙ f             (the multiplicative path: the memory's error is scaled by f)
        [x̄, h̄_prev] = ā [W_ih; W_hh]ᵀ     W̄_ih += xᵀ ā    W̄_hh += hᵀ ā    b̄ += Σ_n ā

    Each multiplicative node passes each factor the gradient times the *other* factor (seed 004:
    ∂Div/∂y_j = y_l ∂Div/∂o_i), and σ'(a) = σ(1 − σ), tanh'(a) = 1 − tanh² are the scalar
    activations' derivatives.

    Parameters: ``weight_ih`` (D, 4H), ``weight_hh`` (H, 4H), ``bias`` (4H,) with the gates in the
    order i, f, o, g (the three sigmoid gates first, so one sigmoid covers them).

    >>> import numpy as np
    >>> cell = LSTMCell(3, 4, rng=0)
    >>> h, c = cell(np.ones((2, 3), dtype=np.float32))
    >>> h.shape, c.shape
    ((2, 4), (2, 4))
    """
    gates = 4

    def __init__(self, input_size, hidden_size, bias=True, forget_bias=1.0, rng=None, dtype=None):
        super().__init__()
        D, H = int(input_size), int(hidden_size)
        if D <= 0 or H <= 0:
            raise ValueError(f"LSTMCell: input_size and hidden_size must be positive, got ({D}, {H})")
        self.input_size, self.hidden_size = D, H
        dt = _dtype(dtype, "LSTMCell")
        g = _init.as_generator(rng)
        k = 1.0 / math.sqrt(H)
        self.weight_ih = Parameter(_uniform(g, (D, 4 * H), k, dt))
        self.weight_hh = Parameter(_uniform(g, (H, 4 * H), k, dt))
        if bias:
            b = _uniform(g, (4 * H,), k, dt)
            if forget_bias is not None:
                b[H:2 * H] = forget_bias
            self.bias = Parameter(b)
        else:
            self.bias = None
        self.forget_bias = forget_bias

    def fused_weight(self):
        """[W_ih; W_hh] of shape (D + H, 4H): one concat per sequence, then one matmul per step."""
        return F.concat([self.weight_ih, self.weight_hh], axis=0)

    def step(self, x, h, c, W=None, mask=None, xw=None):
        """One step with an optional (N, 1) boolean ``mask`` (False: keep h, c).  ``h``/``c`` None
        mean a zero state.  ``W``: :meth:`fused_weight` computed once for the sequence.  ``xw``:
        x W_ih + b already computed (the sequence layer projects all steps of a constant input at once).
        Returns (h', c', h'_raw): the (masked) new state and the unmasked new hidden vector."""
        H = self.hidden_size
        if xw is not None:                            # x W_ih + b, from the sequence layer
            z = xw if h is None else xw + h @ self.weight_hh
        else:
            if h is None:
                z = x @ self.weight_ih
            elif isinstance(x, Tensor) and x.requires_grad:
                # [x, h] @ [W_ih; W_hh]: one matmul forward, one for x̄ and h̄ together backward
                W = W if W is not None else self.fused_weight()
                z = F.concat([x, h], axis=1) @ W
            else:
                # constant input: x W_ih + h W_hh, so backward skips the x̄ = ā W_ihᵀ nobody needs
                z = x @ self.weight_ih + h @ self.weight_hh
            if self.bias is not None:
                z = z + self.bias
        s = F.sigmoid(z[..., :3 * H])                 # the gates i, f, o side by side
        g = F.tanh(z[..., 3 * H:4 * H])
        i, o = s[..., :H], s[..., 2 * H:3 * H]
        ig = i * g
        c_new = ig if c is None else s[..., H:2 * H] * c + ig        # c = f ⊙ c + i ⊙ g
        h_new = o * F.tanh(c_new)                                    # h = o ⊙ tanh(c)
        if mask is None:
            return h_new, c_new, h_new
        zero = None
        if h is None or c is None:
            zero = np.zeros((mask.shape[0], H), dtype=_data(z).dtype)
        h_keep = F.where(mask, h_new, zero if h is None else h)
        c_keep = F.where(mask, c_new, zero if c is None else c)
        return h_keep, c_keep, h_new

    def forward(self, x, state=None, mask=None):
        """x (N, D); state (h, c) or None (zeros); mask (N,) booleans or None.  Returns (h', c')."""
        h, c = (None, None) if state is None else state
        m = None if mask is None else np.asarray(_data(mask), dtype=bool).reshape(-1, 1)
        x = match_dtype(x, self.weight_ih.dtype, "LSTMCell")       # the layers' dtype rule (nn.layers)
        h2, c2, _ = self.step(x, h, c, mask=m)
        return h2, c2

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias is not None}"


class GRUCell(Module):
    r"""One step of a gated recurrent unit (Cho et al. 2014; the variant of cuDNN/PyTorch, the reset
    gate applied to the transformed state).

    Forward, for x (N, D) and the previous state h (N, H)::

        [u_r u_z u_n] = x W_ih + b_ih          [v_r v_z v_n] = h W_hh + b_hh
        r = σ(u_r + v_r)     z = σ(u_z + v_z)
        n = tanh(u_n + r ⊙ v_n)
        h' = (1 − z) ⊙ n + z ⊙ h   (computed as n + z ⊙ (h − n))

    Backward, with h̄' the total gradient of h'::

        z̄ = h̄' ⊙ (h − n)              ā_z = z̄ ⊙ z(1 − z)      (a_z = u_z + v_z; ū_z = v̄_z = ā_z)
        n̄ = h̄' ⊙ (1 − z)              ā_n = n̄ ⊙ (1 − n²)      ū_n = ā_n,  v̄_n = ā_n ⊙ r
        r̄ = ā_n ⊙ v_n                 ā_r = r̄ ⊙ r(1 − r)      (ū_r = v̄_r = ā_r)
        h̄  = h̄' ⊙ z + v̄ W_hhᵀ          x̄ = ū W_ihᵀ
        W̄_ih += xᵀ ū   W̄_hh += hᵀ v̄   b̄_ih += Σ ū   b̄_hh += Σ v̄

    Parameters: ``weight_ih`` (D, 3H), ``weight_hh`` (H, 3H), ``bias_ih``, ``bias_hh`` (3H,), gate
    order r, z, n.
    """
    gates = 3

    def __init__(self, input_size, hidden_size, bias=True, rng=None, dtype=None):
        super().__init__()
        D, H = int(input_size), int(hidden_size)
        if D <= 0 or H <= 0:
            raise ValueError(f"GRUCell: input_size and hidden_size must be positive, got ({D}, {H})")
        self.input_size, self.hidden_size = D, H
        dt = _dtype(dtype, "GRUCell")
        g = _init.as_generator(rng)
        k = 1.0 / math.sqrt(H)
        self.weight_ih = Parameter(_uniform(g, (D, 3 * H), k, dt))
        self.weight_hh = Parameter(_uniform(g, (H, 3 * H), k, dt))
        self.bias_ih = Parameter(_uniform(g, (3 * H,), k, dt)) if bias else None
        self.bias_hh = Parameter(_uniform(g, (3 * H,), k, dt)) if bias else None

    def fused_weight(self):
        return None           # the reset gate multiplies v_n alone: the two products stay separate

    def step(self, x, h, c=None, W=None, mask=None):
        """One step (``c`` and ``W`` unused; the signature matches :meth:`LSTMCell.step`).
        Returns (h', None, h'_raw)."""
        H = self.hidden_size
        u = x @ self.weight_ih
        if self.bias_ih is not None:
            u = u + self.bias_ih
        if h is None:
            v = self.bias_hh                      # h = 0: h W_hh vanishes
        else:
            v = h @ self.weight_hh
            if self.bias_hh is not None:
                v = v + self.bias_hh
        if v is None:
            rz = F.sigmoid(u[..., :2 * H])
        else:
            rz = F.sigmoid(u[..., :2 * H] + v[..., :2 * H])         # the gates r, z
        z = rz[..., H:2 * H]
        a_n = u[..., 2 * H:3 * H]
        if v is not None:
            a_n = a_n + rz[..., :H] * v[..., 2 * H:3 * H]           # W_in x + b_in + r ⊙ (W_hn h + b_hn)
        n = F.tanh(a_n)
        if h is None:
            h_new = n - z * n                                      # (1 − z) ⊙ n
        else:
            h_new = n + z * (h - n)                                # (1 − z) ⊙ n + z ⊙ h
        if mask is None:
            return h_new, None, h_new
        prev = h if h is not None else np.zeros((mask.shape[0], H), dtype=_data(u).dtype)
        return F.where(mask, h_new, prev), None, h_new

    def forward(self, x, h=None, mask=None):
        """x (N, D); h (N, H) or None (zeros); mask (N,) booleans or None.  Returns h'."""
        m = None if mask is None else np.asarray(_data(mask), dtype=bool).reshape(-1, 1)
        x = match_dtype(x, self.weight_ih.dtype, "GRUCell")        # the layers' dtype rule (nn.layers)
        return self.step(x, h, mask=m)[0]

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias_ih is not None}"


# ================================================================================================
# Sequence layers
# ================================================================================================
class _Recurrent(Module):
    """Shared by LSTM and GRU: layers × directions of cells run over the steps."""
    cell_class = None
    has_cell_state = False

    def __init__(self, input_size, hidden_size, num_layers=1, bidirectional=False, dropout=0.0, bias=True,
                 rng=None, dtype=None, **cell_kw):
        super().__init__()
        name = type(self).__name__
        if int(num_layers) < 1:
            raise ValueError(f"{name}: num_layers must be >= 1, got {num_layers}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"{name}: dropout must be in [0, 1), got {dropout}")
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        self.num_layers, self.bidirectional = int(num_layers), bool(bidirectional)
        self.num_directions = 2 if bidirectional else 1
        self.dropout = float(dropout)
        g = _init.as_generator(rng)
        cells = []
        for layer in range(self.num_layers):
            d_in = self.input_size if layer == 0 else self.hidden_size * self.num_directions
            for _ in range(self.num_directions):
                cells.append(self.cell_class(d_in, self.hidden_size, bias=bias, rng=g, dtype=dtype, **cell_kw))
        self.cells = ModuleList(cells)      # index layer * num_directions + direction
        self.rng = np.random.default_rng(g.integers(2 ** 63))   # dropout between layers

    # ------------------------------------------------------------------ one direction
    def run_direction(self, cell, xs, masks, h0=None, c0=None, reverse=False, outputs=True, x3=None):
        """Run ``cell`` over the per-step inputs ``xs`` (list of (N, D)) with per-step masks.

        ``x3``: the constant input as one (N, T, D) array, when it is one: an LSTM then computes the
        input projection x_t W_ih + b of all steps as one matmul and one add, (N·T, D) @ (D, 4H) --
        and its backward W̄_ih = Xᵀ Ā and b̄ = Σ Ā as one matmul and one sum over all steps,
        instead of T small ones and T additions each.

        Returns (outs, h_T, c_T): ``outs`` the list of per-step outputs in time order (zero at masked
        steps; None when ``outputs=False``), and the final state -- for the reverse direction, the
        state after step 0."""
        T = len(xs)
        x0 = xs[0]
        W = cell.fused_weight() if isinstance(x0, Tensor) and x0.requires_grad and (T > 1 or h0 is not None) \
            else None
        XW = None
        if x3 is not None and T > 1 and isinstance(cell, LSTMCell) and x3.shape[1] == T:
            N, _, D = x3.shape
            XW = x3.reshape(N * T, D) @ cell.weight_ih
            if cell.bias is not None:
                XW = XW + cell.bias                  # b once for all steps (b̄: one sum over N·T rows)
            XW = F.reshape(XW, (N, T, -1))
        h, c = h0, c0
        outs = [None] * T if outputs else None
        order = range(T - 1, -1, -1) if reverse else range(T)
        zero = None
        for t in order:
            m = masks[t]
            if XW is None:
                h, c, raw = cell.step(xs[t], h, c, W=W, mask=m)
            else:
                h, c, raw = cell.step(xs[t], h, c, W=W, mask=m, xw=XW[:, t])
            if outputs:
                if m is None:
                    outs[t] = h
                else:
                    if zero is None:
                        zero = np.zeros((m.shape[0], cell.hidden_size), dtype=_data(raw).dtype)
                    outs[t] = F.where(m, raw, zero)
        return outs, h, c

    def forward_steps(self, x, lengths=None, mask=None, state=None, outputs=True):
        """The layer on per-step lists, without stacking: returns (outs, finals) with ``outs`` the
        list of T top-layer outputs (N, H·dirs) (None if ``outputs=False``) and ``finals`` a list of
        (h_T, c_T) per layer and direction (c_T None for a GRU)."""
        name = type(self).__name__
        if isinstance(x, (Tensor, np.ndarray)):                  # the layers' dtype rule (nn.layers)
            x = match_dtype(x, self.cells[0].weight_ih.dtype, name)
        xs, N, T, D = _steps(x, name)
        if D != self.input_size:
            raise ValueError(f"{name}(input_size={self.input_size}): input steps of size {D}")
        masks = _step_masks(lengths, mask, N, T, name)
        h0s, c0s = self._initial(state, N)
        finals = []
        nd = self.num_directions
        x3 = _data(x) if not isinstance(x, (list, tuple)) and not (isinstance(x, Tensor) and x.requires_grad) else None
        for layer in range(self.num_layers):
            last = layer == self.num_layers - 1
            want = outputs or not last
            dir_outs = []
            for d in range(nd):
                k = layer * nd + d
                outs, hT, cT = self.run_direction(self.cells[k], xs, masks, h0s[k], c0s[k], reverse=d == 1,
                                                  outputs=want, x3=x3 if layer == 0 else None)
                dir_outs.append(outs)
                finals.append((hT, cT))
            if want:
                if nd == 1:
                    xs = dir_outs[0]
                else:
                    xs = [F.concat([a, b], axis=1) for a, b in zip(*dir_outs)]
                if not last and self.dropout and self.training:
                    xs = [self._dropout(v) for v in xs]
        return (xs if outputs else None), finals

    def _dropout(self, v):
        d = _data(v)
        keep = (self.rng.random(d.shape) >= self.dropout).astype(d.dtype) * d.dtype.type(1.0 / (1.0 - self.dropout))
        return v * keep

    def _initial(self, state, N):
        n = self.num_layers * self.num_directions
        if state is None:
            return [None] * n, [None] * n
        if self.has_cell_state:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise ValueError(f"{type(self).__name__}: state must be a pair (h0, c0) of shape "
                                 f"({n}, N, {self.hidden_size}) each")
            h0, c0 = state
        else:
            h0, c0 = state, None
        want = (n, N, self.hidden_size)
        out = []
        for s in (h0, c0):
            if s is None:
                out.append([None] * n)
                continue
            if tuple(s.shape) != want:
                raise ValueError(f"{type(self).__name__}: initial state of shape {tuple(s.shape)}, expected {want}")
            if isinstance(s, Tensor) and s.requires_grad:
                out.append([s[k] for k in range(n)])
            else:
                out.append([_data(s)[k] for k in range(n)])
        return out[0], out[1]

    def forward(self, x, lengths=None, mask=None, state=None):
        """Run the layer.

        Args:
            x: (N, T, D) array/tensor (batch first), or a list of T per-step (N, D) inputs.
            lengths: (N,) integers, or ``mask``: (N, T) booleans (True at real tokens); neither
                means every sequence has length T.
            state: initial state -- LSTM: (h0, c0), GRU: h0 -- each of shape
                (num_layers · num_directions, N, H), index ``layer · num_directions + direction``;
                None for zeros.
        Returns:
            ``(output, h_n)`` for a GRU, ``(output, (h_n, c_n))`` for an LSTM: ``output`` (N, T,
            H · num_directions), zero at padded positions (the two directions concatenated along the
            last axis), and the final states (num_layers · num_directions, N, H) -- forward
            direction: the state after each sequence's own last token; reverse direction: after
            its first token.
        """
        outs, finals = self.forward_steps(x, lengths, mask, state, outputs=True)
        out = F.stack(outs, axis=1)
        N = _data(outs[0]).shape[0]
        hs = [self._state_or_zero(h, N) for h, _ in finals]
        h_n = F.stack(hs, axis=0)
        if not self.has_cell_state:
            return out, h_n
        cs = [self._state_or_zero(c, N) for _, c in finals]
        return out, (h_n, F.stack(cs, axis=0))

    def _state_or_zero(self, s, N):
        if s is not None:
            return s
        return np.zeros((N, self.hidden_size), dtype=self.cells[0].weight_ih.dtype)

    def extra_repr(self):
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"bidirectional={self.bidirectional}, dropout={self.dropout}")


class LSTM(_Recurrent):
    r"""A (multi-layer, optionally bidirectional) LSTM over padded batches; every step is
    :class:`LSTMCell` (see its docstring for the gate equations and their derivatives).

    With a mask, each step of each sequence is ``(h, c) = where(m_t, cell(x_t, h, c), (h, c))``:
    where m_t is False the state passes unchanged and ``where``'s rule sends the gradient straight
    to the previous state (x̄ = g ⊙ [m], ȳ = g ⊙ [¬m]), so the masked step's gates get zero gradient.
    The reverse direction runs t = T−1 … 0, so it starts at each sequence's own last token (the
    steps before it are masked and keep the initial state).  Layer l > 0 reads the concatenated
    outputs of both directions of layer l − 1 (with dropout between layers when training).

    >>> import numpy as np
    >>> lstm = LSTM(3, 5, bidirectional=True, rng=0)
    >>> out, (h_n, c_n) = lstm(np.ones((2, 4, 3), dtype=np.float32), lengths=[4, 2])
    >>> out.shape, h_n.shape
    ((2, 4, 10), (2, 2, 5))
    """
    cell_class = LSTMCell
    has_cell_state = True

    def __init__(self, input_size, hidden_size, num_layers=1, bidirectional=False, dropout=0.0, bias=True,
                 forget_bias=1.0, rng=None, dtype=None):
        super().__init__(input_size, hidden_size, num_layers, bidirectional, dropout, bias, rng, dtype,
                         forget_bias=forget_bias)

    def forward(self, x, lengths=None, mask=None, state=None):
        """Run the layer (arguments and results as :meth:`_Recurrent.forward`).

        Each layer and direction is one :func:`~chainrule.ops.lstm.lstm_sequence` op (the input
        projection of all steps, the recurrence and its backward sweep through time in one graph
        node, time-major inside); outputs at masked steps are zeroed by one ``where``.  The cell loop
        (one :class:`LSTMCell` step per time step, :meth:`_Recurrent.forward_steps`) is used for a
        list of constant per-step inputs and for an initial state or input that requires grad in a
        dtype other than the parameters' (the op needs one dtype); the two give the same numbers to
        rounding."""
        r = self._fused(x, lengths, mask, state)
        if r is None:
            return super().forward(x, lengths, mask, state)
        top, finals, _ = r
        out = F.transpose(top, (1, 0, 2))
        return out, (F.stack([h for h, _ in finals], axis=0), F.stack([c for _, c in finals], axis=0))

    def forward_steps(self, x, lengths=None, mask=None, state=None, outputs=True):
        """As :meth:`_Recurrent.forward_steps`, through the fused op where :meth:`forward` uses it:
        the per-step outputs are rows of its time-major result."""
        r = self._fused(x, lengths, mask, state)
        if r is None:
            return super().forward_steps(x, lengths, mask, state, outputs)
        top, finals, T = r
        return ([top[t] for t in range(T)] if outputs else None), finals

    def _fused(self, x, lengths, mask, state):
        """(top layer's outputs (T, N, H·dirs), [(h_T, c_T) per layer and direction], T) through
        lstm_sequence, or None where the cell loop runs instead."""
        name = type(self).__name__
        dt = self.cells[0].weight_ih.dtype
        if isinstance(x, (list, tuple)):
            if not any(isinstance(v, Tensor) and v.requires_grad for v in x):
                return None
            xs, N, T, D = _steps(x, name)
            if any(isinstance(v, Tensor) and v.requires_grad and v.dtype != dt for v in xs):
                return None
            x, batch_first = F.stack([match_dtype(v, dt, name) for v in xs], axis=0), False
        else:
            x = match_dtype(x if isinstance(x, Tensor) else np.asarray(x), dt, name)
            if x.ndim != 3:
                raise ValueError(f"{name}: input of shape {x.shape}, expected (N, T, D) (batch first)")
            N, T, D = x.shape
            batch_first = True
            if not (isinstance(x, Tensor) and x.requires_grad):
                x = _data(x)
        if D != self.input_size:
            raise ValueError(f"{name}(input_size={self.input_size}): input steps of size {D}")
        h0s, c0s = self._initial(state, N)
        if T == 0 or any(isinstance(s, Tensor) and s.requires_grad and s.dtype != dt for s in h0s + c0s) \
                or (isinstance(x, Tensor) and x.dtype != dt):
            return None
        h0s, c0s = ([s if s is None or isinstance(s, Tensor) else np.asarray(s, dtype=dt) for s in ss]
                    for ss in (h0s, c0s))
        m = _full_mask(lengths, mask, N, T, name)
        if m is not None and m.all():
            m = None
        live = None if m is None else np.ascontiguousarray(m.T[:, :, None])
        nd, H = self.num_directions, self.hidden_size
        finals = []
        inp = x
        for layer in range(self.num_layers):
            outs = []
            for d in range(nd):
                k = layer * nd + d
                cell = self.cells[k]
                Y = lstm_sequence(inp, cell.weight_ih, cell.bias, cell.weight_hh, h0s[k], c0s[k], mask=m,
                                  reverse=d == 1, batch_first=batch_first)
                seq = Y[0:T] if d == 1 else Y[1:T + 1]             # time-major outputs (the kept state
                finals.append((Y[0] if d == 1 else Y[T], Y[T + 1]))   # at masked steps: zeroed below)
                outs.append(seq if live is None else F.where(live, seq, 0.0))
            inp = outs[0] if nd == 1 else F.concat(outs, axis=2)
            batch_first = False
            if layer < self.num_layers - 1 and self.dropout and self.training:
                # the same draws as the cell loop's, one (N, H·dirs) block per step in time order
                keep = (self.rng.random((T, N, H * nd)) >= self.dropout).astype(dt) * dt.type(1.0 / (1.0 - self.dropout))
                inp = inp * keep
        return inp, finals, T


class GRU(_Recurrent):
    r"""A (multi-layer, optionally bidirectional) GRU over padded batches; every step is
    :class:`GRUCell` (see its docstring for the equations and their derivatives); masking,
    directions and layers as in :class:`LSTM`.  ``forward`` returns ``(output, h_n)``."""
    cell_class = GRUCell
    has_cell_state = False
