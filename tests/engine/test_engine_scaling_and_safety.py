"""Issue 14, engine side: no quadratic cliffs in backward (stack over n inputs, one leaf with n
consumers), the version counter (a tensor modified in place after the forward pass is detected), and
detect_anomaly blaming a user's hook, not the op before it.

Costs are checked without a clock: the number of Python-level calls the backward pass makes
(``sys.setprofile`` events, deterministic) must grow linearly with n."""
import sys

import numpy as np
import pytest

import chainrule as cr


def _calls_during(fn):
    n = [0]

    def prof(frame, event, arg):
        if event in ("call", "c_call"):
            n[0] += 1
    sys.setprofile(prof)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return n[0]


def _stack_backward_calls(n):
    xs = [cr.tensor(np.ones(3), requires_grad=True) for _ in range(n)]
    y = cr.stack(xs).sum()
    return _calls_during(y.backward)


def _fanout_backward_calls(n):
    x = cr.tensor(np.ones(3), requires_grad=True)
    y = cr.stack([x * float(i) for i in range(n)]).sum()
    calls = _calls_during(y.backward)
    np.testing.assert_allclose(x.grad, np.full(3, n * (n - 1) / 2))
    return calls


@pytest.mark.parametrize("count", [_stack_backward_calls, _fanout_backward_calls])
def test_backward_work_is_linear_in_the_number_of_inputs(count):
    small, big = count(500), count(2000)
    assert big / small < 4 * 1.5, f"backward work grew {big / small:.1f}x for 4x the inputs (quadratic?)"


def test_stack_gradients_are_views_not_copies():
    g = np.arange(12.0).reshape(3, 4)
    outs = cr.ops.RULES["stack"].backward(g, (True, True, True), 3, 0)
    assert all(np.shares_memory(o, g) for o in outs)
    np.testing.assert_array_equal(outs[1], g[1])


def test_stack_of_many_inputs_gradients():
    xs = [cr.tensor(np.full(2, float(i)), requires_grad=True) for i in range(3000)]
    (cr.stack(xs, axis=1) * 2.0).sum().backward()
    assert all((x.grad == 2.0).all() for x in xs)


def _count_dense_gradients(monkeypatch):
    """A one-element list counting the dense gradients getitem's rule builds (``xp.scatter`` calls)."""
    from chainrule.ops import rules
    dense = [0]
    scatter = rules.xp.scatter

    def counting(g, idx, shape, dtype=None):
        dense[0] += 1
        return scatter(g, idx, shape, dtype)
    monkeypatch.setattr(rules.xp, "scatter", counting)
    return dense


@pytest.mark.parametrize("through_node", [False, True])
def test_many_indexing_consumers_do_not_build_a_dense_gradient_each(monkeypatch, through_node):
    """x[i] for every i of one x: each consumer's x̄ is x-sized but all zeros but one element.  The
    backward adds the consumers into x's own gradient buffer in place (getitem's ``into`` form), so
    at most two x-sized gradients are ever built (before: one per consumer, O(n·size) in all)."""
    dense = _count_dense_gradients(monkeypatch)
    rng = np.random.default_rng(0)
    n = 2000
    w = rng.standard_normal(n)
    x = cr.tensor(rng.standard_normal(n), requires_grad=True, dtype="float64")
    h = x * 1.0 if through_node else x
    s = h[0] * w[0]
    for i in range(1, n):
        s = s + h[i] * w[i]
    s.backward()
    assert dense[0] <= 2, f"{dense[0]} dense gradients of x built for {n} consumers"
    np.testing.assert_array_equal(x.grad, w)     # bit for bit: one product per element, added to 0


