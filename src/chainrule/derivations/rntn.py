"""Recursive neural tensor network (RNTN), seed ``000_51219d21b4fc59a2.txt``, in plain NumPy.

Model. Every internal node with children vectors ``a`` (left) and ``b`` (right)
has the vector

$$p = f\\big(\\Gamma(a, b)\\big),\\qquad
  \\Gamma(a, b)_k = \\begin{bmatrix}a\\\\b\\end{bmatrix}^\\top V^{[k]} \\begin{bmatrix}a\\\\b\\end{bmatrix}
  + \\Big(W \\begin{bmatrix}a\\\\b\\end{bmatrix}\\Big)_k + \\mathrm{bias}_k,\\qquad f = \\tanh,$$

with ``V`` of shape ``(2d, 2d, d)`` (``V[:, :, k]`` is the slice $V^{[k]}$ giving
output ``k``), ``W`` of shape ``(d, 2d)``; ``[a; b]`` is the **concatenation**
(the document's $v = a \\oplus p_1$; it reads ⊕ as a sum in one line, a slip).
Leaves are word vectors, the columns of ``L`` (``d x |V|``); with
``leaf_activation=True`` a leaf's vector is ``f(L[:, w])`` instead (the reading under
which the document's ``f'(a)`` for the leaf ``a`` is exact).

Every node ``i`` (leaves included) has a classifier $y_i = \\mathrm{softmax}(W_s x_i + b_s)$
and the loss is the cross-entropy summed over the nodes of the tree,
$\\mathcal L = -\\sum_i \\log y_i[t_i]$.

Bias and regularisation: the document has neither (its $\\Gamma$ and its
$y_i = \\mathrm{softmax}(W_s x_i)$ have no bias terms and no penalty appears). Here
the biases are optional: they are used when ``params`` has ``'b'`` (composition
bias, ``d``) and ``'bs'`` (classifier bias, ``K``), which :func:`init_params`
includes by default; without those keys the model is exactly the document's.
``reg`` adds $\\tfrac\\lambda2(\\|V\\|^2 + \\|W\\|^2 + \\|W_s\\|^2 + \\|L\\|^2)$ (the RNTN
paper's penalty; default 0, i.e. the document's unregularised loss).

Backward pass: the document's message passing. For node ``i`` with vector ``x_i``,

* softmax error (the document's 1)): $\\delta_{i,s} = W_s^\\top (y_i - t_i)$, times $f'(x_i) = 1 - x_i^2$ at internal nodes;
* complete message (eqs. (2)-(4), corrected):
  $\\delta_{i,com} = \\delta_{i,s} + f'(x_i) \\otimes \\delta_{i,down}$ (no ``f'`` at a plain leaf);
* message to the children of an internal node ``i`` with $v = [a; b]$:
  $$\\delta_{down} = \\Big(\\frac{\\partial \\Gamma}{\\partial v}\\Big)^\\top \\delta_{i,com}
    = W^\\top \\delta_{i,com} + \\sum_k \\delta_{i,com,k}\\,(V^{[k]} + V^{[k]\\top})\\, v,$$
  whose first ``d`` entries go to the left child and last ``d`` to the right
  (``∂Γ/∂a`` and ``∂Γ/∂b`` are the two halves of one Jacobian; they are not equal);
* $\\partial \\mathcal L/\\partial V^{[k]} = \\sum_{i\\ internal} \\delta_{i,com,k}\\, v_i v_i^\\top$,
  $\\partial \\mathcal L/\\partial W = \\sum_i \\delta_{i,com} v_i^\\top$,
  $\\partial \\mathcal L/\\partial \\mathrm{bias} = \\sum_i \\delta_{i,com}$,
  $\\partial \\mathcal L/\\partial W_s = \\sum_i (y_i - t_i) x_i^\\top$,
  $\\partial \\mathcal L/\\partial b_s = \\sum_i (y_i - t_i)$, and a leaf's
  $\\delta_{com}$ is added to its word's column of $\\partial \\mathcal L/\\partial L$.

Trees are nested tuples: a leaf is ``(label, word_index)``, an internal node is
``(label, left, right)``. All traversals use an explicit stack.

This module imports nothing from chainrule's engine.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "init_params", "flatten_tree", "compose", "compose_jacobian",
    "forward", "loss", "gradients", "batch_loss", "batch_gradients",
]


def _softmax(z):
    e = np.exp(z - np.max(z))
    return e / np.sum(e)


def init_params(d: int, vocab: int, classes: int, rng=None, scale: float = 0.3, bias: bool = True) -> dict:
    """Random float64 ``{'L': (d, vocab), 'V': (2d, 2d, d), 'W': (d, 2d), 'Ws': (classes, d)}`` (+ ``'b'``, ``'bs'`` if ``bias``)."""
    rng = np.random.default_rng(rng)
    p = {
        "L": scale * rng.standard_normal((d, vocab)),
        "V": scale * rng.standard_normal((2 * d, 2 * d, d)),
        "W": scale * rng.standard_normal((d, 2 * d)),
        "Ws": scale * rng.standard_normal((classes, d)),
    }
    if bias:
        p["b"] = scale * rng.standard_normal(d)
        p["bs"] = scale * rng.standard_normal(classes)
    return p


def flatten_tree(tree, vocab: int | None = None, classes: int | None = None):
    """Nested tuples to a post-order list (children before parents), iteratively.

    Returns a list of ``(label, word, left, right)``: ``word`` is the word index of
    a leaf (``left = right = -1``), or ``-1`` for an internal node whose children
    are at positions ``left`` and ``right`` of the list. The root is last.
    """
    nodes = []
    idx_stack = []
    stack = [(tree, False)]
    while stack:
        t, expanded = stack.pop()
        if not isinstance(t, tuple) or len(t) not in (2, 3):
            raise ValueError(
                f"rntn: a tree node must be (label, word_index) or (label, left, right), got {t!r}"
            )
        label = t[0]
        if not isinstance(label, (int, np.integer)) or (classes is not None and not 0 <= label < classes):
            raise ValueError(f"rntn: bad label {label!r} in node {t!r} (classes={classes})")
        if len(t) == 2:
            w = t[1]
            if not isinstance(w, (int, np.integer)) or (vocab is not None and not 0 <= w < vocab):
                raise ValueError(f"rntn: bad word index {w!r} in leaf {t!r} (vocabulary size {vocab})")
            nodes.append((int(label), int(w), -1, -1))
            idx_stack.append(len(nodes) - 1)
        elif expanded:
            right = idx_stack.pop()
            left = idx_stack.pop()
            nodes.append((int(label), -1, left, right))
            idx_stack.append(len(nodes) - 1)
        else:
            stack.append((t, True))
            stack.append((t[2], False))
            stack.append((t[1], False))
    return nodes


def compose(params: dict, a, b):
    """$\\Gamma(a, b) = [a;b]^\\top V [a;b] + W[a;b] + \\mathrm{bias}$ (the document's (2)), before ``f``."""
    v = np.concatenate([a, b])
    net = np.einsum("i,ijk,j->k", v, params["V"], v) + params["W"] @ v
    if "b" in params:
        net = net + params["b"]
    return net


def compose_jacobian(params: dict, a, b):
    """$\\partial \\Gamma/\\partial v$ for $v = [a; b]$: row ``k`` is $W_{k,:} + ((V^{[k]} + V^{[k]\\top}) v)^\\top$.

    The document's (4) writes "$W + (U^TV + V^TU)^T[a; p_1]$" and claims
    $\\partial\\Gamma/\\partial a = \\partial\\Gamma/\\partial p_1$; in fact
    ``J[:, :d]`` is $\\partial\\Gamma/\\partial a$ and ``J[:, d:]`` is
    $\\partial\\Gamma/\\partial b$, which differ. Returns shape ``(d, 2d)``.
    """
    v = np.concatenate([a, b])
    V = params["V"]
    return params["W"] + np.einsum("ijk,j->ki", V, v) + np.einsum("jik,j->ki", V, v)


def _check(params, tree):
    d = params["W"].shape[0]
    if params["W"].shape != (d, 2 * d) or params["V"].shape != (2 * d, 2 * d, d) or params["L"].shape[0] != d:
        raise ValueError(
            f"rntn: shapes must be W (d, 2d), V (2d, 2d, d), L (d, |V|); got W {params['W'].shape}, "
            f"V {params['V'].shape}, L {params['L'].shape}"
        )
    return flatten_tree(tree, vocab=params["L"].shape[1], classes=params["Ws"].shape[0])


def forward(params: dict, tree, leaf_activation: bool = False) -> dict:
    """Node vectors bottom-up (post-order), and every node's softmax output.

    Returns ``{'nodes': flat tree, 'x': [d-vectors], 'y': [K-vectors], 'v': [2d concat or None],
    'loss': cross-entropy summed over the nodes}``.
    """
    nodes = _check(params, tree)
    L, Ws = params["L"], params["Ws"]
    bs = params.get("bs")
    xs, ys, vs = [], [], []
    total = 0.0
    for (label, w, left, right) in nodes:
        if w >= 0:
            x = L[:, w].copy()
            if leaf_activation:
                x = np.tanh(x)
            vs.append(None)
        else:
            v = np.concatenate([xs[left], xs[right]])
            net = np.einsum("i,ijk,j->k", v, params["V"], v) + params["W"] @ v
            if "b" in params:
                net = net + params["b"]
            x = np.tanh(net)
            vs.append(v)
        s = Ws @ x
        if bs is not None:
            s = s + bs
        # -log softmax(s)[label], via log-sum-exp
        m = np.max(s)
        total += float(m + np.log(np.sum(np.exp(s - m))) - s[label])
        xs.append(x)
        ys.append(_softmax(s))
    return {"nodes": nodes, "x": xs, "y": ys, "v": vs, "loss": total}


def _reg_value(params, reg):
    if not reg:
        return 0.0
    return 0.5 * reg * float(sum(np.sum(params[k] ** 2) for k in ("V", "W", "Ws", "L")))


def loss(params: dict, tree, reg: float = 0.0, leaf_activation: bool = False) -> float:
    """$\\mathcal L = \\sum_{nodes\\ i} -\\log y_i[t_i]$ (+ the optional penalty ``reg``)."""
    return forward(params, tree, leaf_activation)["loss"] + _reg_value(params, reg)


def _zeros_like_params(params):
    return {k: np.zeros_like(v) for k, v in params.items()}


def _accumulate(params, tree, grads, leaf_activation, messages):
    fw = forward(params, tree, leaf_activation)
    nodes, xs, ys, vs = fw["nodes"], fw["x"], fw["y"], fw["v"]
    d = params["W"].shape[0]
    V, W, Ws = params["V"], params["W"], params["Ws"]
    n = len(nodes)
    down = [None] * n
    down[n - 1] = np.zeros(d)           # the root has no parent message
    # Reverse post-order is a pre-order: every parent before its children.
    for i in range(n - 1, -1, -1):
        label, w, left, right = nodes[i]
        x = xs[i]
        err = ys[i].copy()
        err[label] -= 1.0                                   # y_i - t_i
        grads["Ws"] += np.outer(err, x)
        if "bs" in grads:
            grads["bs"] += err
        soft = Ws.T @ err                                   # W_s^T (y_i - t_i)
        if w >= 0 and not leaf_activation:
            com = soft + down[i]                            # plain leaf: x = L[:, w], no f'
            fprime = None
        else:
            fprime = 1.0 - x * x                            # f'(x_i) in terms of the output
            com = fprime * (soft + down[i])                 # delta_{i,com} = f' (x) (delta_{i,s} + down)
        if messages is not None:
            messages[i] = {
                "softmax_error": soft if fprime is None else fprime * soft,
                "down": down[i], "com": com,
            }
        if w >= 0:
            grads["L"][:, w] += com
            continue
        v = vs[i]
        grads["V"] += np.einsum("i,j,k->ijk", v, v, com)   # dL/dV[k] += com_k v v^T
        grads["W"] += np.outer(com, v)
        if "b" in grads:
            grads["b"] += com
        msg = W.T @ com + np.einsum("ijk,j,k->i", V, v, com) + np.einsum("jik,j,k->i", V, v, com)
        down[left] = msg[:d]
        down[right] = msg[d:]
    return fw


def gradients(params: dict, tree, reg: float = 0.0, leaf_activation: bool = False,
              return_messages: bool = False) -> dict:
    """Gradients of :func:`loss` for one tree, by the document's message passing (see the module docstring).

    Returns a dict with the same keys as ``params`` (``'L'`` dense). With
    ``return_messages`` it also has ``'messages'``: per node in post-order, the
    document's $\\delta_{i,s}$ (``'softmax_error'``, with ``f'``), the parent's
    message ``'down'`` and $\\delta_{i,com}$ (``'com'``), plus ``'nodes'``.
    """
    grads = _zeros_like_params(params)
    msgs = {} if return_messages else None
    fw = _accumulate(params, tree, grads, leaf_activation, msgs)
    if reg:
        for k in ("V", "W", "Ws", "L"):
            grads[k] += reg * params[k]
    if return_messages:
        grads["messages"] = [msgs[i] for i in range(len(fw["nodes"]))]
        grads["nodes"] = fw["nodes"]
    return grads


def batch_loss(params: dict, trees, reg: float = 0.0, leaf_activation: bool = False) -> float:
    """Sum of the tree losses (+ the penalty once)."""
    return sum(forward(params, t, leaf_activation)["loss"] for t in trees) + _reg_value(params, reg)


def batch_gradients(params: dict, trees, reg: float = 0.0, leaf_activation: bool = False) -> dict:
    """Gradients of :func:`batch_loss`: the per-tree gradients summed."""
    grads = _zeros_like_params(params)
    for t in trees:
        _accumulate(params, t, grads, leaf_activation, None)
    if reg:
        for k in ("V", "W", "Ws", "L"):
            grads[k] += reg * params[k]
    return grads
