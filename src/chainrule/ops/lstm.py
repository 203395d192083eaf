r"""One LSTM layer and direction over all time steps as one graph node (``lstm_sequence``).

As per-step cell ops (:class:`chainrule.nn.LSTMCell`) an LSTM costs ~12 graph nodes a step, and
its weight gradients come as T small GEMMs and sums.  Here the whole sequence is one op: the forward
projects the inputs of all steps at once (X W_ih + b: one GEMM, one add), then runs the T steps in
NumPy into preallocated time-major buffers (the gates, the cells and their tanh: what the backward
needs); the VJP runs the sweep back through time (the derivation is :class:`chainrule.nn.LSTMCell`'s
docstring) and then forms W̄_ih = Xᵀ Ā, W̄_hh = H_prevᵀ Ā, b̄ = Σ Ā and x̄ = Ā W_ihᵀ as one GEMM or
sum each over all steps -- what a hand-written BPTT does.

Layout, for T steps, batch N, input D, hidden H (gates i, f, o, g side by side, as LSTMCell):

* ``x`` (N, T, D) (``batch_first``) or (T, N, D);  ``w_ih`` (D, 4H), ``b`` (4H,) or None,
  ``w`` = W_hh (H, 4H);  ``h0``, ``c0`` (N, H) or None (zero).
* output ``Y`` (T + 2, N, H): the hidden states and the final cell state.  Forward direction:
  Y[0] = h0, Y[t + 1] = h_t, Y[T + 1] = c of the last step.  Reverse direction (t = T−1 … 0):
  Y[t] = h_t, Y[T] = h0, Y[T + 1] = c after step 0.  So the outputs are one contiguous block
  (Y[1:T+1] or Y[0:T]), the final hidden state is Y[T] (forward) or Y[0] (reverse), and the
  previous states of all steps are the other contiguous block (the GEMM for W̄_hh reads it in place).
* ``hold`` (T, N, 1) booleans, True at masked steps (the public function takes the (N, T) mask,
  True at real tokens): a masked step keeps the state (h_t = h_{t−1}, c_t = c_{t−1}), so its gates
  get zero gradient and h̄, c̄ pass through it unchanged.  Outputs at masked steps are the kept state
  here; the layer zeroes them with ``where``.

Speed notes (what the forward and the sweep do, all in place, ``out=``): σ(a) = ½ + ½ tanh(a/2),
with the halving folded into the sigmoid gates' columns of W_ih, b and W_hh (exact: a power of two),
so a step's gates are one GEMM (h W_hh) added to the step's row of the projection, one ``tanh`` over the four blocks and two broadcast
ops; the backward's per-element factors (σ' ⊙ the other factor, o ⊙ (1 − tanh² c), f) are computed
for all steps at once before the sweep (a few passes over contiguous (T, N, ·) arrays), so a step of
the sweep is seven small elementwise ops and the GEMM ā_t W_hhᵀ (W_hhᵀ copied once: a transposed
operand is ~45% slower here).  Per-step slices are rows of time-major buffers: NumPy pays ~3x for
an (N, H) block strided out of (N, 4H) rows, so only the gate blocks are.  Every NumPy call writes
into arrays the rule owns, so ``cr.compile`` records the rule and replays it on its buffers.
"""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor, apply
from . import rules as _R
from .rules import defop, xp

__all__ = ["lstm_sequence"]

_VECS = {}


def _vecs(H, dtype):
    """(a, b), each (4H,): a = b = ½ on the sigmoid gates' columns (i, f, o), a = 1, b = 0 on g's --
    so tanh(a z) a + b is σ(z) on the first 3H columns and tanh(z) on the last H."""
    key = (H, np.dtype(dtype))
    v = _VECS.get(key)
    if v is None:
        a = np.ones(4 * H, dtype)
        a[:3 * H] = 0.5
        b = np.zeros(4 * H, dtype)
        b[:3 * H] = 0.5
        a.flags.writeable = b.flags.writeable = False      # shared by every call
        v = _VECS[key] = (a, b)
    return v


