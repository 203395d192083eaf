"""Forward mode from the tangent rules (``jvp=`` in each row of the rule table): every rule's tangent
agrees with central finite differences AND with the double-VJP trick (float64, random inputs with
broadcasting, every input's tangent and each input's alone), the tangent rules are differentiable
(grad of a jvp, jvp of a jvp), forward over reverse equals reverse over reverse, a rule without a
tangent rule makes ``test_every_rule_has_a_tangent_rule`` fail, and a user's primitive without one
falls back to the double-VJP for that op."""
import numpy as np
import pytest

import chainrule as cr
from chainrule.ops import rules as R
from chainrule.ops.fused import bce_with_logits
from chainrule.transforms import jvp_by_double_vjp

from test_engine_higher_order import CASES

RNG = np.random.default_rng(11)


def _tangents(xs):
    return [RNG.standard_normal(x.shape) for x in xs]


def _fd(f, xs, vs, eps=1e-6):
    with cr.no_grad():
        fp = f(*[cr.tensor(x + eps * v) for x, v in zip(xs, vs)]).data
        fm = f(*[cr.tensor(x - eps * v) for x, v in zip(xs, vs)]).data
    return (fp - fm) / (2 * eps)


def test_every_rule_has_a_tangent_rule():
    """A new primitive in the library's table must come with its tangent rule (jvp= in its defop row)
    and with a case in CASES (test_engine_higher_order), which the tests below run."""
    missing = sorted(k for k, op in R.RULES.items()
                     if op.jvp is None and op.forward.__module__.startswith("chainrule."))
    assert not missing, f"rules without a tangent rule (jvp=): {missing}"
    table_ops = {"table_write", "table_gather", "table_read", "table_level", "table_levels"}   # tested below (first order only)
    untested = sorted(k for k, op in R.RULES.items() if op.forward.__module__.startswith("chainrule.")
                      and k not in CASES and k not in table_ops)
    assert not untested, f"rules without a case in CASES: {untested}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_tangent_rule_matches_finite_differences_and_double_vjp(name):
    f, make = CASES[name]
    xs = [x.data for x in make()]
    vs = _tangents(xs)
    y, dy = cr.jvp(f, tuple(xs), tuple(vs))
    assert isinstance(dy, np.ndarray) and dy.shape == np.shape(y) and dy.dtype == np.float64
    np.testing.assert_allclose(y, f(*[cr.tensor(x) for x in xs]).data)
    np.testing.assert_allclose(dy, _fd(f, xs, vs), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dy, jvp_by_double_vjp(f, tuple(xs), tuple(vs))[1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(k for k, (f, make) in CASES.items() if len(make()) > 1))
def test_tangent_rule_with_one_input_moving(name):
    """The other inputs' tangents are zero (None inside the rule): each input's term alone."""
    f, make = CASES[name]
    xs = [x.data for x in make()]
    for i in range(len(xs)):
        g = (lambda i: lambda xi: f(*[xi if j == i else cr.tensor(x) for j, x in enumerate(xs)]))(i)
        v = RNG.standard_normal(xs[i].shape)
        dy = cr.jvp(g, (xs[i],), (v,))[1]
        np.testing.assert_allclose(dy, jvp_by_double_vjp(g, (xs[i],), (v,))[1], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(dy, _fd(g, [xs[i]], [v]), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", sorted(CASES))
def test_tangent_rule_is_differentiable(name):
    """grad of ⟨jvp(f)(x), w⟩ against finite differences: the tangent rules run on tensors then."""
    f, make = CASES[name]
    xs = make()
    vs = _tangents(xs)
    assert cr.gradcheck(lambda *a: cr.jvp(f, a, tuple(vs))[1], *xs, atol=1e-6, rtol=1e-4)


def test_jvp_of_jvp_is_the_second_directional_derivative():
    f = lambda x: cr.softmax(cr.tanh(x * x) @ W, axis=-1)                  # noqa: E731
    W = RNG.standard_normal((4, 3))
    x, v, w = (RNG.standard_normal((2, 4)) for _ in range(3))
    got = cr.jvp(lambda x: cr.jvp(f, (x,), (v,))[1], (x,), (w,))[1]
    eps = 1e-5
    want = (cr.jvp(f, (x + eps * w,), (v,))[1] - cr.jvp(f, (x - eps * w,), (v,))[1]) / (2 * eps)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    # the same direction twice: d²/dt² f(x + t v), no confusion between the two levels
    got = cr.jvp(lambda x: cr.jvp(f, (x,), (v,))[1], (x,), (v,))[1]
    with cr.no_grad():
        fd2 = (f(cr.tensor(x + eps * v)).data - 2 * f(cr.tensor(x)).data + f(cr.tensor(x - eps * v)).data) / eps ** 2
    np.testing.assert_allclose(got, fd2, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("mode", ["fwd", "rev"])
def test_hvp_modes_agree_with_each_other_and_finite_differences(mode):
    X, W1 = RNG.standard_normal((5, 4)), RNG.standard_normal((4, 6))
    W2, y = RNG.standard_normal((6, 3)), np.array([0, 2, 1, 1, 0])
    f = lambda W1, W2: cr.softmax_cross_entropy(cr.sigmoid(cr.tensor(X) @ W1) @ W2, y)   # noqa: E731
    v1, v2 = RNG.standard_normal(W1.shape), RNG.standard_normal(W2.shape)
    h1, h2 = cr.hvp(f, (W1, W2), (v1, v2), mode=mode)
    g = cr.grad(f, argnums=(0, 1))
    eps = 1e-5
    p, m = g(W1 + eps * v1, W2 + eps * v2), g(W1 - eps * v1, W2 - eps * v2)
    np.testing.assert_allclose(h1, (p[0] - m[0]) / (2 * eps), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(h2, (p[1] - m[1]) / (2 * eps), rtol=1e-6, atol=1e-8)
    other = cr.hvp(f, (W1, W2), (v1, v2), mode="rev" if mode == "fwd" else "fwd")
    np.testing.assert_allclose(h1, other[0], rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="mode must be"):
        cr.hvp(f, (W1, W2), (v1, v2), mode="both")


def test_jvp_of_a_node_table_matches_finite_differences():
    """The table ops (first order only in reverse mode) carry tangents in a tangent table."""
    def f(leaves):
        t = cr.NodeTable(4)
        t.write(0, leaves)
        c = t.gather(np.array([[0, 1], [1, 2]]), distinct=False)
        t.write(3, cr.tanh(c.sum(axis=1)[:1]) * 2.0)
        flat = t.gather(np.array([[3, 0], [1, 3]]), flat=True)          # (2, 4): rows joined end to end
        return t.read() * t.gather(np.array([3, 0, 3, 1])) + flat.reshape(4, 2)
    x, v = RNG.standard_normal((3, 2)), RNG.standard_normal((3, 2))
    y, dy = cr.jvp(f, (x,), (v,))
    np.testing.assert_allclose(dy, _fd(f, [x], [v]), rtol=1e-6, atol=1e-9)
    assert np.abs(dy[3]).max() > 0                     # the tangent went through the gathered rows


def _tangents_agree(f, g, args, first_written):
    """f's tangents at args (random directions): finite differences; g's, bit for bit; the rows from
    ``first_written`` on (what the table op wrote) carry a tangent."""
    vs = tuple(RNG.standard_normal(np.shape(a)) for a in args)
    y, dy = cr.jvp(f, args, vs)
    np.testing.assert_allclose(dy, _fd(f, list(args), list(vs)), rtol=1e-6, atol=1e-9)
    y2, dy2 = cr.jvp(g, args, vs)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(dy, dy2)
    assert np.abs(dy[first_written:]).max() > 0


def test_jvp_through_a_table_level_matches_finite_differences_and_the_three_ops():
    """NodeTable.level (gather, op, write as one node) carries the tangent through the op's own rule."""
    from chainrule.ops.fused import COMPOSITION, composition
    W, b, V = RNG.standard_normal((4, 2)), RNG.standard_normal(2), RNG.standard_normal((4, 4, 2)) * 0.3

    def f(leaves, W, b, V, fused=True):
        t = cr.NodeTable(5)
        t.write(0, leaves)
        if fused:
            t.level(3, np.array([[0, 1], [2, 0]]), COMPOSITION, W, b, V, distinct=False)
        else:
            t.write(3, composition(t.gather(np.array([[0, 1], [2, 0]]), flat=True), W, b, V))
        return t.read()
    _tangents_agree(f, lambda *a: f(*a, fused=False), (RNG.standard_normal((3, 2)), W, b, V), first_written=3)


def test_jvp_through_table_levels_is_level_per_level():
    """NodeTable.levels (a whole schedule as one node) carries the tangent level by level: the same
    tangents as level() per level, bit for bit, and finite differences."""
    from chainrule.ops.fused import COMPOSITION
    from chainrule.ops.table import LevelSchedule
    W, b, V = RNG.standard_normal((4, 2)), RNG.standard_normal(2), RNG.standard_normal((4, 4, 2)) * 0.3
    sched = LevelSchedule([3, 5, 6], [np.array([[0, 1], [2, 0]]), np.array([[3, 4]])])

    def f(leaves, W, b, V, one=True):
        t = cr.NodeTable(6)
        t.write(0, leaves)
        if one:
            t.levels(sched, COMPOSITION, W, b, V)
        else:
            for i, ch in enumerate(sched.children):
                t.level(int(sched.starts[i]), ch, COMPOSITION, W, b, V)
        return t.read()
    _tangents_agree(f, lambda *a: f(*a, one=False), (RNG.standard_normal((3, 2)), W, b, V), first_written=5)


def test_user_primitive_without_tangent_rule_falls_back_to_double_vjp(user_ops):
    from chainrule.ops.rules import xp
    user_ops.append("cube_no_jvp")
    cube = cr.primitive("cube_no_jvp", lambda x: (x ** 3, (x,)), lambda g, n, x: (3 * g * x * x,))
    x, v = RNG.standard_normal((2, 3)), RNG.standard_normal((2, 3))
    f = lambda x: cr.sin(cube(x * 2.0))                                  # noqa: E731
    np.testing.assert_allclose(cr.jvp(f, (x,), (v,))[1], _fd(f, [x], [v]), rtol=1e-6, atol=1e-9)
    with pytest.raises(RuntimeError, match="op 'cube_no_jvp' has no tangent rule"):
        cr.jvp(lambda x: cr.jvp(f, (x,), (v,))[1], (x,), (v,))
    user_ops.append("cube_jvp")
    cube2 = cr.primitive("cube_jvp", lambda x: (x ** 3, (x,)), lambda g, n, x: (3 * g * x * x,),
                         jvp=lambda d, x: 3 * d[0] * x * xp.exp(0 * x) * x)
    f2 = lambda x: cr.sin(cube2(x * 2.0))                                # noqa: E731
    got = cr.jvp(lambda x: cr.jvp(f2, (x,), (v,))[1], (x,), (v,))[1]     # differentiable: jvp of jvp
    eps = 1e-5
    want = (cr.jvp(f2, (x + eps * v,), (v,))[1] - cr.jvp(f2, (x - eps * v,), (v,))[1]) / (2 * eps)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


def test_old_style_primitive_without_tangent_rule_raises_naming_the_op(user_ops):
    user_ops.append("old_sq")
    f = cr.primitive("old_sq", lambda x: (x * x, x), lambda g, s, n: (2 * g * s,))
    with pytest.raises(RuntimeError, match="op 'old_sq' has no tangent rule"):
        cr.jvp(lambda x: f(x), (np.ones(3),), (np.ones(3),))


def test_jvp_api_shapes_tuples_and_errors():
    x, v = np.arange(3.0), np.ones(3)
    (a, b), (da, db) = cr.jvp(lambda x: (x * 2.0, (x * x).sum()), (x,), (v,))
    np.testing.assert_allclose(da, 2 * v)
    np.testing.assert_allclose(db, 2 * x.sum())
    y, dy = cr.jvp(lambda x: x + np.zeros((2, 3)), (x,), (v,))          # the tangent broadcast to z
    assert dy.shape == (2, 3) and dy.flags.writeable
    y, dy = cr.jvp(lambda x: x.reshape(3), (x,), (v,))                  # never a view of the caller's v
    dy[0] = 5.0
    assert v[0] == 1.0
    y, dy = cr.jvp(lambda x: cr.tensor(np.ones(2)) * 3.0, (x,), (v,))   # independent of x: zeros
    np.testing.assert_array_equal(dy, np.zeros(2))
    with pytest.raises(ValueError, match="a tangent of shape"):
        cr.jvp(lambda x: x, (x,), (np.ones(4),))
    with pytest.raises(ValueError, match="1 primals but 2 tangents"):
        cr.jvp(lambda x: x, (x,), (v, v))
    x32 = np.arange(3, dtype=np.float32)
    assert cr.jvp(lambda x: cr.tanh(x), (x32,), (v,))[1].dtype == np.float32
    from chainrule.autograd import STATE
    assert STATE.tangents == ()                                          # levels closed, also after errors


def test_jvp_with_primals_that_require_grad_gives_tensors_to_backprop():
    x = cr.tensor(RNG.standard_normal(4), requires_grad=True, dtype="float64")
    v = RNG.standard_normal(4)
    y, dy = cr.jvp(lambda x: cr.sin(x) * x, (x,), (v,))
    assert isinstance(dy, cr.Tensor)
    dy.sum().backward()                     # d/dx Σ (cos x · x + sin x) v = Σ (2 cos x − x sin x) v
    np.testing.assert_allclose(x.grad, (2 * np.cos(x.data) - x.data * np.sin(x.data)) * v, rtol=1e-12)


def test_in_place_on_a_tensor_with_a_tangent_makes_a_new_tensor_and_item_assignment_raises():
    x, v = np.array([1.0, 2.0]), np.array([1.0, -1.0])

    def f(x):
        x *= 3.0                         # z = z * 3: a new tensor, the caller's array is untouched
        return x * x
    np.testing.assert_allclose(cr.jvp(f, (x,), (v,))[1], 18 * x * v)
    np.testing.assert_array_equal(x, [1.0, 2.0])

    def g(x):
        x[0] = 5.0
        return x
    with pytest.raises(TypeError, match="carries a tangent.*index_put"):
        cr.jvp(g, (x,), (v,))


def test_composition_without_V_tangent():
    from chainrule.ops.fused import composition
    c, W, b = RNG.standard_normal((3, 4)), RNG.standard_normal((4, 2)), RNG.standard_normal(2)
    vs = [RNG.standard_normal(a.shape) for a in (c, W, b)]
    f = lambda c, W, b: composition(c, W, b)                             # noqa: E731
    dy = cr.jvp(f, (c, W, b), tuple(vs))[1]
    np.testing.assert_allclose(dy, _fd(f, [c, W, b], vs), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(dy, jvp_by_double_vjp(f, (c, W, b), tuple(vs))[1], rtol=1e-10, atol=1e-12)


def _hvp_both_vs_fd(f, ps, eps=1e-5):
    vs = tuple(RNG.standard_normal(p.shape) for p in ps)
    fwd = cr.hvp(f, tuple(ps), vs, mode="fwd")
    rev = cr.hvp(f, tuple(ps), vs, mode="rev")
    g = cr.grad(f, argnums=tuple(range(len(ps))))
    p_, m_ = g(*[p + eps * v for p, v in zip(ps, vs)]), g(*[p - eps * v for p, v in zip(ps, vs)])
    for a, b, gp, gm in zip(fwd, rev, p_, m_):
        fd = (gp - gm) / (2 * eps)
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(a, fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())
    assert max(np.abs(a).max() for a in fwd) > 1e-3


def test_hvp_forward_over_reverse_on_an_lstm_written_with_ops():
    """c = f ⊙ c + i ⊙ g over 4 steps (slices of one gate matmul), softmax cross-entropy on the last h."""
    D, H = 3, 4
    x, y = RNG.standard_normal((2, 4, D)), np.array([1, 0])

    def loss(Wx, Wh, b, Wo):
        h = c = cr.tensor(np.zeros((2, H)))
        for t in range(x.shape[1]):
            z = cr.tensor(x[:, t]) @ Wx + h @ Wh + b
            i, f, g, o = cr.sigmoid(z[:, :H]), cr.sigmoid(z[:, H:2 * H]), cr.tanh(z[:, 2 * H:3 * H]), cr.sigmoid(z[:, 3 * H:])
            c = f * c + i * g
            h = o * cr.tanh(c)
        return cr.softmax_cross_entropy(h @ Wo, y)
    ps = [RNG.standard_normal((D, 4 * H)) * 0.5, RNG.standard_normal((H, 4 * H)) * 0.5,
          RNG.standard_normal(4 * H) * 0.1, RNG.standard_normal((H, 2))]
    _hvp_both_vs_fd(loss, ps)


@pytest.mark.parametrize("sparse", [False, True])
def test_hvp_forward_over_reverse_on_a_window_model_with_an_embedding(sparse):
    idx = np.array([[0, 3, 5], [2, 2, 7]])
    d = np.array([1.0, 0.0])

    def loss(L, W, U):
        e = cr.take(L, idx, sparse=sparse).reshape(2, -1)
        z = cr.tanh(e @ W) @ U
        return bce_with_logits(z[:, 0], d, 0.5) + cr.sum_squares([W, U], scale=0.1)
    ps = [RNG.standard_normal((8, 2)), RNG.standard_normal((6, 5)) * 0.5, RNG.standard_normal((5, 1))]
    _hvp_both_vs_fd(loss, ps)


def test_jacobian_forward_mode_equals_reverse_mode():
    W = RNG.standard_normal((3, 4))
    f = lambda x, s: cr.softmax(cr.tanh(x @ W) * s, axis=-1)            # noqa: E731
    x = RNG.standard_normal((2, 3))
    Jf = cr.jacobian(f, mode="fwd")(x, 2.0)
    Jr = cr.jacobian(f)(x, 2.0)
    assert Jf.shape == (2, 4, 2, 3)
    np.testing.assert_allclose(Jf, Jr, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(cr.jacobian(lambda s, x: f(x, s), argnum=1, mode="fwd")(2.0, x), Jr, rtol=1e-12)
    with pytest.raises(ValueError, match="mode must be"):
        cr.jacobian(f, mode="forward")


def test_differentiating_a_tangent_through_a_first_order_op_names_it():
    def f(leaves):
        t = cr.NodeTable(2)
        t.write(0, leaves)
        return t.read() * 2.0
    x = cr.tensor(RNG.standard_normal((2, 3)), requires_grad=True, dtype="float64")
    with pytest.raises(RuntimeError, match="jvp: op 'table_write' has a first-order-only rule"):
        cr.jvp(f, (x,), (np.ones((2, 3)),))
