"""NodeTable: rows written once and gathered by later levels; gradients equal those of the same
computation written with concat/take, and the work per level does not grow with the table."""
import numpy as np
import pytest

import chainrule as cr
from chainrule.ops.table import NodeTable


def _chain(values, use_table, distinct=False):
    """A 'tree' whose level h combines row h-1 and leaf h: x_h = tanh(w * (x_{h-1} + leaf_h))."""
    leaves, w = values
    n = leaves.shape[0]
    if use_table:
        t = NodeTable(2 * n - 1)
        t.write(0, leaves)
        for h in range(1, n):
            prev = 0 if h == 1 else n + h - 2
            c = t.gather(np.array([[prev, h]]), distinct=distinct)
            t.write(n + h - 1, cr.tanh(w * c.sum(axis=1)))
        return t.read()
    tab = leaves
    for h in range(1, n):
        prev = 0 if h == 1 else n + h - 2
        c = cr.take(tab, np.array([[prev, h]]))
        tab = cr.concat([tab, cr.tanh(w * c.sum(axis=1))], axis=0)
    return tab


@pytest.mark.parametrize("distinct", [False, True])
def test_table_matches_concat_take_and_gradcheck(distinct):
    rng = np.random.default_rng(0)
    leaves = cr.tensor(rng.standard_normal((6, 3)), requires_grad=True)
    w = cr.tensor(rng.standard_normal(3), requires_grad=True)
    wts = rng.standard_normal((11, 3))
    grads = []
    for use in (True, False):
        out = _chain((leaves, w), use, distinct)
        (out * wts).sum().backward()
        grads.append((out.data.copy(), leaves.grad.copy(), w.grad.copy()))
        leaves.grad = w.grad = None
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)
    assert cr.gradcheck(lambda L, w: (_chain((L, w), True, distinct) * wts).sum(), leaves, w)


def test_table_twice_with_retain_graph_and_repeated_rows():
    x = cr.tensor(np.arange(6.0).reshape(3, 2), requires_grad=True)
    t = NodeTable(4)
    t.write(0, x)
    c = t.gather(np.array([0, 0, 2]))                       # a row gathered twice: gradients sum
    t.write(3, c.sum(axis=0, keepdims=True))
    y = (t.read() * 2.0).sum()
    y.backward(retain_graph=True)
    np.testing.assert_array_equal(x.grad, [[6, 6], [2, 2], [4, 4]])
    y.backward()                                            # the gradient buffer was left zeroed
    np.testing.assert_array_equal(x.grad, [[12, 12], [4, 4], [8, 8]])


def test_table_errors():
    t = NodeTable(3)
    with pytest.raises(IndexError, match="nothing has been written|not been written"):
        t.gather(np.array([0]))
    t.write(0, np.ones((2, 2)))
    with pytest.raises(IndexError, match="row 2 has not been written"):
        t.gather(np.array([1, 2]))
    with pytest.raises(IndexError, match="out of range"):
        t.gather(np.array([5]))
    with pytest.raises(TypeError, match="integers"):
        t.gather(np.array([0.5]))
    with pytest.raises(ValueError, match="overlap"):
        t.write(1, np.ones((1, 2)))
    with pytest.raises(ValueError, match="rows of shape"):
        t.write(2, np.ones((1, 3)))
    with pytest.raises(IndexError, match="do not fit"):
        t.write(2, np.ones((2, 2)))
    with pytest.raises(RuntimeError, match="not written"):
        t.read()
    t.write(2, np.ones((1, 2)))
    t.read()
    with pytest.raises(RuntimeError, match="already read"):
        t.write(0, np.ones((1, 2)))


def test_no_grad_and_constants():
    x = cr.tensor(np.ones((2, 2)), requires_grad=True)
    with cr.no_grad():
        t = NodeTable(2)
        t.write(0, x)
        out = t.read()
    assert not out.requires_grad
    t = NodeTable(3)
    t.write(0, np.ones((2, 2)))                              # a constant block
    t.write(2, x[:1] * 3.0)
    g = t.gather(np.array([0, 2]))
    assert g.requires_grad
    g.sum().backward()
    np.testing.assert_array_equal(x.grad, [[3, 3], [0, 0]])


