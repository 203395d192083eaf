"""nll_loss, cross_entropy(ignore_index=, label_smoothing=) against hand-written NumPy (PyTorch's
formulas), float64 gradchecks, and the loss classes next to the functions."""
import numpy as np
import pytest

import chainrule as cr
from chainrule import losses, nn

R = np.random.default_rng(5)
Z = R.standard_normal((6, 4))
T = np.array([0, 3, -100, 1, 1, -100])
C = np.array([0.5, 1.0, 2.0, 1.5])


def logsm(z):
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def ref_ce(z, t, c=None, eps=0.0, ignore=-100, reduction="mean"):
    """PyTorch's cross_entropy with class indices, weights, ignore_index and label smoothing."""
    K = z.shape[-1]
    lp = logsm(z)
    c = np.ones(K) if c is None else c
    per, ws = [], []
    for n in range(len(t)):
        if t[n] == ignore:
            per.append(0.0)
            ws.append(0.0)
            continue
        w = c[t[n]]
        per.append((1 - eps) * w * -lp[n, t[n]] + eps / K * np.sum(c * -lp[n]))
        ws.append(w)
    per = np.array(per)
    if reduction == "none":
        return per
    return per.sum() if reduction == "sum" else per.sum() / np.sum(ws)


def T64(a):
    return cr.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("c", [None, C])
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_cross_entropy_ignore_index_and_label_smoothing(reduction, c, eps):
    out = losses.cross_entropy(T64(Z), T, weight=c, label_smoothing=eps, reduction=reduction)
    np.testing.assert_allclose(out.data, ref_ce(Z, T, c, eps, reduction=reduction), rtol=1e-12)
    assert cr.gradcheck(lambda z: losses.cross_entropy(z, T, weight=c, label_smoothing=eps, reduction=reduction),
                        T64(Z))


def test_ignored_positions_get_no_gradient_and_label_smoothing_without_ignores():
    z = T64(Z)
    losses.cross_entropy(z, T).backward()
    assert not z.grad[T == -100].any() and z.grad[T != -100].any()
    t = np.array([0, 3, 2, 1, 1, 0])
    np.testing.assert_allclose(losses.cross_entropy(T64(Z), t, label_smoothing=0.1).data,
                               ref_ce(Z, t, eps=0.1), rtol=1e-12)
    # soft targets: smoothing mixes in the uniform distribution
    soft = np.eye(4)[t]
    np.testing.assert_allclose(losses.cross_entropy(T64(Z), soft, label_smoothing=0.1).data,
                               ref_ce(Z, t, eps=0.1), rtol=1e-12)
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        losses.cross_entropy(T64(Z), t, label_smoothing=1.5)
    with pytest.raises(ValueError, match="class index 7 out of range"):
        losses.cross_entropy(T64(Z), np.array([0, 7, -100, 1, 1, 0]))
    # ignore_index=None: -100 is an error again
    with pytest.raises(ValueError, match="class index -100 out of range"):
        losses.cross_entropy(T64(Z), T, ignore_index=None)


@pytest.mark.parametrize("c", [None, C])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss(c, reduction):
    lp = logsm(Z)
    out = losses.nll_loss(T64(lp), T, weight=c, reduction=reduction)
    np.testing.assert_allclose(out.data, ref_ce(Z, T, c, reduction=reduction), rtol=1e-12)
    assert cr.gradcheck(lambda x: losses.nll_loss(x, T, weight=c, reduction=reduction), T64(lp))
    z = T64(Z)
    a = losses.nll_loss(cr.log_softmax(z, -1), T, weight=c, reduction=reduction)
    b = losses.cross_entropy(z, T, weight=c, reduction=reduction)
    np.testing.assert_allclose(a.data, b.data, rtol=1e-12)


def test_nll_loss_sequences_and_errors():
    lp = logsm(R.standard_normal((2, 3, 5)))
    t = np.array([[0, 4, 2], [1, -100, 3]])
    ref = -np.mean([lp[0, 0, 0], lp[0, 1, 4], lp[0, 2, 2], lp[1, 0, 1], lp[1, 2, 3]])
    np.testing.assert_allclose(losses.nll_loss(T64(lp), t).data, ref, rtol=1e-12)
    with pytest.raises(TypeError, match="nll_loss: targets must be class indices"):
        losses.nll_loss(T64(lp), t.astype(float))
    with pytest.raises(ValueError, match="nll_loss: class-index targets of shape"):
        losses.nll_loss(T64(lp), t[0])


def test_loss_classes_call_the_functions():
    z, t = T64(Z), np.array([0, 3, 2, 1, 1, 0])
    pairs = [
        (nn.CrossEntropyLoss(weight=C, label_smoothing=0.1), losses.cross_entropy(z, t, weight=C, label_smoothing=0.1)),
        (nn.NLLLoss(reduction="sum"), losses.nll_loss(z, t, reduction="sum")),
    ]
    for mod, ref in pairs:
        arg = z if not isinstance(mod, nn.NLLLoss) else z
        np.testing.assert_allclose(mod(arg, t).data, ref.data)
    y, d = T64(R.random((3, 2))), R.random((3, 2))
    np.testing.assert_allclose(nn.MSELoss()(y, d).data, losses.mse(y, d).data)
    np.testing.assert_allclose(nn.L2Loss()(y, d).data, losses.l2(y, d).data)
    np.testing.assert_allclose(nn.BCELoss()(y, d).data, losses.binary_cross_entropy(y, d).data)
    np.testing.assert_allclose(nn.BCEWithLogitsLoss(reduction="sum")(y, d).data,
                               losses.binary_cross_entropy_with_logits(y, d, reduction="sum").data)
    np.testing.assert_allclose(nn.MultiLabelBCELoss()(y, d).data, losses.multilabel_bce(y, d).data)
    assert "label_smoothing=0.1" in repr(pairs[0][0])
    crit = nn.CrossEntropyLoss()
    loss = crit(z, t)
    loss.backward()
    assert z.grad.shape == Z.shape and crit.parameters() == []


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32])
def test_class_targets_of_every_integer_dtype_are_validated(dtype):
    """The targets' range check reads a signed target as unsigned (one reduction: a negative one
    reads as huge); every integer dtype, and an ignore_index inside [0, K), take the right path."""
    t = np.array([0, 3, 2, 1, 1, 0]).astype(dtype)
    np.testing.assert_allclose(losses.cross_entropy(T64(Z), t).data, ref_ce(Z, t.astype(np.int64)), rtol=1e-12)
    np.testing.assert_allclose(losses.nll_loss(T64(logsm(Z)), t).data, ref_ce(Z, t.astype(np.int64)), rtol=1e-12)
    # an ignore_index that is a real class: those positions count for nothing
    np.testing.assert_allclose(losses.cross_entropy(T64(Z), t, ignore_index=1).data,
                               ref_ce(Z, t.astype(np.int64), ignore=1), rtol=1e-12)
    bad = t.copy()
    bad[4] = 4
    with pytest.raises(ValueError, match="class index 4 out of range"):
        losses.cross_entropy(T64(Z), bad)
    if np.dtype(dtype).kind == "i":
        bad[4] = -1
        with pytest.raises(ValueError, match="class index -1 out of range"):
            losses.cross_entropy(T64(Z), bad)
        with pytest.raises(ValueError, match="class index -1 out of range"):
            losses.nll_loss(T64(logsm(Z)), bad)
