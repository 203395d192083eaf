"""Layers: values against NumPy, float64 gradient checks (inputs and parameters), Embedding's
row-sparse gradients, Dropout, RReLU, MLP builder, initialisers."""
import tracemalloc

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn
from chainrule.nn import init

RNG = np.random.default_rng(7)


def away_from_zero(*shape, gap=0.05):
    x = RNG.standard_normal(shape)
    return np.where(np.abs(x) < gap, np.sign(x + 1e-12) * (gap + 0.2), x)


# ------------------------------------------------------------------------------------------ Linear
def test_linear_forward_matches_numpy_and_layout():
    lin = nn.Linear(5, 3, rng=0)
    assert lin.weight.shape == (5, 3) and lin.bias.shape == (3,)
    assert np.all(lin.bias.data == 0) and lin.weight.dtype == np.float32
    lin.bias.data[...] = [1, 2, 3]
    x = RNG.standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_allclose(lin(x).data, x @ lin.weight.data + lin.bias.data, rtol=1e-6)
    # the seeds' z = W x + b with W_seed = weight.T, for one example
    np.testing.assert_allclose(lin(x[0]).data, lin.weight.data.T @ x[0] + lin.bias.data, rtol=1e-5)
    # extra leading axes
    assert lin(RNG.standard_normal((2, 6, 5)).astype(np.float32)).shape == (2, 6, 3)


def test_linear_gradcheck(check_module):
    check_module(nn.Linear(4, 3, rng=1), RNG.standard_normal((5, 4)))
    check_module(nn.Linear(4, 2, bias=False, rng=1), RNG.standard_normal((3, 4)))
    check_module(nn.Linear(3, 2, rng=2), RNG.standard_normal(3))            # one example


def test_linear_gradients_are_the_seed_formulas():
    lin = nn.Linear(4, 3, rng=3).to(np.float64)
    x = RNG.standard_normal((6, 4))
    g = RNG.standard_normal((6, 3))
    xt = cr.tensor(x, requires_grad=True)
    lin(xt).backward(g)
    np.testing.assert_allclose(lin.weight.grad, x.T @ g)          # ∂L/∂W = xᵀ δ (sum of outer products)
    np.testing.assert_allclose(lin.bias.grad, g.sum(0))
    np.testing.assert_allclose(xt.grad, g @ lin.weight.data.T)   # ∂L/∂x = δ Wᵀ


def test_linear_shape_error_names_layer_and_shapes():
    lin = nn.Linear(784, 256, rng=0)
    with pytest.raises(ValueError, match=r"Linear\(in_features=784, out_features=256\): input of shape "
                                         r"\(32, 100\), expected \(\.\.\., 784\)"):
        lin(np.zeros((32, 100), np.float32))
    with pytest.raises(ValueError, match="Linear"):
        nn.Linear(0, 3)
    with pytest.raises(ValueError, match="unknown init 'bogus'"):
        nn.Linear(2, 2, init="bogus")


def test_linear_init_and_rng():
    a, b = nn.Linear(50, 40, rng=3), nn.Linear(50, 40, rng=3)
    assert np.array_equal(a.weight.data, b.weight.data)
    g = np.random.default_rng(3)
    c = nn.Linear(50, 40, rng=g)
    assert np.array_equal(a.weight.data, c.weight.data)
    assert np.abs(a.weight.data).max() <= np.sqrt(6 / 90) + 1e-6          # xavier_uniform bound
    he = nn.Linear(400, 300, init="he", rng=0, dtype=np.float64)
    assert he.weight.dtype == np.float64
    assert abs(he.weight.data.std() - np.sqrt(2 / 400)) < 0.02 * np.sqrt(2 / 400)
    z = nn.Linear(3, 3, init="zeros")
    assert np.all(z.weight.data == 0)
    custom = nn.Linear(2, 2, init=lambda shape, rng, dtype: np.full(shape, 0.5, dtype))
    assert np.all(custom.weight.data == 0.5)


