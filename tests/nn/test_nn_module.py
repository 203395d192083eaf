"""Module, Parameter, containers: registration, names, modes, state dicts, dtype casting, repr."""
import json

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn


class Block(nn.Module):
    def __init__(self, seed=0, n_in=3):
        super().__init__()
        self.lin = nn.Linear(n_in, 4, rng=seed)
        self.scale = nn.Parameter(np.ones(4, dtype=np.float32))
        self.act = nn.Tanh()

    def forward(self, x):
        return self.act(self.lin(x)) * self.scale


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Parameter(np.zeros(2, dtype=np.float32))
        self.blocks = [Block(0), Block(1, n_in=4)]                  # a plain list of modules
        self.head = nn.Sequential(nn.Linear(4, 2, rng=2), nn.Dropout(0.5, seed=0))
        self.ws = [nn.Parameter(np.ones((2, 2), dtype=np.float32)), nn.Parameter(np.ones(3, dtype=np.float32))]
        self.sizes = (3, 4)                                 # not a module: ignored

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def test_parameter_basics():
    p = nn.Parameter(np.arange(6.0).reshape(2, 3), name="w")
    assert isinstance(p, cr.Tensor) and p.requires_grad and p.is_leaf and p.name == "w"
    assert p.dtype == np.float64
    assert nn.Parameter([1.0, 2.0]).dtype == cr.get_default_dtype()
    assert nn.Parameter([1, 2]).dtype == cr.get_default_dtype()        # ints from a list become floats
    with pytest.raises(TypeError, match="Parameter.*int64"):
        nn.Parameter(np.arange(3))
    q = nn.Parameter(cr.tensor([1.0, 2.0], requires_grad=True) * 2)        # from a computed tensor: cut
    assert q.is_leaf
    ro = np.ones(3)
    ro.flags.writeable = False
    assert nn.Parameter(ro).data.flags.writeable
    assert "Parameter(name='w', shape=(2, 3)" in repr(p)


def test_parameter_gets_gradient():
    p = nn.Parameter(np.array([1.0, -2.0]))
    (p * p).sum().backward()
    np.testing.assert_allclose(p.grad, [2.0, -4.0])


def test_registration_order_and_dotted_names():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["first", "ws.0", "ws.1",
                     "blocks.0.scale", "blocks.0.lin.weight", "blocks.0.lin.bias",
                     "blocks.1.scale", "blocks.1.lin.weight", "blocks.1.lin.bias",
                     "head.0.weight", "head.0.bias"]
    # own parameters come before children's; within a module, assignment order
    assert names[:3] == ["first", "ws.0", "ws.1"]
    assert [n for n, _ in net.named_children()] == ["blocks", "head"]
    mods = [n for n, _ in net.named_modules()]
    assert mods[:4] == ["", "blocks", "blocks.0", "blocks.0.lin"]
    assert "head.1" in mods
    assert len(net.parameters()) == 11
    assert net.num_parameters() == 2 + 4 + 3 + (12 + 4 + 4) + (16 + 4 + 4) + 8 + 2


def test_block_own_params_order():
    b = Block()
    assert [n for n, _ in b.named_parameters()] == ["scale", "lin.weight", "lin.bias"]
    assert [n for n, _ in b.named_parameters(recurse=False)] == ["scale"]


def test_shared_parameters_listed_once():
    a = nn.Linear(3, 3, rng=0)
    b = nn.Linear(3, 3, rng=1)
    b.weight = a.weight                   # tying
    seq = nn.Sequential(a, b)
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "1.bias"]
    assert seq.num_parameters() == 9 + 3 + 3


def test_assigning_tensor_to_parameter_slot_is_an_error():
    lin = nn.Linear(2, 2, rng=0)
    with pytest.raises(TypeError, match="Linear.*parameter 'weight'"):
        lin.weight = lin.weight * 2
    lin.bias = None                       # None is allowed: removes the parameter
    assert [n for n, _ in lin.named_parameters()] == ["weight"]
    assert lin(np.ones((1, 2), dtype=np.float32)).shape == (1, 2)


def test_train_eval_recursive():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    net.train(False)
    assert not net.head[1].training


def test_zero_grad_and_requires_grad():
    net = Net()
    x = np.ones((2, 3), dtype=np.float32)
    net(x).sum().backward()
    assert net.blocks[0].lin.weight.grad is not None
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    net.requires_grad_(False)
    assert not any(p.requires_grad for p in net.parameters())


def test_state_dict_is_a_copy_and_round_trips():
    net = Net()
    sd = net.state_dict()
    assert list(sd) == [n for n, _ in net.named_parameters()]
    sd["blocks.0.lin.weight"][...] = 7.0                   # a copy: the model is untouched
    assert not np.all(net.blocks[0].lin.weight.data == 7.0)
    other = Net()
    for p in other.parameters():
        p.data[...] = np.random.default_rng(5).standard_normal(p.shape)
    res = other.load_state_dict(net.state_dict())
    assert res.missing_keys == [] and res.unexpected_keys == []
    for (n1, p1), (n2, p2) in zip(net.named_parameters(), other.named_parameters()):
        assert n1 == n2 and np.array_equal(p1.data, p2.data)
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    net.eval(), other.eval()
    assert np.array_equal(net(x).data, other(x).data)


def test_load_state_dict_keeps_the_same_arrays():
    lin = nn.Linear(2, 3, rng=0)
    w = lin.weight.data
    lin.load_state_dict({"weight": np.zeros((2, 3), np.float32), "bias": np.ones(3, np.float32)})
    assert lin.weight.data is w and np.all(w == 0)


