"""The five seed models written with the engine's ops: the other side of ``chainrule.derivations``.

Each function builds one seed document's loss from chainrule tensors, so that ``loss.backward()``
gives the engine's gradients of exactly the function whose gradients the matching module of
:mod:`chainrule.derivations` derives by hand.  The tests (``tests/derivations/test_engine_vs_derivations.py``)
and ``chainrule derive MODEL`` put the two side by side.  Parameters are passed as dicts (or lists)
of tensors laid out exactly like the derivation modules' NumPy parameters, so
``{k: cr.tensor(v, requires_grad=True) for k, v in params.items()}`` converts one into the other.

* :func:`window_engine_loss` -- 002, the window classifier, eqs. (1) and (7); ``derivations.window``
* :func:`multilabel_engine_loss` -- 003, the multi-label sigmoid net ("Alg 1"); ``derivations.multilabel_mlp``
* :func:`layerwise_engine_loss` -- 004, the layer-by-layer network; ``derivations.layerwise``
* :func:`dag_engine_loss` -- 001, a DAG of sigmoid / soft-maximum units; ``derivations.dag``
* :func:`rntn_engine_loss` -- 000, the recursive neural tensor network; ``derivations.rntn``

Nothing here recurses: the RNTN walks its tree with an explicit stack, the DAG is evaluated in a
topological order computed by Kahn's algorithm.
"""
from __future__ import annotations

import numpy as np

from ..ops import functional as F
from ..tensor import Tensor

__all__ = [
    "params_to_tensors", "window_engine_loss", "multilabel_engine_loss", "layerwise_engine_loss",
    "layers_to_tensors", "dag_engine_loss", "weights_from_spec", "rntn_engine_loss", "flatten_tree",
]


def params_to_tensors(params, dtype=np.float64):
    """``{name: array}`` -> ``{name: leaf Tensor requiring grad}`` (float64 copies by default).

    Python floats (the window classifier's scalar ``b2``) become 0-d tensors.
    """
    return {k: Tensor(np.array(v, dtype=dtype), requires_grad=True, name=k) for k, v in params.items()}


def layers_to_tensors(layers, dtype=np.float64):
    """The layer dicts of ``derivations.layerwise.init_layers`` with ``'W'`` and ``'b'`` as leaf tensors
    (named ``W1, b1, W2, ...``); the other keys (activation, alpha, pieces) are copied."""
    out = []
    for k, layer in enumerate(layers, start=1):
        new = dict(layer)
        new["W"] = Tensor(np.array(layer["W"], dtype=dtype), requires_grad=True, name=f"W{k}")
        new["b"] = Tensor(np.array(layer["b"], dtype=dtype), requires_grad=True, name=f"b{k}")
        out.append(new)
    return out


def _sum_squares(*ts):
    total = None
    for t in ts:
        s = (t * t).sum()
        total = s if total is None else total + s
    return total


# ------------------------------------------------------------------------------------------ 002
def window_engine_loss(params, idx, labels, C=0.0, m=None):
    """Seed 002's cost ``J`` with engine ops (eq. (1) for a batch ``idx`` of shape ``(m, window)``,
    eq. (7) for one window ``idx`` of shape ``(window,)``).

    ``x = [L[:, w_1]; ...; L[:, w_C]]`` is gathered with :func:`chainrule.take` from ``Lᵀ`` (so the
    gradient of ``L`` is scattered back to the used columns), then

        z1 = W x + b1,  a1 = tanh z1,  z2 = Uᵀ a1 + b2,
        J  = mean[softplus(z2) − y z2] + C/(2m) (‖W‖² + ‖U‖²)

    (``softplus(z) − y z`` is the binary cross-entropy of ``σ(z)``, written without overflow).

    Args:
        params: ``{'L': (n, |V|), 'W': (H, n·window), 'b1': (H,), 'U': (H,), 'b2': ()}`` tensors.
        idx: integer word indices ``(window,)`` or ``(m, window)``.
        labels: ``y`` in [0, 1], a scalar or ``(m,)``.
        C: the penalty constant; ``m``: the training-set size for a single window (default 1).
    """
    L, W, b1, U, b2 = params["L"], params["W"], params["b1"], params["U"], params["b2"]
    idx = np.asarray(idx)
    n = L.shape[0]
    cols = F.take(F.transpose(L), idx)                  # (window, n) or (m, window, n)
    x = cols.reshape(-1) if idx.ndim == 1 else cols.reshape(idx.shape[0], idx.shape[1] * n)
    x.name = "x"
    z1 = x @ W.T + b1
    a1 = F.tanh(z1)
    a1.name = "a1"
    z2 = a1 @ U + b2
    z2.name = "z2"
    y = np.asarray(labels, dtype=z2.dtype)
    ce = F.softplus(z2) - z2 * y
    if idx.ndim == 2:
        mm = idx.shape[0]
        data = ce.mean()
    else:
        mm = 1 if m is None else m
        data = ce
    if C:
        return data + _sum_squares(W, U) * (C / (2.0 * mm))
    return data


