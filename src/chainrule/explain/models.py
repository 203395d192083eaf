"""The models ``chainrule explain`` knows by name, each on a small random float64 problem.

Every builder returns ``(loss, constants, title)``: the loss recorded under
:func:`chainrule.record_forward` with the seed documents' tensor names, the constant inputs by name
(so targets print as ``y``), and a title naming the seed.  ``problem(name, seed)`` also returns the
forward values a hand derivation starts from (see :func:`chainrule.explain.check_derivation`).

* ``mlp`` -- tanh hidden layer, softmax cross-entropy averaged over a batch (δ_z2 = (ŷ − y)/m);
* ``window`` -- seed 002's window classifier (embedding columns, tanh, sigmoid/BCE, C/2m penalty);
* ``multilabel-mlp`` -- seed 003's Alg 1 (two sigmoid layers, summed BCE / N, λ/2 ‖W‖²);
* ``layerwise`` -- seed 004's layer recursion with a softmax vector activation (columns are examples);
* ``dag`` -- seed 001's DAG of sigmoid and soft-maximum units (``derivations.dag.EXAMPLE_SPEC``);
* ``rntn`` -- seed 000's recursive neural tensor network on one tree (softmax at every node);
* ``lstm`` -- an LSTM over a short sequence, written gate by gate as in seed 004.
"""
from __future__ import annotations

import numpy as np

from .. import autograd as ag
from ..ops import functional as F
from ..tensor import Tensor

MODELS = ("mlp", "window", "multilabel-mlp", "layerwise", "dag", "rntn", "lstm")


def _p(rng, shape, name, s=0.5):
    return Tensor(s * rng.standard_normal(shape), requires_grad=True, name=name, dtype=np.float64)


def _named(t, name):
    t.name = name
    return t


def mlp(seed=0, m=4, n=5, h=6, k=3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, n))
    y = rng.integers(0, k, m)
    W1, b1, W2, b2 = _p(rng, (h, n), "W1"), _p(rng, h, "b1"), _p(rng, (k, h), "W2"), _p(rng, k, "b2")
    with ag.record_forward():
        z1 = _named(X @ W1.T + b1, "z1")
        a1 = _named(F.tanh(z1), "a1")
        z2 = _named(a1 @ W2.T + b2, "z2")
        J = F.softmax_cross_entropy(z2, y)
    return J, {"x": X, "y": y}, f"MLP: tanh hidden layer, softmax cross-entropy averaged over m = {m}"


def window(seed=0, m=3, single=False):
    """Seed 002 on a batch of m windows (eq. 1), or with ``single`` on one window (eq. 7, the
    document's per-example form, penalty C/2m with m the training-set size)."""
    from ..derivations import window as W
    from ..models.seeds import params_to_tensors, window_engine_loss
    rng = np.random.default_rng(seed)
    params = W.init_params(3, 3, 4, 7, rng)
    params["b2"] = np.array(params["b2"])
    idx = rng.integers(0, 7, size=(m, 3))
    idx[0, 2] = idx[0, 0]                                  # a word twice in one window
    y = (rng.random(m) < 0.5).astype(np.float64)
    if single:
        idx, y = idx[0], y[0:1].reshape(())
    t = params_to_tensors(params)
    with ag.record_forward():
        J = window_engine_loss(t, idx, y, C=0.3, m=m if single else None)
    what = f"one window, m = {m}" if single else f"batch m = {m}"
    return J, {"y": y, "idx": idx}, f"Seed 002: window classifier ({what}, penalty C/2m)"


def multilabel_mlp(seed=0, N=4, D=5, H=4, K=3, lam=0.1):
    from ..models.seeds import multilabel_engine_loss
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D))
    Y = (rng.random((N, K)) < 0.5).astype(np.float64)
    params = {"W1": _p(rng, (H, D), "W1"), "b1": _p(rng, H, "b1"), "W2": _p(rng, (K, H), "W2"),
              "b2": _p(rng, K, "b2")}
    with ag.record_forward():
        J = multilabel_engine_loss(params, X, Y, lam=lam)
    return J, {"X": X, "Y": Y}, f"Seed 003: Alg 1 -- two sigmoid layers, summed BCE / N (N = {N}), λ = {lam}"


def layerwise(seed=0, B=4):
    from ..models.seeds import layerwise_engine_loss
    rng = np.random.default_rng(seed)
    layers = [{"W": _p(rng, (4, 3), "W1"), "b": _p(rng, 4, "b1"), "activation": "tanh"},
              {"W": _p(rng, (4, 4), "W2"), "b": _p(rng, 4, "b2"), "activation": "relu"},
              {"W": _p(rng, (3, 4), "W3"), "b": _p(rng, 3, "b3"), "activation": "softmax"}]
    x = rng.standard_normal((3, B))
    d = np.eye(3)[:, rng.integers(0, 3, B)]
    with ag.record_forward():
        J = layerwise_engine_loss(layers, x, d, div="ce")
    return J, {"x": x, "d": d}, "Seed 004: layer-by-layer backprop, softmax vector activation, cross-entropy"