def test_flat_gather_joins_the_rows_and_backprops_like_reshape():
    rng = np.random.default_rng(1)
    x = cr.tensor(rng.standard_normal((4, 3)), requires_grad=True)
    idx = np.array([[0, 2], [3, 1]])
    g = rng.standard_normal((2, 6))
    got = []
    for flat in (True, False):
        x.grad = None
        t = NodeTable(4)
        t.write(0, x)
        c = t.gather(idx, distinct=True, flat=flat)
        if not flat:
            c = cr.reshape(c, (2, 6))
        assert c.shape == (2, 6)
        (c * g).sum().backward()
        got.append((c.data, x.grad))
    np.testing.assert_array_equal(got[0][0], np.concatenate([x.data[[0, 2]].reshape(1, 6), x.data[[3, 1]].reshape(1, 6)]))
    for a, b in zip(*got):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="flat=True needs an index array"):
        t.gather(np.array(0), flat=True)


def test_rows_written_out_of_order_are_still_checked():
    """Writes need not go in row order: a gather of rows written later than a gap is checked row by row."""
    t = NodeTable(5)
    t.write(3, np.ones((2, 2)))
    t.write(0, np.zeros((1, 2)))
    np.testing.assert_array_equal(t.gather(np.array([0, 3, 4])).data, [[0, 0], [1, 1], [1, 1]])
    with pytest.raises(IndexError, match="row 1 has not been written"):
        t.gather(np.array([4, 1]))
    with pytest.raises(ValueError, match="overlap"):
        t.write(2, np.ones((2, 2)))
    with pytest.raises(IndexError, match="out of range"):
        t.gather(np.array([-1]))
    t.write(1, np.ones((2, 2)))
    assert t.gather(np.array([4, 1, 2])).shape == (3, 2)


def test_level_is_gather_op_write_in_one_node_bit_for_bit():
    """table.level(start, idx, op, *inputs): the same values and gradients as gather(flat) -> op ->
    write, with one graph node a level instead of three."""
    from chainrule.ops.fused import COMPOSITION, composition
    rng = np.random.default_rng(2)
    d = 3
    leaves = cr.tensor(rng.standard_normal((4, d)), requires_grad=True)
    W, b, V = (cr.tensor(rng.standard_normal(s), requires_grad=True) for s in ((2 * d, d), (d,), (2 * d, 2 * d, d)))
    levels = [(4, np.array([[0, 1], [2, 3]])), (6, np.array([[4, 5]]))]
    wts = rng.standard_normal((7, d))
    got = []
    for fused in (True, False):
        for t in (leaves, W, b, V):
            t.grad = None
        t = NodeTable(7)
        t.write(0, leaves)
        for start, ch in levels:
            if fused:
                t.level(start, ch, COMPOSITION, W, b, V, distinct=True)
            else:
                t.write(start, composition(t.gather(ch, distinct=True, flat=True), W, b, V))
        out = t.read()
        if fused:
            assert out._node.parents[0].op.name == "table_level"
        (out * wts).sum().backward()
        got.append([out.data] + [x.grad for x in (leaves, W, b, V)])
    for a, r in zip(*got):
        np.testing.assert_array_equal(a, r)

    def f(leaves, W, b, V):
        t = NodeTable(7)
        t.write(0, leaves)
        for start, ch in levels:
            t.level(start, ch, COMPOSITION, W, b, V)
        return (t.read() * wts).sum()
    assert cr.gradcheck(f, leaves, W, b, V)


