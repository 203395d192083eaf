"""Recursive neural tensor network (seed 000): message passing against finite differences, and the corrections."""

import numpy as np
import pytest

from chainrule.derivations import numerical_gradient, rel_error
from chainrule.derivations import rntn

TOL = 1e-7

TREES = {
    "one_leaf": (2, 3),
    "two_leaves_same_word": (1, (0, 2), (3, 2)),
    # depth 5, words 0, 1 and 2 repeated
    "deep_repeated": (1, (2, (0, 1), (3, (1, 2), (0, 1))), (0, (2, (1, (3, 4), (2, 5)), (0, 0)), (1, 1))),
    "left_chain": (0, (1, (2, (3, (0, (1, (2, 0), (3, 1)), (0, 2)), (1, 3)), (2, 4)), (3, 5)), (0, 0)),
}


def depth(tree):
    best, stack = 0, [(tree, 1)]
    while stack:
        t, d = stack.pop()
        best = max(best, d)
        if len(t) == 3:
            stack += [(t[1], d + 1), (t[2], d + 1)]
    return best


def test_the_deep_trees_are_deep():
    assert depth(TREES["deep_repeated"]) >= 4 and depth(TREES["left_chain"]) >= 6


CONFIGS = [
    # (d, classes, bias, leaf_activation, reg)
    (3, 4, True, False, 0.0),
    (2, 5, False, False, 0.0),    # exactly the document's model
    (3, 4, True, True, 0.1),
    (4, 2, True, False, 0.05),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"d{c[0]}K{c[1]}b{int(c[2])}f{int(c[3])}r{c[4]}")
@pytest.mark.parametrize("tree_name", sorted(TREES))
def test_gradients_match_finite_differences(tree_name, config):
    d, K, bias, leaf_f, reg = config
    tree = TREES[tree_name]
    p = rntn.init_params(d, 6, K, rng=10 * sorted(TREES).index(tree_name) + d, scale=0.5, bias=bias)
    tree = _relabel(tree, K)   # every label must fit the classifier
    g = rntn.gradients(p, tree, reg=reg, leaf_activation=leaf_f)
    assert set(g) == set(p)
    for key in p:
        num = numerical_gradient(lambda: rntn.loss(p, tree, reg=reg, leaf_activation=leaf_f), p[key])
        assert rel_error(g[key], num) <= TOL, key


def _relabel(tree, K):
    if len(tree) == 2:
        return (tree[0] % K, tree[1])
    return (tree[0] % K, _relabel(tree[1], K), _relabel(tree[2], K))


@pytest.mark.parametrize("names", [["deep_repeated"], ["deep_repeated", "one_leaf", "two_leaves_same_word"]],
                         ids=["batch_of_1", "batch_of_3"])
def test_batch_of_trees(names):
    p = rntn.init_params(3, 6, 4, rng=9)
    trees = [TREES[n] for n in names]
    g = rntn.batch_gradients(p, trees, reg=0.01)
    for key in p:
        num = numerical_gradient(lambda: rntn.batch_loss(p, trees, reg=0.01), p[key])
        assert rel_error(g[key], num) <= TOL, key


def test_compose_jacobian():
    p = rntn.init_params(3, 4, 2, rng=1)
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(3), rng.standard_normal(3)
    J = rntn.compose_jacobian(p, a, b)
    v = np.concatenate([a, b])
    cols = []
    for i in range(6):
        e = np.zeros(6)
        e[i] = 6e-6
        cols.append((rntn.compose(p, *np.split(v + e, 2)) - rntn.compose(p, *np.split(v - e, 2))) / 12e-6)
    assert rel_error(J, np.stack(cols, axis=1)) <= TOL


def test_messages():
    p = rntn.init_params(3, 6, 4, rng=2)
    g = rntn.gradients(p, TREES["deep_repeated"], return_messages=True)
    root = g["messages"][-1]
    assert not np.any(root["down"])                                 # the root has no parent
    assert np.array_equal(root["com"], root["softmax_error"])       # so its complete message is its own
    leaves = [i for i, n in enumerate(g["nodes"]) if n[1] >= 0]
    total = sum(g["messages"][i]["com"] for i in leaves if g["nodes"][i][1] == 1)
    assert np.allclose(g["L"][:, 1], total, rtol=0, atol=1e-15)    # word 1 occurs three times: summed


def test_a_very_deep_tree_needs_no_recursion():
    tree = (0, 1)
    for k in range(3000):
        tree = (k % 2, tree, (1, k % 5))
    p = rntn.init_params(2, 5, 2, rng=0)
    g = rntn.gradients(p, tree)
    assert np.all(np.isfinite(g["V"]))


def test_bad_trees_are_rejected():
    p = rntn.init_params(2, 5, 3, rng=0)
    with pytest.raises(ValueError, match="word index"):
        rntn.loss(p, (0, 7))
    with pytest.raises(ValueError, match="label"):
        rntn.loss(p, (4, (0, 1), (1, 2)))
    with pytest.raises(ValueError, match="tree node"):
        rntn.loss(p, (0, (1,), (1, 2)))


# ----------------------------------------------------------------------------- the document's tree, literally
# The document's tree: p1 = f(Gamma(b, c)), p2 = f(Gamma(a, p1)), with a classifier at every node.
WORDS = {"a": 0, "b": 1, "c": 2}
LABELS = {"a": 1, "b": 0, "c": 2, "p1": 1, "p2": 0}
DOC_TREE = (LABELS["p2"], (LABELS["a"], WORDS["a"]), (LABELS["p1"], (LABELS["b"], WORDS["b"]), (LABELS["c"], WORDS["c"])))


