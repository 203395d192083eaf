"""The tensor API a NumPy/PyTorch user reaches for: __array__, in-place rules, item assignment,
shape methods, transpose(a, b), max/min with indices, dim/keepdim spellings; float64 gradchecks
for every new op that carries a gradient."""
import numpy as np
import pytest

import chainrule as cr

R = np.random.default_rng(0)


def t64(*shape, grad=True):
    return cr.tensor(R.standard_normal(shape), requires_grad=grad, dtype="float64")


# ------------------------------------------------------------------ __array__
def test_asarray_gives_the_numbers():
    t = cr.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    a = np.asarray(t)
    assert a.dtype == np.float32 and a.shape == (2, 2) and a is t.data
    assert np.asarray(t, dtype=np.float64).dtype == np.float64
    b = np.array(t)                                   # np.array copies
    b[0, 0] = 9
    assert t.data[0, 0] == 1
    assert np.array([cr.tensor(1.0), cr.tensor(2.0)]).dtype.kind == "f"
    np.testing.assert_array_equal(np.stack([t, t]), np.stack([t.data, t.data]))


# ------------------------------------------------------------------ in place
def test_inplace_on_a_leaf_that_requires_grad_raises():
    z = cr.tensor([1.0, 2.0], requires_grad=True)
    for op in ("+=", "-=", "*=", "/=", "**="):
        with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
            exec(f"z {op} 1", {"z": z})
    assert z.is_leaf and np.array_equal(z.data, [1.0, 2.0])


def test_inplace_update_step_under_no_grad():
    w = cr.tensor([1.0, 2.0], requires_grad=True)
    (w * w).sum().backward()
    alias = w
    with cr.no_grad():
        w -= 0.1 * w.grad
    assert w is alias and w.is_leaf and w.requires_grad
    np.testing.assert_allclose(w.data, [0.8, 1.6])


def test_inplace_on_a_computed_tensor_is_a_new_node_and_on_a_constant_writes_in_place():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    z = x * 2
    old = z
    z += 1
    assert z is not old and np.array_equal(old.data, [2.0, 4.0])
    z.sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])
    c = cr.tensor([1.0, 2.0])
    alias = c
    c += 1
    assert alias is c and np.array_equal(c.data, [2.0, 3.0])
    i = cr.tensor([1, 2])
    with pytest.raises(TypeError, match="in-place '\\+=' on a tensor of dtype int64"):
        i += 0.5


def test_item_assignment_rule():
    w = cr.tensor([1.0, 2.0, 3.0], requires_grad=True)
    with pytest.raises(TypeError, match="cr.index_put"):
        w[0] = 5.0
    z = w * 1
    with pytest.raises(TypeError, match="cr.index_put"):
        z[0] = 5.0
    with cr.no_grad():
        w[0] = 5.0
    assert w.data[0] == 5.0
    c = cr.zeros(3)
    c[cr.tensor([0, 2])] = 7.0
    np.testing.assert_array_equal(c.data, [7, 0, 7])


def test_index_put_values_and_gradients():
    x = t64(4, 3)
    v = t64(2, 3)
    idx = np.array([3, 1])
    y = cr.index_put(x, idx, v)
    ref = x.data.copy()
    ref[idx] = v.data
    np.testing.assert_array_equal(y.data, ref)
    assert cr.gradcheck(lambda a, b: cr.index_put(a, idx, b), x, v)
    # broadcast values, a boolean mask, a slice, repeated indices (last write wins as NumPy)
    s = t64(3)
    assert cr.gradcheck(lambda a, b: cr.index_put(a, (slice(None), 1), b[0]), x, s)
    assert cr.gradcheck(lambda a, b: a.index_put(a.data > 0, b[0]), x, s)
    rep = cr.index_put(cr.zeros(3, dtype="float64"), np.array([1, 1]), cr.tensor([5.0, 6.0], dtype="float64"))
    np.testing.assert_array_equal(rep.data, [0, 6, 0])
    with pytest.raises(ValueError, match="index_put"):
        cr.index_put(x, idx, t64(3, 3))


def test_where_is_the_masked_alternative():
    x = t64(5)
    y = cr.where(x.data > 0, x, 0.0)
    np.testing.assert_array_equal(y.data, np.where(x.data > 0, x.data, 0.0))


