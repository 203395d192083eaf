"""Losses: values against hand-written NumPy, float64 gradient checks with cr.gradcheck, closed-form
gradients, numerical stability (logits ±1e4, probabilities 0 and 1), shape errors."""
import numpy as np
import pytest

import chainrule as cr
from chainrule import losses

RNG = np.random.default_rng(11)


def T(a, rg=True):
    return cr.tensor(np.asarray(a, dtype=np.float64), requires_grad=rg)


def sig(z):
    return 1 / (1 + np.exp(-z))


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ------------------------------------------------------------------------------------------ l2, mse
def test_l2_values_and_gradients():
    y, d = RNG.standard_normal((4, 3)), RNG.standard_normal((4, 3))
    np.testing.assert_allclose(losses.l2(T(y), d).item(), 0.5 * np.sum((y - d) ** 2))
    np.testing.assert_allclose(losses.l2(T(y), d, reduction="mean").item(), 0.5 * np.sum((y - d) ** 2) / 4)
    np.testing.assert_allclose(losses.l2(T(y), d, reduction="none").data, 0.5 * np.sum((y - d) ** 2, 1))
    # a 1-D prediction is one example: 'mean' = 'sum'
    np.testing.assert_allclose(losses.l2(T(y[0]), d[0], reduction="mean").item(), 0.5 * np.sum((y[0] - d[0]) ** 2))
    yt = T(y)
    losses.l2(yt, d, reduction="mean").backward()
    np.testing.assert_allclose(yt.grad, (y - d) / 4)            # seed 004: ∂Div/∂y = y − d (per example)
    for red in ("sum", "mean", "none"):
        assert cr.gradcheck(lambda y, d: losses.l2(y, d, reduction=red), T(y), T(d))


def test_mse():
    y, d = RNG.standard_normal((5, 2)), RNG.standard_normal((5, 2))
    np.testing.assert_allclose(losses.mse(T(y), d).item(), np.mean((y - d) ** 2))
    np.testing.assert_allclose(losses.mse(T(y), d, reduction="sum").item(), np.sum((y - d) ** 2))
    assert losses.mse(T(y), d, reduction="none").shape == (5, 2)
    assert cr.gradcheck(lambda y: losses.mse(y, d), T(y))


def test_shape_and_reduction_errors():
    with pytest.raises(ValueError, match=r"l2: prediction of shape \(4, 3\) and target of shape \(4,\) differ"):
        losses.l2(T(np.zeros((4, 3))), np.zeros(4))
    with pytest.raises(ValueError, match="mse: prediction"):
        losses.mse(T(np.zeros(3)), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="binary_cross_entropy_with_logits: prediction"):
        losses.binary_cross_entropy_with_logits(T(np.zeros((2, 3))), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="l2: reduction"):
        losses.l2(T(np.zeros(3)), np.zeros(3), reduction="avg")


# ------------------------------------------------------------------------------------------ BCE
def bce_np(p, d):
    return -(d * np.log(p) + (1 - d) * np.log(1 - p))


def test_bce_values_and_gradcheck():
    p = RNG.uniform(0.05, 0.95, (4, 3))
    d = (RNG.uniform(size=(4, 3)) > 0.5).astype(float)
    np.testing.assert_allclose(losses.binary_cross_entropy(T(p), d).item(), bce_np(p, d).mean())
    np.testing.assert_allclose(losses.binary_cross_entropy(T(p), d, reduction="sum").item(), bce_np(p, d).sum())
    np.testing.assert_allclose(losses.binary_cross_entropy(T(p), d, reduction="batchmean").item(),
                               bce_np(p, d).sum() / 4)
    pt = T(p)
    losses.binary_cross_entropy(pt, d, reduction="sum").backward()
    np.testing.assert_allclose(pt.grad, -d / p + (1 - d) / (1 - p))       # seed 003's η
    assert cr.gradcheck(lambda p: losses.binary_cross_entropy(p, d), T(p))
    soft = RNG.uniform(size=(4, 3))
    assert cr.gradcheck(lambda p, d: losses.binary_cross_entropy(p, d), T(p), T(soft))


def test_bce_at_zero_and_one_is_finite():
    p = T([0.0, 1.0, 0.0, 1.0])
    d = np.array([1.0, 0.0, 0.0, 1.0])
    loss = losses.binary_cross_entropy(p, d, reduction="none")
    assert np.all(np.isfinite(loss.data))
    np.testing.assert_allclose(loss.data[:2], -np.log(1e-7), rtol=1e-6)
    assert np.all(loss.data[2:] < 1e-6)
    loss.sum().backward()
    assert np.all(np.isfinite(p.grad))
    p32 = cr.tensor(np.array([0.0, 1.0], np.float32), requires_grad=True)
    l32 = losses.binary_cross_entropy(p32, np.array([1.0, 0.0], np.float32))
    l32.backward()
    assert np.isfinite(l32.item()) and np.all(np.isfinite(p32.grad)) and l32.dtype == np.float32


