"""LSTM, GRU, attention (issue 7): gradient checks in float64 with masks and variable lengths, padding
invariance, bidirectional = two reversed passes, the causal mask property, and a smoke training run of
``chainrule train sequence`` through its command function."""

import numpy as np
import pytest

import chainrule as cr
from chainrule.gradcheck import gradcheck_params
from chainrule.nn.attention import AttentionPooling, MultiHeadAttention, causal_mask
from chainrule.nn.recurrent import GRU, LSTM, GRUCell, LSTMCell, lengths_to_mask
from chainrule.tensor import Tensor

LENGTHS = np.array([5, 3, 1, 4])          # N = 4, T = 5: full, padded, a single token, padded


def _t(a, grad=True):
    return Tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def _sig(a):
    return 1 / (1 + np.exp(-a))


# ------------------------------------------------------------------------------------ cells
def test_lstm_cell_matches_the_equations():
    rng = np.random.default_rng(0)
    cell = LSTMCell(3, 4, rng=0).to(np.float64)
    x, h, c = rng.standard_normal((2, 3)), rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    h2, c2 = cell(x, (h, c))
    z = x @ cell.weight_ih.data + h @ cell.weight_hh.data + cell.bias.data
    i, f, o, g = _sig(z[:, :4]), _sig(z[:, 4:8]), _sig(z[:, 8:12]), np.tanh(z[:, 12:])
    cr_ = f * c + i * g
    np.testing.assert_allclose(c2.data, cr_, atol=1e-12)
    np.testing.assert_allclose(h2.data, o * np.tanh(cr_), atol=1e-12)
    np.testing.assert_allclose(cell.bias.data[4:8], 1.0)          # forget-gate bias


def test_gru_cell_matches_the_equations():
    rng = np.random.default_rng(1)
    cell = GRUCell(3, 4, rng=0).to(np.float64)
    x, h = rng.standard_normal((2, 3)), rng.standard_normal((2, 4))
    h2 = cell(x, h)
    u = x @ cell.weight_ih.data + cell.bias_ih.data
    v = h @ cell.weight_hh.data + cell.bias_hh.data
    r, z = _sig(u[:, :4] + v[:, :4]), _sig(u[:, 4:8] + v[:, 4:8])
    n = np.tanh(u[:, 8:] + r * v[:, 8:])
    np.testing.assert_allclose(h2.data, (1 - z) * n + z * h, atol=1e-12)
    np.testing.assert_allclose(cell(x).data, cell(x, np.zeros((2, 4))).data, atol=1e-12)   # None = zero state


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("zero_state", [False, True])
def test_cells_gradcheck_with_mask(kind, zero_state):
    rng = np.random.default_rng(2)
    cell = (LSTMCell if kind == "lstm" else GRUCell)(3, 4, rng=0).to(np.float64)
    mask = np.array([True, False, True])
    x, h, c = _t(rng.standard_normal((3, 3))), _t(rng.standard_normal((3, 4))), _t(rng.standard_normal((3, 4)))
    r = rng.standard_normal((3, 8))

    def loss():
        if kind == "lstm":
            h2, c2 = cell(x, None if zero_state else (h, c), mask=mask)
            return (cr.concat([h2, c2], axis=1) * r).sum()
        return (cell(x, None if zero_state else h, mask=mask) * r[:, :4]).sum()
    named = list(cell.named_parameters()) + [("x", x)]
    if not zero_state:
        named += [("h", h)] + ([("c", c)] if kind == "lstm" else [])
    rep = gradcheck_params(loss, named)
    assert rep.ok, str(rep)


def test_masked_cell_step_keeps_the_state_and_blocks_the_gradient():
    cell = LSTMCell(2, 3, rng=0).to(np.float64)
    x, h, c = _t(np.ones((2, 2))), _t(np.full((2, 3), 0.5)), _t(np.full((2, 3), -0.5))
    h2, c2 = cell(x, (h, c), mask=np.array([True, False]))
    np.testing.assert_array_equal(h2.data[1], h.data[1])
    np.testing.assert_array_equal(c2.data[1], c.data[1])
    (h2.sum() + c2.sum()).backward()
    assert np.all(x.grad[1] == 0) and np.all(h.grad[1] == 1) and np.all(c.grad[1] == 1)
    assert np.any(x.grad[0] != 0)


