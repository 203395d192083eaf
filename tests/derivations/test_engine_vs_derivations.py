"""The engine against the hand derivations: every seed model, as chainrule defines it (the window
tagger of chainrule.models.window, the MLP of chainrule.models.mlp, seed 004's layer stack in
chainrule.models.mlp, chainrule.nn.DAGNetwork, the RNTN of chainrule.models.rntn) and mapped to the
derivation's layout by its adapter, has the gradients its derivation module computes by hand.

Both sides are exact up to rounding (no finite differences here), so the tolerance is tight:
rel_error <= 1e-7 per array, the measure the derivation tests use.
"""

import numpy as np
import pytest

import chainrule as cr
from chainrule.derivations import dag, layerwise as lw, multilabel_mlp as ml, rel_error, rntn, window
from chainrule.models import mlp as MLP, rntn as RNTN, window as WIN
from chainrule.models.mlp import layers_to_tensors, layerwise_loss
from chainrule.nn import DAGNetwork
from conftest import random_dag_spec  # (tests/ is on sys.path)

TOL = 1e-7


# ----------------------------------------------------------------------------------------- 002
@pytest.mark.parametrize("n,win,H,V,m,C", [
    (2, 3, 4, 6, None, 0.0),     # one window, eq. (7), no penalty
    (3, 5, 2, 9, None, 0.4),     # one window, penalty with the default m = 1
    (3, 1, 2, 4, 5, 0.25),       # a batch of single-word windows, eq. (1)
    (4, 5, 3, 10, 7, 1.5),       # a batch with repeated words
])
def test_window(n, win, H, V, m, C):
    rng = np.random.default_rng(n * 100 + win)
    params = window.init_params(n, win, H, V, rng)
    idx = rng.integers(0, V, size=(win,) if m is None else (m, win))
    idx.reshape(-1)[-1] = idx.reshape(-1)[0]                # a repeated word
    y = float(rng.random() < 0.5) if m is None else (rng.random(m) < 0.5).astype(float)
    single_m = 20 if (m is None and C) else None            # eq. (7): C/2m with m the training-set size
    want = window.gradients(params, idx, y, C, single_m)
    model = WIN.from_derivation(params, win)
    model.hidden.register_forward_hook(lambda mod, inputs, out: setattr(inputs[0], "name", "x"))
    words, labels = idx.reshape(-1, win), np.atleast_1d(y)
    with cr.record_deltas() as d:
        L, _ = WIN.make_loss_fn(C, single_m or (1 if m is None else m))(model, (words, None, labels))
        got = WIN.derivation_grads(model, L)
    assert L.item() == pytest.approx(window.loss(params, idx, y, C, single_m), rel=1e-13)
    for k in ("L", "W", "b1", "U", "b2"):
        assert rel_error(got[k], np.asarray(want[k])) <= TOL, k
    assert rel_error(d["x"].reshape(want["x"].shape), want["x"]) <= TOL      # eq. (29), dJ/dx


# ----------------------------------------------------------------------------------------- 003
@pytest.mark.parametrize("D,H,K,N,lam", [(3, 4, 2, 1, 0.0), (5, 3, 4, 6, 0.1), (2, 7, 3, 10, 1.0)])
def test_multilabel_mlp(D, H, K, N, lam):
    rng = np.random.default_rng(D + 10 * H + 100 * K)
    params = ml.init_params(D, H, K, rng)
    X = rng.standard_normal((N, D))
    Y = (rng.random((N, K)) < 0.5).astype(float)
    want = ml.gradients(params, X, Y, lam, return_signals=True)
    model = MLP.from_derivation(params)
    lin1, lin2 = [m for m in model.layers if isinstance(m, cr.nn.Linear)]
    for lin, name in ((lin1, "z2"), (lin2, "z3")):           # the document's names of the Linear outputs
        lin.register_forward_hook(lambda mod, inputs, out, name=name: setattr(out, "name", name))
    with cr.record_deltas() as d:
        L = MLP.multilabel_loss(model, X, Y, lam)
        got = MLP.derivation_grads(model, L)
    assert L.item() == pytest.approx(ml.loss(params, X, Y, lam), rel=1e-13)
    for k in ("W1", "b1", "W2", "b2"):
        assert rel_error(got[k], want[k]) <= TOL, k
    # the document's per-input signals: δ(3) = ∂J̃ⁱ/∂z(3), δ(2) = ∂J̃ⁱ/∂z(2) (the engine's are of the mean)
    assert rel_error(d["z3"] * N, want["delta3"]) <= TOL
    assert rel_error(d["z2"] * N, want["delta2"]) <= TOL


