"""The fused LSTM sequence op (ops/lstm.py) and nn.LSTM's use of it: gradients against finite
differences in float64 (masks, initial state, reverse, time-major input, no bias), the in-place
backward sweep against the differentiable one, tangents against finite differences, and nn.LSTM's
outputs and gradients against the cell loop it replaces (layers, directions, dropout, lengths,
initial state, an input that requires grad)."""
import numpy as np
import pytest

import chainrule as cr
from chainrule.nn.recurrent import LSTM, _Recurrent
from chainrule.ops.lstm import _lstm_sequence, _lstm_sequence_vjp, _vjp_steps, lstm_sequence
from chainrule.tensor import Tensor

N, T, D, H = 3, 4, 3, 2
MASK = np.array([[True, True, False, False], [False, True, True, True], [True, True, True, True]])


def _inputs(rng, batch_first=True):
    x = rng.standard_normal((N, T, D) if batch_first else (T, N, D))
    return [x, rng.standard_normal((D, 4 * H)) * 0.6, rng.standard_normal(4 * H) * 0.5,
            rng.standard_normal((H, 4 * H)) * 0.6, rng.standard_normal((N, H)), rng.standard_normal((N, H))]


def _weights(shape):
    return np.cos(np.arange(np.prod(shape))).reshape(shape)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("state", ["given", "zero", "no bias"])
def test_gradcheck(batch_first, reverse, masked, state):
    rng = np.random.default_rng([batch_first, reverse, masked, ["given", "zero", "no bias"].index(state)])
    vals = _inputs(rng, batch_first)
    keep = [True] * 6
    if state == "zero":
        keep[4] = keep[5] = False
    if state == "no bias":
        keep[2] = False
    ts = [cr.tensor(v, requires_grad=True, dtype="float64") for v, k in zip(vals, keep) if k]
    wy = _weights((T + 2, N, H))

    def f(*a):
        it = iter(a)
        args = [next(it) if k else None for k in keep]
        return (lstm_sequence(*args, mask=MASK if masked else None, reverse=reverse, batch_first=batch_first) * wy).sum()
    assert cr.gradcheck(f, *ts)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_inplace_sweep_equals_the_differentiable_sweep(reverse, masked):
    """The in-place backward (the fast path) and the sweep on the namespace's ops (create_graph) give
    the same numbers to rounding; the forward's final state equals the step-by-step forward's."""
    rng = np.random.default_rng(5)
    vals = _inputs(rng)
    hold = np.ascontiguousarray(~MASK.T[:, :, None]) if masked else None
    Y, saved = _lstm_sequence(*vals, hold=hold, reverse=reverse, batch_first=True)
    g = rng.standard_normal(Y.shape)
    fast = _lstm_sequence_vjp(g, (True,) * 6, *saved)
    slow = _vjp_steps(g, (True,) * 6, *vals, hold, reverse, True)
    for a, b in zip(fast, slow):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def test_tangents_match_finite_differences():
    rng = np.random.default_rng(6)
    vals = _inputs(rng, batch_first=False)
    dots = [rng.standard_normal(v.shape) for v in vals]

    def f(*a):
        return lstm_sequence(*a, mask=MASK, batch_first=False)
    y, dy = cr.jvp(f, tuple(vals), tuple(dots))
    eps = 1e-6
    with cr.no_grad():
        fd = (f(*[v + eps * d for v, d in zip(vals, dots)]).data - f(*[v - eps * d for v, d in zip(vals, dots)]).data) / (2 * eps)
    np.testing.assert_allclose(dy, fd, rtol=1e-5, atol=1e-8)


def test_the_output_rows():
    """Y = [h0, h_1 … h_T, c_T] forward; [h_1 … h_T, h0, c after step 0] reverse; masked steps keep the state."""
    rng = np.random.default_rng(7)
    x, wi, b, w, h0, c0 = _inputs(rng)
    Y = lstm_sequence(x, wi, b, w, h0, c0, mask=MASK).data
    np.testing.assert_array_equal(Y[0], h0)
    np.testing.assert_array_equal(Y[3, 0], Y[2, 0])            # sequence 0 ends after 2 tokens: kept
    np.testing.assert_array_equal(Y[1, 1], h0[1])              # sequence 1 starts at step 1
    h, c = h0, c0
    for t in range(T):                                         # sequence 2 is unmasked: the equations
        z = x[:, t] @ wi + b + h @ w
        s = 1 / (1 + np.exp(-z[:, :3 * H]))
        c = s[:, H:2 * H] * c + s[:, :H] * np.tanh(z[:, 3 * H:])
        h = s[:, 2 * H:] * np.tanh(c)
        np.testing.assert_allclose(Y[t + 1, 2], h[2], atol=1e-14)
    np.testing.assert_allclose(Y[T + 1, 2], c[2], atol=1e-14)
    R = lstm_sequence(x, wi, b, w, h0, c0, reverse=True).data
    np.testing.assert_array_equal(R[T], h0)


