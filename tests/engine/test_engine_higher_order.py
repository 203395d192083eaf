"""Higher order from the one rule table: every primitive passes an order-2 check (gradgradcheck:
finite differences of the engine's analytic gradient, float64, random inputs with broadcasting) and a
jvp check (forward mode against finite differences), and a new rule cannot be added without both --
``test_every_rule_has_a_higher_order_case`` fails until CASES has an entry for it."""
import numpy as np
import pytest

import chainrule as cr
from chainrule.ops import rules as R
from chainrule.ops.fused import bce_with_logits, composition, linear
from chainrule.ops.lstm import lstm_sequence
from chainrule.tensor import apply

RNG = np.random.default_rng(7)


def T(shape, lo=-1.5, hi=1.5, away=0.0):
    a = RNG.uniform(lo, hi, size=shape)
    if away:
        a = np.where(np.abs(a) < away, np.sign(a + 1e-12) * away + a, a)
    return cr.tensor(a, requires_grad=True, dtype="float64")


def P(shape):                       # positive inputs (log, sqrt, pow base)
    return T(shape, 0.5, 2.0)


IDX = np.array([0, 2, 2, 1])
CASES = {
    "add": (lambda x, y: x + y, lambda: (T((3, 1, 4)), T((2, 4)))),
    "sub": (lambda x, y: x - y, lambda: (T((3, 4)), T((4,)))),
    "mul": (lambda x, y: x * y, lambda: (T((3, 1)), T((3, 4)))),
    "div": (lambda x, y: x / y, lambda: (T((2, 3)), P((3,)))),
    "neg": (lambda x: -x, lambda: (T((3,)),)),
    "pow": (lambda x, y: x ** y, lambda: (P((2, 3)), T((3,)))),
    "exp": (cr.exp, lambda: (T((2, 3)),)),
    "log": (cr.log, lambda: (P((2, 3)),)),
    "sqrt": (cr.sqrt, lambda: (P((4,)),)),
    "sin": (cr.sin, lambda: (T((2, 3)),)),
    "cos": (cr.cos, lambda: (T((2, 3)),)),
    "abs": (cr.abs, lambda: (T((5,), away=0.2),)),
    "tanh": (cr.tanh, lambda: (T((2, 3)),)),
    "sigmoid": (cr.sigmoid, lambda: (T((2, 3)),)),
    "relu": (cr.relu, lambda: (T((5,), away=0.2),)),
    "leaky_relu": (lambda x: cr.leaky_relu(x, 0.1), lambda: (T((5,), away=0.2),)),
    "softplus": (cr.softplus, lambda: (T((2, 3)),)),
    "maximum": (cr.maximum, lambda: (T((3, 4)), T((4,)) + 3.0)),
    "minimum": (cr.minimum, lambda: (T((3, 4)), T((4,)) + 3.0)),
    "clip": (lambda x: cr.clip(x, -0.5, 0.5), lambda: (T((6,), away=0.05),)),
    "where": (lambda x, y: cr.where(np.array([True, False, True]), x, y), lambda: (T((2, 3)), T((3,)))),
    "sum": (lambda x: cr.sum(x, axis=1, keepdims=False), lambda: (T((2, 3, 2)),)),
    "max": (lambda x: cr.max(x, axis=0), lambda: (T((3, 4)),)),
    "min": (lambda x: cr.min(x, axis=-1, keepdims=True), lambda: (T((3, 4)),)),
    "logsumexp": (lambda x: cr.logsumexp(x, axis=1), lambda: (T((2, 3)),)),
    "softmax": (lambda x: cr.softmax(x, axis=0), lambda: (T((3, 2)),)),
    "log_softmax": (cr.log_softmax, lambda: (T((2, 4)),)),
    "smax": (lambda x: cr.smax(x, axis=-1), lambda: (T((2, 3)),)),
    "softmax_cross_entropy": (lambda z: cr.softmax_cross_entropy(z, np.array([0, 2, 1])), lambda: (T((3, 4)),)),
    "matmul": (lambda a, b: a @ b, lambda: (T((2, 3, 4)), T((4, 2)))),
    "bilinear": (cr.bilinear, lambda: (T((2, 3)), T((3, 3, 2)))),
    "einsum": (lambda a, b: cr.einsum("ij,jk->ik", a, b), lambda: (T((2, 3)), T((3, 2)))),
    "reshape": (lambda x: cr.reshape(x, (3, 2)), lambda: (T((2, 3)),)),
    "transpose": (lambda x: cr.transpose(x, (1, 2, 0)), lambda: (T((2, 3, 2)),)),
    "broadcast_to": (lambda x: apply(R.BROADCAST_TO, (x,), {"shape": (2, 3)}), lambda: (T((3,)),)),
    "cast": (lambda x: apply(R.CAST, (x,), {"dtype": np.dtype(np.float64)}), lambda: (T((3,)),)),
    "getitem": (lambda x: x[IDX], lambda: (T((3, 2)),)),
    "scatter": (lambda x: apply(R.SCATTER, (x,), {"idx": IDX, "shape": (3, 2)}), lambda: (T((4, 2)),)),
    "take": (lambda x: cr.take(x, IDX), lambda: (T((3, 2)),)),
    "take flat": (lambda x: cr.take(x, np.array([[2, 0, 2], [1, 1, 0]]), flat=True), lambda: (T((3, 2)),)),
    "concat": (lambda x, y: cr.concat([x, y], axis=1), lambda: (T((2, 2)), T((2, 3)))),
    "stack": (lambda x, y: cr.stack([x, y], axis=1), lambda: (T((2, 3)), T((2, 3)))),
    "sum_squares": (lambda x, y: cr.sum_squares([x, y], scale=[0.5, 2.0]), lambda: (T((2, 3)), T((3,)))),
    "linear": (lambda x, W, b: linear(x, W, b), lambda: (T((3, 4)), T((4, 2)), T((2,)))),
    "linear rows of 3-D x": (lambda x, W, b: linear(x, W, b), lambda: (T((2, 3, 4)), T((4, 2)), T((2,)))),
    "linear 1-D x, no bias": (lambda x, W: linear(x, W), lambda: (T((4,)), T((4, 1)))),
    "linear one output": (lambda x, W, b: linear(x, W, b), lambda: (T((3, 4)), T((4, 1)), T((1,)))),
    "composition": (lambda c, W, b, V: composition(c, W, b, V),
                    lambda: (T((3, 4)), T((4, 2)), T((2,)), T((4, 4, 2)))),
    # T = 3, N = 2, D = 2, H = 2; a mask holding some steps, the reverse direction and an initial state
    "lstm_sequence": (lambda x, wi, b, w, h0, c0: lstm_sequence(x, wi, b, w, h0, c0, reverse=True,
                                                               mask=np.array([[True, True, False], [False, True, True]])),
                      lambda: (T((2, 3, 2)), T((2, 8)), T((8,)), T((2, 8)), T((2, 2)), T((2, 2)))),
    "bce_with_logits": (lambda z: bce_with_logits(z, np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]), np.array([0.5, 1.0, 2.0])),
                        lambda: (T((2, 3)),)),
}