# ------------------------------------------------------------------------------------ sequence layers
def _layer(kind, **kw):
    return (LSTM if kind == "lstm" else GRU)(3, 4, rng=0, **kw).to(np.float64)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional,layers", [(False, 1), (True, 2)])
def test_layer_gradcheck_variable_lengths_and_initial_state(kind, bidirectional, layers):
    rng = np.random.default_rng(3)
    rnn = (LSTM if kind == "lstm" else GRU)(2, 3, rng=0, bidirectional=bidirectional, num_layers=layers).to(np.float64)
    nd = 2 if bidirectional else 1
    lens = np.array([4, 2, 1])                  # full, padded, one token
    N, T = len(lens), lens.max()
    x = _t(rng.standard_normal((N, T, 2)))
    h0 = _t(rng.standard_normal((layers * nd, N, 3)) * 0.5)
    c0 = _t(rng.standard_normal((layers * nd, N, 3)) * 0.5)
    r = rng.standard_normal((N, T, 3 * nd))
    rh = rng.standard_normal((layers * nd, N, 3))

    def loss():
        out, st = rnn(x, lengths=lens, state=(h0, c0) if kind == "lstm" else h0)
        hn = st[0] if kind == "lstm" else st
        extra = (st[1] * rh).sum() if kind == "lstm" else 0.0
        return (out * r).sum() + (hn * rh).sum() + extra
    named = list(rnn.named_parameters()) + [("x", x), ("h0", h0)] + ([("c0", c0)] if kind == "lstm" else [])
    rep = gradcheck_params(loss, named)
    assert rep.ok, str(rep)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_padding_gets_zero_gradient_and_does_not_change_the_result(kind):
    rng = np.random.default_rng(4)
    rnn = _layer(kind, bidirectional=True, num_layers=2)
    N, T = len(LENGTHS), LENGTHS.max()
    mask = lengths_to_mask(LENGTHS, T)
    x = _t(rng.standard_normal((N, T, 3)))
    r = rng.standard_normal((N, T, 8))

    def run(xx):
        out, st = rnn(xx, mask=mask)
        hn = st[0] if kind == "lstm" else st
        return (out * r).sum() + hn.sum()
    loss = run(x)
    loss.backward()
    assert np.all(x.grad[~mask] == 0.0)
    assert np.all(np.abs(x.grad[mask]).sum(axis=-1) > 0)
    for p in rnn.parameters():
        p.grad = None
    noisy = x.data.copy()
    noisy[~mask] = rng.standard_normal((int((~mask).sum()), 3)) * 1e3
    out2, _ = rnn(noisy, mask=mask)
    out1, _ = rnn(x.data, mask=mask)
    np.testing.assert_array_equal(out1.data, out2.data)
    assert np.all(out1.data[~mask] == 0.0)
    assert float(run(_t(noisy)).item()) == float(loss.item())     # same (fused) path as x: bitwise equal


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_final_state_is_the_state_at_each_sequences_own_last_token(kind):
    rng = np.random.default_rng(5)
    rnn = _layer(kind, bidirectional=True)
    N, T = len(LENGTHS), LENGTHS.max()
    x = rng.standard_normal((N, T, 3))
    out, st = rnn(x, lengths=LENGTHS)
    hn = (st[0] if kind == "lstm" else st).data
    for n, L in enumerate(LENGTHS):
        o1, s1 = rnn(x[n:n + 1, :L])                       # the sequence alone, unpadded
        h1 = (s1[0] if kind == "lstm" else s1).data
        np.testing.assert_allclose(hn[:, n], h1[:, 0], atol=1e-12)
        np.testing.assert_allclose(out.data[n, :L], o1.data[0], atol=1e-12)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_bidirectional_equals_two_reversed_passes(kind):
    rng = np.random.default_rng(6)
    bi = _layer(kind, bidirectional=True)
    fw, bw = _layer(kind), _layer(kind)
    for dst, src in ((fw, bi.cells[0]), (bw, bi.cells[1])):
        for (_, p), (_, q) in zip(dst.cells[0].named_parameters(), src.named_parameters()):
            p.data[...] = q.data
    N, T = len(LENGTHS), LENGTHS.max()
    x = rng.standard_normal((N, T, 3))
    out, st = bi(x, lengths=LENGTHS)
    out_f, st_f = fw(x, lengths=LENGTHS)
    rev = np.zeros_like(x)                                  # each sequence reversed within its length
    for n, L in enumerate(LENGTHS):
        rev[n, :L] = x[n, :L][::-1]
    out_b, st_b = bw(rev, lengths=LENGTHS)
    back = np.zeros_like(out_b.data)
    for n, L in enumerate(LENGTHS):
        back[n, :L] = out_b.data[n, :L][::-1]
    np.testing.assert_allclose(out.data[..., :4], out_f.data, atol=1e-12)
    np.testing.assert_allclose(out.data[..., 4:], back, atol=1e-12)
    h = (lambda s: s[0] if kind == "lstm" else s)
    np.testing.assert_allclose(h(st).data[0], h(st_f).data[0], atol=1e-12)
    np.testing.assert_allclose(h(st).data[1], h(st_b).data[0], atol=1e-12)


