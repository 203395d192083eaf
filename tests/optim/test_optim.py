"""Optimizers against two hand-computed steps (dense and row-sparse, lazy), state-dict round trips
(bit for bit), schedulers, gradient clipping."""
import json
import math

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn, optim

RNG = np.random.default_rng(3)
W0 = RNG.standard_normal((5, 3))
G1 = RNG.standard_normal((5, 3))
G2 = RNG.standard_normal((5, 3))
# row-sparse gradients with a repeated row; step 2 touches rows step 1 did not, and skips row 1
IDX1, V1 = np.array([1, 3, 1]), RNG.standard_normal((3, 3))
IDX2, V2 = np.array([4, 3, 0]), RNG.standard_normal((3, 3))


def dense_of(idx, v):
    d = np.zeros((5, 3))
    np.add.at(d, idx, v)
    return d


def rows_of(idx):
    m = np.zeros(5, bool)
    m[idx] = True
    return m[:, None]


def run(opt_cls, kw, sparse, steps=2):
    p = nn.Parameter(W0.copy())
    opt = opt_cls([p], **kw)
    grads = [(IDX1, V1), (IDX2, V2)] if sparse else [G1, G2]
    for g in grads[:steps]:
        p.grad = cr.RowSparseGrad(g[0], g[1].copy(), (5, 3)) if sparse else g.copy()
        opt.step()
    return p.data, opt


def hand_grads(sparse):
    """(gradient, touched-rows mask) per step."""
    if sparse:
        return [(dense_of(IDX1, V1), rows_of(IDX1)), (dense_of(IDX2, V2), rows_of(IDX2))]
    full = np.ones((5, 1), bool)
    return [(G1, full), (G2, full)]


# ------------------------------------------------------------------------------------------ SGD
def sgd_hand(sparse, lr, mu=0.0, nesterov=False, wd=0.0):
    w = W0.copy()
    b = None
    for g, rows in hand_grads(sparse):
        g = g + wd * w
        if mu:
            if b is None:
                b = np.where(rows, g, 0.0)       # PyTorch: buffer = first gradient (touched rows)
            else:
                b = np.where(rows, mu * b + g, b)  # untouched rows: buffer unchanged (lazy)
            g = g + mu * b if nesterov else b
        w = np.where(rows, w - lr * g, w)
    return w


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("kw", [dict(), dict(momentum=0.9), dict(momentum=0.9, nesterov=True),
                                dict(weight_decay=0.1), dict(momentum=0.5, weight_decay=0.2, nesterov=True)],
                         ids=["plain", "momentum", "nesterov", "wd", "all"])
def test_sgd_two_steps(kw, sparse):
    w, _ = run(optim.SGD, dict(lr=0.1, **kw), sparse)
    ref = sgd_hand(sparse, 0.1, kw.get("momentum", 0.0), kw.get("nesterov", False), kw.get("weight_decay", 0.0))
    np.testing.assert_allclose(w, ref, rtol=1e-12, atol=1e-12)
    if sparse:
        assert np.array_equal(w[2], W0[2])              # never touched: never moved


def test_sgd_dampening():
    w, _ = run(optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.3), False)
    b = G1.copy()
    w_ref = W0 - 0.1 * b
    b = 0.9 * b + 0.7 * G2
    np.testing.assert_allclose(w, w_ref - 0.1 * b)


# ------------------------------------------------------------------------------------------ AdaGrad
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("kw", [dict(), dict(initial_accumulator=0.1, weight_decay=0.05)])
def test_adagrad_two_steps(kw, sparse):
    lr, eps = 0.5, 1e-8
    w, _ = run(optim.AdaGrad, dict(lr=lr, eps=eps, **kw), sparse)
    G = np.full((5, 3), kw.get("initial_accumulator", 0.0))
    ref = W0.copy()
    for g, rows in hand_grads(sparse):
        g = g + kw.get("weight_decay", 0.0) * ref
        G = np.where(rows, G + g ** 2, G)
        ref = np.where(rows, ref - lr * g / (np.sqrt(G) + eps), ref)
    np.testing.assert_allclose(w, ref, rtol=1e-12, atol=1e-12)


def test_adagrad_reset_state():
    p = nn.Parameter(W0.copy())
    opt = optim.AdaGrad([p], lr=0.1, initial_accumulator=0.2)
    p.grad = G1.copy()
    opt.step()
    assert not np.allclose(opt.state[0]["sum"], 0.2)
    opt.reset_state()
    assert np.all(opt.state[0]["sum"] == 0.2)
    # after a reset the next step is the same as a first step from the current weights
    q = nn.Parameter(p.data.copy())
    fresh = optim.AdaGrad([q], lr=0.1, initial_accumulator=0.2)
    p.grad, q.grad = G2.copy(), G2.copy()
    opt.step(), fresh.step()
    assert np.array_equal(p.data, q.data)


