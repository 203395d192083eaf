"""Every primitive of the rule table (and the composites built on it), gradient-checked in float64
against central finite differences, on random inputs with broadcasting, 0-d scalars and size-1 axes;
plus the closed forms the lecture notes give (softmax Jacobian, soft maximum, tie-sharing)."""
import warnings

import numpy as np
import pytest

import chainrule as cr

RNG = np.random.default_rng(20240601)


def T(a, rg=True, name=None):
    return cr.tensor(np.asarray(a, dtype=np.float64), requires_grad=rg, name=name)


def rand(*shape, lo=None, hi=None):
    if lo is not None:
        return T(RNG.uniform(lo, hi, size=shape))
    return T(RNG.standard_normal(shape))


def away_from(shape, point=0.0, gap=0.1):
    """Random values at least ``gap`` from ``point`` (keeps finite differences off kinks)."""
    x = RNG.standard_normal(shape)
    x = np.where(np.abs(x - point) < gap, point + np.sign(x - point + 1e-12) * (gap + 0.3), x)
    return T(x)


def check(f, *xs, **kw):
    assert cr.gradcheck(f, *xs, **kw) is True


BCAST_PAIRS = [
    ((3, 4), (3, 4)),
    ((3, 4), (4,)),
    ((4,), (3, 4)),
    ((3, 1), (1, 4)),
    ((), (2, 3)),
    ((2, 3), ()),
    ((), ()),
    ((2, 1, 3), (4, 1)),
    ((1,), (2, 3)),
]
UNARY_SHAPES = [(), (5,), (3, 1, 4), (1, 1)]


# --------------------------------------------------------------------------- binary arithmetic
@pytest.mark.parametrize("sa,sb", BCAST_PAIRS)
@pytest.mark.parametrize("op", ["add", "sub", "mul", "maximum", "minimum"])
def test_binary_broadcasting(op, sa, sb):
    a, b = rand(*sa), rand(*sb)
    f = getattr(cr, op)
    check(f, a, b)
    # the gradient of each input has that input's shape (unbroadcast did its job)
    out = f(a, b)
    out.sum().backward()
    assert a.grad.shape == sa and b.grad.shape == sb


@pytest.mark.parametrize("sa,sb", BCAST_PAIRS)
def test_div_broadcasting(sa, sb):
    a = rand(*sa)
    b = T(RNG.uniform(0.5, 2.0, size=sb) * RNG.choice([-1, 1], size=sb))
    check(cr.div, a, b)


@pytest.mark.parametrize("sa,sb", BCAST_PAIRS)
def test_pow_tensor_exponent(sa, sb):
    x = rand(*sa, lo=0.5, hi=2.0)
    y = rand(*sb, lo=-1.5, hi=2.5)
    check(cr.pow, x, y)
    check(lambda x, y: x ** y, x, y)


@pytest.mark.parametrize("p", [2, 3, 0.5, -1.0, 1.5])
def test_pow_scalar_exponent(p):
    x = rand(3, 1, 2, lo=0.5, hi=2.0)
    check(lambda x: x ** p, x)
    x.grad = None
    (x ** p).sum().backward()
    np.testing.assert_allclose(x.grad, p * x.data ** (p - 1))


def test_pow_scalar_base_and_integer_power_of_negative():
    x = rand(4)
    check(lambda x: 2.0 ** x, x)
    check(lambda x: cr.pow(3.0, x), x)
    check(lambda x: x ** 2, x)                     # negative bases with an integer exponent
    y = T([-2.0, 0.0, 3.0])
    e = T([2.0, 2.0, 2.0])
    z = y ** e
    z.sum().backward()
    np.testing.assert_allclose(y.grad, [-4.0, 0.0, 6.0])
    np.testing.assert_allclose(e.grad, [0.0, 0.0, 9 * np.log(3.0)])   # d/de x^e = x^e log x (0 for x <= 0)


def test_python_scalar_operands_and_reflected_operators():
    x = rand(2, 3, lo=0.5, hi=2.0)
    check(lambda x: 2.0 + x, x)
    check(lambda x: 2.0 - x, x)
    check(lambda x: x - 1.5, x)
    check(lambda x: 3.0 * x, x)
    check(lambda x: 3.0 / x, x)
    check(lambda x: x / 3.0, x)
    check(lambda x: -x, x)
    check(cr.neg, x)
    # ndarray (op) Tensor defers to the tensor
    arr = RNG.standard_normal((2, 3))
    out = arr * x
    assert isinstance(out, cr.Tensor) and out.requires_grad
    check(lambda x: arr - x, x)
    check(lambda x: arr / x, x)