# ------------------------------------------------------------------ shape methods
def test_shape_methods_values():
    x = t64(2, 1, 3)
    assert x.unsqueeze(0).shape == (1, 2, 1, 3) and x.unsqueeze(-1).shape == (2, 1, 3, 1)
    assert x.unsqueeze(dim=1).shape == (2, 1, 1, 3)
    assert x.squeeze().shape == (2, 3) and x.squeeze(1).shape == (2, 3)
    with pytest.raises(ValueError, match="squeeze: axis 0 .* has size 2"):
        x.squeeze(0)
    assert x.flatten().shape == (6,) and x.flatten(1).shape == (2, 3) and t64(2, 3, 4).flatten(0, 1).shape == (6, 4)
    assert x.view(3, 2).shape == (3, 2) and x.view((6,)).shape == (6,) and x.view(-1, 3).shape == (2, 3)
    assert x.expand(2, 4, 3).shape == (2, 4, 3) and x.expand(-1, 4, -1).shape == (2, 4, 3)
    assert x.expand(5, 2, 1, 3).shape == (5, 2, 1, 3)
    with pytest.raises(ValueError, match="broadcast_to: cannot broadcast"):
        x.expand(3, 4, 3)
    c = x.clone()
    assert c is not x and c.data is not x.data and np.array_equal(c.data, x.data) and c.requires_grad
    assert x.numel() == 6 and x.dim() == 3


def test_transpose_swaps_two_axes_as_pytorch():
    x = t64(2, 3, 4)
    assert x.transpose(0, 2).shape == (4, 3, 2)                     # failed before
    np.testing.assert_array_equal(x.transpose(0, 2).data, np.swapaxes(x.data, 0, 2))
    np.testing.assert_array_equal(x.transpose(1, -1).data, np.swapaxes(x.data, 1, 2))
    m = t64(2, 3)
    assert m.transpose(0, 1).shape == (3, 2) and m.t().shape == (3, 2) and m.T.shape == (3, 2)
    assert x.transpose((2, 0, 1)).shape == (4, 2, 3) and x.transpose(2, 0, 1).shape == (4, 2, 3)
    assert x.permute(2, 0, 1).shape == (4, 2, 3) and x.transpose().shape == (4, 3, 2)
    with pytest.raises(ValueError, match="t: expects"):
        x.t()
    assert cr.gradcheck(lambda a: a.transpose(0, 2) * np.arange(24.0).reshape(4, 3, 2), x)


@pytest.mark.parametrize("f", [
    lambda a: a.unsqueeze(1) * np.arange(1.0, 5.0).reshape(1, 4, 1),
    lambda a: a.reshape(3, 1, 2).squeeze(1),
    lambda a: a.reshape(3, 1, 2).flatten(),
    lambda a: a.reshape(3, 1, 2).expand(3, 4, 2) * np.arange(24.0).reshape(3, 4, 2),
    lambda a: cr.broadcast_to(a, (2, 3, 2)) * np.arange(12.0).reshape(2, 3, 2),
    lambda a: a.clone() * a,
    lambda a: a.view(2, 3).swapaxes(0, 1),
    lambda a: a.max(dim=1).values,
    lambda a: a.min(axis=0, return_indices=True)[0],
    lambda a: cr.cat([a, a * 2], dim=1),
    lambda a: a.sum(dim=0, keepdim=True) * a,
    lambda a: a.mean(dim=1).sum() + (a.softmax(dim=0) * a).sum(0) + cr.logsumexp(a, dim=0) + a.log_softmax(dim=1)[0],
    lambda a: abs(a),
])
def test_new_ops_gradcheck_float64(f):
    assert cr.gradcheck(f, t64(3, 2))


def test_max_min_with_indices_and_argmax():
    x = cr.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 7.0]])
    v, i = x.max(dim=1)
    np.testing.assert_array_equal(v.data, [5.0, 7.0])
    np.testing.assert_array_equal(i.data, [1, 0])
    r = x.min(dim=1, keepdim=True)
    assert r.values.shape == (2, 1) and r.indices.shape == (2, 1) and r.indices.dtype == np.int64
    assert x.max(axis=1).shape == (2,) and isinstance(x.max(1), cr.Tensor)     # NumPy: values only
    vals, idx = cr.max(x, axis=0, return_indices=True)
    np.testing.assert_array_equal(idx.data, [1, 0, 1])
    assert int(x.argmax()) == 3 and int(x.argmin()) == 4
    np.testing.assert_array_equal(x.argmax(axis=1).data, [1, 0])
    np.testing.assert_array_equal(x.argmin(dim=0, keepdim=True).data, [[0, 1, 0]])
    assert not x.argmax().requires_grad
    with pytest.raises(TypeError, match="both axis"):
        x.sum(axis=0, dim=1)


def test_abs_builtin_and_cat_alias():
    x = cr.tensor([-1.0, 2.0])
    np.testing.assert_array_equal(abs(x).data, [1.0, 2.0])
    np.testing.assert_array_equal(cr.abs(x).data, [1.0, 2.0])
    assert cr.cat([x, x]).shape == (4,) and cr.concat([x, x], axis=0).shape == (4,)
    assert cr.stack([x, x], dim=1).shape == (2, 2)
    assert [p.shape for p in cr.split(cr.zeros(4, 2), 2, dim=0)] == [(2, 2), (2, 2)]