def _snapshot(m):
    return {n: p.data.copy() for n, p in m.named_parameters()}


def test_load_state_dict_errors_name_everything_and_change_nothing():
    net = Net()
    before = _snapshot(net)
    sd = net.state_dict()
    sd = {k: np.zeros_like(v) for k, v in sd.items()}        # would change everything if applied
    del sd["head.0.bias"]
    sd["blocks.7.lin.weight"] = np.zeros((3, 4), np.float32)
    sd["blocks.0.lin.weight"] = np.zeros((4, 3), np.float32)          # transposed
    sd["first"] = np.zeros(2, np.float64)                             # wrong dtype
    with pytest.raises(nn.StateDictError) as ei:
        net.load_state_dict(sd)
    msg = str(ei.value)
    assert "Net.load_state_dict" in msg
    assert "missing keys (1): ['head.0.bias']" in msg
    assert "unexpected keys (1): ['blocks.7.lin.weight']" in msg
    assert "'blocks.0.lin.weight': expected shape (3, 4), got shape (4, 3)" in msg
    assert "'first': expected dtype float32, got dtype float64" in msg
    assert "nothing was changed" in msg
    assert ei.value.missing_keys == ["head.0.bias"]
    assert ei.value.unexpected_keys == ["blocks.7.lin.weight"]
    assert isinstance(ei.value, ValueError)
    after = _snapshot(net)
    assert all(np.array_equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("problem", ["missing", "unexpected", "shape"])
def test_each_problem_alone_changes_nothing(problem):
    lin = nn.Linear(3, 2, rng=0)
    before = _snapshot(lin)
    sd = {"weight": np.full((3, 2), 5.0, np.float32), "bias": np.full(2, 5.0, np.float32)}
    if problem == "missing":
        del sd["bias"]
    elif problem == "unexpected":
        sd["extra"] = np.zeros(1)
    else:
        sd["bias"] = np.zeros(3, np.float32)
    with pytest.raises(nn.StateDictError, match="bias|extra"):
        lin.load_state_dict(sd)
    assert all(np.array_equal(before[k], v.data) for k, v in lin.named_parameters())


def test_load_state_dict_non_strict():
    lin = nn.Linear(3, 2, rng=0)
    res = lin.load_state_dict({"weight": np.zeros((3, 2), np.float32), "junk": np.ones(1)}, strict=False)
    assert res.missing_keys == ["bias"] and res.unexpected_keys == ["junk"]
    assert np.all(lin.weight.data == 0)
    with pytest.raises(nn.StateDictError, match="shape"):       # mismatches still raise
        lin.load_state_dict({"weight": np.zeros((2, 3), np.float32)}, strict=False)


def test_to_dtype():
    net = Net()
    x = np.ones((1, 3))
    net(x).sum().backward()
    assert net.to(np.float64) is net
    assert all(p.dtype == np.float64 and p.grad is None for p in net.parameters())
    net.eval()
    assert net(x).dtype == np.float64
    net.float()
    assert all(p.dtype == np.float32 for p in net.parameters())
    with pytest.raises(TypeError, match="floating"):
        net.to(np.int32)


def test_containers():
    seq = nn.Sequential(nn.Linear(2, 3, rng=0), nn.ReLU())
    assert len(seq) == 2 and isinstance(seq[0], nn.Linear)
    seq.append(nn.Linear(3, 1, rng=1))
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert isinstance(seq[:2], nn.Sequential) and len(seq[:2]) == 2
    assert seq(np.ones((4, 2), np.float32)).shape == (4, 1)
    ml = nn.ModuleList([nn.Tanh(), nn.Sigmoid()])
    assert [type(m).__name__ for m in ml] == ["Tanh", "Sigmoid"]
    with pytest.raises(TypeError, match="expected a Module"):
        ml.append(3)
    assert nn.Sequential([nn.Tanh(), nn.ReLU()])[1].__class__ is nn.ReLU


def test_forward_not_defined():
    class Empty(nn.Module):
        pass
    with pytest.raises(NotImplementedError, match="Empty"):
        Empty()(1)


def test_module_without_super_init_still_works():
    class Lazy(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.ones(2))

        def forward(self, x):
            return x * self.w
    m = Lazy()
    assert m.training and [n for n, _ in m.named_parameters()] == ["w"]
    m.eval()
    assert not m.training


def test_repr():
    r = repr(nn.MLP([4, 8, 2], activation="tanh", seed=0))
    assert "MLP(sizes=[4, 8, 2]" in r
    assert "(0): Linear(in_features=4, out_features=8, bias=True, init='xavier')" in r
    assert "(1): Tanh()" in r
    assert "Parameter(shape=(3, 4)" not in r
    assert "(scale): Parameter(shape=(4,), dtype=float32)" in repr(Block())


def test_state_dict_through_a_checkpoint(tmp_path):
    pytest.importorskip("safetensors")
    from chainrule.checkpoint import load_checkpoint, save_checkpoint
    net = nn.MLP([5, 7, 3], seed=3)
    save_checkpoint(tmp_path / "m.safetensors", net.state_dict(), {"k": 1})
    arrays, meta = load_checkpoint(tmp_path / "m.safetensors")
    other = nn.MLP([5, 7, 3], seed=4)
    other.load_state_dict(arrays)
    assert all(np.array_equal(a.data, b.data) for a, b in zip(net.parameters(), other.parameters()))
    assert json.dumps(meta)
