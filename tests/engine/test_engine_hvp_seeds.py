"""Hessian-vector products on the seed models (issue 11's acceptance): ``cr.hvp`` / a second backward
pass agree with central finite differences of the engine's own gradient (float64, rtol 1e-6) on seed
003's multi-label MLP, seed 002's window model (dense embedding), seed 000's RNTN on real SST trees
shipped in the package, and an LSTM -- each model as chainrule.models defines it; ``cr.hessian`` of seed 003's loss agrees with the Hessian got by
differentiating the closed-form gradient of ``chainrule.derivations`` numerically."""
import numpy as np
import pytest

import chainrule as cr
from chainrule.data import sst
from chainrule.derivations import multilabel_mlp, rntn, window
from chainrule.models import mlp as MLP, rntn as RNTN, window as WIN


def _hvp_vs_fd(leaves, loss_fn, seed=0, eps=1e-5):
    """H v by a second backward pass (create_graph) vs (∇L(θ+εv) − ∇L(θ−εv)) / 2ε."""
    rng = np.random.default_rng(seed)
    vs = [rng.standard_normal(t.shape) for t in leaves]
    gs = cr.gradients(loss_fn(), leaves, create_graph=True)
    s = sum((g * v).sum() for g, v in zip(gs, vs))
    hv = cr.gradients(s, leaves)
    base = [t.data.copy() for t in leaves]

    def grad_at(sign):
        for t, b, v in zip(leaves, base, vs):
            t.data[...] = b + sign * eps * v
        g = cr.gradients(loss_fn(), leaves)
        for t, b in zip(leaves, base):
            t.data[...] = b
        return g
    fd = [(p - m) / (2 * eps) for p, m in zip(grad_at(1), grad_at(-1))]
    a, b = np.concatenate([h.ravel() for h in hv]), np.concatenate([f.ravel() for f in fd])
    assert np.abs(b).max() > 1e-3                     # a real second derivative, not zeros
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * np.abs(b).max())


def _digits(n=40):
    from sklearn.datasets import load_digits
    d = load_digits()
    X = d.data[:n] / 16.0
    Y = np.eye(10)[d.target[:n]]
    return X, Y


