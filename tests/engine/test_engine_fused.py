"""Fused primitives (ops/fused.py): same values as the composites they replace, gradients checked
against finite differences in float64."""
import numpy as np
import pytest

import chainrule as cr
from chainrule import losses
from chainrule.ops.fused import bce_with_logits, sum_squares

RNG = np.random.default_rng(0)


def test_sum_squares_value_grad_and_gradcheck():
    a = cr.tensor(RNG.standard_normal((3, 4)), requires_grad=True)
    b = cr.tensor(RNG.standard_normal(5), requires_grad=True)
    p = sum_squares([a, b], [0.3, 2.0])
    ref = 0.15 * (a.data ** 2).sum() + 1.0 * (b.data ** 2).sum()
    assert abs(p.item() - ref) < 1e-12 * ref
    p.backward()
    np.testing.assert_allclose(a.grad, 0.3 * a.data, rtol=1e-14)
    np.testing.assert_allclose(b.grad, 2.0 * b.data, rtol=1e-14)
    assert cr.gradcheck(lambda a, b: sum_squares([a, b], 0.7) * sum_squares([a], 1.0), a, b)
    with pytest.raises(ValueError, match="2 scales for 1 tensors"):
        sum_squares([a], [1.0, 2.0])


def test_l2_penalty_is_one_op_and_equals_the_composite():
    W = cr.tensor(RNG.standard_normal((4, 3)), requires_grad=True)
    U = cr.tensor(RNG.standard_normal((3, 1)), requires_grad=True)
    p = losses.l2_penalty([W, U], C=2.0, m=10)
    assert p._node.op.name == "sum_squares"
    ref = (2.0 / 20) * ((W.data ** 2).sum() + (U.data ** 2).sum())
    assert abs(p.item() - ref) < 1e-13


@pytest.mark.parametrize("reduction", ["mean", "sum", "batchmean"])
def test_bce_with_logits_fused_equals_composite(reduction):
    z = cr.tensor(np.array([[-1e4, -3.0, 0.0], [0.0, 2.5, 1e4]]), requires_grad=True)
    d = np.array([[0.0, 1.0, 1.0], [0.0, 0.3, 1.0]])
    fused = losses.binary_cross_entropy_with_logits(z, d, reduction=reduction)
    assert fused._node.op.name == "bce_with_logits"
    fused.backward()
    gf = z.grad.copy()
    z.grad = None
    dt = cr.tensor(d, requires_grad=True)               # a target needing grad takes the composite
    comp = losses.binary_cross_entropy_with_logits(z, dt, reduction=reduction)
    assert comp._node.op.name != "bce_with_logits"
    comp.backward()
    np.testing.assert_allclose(fused.item(), comp.item(), rtol=1e-14)
    np.testing.assert_allclose(gf, z.grad, rtol=1e-14, atol=1e-16)
    n = {"mean": 6, "sum": 1, "batchmean": 2}[reduction]
    sig = 1 / (1 + np.exp(-np.clip(z.data, -500, 500)))
    np.testing.assert_allclose(gf, (sig - d) / n, rtol=1e-12, atol=1e-15)   # σ(z) − d, σ(0) = ½
    zz = cr.tensor(RNG.standard_normal((2, 3)), requires_grad=True)
    assert cr.gradcheck(lambda z: bce_with_logits(z, d, 0.25), zz)


def test_bce_with_logits_errors_and_float32():
    z = cr.tensor(np.zeros((2, 1), dtype=np.float32), requires_grad=True)
    with pytest.raises(ValueError, match=r"targets of shape \(3,\) for logits of shape \(2, 1\)"):
        bce_with_logits(z, np.zeros(3), 0.5)
    out = bce_with_logits(z, np.ones((2, 1)), 0.5)
    out.backward()
    assert out.dtype == np.float32 and z.grad.dtype == np.float32


def _sum_squares_python(xs, scale):
    """The penalty accumulated in Python floats, rounded once to the tensors' dtype (what sum_squares
    computed before its rule was written with NumPy calls only, for cr.compile)."""
    acc = 0.0
    for x, c in zip(xs, scale):
        v = x.reshape(-1)
        acc += 0.5 * c * float(np.dot(v, v))
    return np.asarray(acc, dtype=np.result_type(*xs))