def _rows(T, reverse):
    """(steps in the forward's processing order, the row of Y/C written by step t, the row it reads,
    the row of the initial state)."""
    if reverse:
        return range(T - 1, -1, -1), (lambda t: t), (lambda t: t + 1), T
    return range(T), (lambda t: t + 1), (lambda t: t), 0


def _lstm_sequence(x, w_ih, b, w, h0, c0, *, hold=None, reverse=False, batch_first=True):
    """For t = 0 … T−1 (T−1 … 0 when reverse), from (h, c) = (h0, c0) (zero if None):
    a = x_t W_ih + b + h W_hh,  [i f o] = σ(a_ifo),  g = tanh(a_g),  c ← f ⊙ c + i ⊙ g,  h ← o ⊙ tanh(c)
    (where ``hold``[t] is True the step keeps h and c); Y stacks h0, the h_t and the last c   |
    backward through time with c̄, h̄ the total gradients of the state after step t (Y's rows plus
    what step t+1 sends back): c̄ += h̄ ⊙ o ⊙ (1 − tanh² c),  ā = [c̄ ⊙ g ⊙ i(1−i), c̄ ⊙ c_prev ⊙ f(1−f),
    h̄ ⊙ tanh(c) ⊙ o(1−o), c̄ ⊙ i ⊙ (1 − g²)] (0 at held rows),  h̄_prev = ā W_hhᵀ (+ h̄ at held
    rows),  c̄_prev = c̄ ⊙ f (c̄ at held rows);  x̄_t = ā_t W_ihᵀ,  W̄_ih = Σ_t x_tᵀ ā_t,
    W̄_hh = Σ_t h_prevᵀ ā_t,  b̄ = Σ_t Σ_n ā_t (one GEMM / sum each),  h̄0, c̄0 what reaches the initial state   |
    ȧ = ẋ_t W_ih + x_t Ẇ_ih + ḃ + ḣ W_hh + h Ẇ_hh,  ċ ← ḟ ⊙ c + f ⊙ ċ + i̇ ⊙ g + i ⊙ ġ,  ḣ ← ȯ ⊙ tanh(c) + o ⊙ (1 − tanh² c) ⊙ ċ
    (σ̇ = σ(1−σ) ȧ, ṫanh = (1 − tanh²) ȧ; held rows keep ḣ, ċ)"""
    if batch_first:                              # time-major, so every step's rows are contiguous
        N, T, D = x.shape
        X = np.empty_like(x, shape=(T, N, D))
        X[...] = x.transpose(1, 0, 2)
    else:
        T, N, D = x.shape
        X = x
    G = w.shape[1]
    H = G // 4
    sa, sb = _vecs(H, x.dtype)
    # a/2 on the sigmoid gates' columns, exactly (a power of two), by halving those columns of W_ih,
    # b and W_hh: then one tanh per step gives tanh(a/2) there (σ(a) = ½ + ½ tanh(a/2)) and tanh(a_g)
    w_s = np.multiply(w, sa)
    A = np.empty_like(x, shape=(T, N, G))        # (x_t W_ih + b)/2 of all steps (one GEMM, one add), then
    np.matmul(X.reshape(T * N, D), np.multiply(w_ih, sa), out=A.reshape(T * N, G))   # step by step
    if b is not None:                                                           # the gates i, f, o, g
        np.add(A, np.multiply(b, sa), out=A)
    Y = np.empty_like(x, shape=(T + 2, N, H))
    C = np.empty_like(x, shape=(T + 1, N, H))
    TC = np.empty_like(x, shape=(T, N, H))       # tanh(c_t)
    tmp = np.empty_like(x, shape=(N, H))
    hw = np.empty_like(x, shape=(N, G))
    order, row, prev, r0 = _rows(T, reverse)
    if h0 is None:
        Y[r0].fill(0)
    else:
        Y[r0] = h0
    if c0 is None:
        C[r0].fill(0)
    else:
        C[r0] = c0
    for t in order:
        r, p = row(t), prev(t)
        z = A[t]
        np.matmul(Y[p], w_s, out=hw)
        np.add(z, hw, out=z)
        np.tanh(z, out=z)
        np.multiply(z, sa, out=z)               # σ(a) = ½ + ½ tanh(a/2); tanh(a_g) as it is
        np.add(z, sb, out=z)
        ct = C[r]
        np.multiply(z[:, H:2 * H], C[p], out=ct)            # c = f ⊙ c + i ⊙ g
        np.multiply(z[:, :H], z[:, 3 * H:], out=tmp)
        np.add(ct, tmp, out=ct)
        tc = TC[t]
        np.tanh(ct, out=tc)
        np.multiply(z[:, 2 * H:3 * H], tc, out=Y[r])          # h = o ⊙ tanh(c)
        if hold is not None and hold[t].any():
            np.positive(Y[p], out=Y[r], where=hold[t])        # a masked step keeps the state
            np.positive(C[p], out=C[r], where=hold[t])
    Y[T + 1] = C[0] if reverse else C[T]
    return Y, (x, w_ih, b, w, h0, c0, Y, (X, A, C, TC), hold, reverse, batch_first)


