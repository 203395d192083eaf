"""nn additions a PyTorch user reaches for: ModuleDict, register_buffer, forward hooks,
Embedding's dense default (and RowSparseGrad indexing), the dtype promotion rule of layers."""
import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn, optim


class WithBuffer(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2, rng=0)
        self.register_buffer("running_mean", np.zeros(2, np.float32))
        self.register_buffer("scratch", np.ones(3, np.float32), persistent=False)

    def forward(self, x):
        return self.lin(x) - self.running_mean


def test_register_buffer_in_state_dict_not_a_parameter():
    m = WithBuffer()
    assert [n for n, _ in m.named_parameters()] == ["lin.weight", "lin.bias"]
    assert list(m.state_dict()) == ["lin.weight", "lin.bias", "running_mean"]
    assert [n for n, _ in m.named_buffers()] == ["running_mean", "scratch"]
    assert isinstance(m.running_mean, cr.Tensor) and not m.running_mean.requires_grad
    m.running_mean = np.array([1.0, 2.0], np.float32)           # stays a buffer
    assert isinstance(m.running_mean, cr.Tensor)
    sd = m.state_dict()
    m2 = WithBuffer()
    m2.load_state_dict(sd)
    np.testing.assert_array_equal(m2.running_mean.data, [1.0, 2.0])
    with pytest.raises(nn.StateDictError, match="missing keys.*running_mean"):
        m2.load_state_dict({k: v for k, v in sd.items() if k != "running_mean"})
    m2.to(np.float64)
    assert m2.running_mean.dtype == np.float64
    outer = nn.Sequential(WithBuffer())
    assert "0.running_mean" in outer.state_dict()
    assert len(optim.SGD(m.parameters(), lr=0.1).params) == 2
    with pytest.raises(TypeError, match="cannot require grad"):
        m.register_buffer("bad", cr.tensor([1.0], requires_grad=True))


def test_module_dict():
    md = nn.ModuleDict({"enc": nn.Linear(3, 4, rng=0), "dec": nn.Linear(4, 3, rng=1)})
    md["head"] = nn.Linear(3, 1, rng=2)
    assert list(md) == ["enc", "dec", "head"] and len(md) == 3 and "dec" in md
    assert [n for n, _ in md.named_parameters()][:2] == ["enc.weight", "enc.bias"]
    assert len(md.parameters()) == 6

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.heads = md

    assert "heads.head.weight" in Net().state_dict()
    del md["head"]
    assert list(md.keys()) == ["enc", "dec"] and [type(v).__name__ for v in md.values()] == ["Linear", "Linear"]
    with pytest.raises(TypeError, match="expected a Module"):
        md["x"] = 3
    with pytest.raises(KeyError, match="no module 'zzz'"):
        md["zzz"]


def test_forward_hooks_and_pre_hooks():
    lin = nn.Linear(2, 3, rng=0)
    seen = []
    h = lin.register_forward_hook(lambda m, inp, out: seen.append((m, inp[0].shape, out.shape)))
    x = np.ones((4, 2), np.float32)
    y = lin(x)
    assert seen == [(lin, (4, 2), (4, 3))]
    h2 = lin.register_forward_hook(lambda m, inp, out: out * 0)
    assert not lin(x).data.any()
    h2.remove()
    pre = lin.register_forward_pre_hook(lambda m, inp: (inp[0] * 2,))
    np.testing.assert_allclose(lin(x).data, lin.forward(x * 2).data)
    pre.remove()
    h.remove()
    seen.clear()
    np.testing.assert_array_equal(lin(x).data, y.data)
    assert seen == []
    net = nn.Sequential(nn.Linear(2, 2, rng=0), nn.ReLU())
    acts = {}
    net[1].register_forward_hook(lambda m, i, o: acts.update(relu=o.data.copy()))
    net(x)
    assert acts["relu"].shape == (4, 2)


def test_embedding_is_dense_by_default_and_sparse_grads_index():
    e = nn.Embedding(6, 3, rng=0)
    assert e.sparse is False
    idx = np.array([2, 2, 5])
    e(idx).sum().backward()
    assert type(e.weight.grad) is np.ndarray
    np.testing.assert_array_equal(e.weight.grad[2], [2, 2, 2])                # failed with sparse default
    s = nn.Embedding(6, 3, sparse=True, rng=0)
    s(idx).sum().backward()
    g = s.weight.grad
    assert isinstance(g, cr.RowSparseGrad)
    np.testing.assert_array_equal(g[2], [2, 2, 2])
    np.testing.assert_array_equal(g[0], [0, 0, 0])
    np.testing.assert_array_equal(g[-1], [1, 1, 1])
    assert g[2, 1] == 2 and g[5:].shape == (1, 3) and len(g) == 6
    np.testing.assert_array_equal(g.numpy(), e.weight.grad)
    with pytest.raises(IndexError, match="row 6 out of range"):
        g[6]
    for model in ("window", "sequence", "rntn", "treelstm"):          # built-in big-vocabulary models stay sparse
        import inspect
        import importlib
        src = inspect.getsource(importlib.import_module(f"chainrule.models.{model}"))
        assert ("Embedding(" in src and "sparse=True" in src) or "word_vectors(" in src, model
    from chainrule.models.rntn import Vocab, word_vectors          # the RNTN's and Tree-LSTM's table
    emb = word_vectors(Vocab(["a", "b"]), 3, np.random.default_rng(0), np.float64)
    emb(np.array([1])).sum().backward()
    assert isinstance(emb.weight.grad, cr.RowSparseGrad)


def test_dtype_promotion_rule_of_layers():
    lin = nn.Linear(3, 2, rng=0)                                   # float32
    x64 = np.ones((2, 3))                                          # float64 data
    assert lin(x64).dtype == np.float32
    assert lin(cr.tensor(x64, dtype="float64")).dtype == np.float32
    assert lin(np.ones((2, 3), np.int64)).dtype == np.float32
    xg = cr.tensor(x64, requires_grad=True, dtype="float64")
    from chainrule.nn import layers
    layers._WARNED.discard("Linear")
    with pytest.warns(UserWarning, match="Linear: an input of dtype float64 that requires grad"):
        out = lin(xg)
    assert out.dtype == np.float64
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lin(xg)                                                    # warned once only
    mlp = nn.MLP([3, 4, 2], seed=0)
    assert mlp(x64).dtype == np.float32
    assert mlp.to(np.float64)(x64.astype(np.float32)).dtype == np.float64


def test_dtype_promotion_rule_of_recurrent_and_attention_layers():
    x = np.ones((2, 4, 3))                                         # float64 data, float32 layers
    cr.manual_seed(0)
    assert nn.LSTM(3, 5)(x)[0].dtype == np.float32
    assert nn.GRU(3, 5)(x)[0].dtype == np.float32
    assert nn.LSTMCell(3, 5)(x[:, 0])[0].dtype == np.float32
    assert nn.GRUCell(3, 5)(x[:, 0]).dtype == np.float32
    assert nn.MultiHeadAttention(3, 1)(x).dtype == np.float32


def test_flatten_module(check_module):
    f = nn.Flatten()
    assert f(np.ones((2, 3, 4))).shape == (2, 12) and nn.Flatten(0, 1)(np.ones((2, 3, 4))).shape == (6, 4)
    assert check_module(f, np.random.default_rng(0).standard_normal((2, 3, 2)))
    net = nn.Sequential(nn.Flatten(), nn.Linear(6, 2, rng=0))
    assert net(np.ones((5, 2, 3), np.float32)).shape == (5, 2)
