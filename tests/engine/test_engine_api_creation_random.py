"""cr.zeros/ones/full/empty/eye/arange/linspace, *_like, rand/randn/randint, and one global
generator (cr.manual_seed) behind parameter init, Dropout, RReLU, MLP and shuffling."""
import numpy as np
import pytest

import chainrule as cr
from chainrule import nn


def test_creation_functions():
    assert cr.zeros(2, 3).shape == (2, 3) and cr.zeros((2, 3)).dtype == np.float32
    assert not cr.ones(4).data.any() == 0 and cr.ones(4).data.sum() == 4
    assert cr.empty(2).shape == (2,)
    f = cr.full((2, 2), 3.5)
    assert f.dtype == np.float32 and (f.data == 3.5).all()
    assert cr.full((2,), 7).dtype == np.int64
    np.testing.assert_array_equal(cr.eye(3).data, np.eye(3))
    assert cr.eye(2, 3).shape == (2, 3)
    a = cr.arange(5)
    assert a.dtype == np.int64 and a.tolist() == [0, 1, 2, 3, 4]
    assert cr.arange(1, 7, 2).tolist() == [1, 3, 5]
    assert cr.arange(0.0, 1.0, 0.25).dtype == np.float32
    np.testing.assert_allclose(cr.linspace(0, 1, 5).data, [0, 0.25, 0.5, 0.75, 1])
    w = cr.zeros(3, requires_grad=True)
    assert w.requires_grad and w.is_leaf
    x = cr.tensor(np.ones((2, 2), np.float64))
    assert cr.zeros_like(x).dtype == np.float64 and cr.ones_like(x).data.sum() == 4
    assert (cr.full_like(x, 2.0).data == 2).all() and cr.empty_like(x).shape == (2, 2)
    with pytest.raises(ValueError, match="negative dimension"):
        cr.zeros(-1, 2)
    with pytest.raises(TypeError, match="rand: dtype must be floating"):
        cr.rand(2, dtype=np.int64)


def test_random_tensors_follow_manual_seed():
    cr.manual_seed(5)
    a = cr.rand(3, 2), cr.randn(4), cr.randint(0, 10, (5,)), cr.randint(3, size=(2,)), cr.randperm(6)
    cr.manual_seed(5)
    b = cr.rand(3, 2), cr.randn(4), cr.randint(0, 10, (5,)), cr.randint(3, size=(2,)), cr.randperm(6)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u.data, v.data)
    assert a[0].dtype == np.float32 and ((a[0].data >= 0) & (a[0].data < 1)).all()
    assert a[2].dtype == np.int64 and a[2].data.max() < 10 and sorted(a[4].tolist()) == list(range(6))
    assert cr.randn_like(cr.zeros(2, 3, dtype="float64")).dtype == np.float64
    assert cr.rand_like(cr.zeros(2)).shape == (2,) and cr.randint_like(cr.zeros(3), 4).shape == (3,)


def test_manual_seed_makes_layers_reproducible():
    def build():
        return [nn.Linear(3, 2).weight.data.copy(), nn.Embedding(5, 2).weight.data.copy(),
                nn.MLP([3, 4, 2]).layers[0].weight.data.copy(), nn.LSTMCell(2, 3).parameters()[0].data.copy()]
    cr.manual_seed(0)
    a = build()
    cr.manual_seed(0)
    b = build()
    cr.manual_seed(1)
    c = build()
    for u, v, w in zip(a, b, c):
        np.testing.assert_array_equal(u, v)
        assert not np.array_equal(u, w)
    # np.random.seed does not touch chainrule's generator, an explicit seed does not consume it
    cr.manual_seed(0)
    np.random.seed(123)
    nn.Linear(3, 2, rng=7)
    np.testing.assert_array_equal(nn.Linear(3, 2).weight.data, a[0])


def test_dropout_and_rrelu_use_the_global_generator():
    x = np.ones((4, 6), np.float32)

    def draws():
        d, r = nn.Dropout(0.5), nn.RReLU()
        return d(x).data.copy(), r(-x).data.copy()
    cr.manual_seed(3)
    a = draws()
    cr.manual_seed(3)
    b = draws()
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    cr.manual_seed(3)
    f1 = cr.rrelu(cr.tensor(-x), training=True).data
    cr.manual_seed(3)
    np.testing.assert_array_equal(cr.rrelu(cr.tensor(-x), training=True).data, f1)


def test_rng_state_round_trip_and_bad_seed():
    cr.manual_seed(9)
    st = cr.get_rng_state()
    a = cr.randn(3).data
    cr.set_rng_state(st)
    np.testing.assert_array_equal(cr.randn(3).data, a)
    with pytest.raises(ValueError, match="manual_seed"):
        cr.manual_seed(-1)
    assert isinstance(cr.default_generator(), np.random.Generator)


def test_mlp_seed_none_is_the_documented_default():
    import inspect
    assert inspect.signature(nn.MLP).parameters["seed"].default is None
    cr.manual_seed(2)
    a = nn.MLP([2, 3, 1]).layers[0].weight.data.copy()
    b = nn.MLP([2, 3, 1]).layers[0].weight.data.copy()
    assert not np.array_equal(a, b)                 # two models from one seeded stream differ
    np.testing.assert_array_equal(nn.MLP([2, 3, 1], seed=4).layers[0].weight.data,
                                  nn.MLP([2, 3, 1], seed=4).layers[0].weight.data)


def test_manual_seed_reseeds_layers_built_before_it():
    d, r = nn.Dropout(0.5), nn.RReLU()
    x = np.ones((4, 6), np.float32)
    cr.manual_seed(11)
    a = d(x).data.copy(), r(-x).data.copy()
    cr.manual_seed(11)
    b = d(x).data.copy(), r(-x).data.copy()
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert cr.default_generator() is d.rng