def _lstm_sequence_vjp(g, n, x, w_ih, b, w, h0, c0, ans, cache, hold, reverse, batch_first):
    if cache is None or type(g) is Tensor:       # create_graph: the same sweep on differentiable ops
        return _vjp_steps(g, n, x, w_ih, b, w, h0, c0, hold, reverse, batch_first)
    X, A, C, TC = cache
    T, N, G = A.shape
    H = G // 4
    order, row, prev, r0 = _rows(T, reverse)
    # the per-element factors of every step at once: P = σ'/tanh' of the gates times the other factor
    P = np.subtract(1, A)
    np.multiply(P, A, out=P)                     # s(1 − s) on i, f, o
    np.multiply(A[..., 3 * H:], A[..., 3 * H:], out=P[..., 3 * H:])
    np.subtract(1, P[..., 3 * H:], out=P[..., 3 * H:])                              # 1 − g² on g
    np.multiply(P[..., :H], A[..., 3 * H:], out=P[..., :H])                         # ⊙ g  (ā_i = c̄ ⊙ ·)
    np.multiply(P[..., H:2 * H], C[1:] if reverse else C[:T], out=P[..., H:2 * H])   # ⊙ c_prev (ā_f)
    np.multiply(P[..., 2 * H:3 * H], TC, out=P[..., 2 * H:3 * H])                   # ⊙ tanh c (ā_o = h̄ ⊙ ·)
    np.multiply(P[..., 3 * H:], A[..., :H], out=P[..., 3 * H:])                     # ⊙ i  (ā_g = c̄ ⊙ ·)
    Q = np.multiply(TC, TC)
    np.subtract(1, Q, out=Q)
    np.multiply(Q, A[..., 2 * H:3 * H], out=Q)   # o ⊙ (1 − tanh² c)
    F = A[..., H:2 * H].copy()                   # f (c̄_prev = c̄ ⊙ f)
    if hold is not None:
        live = (~hold).astype(A.dtype)           # held rows: no gate gradient, c̄ and h̄ pass through
        np.multiply(P, live, out=P)
        np.multiply(Q, live, out=Q)
        np.multiply(F, live, out=F)
        np.add(F, hold.astype(A.dtype), out=F)
    whT = w.T.copy()
    P4 = P.reshape(T, N, 4, H)
    dc = g[T + 1].copy()                         # c̄ of the last step's cell
    dh = dh2 = tmp = None
    last = None
    for t in order[::-1]:
        r = row(t)
        if last is None:
            dh = g[r].copy()
            dh2 = np.empty_like(dh)
            tmp = np.empty_like(dh)
        else:
            np.matmul(P[last], whT, out=dh2)     # h̄ from step `last`: ā W_hhᵀ (+ h̄ where held)
            if hold is not None and hold[last].any():
                np.add(dh2, dh, out=dh2, where=hold[last])
            np.add(dh2, g[r], out=dh2)
            dh, dh2 = dh2, dh
        np.multiply(dh, Q[t], out=tmp)
        np.add(dc, tmp, out=dc)                  # c̄ += h̄ ⊙ o ⊙ (1 − tanh² c)
        np.multiply(P4[t, :, 0:2], dc[:, None], out=P4[t, :, 0:2])      # ā_i, ā_f
        np.multiply(P4[t, :, 2], dh, out=P4[t, :, 2])                   # ā_o
        np.multiply(P4[t, :, 3], dc, out=P4[t, :, 3])                   # ā_g
        np.multiply(dc, F[t], out=dc)                                   # c̄_prev
        last = t
    gh0 = gw = None
    if n[4]:
        gh0 = np.matmul(P[last], whT)
        if hold is not None and hold[last].any():
            np.add(gh0, dh, out=gh0, where=hold[last])
        np.add(gh0, g[r0], out=gh0)
    P2 = P.reshape(T * N, G)
    if n[3]:
        Hp = ans[1:T + 1] if reverse else ans[:T]            # the previous state of every step
        gw = np.matmul(Hp.reshape(T * N, H).T, P2)
    gx = None
    if n[0]:
        gx = np.matmul(P2, w_ih.T).reshape(X.shape)
        if batch_first:
            gx = gx.transpose(1, 0, 2)
    return (gx, np.matmul(X.reshape(T * N, X.shape[2]).T, P2) if n[1] else None,
            P2.sum(axis=0) if n[2] else None, gw, gh0, dc if n[5] else None)


