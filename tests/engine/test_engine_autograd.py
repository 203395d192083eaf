"""The graph and the backward pass: the distributed chain rule (shared subexpressions), graph freeing,
gradient accumulation and ownership, no_grad and the needs-gradient mask, hooks, recorded δ's,
anomaly detection, a million-op chain, and the functional cr.grad / cr.value_and_grad."""
import gc
import os

import numpy as np
import pytest

import chainrule as cr
from chainrule.autograd import Node
from chainrule.ops import rules as R

RNG = np.random.default_rng(7)


def T(a, rg=True, name=None):
    return cr.tensor(np.asarray(a, dtype=np.float64), requires_grad=rg, name=name)


# --------------------------------------------------------------------------- the chain rule on DAGs
def test_shared_subexpression_b_is_a_plus_a():
    a = T([1.0, -2.0, 0.5])
    b = a + a
    c = b * b                       # c = 4a², dc/da = 8a
    c.sum().backward()
    np.testing.assert_allclose(a.grad, 8 * a.data)


def test_value_used_by_many_consumers():
    a = T(RNG.standard_normal(4))
    h = a * 2.0
    outs = [h * float(k) for k in range(1, 51)]          # 50 consumers of h
    total = outs[0]
    for o in outs[1:]:
        total = total + o
    total.sum().backward()
    np.testing.assert_allclose(a.grad, np.full(4, 2.0 * sum(range(1, 51))))
    # a diamond: x -> (sin-like branches) -> recombined
    x = T(RNG.standard_normal(3))
    u = cr.tanh(x)
    v = u * x
    w = u + v * u                                          # u used three times, x twice
    w.sum().backward()
    t = np.tanh(x.data)
    dt = 1 - t ** 2
    # w = t + x t², dw/dx = dt + t² + 2 x t dt
    np.testing.assert_allclose(x.grad, dt + t ** 2 + 2 * x.data * t * dt)


def test_same_leaf_in_both_operands_of_every_binary_op():
    a = T([0.7, 1.3])
    for f, d in [(lambda a: a * a, lambda v: 2 * v), (lambda a: a / a, lambda v: 0 * v),
                 (lambda a: a - a, lambda v: 0 * v), (lambda a: a ** a, lambda v: v ** v * (np.log(v) + 1)),
                 (lambda a: a @ a, lambda v: 2 * v)]:
        a.grad = None
        f(a).sum().backward()
        np.testing.assert_allclose(a.grad, d(a.data), atol=1e-15)


# --------------------------------------------------------------------------- freeing the graph
def test_second_backward_on_freed_graph_raises():
    a = T([1.0, 2.0])
    out = (a * a).sum()
    out.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        out.backward()
    # the freed graph keeps nothing the backward rule saved
    assert out._node.saved is None and out._node.parents is None


def test_retain_graph_allows_two_backwards_and_grads_accumulate():
    a = T([1.0, 2.0, 3.0])
    out = (cr.tanh(a) * a).sum()
    out.backward(retain_graph=True)
    first = a.grad.copy()
    out.backward(retain_graph=True)
    np.testing.assert_allclose(a.grad, 2 * first)
    out.backward()                                          # the last one may free it
    np.testing.assert_allclose(a.grad, 3 * first)
    with pytest.raises(RuntimeError, match="retain_graph"):
        out.backward()


def test_freed_intermediate_shared_with_a_later_graph_raises_clearly():
    a = T([1.0, 2.0])
    h = cr.exp(a)
    h.name = "h"
    (h * 2.0).sum().backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        (h * 3.0).sum().backward()


# --------------------------------------------------------------------------- .grad: accumulation, ownership
def test_grad_accumulates_until_reset():
    a = T([1.0, 2.0])
    for k in range(1, 4):
        (a * 3.0).sum().backward()
        np.testing.assert_allclose(a.grad, [3.0 * k] * 2)
    a.zero_grad()
    assert a.grad is None
    (a * 3.0).sum().backward()
    np.testing.assert_allclose(a.grad, [3.0, 3.0])
    a.grad = None
    (a * a).sum().backward()
    np.testing.assert_allclose(a.grad, 2 * a.data)