def _squared(f):
    """f's output squared (and tanh'd), so even a linear op has a nonzero second derivative to check."""
    def g(*xs):
        y = f(*xs)
        return cr.tanh(y) * y
    return g


def test_every_rule_has_a_higher_order_case():
    """A differentiable rule (written on the namespace) needs a case here; a first-order-only rule
    (old-style, on raw arrays) must say so -- create_graph through it then raises naming the op."""
    missing = sorted(k for k, op in R.RULES.items()
                     if op.differentiable and k not in CASES and op.forward.__module__.startswith("chainrule."))
    assert not missing, f"rules without an order-2 / jvp case in CASES: {missing}"
    first_order = sorted(k for k, op in R.RULES.items() if not op.differentiable)
    assert set(first_order) <= {"table_write", "table_gather", "table_read", "table_level", "table_levels", "bad_square", "bad_relu"}, \
        f"new first-order-only rules: {first_order}; write them on the namespace (or list them here on purpose)"


def test_create_graph_through_a_first_order_rule_names_the_op():
    leaves = cr.tensor(np.array([[1.0], [2.0]]), requires_grad=True)
    t = cr.NodeTable(3)
    t.write(0, leaves)
    t.write(2, t.gather(np.array([[0, 1]])).sum(axis=1) * 10.0)
    with pytest.raises(RuntimeError, match="create_graph: the backward rule of op 'table_read'"):
        cr.gradients(t.read().sum(), [leaves], create_graph=True)