# ------------------------------------------------------------------ the differentiable form
def _stack(xs):
    if any(type(x) is Tensor for x in xs):
        return apply(_R.STACK, tuple(xs), {"axis": 0})
    return np.stack(xs)


def _cat(xs):
    if any(type(x) is Tensor for x in xs):
        return apply(_R.CONCAT, tuple(xs), {"axis": 1})
    return np.concatenate(xs, axis=1)


def _zeros(N, H, x):
    return np.zeros((N, H), dtype=(x.data if type(x) is Tensor else x).dtype)


def _dims(x, w, batch_first):
    """(T, N, H, G) and the step-t slice of x."""
    if batch_first:
        N, T = x.shape[:2]
        at = lambda t: x[:, t]          # noqa: E731
    else:
        T, N = x.shape[:2]
        at = lambda t: x[t]             # noqa: E731
    G = w.shape[1]
    return T, N, G // 4, G, at


def _steps(x, w_ih, b, w, h0, c0, hold, reverse, batch_first):
    """The forward with the namespace's ops, step by step: per step t (i, f, o, g, c_prev, tanh c, h_prev,
    the live mask -- None when no row is held, x_t).  h0, c0 None: zeros."""
    T, N, H, G, at = _dims(x, w, batch_first)
    h = _zeros(N, H, x) if h0 is None else h0
    c = _zeros(N, H, x) if c0 is None else c0
    out = [None] * T
    order, _, _, _ = _rows(T, reverse)
    for t in order:
        z = at(t) @ w_ih + h @ w
        if b is not None:
            z = z + b
        s = xp.sigmoid(z[:, :3 * H])
        gg = xp.tanh(z[:, 3 * H:])
        i, f, o = s[:, :H], s[:, H:2 * H], s[:, 2 * H:]
        cn = f * c + i * gg
        tc = xp.tanh(cn)
        hn = o * tc
        live = None
        if hold is not None and hold[t].any():
            live = ~hold[t]
            hn, cn = xp.where(live, hn, h), xp.where(live, cn, c)
        out[t] = (i, f, o, gg, c, tc, h, live, at(t))
        h, c = hn, cn
    return out, h, c