def test_level_errors():
    from chainrule.ops import rules as R
    from chainrule.ops.fused import COMPOSITION
    t = NodeTable(4)
    W, b = np.ones((4, 2)), np.zeros(2)
    with pytest.raises(IndexError, match="nothing has been written"):
        t.level(2, np.array([[0, 1]]), COMPOSITION, W, b, None)
    t.write(0, np.ones((2, 2)))
    with pytest.raises(IndexError, match="row 2 has not been written"):
        t.level(3, np.array([[0, 2]]), COMPOSITION, W, b, None)
    with pytest.raises(ValueError, match="overlap"):
        t.level(1, np.array([[0, 1]]), COMPOSITION, W, b, None)
    with pytest.raises(ValueError, match=r"idx must be \(rows, children\)"):
        t.level(2, np.array([0, 1]), COMPOSITION, W, b, None)
    with pytest.raises(ValueError, match="op 'sum' gave rows of shape"):
        t.level(2, np.array([[0, 1]]), R.SUM)
    assert not t._written[2:].any()                   # a failed level writes nothing
    t.level(2, np.array([[0, 1], [1, 0]]), COMPOSITION, W, b, None)
    assert t._written.all()


def _levels_setup(rng, d=3):
    leaves = cr.tensor(rng.standard_normal((4, d)), requires_grad=True)
    W, b, V = (cr.tensor(rng.standard_normal(s) * 0.5, requires_grad=True)
               for s in ((2 * d, d), (d,), (2 * d, 2 * d, d)))
    return leaves, W, b, V


@pytest.mark.parametrize("with_V", [True, False])
def test_levels_is_level_per_level_in_one_node(with_V):
    """table.levels(schedule, op, *w): the values of level() called per level bit for bit, the
    gradients (another order of summation: one GEMM over all levels for the weights, the weights
    stacked for the children) equal to rounding, one graph node for the whole schedule; finite
    differences agree."""
    from chainrule.ops.fused import COMPOSITION
    from chainrule.ops.table import LevelSchedule
    rng = np.random.default_rng(5)
    leaves, W, b, V = _levels_setup(rng)
    V = V if with_V else None
    sched = LevelSchedule([4, 6, 7], [np.array([[0, 1], [2, 3]]), np.array([[4, 5]])])
    assert sched.distinct and sched.rows == (4, 7) and sched.below == 3
    wts = rng.standard_normal((7, 3))
    ws = [x for x in (leaves, W, b, V) if x is not None]
    got = []
    for one in (True, False):
        for x in ws:
            x.grad = None
        t = NodeTable(7)
        t.write(0, leaves)
        if one:
            t.levels(sched, COMPOSITION, W, b, V)
        else:
            for i, ch in enumerate(sched.children):
                t.level(int(sched.starts[i]), ch, COMPOSITION, W, b, V, distinct=True)
        out = t.read()
        if one:
            node = out._node.parents[0]
            assert node.op.name == "table_levels"
            per_level = node.saved[0][5]                    # the levels' saved values: U not kept
            assert len(per_level) == 2 and all(sv[3] is None for sv in per_level)
        (out * wts).sum().backward()
        got.append([out.data, leaves.grad] + [x.grad for x in ws[1:]])
    np.testing.assert_array_equal(got[0][0], got[1][0])
    for a, r in zip(got[0][1:], got[1][1:]):
        np.testing.assert_allclose(a, r, rtol=1e-13, atol=1e-14)
        assert np.abs(a).max() > 0

    def f(leaves, W, b, V):
        t = NodeTable(7)
        t.write(0, leaves)
        t.levels(sched, COMPOSITION, W, b, V)
        return (t.read() * wts).sum()
    assert cr.gradcheck(f, leaves, W, b, V if with_V else cr.tensor(np.zeros((6, 6, 3))))