def test_hvp_seed003_multilabel_mlp_on_digits():
    X, Y = _digits()
    params = multilabel_mlp.init_params(64, 8, 10, rng=0)
    model = MLP.from_derivation(params)
    leaves = list(model.parameters())
    _hvp_vs_fd(leaves, lambda: MLP.multilabel_loss(model, X, Y, lam=0.1))
    # the function transform gives the same product (the model's forward bound to the transform's arguments)
    names = list(params)
    v = [np.random.default_rng(0).standard_normal(np.shape(params[k])) for k in names]
    hv = cr.hvp(lambda *ps: MLP.multilabel_loss(MLP.bound_to(dict(zip(names, ps))), X, Y, lam=0.1),
                tuple(params[k] for k in names), tuple(v))
    tp = {k: cr.tensor(np.array(params[k], dtype=np.float64), requires_grad=True) for k in names}
    gs = cr.gradients(MLP.multilabel_loss(MLP.bound_to(tp), X, Y, lam=0.1), list(tp.values()), create_graph=True)
    want = cr.gradients(sum((g * vi).sum() for g, vi in zip(gs, v)), list(tp.values()))
    for a, b in zip(hv, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_hvp_seed002_window_model_dense_embedding():
    rng = np.random.default_rng(2)
    params = window.init_params(n=4, window=3, hidden=5, vocab=12, rng=rng)
    model = WIN.from_derivation(params, 3)
    model.emb.sparse = False                  # a dense gradient of L (the sparse one: the test below)
    idx = rng.integers(0, 12, size=(6, 3))
    y = rng.integers(0, 2, size=6).astype(np.float64)
    loss_fn = WIN.make_loss_fn(C=0.3, m=6)
    _hvp_vs_fd(list(model.parameters()), lambda: loss_fn(model, (idx, None, y))[0])


def test_hvp_seed002_window_model_sparse_embedding_densified_under_create_graph():
    rng = np.random.default_rng(3)
    L = cr.tensor(rng.standard_normal((12, 4)), requires_grad=True)
    idx = rng.integers(0, 12, size=(5,))
    loss = lambda: (cr.tanh(cr.take(L, idx, sparse=True)) ** 2).sum()      # noqa: E731
    _hvp_vs_fd([L], loss)


def _sst_tree(k):
    """The k-th SST training tree as seed 000's nested tuples, words numbered in order of appearance."""
    t = sst.load("train")[k]
    vocab = {}
    stack, out = [(t, False)], []
    while stack:                                         # post-order without recursion
        node, done = stack.pop()
        if node.is_leaf:
            out.append((node.label, vocab.setdefault(node.word, len(vocab))))
        elif done:
            r, l_ = out.pop(), out.pop()
            out.append((node.label, l_, r))
        else:
            stack += [(node, True), (node.children[1], False), (node.children[0], False)]
    return out[0], len(vocab)


def test_hvp_seed000_rntn_on_real_sst_trees():
    for k in (0, 3):
        tree, nwords = _sst_tree(k)
        params = rntn.init_params(3, nwords, 5, np.random.default_rng(k), bias=True)
        model = RNTN.from_derivation(params)
        _hvp_vs_fd(list(model.parameters()), lambda: RNTN.derivation_loss(model, [tree], reg=0.01), seed=k)


def test_hvp_lstm():
    lstm = cr.nn.LSTM(3, 4, rng=np.random.default_rng(0), dtype=np.float64)
    head = cr.nn.Linear(4, 2, rng=np.random.default_rng(1), dtype=np.float64)
    x = np.random.default_rng(2).standard_normal((2, 5, 3))
    y = np.array([0, 1])

    def loss():
        out = lstm(x)
        h = out[0] if isinstance(out, tuple) else out
        return cr.softmax_cross_entropy(head(h[:, -1]), y)
    leaves = [p for _, p in lstm.named_parameters()] + [p for _, p in head.named_parameters()]
    _hvp_vs_fd(leaves, loss)


def test_hessian_seed003_matches_the_closed_form_gradient_differentiated():
    rng = np.random.default_rng(3)
    D, H, K, N, lam = 4, 3, 2, 6, 0.2
    params = multilabel_mlp.init_params(D, H, K, rng)
    X, Y = rng.standard_normal((N, D)), (rng.random((N, K)) > 0.5).astype(float)
    names = list(params)
    shapes = [np.shape(params[k]) for k in names]
    sizes = [int(np.prod(s)) for s in shapes]
    theta0 = np.concatenate([np.ravel(params[k]) for k in names])

    def unflat(theta, reshape):
        out, i = {}, 0
        for k, s, n in zip(names, shapes, sizes):
            out[k] = reshape(theta[i:i + n], s)
            i += n
        return out

    f = lambda th: MLP.multilabel_loss(MLP.bound_to(unflat(th, lambda a, s: a.reshape(s))), X, Y, lam)  # noqa: E731
    H_engine = cr.hessian(f)(theta0)

    def closed_grad(th):
        g = multilabel_mlp.gradients(unflat(th, lambda a, s: np.reshape(a, s)), X, Y, lam)
        return np.concatenate([np.ravel(g[k]) for k in names])
    eps = 1e-5
    H_num = np.empty((theta0.size, theta0.size))
    for j in range(theta0.size):
        e = np.zeros_like(theta0)
        e[j] = eps
        H_num[:, j] = (closed_grad(theta0 + e) - closed_grad(theta0 - e)) / (2 * eps)
    np.testing.assert_allclose(H_engine, H_engine.T, atol=1e-12)
    np.testing.assert_allclose(H_engine, H_num, rtol=1e-6, atol=1e-7)