def test_bce_with_logits_values_gradient_and_stability():
    z = RNG.standard_normal((5, 3)) * 3
    d = (RNG.uniform(size=(5, 3)) > 0.5).astype(float)
    np.testing.assert_allclose(losses.binary_cross_entropy_with_logits(T(z), d).item(), bce_np(sig(z), d).mean())
    zt = T(z)
    losses.binary_cross_entropy_with_logits(zt, d, reduction="sum").backward()
    np.testing.assert_allclose(zt.grad, sig(z) - d, atol=1e-12)
    assert cr.gradcheck(lambda z: losses.binary_cross_entropy_with_logits(z, d), T(z))
    assert cr.gradcheck(lambda z, d: losses.binary_cross_entropy_with_logits(z, d, reduction="none"),
                        T(z), T(RNG.uniform(size=(5, 3))))
    # z = 0 exactly (zero-initialised output layers): the gradient is σ(0) − d = ½ − d
    z0 = T(np.zeros(4))
    d0 = np.array([0.0, 1.0, 0.3, 1.0])
    losses.binary_cross_entropy_with_logits(z0, d0, reduction="sum").backward()
    np.testing.assert_allclose(z0.grad, 0.5 - d0)
    assert cr.gradcheck(lambda z: losses.binary_cross_entropy_with_logits(z, d0), T(np.zeros(4)))
    # ±1e4: finite values and gradients, exact where representable
    zb = T([1e4, -1e4, 1e4, -1e4])
    db = np.array([1.0, 0.0, 0.0, 1.0])
    lb = losses.binary_cross_entropy_with_logits(zb, db, reduction="none")
    np.testing.assert_allclose(lb.data, [0, 0, 1e4, 1e4])
    lb.sum().backward()
    np.testing.assert_allclose(zb.grad, [0, 0, 1, -1])
    z32 = cr.tensor(np.array([1e4, -1e4, 20.0], np.float32), requires_grad=True)
    l32 = losses.binary_cross_entropy_with_logits(z32, np.ones(3, np.float32), reduction="none")
    assert l32.dtype == np.float32 and np.all(np.isfinite(l32.data))
    assert l32.data[2] > 0                              # log(1 + e^-20) ≈ 2e-9 survives in float32


def test_multilabel_bce_is_seed_003():
    N, K = 6, 4
    z = RNG.standard_normal((N, K))
    y = (RNG.uniform(size=(N, K)) > 0.5).astype(float)
    a = sig(z)
    J = np.mean(np.sum(-y * np.log(a) - (1 - y) * np.log(1 - a), axis=1))      # J̃
    np.testing.assert_allclose(losses.multilabel_bce(T(z), y).item(), J)
    np.testing.assert_allclose(losses.multilabel_bce(T(a), y, from_logits=False).item(), J)
    zt = T(z)
    losses.multilabel_bce(zt, y).backward()
    np.testing.assert_allclose(zt.grad, (a - y) / N, atol=1e-12)      # δ⁽³⁾/N of Alg 1
    assert cr.gradcheck(lambda z: losses.multilabel_bce(z, y), T(z))
    assert cr.gradcheck(lambda a: losses.multilabel_bce(a, y, from_logits=False), T(a))


# ------------------------------------------------------------------------------------------ cross-entropy
def ce_np(z, t):
    return -np.log(softmax(z)[np.arange(len(t)), t])


def test_cross_entropy_indices_onehot_soft():
    z = RNG.standard_normal((5, 4))
    t = np.array([0, 3, 1, 1, 2])
    np.testing.assert_allclose(losses.cross_entropy(T(z), t).item(), ce_np(z, t).mean())
    np.testing.assert_allclose(losses.cross_entropy(T(z), t, reduction="sum").item(), ce_np(z, t).sum())
    np.testing.assert_allclose(losses.cross_entropy(T(z), t, reduction="none").data, ce_np(z, t))
    onehot = np.eye(4)[t]
    np.testing.assert_allclose(losses.cross_entropy(T(z), onehot).item(), ce_np(z, t).mean())
    soft = RNG.uniform(size=(5, 4))
    soft /= soft.sum(1, keepdims=True)
    np.testing.assert_allclose(losses.cross_entropy(T(z), soft).item(),
                               -np.mean(np.sum(soft * np.log(softmax(z)), 1)))
    zt = T(z)
    losses.cross_entropy(zt, t).backward()
    np.testing.assert_allclose(zt.grad, (softmax(z) - onehot) / 5, atol=1e-12)
    for targets in (t, onehot, soft):
        for red in ("mean", "sum", "none"):
            assert cr.gradcheck(lambda z: losses.cross_entropy(z, targets, reduction=red), T(z))
    # one example, and sequences
    np.testing.assert_allclose(losses.cross_entropy(T(z[0]), np.array(0)).item(), ce_np(z[:1], t[:1])[0])
    zs = RNG.standard_normal((2, 3, 4))
    ts = RNG.integers(0, 4, size=(2, 3))
    np.testing.assert_allclose(losses.cross_entropy(T(zs), ts).item(),
                               ce_np(zs.reshape(6, 4), ts.reshape(6)).mean())
    assert cr.gradcheck(lambda z: losses.cross_entropy(z, ts), T(zs))


