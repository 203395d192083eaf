"""The optimizers' allocation-free update (per-parameter update functions on scratch buffers) gives
the same bits as the formulas written plainly, step after step, in float32 and float64."""
import math

import numpy as np
import pytest

import chainrule as cr
from chainrule import optim


def _plain(kind, h, w, g, st, t):
    """Each optimizer's update as plain NumPy expressions (the formulas of its docstring)."""
    if h.get("weight_decay") and not (kind == "adamw"):
        g = g + h["weight_decay"] * w
    if kind == "sgd":
        mu = h["momentum"]
        if mu:
            b = st.setdefault("b", None)
            b = g.copy() if b is None else b * mu + (g if h["dampening"] == 0 else (1.0 - h["dampening"]) * g)
            st["b"] = b
            g = g + mu * b if h["nesterov"] else b
        return w - h["lr"] * g
    if kind == "adagrad":
        G = st["G"] = st.get("G", np.zeros_like(w)) + g * g
        return w - h["lr"] * (g / (np.sqrt(G) + h["eps"]))
    if kind == "adamw" and h["weight_decay"]:
        w = w * (1.0 - h["lr"] * h["weight_decay"])
    b1, b2 = h["beta1"], h["beta2"]
    m = st["m"] = st.get("m", np.zeros_like(w)) * b1 + (1.0 - b1) * g
    v = st["v"] = st.get("v", np.zeros_like(w)) * b2 + (1.0 - b2) * (g * g)
    d = np.sqrt(v) / math.sqrt(1.0 - b2 ** t) + h["eps"]
    return w - (m / d) * (h["lr"] / (1.0 - b1 ** t))


CASES = [("sgd", optim.SGD, {"lr": 0.1}),
         ("sgd", optim.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}),
         ("sgd", optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
         ("sgd", optim.SGD, {"lr": 0.1, "momentum": 0.5, "dampening": 0.3}),
         ("adagrad", optim.AdaGrad, {"lr": 0.05, "eps": 1e-3, "weight_decay": 0.1}),
         ("adam", optim.Adam, {"lr": 0.01, "weight_decay": 0.01}),
         ("adamw", optim.AdamW, {"lr": 0.01, "weight_decay": 0.1})]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind,cls,kw", CASES)
def test_fast_update_equals_the_formulas_bit_for_bit(kind, cls, kw, dtype):
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((5, 3)).astype(dtype)
    p = cr.tensor(w0.copy(), requires_grad=True)
    opt = cls([p], **kw)
    h = opt.param_groups[0]
    w, st = w0.copy(), {}
    for t in range(1, 6):
        g = rng.standard_normal((5, 3)).astype(dtype)
        p.grad = g.copy()
        opt.step()
        w = _plain(kind, h, w, g, st, t)
        assert p.data.dtype == dtype
        assert np.array_equal(p.data, w), t


def test_scratch_buffers_are_reused_and_lr_changes_are_seen():
    p = cr.tensor(np.ones(4), requires_grad=True)
    opt = optim.SGD([p], lr=0.5)
    for _ in range(3):
        p.grad = np.ones(4)
        opt.step()
    ups = opt._ups
    opt.lr = 0.25                      # a scheduler's change is read at every step
    p.grad = np.ones(4)
    opt.step()
    assert opt._ups is ups and np.array_equal(p.data, 1 - 3 * 0.5 - 0.25 * np.ones(4))
    opt.add_param_group({"params": [cr.tensor(np.ones(2), requires_grad=True)]})
    assert opt._ups is None            # rebuilt for the new group on the next step


def test_wrong_gradient_shape_is_still_an_error():
    p = cr.tensor(np.ones(4), requires_grad=True)
    opt = optim.Adam([p], lr=0.1)
    p.grad = np.ones(4)
    opt.step()
    p.grad = np.ones(5)
    with pytest.raises(ValueError, match="gradient has shape"):
        opt.step()
