"""Backpropagation on a DAG of sigmoid and soft-maximum units, seed ``001_5914586c9936ae1a.txt``.

Units (the document's part (a); every node ``v`` has a scalar output ``o[v]``):

* ``input``:   ``o[v]`` is given.
* ``sigmoid``: $a[v] = \\sum_{u \\to v} w(u, v)\\, o[u]$, $o[v] = \\sigma(a[v])$.
* ``linear``:  $a[v] = \\sum_{u \\to v} w(u, v)\\, o[u]$, $o[v] = a[v]$ (the "implied layer" of part (b)).
* ``softmax`` with ``n`` pieces (the "soft maximum"):
  $a[v][i] = \\sum_{u \\to v} w(i, u, v)\\, o[u]$ for $i = 1..n$ and
  $o[v] = \\sigma_s(a[v]) \\cdot a[v] = \\sum_i \\sigma_s(a[v])_i\\, a[v][i]$,
  with $\\sigma_s$ the textbook softmax.

The document's units have **no bias**: the activation energy is a plain weighted
sum. The spec format therefore has no ``bias`` field (a ``bias`` key is
rejected with a message); a bias is an edge from an ``input`` node held at 1.

Error signals, in the document's notation, for an output ``v_out``:

$$\\gamma[v] = \\frac{\\partial o[v_{out}]}{\\partial a[v]}\\ \\ (\\text{sigmoid, linear}),\\qquad
  \\delta[v][i] = \\frac{\\partial o[v_{out}]}{\\partial a[v][i]}\\ \\ (\\text{softmax}),$$

so that $\\partial \\hat y/\\partial w(u, v) = \\gamma[v]\\, o[u]$ and
$\\partial \\hat y/\\partial w(i, u, v) = \\delta[v][i]\\, o[u]$. They are computed by
one sweep in reverse topological order (the corrected form of the document's
recursion; its own formulas hold only when every successor of ``v`` is a direct
parent of ``v_out`` — see ``docs/derivations.md``):

$$e[v] = \\frac{\\partial o[v_{out}]}{\\partial o[v]} = [v = v_{out}]
   + \\sum_{p:\\, v \\to p,\\ p\\ \\text{scalar}} \\gamma[p]\\, w(v, p)
   + \\sum_{p:\\, v \\to p,\\ p\\ \\text{softmax}} \\sum_j \\delta[p][j]\\, w(j, v, p),$$
$$\\gamma[v] = e[v]\\, \\sigma(a[v])(1-\\sigma(a[v]))\\ \\text{(sigmoid)},\\quad \\gamma[v] = e[v]\\ \\text{(linear)},$$
$$\\delta[v][i] = e[v]\\, \\Big(\\sigma_s(a[v])_i + a[v][i]\\,\\sigma_s(a[v])_i(1 - \\sigma_s(a[v])_i)
   - \\sum_{j \\ne i} a[v][j]\\, \\sigma_s(a[v])_i\\, \\sigma_s(a[v])_j\\Big).$$

For the squared loss $\\ell = \\tfrac12 \\sum_{v \\in \\text{outputs}} (o[v] - y_v)^2$
the same sweep is seeded with $e[v_{out}] = o[v_{out}] - y$ instead of 1.

Spec format (a JSON-able dict)::

    {"nodes": [{"name": "x1", "unit": "input"},
               {"name": "h", "unit": "sigmoid"},
               {"name": "m", "unit": "softmax", "pieces": 3},
               {"name": "y", "unit": "linear"}],
     "edges": [{"from": "x1", "to": "h", "weight": 0.5},
               {"from": "h", "to": "m", "weight": [0.1, -0.2, 0.3]},
               {"from": "m", "to": "y", "weight": 1.0}],
     "outputs": ["y"], "loss": "squared"}

An edge into an ``n``-piece softmax unit carries ``n`` weights ``w(1..n, u, v)``.

This module imports nothing from chainrule's engine; all traversals are iterative.
"""

from __future__ import annotations

import heapq
import json

import numpy as np

__all__ = [
    "UNITS",
    "sigmoid", "softmax", "soft_max_unit", "soft_max_unit_grad", "softmax_jacobian",
    "compile_spec", "forward", "backward", "loss", "output_sensitivities", "gradients",
    "weight_vector", "with_weights", "gradient_vector",
    "two_layer_forward", "two_layer_loss", "two_layer_gradients", "two_layer_spec", "EXAMPLE_SPEC",
]