# --------------------------------------------------------------------------- unary elementwise
@pytest.mark.parametrize("shape", UNARY_SHAPES)
@pytest.mark.parametrize("name,make", [
    ("exp", lambda s: rand(*s)),
    ("log", lambda s: rand(*s, lo=0.2, hi=3.0)),
    ("sqrt", lambda s: rand(*s, lo=0.2, hi=3.0)),
    ("abs", lambda s: away_from(s)),
    ("tanh", lambda s: rand(*s)),
    ("sigmoid", lambda s: rand(*s)),
    ("relu", lambda s: away_from(s)),
    ("softplus", lambda s: rand(*s)),
    ("neg", lambda s: rand(*s)),
])
def test_unary(name, make, shape):
    x = make(shape)
    check(getattr(cr, name), x)
    # the method form gives the same values
    if hasattr(cr.Tensor, name):
        np.testing.assert_allclose(getattr(x, name)().data, getattr(cr, name)(x).data)


def test_unary_closed_forms():
    x = rand(7)
    for f, d in [(cr.exp, np.exp), (cr.tanh, lambda v: 1 - np.tanh(v) ** 2),
                 (cr.sigmoid, lambda v: np.exp(-v) / (1 + np.exp(-v)) ** 2),
                 (cr.softplus, lambda v: 1 / (1 + np.exp(-v)))]:
        x.grad = None
        f(x).sum().backward()
        np.testing.assert_allclose(x.grad, d(x.data), rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_no_overflow_at_large_magnitudes(dtype):
    x = cr.tensor(np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0], dtype=dtype), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # any overflow RuntimeWarning fails the test
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            s = cr.sigmoid(x)
            s.sum().backward()
    assert s.dtype == np.dtype(dtype)
    assert np.all(np.isfinite(s.data)) and np.all(np.isfinite(x.grad))
    np.testing.assert_allclose(s.data[[0, 2, 4]], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(x.grad[[0, 4]], [0.0, 0.0])


def test_softplus_stable_at_large_magnitudes():
    x = T([-1000.0, 1000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = cr.softplus(x)
        y.sum().backward()
    np.testing.assert_allclose(y.data, [0.0, 1000.0])
    np.testing.assert_allclose(x.grad, [0.0, 1.0])


def test_relu_and_abs_subgradients_at_zero():
    x = T([-1.0, 0.0, 2.0])
    cr.relu(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 1.0])       # relu'(0) = 0
    x.grad = None
    cr.abs(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [-1.0, 0.0, 1.0])      # |x|'(0) = 0


@pytest.mark.parametrize("shape", UNARY_SHAPES)
def test_leaky_relu(shape):
    x = away_from(shape)
    check(lambda x: cr.leaky_relu(x, 0.1), x)
    check(cr.leaky_relu, x)
    z = T([-2.0, 0.0, 3.0])
    y = cr.leaky_relu(z, 0.2)
    np.testing.assert_allclose(y.data, [-0.4, 0.0, 3.0])
    y.sum().backward()
    np.testing.assert_allclose(z.grad, [0.2, 0.2, 1.0])             # left slope at 0 (documented)


def test_rrelu_train_is_seeded_and_slopes_in_range():
    x = T(-np.abs(RNG.standard_normal((4, 5))) - 0.1)
    y1 = cr.rrelu(x, 0.1, 0.3, training=True, generator=np.random.default_rng(7))
    y2 = cr.rrelu(x, 0.1, 0.3, training=True, generator=np.random.default_rng(7))
    y3 = cr.rrelu(x, 0.1, 0.3, training=True, generator=np.random.default_rng(8))
    np.testing.assert_array_equal(y1.data, y2.data)                 # same seed -> same output
    assert not np.array_equal(y1.data, y3.data)
    slopes = y1.data / x.data
    assert np.all(slopes >= 0.1) and np.all(slopes <= 0.3)
    assert len(np.unique(slopes)) > 1                                 # one slope per element
    y1.sum().backward()
    np.testing.assert_allclose(x.grad, slopes)                      # x̄ = a ⊙ g on the negative side


def test_rrelu_eval_uses_mean_slope():
    x = T([-2.0, -1.0, 0.5, 3.0])
    y = cr.rrelu(x, 0.1, 0.3)                                        # training=False
    np.testing.assert_allclose(y.data, [-0.4, -0.2, 0.5, 3.0])
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [0.2, 0.2, 1.0, 1.0])


def test_rrelu_gradcheck_train_mode_with_fixed_generator_state():
    x = away_from((3, 4))
    # reseed inside f: every evaluation (analytic and each finite difference) sees the same slopes
    check(lambda x: cr.rrelu(x, 0.1, 0.4, training=True, generator=np.random.default_rng(3)), x)
    with pytest.raises(ValueError, match="rrelu"):
        cr.rrelu(x, 0.5, 0.1)


def test_clip():
    x = T(np.array([-3.0, -1.2, -0.5, 0.0, 0.7, 1.3, 4.0]))
    check(lambda x: cr.clip(x, -1.0, 1.0), x)
    check(lambda x: cr.clip(x, lo=-1.0), x)
    check(lambda x: cr.clip(x, hi=1.0), x)
    y = cr.clip(x, -1.0, 1.0)
    np.testing.assert_allclose(y.data, np.clip(x.data, -1, 1))
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [0, 0, 1, 1, 1, 0, 0])
    b = T([-1.0, 1.0])                                 # at the bounds the gradient passes
    cr.clip(b, -1.0, 1.0).sum().backward()
    np.testing.assert_array_equal(b.grad, [1.0, 1.0])