def dag(seed=0):
    import json
    from ..derivations.dag import EXAMPLE_SPEC
    from ..models.seeds import dag_engine_loss, weights_from_spec
    rng = np.random.default_rng(seed)
    spec = json.loads(json.dumps(EXAMPLE_SPEC))
    w = weights_from_spec(spec)
    x = rng.standard_normal(2)
    y = rng.random(1)
    with ag.record_forward():
        J = dag_engine_loss(spec, w, x, y)
    return J, {"y": y, "x": x.reshape(1, -1), "x1": x[0:1], "x2": x[1:2]}, "Seed 001: a DAG of sigmoid and soft-maximum units, squared loss"


TREE = (1, (0, (2, 0), (1, 1)), (3, (1, 2), (4, 3)))     # ((w0 w1) (w2 w3)) with a label per node


def rntn(seed=0, d=3, K=5, reg=0.01, tree=TREE):
    """Seed 000 per node: x_p = tanh(vᵀ V^{[1:d]} v + W v + b), v = [x_a; x_b]; a softmax classifier
    W_s x_i + b_s at every node i; cross-entropy summed over the nodes; reg/2 ‖θ‖²."""
    from ..models.seeds import flatten_tree
    rng = np.random.default_rng(seed)
    nodes = flatten_tree(tree)
    nwords = 1 + max(w for _, w, _, _ in nodes)
    L, V, W, b = _p(rng, (d, nwords), "L"), _p(rng, (2 * d, 2 * d, d), "V", 0.2), _p(rng, (d, 2 * d), "W"), \
        _p(rng, d, "b")
    Ws, bs = _p(rng, (K, d), "Ws"), _p(rng, K, "bs")
    labels = np.array([lab for lab, _, _, _ in nodes])
    with ag.record_forward():
        LT = F.transpose(L)
        xs = []
        for i, (_, w, left, right) in enumerate(nodes):
            if w >= 0:
                x = _named(F.take(LT, np.array(w)), f"x{i}")
            else:
                v = _named(F.concat([xs[left], xs[right]]), f"v{i}")
                x = _named(F.tanh(F.bilinear(v, V) + W @ v + b), f"x{i}")
            xs.append(x)
        Xs = _named(F.stack(xs), "X")
        s = _named(Xs @ Ws.T + bs, "s")
        J = F.softmax_cross_entropy(s, labels, weight=1.0)
        J = J + ((V * V).sum() + (W * W).sum() + (Ws * Ws).sum() + (L * L).sum()) * (0.5 * reg)
    return J, {"t": labels}, f"Seed 000: RNTN on one tree of {len(nodes)} nodes (softmax at every node)"


def lstm(seed=0, N=2, T=3, D=3, H=4):
    """An LSTM written gate by gate (seed 004's multiplicative network), squared loss on the last h:
    i = σ(x Wi + h Ui + bi), f, o likewise, g = tanh(x Wg + h Ug + bg), c = f ⊙ c + i ⊙ g, h = o ⊙ tanh(c)."""
    rng = np.random.default_rng(seed)
    P = {}
    for gname in "ifog":
        P["W" + gname] = _p(rng, (D, H), "W" + gname)
        P["U" + gname] = _p(rng, (H, H), "U" + gname)
        P["b" + gname] = _p(rng, H, "b" + gname)
    xs = rng.standard_normal((T, N, D))
    target = rng.standard_normal((N, H))
    with ag.record_forward():
        h = c = None
        for t in range(T):
            x = xs[t]

            def pre(gname):
                z = x @ P["W" + gname] + P["b" + gname]
                return z if h is None else z + h @ P["U" + gname]
            i = _named(F.sigmoid(pre("i")), f"i{t + 1}")
            f = _named(F.sigmoid(pre("f")), f"f{t + 1}")
            o = _named(F.sigmoid(pre("o")), f"o{t + 1}")
            g = _named(F.tanh(pre("g")), f"g{t + 1}")
            c = _named(i * g if c is None else f * c + i * g, f"c{t + 1}")
            h = _named(o * F.tanh(c), f"h{t + 1}")
        r = h - target
        J = (r * r).sum() * 0.5
    consts = {f"x{t + 1}": xs[t] for t in range(T)}
    consts["y"] = target
    return J, consts, f"LSTM, {T} steps, batch {N}: ½‖h_T − y‖²"


BUILDERS = {"mlp": mlp, "window": window, "multilabel-mlp": multilabel_mlp, "layerwise": layerwise,
            "dag": dag, "rntn": rntn, "lstm": lstm}


def build(name, seed=0, **kw):
    """``(loss, constants, title)`` of the model ``name`` (keyword options go to its builder)."""
    if name not in BUILDERS:
        raise ValueError(f"explain: unknown model {name!r}; choose from {', '.join(MODELS)}")
    return BUILDERS[name](seed=seed, **kw)