def _vjp_steps(g, n, x, w_ih, b, w, h0, c0, hold, reverse, batch_first):
    """The backward sweep on the namespace's ops (create_graph: every op recorded): the same formulas
    as the in-place sweep."""
    T, N, H, G, _ = _dims(x, w, batch_first)
    st, _, _ = _steps(x, w_ih, b, w, h0, c0, hold, reverse, batch_first)
    order, row, _, r0 = _rows(T, reverse)
    das = [None] * T
    dc = g[T + 1]
    back = None                                  # h̄ sent back by the step processed before
    for t in order[::-1]:
        i, f, o, gg, cp, tc, hp, live, xt = st[t]
        dh = g[row(t)] if back is None else back + g[row(t)]
        part = dh * o * (1 - tc * tc)
        if live is not None:
            m = live.astype(i.dtype)
            part = part * m
        dct = dc + part
        da = _cat([dct * gg * i * (1 - i), dct * cp * f * (1 - f), dh * tc * o * (1 - o), dct * i * (1 - gg * gg)])
        fm = f
        if live is not None:
            da = da * m
            fm = f * m + (1 - m)
        das[t] = da
        back = da @ xp.transpose(w)
        if live is not None:
            back = back + dh * (1 - m)
        dc = dct * fm
    DA = xp.reshape(_stack(das), (T * N, G))

    def wgrad(vs):                               # Σ_t v_tᵀ ā_t as one matmul over the stacked steps
        V = _stack(vs)
        return xp.transpose(xp.reshape(V, (T * N, V.shape[2]))) @ DA
    gx = None
    if n[0]:
        gx = xp.reshape(DA @ xp.transpose(w_ih), (T, N, -1))
        if batch_first:
            gx = xp.transpose(gx, (1, 0, 2))
    return (gx, wgrad([s[8] for s in st]) if n[1] else None, xp.sum(DA, axis=0) if n[2] else None,
            wgrad([s[6] for s in st]) if n[3] else None, back + g[r0] if n[4] else None, dc if n[5] else None)


def _lstm_sequence_jvp(d, x, w_ih, b, w, h0, c0, ans, cache, hold, reverse, batch_first):
    T, N, H, G, _ = _dims(x, w, batch_first)
    z0 = _zeros(N, H, x)
    dx, dwi, db, dw, dh, dc = d
    _, _, _, _, dat = _dims(dx, w, batch_first) if dx is not None else (0, 0, 0, 0, None)
    st, _, _ = _steps(x, w_ih, b, w, h0, c0, hold, reverse, batch_first)
    order, row, _, r0 = _rows(T, reverse)
    rows = [None] * (T + 2)
    dh = z0 if dh is None else dh
    dc = z0 if dc is None else dc
    rows[r0] = dh
    for t in order:
        i, f, o, gg, cp, tc, hp, live, xt = st[t]
        da = dh @ w
        if dx is not None:
            da = da + dat(t) @ w_ih
        if dwi is not None:
            da = da + xt @ dwi
        if db is not None:
            da = da + db
        if dw is not None:
            da = da + hp @ dw
        di = da[:, :H] * i * (1 - i)
        df = da[:, H:2 * H] * f * (1 - f)
        do = da[:, 2 * H:3 * H] * o * (1 - o)
        dg = da[:, 3 * H:] * (1 - gg * gg)
        dcn = df * cp + f * dc + di * gg + i * dg
        dhn = do * tc + o * (1 - tc * tc) * dcn
        if live is not None:
            dhn, dcn = xp.where(live, dhn, dh), xp.where(live, dcn, dc)
        dh, dc = dhn, dcn
        rows[row(t)] = dh
    rows[T + 1] = dc
    return _stack(rows)


LSTM_SEQUENCE = defop("lstm_sequence", _lstm_sequence, _lstm_sequence_vjp, jvp=_lstm_sequence_jvp,
                      derive={"cache": lambda **_: None})