def doc_backward(p, variant="correct"):
    """The document's message passing on its own tree (no bias terms, as in the document).

    variant: 'correct'; 'same_jacobian' (dGamma/da used for p1 too, eq. (4) "dGamma/da = dGamma/dp1");
    'parent_softmax_error' (delta_{p1,com} built with delta_{p2,s}); 'leaf_fprime' (f'(a) applied at a leaf).
    Returns dL/dL (dense) and dL/dV.
    """
    d = p["W"].shape[0]
    L, Ws = p["L"], p["Ws"]
    a, b, c = (L[:, WORDS[k]] for k in "abc")
    p1 = np.tanh(rntn.compose(p, b, c))
    p2 = np.tanh(rntn.compose(p, a, p1))
    vec = {"a": a, "b": b, "c": c, "p1": p1, "p2": p2}
    soft = {}
    for k, x in vec.items():
        y = np.exp(Ws @ x - np.max(Ws @ x))
        y /= y.sum()
        y[LABELS[k]] -= 1.0
        soft[k] = Ws.T @ y                                   # W_s^T (y - t), the softmax error before f'
    fp = {k: 1 - x ** 2 for k, x in vec.items()}
    gL, gV = np.zeros_like(L), np.zeros_like(p["V"])
    com2 = fp["p2"] * soft["p2"]
    J2 = rntn.compose_jacobian(p, a, p1)
    down_a = J2[:, :d].T @ com2
    down_p1 = (J2[:, :d] if variant == "same_jacobian" else J2[:, d:]).T @ com2
    own = soft["p2"] if variant == "parent_softmax_error" else soft["p1"]
    com1 = fp["p1"] * (own + down_p1)
    J1 = rntn.compose_jacobian(p, b, c)
    down_b, down_c = J1[:, :d].T @ com1, J1[:, d:].T @ com1
    for k, down in (("a", down_a), ("b", down_b), ("c", down_c)):
        msg = soft[k] + down
        gL[:, WORDS[k]] += fp[k] * msg if variant == "leaf_fprime" else msg
    for com, (u, w) in ((com2, (a, p1)), (com1, (b, c))):
        v = np.concatenate([u, w])
        gV += np.einsum("i,j,k->ijk", v, v, com)
    return gL, gV


@pytest.fixture
def doc_params():
    return rntn.init_params(3, 3, 3, rng=11, scale=0.7, bias=False)


def _fd(p, key, **kw):
    return numerical_gradient(lambda: rntn.loss(p, DOC_TREE, **kw), p[key])


def test_doc_tree_correct_messages(doc_params):
    gL, gV = doc_backward(doc_params)
    assert rel_error(gL, _fd(doc_params, "L")) <= TOL
    assert rel_error(gV, _fd(doc_params, "V")) <= TOL
    g = rntn.gradients(doc_params, DOC_TREE)
    assert rel_error(g["L"], gL) <= 1e-14 and rel_error(g["V"], gV) <= 1e-14


def test_correction_children_get_different_halves_of_dGamma(doc_params):
    """(4) says dGamma/da = dGamma/dp1; they are the left and right halves of dGamma/d[a; p1]."""
    a, p1 = doc_params["L"][:, 0], np.tanh(rntn.compose(doc_params, doc_params["L"][:, 1], doc_params["L"][:, 2]))
    J = rntn.compose_jacobian(doc_params, a, p1)
    assert rel_error(J[:, :3], J[:, 3:]) > 1e-2
    gL, _ = doc_backward(doc_params, "same_jacobian")
    assert rel_error(gL, _fd(doc_params, "L")) > 1e-2


def test_correction_p1_message_uses_its_own_softmax_error(doc_params):
    """Written: delta_{p2,com} = f'(p1) delta_{p2,com} dGamma/dp1 + f'(p1) delta_{p2,s}. Correct: delta_{p1,com}, delta_{p1,s}."""
    gL, _ = doc_backward(doc_params, "parent_softmax_error")
    assert rel_error(gL, _fd(doc_params, "L")) > 1e-2


def test_correction_v_is_the_concatenation_not_the_sum(doc_params):
    """Written: v = a (+) p1, 'i.e. v^l = a^l + p1^l'; dL/dV = g_{P1,com} (b + c)(b + c)^T + ...

    With the sum, v v^T is d x d and cannot be a slice of V (2d x 2d); with the concatenation it is, and it
    matches finite differences."""
    p = doc_params
    d = p["W"].shape[0]
    b, c = p["L"][:, 1], p["L"][:, 2]
    literal_slice = np.outer(b + c, b + c)
    assert literal_slice.shape == (d, d) != p["V"][:, :, 0].shape
    _, gV = doc_backward(p)
    assert rel_error(gV, _fd(p, "V")) <= TOL
    # and the sum is not just a different layout: it is a different function of (b, c)
    v = np.concatenate([b, c])
    quad_concat = v @ p["V"][:, :, 0] @ v
    quad_sum = (b + c) @ p["V"][:d, :d, 0] @ (b + c)
    assert abs(quad_concat - quad_sum) > 1e-2


def test_leaf_fprime_depends_on_the_leaf_model(doc_params):
    """The document multiplies the leaf a's message by f'(a). Exact when leaves are f(L[:, w]); wrong for raw word vectors."""
    gL, _ = doc_backward(doc_params, "leaf_fprime")
    assert rel_error(gL, _fd(doc_params, "L")) > 1e-2
    g = rntn.gradients(doc_params, DOC_TREE, leaf_activation=True)
    assert rel_error(g["L"], _fd(doc_params, "L", leaf_activation=True)) <= TOL