@pytest.mark.parametrize("sc,sx,sy", [((3, 4), (3, 4), (3, 4)), ((3, 4), (4,), ()),
                                      ((3, 1), (1, 4), (3, 4)), ((), (2,), (2,))])
def test_where(sc, sx, sy):
    c = RNG.random(sc) > 0.5
    x, y = rand(*sx), rand(*sy)
    check(lambda x, y: cr.where(c, x, y), x, y)
    z = cr.where(cr.tensor(c), x, y)
    np.testing.assert_array_equal(z.data, np.where(c, x.data, y.data))
    with pytest.raises(TypeError, match="boolean"):
        cr.where(np.ones(sc), x, y)


def test_maximum_minimum_ties_share_half():
    a, b = T([1.0, 2.0, 3.0]), T([1.0, 5.0, 0.0])
    cr.maximum(a, b).sum().backward()
    np.testing.assert_allclose(a.grad, [0.5, 0.0, 1.0])
    np.testing.assert_allclose(b.grad, [0.5, 1.0, 0.0])
    a.grad = b.grad = None
    cr.minimum(a, b).sum().backward()
    np.testing.assert_allclose(a.grad, [0.5, 1.0, 0.0])
    np.testing.assert_allclose(b.grad, [0.5, 0.0, 1.0])
    # against a constant
    x = T([-1.0, 2.0])
    cr.maximum(x, 0.0).sum().backward()
    np.testing.assert_allclose(x.grad, [0.0, 1.0])


# --------------------------------------------------------------------------- reductions
AXES = [None, 0, 1, -1, (0, 2), (0, 1, 2), ()]


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("op", ["sum", "mean", "max", "min"])
def test_reductions(op, axis, keepdims):
    x = rand(2, 3, 4)
    check(lambda x: getattr(cr, op)(x, axis=axis, keepdims=keepdims), x)
    ref = getattr(np, {"sum": "sum", "mean": "mean", "max": "max", "min": "min"}[op])
    np.testing.assert_allclose(getattr(x, op)(axis=axis, keepdims=keepdims).data,
                               ref(x.data, axis=axis, keepdims=keepdims))


@pytest.mark.parametrize("op", ["sum", "mean", "max", "min", "logsumexp"])
def test_reductions_of_scalars_and_size1_axes(op):
    s = rand()
    check(lambda x: getattr(cr, op)(x, axis=None), s)
    y = rand(1, 3, 1)
    for axis in (0, 2, (0, 2), None):
        check(lambda x: getattr(cr, op)(x, axis=axis), y)
        check(lambda x: getattr(cr, op)(x, axis=axis, keepdims=True), y)


def test_mean_value_and_gradient():
    x = rand(3, 4)
    m = x.mean(axis=0)
    np.testing.assert_allclose(m.data, x.data.mean(axis=0))
    m.sum().backward()
    np.testing.assert_allclose(x.grad, np.full((3, 4), 1 / 3))


@pytest.mark.parametrize("op,fill", [("max", 3.0), ("min", -3.0)])
def test_extreme_ties_share_gradient(op, fill):
    # k tied extrema each get g/k
    x = T([1.0, fill, 0.0, fill, fill, 2.0 * np.sign(fill) * 0.1])
    getattr(cr, op)(x).backward()
    np.testing.assert_allclose(x.grad, [0, 1 / 3, 0, 1 / 3, 1 / 3, 0])
    # along an axis, with an upstream gradient: row 0 has two tied maxima, row 1 one
    y = T([[fill, fill, 0.0], [0.0, 1.0 * np.sign(fill), fill]])
    z = getattr(cr, op)(y, axis=1)
    z.backward(np.array([6.0, 5.0]))
    np.testing.assert_allclose(y.grad, [[3.0, 3.0, 0.0], [0.0, 0.0, 5.0]])
    y.grad = None
    z = getattr(y, op)(axis=1, keepdims=True)
    assert z.shape == (2, 1)
    z.backward(np.array([[6.0], [5.0]]))
    np.testing.assert_allclose(y.grad, [[3.0, 3.0, 0.0], [0.0, 0.0, 5.0]])


def test_logsumexp():
    x = rand(3, 5)
    for axis in (0, 1, -1, None, (0, 1)):
        check(lambda x: cr.logsumexp(x, axis=axis), x)
        check(lambda x: cr.logsumexp(x, axis=axis, keepdims=True), x)
        np.testing.assert_allclose(cr.logsumexp(x, axis=axis).data,
                                   np.log(np.sum(np.exp(x.data), axis=axis)))


