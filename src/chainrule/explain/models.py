"""The models ``chainrule explain`` knows by name, each on a small random float64 problem.

Every builder returns ``(loss, constants, title)``: the loss recorded under
:func:`chainrule.record_forward` with the seed documents' tensor names, the constant inputs by name
(so targets print as ``y``), and a title naming the seed.  ``problem(name, seed)`` also returns the
forward values a hand derivation starts from (see :func:`chainrule.explain.check_derivation`).

Each is the model as chainrule defines it (:mod:`chainrule.models`, :class:`chainrule.nn.DAGNetwork`),
its parameters loaded through the model's adapter where a derivation gives them, its intermediate
tensors named by forward hooks; the parameters keep the model's layout (an ``nn.Linear`` stores
``(in, out)``, the transpose of the seeds' ``W``; an embedding stores words as rows).

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


def _name_io(module, inp=None, out=None):
    """Name a module's input and/or output tensor on every forward (a forward hook): how the
    builders below give the models' intermediate tensors the seeds' names without touching them."""
    def hook(mod, inputs, output):
        if inp is not None:
            inputs[0].name = inp
        if out is not None:
            output.name = out
    module.register_forward_hook(hook)


def _name_params(pairs):
    for t, name in pairs:
        t.name = name


def _mlp_names(model, first):
    """``z{k}`` for the k-th Linear's output and ``a{k}`` for its activation's, from ``k = first``;
    ``W{k}``, ``b{k}`` for its weight (``(in, out)``: the seeds' W transposed) and bias."""
    from ..models.mlp import _linears
    layers = list(model.layers)
    for j, lin in enumerate(_linears(model)):
        k = first + j
        _name_io(lin, out=f"z{k}")
        pos = layers.index(lin)
        if pos + 1 < len(layers):
            _name_io(layers[pos + 1], out=f"a{k}")
        _name_params([(lin.weight, f"W{k - first + 1}"), (lin.bias, f"b{k - first + 1}")])


def mlp(seed=0, m=4, n=5, h=6, k=3):
    """``chainrule train mlp``'s model (:mod:`chainrule.models.mlp`) with a tanh hidden layer and the
    ``ce`` loss: softmax cross-entropy averaged over the batch."""
    from ..models import mlp as M
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, n))
    y = rng.integers(0, k, m)
    model = M.build_model({"hidden": [h], "activation": "tanh", "seed": seed}, n, k).to(np.float64)
    _mlp_names(model, 1)
    with ag.record_forward():
        J, _ = M.make_loss_fn({"loss": "ce"}, k)(model, (X, y))
    return J, {"x": X, "y": y}, (f"MLP (chainrule.models.mlp): tanh hidden layer, softmax cross-entropy averaged "
                                 f"over m = {m}; W_k is the Linear's (in, out) weight")


def window(seed=0, m=3, single=False):
    """Seed 002 on a batch of m windows (eq. 1), or with ``single`` on one window (eq. 7, the
    document's per-example form, penalty C/2m with m the training-set size): the window tagger of
    :mod:`chainrule.models.window` (binary head, no capitalisation features) with the derivation's
    parameters loaded by its adapter.  The model stores ``L``, ``W`` and ``U`` as rows: the seed's
    ``Lᵀ`` (|V|, n), ``Wᵀ`` (n·C, H) and ``U`` as an (H, 1) column."""
    from ..derivations import window as W
    from ..models import window as MW
    rng = np.random.default_rng(seed)
    params = W.init_params(3, 3, 4, 7, rng)
    idx = rng.integers(0, 7, size=(m, 3))
    idx[0, 2] = idx[0, 0]                                  # a word twice in one window
    y = (rng.random(m) < 0.5).astype(np.float64)
    if single:
        idx, y = idx[0:1], y[0:1]
    model = MW.from_derivation(params, 3)
    _name_params([(model.emb.weight, "L"), (model.hidden.weight, "W"), (model.hidden.bias, "b1"),
                  (model.out.weight, "U"), (model.out.bias, "b2")])
    _name_io(model.hidden, inp="x", out="z1")
    _name_io(model.out, inp="a1", out="z2")
    with ag.record_forward():
        J, _ = MW.make_loss_fn(0.3, m)(model, (idx, None, y))
    what = f"one window, m = {m}" if single else f"batch m = {m}"
    return J, {"y": y.reshape(-1, 1), "idx": idx}, (f"Seed 002: window classifier (chainrule.models.window; {what}, "
                                                    f"penalty C/2m; L, W, U stored as the seed's Lᵀ, Wᵀ, U)")