def test_leaf_grads_do_not_alias_each_other_or_the_seed():
    a, b = T(RNG.standard_normal(3)), T(RNG.standard_normal(3))
    z = a + b                                               # add hands the same g to both inputs
    seed = np.ones(3)
    z.backward(seed)
    a.grad[...] = 99.0
    np.testing.assert_array_equal(b.grad, np.ones(3))
    np.testing.assert_array_equal(seed, np.ones(3))
    assert not np.shares_memory(b.grad, seed)


@pytest.mark.parametrize("build", [
    lambda a: a + 0.0,
    lambda a: a - 0.0,
    lambda a: a.reshape(2, 3).reshape(6),
    lambda a: a.reshape(2, 3).T,
    lambda a: cr.concat([a, a * 1.0])[:6],
    lambda a: cr.stack([a])[0],
    lambda a: cr.einsum("i->i", a),
    lambda a: a[::1],
    lambda a: +a + a * 0.0,
])
def test_grad_never_aliases_seed(build):
    a = T(RNG.standard_normal(6))
    z = build(a)
    seed = RNG.standard_normal(z.shape)
    keep = seed.copy()
    z.backward(seed)
    assert not np.shares_memory(a.grad, seed)
    a.grad *= 0                                             # an in-place update (an optimizer, clipping)
    np.testing.assert_array_equal(seed, keep)
    assert a.grad.flags.writeable


def test_leaf_backward_seed_is_copied():
    a = T([1.0, 2.0])
    seed = np.array([5.0, 6.0])
    a.backward(seed)
    a.grad[0] = 0.0
    np.testing.assert_array_equal(seed, [5.0, 6.0])


def test_sparse_grad_does_not_alias_the_seed():
    W = T(RNG.standard_normal((5, 3)))
    e = cr.take(W, np.array([0, 2, 2]), sparse=True)
    seed = np.ones((3, 3))
    e.backward(seed)
    assert isinstance(W.grad, cr.RowSparseGrad)
    assert not np.shares_memory(W.grad.values, seed)
    W.grad.values *= 0.5                                    # e.g. a sparse optimizer scaling in place
    np.testing.assert_array_equal(seed, np.ones((3, 3)))


def test_a_rule_returning_one_fresh_array_for_two_inputs_is_not_added_into():
    """add_grad's ownership rule: an array a rule returns twice belongs to nobody alone, so a later
    contribution to one input must not be added into it in place (it would reach the other input)."""
    def fwd(x, y):
        return x + y, ()

    def bwd(g, needs):
        h = g * 1.0                                         # one fresh array, for both inputs
        return (h, h)
    both = cr.primitive("test_same_fresh_twice", fwd, bwd)
    try:
        a, b = T(RNG.standard_normal(3)), T(RNG.standard_normal(3))
        z = (a * 2.0 + both(a, b)).sum()                    # a's second contribution comes later
        z.backward()
        np.testing.assert_array_equal(a.grad, np.full(3, 3.0))
        np.testing.assert_array_equal(b.grad, np.ones(3))
        assert not np.shares_memory(a.grad, b.grad)
        u = T(RNG.standard_normal(3))                       # the same through an intermediate node
        h = u * 1.0
        z = (h * 2.0 + both(h, u)).sum()
        z.backward()
        np.testing.assert_array_equal(u.grad, np.full(3, 4.0))
    finally:
        R.RULES.pop("test_same_fresh_twice")


def test_accumulation_into_a_node_with_many_consumers_matches_the_sum():
    """A node's gradients from many consumers are summed (the second into a new array the pass owns,
    the later ones into it in place): the result is the plain sum in consumer order, bit for bit,
    and nothing the user holds is modified."""
    x = T(RNG.standard_normal((4, 3)))
    h = x * 1.5
    parts = [h * float(k) for k in range(1, 5)]
    seed = RNG.standard_normal((4, 3))
    keep = seed.copy()
    sum(parts[1:], parts[0]).backward(seed)
    gh = seed * 4.0                                         # reverse construction order: last consumer first
    for k in (3.0, 2.0, 1.0):
        gh = gh + seed * k
    np.testing.assert_array_equal(x.grad, gh * 1.5)
    np.testing.assert_array_equal(seed, keep)


def test_grad_of_sum_is_writeable_and_owned():
    a = T(RNG.standard_normal((2, 3)))
    a.sum().backward()                                       # sum's rule returns a broadcast view
    assert a.grad.flags.writeable and a.grad.base is None
    a.grad += 1.0
    np.testing.assert_array_equal(a.grad, np.full((2, 3), 2.0))


