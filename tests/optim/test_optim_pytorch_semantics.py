"""Optimizer semantics a PyTorch user relies on: per-parameter Adam step counts, parameter groups,
RMSprop, get_last_lr, zero_grad(set_to_none), clip_grad_value, PyTorch's defaults."""
import json
import math

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn, optim


def scalars(*vals):
    return [nn.Parameter(np.array(v, dtype=np.float64)) for v in vals]


@pytest.mark.parametrize("cls", [optim.Adam, optim.AdamW])
def test_adam_counts_steps_per_parameter(cls):
    # PyTorch: p gets a gradient at steps 1 and 2, q only at step 2: q's first step is -lr·sign(g)
    p, q = scalars(1.0, 1.0)
    opt = cls([p, q], lr=0.1, weight_decay=0.0)
    p.grad = np.array(1.0)
    opt.step()
    p.grad, q.grad = np.array(1.0), np.array(1.0)
    opt.step()
    assert q.data - 1.0 == pytest.approx(-0.1, rel=1e-6)          # was -0.0744 with a global t
    assert opt.param_steps == [2, 1] and opt.step_count == 2
    # the same numbers by the formula, t = 1 for q
    m, v = 0.1 * 1.0, 0.001 * 1.0
    assert q.data == pytest.approx(1.0 - 0.1 * (m / 0.1) / (math.sqrt(v / 0.001) + 1e-8))


def test_adam_per_parameter_steps_survive_a_state_dict_round_trip():
    p, q = scalars(1.0, 2.0)
    opt = optim.Adam([p, q], lr=0.1)
    p.grad = np.array(0.5)
    opt.step()
    sd = opt.state_dict()
    assert sd["state.0.step"] == 1 and "state.1.step" not in sd
    sd = json.loads(json.dumps({k: v for k, v in sd.items() if not isinstance(v, np.ndarray)})) | \
        {k: v for k, v in sd.items() if isinstance(v, np.ndarray)}
    p2, q2 = scalars(float(p.data), 2.0)
    opt2 = optim.Adam([p2, q2], lr=0.1)
    opt2.load_state_dict(sd)
    for o, a, b in ((opt, p, q), (opt2, p2, q2)):
        a.grad, b.grad = np.array(0.5), np.array(-1.0)
        o.step()
    assert p.data == p2.data and q.data == q2.data and q2.data == pytest.approx(2.1)


def test_old_state_dicts_without_per_parameter_steps_use_the_global_count():
    p = scalars(1.0)[0]
    opt = optim.Adam([p], lr=0.1)
    for _ in range(3):
        p.grad = np.array(1.0)
        opt.step()
    sd = opt.state_dict()
    del sd["state.0.step"]
    opt2 = optim.Adam(scalars(1.0), lr=0.1)
    opt2.load_state_dict(sd)
    assert opt2.param_steps == [3]


def test_param_groups_per_group_lr_and_weight_decay():
    a, b = scalars([1.0, 2.0], [3.0])
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5, "weight_decay": 0.1}], lr=0.1, momentum=0.0)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert opt.param_groups[1]["momentum"] == 0.0 and opt.params == [a, b]
    a.grad, b.grad = np.array([1.0, 1.0]), np.array([1.0])
    opt.step()
    np.testing.assert_allclose(a.data, [0.9, 1.9])
    np.testing.assert_allclose(b.data, [3.0 - 0.5 * (1.0 + 0.1 * 3.0)])
    opt.param_groups[0]["lr"] = 1.0                   # PyTorch's way of changing one group's lr
    a.grad, b.grad = np.array([1.0, 1.0]), None
    opt.step()
    np.testing.assert_allclose(a.data, [-0.1, 0.9])
    opt.lr = 0.01                                      # shorthand: every group
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.01] and opt.lr == 0.01


def test_param_groups_adam_betas_and_add_param_group():
    a, b, c = scalars(1.0, 1.0, 1.0)
    opt = optim.Adam([{"params": [a], "betas": (0.5, 0.9)}, {"params": [b]}], lr=0.1)
    assert (opt.param_groups[0]["beta1"], opt.param_groups[1]["beta1"]) == (0.5, 0.9)
    opt.add_param_group({"params": [c], "lr": 0.2})
    assert len(opt.param_groups) == 3 and opt.params[-1] is c and len(opt.state) == 3
    for x in (a, b, c):
        x.grad = np.array(1.0)
    opt.step()
    assert c.data == pytest.approx(0.8) and a.data == pytest.approx(0.9)
    with pytest.raises(ValueError, match="appears twice"):
        opt.add_param_group({"params": [a]})
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        opt.add_param_group({"params": scalars(0.0), "momentum": 0.9})
    with pytest.raises(ValueError, match="RMSprop: need"):
        optim.RMSprop([{"params": scalars(0.0), "alpha": 1.5}])