def test_list_input_equals_tensor_input_and_no_mask_equals_full_lengths():
    rng = np.random.default_rng(7)
    rnn = _layer("lstm", num_layers=2)
    x = rng.standard_normal((2, 4, 3))
    a, _ = rnn(x)
    b, _ = rnn([x[:, t] for t in range(4)], lengths=[4, 4])
    np.testing.assert_allclose(a.data, b.data, atol=1e-13)


def test_errors_name_the_layer_and_shapes():
    rnn = _layer("lstm")
    with pytest.raises(ValueError, match="LSTM.*input_size=3"):
        rnn(np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match="lengths or mask"):
        rnn(np.zeros((2, 4, 3)), lengths=[4, 4], mask=np.ones((2, 4), bool))
    with pytest.raises(ValueError, match="initial state"):
        rnn(np.zeros((2, 4, 3)), state=(np.zeros((1, 3, 4)), np.zeros((1, 3, 4))))


# ------------------------------------------------------------------------------------ attention
def test_multihead_attention_matches_numpy_and_gradchecks_with_masks():
    rng = np.random.default_rng(8)
    E, h, N, T = 6, 2, 3, 5
    mha = MultiHeadAttention(E, h, rng=0).to(np.float64)
    x = _t(rng.standard_normal((N, T, E)))
    pad = ~lengths_to_mask(np.array([5, 3, 2]), T)
    y = mha(x, key_padding_mask=pad, causal=True).data
    # reference
    P = {n: p.data for n, p in mha.named_parameters()}
    Q = (x.data @ P["q_proj.weight"] + P["q_proj.bias"]).reshape(N, T, h, 3).transpose(0, 2, 1, 3)
    K = (x.data @ P["k_proj.weight"] + P["k_proj.bias"]).reshape(N, T, h, 3).transpose(0, 2, 1, 3)
    V = (x.data @ P["v_proj.weight"] + P["v_proj.bias"]).reshape(N, T, h, 3).transpose(0, 2, 1, 3)
    S = Q @ K.transpose(0, 1, 3, 2) / np.sqrt(3)
    allowed = ~pad[:, None, None, :] & causal_mask(T)[None, None]
    S = np.where(allowed, S, -np.inf)
    A = np.exp(S - S.max(-1, keepdims=True))
    A /= A.sum(-1, keepdims=True)
    O = (A @ V).transpose(0, 2, 1, 3).reshape(N, T, E)
    np.testing.assert_allclose(y, O @ P["out_proj.weight"] + P["out_proj.bias"], atol=1e-12)
    r = rng.standard_normal((N, T, E))
    kv = _t(rng.standard_normal((N, 4, E)))
    pad2 = ~lengths_to_mask(np.array([4, 2, 1]), 4)
    rep = gradcheck_params(lambda: (mha(x, key_padding_mask=pad, causal=True) * r).sum()
                           + (mha(x, kv, kv, key_padding_mask=pad2) * r).sum(),
                           list(mha.named_parameters()) + [("x", x), ("kv", kv)])
    assert rep.ok, str(rep)