def test_logsumexp_stable_at_1e4():
    x = T([[1e4, 1e4 - 1.0, -1e4], [-1e4, -1e4, -1e4 + 2.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = cr.logsumexp(x, axis=1)
        y.sum().backward()
    np.testing.assert_allclose(y.data, [1e4 + np.log1p(np.exp(-1.0)),
                                        -1e4 + 2.0 + np.log1p(2 * np.exp(-2.0))], rtol=1e-14)
    assert np.all(np.isfinite(x.grad))
    np.testing.assert_allclose(x.grad.sum(axis=1), [1.0, 1.0])
    check(lambda x: cr.logsumexp(x, axis=1), x)


# --------------------------------------------------------------------------- matmul
MATMUL_SHAPES = [
    ((4,), (4,)),                 # vector . vector
    ((3, 4), (4,)),               # matrix . vector
    ((4,), (4, 5)),               # vector . matrix
    ((3, 4), (4, 5)),             # matrix . matrix
    ((2, 3, 4), (2, 4, 5)),       # batched
    ((2, 3, 4), (4, 5)),          # batched, broadcast matrix
    ((3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (5, 4, 2)),    # batch dims broadcast against each other
    ((2, 3, 4), (4,)),            # batched matrix . vector
    ((4,), (2, 4, 5)),            # vector . batched matrix
    ((1, 4), (4, 1)),             # size-1 axes
    ((6, 1, 4), (6, 4, 3)),       # a stack of row vectors
    ((2, 3, 1, 4), (3, 4, 2)),    # ... with broadcast batch dims
]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
def test_matmul(sa, sb):
    a, b = rand(*sa), rand(*sb)
    check(cr.matmul, a, b)
    check(lambda a, b: a @ b, a, b)
    np.testing.assert_allclose((a @ b).data, a.data @ b.data)


def test_matmul_with_constant_operands():
    a = rand(3, 4)
    m = RNG.standard_normal((4, 2))
    check(lambda a: a @ m, a)
    check(lambda a: m.T @ a.T, a)                       # ndarray @ Tensor -> __rmatmul__
    assert isinstance(m.T @ a.T, cr.Tensor)


def test_matmul_closed_form():
    a, b = rand(3, 4), rand(4, 5)
    g = RNG.standard_normal((3, 5))
    (a @ b).backward(g)
    np.testing.assert_allclose(a.grad, g @ b.data.T)
    np.testing.assert_allclose(b.grad, a.data.T @ g)


# --------------------------------------------------------------------------- shape ops
def test_transpose_permute_T():
    x = rand(2, 3, 4)
    check(lambda x: x.T, x)
    check(cr.transpose, x)
    check(lambda x: cr.transpose(x, (1, 2, 0)), x)
    check(lambda x: x.transpose(2, 0, 1), x)
    check(lambda x: x.permute((0, 2, 1)), x)
    check(lambda x: cr.permute(x, (1, 0, 2)), x)
    np.testing.assert_array_equal(x.permute(2, 0, 1).data, x.data.transpose(2, 0, 1))
    m = rand(3, 5)
    np.testing.assert_array_equal(m.T.data, m.data.T)


def test_reshape():
    x = rand(2, 3, 4)
    check(lambda x: x.reshape(6, 4), x)
    check(lambda x: x.reshape((4, -1)), x)
    check(lambda x: cr.reshape(x, (24,)), x)
    check(lambda x: cr.reshape(x, 24), x)
    check(lambda x: x.reshape(1, 2, 1, 12), x)
    s = rand()
    check(lambda s: s.reshape(1, 1), s)


def test_concat_stack_split():
    a, b, c = rand(2, 3), rand(4, 3), rand(1, 3)
    check(lambda a, b, c: cr.concat([a, b, c], axis=0), a, b, c)
    d, e = rand(2, 1), rand(2, 5)
    check(lambda a, d, e: cr.concat([a, d, e], axis=-1), a, d, e)
    p, q = rand(2, 3), rand(2, 3)
    for axis in (0, 1, 2, -1):
        check(lambda p, q: cr.stack([p, q], axis=axis), p, q)
    check(lambda p: cr.stack([p, p * 2.0, p], axis=1), p)     # one tensor used three times
    x = rand(6, 4)
    check(lambda x: cr.concat([s * (i + 1.0) for i, s in enumerate(cr.split(x, 3))], axis=0), x)
    check(lambda x: cr.split(x, [1, 3], axis=1)[1], x)
    parts = cr.split(x, [1, 3], axis=1)
    assert [p.shape for p in parts] == [(6, 1), (6, 2), (6, 1)]
    with pytest.raises(ValueError, match="split"):
        cr.split(x, 4)
    with pytest.raises(ValueError, match="concat"):
        cr.concat([])
    # constants mixed in
    check(lambda a: cr.concat([a, np.zeros((1, 3))]), a)


def test_getitem_basic():
    x = rand(4, 5, 3)
    for idx in [1, -1, slice(1, 3), (slice(None), 2), (Ellipsis, 0), (None, 1), (slice(None, None, -2), 1, slice(0, 2)),
                (2, 3, 1), (slice(1, 2), None, Ellipsis)]:
        check(lambda x: x[idx], x)
        np.testing.assert_array_equal(x[idx].data, x.data[idx])
    s = rand(3)
    check(lambda s: s[1], s)                                   # to a 0-d result
    check(lambda x: cr.getitem(x, (0, slice(1, 3))), x)


def test_getitem_integer_arrays_accumulate_repeated_indices():
    x = rand(5, 3)
    idx = np.array([0, 2, 2, 4, 2])
    check(lambda x: x[idx], x)
    y = x[idx]
    y.sum().backward()
    np.testing.assert_array_equal(x.grad[:, 0], [1, 0, 3, 0, 1])
    x.grad = None
    x[[1, 1, 1]].sum().backward()                               # a list index
    np.testing.assert_array_equal(x.grad[:, 0], [0, 3, 0, 0, 0])
    # paired integer arrays and mixed basic/advanced
    check(lambda x: x[np.array([0, 0, 3]), np.array([1, 1, 2])], x)
    check(lambda x: x[np.array([[0, 1], [1, 1]]), 1:], x)
    check(lambda x: x[cr.tensor(np.array([4, 4]))], x)           # a tensor of indices
    check(lambda x: x[x.data > 0.3], x)                          # boolean mask


def test_take_dense_and_sparse():
    W = rand(6, 4)
    idx = np.array([[0, 3], [3, 5], [3, 0]])
    check(lambda W: cr.take(W, idx), W)
    e = cr.take(W, idx)
    assert e.shape == (3, 2, 4)
    g = RNG.standard_normal(e.shape)
    e.backward(g)
    dense = W.grad
    W.grad = None
    es = cr.take(W, idx, sparse=True)
    es.backward(g)
    assert isinstance(W.grad, cr.RowSparseGrad)
    assert W.grad.shape == W.shape and W.grad.values.shape == (6, 4)   # one row per lookup
    np.testing.assert_allclose(W.grad.to_dense(), dense)
    np.testing.assert_allclose(np.asarray(W.grad), dense)
    co = W.grad.coalesce()
    np.testing.assert_array_equal(co.indices, [0, 3, 5])
    np.testing.assert_allclose(co.to_dense(), dense)
    # accumulation across two backward passes (sparse + sparse, then + dense)
    cr.take(W, np.array([1]), sparse=True).sum().backward()
    extra = np.zeros((6, 4))
    extra[1] = 1.0
    np.testing.assert_allclose(np.asarray(W.grad), dense + extra)
    (W * 1.0).sum().backward()
    assert isinstance(W.grad, np.ndarray)
    np.testing.assert_allclose(W.grad, dense + extra + 1.0)


@pytest.mark.parametrize("idx", [[4, 0, 2], [-1, 2, 5], [5, 5, 0], []])
def test_row_sparse_scatter_distinct_repeated_and_negative_rows(idx):
    idx = np.array(idx, dtype=np.intp)
    vals = RNG.standard_normal((len(idx), 3))
    want = np.zeros((6, 3))
    np.add.at(want, idx, vals)                                  # the slow reference
    g = cr.RowSparseGrad(idx, vals, (6, 3))
    np.testing.assert_allclose(g.to_dense(), want)
    base = RNG.standard_normal((6, 3))
    out = base.copy()
    assert g.add_to(out) is out
    np.testing.assert_allclose(out, base + want)
    c = g.copy()                                               # what a leaf's .grad gets: its own arrays
    assert type(c) is cr.RowSparseGrad and c.shape == g.shape
    assert not np.shares_memory(c.indices, g.indices) and not np.shares_memory(c.values, g.values)
    np.testing.assert_array_equal(c.indices, g.indices)
    np.testing.assert_array_equal(c.values, g.values)


def test_take_sparse_only_for_leaves_and_gradients_densify():
    W = rand(5, 2)
    idx = np.array([4, 0, 4])
    h = W * 2.0
    out = cr.take(h, idx, sparse=True)                           # non-leaf table: dense gradient path
    out.sum().backward()
    np.testing.assert_allclose(W.grad, [[2, 2], [0, 0], [0, 0], [0, 0], [4, 4]])
    gW, = cr.gradients(cr.take(W, idx, sparse=True).sum(), [W])
    assert isinstance(gW, np.ndarray)
    np.testing.assert_allclose(gW, [[1, 1], [0, 0], [0, 0], [0, 0], [2, 2]])


EINSUM_CASES = [
    ("ij,jk->ik", [(3, 4), (4, 5)]),           # matmul
    ("ii->", [(4, 4)]),                        # trace
    ("ii->i", [(4, 4)]),                       # diagonal
    ("i,j->ij", [(3,), (4,)]),                 # outer
    ("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 5)]),   # batch
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)]),  # batch with broadcasting
    ("ij,jk", [(3, 4), (4, 5)]),               # implicit output
    ("ba,ac", [(3, 4), (4, 2)]),               # implicit output: sorted letters -> 'bc'
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),  # three operands
    ("ij->", [(3, 4)]),                        # sum everything out
    ("ij->ji", [(3, 4)]),                      # permutation
    ("bi,bi->b", [(3, 4), (3, 4)]),            # batched dot
    ("ij,j->i", [(3, 4), (4,)]),
    ("iij->ij", [(3, 3, 2)]),                  # partial diagonal
    ("i,i->", [(5,), (5,)]),
]


@pytest.mark.parametrize("spec,shapes", EINSUM_CASES)
def test_einsum(spec, shapes):
    xs = [rand(*s) for s in shapes]
    check(lambda *xs: cr.einsum(spec, *xs), *xs)
    np.testing.assert_allclose(cr.einsum(spec, *xs).data, np.einsum(spec, *[x.data for x in xs]), atol=1e-12)


def test_einsum_same_operand_twice_and_constants():
    a = rand(3, 3)
    check(lambda a: cr.einsum("ij,jk->ik", a, a), a)
    m = RNG.standard_normal((3, 2))
    check(lambda a: cr.einsum("ij,jk->ik", a, m), a)
    with pytest.raises(ValueError, match="einsum"):
        cr.einsum("ij,jk->ik", a)


@pytest.mark.parametrize("xshape", [(5,), (3, 5), (2, 3, 5)])
def test_bilinear(xshape):
    x, V = rand(*xshape), rand(5, 5, 4)
    check(cr.bilinear, x, V)
    ref = np.einsum("...i,ijk,...j->...k", x.data, V.data, x.data)
    np.testing.assert_allclose(cr.bilinear(x, V).data, ref, atol=1e-12)
    assert cr.bilinear(x, V).shape == xshape[:-1] + (4,)


def test_bilinear_shape_errors_name_the_op():
    for xs, vs in [((3, 5), (5, 4, 4)), ((3, 4), (5, 5, 2)), ((3, 5), (5, 5))]:
        with pytest.raises(ValueError, match="bilinear"):
            cr.bilinear(rand(*xs), rand(*vs))


def test_outer():
    a, b = rand(3), rand(4)
    check(cr.outer, a, b)
    np.testing.assert_allclose(cr.outer(a, b).data, np.outer(a.data, b.data))


# --------------------------------------------------------------------------- vector activations
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
def test_softmax_family_gradcheck(fn, axis):
    x = rand(3, 4, 2)
    check(lambda x: getattr(cr, fn)(x, axis=axis), x)
    check(lambda x: getattr(x, fn)(axis), x)
    y = getattr(cr, fn)(x, axis=axis).data
    p = y if fn == "softmax" else np.exp(y)
    np.testing.assert_allclose(p.sum(axis=axis), 1.0)


def test_softmax_backward_is_the_jacobian_diag_y_minus_yyT():
    x = rand(5)
    y = cr.softmax(x)
    yv = y.data
    J = np.diag(yv) - np.outer(yv, yv)
    for k in range(5):                      # each unit seed picks out a row of J (J is symmetric)
        gk, = cr.gradients(y, [x], grad_output=np.eye(5)[k], retain_graph=True)
        np.testing.assert_allclose(gk, J[k], atol=1e-15)
    g = RNG.standard_normal(5)
    y.backward(g)
    np.testing.assert_allclose(x.grad, J.T @ g, atol=1e-15)
    # log_softmax: ∂ls_i/∂x_j = δ_ij − p_j, i.e. the Jacobian I − 1 pᵀ
    x2 = rand(5)
    ls = cr.log_softmax(x2)
    p = np.exp(ls.data)
    ls.backward(g)
    np.testing.assert_allclose(x2.grad, (np.eye(5) - np.outer(np.ones(5), p)).T @ g)


def test_softmax_stable_at_large_logits():
    x = T([[1e4, -1e4, 0.0], [1000.0, 1000.0, 1000.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = cr.softmax(x)
        ly = cr.log_softmax(x)
        (y * RNG.standard_normal(y.shape)).sum().backward()
    np.testing.assert_allclose(y.data, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-15)
    np.testing.assert_allclose(ly.data[1], np.log([1 / 3] * 3))
    assert np.all(np.isfinite(x.grad))


def test_smax_soft_maximum():
    a = rand(4, 6)
    for axis in (0, 1, -1):
        check(lambda a: cr.smax(a, axis=axis), a)
        check(lambda a: cr.smax(a, axis=axis, keepdims=True), a)
    v = rand(6)
    o = cr.smax(v)
    s = np.exp(v.data - v.data.max())
    s /= s.sum()
    np.testing.assert_allclose(o.data, s @ v.data)                 # o = softmax(a)·a
    o.backward()
    np.testing.assert_allclose(v.grad, s * (1 + v.data - o.data))  # ā = s ⊙ (1 + a − o)
    # the soft maximum lies between the mean and the max
    assert v.data.mean() <= o.item() <= v.data.max()


def test_softmax_cross_entropy_index_and_soft_targets():
    z = rand(5, 4)
    y = np.array([0, 3, 1, 1, 2])
    check(lambda z: cr.softmax_cross_entropy(z, y), z)
    loss = cr.softmax_cross_entropy(z, y)
    logp = z.data - np.log(np.exp(z.data).sum(1, keepdims=True))
    np.testing.assert_allclose(loss.item(), -logp[np.arange(5), y].mean())
    loss.backward()
    onehot = np.eye(4)[y]
    np.testing.assert_allclose(z.grad, (np.exp(logp) - onehot) / 5)
    # soft targets, including one-hot rows, equal index targets
    t = RNG.dirichlet(np.ones(4), size=5)
    check(lambda z: cr.softmax_cross_entropy(z, t), z)
    np.testing.assert_allclose(cr.softmax_cross_entropy(z, onehot).item(), loss.item())
    np.testing.assert_allclose(cr.softmax_cross_entropy(z, t).item(), -(t * logp).sum(1).mean())
    # per-example weights (sum of w_n * nll_n)
    w = RNG.random(5)
    check(lambda z: cr.softmax_cross_entropy(z, y, weight=w), z)
    np.testing.assert_allclose(cr.softmax_cross_entropy(z, y, weight=w).item(), (-logp[np.arange(5), y] * w).sum())
    # a single example (1-D logits)
    v = rand(4)
    check(lambda v: cr.softmax_cross_entropy(v, np.array(2)), v)


def test_softmax_cross_entropy_stable_at_1e4():
    z = T([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]])
    y = np.array([1, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = cr.softmax_cross_entropy(z, y)
        loss.backward()
    np.testing.assert_allclose(loss.item(), (2e4 + (2e4 + np.log(2))) / 2)
    np.testing.assert_allclose(z.grad, [[0.5, -0.5, 0.0], [-0.5, 0.25, 0.25]], atol=1e-15)
    z.grad = None
    soft = np.array([[0.0, 1.0, 0.0], [0.5, 0.25, 0.25]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = cr.softmax_cross_entropy(z, soft)
        loss.backward()
    assert np.isfinite(loss.item()) and np.all(np.isfinite(z.grad))


def test_softmax_cross_entropy_bad_targets():
    z = rand(3, 4)
    with pytest.raises(ValueError, match="softmax_cross_entropy"):
        cr.softmax_cross_entropy(z, np.array([0, 1]))
    with pytest.raises(ValueError, match="out of range"):
        cr.softmax_cross_entropy(z, np.array([0, 1, 4]))
    with pytest.raises(ValueError, match="soft targets"):
        cr.softmax_cross_entropy(z, np.ones((3, 5)) / 5)


# --------------------------------------------------------------------------- dtypes through ops
def test_float32_stays_float32_and_grads_match_leaf_dtype():
    x = cr.tensor(RNG.standard_normal((3, 4)).astype(np.float32), requires_grad=True)
    c64 = RNG.standard_normal((4,))                              # a float64 constant
    y = (cr.tanh(x) * 0.5 + 1.0) @ cr.tensor(RNG.standard_normal((4, 2)).astype(np.float32))
    assert y.dtype == np.float32
    z = (x * c64).sum()                                          # promotes the value...
    z.backward()
    assert x.grad.dtype == np.float32                            # ...but the leaf's grad keeps its dtype
    m = cr.max(x, axis=1)
    x.grad = None
    m.sum().backward()
    assert x.grad.dtype == np.float32


def test_op_docstrings_carry_both_formulas():
    for name, op in cr.ops.RULES.items():
        assert op.__doc__ and "|" in op.__doc__, name
    assert "x̄" in cr.mul.__doc__ or "x̄" in cr.ops.RULES["mul"].__doc__


def test_stable_sigmoid_branch_free_select_is_the_where_formula_bit_for_bit():
    """σ = num / (1 + e), e = e^(−|x|), num = 1 for x ≥ 0 and e otherwise: selected with a maximum
    (e ≤ 1 where x ≥ 0) instead of np.where -- the same bits, special values included."""
    from chainrule.ops.rules import stable_sigmoid
    rng = np.random.default_rng(0)
    for dt in (np.float16, np.float32, np.float64):
        x = np.concatenate([rng.standard_normal(2000) * s for s in (1, 10, 100, 1e4)]
                           + [[0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 88.7, -88.7, 709.0, -745.0]])
        x = x.astype(dt)
        with np.errstate(over="ignore", under="ignore"):
            e = np.exp(-np.abs(x))
            want = np.where(x >= 0, np.ones((), dt), e) / (1 + e)
            got = stable_sigmoid(x)
        assert got.dtype == dt and got.tobytes() == want.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_and_bilinear_vjps_with_a_contraction_of_one_are_the_exact_products(dtype):
    """A weight gradient from a single row (aᵀ g with a of one row; an RNTN level of one node) is an
    outer product: the rules compute it as a broadcast product (NumPy's matmul is a slow loop there),
    giving exactly the products a_i g_j -- the numbers matmul gives."""
    rng = np.random.default_rng(5)
    x = cr.tensor(rng.standard_normal((1, 6)).astype(dtype), requires_grad=True)
    W = cr.tensor(rng.standard_normal((6, 4)).astype(dtype), requires_grad=True)
    V = cr.tensor(rng.standard_normal((6, 6, 3)).astype(dtype), requires_grad=True)
    g = rng.standard_normal((1, 4)).astype(dtype)
    (cr.matmul(x, W) * g).sum().backward()
    np.testing.assert_array_equal(W.grad, x.data.T @ g)
    np.testing.assert_array_equal(W.grad, np.outer(x.data[0], g[0]))
    gz = rng.standard_normal((1, 3)).astype(dtype)
    (cr.bilinear(x, V) * gz).sum().backward()
    xg = (x.data[:, :, None] * gz[:, None, :]).reshape(1, -1)
    np.testing.assert_array_equal(V.grad, (x.data.T @ xg).reshape(V.shape))
    v = cr.tensor(rng.standard_normal(4).astype(dtype), requires_grad=True)
    (cr.matmul(W, v) * rng.standard_normal(6).astype(dtype)).sum().backward()     # 2-D @ 1-D: W̄ = g vᵀ
    assert cr.gradcheck(lambda W, v: cr.matmul(W, v).sum(), cr.tensor(W.data, requires_grad=True, dtype="float64"),
                        cr.tensor(v.data, requires_grad=True, dtype="float64"))


def test_einsum_vjp_uses_the_cached_contraction_path():
    """The backward of a 3-operand einsum looks its contraction order up in the cache (computing it
    each time cost the per-node RNTN most of its step); same path, same numbers."""
    from chainrule.ops import rules as R
    rng = np.random.default_rng(6)
    c = cr.tensor(rng.standard_normal(4), requires_grad=True)
    V = cr.tensor(rng.standard_normal((4, 4, 3)), requires_grad=True)
    R._PATHS.clear()
    cr.einsum("i,ijk,j->k", c, V, c).sum().backward()
    assert any(spec.startswith("k,") for spec, _ in R._PATHS), sorted(R._PATHS)
    np.testing.assert_allclose(V.grad, np.einsum("i,j,k->ijk", c.data, c.data, np.ones(3)))


@pytest.mark.parametrize("shape", [(881, 5), (2000, 2), (4, 300, 3), (16, 10)])
def test_softmax_max_over_a_short_axis_by_columns_is_the_same(shape):
    """log_softmax/softmax shift by the row maximum; over a short last axis with many rows it is taken
    column by column (NumPy's reduction is slow there) -- the same numbers bit for bit, NaNs and
    ties included."""
    from chainrule.ops import rules as R
    rng = np.random.default_rng(8)
    x = rng.standard_normal(shape).astype(np.float32)
    x.reshape(-1)[::7] = x.reshape(-1)[1::7][:x.reshape(-1)[::7].size]     # ties
    x.reshape(-1)[5] = np.nan
    np.testing.assert_array_equal(R._max_keep(x, -1), np.max(x, axis=-1, keepdims=True))
    sh = x - np.max(x, axis=-1, keepdims=True)
    np.testing.assert_array_equal(R.log_softmax_array(x), sh - np.log(np.sum(np.exp(sh), axis=-1, keepdims=True)))
    e = np.exp(sh)
    np.testing.assert_array_equal(R.softmax_array(x), e / np.sum(e, axis=-1, keepdims=True))
    np.testing.assert_array_equal(R._max_keep(x, 0), np.max(x, axis=0, keepdims=True))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(128, 256), (5000,), (3, 40, 50), (16, 64)])
def test_relu_against_a_zero_row_is_max_with_zero_bit_for_bit(shape, dtype):
    """relu's forward compares larger float arrays with a broadcast row of zeros (NumPy's scalar
    loop is slower): the same bits as np.maximum(x, 0) for ±0, ±inf, NaNs and subnormals."""
    from chainrule.ops import rules as R
    x = np.random.default_rng(9).standard_normal(shape).astype(dtype)
    special = np.array([-0.0, 0.0, np.nan, -np.nan, np.inf, -np.inf, np.finfo(dtype).tiny / 4, -1e-30], dtype)
    x.reshape(-1)[:special.size * 3] = np.tile(special, 3)
    z, _ = R._relu(x)
    want = np.maximum(x, 0)
    assert z.dtype == want.dtype and z.tobytes() == want.tobytes()
    x.flags.writeable = False                    # a read-only input works too; the zero row stays read-only
    assert R._relu(x)[0].tobytes() == want.tobytes()
    assert not R._zero_row(x).flags.writeable