# ------------------------------------------------------------------------------------------ Adam
def adam_hand(sparse, lr, b1, b2, eps, wd, decoupled):
    w = W0.copy()
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, (g, rows) in enumerate(hand_grads(sparse), start=1):
        if decoupled:
            w = np.where(rows, w * (1 - lr * wd), w)
        else:
            g = g + wd * w
        m = np.where(rows, b1 * m + (1 - b1) * g, m)
        v = np.where(rows, b2 * v + (1 - b2) * g * g, v)
        mhat, vhat = m / (1 - b1 ** t), v / (1 - b2 ** t)     # global t
        w = np.where(rows, w - lr * mhat / (np.sqrt(vhat) + eps), w)
    return w, m, v


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("cls,wd", [(optim.Adam, 0.0), (optim.Adam, 0.1), (optim.AdamW, 0.1)])
def test_adam_two_steps(cls, wd, sparse):
    kw = dict(lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=wd)
    w, opt = run(cls, kw, sparse)
    ref, m, v = adam_hand(sparse, 0.01, 0.8, 0.95, 1e-6, wd, cls is optim.AdamW)
    np.testing.assert_allclose(w, ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(opt.state[0]["m"], m, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(opt.state[0]["v"], v, rtol=1e-12, atol=1e-14)
    if sparse:
        # row 1 was touched at step 1 only: its moments did not decay at step 2 (lazy)
        g1 = dense_of(IDX1, V1)[1] + (wd * W0[1] if cls is optim.Adam else 0.0)
        np.testing.assert_allclose(opt.state[0]["m"][1], (1 - 0.8) * g1)


def test_adam_defaults_and_adamw_differs():
    a, b = optim.Adam([nn.Parameter(W0.copy())]), optim.AdamW([nn.Parameter(W0.copy())])
    assert a.betas == (0.9, 0.999) and a.lr == 1e-3 and a.weight_decay == 0 and b.weight_decay == 0.01
    wa, _ = run(optim.Adam, dict(lr=0.1, weight_decay=0.5), False)
    wb, _ = run(optim.AdamW, dict(lr=0.1, weight_decay=0.5), False)
    assert not np.allclose(wa, wb)


@pytest.mark.parametrize("cls,kw", [(optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
                                    (optim.AdaGrad, dict(lr=0.1)), (optim.Adam, dict(lr=0.1, weight_decay=0.1)),
                                    (optim.AdamW, dict(lr=0.1))])
def test_sparse_equals_dense_when_every_row_is_touched(cls, kw):
    ps, pd = nn.Parameter(W0.copy()), nn.Parameter(W0.copy())
    os_, od = cls([ps], **kw), cls([pd], **kw)
    for k in range(3):
        idx = np.concatenate([RNG.permutation(5), RNG.integers(0, 5, 3)])
        vals = RNG.standard_normal((8, 3))
        ps.grad = cr.RowSparseGrad(idx, vals, (5, 3))
        pd.grad = dense_of(idx, vals)
        os_.step(), od.step()
    np.testing.assert_allclose(ps.data, pd.data, rtol=1e-12, atol=1e-12)


def test_float32_updates_stay_float32():
    for cls in (optim.SGD, optim.AdaGrad, optim.Adam, optim.AdamW):
        p = nn.Parameter(W0.astype(np.float32))
        opt = cls([p], lr=0.1)
        p.grad = G1.astype(np.float32)
        opt.step()
        assert p.dtype == np.float32 and all(a.dtype == np.float32 for a in opt.state[0].values())


def test_skips_params_without_grad_and_zero_grad():
    a, b = nn.Parameter(W0.copy()), nn.Parameter(W0.copy())
    opt = optim.SGD([a, b], lr=0.1, momentum=0.9)
    a.grad = G1.copy()
    opt.step()
    assert np.array_equal(b.data, W0) and opt.state[1] == {}
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_optimizer_on_a_model():
    net = nn.MLP([4, 8, 3], seed=0)
    x = RNG.standard_normal((16, 4)).astype(np.float32)
    y = RNG.integers(0, 3, 16)
    opt = optim.Adam(net, lr=0.01)              # a Module is accepted
    first = None
    for _ in range(30):
        loss = cr.losses.cross_entropy(net(x), y)
        first = first or loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first


def test_constructor_errors():
    p = nn.Parameter(W0.copy())
    with pytest.raises(ValueError, match="SGD: got an empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="single Tensor"):
        optim.SGD(p, lr=0.1)
    with pytest.raises(ValueError, match="appears twice"):
        optim.SGD([p, p], lr=0.1)
    with pytest.raises(ValueError, match="not a leaf"):
        optim.SGD([p * 2], lr=0.1)
    with pytest.raises(TypeError, match="parameter 0 is a ndarray"):
        optim.Adam([W0])
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Adam: need"):
        optim.Adam([p], betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="AdaGrad"):
        optim.AdaGrad([p], eps=0)


# ------------------------------------------------------------------------------------------ state dicts
def through_checkpoint(sd):
    """Arrays copied, scalars through JSON: what a safetensors + JSON checkpoint does."""
    arrays = {k: v.copy() for k, v in sd.items() if isinstance(v, np.ndarray)}
    scalars = json.loads(json.dumps({k: v for k, v in sd.items() if not isinstance(v, np.ndarray)}))
    return {**arrays, **scalars}


@pytest.mark.parametrize("cls,kw", [
    (optim.SGD, dict(lr=0.1)), (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    (optim.AdaGrad, dict(lr=0.1, initial_accumulator=0.1)), (optim.Adam, dict(lr=0.01, weight_decay=1e-2)),
    (optim.AdamW, dict(lr=0.01))])
def test_state_dict_round_trip_gives_identical_steps(cls, kw):
    emb = nn.Embedding(20, 3, rng=0)
    lin = nn.Linear(3, 2, rng=1)
    params = emb.parameters() + lin.parameters()
    opt = cls(params, **kw)

    def step(o, ps, seed):
        r = np.random.default_rng(seed)
        ps[0].grad = cr.RowSparseGrad(r.integers(0, 20, 6), r.standard_normal((6, 3)).astype(np.float32), (20, 3))
        ps[1].grad = r.standard_normal((3, 2)).astype(np.float32)
        ps[2].grad = r.standard_normal(2).astype(np.float32)
        o.step()

    for s in range(3):
        step(opt, params, s)
    sd = opt.state_dict()
    assert sd["type"] == cls.__name__ and sd["step"] == 3 and sd["lr"] == kw["lr"]
    assert all(isinstance(v, (np.ndarray, int, float, bool, str)) for v in sd.values())
    if kw.get("momentum"):
        assert "state.0.momentum" in sd and "momentum" in sd
    clones = [nn.Parameter(p.data.copy()) for p in params]
    other = cls(clones, **{**kw, "lr": 123.0})
    other.load_state_dict(through_checkpoint(sd))
    assert other.lr == kw["lr"] and other.step_count == 3
    for s in range(3, 6):
        step(opt, params, s)
        step(other, clones, s)
    for p, q in zip(params, clones):
        assert np.array_equal(p.data, q.data)          # bit for bit
    keys = [k for k in sd if k.startswith("state.") and isinstance(sd[k], np.ndarray)]
    assert bool(keys) == (cls is not optim.SGD or bool(kw.get("momentum")))
    for k in keys:
        sd[k][...] = 99                                # state_dict returned copies
    assert not any(np.any(a == 99) for st in opt.state for a in st.values())


def test_load_state_dict_errors_change_nothing():
    p = nn.Parameter(W0.copy())
    opt = optim.Adam([p], lr=0.1)
    p.grad = G1.copy()
    opt.step()
    good = opt.state_dict()
    before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in good.items()}
    bad = dict(good)
    bad["state.0.m"] = np.zeros((3, 5))
    bad["state.5.v"] = np.zeros((5, 3))
    bad["bogus"] = 1
    del bad["lr"]
    bad["step"] = 17
    with pytest.raises(optim.OptimizerStateError) as ei:
        opt.load_state_dict(bad)
    msg = str(ei.value)
    for s in ["missing key 'lr'", "unexpected key 'bogus'", "'state.0.m' has shape (3, 5)",
              "'state.5.v' is for parameter 5", "nothing was changed"]:
        assert s in msg
    after = opt.state_dict()
    assert after["step"] == 1 and all(np.array_equal(after[k], v) for k, v in before.items())
    with pytest.raises(optim.OptimizerStateError, match="saved by Adam, not SGD"):
        optim.SGD([p], lr=0.1).load_state_dict(good)


# ------------------------------------------------------------------------------------------ schedulers
def test_step_lr():
    opt = optim.SGD([nn.Parameter(W0.copy())], lr=1.0)
    s = optim.StepLR(opt, step_size=2, gamma=0.5)
    lrs = [opt.lr] + [s.step() for _ in range(5)]
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    assert s.last_lr == 0.25


def test_cosine_lr_and_state_dict():
    opt = optim.Adam([nn.Parameter(W0.copy())], lr=0.1)
    s = optim.CosineLR(opt, T_max=4, eta_min=0.01)
    lrs = [opt.lr] + [s.step() for _ in range(6)]
    ref = [0.01 + 0.09 * (1 + math.cos(math.pi * min(e, 4) / 4)) / 2 for e in range(7)]
    np.testing.assert_allclose(lrs, ref, rtol=1e-15)
    assert lrs[0] == 0.1 and lrs[4] == pytest.approx(0.01) and lrs[6] == pytest.approx(0.01)
    opt2 = optim.Adam([nn.Parameter(W0.copy())], lr=0.1)
    s2 = optim.CosineLR(opt2, T_max=4, eta_min=0.01)
    sd = json.loads(json.dumps(optim.CosineLR(opt, T_max=4, eta_min=0.01).state_dict()))
    s.epoch = 2
    s2.load_state_dict(json.loads(json.dumps(s.state_dict())))
    assert s2.epoch == 2 and opt2.lr == s.get_lr(2)
    assert s2.step() == s.step()
    with pytest.raises(ValueError, match="saved by CosineLR"):
        optim.StepLR(opt2, 1).load_state_dict(sd)


# ------------------------------------------------------------------------------------------ clipping
def test_clip_grad_norm_dense_and_sparse():
    a, b = nn.Parameter(np.zeros((5, 3))), nn.Parameter(np.zeros(4))
    a.grad = cr.RowSparseGrad(np.array([1, 1, 2]), np.array([[1.0, 0, 0], [2.0, 0, 0], [0, 0, 4.0]]), (5, 3))
    b.grad = np.array([0.0, 0.0, 0.0, 12.0])
    # coalesced: row 1 = (3, 0, 0), row 2 = (0, 0, 4): total √(9 + 16 + 144) = 13
    n = optim.clip_grad_norm([a, b], max_norm=6.5)
    assert n == pytest.approx(13.0)
    np.testing.assert_allclose(np.asarray(a.grad)[1], [1.5, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(b.grad, [0, 0, 0, 6.0], rtol=1e-6)
    assert optim.clip_grad_norm([a, b], max_norm=100) == pytest.approx(6.5, rel=1e-6)
    np.testing.assert_allclose(b.grad, [0, 0, 0, 6.0], rtol=1e-6)      # under the limit: unchanged
    c = nn.Parameter(np.zeros(2))
    c.grad = np.array([np.inf, 1.0])
    assert optim.clip_grad_norm([c], 1.0) == np.inf
    with pytest.raises(FloatingPointError):
        optim.clip_grad_norm([c], 1.0, error_if_nonfinite=True)
    assert optim.clip_grad_norm([nn.Parameter(np.zeros(2))], 1.0) == 0.0


@pytest.mark.parametrize("rows", [[7, 2, 9, 4], [7, 2, 7, 4, 2]])
def test_sparse_sgd_uses_the_rows_as_they_are_when_distinct(rows):
    """Plain SGD on a row-sparse gradient: the rows as given when distinct (no reorder, no copy),
    coalesced when some repeat; either way the dense update bit for bit, and the gradient untouched."""
    rng = np.random.default_rng(3)
    idx = np.array(rows)
    vals = rng.standard_normal((len(rows), 3)).astype(np.float32)
    g = cr.RowSparseGrad(idx, vals.copy(), (10, 3))
    i, v = g.distinct_rows()
    assert len(np.unique(i)) == len(i)
    if len(set(rows)) == len(rows):
        assert i is g.indices and v is g.values                  # nothing copied
    np.testing.assert_array_equal(cr.RowSparseGrad(i, v, (10, 3)).to_dense(), g.to_dense())
    w0 = rng.standard_normal((10, 3)).astype(np.float32)
    ps, pd = nn.Parameter(w0.copy()), nn.Parameter(w0.copy())
    ps.grad, pd.grad = g, g.to_dense()
    optim.SGD([ps], lr=0.1).step()
    optim.SGD([pd], lr=0.1).step()
    np.testing.assert_array_equal(ps.data, pd.data)
    np.testing.assert_array_equal(g.values, vals)
