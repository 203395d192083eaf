"""Every row of docs/coming-from-pytorch.md runs: the first code span of the chainrule column is
executed in a fresh namespace and the row's check (keyed by that code) asserts what the notes say.
A row without a check, or a check without a row, fails."""
import pathlib
import re
import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule import losses, nn, optim
from chainrule.data import DataLoader

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "coming-from-pytorch.md"


def rows():
    out = []
    for line in DOC.read_text().splitlines():
        if not line.startswith("|") or line.startswith("|---") or line.startswith("| PyTorch"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        assert len(cells) == 3, f"table row without 3 cells: {line}"
        m = re.search(r"`([^`]+)`", cells[1])
        assert m, f"no code in the chainrule column: {line}"
        out.append(m.group(1))
    return out


def namespace():
    cr.manual_seed(0)
    x = cr.tensor([[1.0, 5.0, 2.0], [3.0, 0.0, 4.0]], requires_grad=True)
    w = cr.tensor([1.0, 2.0], requires_grad=True)
    (w * w).sum().backward()
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    model(np.ones((1, 3), np.float32)).sum().backward()
    rng = np.random.default_rng(0)
    return dict(cr=cr, nn=nn, optim=optim, losses=losses, np=np, DataLoader=DataLoader, x=x, w=w,
                model=model, X=rng.standard_normal((10, 3)).astype(np.float32), Y=np.arange(10) % 2,
                z=cr.tensor(rng.standard_normal((4, 3)), requires_grad=True), y=np.array([0, 2, 1, 2]),
                opt=_stepped(optim.Adam(model.parameters(), lr=0.1)))


def _stepped(opt):
    opt.step()
    return opt


def run(code, ns):
    try:
        compiled = compile(code, "<row>", "eval")
    except SyntaxError:
        exec(code, ns)
        return None
    return eval(compiled, ns)


def _grads_none(ns, r):
    assert all(p.grad is None for p in ns["model"].parameters())


def _zero_grads(ns, r):
    assert all(isinstance(p.grad, np.ndarray) and not p.grad.any() for p in ns["model"].parameters())


def _sgd_groups(ns, r):
    assert [g["lr"] for g in r.param_groups] == [0.1, 1.0] and len(r.params) == 4


def _loader(ns, r):
    batches = list(r)
    assert len(batches) == 3 and sorted(np.concatenate([b[1] for b in batches]).tolist()) == sorted(ns["Y"].tolist())
    assert isinstance(batches[0][0], np.ndarray)


def _index_put(ns, r):
    assert r.data[0, 0] == 0 and ns["x"].data[0, 0] == 1.0
    r.sum().backward()
    assert ns["x"].grad[0, 0] == 0 and ns["x"].grad[1, 1] == 1
    with pytest.raises(TypeError, match="index_put"):
        ns["x"][0, 0] = 0.0


def _plus_one(ns, r):
    assert not ns["x"].is_leaf
    leaf = cr.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        leaf += 1


def _no_grad_step(ns, r):
    np.testing.assert_allclose(ns["w"].data, [0.8, 1.6])
    assert ns["w"].is_leaf


def _manual_seed(ns, r):
    a = nn.Linear(3, 2).weight.data.copy()
    cr.manual_seed(0)
    np.testing.assert_array_equal(nn.Linear(3, 2).weight.data, a)


def _max_dim(ns, r):
    np.testing.assert_array_equal(ns["values"].data, [5.0, 4.0])
    np.testing.assert_array_equal(ns["idx"].data, [1, 2])
    assert ns["x"].max(1).shape == (2,)


def _float32_model(ns, r):
    assert r.dtype == np.float32
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert ns["model"](cr.tensor(np.ones((2, 3)), requires_grad=True, dtype="float64")).dtype == np.float64


def _buffer(ns, r):
    m = ns["model"]
    assert "mean" in m.state_dict() and all(p is not m.mean for p in m.parameters())


def _hook(ns, r):
    seen = []
    ns["model"].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    ns["model"](np.ones((5, 3), np.float32))
    assert seen == [(5, 2)]


def _embedding(ns, r):
    r(np.array([2, 2])).sum().backward()
    np.testing.assert_array_equal(r.weight.grad[2], [2, 2, 2])


def _ce(ns, r):
    ref = -np.mean(np.log(cr.softmax(ns["z"], -1).data[np.arange(4), ns["y"]]))
    np.testing.assert_allclose(float(r), ref, rtol=1e-6)


def _adam(ns, r):
    model = ns["model"]
    before = model[0].bias.data.copy()
    r.step()
    assert np.allclose(np.abs(model[0].bias.data - before)[model[0].bias.grad != 0], 0.1, rtol=1e-3)
    assert optim.AdaGrad(model.parameters()).eps == 1e-10


CHECKS = {
    "cr.tensor([1.0, 2.0])": lambda ns, r: r.dtype == np.float32 or pytest.fail(),
    "cr.zeros(2, 3)": lambda ns, r: (r.shape == (2, 3) and not r.data.any()) or pytest.fail(),
    "cr.ones_like(x)": lambda ns, r: (r.shape == (2, 3) and r.data.all() and r.dtype == np.float32) or pytest.fail(),
    "cr.arange(5)": lambda ns, r: (r.tolist() == [0, 1, 2, 3, 4] and r.dtype == np.int64) or pytest.fail(),
    "cr.linspace(0, 1, 5)": lambda ns, r: np.testing.assert_allclose(r.data, [0, .25, .5, .75, 1]),
    "cr.manual_seed(0)": _manual_seed,
    "cr.randn(2, 3)": lambda ns, r: (r.shape == (2, 3) and r.dtype == np.float32) or pytest.fail(),
    "cr.randint(0, 10, (4,))": lambda ns, r: (r.dtype == np.int64 and r.data.max() < 10) or pytest.fail(),
    "np.asarray(x)": lambda ns, r: (r is ns["x"].data and r.dtype == np.float32) or pytest.fail(),
    "x.sum().item()": lambda ns, r: (r == 15.0 and isinstance(r, float)) or pytest.fail(),
    "x.shape": lambda ns, r: (r == (2, 3) and ns["x"].size == 6 and ns["x"].numel() == 6) or pytest.fail(),
    "x.ndim": lambda ns, r: (r == 2 == ns["x"].dim()) or pytest.fail(),
    "x.unsqueeze(0)": lambda ns, r: (r.shape == (1, 2, 3)) or pytest.fail(),
    "x.view(-1)": lambda ns, r: (r.shape == (6,)) or pytest.fail(),
    "x.transpose(0, 1)": lambda ns, r: np.testing.assert_array_equal(r.data, ns["x"].data.T),
    "cr.transpose(x, 0, 1)": lambda ns, r: (np.array_equal(r.data, ns["x"].transpose(0, 1).data)
                                            and cr.Tensor.transpose is cr.transpose and cr.Tensor.sum is cr.sum
                                            and cr.Tensor.__add__ is cr.add
                                            and "Args:" in cr.Tensor.sum.__doc__) or pytest.fail(),
    "x.permute(1, 0)": lambda ns, r: np.testing.assert_array_equal(r.data, ns["x"].t().data),
    "x.sum(axis=1, keepdims=True)": lambda ns, r: np.testing.assert_array_equal(
        r.data, ns["x"].sum(dim=1, keepdim=True).data),
    "values, idx = x.max(dim=1)": _max_dim,
    "x.argmax(axis=1)": lambda ns, r: np.testing.assert_array_equal(r.data, ns["x"].argmax(dim=1).data),
    "cr.concat([x, x], axis=0)": lambda ns, r: np.testing.assert_array_equal(
        r.data, cr.cat([ns["x"], ns["x"]], dim=0).data),
    "abs(x)": lambda ns, r: np.testing.assert_array_equal(r.data, np.abs(ns["x"].data)),
    "x.clone()": lambda ns, r: (r.requires_grad and not r.is_leaf and r.data is not ns["x"].data) or pytest.fail(),
    "y = cr.index_put(x, (0, 0), 0.0)": lambda ns, r: _index_put(ns, ns["y"]),
    "x = x + 1": _plus_one,
    "with cr.no_grad(): w -= 0.1 * w.grad": _no_grad_step,
    "cr.grad(lambda t: (t * t).sum())(x)": lambda ns, r: np.testing.assert_allclose(r, 2 * ns["x"].data),
    "cr.jvp(cr.tanh, (x.data,), (np.ones((2, 3)),))": lambda ns, r: np.testing.assert_allclose(
        r[1], 1 - np.tanh(ns["x"].data) ** 2, rtol=1e-6),
    "cr.hvp(lambda t: (t ** 3).sum(), x.data, np.ones((2, 3)))": lambda ns, r: np.testing.assert_allclose(
        r, 6 * ns["x"].data, rtol=1e-6),
    "nn.Linear(3, 2)": lambda ns, r: (r.weight.shape == (3, 2)) or pytest.fail(),
    "model(np.ones((2, 3)))": _float32_model,
    "nn.Flatten()": lambda ns, r: (r(np.ones((2, 3, 4))).shape == (2, 12)) or pytest.fail(),
    "x.astype(np.float64)": lambda ns, r: (r.dtype == np.float64 and not r.requires_grad) or pytest.fail(),
    "opt.state[opt.params.index(model[0].weight)]['m']": lambda ns, r: (
        r.shape == (3, 4) and ns["opt"].param_steps[0] == 1) or pytest.fail(),
    "model.to(np.float64)": lambda ns, r: (ns["model"][0].weight.dtype == np.float64) or pytest.fail(),
    "nn.ModuleDict({'a': nn.Linear(2, 2)})": lambda ns, r: (list(r.state_dict()) == ["a.weight", "a.bias"])
    or pytest.fail(),
    "model.register_buffer('mean', np.zeros(3, np.float32))": _buffer,
    "model.register_forward_hook(lambda m, inp, out: None)": _hook,
    "nn.Embedding(10, 3)": _embedding,
    "nn.CrossEntropyLoss()(z, y)": _ce,
    "losses.cross_entropy(z, y, ignore_index=-100, label_smoothing=0.1)": lambda ns, r: (
        float(r) > float(losses.cross_entropy(ns["z"], ns["y"]))) or pytest.fail(),
    "losses.nll_loss(cr.log_softmax(z, -1), y)": lambda ns, r: np.testing.assert_allclose(
        float(r), float(losses.cross_entropy(ns["z"], ns["y"])), rtol=1e-12),
    "model.zero_grad(set_to_none=False)": lambda ns, r: _zero_grads(ns, r),
    "optim.Adam(model.parameters(), lr=0.1)": _adam,
    "optim.SGD([{'params': model[0].parameters()}, {'params': model[2].parameters(), 'lr': 1.0}], lr=0.1)": _sgd_groups,
    "opt.param_groups[0]['lr'] = 0.01": lambda ns, r: (ns["opt"].lr == 0.01) or pytest.fail(),
    "optim.StepLR(opt, step_size=1, gamma=0.5).get_last_lr()": lambda ns, r: (r == [0.1]) or pytest.fail(),
    "optim.RMSprop(model.parameters())": lambda ns, r: (r.lr, r.alpha) == (0.01, 0.99) or pytest.fail(),
    "opt.zero_grad()": _grads_none,
    "optim.clip_grad_norm(model.parameters(), 1.0)": lambda ns, r: (
        isinstance(r, float) and np.sqrt(sum(float((p.grad ** 2).sum()) for p in ns["model"].parameters()))
        <= 1.0 + 1e-5) or pytest.fail(),
    "optim.clip_grad_value(model.parameters(), 0.5)": lambda ns, r: (
        max(float(np.abs(p.grad).max()) for p in ns["model"].parameters()) <= 0.5) or pytest.fail(),
    "DataLoader((X, Y), batch_size=4, shuffle=True, seed=0)": _loader,
    "model.state_dict()": lambda ns, r: (list(r) == ["0.weight", "0.bias", "2.weight", "2.bias"]
                                         and all(isinstance(v, np.ndarray) for v in r.values())) or pytest.fail(),
}


def test_every_row_has_a_check_and_every_check_a_row():
    doc = rows()
    assert len(doc) == len(set(doc)), "duplicate chainrule spellings in the table"
    assert set(doc) - set(CHECKS) == set(), "rows without a check"
    assert set(CHECKS) - set(doc) == set(), "checks without a row"


@pytest.mark.parametrize("code", rows())
def test_row(code):
    ns = namespace()
    r = run(code, ns)
    CHECKS[code](ns, r)