@pytest.mark.parametrize("through_node", [False, True])
def test_slices_of_one_value_build_one_dense_gradient(monkeypatch, through_node):
    """The per-step slices XW[:, t] of an LSTM's input projection: the first slice's dense gradient
    is owned by the pass (a leaf's, or a node's sent by an op with an in-place form), so every later
    slice adds into it -- one (N, T, K) gradient in all, not three (two scatters and their sum)."""
    dense = _count_dense_gradients(monkeypatch)
    rng = np.random.default_rng(2)
    x = cr.tensor(rng.standard_normal((3, 7, 4)), requires_grad=True, dtype="float64")
    h = x * 2.0 if through_node else x
    s = sum(cr.tanh(h[:, t]).sum() for t in range(7))
    s.backward()
    assert dense[0] == 1
    np.testing.assert_allclose(x.grad, (1 - np.tanh(2.0 * x.data if through_node else x.data) ** 2)
                               * (2.0 if through_node else 1.0), rtol=1e-12)


def test_indexing_in_place_accumulation_equals_the_dense_rule_bit_for_bit(monkeypatch):
    """The in-place form gives the same bits as the dense rule, for overlapping slices too."""
    from chainrule.ops import rules
    rng = np.random.default_rng(1)
    xv = rng.standard_normal((6, 5))

    def grad():
        x = cr.tensor(xv, requires_grad=True, dtype="float64")
        y = (cr.tanh(x[1:4]) * 3.0).sum() + (x[2] ** 2).sum() + (x[:, 1:3] * x[0, 0]).sum() + x[..., 4].sum()
        y.backward()
        return x.grad
    fast = grad()
    monkeypatch.setattr(rules.GETITEM, "into", None)
    np.testing.assert_array_equal(fast, grad())


# --------------------------------------------------------------------------- version counter
def test_leaf_modified_in_place_after_forward_is_detected():
    w = cr.tensor([1.0, 2.0], requires_grad=True, dtype="float64", name="w")
    y = (w * w).sum()
    with cr.no_grad():
        w[0] = 5.0
    with pytest.raises(RuntimeError, match=r"input 0 \(leaf tensor 'w'\) of op 'mul' was modified in place"):
        y.backward()


def test_in_place_change_of_an_unsaved_input_is_harmless_and_new_graphs_work():
    w = cr.tensor([1.0, 2.0], requires_grad=True, dtype="float64")
    y = (w + 1.0).sum()                       # add saves nothing: its gradient does not depend on w
    with cr.no_grad():
        w[1] = 3.0
    y.backward()
    np.testing.assert_array_equal(w.grad, [1.0, 1.0])
    w.grad = None
    (w * w).sum().backward()                  # recorded after the change: fine
    np.testing.assert_array_equal(w.grad, [2.0, 6.0])


def test_in_place_update_step_between_forward_and_backward_is_detected():
    w = cr.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True, dtype="float64", name="W")
    x = cr.tensor([[1.0, -1.0]], dtype="float64")
    loss = cr.tanh(x @ w).sum()
    with cr.no_grad():
        w -= 0.1                              # an update step before backward: the classic bug
    with pytest.raises(RuntimeError, match=r"input 1 \(leaf tensor 'W'\) of op 'matmul' was modified in place"):
        loss.backward()


def test_setitem_on_a_tensor_that_requires_grad_needs_no_grad():
    w = cr.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises((TypeError, RuntimeError), match="no_grad"):
        w[0] = 3.0


# --------------------------------------------------------------------------- anomaly: hooks
def test_nan_from_a_hook_is_blamed_on_the_hook():
    x = cr.tensor([1.0, 2.0], requires_grad=True, dtype="float64")
    h = x * 3.0

    def poison(g):
        return g * np.nan
    h.register_hook(poison)
    y = (h * h).sum()
    with cr.detect_anomaly():
        with pytest.raises(FloatingPointError, match=r"hook .*poison.* registered on op 'mul'.* returned NaN"):
            y.backward()


def test_nan_from_a_leaf_hook_is_blamed_on_the_hook():
    x = cr.tensor([1.0, 2.0], requires_grad=True, dtype="float64", name="x")
    x.register_hook(lambda g: g * np.inf)
    with cr.detect_anomaly():
        with pytest.raises(FloatingPointError, match=r"hook .* registered on leaf tensor 'x' returned Inf"):
            (x * x).sum().backward()
