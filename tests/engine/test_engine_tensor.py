"""Tensor construction, dtypes and the error messages bad input gets."""
import numpy as np
import pytest

import chainrule as cr


@pytest.fixture
def restore_default_dtype():
    prev = cr.get_default_dtype()
    yield
    cr.set_default_dtype(prev)


# --------------------------------------------------------------------------- dtypes
def test_default_dtype_python_floats_and_lists_are_float32():
    assert cr.get_default_dtype() == np.float32
    assert cr.tensor(1.5).dtype == np.float32
    assert cr.tensor([1.0, 2.0]).dtype == np.float32
    assert cr.tensor([[1, 2.5], [3, 4]]).dtype == np.float32
    assert cr.tensor([1, 2]).dtype == np.int64                # ints stay ints (indices, labels)
    assert cr.tensor(3).dtype == np.int64
    assert cr.tensor([True, False]).dtype == np.bool_


@pytest.mark.parametrize("dt", [np.float64, np.float32, np.float16, np.int32, np.int64])
def test_ndarrays_keep_their_dtype(dt):
    a = np.arange(6, dtype=dt).reshape(2, 3)
    t = cr.tensor(a)
    assert t.dtype == dt and t.shape == (2, 3)
    assert cr.tensor(np.float64(2.0)).dtype == np.float64     # NumPy scalars too


def test_explicit_dtype_wins():
    assert cr.tensor([1.0, 2.0], dtype="float64").dtype == np.float64
    assert cr.tensor(np.ones(2, np.float32), dtype=np.float64).dtype == np.float64


def test_set_default_dtype(restore_default_dtype):
    cr.set_default_dtype("float64")
    assert cr.get_default_dtype() == np.float64
    assert cr.tensor([1.0, 2.0]).dtype == np.float64
    assert cr.tensor(0.5).dtype == np.float64
    assert cr.tensor(np.ones(2, np.float32)).dtype == np.float32   # ndarrays still keep theirs
    cr.set_default_dtype(np.float32)
    assert cr.tensor([1.0]).dtype == np.float32
    with pytest.raises(TypeError, match="floating"):
        cr.set_default_dtype("int32")


def test_requires_grad_on_integers_raises_type_error():
    with pytest.raises(TypeError, match="floating"):
        cr.tensor(np.array([1, 2, 3]), requires_grad=True)
    with pytest.raises(TypeError, match="floating"):
        cr.tensor([1, 2, 3], dtype="int64", requires_grad=True)
    with pytest.raises(TypeError, match="floating"):
        cr.tensor(np.array([True]), requires_grad=True)
    with pytest.raises(TypeError, match="floating"):
        cr.tensor(np.array([1, 2])).requires_grad_()
    # documented convenience: a Python list of ints asked to require grad becomes the default float
    t = cr.tensor([1, 2, 3], requires_grad=True)
    assert t.dtype == np.float32 and t.requires_grad


def test_unsupported_data_raises_type_error():
    with pytest.raises(TypeError, match="tensor"):
        cr.tensor(["a", "b"])
    with pytest.raises(TypeError, match="tensor"):
        cr.tensor([[1.0, 2.0], [3.0]])                        # ragged


# --------------------------------------------------------------------------- errors name the op and the shapes
def test_matmul_shape_mismatch_names_op_and_shapes():
    a = cr.tensor(np.ones((2, 3)), requires_grad=True)
    b = cr.tensor(np.ones((4, 5)))
    with pytest.raises(ValueError) as ei:
        a @ b
    msg = str(ei.value)
    assert msg.startswith("matmul:") and "(2, 3)" in msg and "(4, 5)" in msg
    with pytest.raises(ValueError, match=r"matmul:.*\(3,\).*\(4,\)"):
        cr.matmul(cr.tensor(np.ones(3)), np.ones(4))