# ----------------------------------------------------------------------------------------- 004
NETS = {
    "tanh_sigmoid_l2": ([3, 4, 2], ["tanh", "sigmoid"], "l2", {}),
    "deep_softmax_ce": ([4, 5, 5, 5, 5, 3], ["tanh", "sigmoid", "relu", "leaky_relu", "softmax"], "ce", {}),
    "maxout_bce": ([4, 3, 5, 2], ["maxout", "tanh", "sigmoid"], "bce", {"pieces": [3, None, None]}),
    "relu_identity_l2": ([5, 6, 3], ["relu", "identity"], "l2", {}),
    "leaky_softmax_ce": ([3, 6, 4], ["leaky_relu", "softmax"], "ce", {"alphas": [0.2, None]}),
}


def _targets(div, shape, rng):
    if div == "l2":
        return rng.standard_normal(shape)
    if div == "bce":
        return (rng.random(shape) < 0.5).astype(float)
    d = np.zeros(shape)
    cls = rng.integers(0, shape[0], size=shape[1:] or None)
    if d.ndim == 1:
        d[cls] = 1.0
    else:
        d[cls, np.arange(shape[1])] = 1.0
    return d


@pytest.mark.parametrize("batch", [None, 1, 4])
@pytest.mark.parametrize("name", sorted(NETS))
def test_layerwise(name, batch):
    sizes, acts, div, extra = NETS[name]
    rng = np.random.default_rng(len(name) + (batch or 0))
    layers = lw.init_layers(sizes, acts, rng, scale=0.8, **extra)
    x = rng.standard_normal((sizes[0],) if batch is None else (sizes[0], batch))
    d = _targets(div, (sizes[-1],) if batch is None else (sizes[-1], batch), rng)
    want = lw.gradients(layers, x, d, div)
    tl = layers_to_tensors(layers)
    with cr.record_deltas() as deltas:
        L = layerwise_loss(tl, x, d, div)
        L.backward()
    assert L.item() == pytest.approx(lw.loss(layers, x, d, div), rel=1e-12)
    for k, layer in enumerate(tl):
        assert rel_error(np.asarray(layer["W"].grad), want["W"][k]) <= TOL, ("W", k)
        assert rel_error(np.asarray(layer["b"].grad), want["b"][k]) <= TOL, ("b", k)
        assert rel_error(deltas[f"z{k + 1}"], want["grad_z"][k]) <= TOL, ("grad_z", k)


def test_layerwise_randomised_leaky_relu_slopes():
    rng = np.random.default_rng(3)
    alpha = lw.rrelu_slopes((5, 2), rng=rng)
    layers = lw.init_layers([3, 5, 2], ["leaky_relu", "sigmoid"], rng, alphas=[alpha, None])
    x, d = rng.standard_normal((3, 2)), _targets("bce", (2, 2), rng)
    want = lw.gradients(layers, x, d, "bce")
    tl = layers_to_tensors(layers)
    layerwise_loss(tl, x, d, "bce").backward()
    for k, layer in enumerate(tl):
        assert rel_error(np.asarray(layer["W"].grad), want["W"][k]) <= TOL


# ----------------------------------------------------------------------------------------- 001
def random_spec(seed, n_inputs=3, n_hidden=6, n_outputs=1):
    return random_dag_spec(seed, n_inputs, n_hidden, n_outputs)