def test_levels_without_a_row_rule_sums_the_weights_per_level():
    """An op without a RowRule (matmul here: row i of c @ W is row i of c times W): its whole rule
    runs per level and the weights' gradients are summed -- the same numbers as level()."""
    from chainrule.ops import rules as R
    from chainrule.ops.table import LevelSchedule
    rng = np.random.default_rng(6)
    leaves = cr.tensor(rng.standard_normal((3, 2)), requires_grad=True)
    W = cr.tensor(rng.standard_normal((4, 2)), requires_grad=True)
    sched = LevelSchedule([3, 4, 5], [np.array([[0, 1]]), np.array([[3, 2]])])
    wts = rng.standard_normal((5, 2))

    def f(leaves, W, one=True):
        t = NodeTable(5)
        t.write(0, leaves)
        if one:
            t.levels(sched, R.MATMUL, W)
        else:
            for i, ch in enumerate(sched.children):
                t.level(3 + i, ch, R.MATMUL, W)
        return (t.read() * wts).sum()
    assert getattr(R.MATMUL, "row_rule", None) is None
    ga = cr.gradients(f(leaves, W), [leaves, W])
    gb = cr.gradients(f(leaves, W, one=False), [leaves, W])
    for a, r in zip(ga, gb):
        np.testing.assert_array_equal(a, r)
    assert cr.gradcheck(f, leaves, W)


def test_levels_backward_twice_and_zero_rows():
    """retain_graph: the table's gradient rows are zeroed after use, so a second backward adds the
    same gradients again."""
    from chainrule.ops.fused import COMPOSITION
    from chainrule.ops.table import LevelSchedule
    rng = np.random.default_rng(7)
    leaves, W, b, V = _levels_setup(rng)
    sched = LevelSchedule([4, 6, 7], [np.array([[0, 1], [2, 3]]), np.array([[4, 5]])])
    t = NodeTable(7)
    t.write(0, leaves)
    t.levels(sched, COMPOSITION, W, b, V)
    loss = (t.read() ** 2).sum()
    loss.backward(retain_graph=True)
    first = [x.grad.copy() for x in (leaves, W, b, V)]
    loss.backward()
    for x, g in zip((leaves, W, b, V), first):
        np.testing.assert_allclose(x.grad, 2 * g, rtol=1e-13)


def test_level_schedule_and_levels_errors():
    from chainrule.ops.fused import COMPOSITION
    from chainrule.ops.table import LevelSchedule
    with pytest.raises(ValueError, match="one more than the 1 levels"):
        LevelSchedule([2], [np.array([[0, 1]])])
    with pytest.raises(IndexError, match="reads row 2; a level reads rows below its own"):
        LevelSchedule([2, 4], [np.array([[0, 1], [2, 0]])])
    with pytest.raises(IndexError, match=r"level 1 \(rows 3..4\) reads row -1"):
        LevelSchedule([2, 3, 4], [np.array([[0, 1]]), np.array([[-1, 2]])])
    with pytest.raises(IndexError, match=r"level 1 \(rows 3..5\) reads row 4"):
        LevelSchedule([2, 3, 5], [np.array([[0, 1]]), np.array([[2, 0], [4, 1]])])
    with pytest.raises(ValueError, match=r"has shape \(1, 2\)"):
        LevelSchedule([2, 4], [np.array([[0, 1]])])
    with pytest.raises(ValueError, match="2-D integer array"):
        LevelSchedule([2, 3], [np.array([0.0, 1.0])])
    assert not LevelSchedule([2, 3, 4], [np.array([[0, 1]]), np.array([[2, 2]])]).distinct
    W, b = np.ones((4, 2)), np.zeros(2)
    sched = LevelSchedule([3, 4], [np.array([[0, 2]])])
    t = NodeTable(4)
    with pytest.raises(IndexError, match="nothing has been written"):
        t.levels(sched, COMPOSITION, W, b, None)
    t.write(0, np.ones((2, 2)))
    with pytest.raises(IndexError, match="reads rows up to 2"):
        t.levels(sched, COMPOSITION, W, b, None)
    with pytest.raises(TypeError, match="LevelSchedule is needed"):
        t.levels([3, 4], COMPOSITION, W, b, None)
    t.write(2, np.ones((1, 2)))
    t.levels(sched, COMPOSITION, W, b, None)
    assert t._written.all()
    with pytest.raises(ValueError, match="overlap"):
        t.levels(sched, COMPOSITION, W, b, None)
    assert NodeTable(2).levels(LevelSchedule([2], []), COMPOSITION, W, b, None) is None   # no levels: no op