def test_add_shape_mismatch_names_op_and_shapes():
    a = cr.tensor(np.ones((2, 3)))
    b = cr.tensor(np.ones((4,)))
    with pytest.raises(ValueError) as ei:
        a + b
    msg = str(ei.value)
    assert msg.startswith("add:") and "(2, 3)" in msg and "(4,)" in msg
    for f, name in [(lambda: a * b, "mul"), (lambda: a - b, "sub"), (lambda: a / b, "div"),
                    (lambda: cr.maximum(a, b), "maximum")]:
        with pytest.raises(ValueError, match=rf"^{name}:.*\(2, 3\).*\(4,\)"):
            f()


def test_other_shape_errors_name_the_op():
    x = cr.tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"^reshape:.*\(2, 3\)"):
        x.reshape(4, 2)
    with pytest.raises(ValueError, match=r"^concat:"):
        cr.concat([x, cr.tensor(np.ones((2, 4)))], axis=0)
    with pytest.raises(IndexError, match=r"^getitem:"):
        x[5]
    with pytest.raises(ValueError, match=r"^einsum:"):
        cr.einsum("ij,jk->ik", x, cr.tensor(np.ones((4, 2))))


def test_take_index_errors():
    W = cr.tensor(np.ones((4, 2)), requires_grad=True)
    with pytest.raises(TypeError, match="integers"):
        cr.take(W, np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match="integers"):
        cr.take(W, cr.tensor([0.5]))
    with pytest.raises(IndexError, match=r"out of range.*4 rows"):
        cr.take(W, np.array([0, 4]))
    assert cr.take(W, np.array([-1])).shape == (1, 2)
    assert cr.take(W, np.array([], dtype=np.int64)).shape == (0, 2)


def test_backward_without_graph_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        cr.tensor([1.0]).backward()


# --------------------------------------------------------------------------- the Tensor object
def test_tensor_basics():
    t = cr.tensor(np.arange(6.0).reshape(2, 3), name="t")
    assert t.shape == (2, 3) and t.ndim == 2 and t.size == 6 and len(t) == 2
    assert t.numpy() is t.data
    assert t.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert cr.tensor(2.5).item() == 2.5 and float(cr.tensor(2.5)) == 2.5 and int(cr.tensor(3)) == 3
    assert [r.shape for r in t] == [(3,), (3,)]
    assert "name='t'" in repr(t)
    assert "op=mul" in repr(cr.tensor([1.0], requires_grad=True) * 2.0)
    assert "requires_grad=True" in repr(cr.tensor([1.0], requires_grad=True))
    assert (t > 2.0).dtype == np.bool_ and (t > 2.0).tolist() == [[False, False, False], [True, True, True]]
    assert (t <= cr.tensor(1.0)).data.sum() == 2
    assert not (t > 2.0).requires_grad
    assert t.astype(np.float32).dtype == np.float32
    assert bool(cr.tensor(1.0)) and not bool(cr.tensor(0.0))


def test_leaf_and_naming():
    x = cr.tensor([1.0], requires_grad=True)
    assert x.is_leaf
    y = x * 2.0
    assert not y.is_leaf and y.requires_grad
    y.name = "y"
    assert y._node.name == "y" and y.name == "y"
    assert "'y'" in repr(y._node)


def test_leaf_backward_with_seed():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    x.backward(np.array([3.0, 4.0]))
    x.backward(np.array([1.0, 1.0]))
    np.testing.assert_array_equal(x.grad, [4.0, 5.0])
    s = cr.tensor(2.0, requires_grad=True)
    s.backward()
    assert s.grad == 1.0


def test_composite_ops_record_no_rule_of_their_own():
    x = cr.tensor(np.ones((2, 3)), requires_grad=True)
    assert x.mean()._node.op.name == "mul"                     # sum, then a scale
    assert cr.outer(x[0], x[1])._node.op.name == "mul"
    assert cr.split(x, 3, axis=1)[0]._node.op.name == "getitem"
    assert cr.rrelu(x, training=True, generator=np.random.default_rng(0))._node.op.name == "leaky_relu"
    assert {"add", "mul", "matmul", "softmax", "einsum", "take", "smax"} <= set(cr.ops.RULES)