# ------------------------------------------------------------------------------------------ init
@pytest.mark.parametrize("fn,var", [
    (init.xavier_uniform, 2 / (300 + 200)), (init.xavier_normal, 2 / (300 + 200)),
    (init.he_uniform, 2 / 300), (init.he_normal, 2 / 300)])
def test_init_variances(fn, var):
    w = fn((300, 200), rng=0, dtype=np.float64)
    assert w.shape == (300, 200) and w.dtype == np.float64
    assert abs(w.var() - var) < 0.03 * var
    assert abs(w.mean()) < 0.01
    assert np.array_equal(w, fn((300, 200), rng=0, dtype=np.float64))


def test_init_misc():
    assert init.fans((3, 4)) == (3, 4) and init.fans((5,)) == (5, 5) and init.fans((2, 3, 4)) == (6, 4)
    assert np.all(init.zeros((2, 2)) == 0) and init.zeros((2, 2)).dtype == cr.get_default_dtype()
    p = nn.Parameter(np.ones((10, 10)))
    assert init.xavier_uniform(p, rng=1) is p and not np.all(p.data == 1)
    a = init.he_uniform((1000,), rng=0, negative_slope=1.0)
    assert np.abs(a).max() <= np.sqrt(6 / (2 * 1000))
    with pytest.raises(TypeError, match="rng"):
        init.normal((2,), rng="seed")
    with pytest.raises(TypeError, match="floating"):
        init.normal((2,), dtype=np.int32)
    assert init.get("kaiming") is init.he_normal and init.get("xavier") is init.xavier_uniform


# ------------------------------------------------------------------------------------------ Embedding
def test_embedding_lookup_and_sparse_grad_equals_dense():
    e = nn.Embedding(10, 4, sparse=True, rng=0, dtype=np.float64)
    idx = np.array([[1, 3, 1], [9, 0, 3]])
    out = e(idx)
    assert out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out.data, e.weight.data[idx])
    g = RNG.standard_normal((2, 3, 4))
    out.backward(g)
    assert isinstance(e.weight.grad, cr.RowSparseGrad)
    dense = np.zeros((10, 4))
    np.add.at(dense, idx.reshape(-1), g.reshape(-1, 4))
    np.testing.assert_allclose(np.asarray(e.weight.grad), dense)
    # the same through a dense embedding
    d = nn.Embedding(10, 4, sparse=False, rng=0, dtype=np.float64)
    d(idx).backward(g)
    assert type(d.weight.grad) is np.ndarray
    np.testing.assert_allclose(d.weight.grad, dense)
    np.testing.assert_allclose(e.weight.grad.coalesce().to_dense(), dense)


def test_embedding_gradcheck(check_module):
    e = nn.Embedding(6, 3, sparse=True, rng=1)
    idx = np.array([0, 2, 2, 5])
    check_module(e, idx, check_input=False)
    check_module(nn.Embedding(6, 3, sparse=False, rng=1), idx, check_input=False)


def test_embedding_big_table_gets_row_sparse_gradient():
    """A 100,000 x 50 table touched by a batch of 200 lookups: the gradient is 200 x 50, never dense,
    and the SGD step touches only those rows."""
    e = nn.Embedding(100_000, 50, sparse=True, rng=0)   # float32: a dense gradient would be 20 MB
    idx = np.random.default_rng(0).integers(0, 100_000, size=200)
    before = e.weight.data.copy()
    opt = cr.optim.SGD(e.parameters(), lr=0.1)
    tracemalloc.start()
    loss = (e(idx) ** 2).sum()
    loss.backward()
    g = e.weight.grad
    opt.step()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert isinstance(g, cr.RowSparseGrad)
    assert g.values.shape == (200, 50) and g.shape == (100_000, 50)
    assert peak < 2_000_000, f"peak {peak} bytes: something dense was allocated"
    changed = np.flatnonzero(np.any(e.weight.data != before, axis=1))
    assert set(changed) <= set(idx) and len(changed) == len(set(idx))