def test_cross_entropy_class_weights():
    z = RNG.standard_normal((6, 3))
    t = np.array([0, 1, 2, 2, 1, 0])
    c = np.array([0.2, 1.0, 3.0])
    w = c[t]
    np.testing.assert_allclose(losses.cross_entropy(T(z), t, weight=c).item(), np.sum(w * ce_np(z, t)) / w.sum())
    np.testing.assert_allclose(losses.cross_entropy(T(z), t, weight=c, reduction="sum").item(),
                               np.sum(w * ce_np(z, t)))
    np.testing.assert_allclose(losses.cross_entropy(T(z), t, weight=c, reduction="none").data, w * ce_np(z, t))
    np.testing.assert_allclose(losses.cross_entropy(T(z), np.eye(3)[t], weight=c).item(),
                               np.sum(w * ce_np(z, t)) / w.sum())
    assert cr.gradcheck(lambda z: losses.cross_entropy(z, t, weight=c), T(z))
    with pytest.raises(ValueError, match=r"class weights of shape \(2,\) for 3 classes"):
        losses.cross_entropy(T(z), t, weight=c[:2])


def test_cross_entropy_stable_at_1e4():
    z = T([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, -1e4]])
    t = np.array([0, 0, 1])
    loss = losses.cross_entropy(z, t, reduction="sum")
    np.testing.assert_allclose(loss.item(), 0 + 2e4 + np.log(2))
    loss.backward()
    assert np.all(np.isfinite(z.grad))
    np.testing.assert_allclose(z.grad, [[0, 0, 0], [-1, 0, 1], [0.5, -0.5, 0]], atol=1e-12)
    z32 = cr.tensor(np.array([[1e4, -1e4]], np.float32), requires_grad=True)
    l32 = losses.cross_entropy(z32, np.array([1]))
    l32.backward()
    assert l32.dtype == np.float32 and np.isfinite(l32.item()) and np.all(np.isfinite(z32.grad))


def test_cross_entropy_errors():
    z = T(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"cross_entropy: class-index targets of shape \(4,\) for logits of shape \(3, 4\)"):
        losses.cross_entropy(z, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"cross_entropy: class index 4 out of range \[0, 4\)"):
        losses.cross_entropy(z, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="cross_entropy: class index -1"):
        losses.cross_entropy(z, np.array([0, -1, 1]))
    with pytest.raises(ValueError, match="soft targets of shape"):
        losses.cross_entropy(z, np.zeros((3, 5)))
    with pytest.raises(ValueError, match="must sum to 1"):
        losses.cross_entropy(z, np.full((3, 4), 0.5))
    with pytest.raises(TypeError, match="targets must be class indices"):
        losses.cross_entropy(z, np.array(["a", "b", "c"]))


# ------------------------------------------------------------------------------------------ penalty
def test_l2_penalty_seed_002_regularises_only_what_is_passed():
    W = cr.nn.Parameter(RNG.standard_normal((4, 6)))
    U = cr.nn.Parameter(RNG.standard_normal(4))
    b = cr.nn.Parameter(RNG.standard_normal(4))
    C, m = 0.3, 7
    R = losses.l2_penalty([W, U], C, m)
    np.testing.assert_allclose(R.item(), C / (2 * m) * (np.sum(W.data ** 2) + np.sum(U.data ** 2)))
    (R + (b * 0).sum()).backward()
    np.testing.assert_allclose(W.grad, C / m * W.data)              # seed 002 eq. (9)
    np.testing.assert_allclose(U.grad, C / m * U.data)              # eq. (8)
    assert np.all(b.grad == 0)
    assert cr.gradcheck(lambda W, U: losses.l2_penalty([W, U], C, m), T(W.data), T(U.data))
    assert losses.l2_penalty([], 1.0, 1).item() == 0.0
    with pytest.raises(TypeError, match="not a Module"):
        losses.l2_penalty(cr.nn.Linear(2, 2), 1.0, 1)
    with pytest.raises(ValueError, match="m"):
        losses.l2_penalty([W], 1.0, 0)


def test_mlp_losses_end_to_end_gradcheck():
    """Seed 003's model: two sigmoid layers, multi-label BCE + λ/2 Σ‖W‖² (C/m = λ)."""
    from chainrule.gradcheck import gradcheck_params
    net = cr.nn.MLP([5, 4, 3], activation="sigmoid", seed=0).to(np.float64)
    x = RNG.standard_normal((6, 5))
    y = (RNG.uniform(size=(6, 3)) > 0.5).astype(float)
    lam = 0.1
    Ws = [p for n, p in net.named_parameters() if n.endswith("weight")]
    rep = gradcheck_params(lambda: losses.multilabel_bce(net(x), y) + losses.l2_penalty(Ws, lam, 1),
                           net.named_parameters())
    assert rep.ok, str(rep)