def test_attention_causal_mask_property():
    rng = np.random.default_rng(9)
    mha = MultiHeadAttention(4, 2, rng=0).to(np.float64)
    x = rng.standard_normal((2, 6, 4))
    y = mha(x, causal=True).data
    for t in range(6):
        x2 = x.copy()
        x2[:, t + 1:] += rng.standard_normal(x2[:, t + 1:].shape)
        np.testing.assert_array_equal(mha(x2, causal=True).data[:, :t + 1], y[:, :t + 1])
    # and the gradient of the output at t with respect to later inputs is exactly zero
    xt = _t(x)
    mha(xt, causal=True)[:, 2].sum().backward()
    assert np.all(xt.grad[:, 3:] == 0) and np.any(xt.grad[:, :3] != 0)
    assert not np.allclose(mha(x).data[:, :3], y[:, :3])     # without the mask the future leaks in


def test_attention_pooling_gradcheck_mask_and_padding():
    rng = np.random.default_rng(10)
    N, T = len(LENGTHS), LENGTHS.max()
    mask = lengths_to_mask(LENGTHS, T)
    for size in (None, 3):
        pool = AttentionPooling(4, size, rng=0).to(np.float64)
        h = _t(rng.standard_normal((N, T, 4)))
        r = rng.standard_normal((N, 4))
        rep = gradcheck_params(lambda pool=pool, h=h, r=r: (pool(h, mask=mask) * r).sum(),
                               list(pool.named_parameters()) + [("h", h)])
        assert rep.ok, str(rep)
        h.grad = None
        y, alpha = pool(h, lengths=LENGTHS, return_weights=True)
        (y * r).sum().backward()
        assert np.all(alpha.data[~mask] == 0) and np.allclose(alpha.data.sum(1), 1)
        assert np.all(h.grad[~mask] == 0)
        np.testing.assert_allclose(y.data[2], h.data[2, 0], atol=1e-12)     # one token: its own vector


def test_sequence_attention_stack_gradchecks():
    """LSTM outputs → self-attention (padding + causal) → pooling, end to end."""
    rng = np.random.default_rng(11)
    lstm = LSTM(3, 4, rng=0).to(np.float64)
    mha = MultiHeadAttention(4, 2, rng=1).to(np.float64)
    pool = AttentionPooling(4, rng=2).to(np.float64)
    N, T = len(LENGTHS), LENGTHS.max()
    mask = lengths_to_mask(LENGTHS, T)
    x = rng.standard_normal((N, T, 3))
    r = rng.standard_normal((N, 4))

    def loss():
        out, _ = lstm(x, mask=mask)
        return (pool(mha(out, key_padding_mask=~mask, causal=True), mask=mask) * r).sum()
    named = [(f"lstm.{n}", p) for n, p in lstm.named_parameters()] + \
            [(f"mha.{n}", p) for n, p in mha.named_parameters()] + [(f"pool.{n}", p) for n, p in pool.named_parameters()]
    rep = gradcheck_params(loss, named)
    assert rep.ok, str(rep)


# ------------------------------------------------------------------------------------ model + command


@pytest.mark.parametrize("bidirectional,lengths", [(False, None), (True, [4, 2])])
def test_lstm_constant_input_projection_gradcheck(bidirectional, lengths):
    """A constant (N, T, D) input: the layer projects all steps at once (X W_ih + b, one matmul and
    one add); the weights' gradients still match finite differences, with masks and both directions."""
    rng = np.random.default_rng(8)
    lstm = LSTM(3, 4, rng=0, bidirectional=bidirectional).to(np.float64)
    x = rng.standard_normal((2, 4, 3))
    r = rng.standard_normal((2, 4, 8 if bidirectional else 4))

    def loss():
        out, (h_n, c_n) = lstm(x, lengths=lengths)
        return (out * r).sum() + (h_n * h_n).sum() + c_n.sum()
    rep = gradcheck_params(loss, list(lstm.named_parameters()))
    assert rep.ok, str(rep)