# ------------------------------------------------------------------------------------------ 003
def multilabel_engine_loss(params, X, Y, lam=0.0):
    """Seed 003's ``J = (1/N) Σ_i Σ_k BCE(a3_ik, y_ik) + λ/2 (‖W1‖² + ‖W2‖²)`` with engine ops.

    ``z2 = X W1ᵀ + b1``, ``a2 = σ(z2)``, ``z3 = a2 W2ᵀ + b2``; each BCE of ``σ(z3)`` is
    ``softplus(z3) − y z3``.  ``params``: ``{'W1': (H, D), 'b1': (H,), 'W2': (K, H), 'b2': (K,)}``.
    """
    X = np.asarray(X)
    Y = np.asarray(Y)
    z2 = X @ params["W1"].T + params["b1"]
    z2.name = "z2"
    a2 = F.sigmoid(z2)
    a2.name = "a2"
    z3 = a2 @ params["W2"].T + params["b2"]
    z3.name = "z3"
    data = (F.softplus(z3) - z3 * Y.astype(z3.dtype)).sum() * (1.0 / X.shape[0])
    if lam:
        return data + _sum_squares(params["W1"], params["W2"]) * (0.5 * lam)
    return data


# ------------------------------------------------------------------------------------------ 004
def _activation(layer, z):
    act = layer["activation"]
    if act == "sigmoid":
        return F.sigmoid(z)
    if act == "tanh":
        return F.tanh(z)
    if act == "relu":
        return F.relu(z)
    if act == "leaky_relu":
        return F.leaky_relu(z, layer.get("alpha", 0.01))
    if act == "identity":
        return z
    if act == "softmax":
        return F.softmax(z, axis=0)                      # columns are examples
    if act == "maxout":
        p = layer["pieces"]
        g = z.reshape((z.shape[0] // p, p) + tuple(z.shape[1:]))
        return g.max(axis=1)
    raise ValueError(f"layerwise_engine_loss: unknown activation {act!r}")


def layerwise_engine_loss(layers, x, d, div="l2"):
    """Seed 004's stack ``z_k = W_k y_{k-1} + b_k``, ``y_k = f_k(z_k)`` and a divergence, engine ops.

    Layout as in ``derivations.layerwise``: ``x`` is ``(n0,)`` or ``(n0, B)`` (one column per example),
    ``layers`` a list of dicts with tensors ``'W'`` ``(n_k, n_{k-1})``, ``'b'`` ``(n_k,)`` and an
    ``'activation'`` among sigmoid, tanh, relu, leaky_relu (``'alpha'``, a number or an array of
    slopes), identity, softmax (over axis 0) and maxout (``'pieces'``).  ``div``:

    * ``'l2'``: ½ Σ (y − d)²;  * ``'bce'``: Σ −d log y − (1 − d) log(1 − y);  * ``'ce'``: −Σ d log y

    (summed over the columns of a batch, as the document's divergences are).
    """
    y = np.asarray(x)
    for k, layer in enumerate(layers, start=1):
        b = layer["b"] if y.ndim == 1 else layer["b"].reshape(-1, 1)
        z = layer["W"] @ y + b
        z.name = f"z{k}"
        y = _activation(layer, z)
        if isinstance(y, Tensor) and y is not z:
            y.name = f"y{k}"
    d = np.asarray(d, dtype=y.dtype)
    if div == "l2":
        r = y - d
        return (r * r).sum() * 0.5
    if div == "bce":
        return (F.log(y) * (-d) - F.log(1.0 - y) * (1.0 - d)).sum()
    if div == "ce":
        return -(F.log(y) * d).sum()
    raise ValueError(f"layerwise_engine_loss: unknown divergence {div!r}; use 'l2', 'bce' or 'ce'")


# ------------------------------------------------------------------------------------------ 001
def dag_engine_loss(spec, weights, x, y, biases=None):
    """Seed 001's squared loss ``½ Σ_outputs (o[v] − y_v)²`` of a DAG, with engine ops.

    The graph is evaluated by :func:`chainrule.nn.dag.dag_forward` (topological order, batched).

    Args:
        spec: a DAG spec (see :mod:`chainrule.nn.dag`; the format of ``chainrule.derivations.dag``)
            or its compiled :class:`~chainrule.nn.dag.DAGSpec`.
        weights: one tensor per spec edge, in spec order (a scalar, or ``(n,)`` for an edge into an
            ``n``-piece soft-maximum unit) -- e.g. the leaves of ``weights_from_spec(spec)``.
        x: the input values, ``(n_inputs,)`` for one example or ``(N, n_inputs)``.
        y: the targets, ``(n_outputs,)`` or ``(N, n_outputs)``.
        biases: optional ``{node name: tensor}`` (not part of the document's units).

    Returns:
        The scalar loss, summed over the outputs and the examples.
    """
    from ..nn.dag import compile_spec, dag_forward, input_tensors
    g = compile_spec(spec)
    xs, single = input_tensors(g, x)
    cache = dag_forward(g, weights, biases or {}, xs)
    t = np.asarray(y, dtype=np.float64)
    t = t.reshape(1, -1) if single or t.ndim == 1 else t
    total = None
    for j, v in enumerate(g.outputs):
        r = cache["o"][v] - t[:, j].astype(cache["o"][v].dtype)
        s = (r * r).sum() * 0.5
        total = s if total is None else total + s
    return total


def weights_from_spec(spec, dtype=np.float64):
    """The spec's edge weights as leaf tensors requiring grad, in spec order (named ``w[u->v]``)."""
    from ..nn.dag import compile_spec
    g = compile_spec(spec)
    out = []
    for e in g.edges:
        if e.weight is None:
            raise ValueError(f"weights_from_spec: edge {e.src!r} -> {e.dst!r} has no 'weight'")
        out.append(Tensor(np.array(e.weight, dtype=dtype), requires_grad=True, name=e.label))
    return out


# ------------------------------------------------------------------------------------------ 000
def flatten_tree(tree):
    """Nested tuples ``(label, word)`` / ``(label, left, right)`` to a post-order list of
    ``(label, word, left, right)`` (children before parents; ``word = -1`` for internal nodes,
    ``left = right = -1`` for leaves), with an explicit stack."""
    nodes, idx_stack, stack = [], [], [(tree, False)]
    while stack:
        t, expanded = stack.pop()
        if not isinstance(t, tuple) or len(t) not in (2, 3):
            raise ValueError(f"rntn: a tree node must be (label, word) or (label, left, right), got {t!r}")
        if len(t) == 2:
            nodes.append((int(t[0]), int(t[1]), -1, -1))
            idx_stack.append(len(nodes) - 1)
        elif expanded:
            right = idx_stack.pop()
            left = idx_stack.pop()
            nodes.append((int(t[0]), -1, left, right))
            idx_stack.append(len(nodes) - 1)
        else:
            stack += [(t, True), (t[2], False), (t[1], False)]
    return nodes


def rntn_engine_loss(params, tree, reg=0.0, leaf_activation=False):
    """Seed 000's RNTN loss on one tree, node by node with engine ops (the per-node reference path).

    Nodes are visited in post-order from an explicit stack (no recursion).  A leaf's vector is
    ``L[:, w]`` (``tanh(L[:, w])`` with ``leaf_activation``); an internal node with children ``a, b``
    has ``v = [a; b]`` and

        x = tanh( einsum('i,ijk,j->k', v, V, v) + W v + b ),

    every node ``i`` a classifier ``softmax(Ws x_i + bs)``, and the loss is the cross-entropy summed
    over the nodes (one fused ``softmax_cross_entropy`` over the stacked node vectors), plus
    ``reg/2 (‖V‖² + ‖W‖² + ‖Ws‖² + ‖L‖²)``.  ``params``: ``{'L': (d, |V|), 'V': (2d, 2d, d),
    'W': (d, 2d), 'Ws': (K, d)}`` and optionally ``'b'`` ``(d,)``, ``'bs'`` ``(K,)``.
    """
    L, V, W, Ws = params["L"], params["V"], params["W"], params["Ws"]
    b, bs = params.get("b"), params.get("bs")
    nodes = flatten_tree(tree)
    LT = F.transpose(L)
    xs, labels = [], []
    for (label, w, left, right) in nodes:
        if w >= 0:
            x = LT[w]
            if leaf_activation:
                x = F.tanh(x)
        else:
            v = F.concat([xs[left], xs[right]])
            net = F.einsum("i,ijk,j->k", v, V, v) + W @ v
            if b is not None:
                net = net + b
            x = F.tanh(net)
        xs.append(x)
        labels.append(label)
    X = F.stack(xs)                                      # (nodes, d)
    s = X @ Ws.T
    if bs is not None:
        s = s + bs
    loss = F.softmax_cross_entropy(s, np.asarray(labels, dtype=np.int64), weight=1.0)
    if reg:
        loss = loss + _sum_squares(V, W, Ws, L) * (0.5 * reg)
    return loss