def test_errors_name_the_op():
    rng = np.random.default_rng(8)
    x, wi, b, w, h0, c0 = _inputs(rng)
    with pytest.raises(ValueError, match="lstm_sequence: need x"):
        lstm_sequence(x, wi[:, :4], b, w)
    with pytest.raises(TypeError, match="lstm_sequence: the inputs must share one floating dtype"):
        lstm_sequence(x.astype(np.float32), wi, b, w)
    with pytest.raises(ValueError, match="lstm_sequence: h0 of shape"):
        lstm_sequence(x, wi, b, w, h0[:2])
    with pytest.raises(ValueError, match="lstm_sequence: mask must be"):
        lstm_sequence(x, wi, b, w, mask=MASK.T)


# ------------------------------------------------------------------------------------ nn.LSTM
def _run(lstm, fused, x, lengths, state):
    lstm.rng = np.random.default_rng(5)
    for p in lstm.parameters():
        p.grad = None
    for s in state or ():
        s.grad = None
    if fused:
        out, (h, c) = lstm(x, lengths=lengths, state=state)
    else:                                       # the cell loop: _Recurrent's forward and forward_steps
        lstm.forward_steps = lambda *a, **k: _Recurrent.forward_steps(lstm, *a, **k)
        try:
            out, (h, c) = _Recurrent.forward(lstm, x, lengths=lengths, state=state)
        finally:
            del lstm.forward_steps
    loss = (out * _weights(out.shape)).sum() + (h * 1.3).sum() + (c * 0.7).sum()
    loss.backward()
    grads = [p.grad.copy() for p in lstm.parameters()]
    if isinstance(x, Tensor) and x.requires_grad:
        grads.append(x.grad.copy())
    if isinstance(x, list):
        grads += [v.grad.copy() for v in x]
    grads += [s.grad.copy() for s in state or ()]
    return [out.data.copy(), h.data.copy(), c.data.copy()] + grads


@pytest.mark.parametrize("layers,bidirectional,dropout", [(1, False, 0.0), (2, True, 0.0), (3, False, 0.4),
                                                         (2, True, 0.5)])
@pytest.mark.parametrize("lengths", [None, np.array([4, 2, 1])])
@pytest.mark.parametrize("inp", ["array", "grad", "list", "state"])
def test_nn_lstm_equals_the_cell_loop(layers, bidirectional, dropout, lengths, inp):
    """nn.LSTM (the fused op) against the cell loop it replaced: the same outputs, final states and
    gradients to rounding (float64), the same dropout draws."""
    rng = np.random.default_rng(9)
    lstm = LSTM(D, 5, num_layers=layers, bidirectional=bidirectional, dropout=dropout, rng=1, dtype=np.float64)
    x = rng.standard_normal((N, T, D))
    k = layers * (2 if bidirectional else 1)
    state = None
    if inp == "state":
        state = tuple(Tensor(rng.standard_normal((k, N, 5)), requires_grad=True) for _ in range(2))
    res = []
    for fused in (True, False):
        xx = x
        if inp == "grad":
            xx = Tensor(x.copy(), requires_grad=True)
        elif inp == "list":
            xx = [Tensor(x[:, t].copy(), requires_grad=True) for t in range(T)]
        res.append(_run(lstm, fused, xx, lengths, state))
    for a, b in zip(*res):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def test_nn_lstm_float32_close_to_the_cell_loop():
    rng = np.random.default_rng(10)
    lstm = LSTM(D, 6, bidirectional=True, rng=2)
    x = rng.standard_normal((N, T, D)).astype(np.float32)
    a, b = _run(lstm, True, x, np.array([4, 3, 2]), None), _run(lstm, False, x, np.array([4, 3, 2]), None)
    for u, v in zip(a, b):
        assert u.dtype == np.float32
        np.testing.assert_allclose(u, v, rtol=2e-5, atol=2e-6)