# --------------------------------------------------------------------------- no_grad and the needs mask
def test_no_grad_builds_no_graph():
    a = T([1.0, 2.0])
    with cr.no_grad():
        assert not cr.is_grad_enabled()
        b = cr.tanh(a) * 2.0 + a
        assert b.requires_grad is False and b._node is None and b.is_leaf
        with cr.enable_grad():
            c = a * 2.0
            assert c.requires_grad
        d = c * 3.0
        assert not d.requires_grad
    assert cr.is_grad_enabled()
    with pytest.raises(RuntimeError, match="does not require grad"):
        b.sum().backward()


def test_no_grad_restores_state_after_exception():
    with pytest.raises(KeyError):
        with cr.no_grad():
            raise KeyError
    assert cr.is_grad_enabled()


def test_only_wanted_gradients_are_computed(monkeypatch):
    seen = []
    orig = R.MUL.backward

    def spy(g, n, *s):                     # the rule's calling convention: backward(g, needs, *saved)
        seen.append(tuple(n))
        out = orig(g, n, *s)
        assert (out[0] is None) == (not n[0]) and (out[1] is None) == (not n[1])
        return out
    monkeypatch.setattr(R.MUL, "backward", spy)
    x = T([1.0, 2.0])
    c = T([3.0, 4.0], rg=False)                               # a constant tensor
    (x * c).sum().backward()
    (c * x).sum().backward()
    assert seen == [(True, False), (False, True)]
    assert c.grad is None
    np.testing.assert_allclose(x.grad, [6.0, 8.0])
    node = (x * c)._node
    assert node.parents[1] is None and node.needs == (True, False)
    # nothing that does not require grad records a node at all
    assert (c * c)._node is None and not (c * 2.0).requires_grad


def test_constant_operand_branch_not_taken_for_matmul(monkeypatch):
    calls = []
    orig = R.MATMUL.backward
    monkeypatch.setattr(R.MATMUL, "backward", lambda g, n, *s: calls.append(n) or orig(g, n, *s))
    W = T(RNG.standard_normal((3, 2)))
    x = RNG.standard_normal((4, 3))
    out = cr.tensor(x) @ W
    out.sum().backward()
    assert calls == [(False, True)]
    assert W.grad.shape == (3, 2)


def test_requires_grad_flag_and_detach():
    a = T([1.0, 2.0], rg=False)
    assert not (a * 2.0).requires_grad
    a.requires_grad_()
    assert (a * 2.0).requires_grad
    d = (a * 2.0).detach()
    assert d.is_leaf and not d.requires_grad
    with pytest.raises(RuntimeError, match="detach"):
        (a * 2.0).requires_grad_(False)


# --------------------------------------------------------------------------- seeds and error messages
def test_backward_on_non_scalar_without_seed():
    a = T([1.0, 2.0])
    with pytest.raises(RuntimeError, match=r"seed gradient is required.*\(2,\)"):
        (a * 2.0).backward()
    (a * 2.0).backward(np.array([1.0, 1.0]))
    np.testing.assert_allclose(a.grad, [2.0, 2.0])
    # one-element non-0-d outputs need no seed
    a.grad = None
    (a[:1] * 3.0).backward()
    np.testing.assert_allclose(a.grad, [3.0, 0.0])


def test_seed_of_wrong_shape_raises_value_error():
    a = T([1.0, 2.0])
    with pytest.raises(ValueError, match=r"seed.*\(3,\).*\(2,\)"):
        (a * 2.0).backward(np.ones(3))
    with pytest.raises(ValueError):
        (a * 2.0).backward(np.ones((2, 1)))
    with pytest.raises(ValueError):
        a.sum().backward(np.ones(1))


def test_seed_as_tensor():
    a = T([1.0, 2.0])
    (a * 2.0).backward(cr.tensor([1.0, -1.0]))
    np.testing.assert_allclose(a.grad, [2.0, -2.0])
    assert a.grad.dtype == np.float64