UNITS = ("input", "sigmoid", "linear", "softmax")

#: A DAG with skip connections, all four kinds of units and two soft-maximum units, the output one
#: included (bias-free: the document's units have none). ``chainrule derive dag`` checks it; the
#: DAG tests use it. Treat it as read-only (copy it, e.g. ``json.loads(json.dumps(...))``, to edit).
EXAMPLE_SPEC = {
    "nodes": [
        {"name": "x1", "unit": "input"}, {"name": "x2", "unit": "input"},
        {"name": "h1", "unit": "sigmoid"}, {"name": "h2", "unit": "sigmoid"},
        {"name": "m", "unit": "softmax", "pieces": 3},
        {"name": "l", "unit": "linear"}, {"name": "y", "unit": "sigmoid"},
        {"name": "z", "unit": "softmax", "pieces": 2},
    ],
    "edges": [
        {"from": "x1", "to": "h1", "weight": 0.5}, {"from": "x2", "to": "h1", "weight": -0.7},
        {"from": "x1", "to": "h2", "weight": 1.1}, {"from": "h1", "to": "h2", "weight": 0.9},
        {"from": "h1", "to": "m", "weight": [0.1, -0.2, 0.3]},
        {"from": "h2", "to": "m", "weight": [1.0, 0.4, -0.8]},
        {"from": "x2", "to": "m", "weight": [0.3, 0.3, -1.0]},      # skip: input straight to the soft max
        {"from": "m", "to": "l", "weight": 1.3}, {"from": "x1", "to": "l", "weight": -0.4},
        {"from": "l", "to": "y", "weight": 0.8}, {"from": "h1", "to": "y", "weight": -1.2},
        {"from": "y", "to": "z", "weight": [1.0, -1.0]}, {"from": "m", "to": "z", "weight": [0.5, 0.7]},
    ],
    "outputs": ["z"],
    "loss": "squared",
}


# --------------------------------------------------------------------------- unit functions
def sigmoid(a):
    """$\\sigma(a) = 1/(1 + e^{-a})$ (overflow-free)."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(a, dtype=np.float64)))


def softmax(a):
    """The textbook softmax $\\sigma_s(a)_i = e^{a_i}/\\sum_j e^{a_j}$ (shifted by the max)."""
    a = np.asarray(a, dtype=np.float64)
    e = np.exp(a - np.max(a))
    return e / np.sum(e)


def softmax_jacobian(a):
    """$J\\sigma_s(a) = \\mathrm{Diag}(\\sigma_s(a)) - \\sigma_s(a)\\sigma_s(a)^\\top$ (the document's matrix after part (b)'s first result)."""
    s = softmax(a)
    return np.diag(s) - np.outer(s, s)


def soft_max_unit(a):
    """The soft-maximum unit's output $o = \\sigma_s(a) \\cdot a$ (part (a), first display)."""
    a = np.asarray(a, dtype=np.float64)
    return float(softmax(a) @ a)


def soft_max_unit_grad(a):
    """$\\partial(\\sigma_s(a)\\cdot a)/\\partial a_i = \\sigma_s(a)_i + a_i\\sigma_s(a)_i(1-\\sigma_s(a)_i) - \\sum_{j\\ne i} a_j \\sigma_s(a)_i\\sigma_s(a)_j$.

    The document's part (a) i. (output node), verified correct; it equals
    $\\sigma_s(a)_i\\,(1 + a_i - \\sigma_s(a)\\cdot a)$, which is how it is evaluated.
    """
    a = np.asarray(a, dtype=np.float64)
    s = softmax(a)
    return s * (1.0 + a - s @ a)


# --------------------------------------------------------------------------- spec handling
class _Graph:
    __slots__ = ("names", "index", "units", "pieces", "order", "in_edges", "out_edges",
                 "edges", "outputs", "inputs")