def _op_names(t):
    seen, stack, ops = set(), [t._node], []
    while stack:
        nd = stack.pop()
        if nd is None or id(nd) in seen or not hasattr(nd, "op"):
            continue
        seen.add(id(nd))
        ops.append(nd.op.name)
        stack.extend(nd.parents)
    return ops


def test_nn_lstm_graph_is_one_node_per_direction():
    """The recurrence is one lstm_sequence node per layer and direction, not ~12 nodes a step."""
    lstm = LSTM(D, 4, num_layers=2, bidirectional=True, rng=0)
    out, _ = lstm(np.ones((N, 20, D), np.float32))
    ops = _op_names(out)
    assert ops.count("lstm_sequence") == 4
    assert len(ops) < 20


@pytest.mark.parametrize("outputs", [True, False])
def test_forward_steps_equals_the_cell_loop(outputs):
    """forward_steps (what SequenceClassifier calls, with per-step embedding lookups) goes through the
    fused op too: per-step outputs and final states as the cell loop's, and the same gradients."""
    rng = np.random.default_rng(11)
    lstm = LSTM(D, 5, num_layers=2, bidirectional=True, rng=3, dtype=np.float64)
    x = rng.standard_normal((N, T, D))
    res = []
    for run in (lstm.forward_steps, lambda *a, **k: _Recurrent.forward_steps(lstm, *a, **k)):
        for p in lstm.parameters():
            p.grad = None
        xs = [Tensor(x[:, t].copy(), requires_grad=True) for t in range(T)]
        outs, finals = run(xs, lengths=np.array([4, 1, 3]), outputs=outputs)
        loss = sum((h * 1.1).sum() + (c * 0.9).sum() for h, c in finals)
        if outputs:
            assert len(outs) == T and outs[0].shape == (N, 10)
            loss = loss + sum((o * _weights(o.shape) * (t + 1)).sum() for t, o in enumerate(outs))
        else:
            assert outs is None
        loss.backward()
        res.append([v.data for v in (outs or [])] + [a.data for f in finals for a in f]
                   + [p.grad.copy() for p in lstm.parameters()] + [v.grad for v in xs])
    for a, b in zip(*res):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


def test_where_the_cell_loop_stays():
    """A list of constant steps, and a state that requires grad in another dtype, run the cell loop
    (the op needs one dtype and, for compile, arrays reachable from the arguments)."""
    rng = np.random.default_rng(12)
    lstm = LSTM(D, 4, rng=0)                                     # float32
    x = rng.standard_normal((N, T, D)).astype(np.float32)
    out, _ = lstm([x[:, t] for t in range(T)])
    assert "lstm_sequence" not in _op_names(out) and "sigmoid" in _op_names(out)
    h0 = Tensor(np.zeros((1, N, 4)), requires_grad=True)            # float64
    out, _ = lstm(x, state=(h0, np.zeros((1, N, 4), np.float32)))
    assert "lstm_sequence" not in _op_names(out)
    out, _ = lstm(x, state=(np.zeros((1, N, 4)), np.zeros((1, N, 4))))   # constant states are cast
    assert "lstm_sequence" in _op_names(out) and out.dtype == np.float32


@pytest.mark.parametrize("mode", ["rev", "fwd"])
def test_hvp_through_the_op(mode):
    """Hessian-vector products through the op (its differentiable VJP, or its tangent rule over the
    reverse pass) against finite differences of its gradient."""
    rng = np.random.default_rng(13)
    x, wi, b, _, _, _ = _inputs(rng)

    def loss(w):
        Y = lstm_sequence(x, wi, b, w, mask=MASK, reverse=True)
        return (Y * Y).sum()
    w0, v = rng.standard_normal((H, 4 * H)) * 0.5, rng.standard_normal((H, 4 * H))
    hv = np.asarray(cr.hvp(loss, w0, v, mode=mode))
    eps = 1e-6
    fd = (np.asarray(cr.grad(loss)(w0 + eps * v)) - np.asarray(cr.grad(loss)(w0 - eps * v))) / (2 * eps)
    np.testing.assert_allclose(hv, fd, rtol=1e-6, atol=1e-8)