# --------------------------------------------------------------------------- hooks
def test_hook_on_leaf_sees_and_can_replace_gradient():
    a = T([1.0, 2.0])
    got = []
    h = a.register_hook(lambda g: got.append(g.copy()))
    (a * 3.0).sum().backward()
    np.testing.assert_allclose(got[0], [3.0, 3.0])
    np.testing.assert_allclose(a.grad, [3.0, 3.0])
    h.remove()
    h2 = a.register_hook(lambda g: g * 2)
    a.grad = None
    (a * 3.0).sum().backward()
    np.testing.assert_allclose(a.grad, [6.0, 6.0])
    assert len(got) == 1                                      # the removed hook did not run again
    h2.remove()
    h2.remove()                                               # removing twice is harmless
    a.grad = None
    (a * 3.0).sum().backward()
    np.testing.assert_allclose(a.grad, [3.0, 3.0])


def test_hook_on_intermediate_changes_downstream_gradients():
    a = T([1.0, -2.0])
    h = a * a
    seen = []
    h.register_hook(lambda g: seen.append(g.copy()))
    handle = h.register_hook(lambda g: g * 2)                  # doubles the gradient of h
    out = (h * 5.0).sum()
    out.backward(retain_graph=True)
    np.testing.assert_allclose(seen[0], [5.0, 5.0])
    np.testing.assert_allclose(a.grad, 2 * 5.0 * 2 * a.data)   # doubled on its way down
    handle.remove()
    a.grad = None
    out.backward()
    np.testing.assert_allclose(a.grad, 5.0 * 2 * a.data)


def test_hook_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="register_hook"):
        T([1.0], rg=False).register_hook(lambda g: g)


# --------------------------------------------------------------------------- recorded δ's
def test_record_deltas_by_tensor_and_name_match_gradients():
    x = T(RNG.standard_normal(3))
    h = cr.tanh(x * 2.0)
    h.name = "h"
    out = (cr.sigmoid(h) * h).sum()
    expect, = cr.gradients(out, [h], retain_graph=True)
    with cr.record_deltas() as d:
        out.backward()
    np.testing.assert_allclose(d[h], expect)
    np.testing.assert_allclose(d["h"], expect)
    assert "h" in d.names() and h in d
    np.testing.assert_allclose(d[x], x.grad)
    with pytest.raises(KeyError, match="named"):
        d["nope"]
    with pytest.raises(KeyError):
        d[T([1.0])]
    assert d.items()[0][0] == "sum" and len(d) >= 5
    # outside the block nothing is recorded
    y = (x * 1.0).sum()
    y.backward()
    assert y not in d


def test_record_deltas_two_layer_tanh_network_by_hand():
    n_in, n_h, n_out = 4, 3, 2
    x = RNG.standard_normal(n_in)
    t = RNG.standard_normal(n_out)
    W1 = T(RNG.standard_normal((n_h, n_in)), name="W1")
    b1 = T(RNG.standard_normal(n_h), name="b1")
    W2 = T(RNG.standard_normal((n_out, n_h)), name="W2")
    b2 = T(RNG.standard_normal(n_out), name="b2")
    a1 = W1 @ x + b1
    a1.name = "a1"
    h1 = cr.tanh(a1)
    h1.name = "h1"
    y = W2 @ h1 + b2
    y.name = "y"
    loss = 0.5 * ((y - t) ** 2).sum()
    with cr.record_deltas() as d:
        loss.backward()
    # the hand computation of the lecture notes: δ_y = y − t, δ_h = W2ᵀ δ_y, δ_a = δ_h ⊙ (1 − h²)
    hh = np.tanh(W1.data @ x + b1.data)
    yy = W2.data @ hh + b2.data
    dy = yy - t
    dh = W2.data.T @ dy
    da = dh * (1 - hh ** 2)
    np.testing.assert_allclose(d["y"], dy, rtol=1e-12)
    np.testing.assert_allclose(d["h1"], dh, rtol=1e-12)
    np.testing.assert_allclose(d["a1"], da, rtol=1e-12)
    np.testing.assert_allclose(d[a1], da, rtol=1e-12)
    np.testing.assert_allclose(d["W2"], np.outer(dy, hh), rtol=1e-12)
    np.testing.assert_allclose(d["W1"], np.outer(da, x), rtol=1e-12)
    np.testing.assert_allclose(d["b1"], da, rtol=1e-12)
    np.testing.assert_allclose(W1.grad, np.outer(da, x), rtol=1e-12)