def _bce_numpy_scalar(z, d, w):
    """The reduced BCE as a NumPy scalar made a 0-d array (the rule's earlier form)."""
    per = np.maximum(z, 0) - z * d + np.log1p(np.exp(-np.abs(z)))
    return np.asarray(np.sum(per * w) if np.ndim(w) else np.sum(per) * w, dtype=z.dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_losses_bit_for_bit_as_python_scalar_arithmetic(dtype):
    """sum_squares' float64 accumulation and bce_with_logits' reduction, written with NumPy calls only
    (recordable by cr.compile), give the bits of the Python-float / np.asarray forms; their gradients
    are c g x and g w (σ(z) - d) in the tensors' dtype."""
    rng = np.random.default_rng(11)
    for k in range(60):
        xs = [(rng.standard_normal(tuple(rng.integers(1, 30, 2))) * 10.0 ** rng.integers(-3, 3)).astype(dtype)
              for _ in range(1 + k % 3)]
        if k % 7 == 0:
            xs[0][...] = 0.0
        scale = [[5e-6, 1.0, 1 / 3], [-2.0, 0.0, -0.0], [0.7, -0.1, 3.0]][k % 3][:len(xs)]
        ts = [cr.tensor(x, requires_grad=True, dtype=x.dtype.name) for x in xs]
        p = sum_squares(ts, scale)
        ref = _sum_squares_python(xs, scale)
        assert p.data.dtype == ref.dtype and p.data.tobytes() == ref.tobytes(), (k, p.data, ref)
        (p * 1.5).backward()
        for t, c in zip(ts, scale):
            assert t.grad.dtype == dtype and t.grad.tobytes() == (t.data * (np.asarray(1.5, dtype) * c)).tobytes()

        z = (rng.standard_normal((64, 1)) * [0.1, 3.0, 40.0][k % 3]).astype(dtype)
        z[k % 64] = [0.0, 1e4, -1e4][k % 3]
        d = (rng.random((64, 1)) < 0.5).astype(dtype)
        w = [1 / 64, np.float64(0.3), rng.random((64, 1)).astype(dtype), 1.0][k % 4]
        zt = cr.tensor(z, requires_grad=True, dtype=np.dtype(dtype).name)
        L = bce_with_logits(zt, d, w)
        ref = _bce_numpy_scalar(z, d, w)
        assert L.data.dtype == ref.dtype and L.data.tobytes() == ref.tobytes(), (k, L.data, ref)
    assert sum_squares([]).item() == 0.0


@pytest.mark.parametrize("tensor_term", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_composition_equals_the_five_ops_bit_for_bit(tensor_term, dtype):
    """tanh(c W + b + bilinear(c, V)) as one op: the same forward values and the same gradients (the
    rule calls the five rules it replaces), in float32 and float64."""
    from chainrule.ops.fused import composition
    rng = np.random.default_rng(3)
    n, d = 7, 3

    def make():
        return [cr.tensor(rng.standard_normal(s), requires_grad=True, dtype=dtype)
                for s in ((n, 2 * d), (2 * d, d), (d,), (2 * d, 2 * d, d))]
    c, W, b, V = make()
    V = V if tensor_term else None
    g = rng.standard_normal((n, d))
    outs = []
    for fused in (True, False):
        for t in (c, W, b) + ((V,) if V is not None else ()):
            t.grad = None
        if fused:
            p = composition(c, W, b, V)
            assert p._node.op.name == "composition"
        else:
            z = cr.matmul(c, W) + b
            p = cr.tanh(z + cr.bilinear(c, V) if V is not None else z)
        (p * g).sum().backward()
        outs.append([p.data] + [t.grad for t in (c, W, b) + ((V,) if V is not None else ())])
    for a, r in zip(*outs):
        assert a.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(a, r)


def test_composition_gradcheck_and_shapes():
    from chainrule.ops.fused import composition
    rng = np.random.default_rng(4)
    c, W, b, V = (cr.tensor(rng.uniform(-1, 1, s), requires_grad=True, dtype="float64")
                  for s in ((4, 4), (4, 2), (2,), (4, 4, 2)))
    assert cr.gradcheck(lambda c, W, b, V: composition(c, W, b, V), c, W, b, V)
    assert cr.gradcheck(lambda c, W, b: composition(c, W, b), c, W, b)
    with pytest.raises(ValueError, match=r"composition: need c \(n, m\), W \(m, d\) and b \(d,\)"):
        composition(c, W, cr.tensor(np.zeros((1, 2))))


# ------------------------------------------------------------------------------------------------ linear
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shapes", [((7, 5), (5, 3)), ((7, 5), (5, 1)), ((1, 5), (5, 4)), ((5,), (5, 3))])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_equals_matmul_then_add_bit_for_bit(dtype, shapes, bias):
    """One graph node, the same bits as matmul then add: the output and every gradient (x of one or
    two axes; the (N, 1) and (1, K) outer-product cases of the matmul rule included)."""
    from chainrule.ops.fused import linear
    sx, sw = shapes
    x0, W0, b0 = RNG.standard_normal(sx).astype(dtype), RNG.standard_normal(sw).astype(dtype), \
        RNG.standard_normal(sw[1]).astype(dtype)
    g = RNG.standard_normal(sx[:-1] + sw[1:]).astype(dtype)
    out = []
    for fused in (True, False):
        x, W, b = (cr.tensor(a, requires_grad=True) for a in (x0, W0, b0))
        if fused:
            z = linear(x, W, b if bias else None)
            assert z._node.op.name == "linear" and z.dtype == dtype
        else:
            z = cr.matmul(x, W)
            z = cr.add(z, b) if bias else z
        z.backward(g)
        out.append([z.data, x.grad, W.grad] + ([b.grad] if bias else []))
    for a, c in zip(*out):
        assert a.dtype == c.dtype and a.shape == c.shape and a.tobytes() == c.tobytes()


def test_linear_rows_of_any_leading_axes_gradcheck_and_errors():
    """x of shape (..., m): the rows of the leading axes as one matrix (W̄ one GEMM, b̄ one sum),
    checked against finite differences; shape errors name the op."""
    from chainrule.ops.fused import linear
    x = cr.tensor(RNG.standard_normal((2, 3, 4)), requires_grad=True)
    W = cr.tensor(RNG.standard_normal((4, 2)), requires_grad=True)
    b = cr.tensor(RNG.standard_normal(2), requires_grad=True)
    np.testing.assert_allclose(linear(x, W, b).data, x.data @ W.data + b.data, rtol=1e-14)
    assert cr.gradcheck(lambda x, W, b: linear(x, W, b), x, W, b)
    with pytest.raises(ValueError, match=r"linear: need x \(\.\.\., m\), W \(m, n\) and b \(n,\)"):
        linear(x, W, cr.tensor(np.zeros(3)))
    with pytest.raises(ValueError, match=r"linear: need x"):
        linear(x, cr.tensor(np.zeros((3, 2))))


def test_nn_linear_is_one_node():
    from chainrule import nn
    lin = nn.Linear(4, 3, rng=0)
    y = lin(np.ones((2, 4), dtype=np.float32))
    assert y._node.op.name == "linear" and all(type(p).__name__ == "Parameter" for p in y._node.parents[1:])
    assert nn.Linear(4, 3, bias=False, rng=0)(np.ones((2, 4), dtype=np.float32))._node.parents[2] is None


@pytest.mark.parametrize("sparse", [True, False])
def test_take_flat_equals_take_then_reshape_bit_for_bit(sparse):
    """take(..., flat=True) (a window's rows joined: one node) gives take-then-reshape's values and
    table gradient (row-sparse or dense), repeated rows included; Embedding(flat=True) uses it."""
    from chainrule import nn
    idx = np.array([[3, 0, 3], [1, 4, 1]])
    g = RNG.standard_normal((2, 6))
    out = []
    for flat in (True, False):
        L = cr.tensor(RNG.standard_normal((5, 2)) if not out else out[0][2], requires_grad=True)
        z = cr.take(L, idx, sparse=sparse, flat=True) if flat else cr.reshape(cr.take(L, idx, sparse=sparse), (2, -1))
        assert (z._node.op.name == "take") == flat
        z.backward(g)
        out.append((z.data, np.asarray(L.grad), L.data))
    for a, c in zip(out[0][:2], out[1][:2]):
        assert a.shape == c.shape and a.tobytes() == c.tobytes()
    emb = nn.Embedding(5, 2, sparse=sparse, rng=0)
    e = emb(idx, flat=True)
    assert e.shape == (2, 6) and e._node.op.name == "take"
    np.testing.assert_array_equal(e.data, emb.weight.data[idx].reshape(2, -1))
    pad = nn.Embedding(5, 2, padding_idx=1, rng=0)(idx, flat=True)       # padding: mul, then the reshape
    assert pad.shape == (2, 6) and pad.data[1, :2].tolist() == [0.0, 0.0]
    assert cr.gradcheck(lambda L: cr.take(L, idx, flat=True), cr.tensor(RNG.standard_normal((5, 2)), requires_grad=True))
    with pytest.raises(ValueError, match="flat=True needs indices with at least one axis"):
        cr.take(cr.tensor(np.zeros((3, 2))), np.array(1), flat=True)