@pytest.mark.parametrize("seed,n_inputs,n_hidden,n_outputs,N", [
    (0, 3, 6, 1, 1), (1, 2, 8, 2, 4), (2, 4, 12, 1, 3), (3, 1, 5, 2, 2), (4, 3, 20, 3, 5),
])
def test_dag(seed, n_inputs, n_hidden, n_outputs, N):
    spec = random_spec(seed, n_inputs, n_hidden, n_outputs)
    rng = np.random.default_rng(50 + seed)
    X = rng.standard_normal((N, n_inputs))
    Y = rng.standard_normal((N, n_outputs))
    want = [np.zeros_like(np.atleast_1d(e["weight"]), dtype=float) for e in spec["edges"]]
    loss = 0.0
    for i in range(N):
        for j, ge in enumerate(dag.gradients(spec, X[i], Y[i])["edges"]):
            want[j] = want[j] + ge
        loss += dag.loss(spec, X[i], Y[i])
    net = DAGNetwork(spec)
    ws = net.edge_weights()
    L = net.loss(X if N > 1 else X[0], Y if N > 1 else Y[0], reduction="sum")
    L.backward()
    assert L.item() == pytest.approx(loss, rel=1e-12)
    for w, g in zip(ws, want):
        gw = np.zeros(w.shape) if w.grad is None else w.grad     # an edge into a node that reaches no output
        assert rel_error(np.atleast_1d(gw), np.atleast_1d(g)) <= TOL, w.name


@pytest.mark.parametrize("d,h,n", [(3, 4, 2), (1, 1, 1), (2, 5, 3)])
def test_dag_part_b_closed_forms(d, h, n):
    """Part (b): ∇W1, ∇W2 of ½(σ_s(a)·a − y)² with a = W2 σ(W1 x), against the engine's smax."""
    rng = np.random.default_rng(d + h + n)
    W1, W2, x, y = rng.standard_normal((h, d)), rng.standard_normal((n, h)), rng.standard_normal(d), 0.3
    want = dag.two_layer_gradients(W1, W2, x, y)
    t1 = cr.tensor(W1, requires_grad=True)
    t2 = cr.tensor(W2, requires_grad=True)
    yhat = cr.smax(t2 @ cr.sigmoid(t1 @ x))
    ((yhat - y) * (yhat - y) * 0.5).backward()
    assert rel_error(t1.grad, want["W1"]) <= TOL
    assert rel_error(t2.grad, want["W2"]) <= TOL


# ----------------------------------------------------------------------------------------- 000
TREES = [
    (2, 3),
    (1, (0, 2), (3, 2)),
    (1, (2, (0, 1), (3, (1, 2), (0, 1))), (0, (2, (1, (3, 4), (2, 5)), (0, 0)), (1, 1))),
    (0, (1, (2, (3, (0, (1, (2, 0), (3, 1)), (0, 2)), (1, 3)), (2, 4)), (3, 5)), (0, 0)),
]


@pytest.mark.parametrize("d,classes,bias,leaf_activation,reg", [
    (3, 4, True, False, 0.0), (2, 5, False, False, 0.0), (3, 4, True, True, 0.1), (4, 4, True, False, 0.05),
])
@pytest.mark.parametrize("t", range(len(TREES)))
def test_rntn(d, classes, bias, leaf_activation, reg, t):
    tree = TREES[t]
    rng = np.random.default_rng(d * 10 + classes + t)
    params = rntn.init_params(d, 6, classes, rng, bias=bias)
    want = rntn.gradients(params, tree, reg, leaf_activation)
    model = RNTN.from_derivation(params, leaf_tanh=leaf_activation)
    L = RNTN.derivation_loss(model, [tree], reg)
    got = RNTN.derivation_grads(model, L, keys=params)
    assert L.item() == pytest.approx(rntn.loss(params, tree, reg, leaf_activation), rel=1e-12)
    for k in params:
        assert rel_error(got[k], want[k]) <= TOL, k


def test_rntn_deep_tree_needs_no_recursion():
    depth = 400
    tree = (0, 1)
    for k in range(depth):
        tree = (k % 3, tree, (1, k % 5))
    rng = np.random.default_rng(0)
    params = rntn.init_params(2, 5, 3, rng, scale=0.2)
    model = RNTN.from_derivation(params)
    got = RNTN.derivation_grads(model, RNTN.derivation_loss(model, [tree]), keys=params)
    want = rntn.gradients(params, tree)
    for k in params:
        assert rel_error(got[k], want[k]) <= TOL, k