def test_record_deltas_entries_are_copies():
    a = T([1.0, 2.0])
    h = a + 0.0
    h.name = "h"
    with cr.record_deltas() as d:
        h.backward(np.array([1.0, 1.0]))
    a.grad[...] = 7.0
    np.testing.assert_array_equal(d["h"], [1.0, 1.0])


# --------------------------------------------------------------------------- anomaly detection
def test_detect_anomaly_log_of_zero_names_op_and_tensor():
    x = T([0.0, 2.0])
    with np.errstate(divide="ignore"):
        y = cr.log(x)
    y.name = "logx"
    with cr.detect_anomaly():
        with pytest.raises(FloatingPointError, match=r"'log'.*'logx'"), np.errstate(divide="ignore"):
            y.sum().backward()


def test_detect_anomaly_log_of_negative_names_log():
    x = T([-1.0, 2.0], name="x")
    with cr.detect_anomaly(), np.errstate(invalid="ignore"):
        y = cr.log(x)
        y.name = "logx"
        loss = (y * y).sum()                  # the NaN gradient first appears in mul's rule
        with pytest.raises(FloatingPointError) as ei:
            loss.backward()
    assert "'log'" in str(ei.value) and "'logx'" in str(ei.value)
    # and an unnamed log is still named by its op
    with cr.detect_anomaly(), np.errstate(invalid="ignore"):
        loss = cr.log(T([-3.0])).sum()
        with pytest.raises(FloatingPointError, match="'log'"):
            loss.backward()


def test_detect_anomaly_no_false_alarm_on_minus_inf_masks():
    x = T(RNG.standard_normal((2, 4)))
    mask = np.where(np.tril(np.ones((2, 4))) > 0, 0.0, -np.inf)     # -inf came in: not an op's doing
    with cr.detect_anomaly():
        p = cr.softmax(x + mask, axis=-1)
        (p * RNG.standard_normal(p.shape)).sum().backward()
        assert np.all(np.isfinite(x.grad))
        np.testing.assert_array_equal(x.grad[0, 1:], 0.0)
        # but an op that overflows on finite inputs is named
        big = T([800.0])
        with np.errstate(over="ignore"):
            e = cr.exp(big)
        with np.errstate(invalid="ignore"):
            loss = (e * 0.0).sum()                     # inf * 0 = NaN: mul's input was inf already
        with pytest.raises(FloatingPointError, match="'exp'.*Inf.*forward"):
            loss.backward()
    assert not cr.autograd.STATE.anomaly


def test_without_detect_anomaly_nan_passes_silently():
    x = T([0.0, 2.0])
    with np.errstate(divide="ignore"):
        cr.log(x).sum().backward()
    assert np.isinf(x.grad[0])
    assert not cr.autograd.STATE.anomaly


# --------------------------------------------------------------------------- a million ops
def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def _live_nodes():
    return sum(1 for o in gc.get_objects() if type(o) is Node)


N_CHAIN = 1_000_000


@pytest.mark.slow
def test_million_op_chain_backprops_and_frees():
    gc.collect()
    nodes0 = _live_nodes()
    rss0 = _rss_mb()
    x = T([0.5])
    y = x
    for _ in range(N_CHAIN):
        y = y * 0.999999                  # mul saves both operands: ~1M small arrays held alive
    rss_peak = _rss_mb()
    y.backward()                          # no RecursionError: the backward loop is iterative
    np.testing.assert_allclose(x.grad, [0.999999 ** N_CHAIN], rtol=1e-9)
    del y
    gc.collect()
    rss1 = _rss_mb()
    assert _live_nodes() <= nodes0 + 10
    grown = rss_peak - rss0
    assert grown > 100                    # the graph really was big...
    assert rss1 - rss0 < 0.35 * grown     # ...and (most of) the memory came back


@pytest.mark.slow
def test_million_op_chain_dropped_without_backward():
    x = T([0.5])
    y = x
    for _ in range(N_CHAIN):
        y = cr.tanh(y)
    nodes = _live_nodes()
    assert nodes >= N_CHAIN
    del y                                 # deallocating a million-deep chain must not crash the stack
    gc.collect()
    assert _live_nodes() < nodes - N_CHAIN + 10