def compile_spec(spec: dict) -> _Graph:
    """Validate a spec and return its compiled graph (topological order by Kahn's algorithm, ties in spec order).

    Raises ``ValueError`` naming the node or edge at fault: unknown unit, duplicate
    name, edge to/from an unknown node, edge into an input, wrong number of
    weights, duplicate edge, a cycle, unknown outputs, a loss other than
    ``'squared'``, or a ``bias`` field (the document's units have none).
    """
    if not isinstance(spec, dict) or "nodes" not in spec or "edges" not in spec:
        raise ValueError("dag: a spec is a dict with 'nodes', 'edges', 'outputs' (and optional 'loss')")
    g = _Graph()
    g.names, g.index, g.units, g.pieces = [], {}, [], []
    for k, node in enumerate(spec["nodes"]):
        name = node.get("name")
        unit = node.get("unit")
        if not isinstance(name, str):
            raise ValueError(f"dag: node #{k} has no string 'name': {node!r}")
        if name in g.index:
            raise ValueError(f"dag: duplicate node name {name!r}")
        if unit not in UNITS:
            raise ValueError(f"dag: node {name!r} has unit {unit!r}; expected one of {UNITS}")
        if "bias" in node:
            raise ValueError(
                f"dag: node {name!r} has a 'bias' field, but the document's units have no bias "
                "(a[v] is a plain weighted sum); add an input node held at 1 and an edge from it instead"
            )
        pieces = 1
        if unit == "softmax":
            pieces = node.get("pieces")
            if not isinstance(pieces, int) or pieces < 1:
                raise ValueError(f"dag: softmax node {name!r} needs an integer 'pieces' >= 1, got {pieces!r}")
        g.index[name] = k
        g.names.append(name)
        g.units.append(unit)
        g.pieces.append(pieces)
    n = len(g.names)
    g.in_edges = [[] for _ in range(n)]   # (edge id, source)
    g.out_edges = [[] for _ in range(n)]  # (edge id, target)
    g.edges = []
    seen = set()
    for e, edge in enumerate(spec["edges"]):
        src, dst = edge.get("from"), edge.get("to")
        for end in (src, dst):
            if end not in g.index:
                raise ValueError(f"dag: edge #{e} {src!r} -> {dst!r} names an unknown node {end!r}")
        u, v = g.index[src], g.index[dst]
        if g.units[v] == "input":
            raise ValueError(f"dag: edge #{e} {src!r} -> {dst!r} goes into an input node")
        if (u, v) in seen:
            raise ValueError(f"dag: duplicate edge {src!r} -> {dst!r}")
        seen.add((u, v))
        w = edge.get("weight")
        if g.units[v] == "softmax":
            w = np.asarray(w, dtype=np.float64)
            if w.shape != (g.pieces[v],):
                raise ValueError(
                    f"dag: edge {src!r} -> {dst!r} goes into a {g.pieces[v]}-piece softmax unit and needs "
                    f"a list of {g.pieces[v]} weights w(i, u, v), got {edge.get('weight')!r}"
                )
        else:
            if not isinstance(w, (int, float, np.floating, np.integer)) or isinstance(w, bool):
                raise ValueError(f"dag: edge {src!r} -> {dst!r} needs a scalar 'weight', got {w!r}")
            w = float(w)
        g.edges.append((u, v, w))
        g.in_edges[v].append((e, u))
        g.out_edges[u].append((e, v))
    # Kahn's algorithm, smallest spec index first among the ready nodes.
    indeg = [len(g.in_edges[v]) for v in range(n)]
    ready = [v for v in range(n) if indeg[v] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        v = heapq.heappop(ready)
        order.append(v)
        for _, t in g.out_edges[v]:
            indeg[t] -= 1
            if indeg[t] == 0:
                heapq.heappush(ready, t)
    if len(order) != n:
        stuck = [g.names[v] for v in range(n) if indeg[v] > 0]
        raise ValueError(f"dag: the graph has a cycle through {stuck}")
    g.order = order
    outs = spec.get("outputs")
    if not outs:
        raise ValueError("dag: the spec needs a non-empty 'outputs' list")
    for name in outs:
        if name not in g.index:
            raise ValueError(f"dag: output {name!r} is not a node")
    g.outputs = [g.index[name] for name in outs]
    if spec.get("loss", "squared") != "squared":
        raise ValueError(f"dag: only the document's squared loss is supported, got {spec.get('loss')!r}")
    g.inputs = [v for v in range(n) if g.units[v] == "input"]
    return g


def _graph(spec):
    return spec if isinstance(spec, _Graph) else compile_spec(spec)


def _input_values(g, inputs):
    if isinstance(inputs, dict):
        missing = [g.names[v] for v in g.inputs if g.names[v] not in inputs]
        if missing:
            raise ValueError(f"dag: no value for input nodes {missing}")
        return {v: float(inputs[g.names[v]]) for v in g.inputs}
    vals = np.asarray(inputs, dtype=np.float64).reshape(-1)
    if vals.size != len(g.inputs):
        raise ValueError(
            f"dag: {len(g.inputs)} input nodes {[g.names[v] for v in g.inputs]} but {vals.size} values given"
        )
    return {v: float(x) for v, x in zip(g.inputs, vals)}


def _target_values(g, targets):
    if isinstance(targets, dict):
        return [float(targets[g.names[v]]) for v in g.outputs]
    vals = np.asarray(targets, dtype=np.float64).reshape(-1)
    if vals.size != len(g.outputs):
        raise ValueError(f"dag: {len(g.outputs)} outputs but {vals.size} targets given")
    return [float(t) for t in vals]


# --------------------------------------------------------------------------- forward / backward
def forward(spec, inputs) -> dict:
    """Evaluate every node in topological order (no recursion).

    Args:
        spec: a spec dict (or the result of :func:`compile_spec`).
        inputs: ``{name: value}`` for the input nodes, or their values in spec order.

    Returns:
        ``{'a': {name: a[v]}, 'o': {name: o[v]}, 'order': [names]}``; ``a[v]`` is a
        float for sigmoid/linear units, an ``n``-vector for softmax units, absent
        for inputs.
    """
    g = _graph(spec)
    o = [0.0] * len(g.names)
    a = [None] * len(g.names)
    vals = _input_values(g, inputs)
    for v in g.order:
        unit = g.units[v]
        if unit == "input":
            o[v] = vals[v]
            continue
        if unit == "softmax":
            av = np.zeros(g.pieces[v])
            for e, u in g.in_edges[v]:
                av = av + g.edges[e][2] * o[u]           # a[v][i] = sum_u w(i,u,v) o[u]
            a[v] = av
            o[v] = soft_max_unit(av)                     # o[v] = sigma_s(a[v]) . a[v]
        else:
            av = 0.0
            for e, u in g.in_edges[v]:
                av += g.edges[e][2] * o[u]               # a[v] = sum_u w(u,v) o[u]
            a[v] = av
            o[v] = float(sigmoid(av)) if unit == "sigmoid" else av
    return {
        "a": {g.names[v]: a[v] for v in range(len(g.names)) if a[v] is not None},
        "o": {g.names[v]: o[v] for v in range(len(g.names))},
        "order": [g.names[v] for v in g.order],
    }


def backward(spec, fw: dict, seed: dict) -> dict:
    """Reverse sweep: the δ/γ recursion seeded with ``seed = {output name: ∂(objective)/∂o[output]}``.

    With ``seed = {v_out: 1.0}`` the results are exactly the document's
    $\\gamma[v] = \\partial o[v_{out}]/\\partial a[v]$ and
    $\\delta[v][i] = \\partial o[v_{out}]/\\partial a[v][i]$ (see the module docstring
    for the recursion).

    Returns:
        ``{'gamma': {name: float}`` for sigmoid and linear units,
        ``'delta': {name: n-vector}`` for softmax units,
        ``'do': {name: ∂/∂o[v]}`` for every node (for inputs: the input gradient),
        ``'edges': [∂/∂w for each spec edge, in spec order]``
        (a float, or an ``n``-vector $\\delta[v]\\, o[u]$ for an edge into a softmax unit)``}``.
    """
    g = _graph(spec)
    n = len(g.names)
    a = [fw["a"].get(name) for name in g.names]
    o = [fw["o"][name] for name in g.names]
    e = [0.0] * n
    for name, s in seed.items():
        e[g.index[name]] += float(s)
    sig = [None] * n   # gamma (scalar) or delta (vector) per node
    for v in reversed(g.order):
        ev = e[v]
        for k, p in g.out_edges[v]:
            w = g.edges[k][2]
            if g.units[p] == "softmax":
                ev += float(sig[p] @ w)                   # sum_j delta[p][j] w(j, v, p)
            else:
                ev += sig[p] * w                          # gamma[p] w(v, p)
        e[v] = ev
        unit = g.units[v]
        if unit == "sigmoid":
            s = float(sigmoid(a[v]))
            sig[v] = ev * s * (1.0 - s)
        elif unit == "linear":
            sig[v] = ev
        elif unit == "softmax":
            sig[v] = ev * soft_max_unit_grad(a[v])
    edges = []
    for (u, v, _w) in g.edges:
        edges.append(sig[v] * o[u])                       # gamma[v] o[u], or delta[v][:] o[u]
    return {
        "gamma": {g.names[v]: sig[v] for v in range(n) if g.units[v] in ("sigmoid", "linear")},
        "delta": {g.names[v]: sig[v] for v in range(n) if g.units[v] == "softmax"},
        "do": {g.names[v]: e[v] for v in range(n)},
        "edges": edges,
    }


def loss(spec, inputs, targets) -> float:
    """The squared loss $\\ell = \\tfrac12 \\sum_{v \\in outputs} (o[v] - y_v)^2$ (the document's $\\ell^{sq}(\\hat y, y) = \\tfrac12(\\hat y - y)^2$)."""
    g = _graph(spec)
    fw = forward(g, inputs)
    ys = _target_values(g, targets)
    return 0.5 * sum((fw["o"][g.names[v]] - y) ** 2 for v, y in zip(g.outputs, ys))


def output_sensitivities(spec, inputs, output: str | None = None) -> dict:
    """The document's δ[v][i] and γ[v] for one output node (default: the only output).

    Returns the dict of :func:`backward` (with ``'edges'`` holding
    $\\partial \\hat y/\\partial w$) plus ``'forward'``.
    """
    g = _graph(spec)
    if output is None:
        if len(g.outputs) != 1:
            raise ValueError("dag: several outputs; name the one to differentiate")
        output = g.names[g.outputs[0]]
    fw = forward(g, inputs)
    out = backward(g, fw, {output: 1.0})
    out["forward"] = fw
    return out


def gradients(spec, inputs, targets) -> dict:
    """Gradients of :func:`loss`: the sweep seeded with $\\partial\\ell/\\partial o[v_{out}] = o[v_{out}] - y$.

    $\\partial \\ell/\\partial w(u,v) = (\\hat y - y)\\,\\gamma[v]\\, o[u]$ for one output
    (the document's part (b) first step, $\\nabla \\ell^{sq} = (\\hat y - y)\\nabla \\hat y$),
    summed over the outputs in general. Returns :func:`backward`'s dict (δ and γ
    here are derivatives of ``ℓ``) plus ``'forward'``.
    """
    g = _graph(spec)
    fw = forward(g, inputs)
    ys = _target_values(g, targets)
    seed = {}
    for v, y in zip(g.outputs, ys):
        seed[g.names[v]] = seed.get(g.names[v], 0.0) + fw["o"][g.names[v]] - y
    out = backward(g, fw, seed)
    out["forward"] = fw
    return out


def weight_vector(spec) -> np.ndarray:
    """All edge weights flattened in spec order (a softmax edge contributes its ``n`` weights)."""
    parts = [np.atleast_1d(np.asarray(e["weight"], dtype=np.float64)) for e in spec["edges"]]
    return np.concatenate(parts) if parts else np.zeros(0)


def with_weights(spec, vec) -> dict:
    """A copy of ``spec`` whose edge weights are taken from ``vec`` (the layout of :func:`weight_vector`)."""
    new = json.loads(json.dumps(spec, default=lambda x: np.asarray(x).tolist()))
    vec = np.asarray(vec, dtype=np.float64)
    k = 0
    for edge in new["edges"]:
        if isinstance(edge["weight"], (list, tuple)):
            m = len(edge["weight"])
            edge["weight"] = vec[k:k + m].tolist()
            k += m
        else:
            edge["weight"] = float(vec[k])
            k += 1
    if k != vec.size:
        raise ValueError(f"dag: the spec has {k} weights, the vector {vec.size}")
    return new


def gradient_vector(grads: dict) -> np.ndarray:
    """``grads['edges']`` flattened like :func:`weight_vector`."""
    parts = [np.atleast_1d(np.asarray(x, dtype=np.float64)) for x in grads["edges"]]
    return np.concatenate(parts) if parts else np.zeros(0)


# --------------------------------------------------------------------------- part (b)
def two_layer_forward(W1, W2, x) -> dict:
    """Part (b): $o[u] = \\sigma(W^{(1)} x)$, $a[v] = W^{(2)} o[u]$, $\\hat y = \\sigma_s(a[v])^\\top a[v]$.

    Shapes: ``x`` ``(d,)``, ``W1`` ``(h, d)``, ``W2`` ``(n, h)``.
    """
    x = np.asarray(x, dtype=np.float64)
    ou = sigmoid(W1 @ x)
    av = W2 @ ou
    s = softmax(av)
    return {"x": x, "o_u": ou, "a_v": av, "sigma_s": s, "y_hat": float(s @ av)}


def two_layer_loss(W1, W2, x, y) -> float:
    """$\\ell^{sq}(\\hat y, y) = \\tfrac12(\\hat y - y)^2$."""
    return 0.5 * (two_layer_forward(W1, W2, x)["y_hat"] - float(y)) ** 2


def two_layer_gradients(W1, W2, x, y, layout: str = "param") -> dict:
    """Part (b)'s closed forms for $\\nabla_{W^{(1)}}\\ell^{sq}$ and $\\nabla_{W^{(2)}}\\ell^{sq}$.

    As the document derives them (by $d\\hat y = \\mathrm{Tr}(G\\, dW)$, so ``G`` has
    the shape of $W^\\top$):

    $$G_2 = (\\hat y - y)\\big(o[u]\\,\\sigma_s(a[v])^\\top + o[u]\\, a[v]^\\top J\\sigma_s(a[v])\\big),$$
    $$G_1 = (\\hat y - y)\\, x \\big(\\sigma_s(a[v])^\\top + a[v]^\\top J\\sigma_s(a[v])\\big) W^{(2)}
            \\mathrm{Diag}\\big(\\sigma(W^{(1)}x) \\odot (1 - \\sigma(W^{(1)}x))\\big),$$

    with $J\\sigma_s(z) = \\mathrm{Diag}(\\sigma_s(z)) - \\sigma_s(z)\\sigma_s(z)^\\top$. Expanded
    correctly (the document's expansion of $G_2$ replaces $\\mathrm{Diag}(\\sigma_s)$
    by the vector $\\sigma_s$),
    $G_2 = (\\hat y - y)\\, o[u]\\big(\\sigma_s + a[v] \\odot \\sigma_s - (a[v]^\\top\\sigma_s)\\,\\sigma_s\\big)^\\top$.

    Args:
        layout: ``'param'`` (default) returns gradients shaped like ``W1``, ``W2``
            (that is $G_1^\\top$, $G_2^\\top$); ``'doc'`` returns ``G1``, ``G2``
            exactly as the document writes them.
    """
    fw = two_layer_forward(W1, W2, x)
    ou, av, s, xv = fw["o_u"], fw["a_v"], fw["sigma_s"], fw["x"]
    r = fw["y_hat"] - float(y)
    J = np.diag(s) - np.outer(s, s)
    row = s + av @ J                                    # sigma_s^T + a[v]^T J sigma_s, as a vector
    G2 = r * np.outer(ou, row)                          # (h, n)
    G1 = r * np.outer(xv, (row @ W2) * (ou * (1.0 - ou)))   # x (...) W2 Diag(sigma'(W1 x)), (d, h)
    if layout == "doc":
        return {"W1": G1, "W2": G2}
    if layout != "param":
        raise ValueError(f"dag: layout must be 'param' or 'doc', got {layout!r}")
    return {"W1": G1.T, "W2": G2.T}


def two_layer_spec(W1, W2) -> dict:
    """Part (b)'s network as a DAG spec: inputs ``x0..``, sigmoid units ``h0..``, a softmax unit ``y`` with ``n`` pieces.

    The implied linear layer ``a[v] = W2 o[u]`` is the softmax unit's activation
    energy: the edge ``h_j -> y`` carries the ``n`` weights ``W2[:, j]``.
    """
    W1 = np.asarray(W1, dtype=np.float64)
    W2 = np.asarray(W2, dtype=np.float64)
    h, d = W1.shape
    n = W2.shape[0]
    nodes = [{"name": f"x{i}", "unit": "input"} for i in range(d)]
    nodes += [{"name": f"h{j}", "unit": "sigmoid"} for j in range(h)]
    nodes.append({"name": "y", "unit": "softmax", "pieces": n})
    edges = [{"from": f"x{i}", "to": f"h{j}", "weight": float(W1[j, i])} for j in range(h) for i in range(d)]
    edges += [{"from": f"h{j}", "to": "y", "weight": W2[:, j].tolist()} for j in range(h)]
    return {"nodes": nodes, "edges": edges, "outputs": ["y"], "loss": "squared"}