def test_embedding_padding_idx():
    e = nn.Embedding(5, 3, padding_idx=0, rng=0, dtype=np.float64)
    assert np.all(e.weight.data[0] == 0)
    idx = np.array([0, 1, 0, 4])
    out = e(idx)
    assert np.all(out.data[[0, 2]] == 0)
    out.backward(np.ones((4, 3)))
    dense = np.asarray(e.weight.grad)
    assert np.all(dense[0] == 0) and np.all(dense[1] == 1) and np.all(dense[4] == 1)
    opt = cr.optim.Adam(e.parameters(), lr=0.1, weight_decay=0.1)
    for _ in range(3):
        opt.zero_grad()
        (e(idx) ** 2).sum().backward()
        opt.step()
    assert np.all(e.weight.data[0] == 0)
    assert nn.Embedding(5, 3, padding_idx=-1).padding_idx == 4


def test_embedding_errors_and_negative_indices():
    e = nn.Embedding(5, 2, sparse=True, rng=0)
    with pytest.raises(IndexError, match=r"Embedding\(5, 2\): index 5 out of range"):
        e(np.array([1, 5]))
    with pytest.raises(TypeError, match="Embedding.*integers.*float"):
        e(np.array([1.0]))
    np.testing.assert_array_equal(e(np.array([-1])).data, e.weight.data[[4]])
    e(np.array([-1, 4])).sum().backward()
    g = e.weight.grad
    assert set(g.indices.tolist()) == {4}


def test_embedding_from_pretrained():
    v = RNG.standard_normal((7, 3))
    e = nn.Embedding.from_pretrained(v)
    assert e.weight.dtype == np.float64 and np.array_equal(e.weight.data, v)
    assert e.weight.data is not v
    f = nn.Embedding.from_pretrained(v, freeze=True)
    assert not f.weight.requires_grad
    with pytest.raises(ValueError, match="2-D floating"):
        nn.Embedding.from_pretrained(np.arange(4))


# ------------------------------------------------------------------------------------------ activations
@pytest.mark.parametrize("mod,ref", [
    (nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    (nn.Tanh(), np.tanh),
    (nn.ReLU(), lambda x: np.maximum(x, 0)),
    (nn.LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x)),
    (nn.Softplus(), lambda x: np.log1p(np.exp(x))),
    (nn.Identity(), lambda x: x),
    (nn.Softmax(), lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True)),
    (nn.Softmax(axis=0), lambda x: np.exp(x) / np.exp(x).sum(0, keepdims=True)),
    (nn.LogSoftmax(), lambda x: x - np.log(np.exp(x).sum(-1, keepdims=True))),
], ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else "")
def test_activation_values_and_gradcheck(mod, ref, check_module):
    x = away_from_zero(4, 5)
    np.testing.assert_allclose(mod(cr.tensor(x)).data, ref(x), rtol=1e-10, atol=1e-12)
    check_module(mod, x)


def test_sigmoid_stable():
    y = nn.Sigmoid()(cr.tensor(np.array([-1e4, 1e4]), requires_grad=True))
    assert np.all(np.isfinite(y.data)) and y.data.tolist() == [0.0, 1.0]


def test_rrelu_seeded_and_modes(check_module):
    x = away_from_zero(50, 20)
    a, b = nn.RReLU(seed=3), nn.RReLU(seed=3)
    ya, yb = a(cr.tensor(x)), b(cr.tensor(x))
    assert np.array_equal(ya.data, yb.data)                       # same seed, same slopes
    assert not np.array_equal(a(cr.tensor(x)).data, ya.data)      # fresh slopes each call
    neg = x < 0
    slopes = ya.data[neg] / x[neg]
    assert slopes.min() >= 1 / 8 - 1e-12 and slopes.max() <= 1 / 3 + 1e-12 and slopes.std() > 0.01
    np.testing.assert_array_equal(ya.data[~neg], x[~neg])
    a.eval()
    np.testing.assert_allclose(a(cr.tensor(x)).data, np.where(x > 0, x, (1 / 8 + 1 / 3) / 2 * x))
    # gradient with the slopes of that forward pass: re-seed before each forward
    r = nn.RReLU(0.1, 0.3, seed=0)
    check_module(r, away_from_zero(3, 4), reset=lambda: setattr(r, "rng", np.random.default_rng(0)))
    with pytest.raises(ValueError, match="RReLU"):
        nn.RReLU(0.5, 0.1)