# --------------------------------------------------------------------------- cr.gradients, cr.grad, cr.value_and_grad
def test_gradients_intermediates_and_unrelated_inputs():
    a = T([1.0, 2.0])
    b = T([3.0], rg=True)
    h = a * a
    out = (h * 3.0).sum()
    ga, gh, gb = cr.gradients(out, [a, h, b])
    np.testing.assert_allclose(ga, 6 * a.data)
    np.testing.assert_allclose(gh, [3.0, 3.0])
    np.testing.assert_array_equal(gb, [0.0])                  # does not influence out
    assert a.grad is None and b.grad is None
    single = cr.gradients((a * 2.0).sum(), a)
    np.testing.assert_allclose(single, [2.0, 2.0])


def test_gradients_results_do_not_alias_each_other():
    a = T(2.0)
    h1, h2 = a * 2.0, a * 3.0
    g1, g2 = cr.gradients(h1 + h2, [h1, h2])                   # add gives both the same array
    g1[...] = 5.0
    assert g2 == 1.0
    ga, gb = cr.grad(lambda a, b: a + b, argnums=(0, 1))(1.0, 2.0)
    ga[...] = 5.0
    assert gb == 1.0
    seed = np.array([1.0, 1.0])
    x = T([1.0, 2.0])
    y = x * 2.0
    gy, = cr.gradients(y, [y], grad_output=seed)
    gy[...] = 0.0
    np.testing.assert_array_equal(seed, [1.0, 1.0])


def test_grad_and_value_and_grad():
    def f(x, y):
        return (cr.tanh(x) * y).sum() + (y ** 2).sum()
    x = RNG.standard_normal(3)
    y = RNG.standard_normal(3)
    gx = cr.grad(f)(x, y)
    np.testing.assert_allclose(gx, (1 - np.tanh(x) ** 2) * y)
    gy = cr.grad(f, argnums=1)(x, y)
    np.testing.assert_allclose(gy, np.tanh(x) + 2 * y)
    gx2, gy2 = cr.grad(f, argnums=(0, 1))(x, y)
    np.testing.assert_allclose(gx2, gx)
    np.testing.assert_allclose(gy2, gy)
    v, (gx3, gy3) = cr.value_and_grad(f, argnums=(0, 1))(x, y)
    np.testing.assert_allclose(v, np.sum(np.tanh(x) * y) + np.sum(y ** 2))
    assert isinstance(v, float)
    np.testing.assert_allclose(gx3, gx)
    v1, g1 = cr.value_and_grad(f)(x, y)
    np.testing.assert_allclose(g1, gx)
    # tensors and python scalars are accepted; ints become floats
    assert cr.grad(lambda s: s * s)(3) == 6.0
    np.testing.assert_allclose(cr.grad(f)(cr.tensor(x), y), gx)
    assert "grad_f" == cr.grad(f).__name__
    # a function that does not depend on its argument has zero gradient
    np.testing.assert_array_equal(cr.grad(lambda x: cr.tensor(1.0) * 2.0)(x), np.zeros(3))
    with pytest.raises(TypeError, match="scalar"):
        cr.grad(lambda x: x * 2.0)(x)


def test_grad_does_not_touch_dot_grad_of_anything():
    W = T(RNG.standard_normal((3, 2)))               # a "parameter" captured in a closure
    W.grad = np.full((3, 2), 42.0)
    b = T(RNG.standard_normal(2))                     # another, with no grad yet
    x_t = T(RNG.standard_normal(3))                   # the argument, passed as a tensor

    def loss(x):
        return cr.tanh(x @ W + b).sum()
    g = cr.grad(loss)(x_t)
    np.testing.assert_allclose(g, W.data @ (1 - np.tanh(x_t.data @ W.data + b.data) ** 2))
    np.testing.assert_array_equal(W.grad, np.full((3, 2), 42.0))
    assert b.grad is None and x_t.grad is None
    v, g2 = cr.value_and_grad(loss)(x_t)
    np.testing.assert_array_equal(W.grad, np.full((3, 2), 42.0))
    assert b.grad is None and x_t.grad is None
    # even when the closure's parameter is the thing we differentiate by argument
    gW = cr.grad(lambda Wa: cr.tanh(x_t @ Wa + b).sum())(W)
    assert gW.shape == (3, 2)
    np.testing.assert_array_equal(W.grad, np.full((3, 2), 42.0))
    assert b.grad is None
    # and it works inside no_grad (it enables grad itself)
    with cr.no_grad():
        np.testing.assert_allclose(cr.grad(loss)(x_t), g)
