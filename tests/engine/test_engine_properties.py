"""Property-based tests (hypothesis): over random shapes -- broadcastable pairs, 0-d scalars, size-1
axes -- and random values, every elementwise binary op and every reduction (random axis, keepdims)
matches NumPy forward, returns a gradient of each input's own shape, and passes gradcheck.

Values come from hypothesis too, so exact ties (max, maximum) and exact zeros (relu, abs) do occur:
gradcheck must then accept the engine's documented subgradient as a non-differentiable point."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import (
    array_shapes, arrays, basic_indices, integer_array_indices, mutually_broadcastable_shapes,
    valid_tuple_axes,
)

import chainrule as cr

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALUES = st.floats(-3.0, 3.0, allow_nan=False, allow_infinity=False, width=64)


def leaf(a):
    return cr.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


# For maximum/minimum under broadcasting: values on a grid, so ties are exact and distinct values are
# far apart.  Two *distinct* kinks closer than gradcheck's eps (0 and 7e-60, both touched by one
# broadcast element) make the measured one-sided slopes meaningless -- a limit of finite
# differences, not of the engine.
GRID = st.integers(-12, 12).map(lambda k: k / 4.0)


@st.composite
def broadcast_pair(draw, elements=VALUES):
    shapes = draw(mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=4))
    a = draw(arrays(np.float64, shapes.input_shapes[0], elements=elements))
    b = draw(arrays(np.float64, shapes.input_shapes[1], elements=elements))
    return a, b, shapes.result_shape


@st.composite
def array_and_axis(draw, min_dims=0):
    shape = draw(array_shapes(min_dims=min_dims, max_dims=4, min_side=1, max_side=4))
    x = draw(arrays(np.float64, shape, elements=VALUES))
    nd = len(shape)
    axis = draw(st.one_of(st.none(), st.integers(-nd, nd - 1), valid_tuple_axes(nd, min_size=0))
                if nd else st.none())
    keepdims = draw(st.booleans())
    return x, axis, keepdims


def positive(v):           # bases, denominators, log arguments kept away from 0
    return 0.5 + np.abs(v)


def nonzero(v):
    return np.where(v >= 0, 1.0, -1.0) * positive(v)


BINARY = {
    "add": (cr.add, np.add, lambda a, b: (a, b)),
    "sub": (cr.sub, np.subtract, lambda a, b: (a, b)),
    "mul": (cr.mul, np.multiply, lambda a, b: (a, b)),
    "div": (cr.div, np.divide, lambda a, b: (a, nonzero(b))),
    "pow": (cr.pow, np.power, lambda a, b: (positive(a), b)),
    "maximum": (cr.maximum, np.maximum, lambda a, b: (a, b)),
    "minimum": (cr.minimum, np.minimum, lambda a, b: (a, b)),
}
SMOOTH = ["add", "sub", "mul", "div", "pow"]


@pytest.mark.parametrize("name", SMOOTH)
@SETTINGS
@given(data=broadcast_pair())
def test_binary_elementwise_broadcasting(name, data):
    _check_binary(name, data)


@pytest.mark.parametrize("name", ["maximum", "minimum", *SMOOTH])
@SETTINGS
@given(data=broadcast_pair(elements=GRID))
def test_binary_elementwise_broadcasting_with_exact_ties(name, data):
    _check_binary(name, data)
    a, b, out_shape = data
    if name in ("maximum", "minimum"):
        # the two inputs share every output's gradient: the shares add up to exactly g
        x, y = leaf(a), leaf(b)
        BINARY[name][0](x, y).backward(np.ones(out_shape))
        np.testing.assert_allclose(x.grad.sum() + y.grad.sum(), np.prod(out_shape))


def _check_binary(name, data):
    a, b, out_shape = data
    f, ref, prep = BINARY[name]
    a, b = prep(a, b)
    x, y = leaf(a), leaf(b)
    z = f(x, y)
    assert z.shape == out_shape
    np.testing.assert_allclose(z.data, ref(a, b), rtol=1e-12, atol=1e-12)
    g = np.ones(out_shape)
    z.backward(g)
    assert x.grad.shape == a.shape and y.grad.shape == b.shape
    assert cr.gradcheck(f, x, y)


UNARY = {
    "exp": (cr.exp, lambda v: v),
    "log": (cr.log, positive),
    "sqrt": (cr.sqrt, positive),
    "tanh": (cr.tanh, lambda v: v),
    "sigmoid": (cr.sigmoid, lambda v: v),
    "softplus": (cr.softplus, lambda v: v),
    "relu": (cr.relu, lambda v: v),
    "abs": (cr.abs, lambda v: v),
    "leaky_relu": (lambda x: cr.leaky_relu(x, 0.2), lambda v: v),
}


@pytest.mark.parametrize("name", list(UNARY))
@SETTINGS
@given(x=array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=4).flatmap(
    lambda s: arrays(np.float64, s, elements=VALUES)))
def test_unary_elementwise(name, x):
    f, prep = UNARY[name]
    t = leaf(prep(x))
    assert f(t).shape == x.shape
    assert cr.gradcheck(f, t)


REDUCTIONS = {
    "sum": (cr.sum, np.sum),
    "mean": (cr.mean, np.mean),
    "max": (cr.max, np.max),
    "min": (cr.min, np.min),
    "logsumexp": (cr.logsumexp, lambda x, axis, keepdims: np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims))),
}


@pytest.mark.parametrize("name", list(REDUCTIONS))
@SETTINGS
@given(data=array_and_axis())
def test_reductions_random_axis_keepdims(name, data):
    x, axis, keepdims = data
    f, ref = REDUCTIONS[name]
    t = leaf(x)
    z = f(t, axis=axis, keepdims=keepdims)
    expect = ref(x, axis=axis, keepdims=keepdims)
    assert z.shape == np.shape(expect)
    np.testing.assert_allclose(z.data, expect, rtol=1e-12, atol=1e-12)
    z.backward(np.ones(z.shape))
    assert t.grad.shape == x.shape
    if name == "sum":
        np.testing.assert_array_equal(t.grad, np.ones_like(x))
    if name in ("max", "min"):
        # ties share the gradient: per reduced slice, the gradient sums to exactly 1
        axes = tuple(range(x.ndim)) if axis is None else axis
        np.testing.assert_allclose(np.sum(t.grad, axis=axes), 1.0)
    assert cr.gradcheck(lambda t: f(t, axis=axis, keepdims=keepdims), t)


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "smax"])
@SETTINGS
@given(data=array_and_axis(min_dims=1))
def test_vector_activations_random_axis(name, data):
    x, axis, keepdims = data
    if not isinstance(axis, int):
        axis = -1
    t = leaf(x)
    f = getattr(cr, name)
    if name == "smax":
        g = lambda t: f(t, axis=axis, keepdims=keepdims)
    else:
        g = lambda t: f(t, axis=axis)                   
    out = g(t)
    if name == "softmax":
        np.testing.assert_allclose(out.data.sum(axis=axis), 1.0)
    assert cr.gradcheck(g, t)


@SETTINGS
@given(data=array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5).flatmap(
    lambda s: st.tuples(arrays(np.float64, s, elements=VALUES), basic_indices(s, allow_newaxis=True))))
def test_getitem_basic_indices(data):
    x, idx = data
    t = leaf(x)
    np.testing.assert_array_equal(t[idx].data, x[idx])
    assert cr.gradcheck(lambda t: t[idx] * 1.0, t)


@SETTINGS
@given(data=array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5).flatmap(
    lambda s: st.tuples(arrays(np.float64, s, elements=VALUES), integer_array_indices(s))))
def test_getitem_integer_array_indices(data):
    x, idx = data
    t = leaf(x)
    y = t[idx]
    np.testing.assert_array_equal(y.data, x[idx])
    y.backward(np.ones(y.shape))
    expect = np.zeros_like(x)
    np.add.at(expect, idx, 1.0)                               # repeated indices accumulate
    np.testing.assert_array_equal(t.grad, expect)
    assert cr.gradcheck(lambda t: t[idx], t)