def test_dropout_train_eval_and_gradient(check_module):
    d = nn.Dropout(0.3, seed=0)
    x = np.ones((400, 500))
    y = d(cr.tensor(x)).data
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.7)                 # inverted dropout: E[y] = x
    assert abs(y.mean() - 1.0) < 0.01
    assert np.array_equal(nn.Dropout(0.3, seed=0)(cr.tensor(x)).data, y)   # seeded
    d.eval()
    xt = cr.tensor(x)
    assert d(xt) is xt                                             # identity in eval
    d.train()
    xt = cr.tensor(RNG.standard_normal((5, 6)), requires_grad=True)
    out = d(xt)
    out.backward(np.ones((5, 6)))
    np.testing.assert_allclose(xt.grad, (out.data != 0) / 0.7)
    check_module(d, RNG.standard_normal((4, 3)), reset=lambda: setattr(d, "rng", np.random.default_rng(1)))
    assert np.all(nn.Dropout(1.0)(cr.tensor(x)).data == 0)
    assert nn.Dropout(0.0)(xt) is xt
    y32 = nn.Dropout(0.5, seed=0)(cr.tensor(np.ones(10, np.float32)))
    assert y32.dtype == np.float32
    with pytest.raises(ValueError, match="Dropout"):
        nn.Dropout(1.5)


# ------------------------------------------------------------------------------------------ MLP
def test_mlp_builder_shapes_and_names():
    m = nn.MLP([8, 16, 12, 3], seed=0)
    assert [type(l).__name__ for l in m.layers] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert [n for n, _ in m.named_parameters()] == [
        "layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias", "layers.4.weight", "layers.4.bias"]
    assert [p.shape for p in m.parameters()] == [(8, 16), (16,), (16, 12), (12,), (12, 3), (3,)]
    assert m(np.zeros((5, 8), np.float32)).shape == (5, 3)
    assert m.layers[0].init == "he"
    assert nn.MLP([4, 4, 2], activation="tanh").layers[0].init == "xavier"
    assert nn.MLP([4, 4, 2], activation="sigmoid", init="he_uniform").layers[0].init == "he_uniform"
    d = nn.MLP([4, 6, 6, 2], activation="rrelu", dropout=0.2, output="softmax", seed=1)
    assert [type(l).__name__ for l in d.layers] == [
        "Linear", "RReLU", "Dropout", "Linear", "RReLU", "Dropout", "Linear", "Softmax"]
    d.eval()
    np.testing.assert_allclose(d(np.ones((3, 4), np.float32)).data.sum(1), 1, rtol=1e-6)
    s = nn.MLP([3, 2], output="sigmoid")
    assert [type(l).__name__ for l in s.layers] == ["Linear", "Sigmoid"]


def test_mlp_seeded():
    a, b, c = nn.MLP([5, 7, 2], seed=4), nn.MLP([5, 7, 2], seed=4), nn.MLP([5, 7, 2], seed=5)
    assert all(np.array_equal(p.data, q.data) for p, q in zip(a.parameters(), b.parameters()))
    assert not np.array_equal(a.parameters()[0].data, c.parameters()[0].data)
    # layers get independent streams
    m = nn.MLP([6, 6, 6], seed=0)
    assert not np.allclose(m.layers[0].weight.data, m.layers[2].weight.data)


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "leaky_relu", "softplus"])
@pytest.mark.parametrize("out", [None, "sigmoid", "softmax"])
def test_mlp_gradcheck(act, out, check_module):
    m = nn.MLP([4, 5, 3], activation=act, output=out, seed=2)
    check_module(m, RNG.standard_normal((3, 4)))


def test_mlp_errors():
    with pytest.raises(ValueError, match="MLP: sizes"):
        nn.MLP([4])
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        nn.MLP([4, 3, 2], activation="swish")
    with pytest.raises(ValueError, match="dropout"):
        nn.MLP([4, 3], dropout=1.0)
    m = nn.MLP([4, 3, 2], activation=nn.Tanh)
    assert isinstance(m.layers[1], nn.Tanh)
