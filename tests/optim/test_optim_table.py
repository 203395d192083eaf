"""The one optimizer table (chainrule.optim.OPTIMIZERS) and its factory."""
import numpy as np
import pytest

import chainrule as cr
from chainrule import optim


def test_every_entry_builds_its_class_with_the_table_defaults():
    for name, (cls, defaults) in optim.OPTIMIZERS.items():
        w = cr.tensor(np.ones(3), requires_grad=True)
        opt = optim.make_optimizer(name, [w])
        assert type(opt) is cls
        for k, v in defaults.items():
            assert opt.param_groups[0][k] == v, (name, k)
        assert optim.default_lr(name) == defaults["lr"]


def test_options_override_none_keeps_default_and_foreign_options_are_ignored():
    w = cr.tensor(np.ones(3), requires_grad=True)
    opt = optim.make_optimizer("sgd", [w], lr=0.5, momentum=0.9, weight_decay=None, eps=1e-3)
    h = opt.param_groups[0]
    assert (h["lr"], h["momentum"], h["weight_decay"]) == (0.5, 0.9, 0.0)
    opt = optim.make_optimizer("adam", [w], lr=None, momentum=0.9)       # Adam has no momentum: ignored
    assert opt.param_groups[0]["lr"] == 1e-3


def test_the_factory_equals_the_class():
    rng = np.random.default_rng(0)
    g = rng.standard_normal(4)
    a, b = (cr.tensor(np.ones(4), requires_grad=True) for _ in range(2))
    oa = optim.make_optimizer("adagrad", [a], lr=0.1)
    ob = optim.AdaGrad([b], lr=0.1, eps=1e-8)
    for _ in range(3):
        a.grad, b.grad = g.copy(), g.copy()
        oa.step()
        ob.step()
    np.testing.assert_array_equal(a.data, b.data)


def test_unknown_names_are_clear_errors():
    w = cr.tensor(np.ones(1), requires_grad=True)
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'.*sgd"):
        optim.make_optimizer("lbfgs", [w])
    with pytest.raises(ValueError, match="unknown schedule 'linear'.*cosine"):
        optim.make_scheduler("linear", optim.SGD([w], lr=0.1), 3)


def test_schedules():
    w = cr.tensor(np.ones(1), requires_grad=True)
    assert optim.make_scheduler("none", optim.SGD([w], lr=0.1), 3) is None
    s = optim.make_scheduler("step", optim.SGD([w], lr=0.1), 9)
    assert isinstance(s, optim.StepLR) and s.step_size == 3
    c = optim.make_scheduler("cosine", optim.SGD([w], lr=0.1), 5)
    assert isinstance(c, optim.CosineLR) and c.T_max == 5