def lstm_sequence(x, w_ih, b, w_hh, h0=None, c0=None, mask=None, reverse=False, batch_first=True):
    """The LSTM of one layer and direction over all steps, as one op.

    a_t = x_t W_ih + b + h_{t−1} W_hh,  [i f o] = σ(a_ifo),  g = tanh(a_g),  c_t = f ⊙ c_{t−1} + i ⊙ g,
    h_t = o ⊙ tanh(c_t)   |   backpropagation through time (:class:`chainrule.nn.LSTMCell`'s
    derivation); W̄_ih = Σ_t x_tᵀ ā_t, W̄_hh = Σ_t h_{t−1}ᵀ ā_t, b̄ = Σ_t Σ_n ā_t, one GEMM or sum each

    Args:
        x: (N, T, D) inputs (``batch_first``), or (T, N, D).
        w_ih: (D, 4H);  b: (4H,) or None;  w_hh: (H, 4H) -- gate blocks i, f, o, g as :class:`~chainrule.nn.LSTMCell`.
        h0, c0: (N, H) initial state, or None for zeros.
        mask: (N, T) booleans, True at real tokens (a masked step keeps h and c), or None.
        reverse: run t = T−1 … 0.

    Returns:
        Tensor (T + 2, N, H), time-major: forward -- [h0, h_0 … h_{T−1}, c_last]; reverse --
        [h_0 … h_{T−1}, h0, c_last] (h_t the state after step t, c_last the cell state after the last
        step processed).

    >>> import numpy as np, chainrule as cr
    >>> from chainrule.ops.lstm import lstm_sequence
    >>> x = cr.tensor(np.ones((2, 3, 1)), requires_grad=True, dtype="float64")    # N = 2, T = 3, D = 1
    >>> W = cr.tensor(np.zeros((1, 4)), dtype="float64")
    >>> Y = lstm_sequence(x, W, None, W)        # a = 0: i = f = o = ½, g = 0, so c = h = 0
    >>> Y.shape, float(np.abs(Y.data).max())
    ((5, 2, 1), 0.0)
    >>> Y[1:4].sum().backward(); x.grad.shape
    (2, 3, 1)
    """
    def arr(v):
        return None if v is None else v.data if isinstance(v, Tensor) else np.asarray(v)
    xd, wi, bd, wd = arr(x), arr(w_ih), arr(b), arr(w_hh)
    if xd.ndim != 3 or wd.ndim != 2 or wi.ndim != 2 or wd.shape[1] != 4 * wd.shape[0] or wi.shape != (xd.shape[2], wd.shape[1]) \
            or (bd is not None and bd.shape != (wd.shape[1],)):
        raise ValueError(f"lstm_sequence: need x (N, T, D) or (T, N, D), W_ih (D, 4H), b (4H,), W_hh (H, 4H); got x "
                         f"{xd.shape}, W_ih {wi.shape}, b {None if bd is None else bd.shape}, W_hh {wd.shape}")
    N, T = xd.shape[:2] if batch_first else xd.shape[1::-1]
    H = wd.shape[0]
    if T < 1:
        raise ValueError("lstm_sequence: a sequence of 0 steps")
    dts = {a.dtype for a in (xd, wi, bd, wd, arr(h0), arr(c0)) if a is not None}
    if len(dts) != 1 or xd.dtype.kind != "f":
        raise TypeError(f"lstm_sequence: the inputs must share one floating dtype, got {sorted(map(str, dts))}")
    for nm, sd in (("h0", arr(h0)), ("c0", arr(c0))):
        if sd is not None and sd.shape != (N, H):
            raise ValueError(f"lstm_sequence: {nm} of shape {sd.shape}, expected ({N}, {H})")
    hold = None
    if mask is not None:
        m = arr(mask)
        if m.dtype != bool or m.shape != (N, T):
            raise ValueError(f"lstm_sequence: mask must be (N, T) = ({N}, {T}) booleans, got {m.shape} {m.dtype}")
        if not m.all():
            hold = np.ascontiguousarray(~m.T[:, :, None])
    return apply(LSTM_SEQUENCE, (x, w_ih, b, w_hh, h0, c0),
                 {"hold": hold, "reverse": bool(reverse), "batch_first": bool(batch_first)})