def test_param_groups_state_dict_round_trip():
    a, b = scalars([1.0, 2.0], [3.0])
    opt = optim.Adam([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    a.grad, b.grad = np.array([1.0, -1.0]), np.array([2.0])
    opt.step()
    opt.param_groups[1]["lr"] = 0.25
    sd = opt.state_dict()
    assert sd["lr"] == 0.1 and sd["group.1.lr"] == 0.25
    a2, b2 = scalars([1.0, 2.0], [3.0])
    opt2 = optim.Adam([{"params": [a2]}, {"params": [b2], "lr": 9.0}], lr=9.0)
    opt2.load_state_dict(sd)
    assert [g["lr"] for g in opt2.param_groups] == [0.1, 0.25]
    one_group = optim.Adam(scalars([1.0, 2.0], [3.0]), lr=0.1)
    with pytest.raises(optim.OptimizerStateError, match="unexpected key 'group.1.lr'"):
        one_group.load_state_dict(sd)


def test_schedulers_scale_every_group_and_get_last_lr():
    a, b = scalars(1.0, 1.0)
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.1)
    s = optim.StepLR(opt, step_size=1, gamma=0.5)
    assert s.get_last_lr() == [0.1, 1.0]
    s.step()
    assert s.get_last_lr() == [0.05, 0.5]
    sd = json.loads(json.dumps(s.state_dict()))
    opt2 = optim.SGD([{"params": scalars(1.0)}, {"params": scalars(1.0), "lr": 1.0}], lr=0.1)
    s2 = optim.StepLR(opt2, step_size=1, gamma=0.5)
    s2.load_state_dict(sd)
    assert s2.get_last_lr() == [0.05, 0.5]


def rmsprop_hand(w, grads, lr, alpha, eps, wd, mu, centered):
    v = np.zeros_like(w)
    gb = np.zeros_like(w)
    b = np.zeros_like(w)
    for g in grads:
        g = g + wd * w
        v = alpha * v + (1 - alpha) * g * g
        if centered:
            gb = alpha * gb + (1 - alpha) * g
            d = np.sqrt(v - gb * gb) + eps
        else:
            d = np.sqrt(v) + eps
        if mu:
            b = mu * b + g / d
            w = w - lr * b
        else:
            w = w - lr * g / d
    return w


@pytest.mark.parametrize("kw", [{}, dict(momentum=0.9), dict(centered=True, weight_decay=0.1),
                                dict(centered=True, momentum=0.5, alpha=0.9, eps=1e-6)])
@pytest.mark.parametrize("sparse", [False, True])
def test_rmsprop_three_steps(kw, sparse):
    r = np.random.default_rng(0)
    w0 = r.standard_normal((4, 3))
    grads = [r.standard_normal((4, 3)) for _ in range(3)]
    p = nn.Parameter(w0.copy())
    opt = optim.RMSprop([p], lr=0.05, **kw)
    for g in grads:
        p.grad = cr.RowSparseGrad(np.arange(4), g.copy(), (4, 3)) if sparse else g.copy()
        opt.step()
    full = dict(alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False) | kw
    ref = rmsprop_hand(w0, grads, 0.05, full["alpha"], full["eps"], full["weight_decay"], full["momentum"],
                       full["centered"])
    np.testing.assert_allclose(p.data, ref, rtol=1e-10, atol=1e-12)


def test_rmsprop_state_dict_round_trip():
    p = nn.Parameter(np.ones(3))
    opt = optim.RMSprop([p], lr=0.1, momentum=0.9, centered=True)
    p.grad = np.array([1.0, -2.0, 0.5])
    opt.step()
    q = nn.Parameter(p.data.copy())
    opt2 = optim.RMSprop([q], lr=0.1, momentum=0.9, centered=True)
    opt2.load_state_dict(opt.state_dict())
    p.grad = q.grad = np.array([0.3, 0.3, -0.3])
    opt.step(), opt2.step()
    assert np.array_equal(p.data, q.data)


def test_pytorch_defaults():
    w = scalars(0.0)
    assert optim.AdaGrad(w).eps == 1e-10 and optim.AdaGrad(w).lr == 0.01       # torch.optim.Adagrad
    assert optim.AdaGrad(w, initial_accumulator_value=0.5).initial_accumulator == 0.5
    r = optim.RMSprop(w)                                                         # torch.optim.RMSprop
    assert (r.lr, r.alpha, r.eps, r.momentum, r.centered) == (0.01, 0.99, 1e-8, 0.0, False)
    a = optim.Adam(w)
    assert (a.lr, a.betas, a.eps, a.weight_decay) == (1e-3, (0.9, 0.999), 1e-8, 0.0)
    assert optim.AdamW(w).weight_decay == 0.01


def test_zero_grad_set_to_none():
    lin = nn.Linear(3, 2, rng=0)
    opt = optim.SGD(lin.parameters(), lr=0.1)
    lin(np.ones((1, 3), np.float32)).sum().backward()
    opt.zero_grad(set_to_none=False)
    assert all(isinstance(p.grad, np.ndarray) and not p.grad.any() and p.grad.shape == p.shape
               for p in lin.parameters())
    opt.zero_grad()
    assert all(p.grad is None for p in lin.parameters())
    lin(np.ones((1, 3), np.float32)).sum().backward()
    lin.zero_grad(set_to_none=False)
    assert all(not p.grad.any() for p in lin.parameters())


def test_clip_grad_value_dense_and_sparse():
    a, b = nn.Parameter(np.zeros((4, 2))), nn.Parameter(np.zeros(3))
    a.grad = cr.RowSparseGrad(np.array([1, 1, 2]), np.array([[0.4, 0.1], [0.4, -3.0], [-0.2, 0.0]]), (4, 2))
    b.grad = np.array([5.0, -0.5, -7.0])
    optim.clip_grad_value([a, b], 0.5)
    np.testing.assert_allclose(np.asarray(a.grad), [[0, 0], [0.5, -0.5], [-0.2, 0], [0, 0]])
    np.testing.assert_allclose(b.grad, [0.5, -0.5, -0.5])
    assert optim.clip_grad_value_ is optim.clip_grad_value and optim.clip_grad_norm_ is optim.clip_grad_norm
    with pytest.raises(ValueError, match="clip_value"):
        optim.clip_grad_value([b], -1)


def test_step_closure_returns_the_loss():
    p = scalars(2.0)[0]
    opt = optim.SGD([p], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert float(loss) == 4.0 and p.data == pytest.approx(2.0 - 0.1 * 4.0)