def multilabel_mlp(seed=0, N=4, D=5, H=4, K=3, lam=0.1):
    """Seed 003's Alg 1 as ``chainrule train mlp --activation sigmoid --loss multilabel-bce --l2 λ``
    builds it (:mod:`chainrule.models.mlp`); W1, W2 are the Linears' (in, out) weights (the seed's
    W transposed)."""
    from ..derivations import multilabel_mlp as ml
    from ..models import mlp as M
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D))
    Y = (rng.random((N, K)) < 0.5).astype(np.float64)
    model = M.from_derivation(ml.init_params(D, H, K, rng))
    _mlp_names(model, 2)
    with ag.record_forward():
        J = M.multilabel_loss(model, X, Y, lam)
    return J, {"X": X, "Y": Y}, (f"Seed 003: Alg 1 (chainrule.models.mlp) -- two sigmoid layers, summed BCE / N "
                                 f"(N = {N}), λ = {lam}; W_k stored (in, out)")


def layerwise(seed=0, B=4):
    from ..models.mlp import layerwise_loss
    rng = np.random.default_rng(seed)
    layers = [{"W": _p(rng, (4, 3), "W1"), "b": _p(rng, 4, "b1"), "activation": "tanh"},
              {"W": _p(rng, (4, 4), "W2"), "b": _p(rng, 4, "b2"), "activation": "relu"},
              {"W": _p(rng, (3, 4), "W3"), "b": _p(rng, 3, "b3"), "activation": "softmax"}]
    x = rng.standard_normal((3, B))
    d = np.eye(3)[:, rng.integers(0, 3, B)]
    with ag.record_forward():
        J = layerwise_loss(layers, x, d, div="ce")
    return J, {"x": x, "d": d}, "Seed 004: layer-by-layer backprop, softmax vector activation, cross-entropy"


def dag(seed=0):
    """Seed 001's example DAG as :class:`chainrule.nn.DAGNetwork` builds it, on one example."""
    from ..derivations.dag import EXAMPLE_SPEC
    from ..nn.dag import DAGNetwork
    rng = np.random.default_rng(seed)
    net = DAGNetwork(EXAMPLE_SPEC)
    x = rng.standard_normal(2)
    y = rng.random(1)
    with ag.record_forward():
        J = net.loss(x, y, reduction="sum")
    return J, {"y": y, "x": x.reshape(1, -1), "x1": x[0:1], "x2": x[1:2]}, "Seed 001: a DAG of sigmoid and soft-maximum units (chainrule.nn.DAGNetwork), squared loss"


TREE = (1, (0, (2, 0), (1, 1)), (3, (1, 2), (4, 3)))     # ((w0 w1) (w2 w3)) with a label per node


def rntn(seed=0, d=3, K=5, reg=0.01, tree=TREE):
    """Seed 000 per node, as :mod:`chainrule.models.rntn`'s reference path computes it:
    x_p = tanh(vᵀ V^{[1:d]} v + W v + b), v = [x_a; x_b]; a softmax classifier s_i = W_s x_i + b_s at
    every node i; cross-entropy summed over the nodes; reg/2 (‖V‖² + ‖W‖² + ‖Ws‖² + ‖L‖²).  The model
    stores the word vectors as rows: ``L`` is the seed's Lᵀ (|V|, d)."""
    from ..models import rntn as R
    rng = np.random.default_rng(seed)
    enc = R.encode_nested(tree)
    nwords = 1 + int(enc.word.max())
    params = {"L": 0.5 * rng.standard_normal((d, nwords)), "V": 0.2 * rng.standard_normal((2 * d, 2 * d, d)),
              "W": 0.5 * rng.standard_normal((d, 2 * d)), "b": 0.5 * rng.standard_normal(d),
              "Ws": 0.5 * rng.standard_normal((K, d)), "bs": 0.5 * rng.standard_normal(K)}
    model = R.from_derivation(params)
    _name_params([(t, k) for k, t in model.params().items()])
    with ag.record_forward():
        J = R.derivation_loss(model, [tree], reg)
    consts = {f"t_{c}": np.array([c]) for c in sorted(set(enc.label.tolist()))}   # node i's target class
    return J, consts, f"Seed 000: RNTN (chainrule.models.rntn) on one tree of {len(enc)} nodes (softmax at every node)"


def lstm(seed=0, N=2, T=3, D=3, H=4):
    """An LSTM written gate by gate (seed 004's multiplicative network), squared loss on the last h:
    i = σ(x Wi + h Ui + bi), f, o likewise, g = tanh(x Wg + h Ug + bg), c = f ⊙ c + i ⊙ g, h = o ⊙ tanh(c).

    Written here gate by gate on purpose rather than run through :class:`chainrule.nn.LSTMCell`: the
    layer fuses the four gates into one matmul and one sigmoid over column blocks, so its derivation
    has no gate to name and prints every δ as slices of one pre-activation (correct, checked, and
    unreadable); this is the cell as seed 004 writes it, for reading."""
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