@pytest.mark.parametrize("name", sorted(CASES))
def test_order2_gradgradcheck(name):
    f, make = CASES[name]
    assert cr.gradgradcheck(_squared(f), *make(), atol=1e-6, rtol=1e-4)
    assert cr.gradcheck(f, *make(), order=2)


@pytest.mark.parametrize("name", sorted(CASES))
def test_jvp_matches_finite_differences(name):
    f, make = CASES[name]
    xs = [x.data for x in make()]
    vs = [RNG.standard_normal(x.shape) for x in xs]
    y, dy = cr.jvp(lambda *a: f(*a), tuple(xs), tuple(vs))
    eps = 1e-6
    with cr.no_grad():
        fp = f(*[cr.tensor(x + eps * v) for x, v in zip(xs, vs)]).data
        fm = f(*[cr.tensor(x - eps * v) for x, v in zip(xs, vs)]).data
    np.testing.assert_allclose(y, f(*[cr.tensor(x) for x in xs]).data)
    np.testing.assert_allclose(dy, (fp - fm) / (2 * eps), rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------- a user's own primitive
def test_primitive_on_the_namespace_gets_higher_order_for_free(user_ops):
    from chainrule.ops.rules import xp

    def fwd(x, y):
        """z = x · e^y   |   x̄ = g e^y,  ȳ = g z"""
        return x * np.exp(y), (x, y, x * np.exp(y))
    user_ops.append("xexpy")
    f = cr.primitive("xexpy", fwd, lambda g, n, x, y, ans: (g * xp.exp(y) if n[0] else None,
                                                               g * ans if n[1] else None))
    x, y = T((3,)), T((2, 3))
    assert cr.gradcheck(lambda x, y: f(x, y), x, y)
    assert cr.gradgradcheck(lambda x, y: f(x, y), x, y)
    h = cr.hessian(lambda v: f(v[0], v[1]).sum())(np.array([0.5, -0.3]))
    np.testing.assert_allclose(h, [[0.0, np.exp(-0.3)], [np.exp(-0.3), 0.5 * np.exp(-0.3)]], rtol=1e-12)


def test_primitive_name_clash_raises(user_ops):
    with pytest.raises(ValueError, match="'mul' already exists"):
        cr.primitive("mul", lambda x, y: (x * y, (x, y)), lambda g, n, x, y: (g * y, g * x))
    assert R.RULES["mul"] is R.MUL


def test_primitive_written_with_numpy_raises_clearly_under_create_graph(user_ops):
    user_ops.append("np_sin")
    f = cr.primitive("np_sin", lambda x: (np.sin(x), (x,)), lambda g, n, x: (g * np.cos(x),))
    x = T((3,))
    assert cr.gradcheck(lambda x: f(x).sum(), x)                     # first order works
    with pytest.raises(RuntimeError, match="backward rule of op 'np_sin' could not run on chainrule tensors"):
        cr.grad(lambda x: cr.grad(lambda x: f(x).sum())(x).sum())(x.data)


def test_row_sparse_embedding_gradient_under_create_graph_is_dense_and_correct():
    L = T((6, 2))
    idx = np.array([1, 4, 1])
    (g,) = cr.gradients((cr.take(L, idx, sparse=True) ** 3).sum(), [L], create_graph=True)
    assert isinstance(g, cr.Tensor) and g.shape == (6, 2)
    (h,) = cr.gradients(g.sum(), [L])
    want = np.zeros((6, 2))
    for i in idx:
        want[i] += 6 * L.data[i]
    np.testing.assert_allclose(h, want, rtol=1e-12)


def test_backward_create_graph_gives_tensor_grads_and_grad_composes():
    x = T((4,))
    (x ** 3).sum().backward(create_graph=True)
    assert isinstance(x.grad, cr.Tensor) and x.grad.requires_grad
    gx = x.grad
    x.grad = None
    gx.sum().backward()
    np.testing.assert_allclose(x.grad, 6 * x.data, rtol=1e-12)
    f = lambda v: (cr.sin(v) * v).sum()                                   # noqa: E731
    d3 = cr.grad(lambda v: cr.grad(lambda v: cr.grad(f)(v).sum())(v).sum())(np.array([0.7]))
    a = 0.7                                                               # (x sin x)''' = −3 sin x − x cos x
    np.testing.assert_allclose(d3, [-3 * np.sin(a) - a * np.cos(a)], rtol=1e-12)
