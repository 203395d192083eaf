"""DAG networks from a spec: seed 001's graphs of sigmoid and soft-maximum units, trained by the engine.

A spec (a dict, or the path of a JSON file holding one) lists the nodes, the weighted edges and the
outputs, in the format of :mod:`chainrule.derivations.dag` (which computes the document's δ/γ
recursion by hand; a bias-free spec is accepted by both)::

    {"nodes": [{"name": "x1", "unit": "input"}, {"name": "x2", "unit": "input"},
               {"name": "h", "unit": "tanh", "bias": 0.0},
               {"name": "m", "unit": "softmax", "pieces": 3},
               {"name": "y", "unit": "sigmoid"}],
     "edges": [{"from": "x1", "to": "h", "weight": 0.5}, {"from": "x2", "to": "h", "weight": -1.0},
               {"from": "h", "to": "m", "weight": [0.1, -0.2, 0.3]},
               {"from": "x1", "to": "m", "weight": [1.0, 0.0, -1.0]},
               {"from": "m", "to": "y", "weight": 1.0}, {"from": "x2", "to": "y"}],
     "outputs": ["y"], "loss": "squared", "seed": 0}

Units: every node ``v`` has a scalar output ``o[v]`` (one per example).

* ``input``: ``o[v]`` is given (inputs are numbered in spec order).
* ``linear`` (alias ``identity``), ``sigmoid``, ``tanh``, ``relu``, ``leaky_relu`` (optional
  ``"slope"``, default 0.01): ``a[v] = Σ_{u→v} w(u,v) o[u] (+ b[v])``, ``o[v] = f(a[v])``.
* ``softmax`` (alias ``smax``) with ``"pieces": n`` -- the document's *soft maximum*:
  ``a[v][i] = Σ_{u→v} w(i,u,v) o[u] (+ b[v][i])`` for ``i = 1..n`` and
  ``o[v] = σ_s(a[v]) · a[v] = Σ_i softmax(a[v])_i a[v][i]`` (:func:`chainrule.smax`).

Edges: ``{"from": u, "to": v, "weight": w}``; an edge into an ``n``-piece soft-maximum unit carries
``n`` weights.  ``weight`` may be omitted: it is then drawn from N(0, 1/fan_in) with the spec's
``"seed"`` (default 0).  Any edge between any two nodes is allowed as long as the graph stays
acyclic (skip connections are ordinary edges).

**Biases** (an extension: the document's units have none, and ``chainrule.derivations.dag``
rejects them): a node may carry ``"bias"``: a number (an ``n``-list for a soft-maximum unit), or
``true`` for a learnable bias starting at 0.  Without it the node has no bias (the default).

``"outputs"``: one or more node names; ``net(x)`` returns their ``o`` in that order.
``"loss"``: ``"squared"`` (default; ½ Σ_outputs (o − y)²), ``"bce"`` (binary cross-entropy of sigmoid
output units, computed from ``a[v]`` without overflow) or ``"ce"`` (softmax cross-entropy with the
outputs as the logits of the classes; targets are class indices or one-hot rows).
``"data"`` (optional, used by ``chainrule dag``): ``{"x": [[...], ...], "y": [[...], ...]}``.

Errors are :class:`DAGSpecError` (a ``ValueError``) naming the node or edge at fault; a cycle is
reported with its nodes in order (``a -> b -> c -> a``).  All traversals are iterative (Kahn's
algorithm), so a chain of thousands of nodes is fine.
"""
from __future__ import annotations

import heapq
import json
import os

import numpy as np

from .. import autograd as ag
from .. import debug
from ..ops import functional as F
from ..tensor import Tensor

__all__ = ["DAGSpecError", "DAGSpec", "UNITS", "LOSSES", "compile_spec", "load_spec", "dag_forward",
           "input_tensors", "dag_loss", "DAGNetwork"]

UNITS = ("input", "linear", "sigmoid", "tanh", "relu", "leaky_relu", "softmax")
ALIASES = {"identity": "linear", "smax": "softmax"}
LOSSES = ("squared", "bce", "ce")
_NODE_KEYS = {"name", "unit", "pieces", "bias", "slope"}
_EDGE_KEYS = {"from", "to", "weight"}


class DAGSpecError(ValueError):
    """A DAG spec that cannot be built: the message names the node, edge or cycle at fault."""


class _Edge:
    __slots__ = ("src", "dst", "u", "v", "weight", "label")

    def __init__(self, src, dst, u, v, weight):
        self.src, self.dst, self.u, self.v, self.weight = src, dst, u, v, weight
        self.label = f"w[{src}->{dst}]"


class DAGSpec:
    """A validated spec: ``names``, ``units``, ``pieces`` (1 for scalar units), ``slopes``,
    ``biases`` (None, or the initial value), ``edges`` (spec order), ``in_edges[v]`` (edge indices),
    ``order`` (a topological order: Kahn's algorithm, ties broken by spec order), ``inputs`` and
    ``outputs`` (node indices), ``loss``, ``seed``, ``data`` and the original ``spec`` dict."""
    __slots__ = ("names", "index", "units", "pieces", "slopes", "biases", "edges", "in_edges",
                 "out_edges", "order", "inputs", "outputs", "loss", "seed", "data", "spec")

    def __repr__(self):
        return (f"DAGSpec({len(self.names)} nodes, {len(self.edges)} edges, inputs "
                f"{[self.names[v] for v in self.inputs]}, outputs {[self.names[v] for v in self.outputs]})")


def load_spec(spec):
    """A spec dict as given, or read from a JSON file path."""
    if isinstance(spec, (str, os.PathLike)):
        from ..data._io import decode_text, read_file_bytes
        name = os.fspath(spec)

        def error(reason, line=None, column=None):
            where = f" at line {line}, column {column}" if line is not None else ""
            return DAGSpecError(f"dag: {name}{where}: {reason}")
        try:
            text = decode_text(read_file_bytes(name, error, what="DAG spec file"), error)
        except FileNotFoundError:
            raise FileNotFoundError(f"dag: no spec file {name!r}") from None

        def constant(word):            # JSON has no NaN/Infinity; Python's json module would accept them
            raise ValueError(word)
        try:
            return json.loads(text, parse_constant=constant)
        except json.JSONDecodeError as e:
            raise error(f"invalid JSON: {e.msg}", e.lineno, e.colno) from None
        except ValueError as e:
            pos = text.find(str(e))
            line = text.count("\n", 0, pos) + 1
            raise error(f"{e} is not a JSON number (weights, biases and slopes must be finite)",
                        line, pos - (text.rfind("\n", 0, pos) + 1) + 1) from None
        except RecursionError:
            raise error("the JSON is nested too deeply to be a DAG spec") from None
    return spec


def _is_number(w):
    """A finite int or float (not a bool): NaN and infinities are refused as weights, biases, slopes."""
    return (isinstance(w, (int, float, np.integer, np.floating)) and not isinstance(w, bool)
            and bool(np.isfinite(w)))


def _find_cycle(n, in_edges, edges, indeg):
    """A cycle among the nodes Kahn's algorithm could not order, as node indices in edge order."""
    start = min(v for v in range(n) if indeg[v] > 0)
    pos = {start: 0}
    path = [start]
    cur = start
    while True:
        # cur still has an unprocessed incoming edge, and it comes from another stuck node
        prev = next(edges[e].u for e in in_edges[cur] if indeg[edges[e].u] > 0)
        if prev in pos:
            cyc = path[pos[prev]:]       # cur <- ... following edges backwards
            cyc.reverse()
            k = cyc.index(min(cyc))      # start at the node that comes first in the spec
            return cyc[k:] + cyc[:k]
        pos[prev] = len(path)
        path.append(prev)
        cur = prev


def compile_spec(spec) -> DAGSpec:
    """Validate a spec (dict or JSON path; a :class:`DAGSpec` is returned unchanged) and compile it.

    Raises :class:`DAGSpecError` for: a malformed spec, a duplicate node, an unknown unit, a
    soft-maximum unit without an integer ``pieces >= 1``, an edge from or to an unknown node, an edge
    into an input node, a duplicate edge, a weight of the wrong length (``n`` weights into an
    ``n``-piece soft-maximum unit, one number otherwise), a bias of the wrong length, a non-input node
    without incoming edges, a cycle (named in order), missing or unknown outputs, an unknown loss.
    """
    if isinstance(spec, DAGSpec):
        return spec
    if isinstance(spec, (str, os.PathLike)):        # name the file in every error about its content
        path = os.fspath(spec)
        try:
            return compile_spec(load_spec(spec))
        except DAGSpecError as e:
            msg = str(e)
            if path in msg:
                raise
            raise DAGSpecError(msg.replace("dag: ", f"dag: {path}: ", 1)) from None
    spec = load_spec(spec)
    if not isinstance(spec, dict) or not isinstance(spec.get("nodes"), list) or not isinstance(spec.get("edges"), list):
        raise DAGSpecError("dag: a spec is a dict with a 'nodes' list, an 'edges' list and 'outputs' "
                           "(optional: 'loss', 'seed', 'data')")
    extra = set(spec) - {"nodes", "edges", "outputs", "loss", "seed", "data", "comment"}
    if extra:
        raise DAGSpecError(f"dag: unknown top-level keys {sorted(extra)}; allowed: nodes, edges, outputs, loss, "
                           "seed, data, comment")
    g = DAGSpec()
    g.spec = spec
    g.names, g.index, g.units, g.pieces, g.slopes, g.biases = [], {}, [], [], [], []
    for k, node in enumerate(spec["nodes"]):
        if not isinstance(node, dict):
            raise DAGSpecError(f"dag: node #{k} must be a dict like {{'name': 'h', 'unit': 'sigmoid'}}, got {node!r}")
        name = node.get("name")
        if not isinstance(name, str) or not name:
            raise DAGSpecError(f"dag: node #{k} has no string 'name': {node!r}")
        if "->" in name or "[" in name or "]" in name:
            raise DAGSpecError(f"dag: node #{k} name {name!r} contains '->', '[' or ']', which parameter names "
                               "(w[u->v]) use: two edges could share one parameter")
        if name in g.index:
            raise DAGSpecError(f"dag: duplicate node name {name!r} (nodes #{g.index[name]} and #{k})")
        extra = set(node) - _NODE_KEYS
        if extra:
            raise DAGSpecError(f"dag: node {name!r} has unknown keys {sorted(extra)}; allowed: {sorted(_NODE_KEYS)}")
        unit = node.get("unit")
        if not isinstance(unit, str):
            raise DAGSpecError(f"dag: node {name!r}: 'unit' must be a string like \"sigmoid\", got {unit!r}")
        unit = ALIASES.get(unit, unit)
        if unit not in UNITS:
            raise DAGSpecError(f"dag: node {name!r} has unknown unit {node.get('unit')!r}; expected one of "
                               f"{list(UNITS)} (aliases: {ALIASES})")
        pieces = 1
        if unit == "softmax":
            pieces = node.get("pieces")
            if not isinstance(pieces, int) or isinstance(pieces, bool) or pieces < 1:
                raise DAGSpecError(f"dag: soft-maximum node {name!r} needs an integer 'pieces' >= 1, got {pieces!r}")
        elif "pieces" in node:
            raise DAGSpecError(f"dag: node {name!r} is a {unit} unit; only soft-maximum ('softmax') units "
                               "have 'pieces'")
        slope = node.get("slope", 0.01)
        if unit != "leaky_relu" and "slope" in node:
            raise DAGSpecError(f"dag: node {name!r} is a {unit} unit; only leaky_relu units have a 'slope'")
        if not _is_number(slope):
            raise DAGSpecError(f"dag: node {name!r}: 'slope' must be a number, got {slope!r}")
        bias = node.get("bias")
        if bias is not None and bias is not False:
            if unit == "input":
                raise DAGSpecError(f"dag: input node {name!r} cannot have a bias")
            if bias is True:
                bias = np.zeros(pieces) if unit == "softmax" else 0.0
            elif unit == "softmax":
                ok = isinstance(bias, list) and all(_is_number(x) for x in bias)
                b = np.asarray(bias, dtype=np.float64) if ok else None
                if b is None or b.shape != (pieces,):
                    raise DAGSpecError(f"dag: soft-maximum node {name!r} has {pieces} pieces and needs a 'bias' "
                                       f"list of {pieces} numbers (or true), got {bias!r}")
                bias = b
            elif _is_number(bias):
                bias = float(bias)
            else:
                raise DAGSpecError(f"dag: node {name!r} needs a number (or true) as 'bias', got {bias!r}")
        else:
            bias = None
        g.index[name] = k
        g.names.append(name)
        g.units.append(unit)
        g.pieces.append(pieces)
        g.slopes.append(float(slope))
        g.biases.append(bias)
    n = len(g.names)
    g.edges, g.in_edges, g.out_edges = [], [[] for _ in range(n)], [[] for _ in range(n)]
    seen = {}
    for k, edge in enumerate(spec["edges"]):
        if not isinstance(edge, dict):
            raise DAGSpecError(f"dag: edge #{k} must be a dict like {{'from': 'x', 'to': 'h', 'weight': 0.5}}, "
                               f"got {edge!r}")
        src, dst = edge.get("from"), edge.get("to")
        extra = set(edge) - _EDGE_KEYS
        if extra:
            raise DAGSpecError(f"dag: edge #{k} {src!r} -> {dst!r} has unknown keys {sorted(extra)}; "
                               f"allowed: {sorted(_EDGE_KEYS)}")
        for end in (src, dst):
            if not isinstance(end, str) or end not in g.index:
                raise DAGSpecError(f"dag: edge #{k} {src!r} -> {dst!r} names an unknown node {end!r}")
        u, v = g.index[src], g.index[dst]
        if g.units[v] == "input":
            raise DAGSpecError(f"dag: edge #{k} {src!r} -> {dst!r} goes into the input node {dst!r} "
                               "(input nodes take no incoming edges)")
        if (u, v) in seen:
            raise DAGSpecError(f"dag: duplicate edge {src!r} -> {dst!r} (edges #{seen[(u, v)]} and #{k})")
        seen[(u, v)] = k
        w = edge.get("weight")
        if w is not None:
            if g.units[v] == "softmax":
                ok = isinstance(w, (list, tuple)) and all(_is_number(x) for x in w)
                arr = np.asarray(w, dtype=np.float64) if ok else None
                if arr is None or arr.shape != (g.pieces[v],):
                    raise DAGSpecError(
                        f"dag: edge {src!r} -> {dst!r} goes into the {g.pieces[v]}-piece soft-maximum unit {dst!r} "
                        f"and needs a list of {g.pieces[v]} weights w(i, u, v), got {w!r}")
                w = arr
            else:
                if not _is_number(w):
                    raise DAGSpecError(f"dag: edge {src!r} -> {dst!r} goes into the {g.units[v]} unit {dst!r} and "
                                       f"needs one number as 'weight', got {w!r}")
                w = float(w)
        e = _Edge(src, dst, u, v, w)
        g.in_edges[v].append(len(g.edges))
        g.out_edges[u].append(len(g.edges))
        g.edges.append(e)
    for v in range(n):
        if g.units[v] != "input" and not g.in_edges[v]:
            raise DAGSpecError(f"dag: node {g.names[v]!r} ({g.units[v]}) has no incoming edges; only input "
                               "nodes may have none")
    # Kahn's algorithm, ties broken by spec order (smallest index first).  derivations/dag.py has
    # its own copy on purpose: the derivations are the engine-free witness and import nothing of it.
    indeg = [len(g.in_edges[v]) for v in range(n)]
    ready = [v for v in range(n) if indeg[v] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        v = heapq.heappop(ready)
        order.append(v)
        for e in g.out_edges[v]:
            t = g.edges[e].v
            indeg[t] -= 1
            if indeg[t] == 0:
                heapq.heappush(ready, t)
    if len(order) != n:
        cyc = _find_cycle(n, g.in_edges, g.edges, indeg)
        names = [g.names[v] for v in cyc]
        raise DAGSpecError(f"dag: the graph has a cycle: {' -> '.join(names + [names[0]])}")
    g.order = order
    g.inputs = [v for v in range(n) if g.units[v] == "input"]
    if not g.inputs:
        raise DAGSpecError("dag: the spec has no input node")
    outs = spec.get("outputs")
    if isinstance(outs, str):
        outs = [outs]
    if not outs or not isinstance(outs, list):
        raise DAGSpecError("dag: the spec needs a non-empty 'outputs' list of node names")
    for name in outs:
        if not isinstance(name, str) or name not in g.index:
            raise DAGSpecError(f"dag: output {name!r} is not a node (nodes: {g.names})")
    if len(set(outs)) != len(outs):
        raise DAGSpecError(f"dag: 'outputs' lists a node twice: {outs}")
    g.outputs = [g.index[name] for name in outs]
    g.loss = spec.get("loss", "squared")
    if not isinstance(g.loss, str) or g.loss not in LOSSES:
        raise DAGSpecError(f"dag: unknown loss {g.loss!r}; expected one of {list(LOSSES)}")
    if g.loss == "bce":
        bad = [g.names[v] for v in g.outputs if g.units[v] != "sigmoid"]
        if bad:
            raise DAGSpecError(f"dag: loss 'bce' needs sigmoid output units (o[v] a probability); {bad} are not")
    if g.loss == "ce" and len(g.outputs) < 2:
        raise DAGSpecError("dag: loss 'ce' treats the outputs as the logits of the classes and needs at least "
                           "2 outputs")
    seed = spec.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise DAGSpecError(f"dag: 'seed' must be an integer, got {seed!r}")
    g.seed = seed
    g.data = spec.get("data")
    return g


def initial_weights(g: DAGSpec):
    """Every edge's initial weight: the spec's, or N(0, 1/fan_in) from ``np.random.default_rng(seed)``
    (drawn in spec order, so adding a weight to one edge does not change the others' draws)."""
    rng = np.random.default_rng(g.seed)
    out = []
    for e in g.edges:
        shape = (g.pieces[e.v],) if g.units[e.v] == "softmax" else ()
        draw = rng.standard_normal(shape) / np.sqrt(len(g.in_edges[e.v]))
        out.append(np.asarray(e.weight if e.weight is not None else draw, dtype=np.float64))
    return out


# ------------------------------------------------------------------------------------------ forward
def input_tensors(g: DAGSpec, x, dtype=None, requires_grad=False):
    """The input values as one ``(N, n_inputs)`` tensor, and whether a single example was given.

    ``x``: ``(n_inputs,)`` (one example), ``(N, n_inputs)`` (columns in the spec order of the input
    nodes), or a dict ``{input name: (N,) values}``.
    """
    names = [g.names[v] for v in g.inputs]
    if isinstance(x, dict):
        missing = [k for k in names if k not in x]
        unknown = [k for k in x if k not in names]
        if missing or unknown:
            raise DAGSpecError(f"dag: inputs given for {sorted(x)}, but the input nodes are {names}"
                               + (f"; missing {missing}" if missing else "")
                               + (f"; unknown {unknown}" if unknown else ""))
        cols = [np.asarray(x[k].data if isinstance(x[k], Tensor) else x[k]) for k in names]
        single = all(c.ndim == 0 for c in cols)
        arr = np.stack([np.atleast_1d(c) for c in cols], axis=1)
    else:
        arr = np.asarray(x.data if isinstance(x, Tensor) else x)
        single = arr.ndim == 1
        if single:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape[1] != len(names):
            raise DAGSpecError(f"dag: expected inputs of shape (N, {len(names)}) for the input nodes {names}, "
                               f"got shape {np.asarray(x.data if isinstance(x, Tensor) else x).shape}")
    dt = np.dtype(dtype) if dtype is not None else (arr.dtype if arr.dtype.kind == "f" else np.dtype(np.float64))
    return Tensor(arr.astype(dt, copy=False), requires_grad=requires_grad, name="x"), single


def dag_forward(g: DAGSpec, weights, biases, X):
    """Evaluate every node in topological order, batched over the rows of ``X``.

    Args:
        g: a compiled spec.
        weights: one tensor per edge, in spec order (a 0-d tensor, or ``(n,)`` into a soft max).
        biases: ``{node index or name: tensor}`` (may be empty).
        X: the ``(N, n_inputs)`` input tensor (see :func:`input_tensors`).

    Returns:
        ``{'a': {v: tensor}, 'o': {v: tensor}}`` keyed by node index: ``a[v]`` is ``(N,)`` (``(N, n)``
        for a soft-maximum unit), ``o[v]`` is ``(N,)``.  The tensors are named ``a[name]`` and
        ``o[name]`` (for a linear unit ``o[v]`` *is* ``a[v]``, named ``a[name]``), so that
        :func:`chainrule.record_deltas` can fetch ``∂L/∂a[v]`` by name.
    """
    a, o = {}, {}
    for j, v in enumerate(g.inputs):
        t = X[:, j]
        t.name = f"o[{g.names[v]}]"
        o[v] = t
    for v in g.order:
        unit = g.units[v]
        if unit == "input":
            continue
        ins = g.in_edges[v]
        soft = unit == "softmax"
        if len(ins) == 1:
            e = ins[0]
            ou = o[g.edges[e].u]
            av = (ou.reshape(-1, 1) * weights[e]) if soft else ou * weights[e]
        else:
            P = F.stack([o[g.edges[e].u] for e in ins], axis=1)         # (N, k): the predecessors' outputs
            Wv = F.stack([weights[e] for e in ins], axis=0)             # (k,) or (k, n)
            av = P @ Wv                                                 # a[v] = Σ_u w(u,v) o[u]
        b = biases.get(v) if biases else None
        if b is None and biases:
            b = biases.get(g.names[v])
        if b is not None:
            av = av + b
        av.name = f"a[{g.names[v]}]"
        a[v] = av
        if unit == "linear":
            ov = av
        elif unit == "sigmoid":
            ov = F.sigmoid(av)
        elif unit == "tanh":
            ov = F.tanh(av)
        elif unit == "relu":
            ov = F.relu(av)
        elif unit == "leaky_relu":
            ov = F.leaky_relu(av, g.slopes[v])
        else:                                                           # soft maximum σ_s(a[v]) · a[v]
            ov = F.smax(av, axis=-1)
        if ov is not av:
            ov.name = f"o[{g.names[v]}]"
        o[v] = ov
    return {"a": a, "o": o}


def _targets(g, y, n, single, dtype):
    t = np.asarray(y.data if isinstance(y, Tensor) else y)
    k = len(g.outputs)
    if g.loss == "ce" and t.dtype.kind in "iu":
        t = t.reshape(-1)
        if t.shape != (n,):
            raise DAGSpecError(f"dag: loss 'ce' with class indices needs {n} targets, got shape {np.shape(y)}")
        if t.size and (t.min() < 0 or t.max() >= k):
            raise DAGSpecError(f"dag: class index out of range [0, {k}) in the targets")
        return t
    if t.ndim > 2 or (t.ndim == 2 and t.shape != (n, k)) or t.size != n * k:
        raise DAGSpecError(f"dag: expected targets of shape ({n}, {k}) for the outputs "
                           f"{[g.names[v] for v in g.outputs]}, got shape {np.shape(y)}")
    t = t.reshape(n, k)
    return t.astype(dtype, copy=False)


def dag_loss(g: DAGSpec, cache, y, single=False, reduction="mean"):
    """The spec's loss of a :func:`dag_forward` result against targets ``y``.

    Per example: ``squared`` ½ Σ_outputs (o[v] − y_v)²; ``bce`` Σ_outputs softplus(a[v]) − y_v a[v]
    (= −y log o − (1−y) log(1−o) for the sigmoid output o = σ(a)); ``ce``: −log softmax(o[outputs])[c].
    ``reduction``: ``'mean'`` over the examples (what :func:`chainrule.models.dag.train` minimises) or ``'sum'``
    (each example's error signals then appear unscaled in ``record_deltas``).
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"dag: reduction must be 'mean' or 'sum', got {reduction!r}")
    outs = [cache["o"][v] for v in g.outputs]
    n = outs[0].shape[0]
    t = _targets(g, y, n, single, outs[0].dtype)
    scale = 1.0 / n if reduction == "mean" else 1.0
    if g.loss == "ce":
        Z = F.stack(outs, axis=1)
        return F.softmax_cross_entropy(Z, t, weight=scale)
    total = None
    for j, v in enumerate(g.outputs):
        tj = t[:, j]
        if g.loss == "squared":
            r = outs[j] - tj
            s = (r * r).sum() * 0.5
        else:
            av = cache["a"][v]
            s = (F.softplus(av) - av * tj).sum()
        total = s if total is None else total + s
    return total * scale if scale != 1.0 else total


# ------------------------------------------------------------------------------------------ module
from .module import Module, Parameter  # noqa: E402


def _fmt(v):
    v = np.asarray(v)
    if v.ndim == 0 or v.size == 1:
        return f"{float(v.reshape(-1)[0]): .6g}"
    return "[" + ", ".join(f"{float(x): .4g}" for x in v.reshape(-1)) + "]"


class DAGNetwork(Module):
    """A network whose graph is a DAG spec (see the module docstring for the format).

    >>> import chainrule as cr
    >>> spec = {"nodes": [{"name": "x", "unit": "input"}, {"name": "h", "unit": "sigmoid"},
    ...                   {"name": "y", "unit": "softmax", "pieces": 2}],
    ...         "edges": [{"from": "x", "to": "h", "weight": 1.0},
    ...                   {"from": "h", "to": "y", "weight": [0.5, -0.5]},
    ...                   {"from": "x", "to": "y", "weight": [1.0, 2.0]}], "outputs": ["y"]}
    >>> net = cr.nn.DAGNetwork(spec)
    >>> [name for name, _ in net.named_parameters()]
    ['w[x->h]', 'w[h->y]', 'w[x->y]']
    >>> net([[0.0], [1.0]]).shape
    (2, 1)

    Every edge's weight is a :class:`Parameter` named ``w[u->v]`` (a scalar, or ``(n,)`` into an
    ``n``-piece soft-maximum unit), every bias one named ``b[v]``.  ``net(x)`` evaluates the nodes in
    topological order, batched over the examples: ``x`` is ``(N, n_inputs)`` (inputs in spec order),
    ``(n_inputs,)`` for one example, or ``{input name: (N,) array}``; it returns ``(N, n_outputs)``
    (``(n_outputs,)`` for one example).  Backward is the engine's.

    Args:
        spec: a spec dict, a JSON file path, or a compiled :class:`DAGSpec`.
        dtype: the parameters' dtype (float64 by default: these networks are small, and their error
            signals are compared with the hand derivations in float64).
    """

    def __init__(self, spec, dtype=np.float64):
        super().__init__()
        g = compile_spec(spec)
        self.graph = g
        self.loss_kind = g.loss
        self._edge_names = []
        self._bias_names = {}
        for e, w in zip(g.edges, initial_weights(g)):
            self._register(e.label, Parameter(np.array(w, dtype=dtype), name=e.label))
            self._edge_names.append(e.label)
        for v, b in enumerate(g.biases):
            if b is not None:
                name = f"b[{g.names[v]}]"
                self._register(name, Parameter(np.array(b, dtype=dtype), name=name))
                self._bias_names[v] = name

    def extra_repr(self):
        g = self.graph
        return (f"{len(g.names)} nodes, {len(g.edges)} edges, inputs {self.input_names}, outputs "
                f"{self.output_names}, loss {self.loss_kind!r}")

    def _register(self, name, p):
        reg = getattr(self, "register_parameter", None)
        if reg is not None:
            reg(name, p)
        else:
            setattr(self, name, p)

    # ----------------------------------------------------------------- structure
    @property
    def input_names(self):
        return [self.graph.names[v] for v in self.graph.inputs]

    @property
    def output_names(self):
        return [self.graph.names[v] for v in self.graph.outputs]

    def edge_weights(self):
        """The edge parameters, in spec order."""
        return [getattr(self, name) for name in self._edge_names]

    def biases(self):
        """``{node index: bias parameter}``."""
        return {v: getattr(self, name) for v, name in self._bias_names.items()}

    def _dtype(self):
        ws = self.edge_weights()
        return ws[0].dtype if ws else np.dtype(np.float64)

    def to_spec(self):
        """The spec with the current weights and biases written in (a JSON-able dict)."""
        spec = json.loads(json.dumps(self.graph.spec, default=lambda x: np.asarray(x).tolist()))
        for edge, w in zip(spec["edges"], self.edge_weights()):
            edge["weight"] = np.asarray(w.data, dtype=np.float64).tolist()
        for node in spec["nodes"]:
            v = self.graph.index[node["name"]]
            if v in self._bias_names:
                node["bias"] = np.asarray(getattr(self, self._bias_names[v]).data, dtype=np.float64).tolist()
        return spec

    # ----------------------------------------------------------------- forward / loss
    def run(self, x, requires_grad_inputs=False):
        """Forward pass returning the whole cache: ``{'a': {v: tensor}, 'o': {v: tensor}, 'x': X,
        'single': bool}`` (see :func:`dag_forward`)."""
        X, single = input_tensors(self.graph, x, self._dtype(), requires_grad_inputs)
        cache = dag_forward(self.graph, self.edge_weights(), self.biases(), X)
        cache["x"], cache["single"] = X, single
        return cache

    def forward(self, x):
        cache = self.run(x)
        outs = [cache["o"][v] for v in self.graph.outputs]
        out = outs[0].reshape(-1, 1) if len(outs) == 1 else F.stack(outs, axis=1)
        return out.reshape(-1) if cache["single"] else out

    def loss(self, x, y, reduction="mean"):
        """The spec's loss (``squared`` / ``bce`` / ``ce``, see :func:`dag_loss`) on inputs ``x`` and
        targets ``y`` (``(N, n_outputs)``; for ``ce`` class indices ``(N,)`` or one-hot rows)."""
        cache = self.run(x)
        return dag_loss(self.graph, cache, y, cache["single"], reduction)

    def predict(self, x):
        """Class predictions: the arg-max output for ``ce``; otherwise ``o > 0.5`` per output (0/1)."""
        with ag.no_grad():
            out = self.forward(np.atleast_2d(np.asarray(x, dtype=np.float64))).data
        if self.loss_kind == "ce":
            return out.argmax(axis=1)
        return (out > 0.5).astype(np.int64)

    def accuracy(self, X, Y):
        """Fraction of examples whose :meth:`predict` matches the targets (all outputs right)."""
        pred = self.predict(X)
        Y = np.asarray(Y)
        if self.loss_kind == "ce":
            cls = Y.argmax(axis=1) if Y.ndim == 2 else Y.reshape(-1)
            return float(np.mean(pred == cls))
        Y = Y.reshape(pred.shape)
        return float(np.mean(np.all(pred == (Y > 0.5), axis=1)))

    # ----------------------------------------------------------------- explain
    def explain(self, x, y, file=None, quiet=False):
        """Every node's activation ``a[v]``, output ``o[v]`` and error signal, from the engine.

        The loss (reduction ``'sum'``, so each example's signals are its own) is backpropagated under
        :func:`chainrule.record_deltas`, and the signals are read by tensor name, in seed 001's
        notation:

        * ``γ[v] = ∂L/∂a[v]`` for scalar units (sigmoid, linear, tanh, relu, leaky_relu);
        * ``δ[v][i] = ∂L/∂a[v][i]`` for a soft-maximum unit (one per piece);
        * ``∂L/∂o[v]`` for every node (for an input node: the gradient of the loss w.r.t. that input).

        For the squared loss of one output these are the document's γ and δ times ``(ŷ − y)``
        (they are what ``chainrule.derivations.dag.gradients`` returns).  The table is printed
        (to ``file``, default stdout; nothing with ``quiet=True``) and returned as a dict
        ``{'loss': float, 'nodes': {name: {'unit', 'a', 'o', 'gamma' | 'delta', 'do'}}}`` whose arrays
        have one row per example (the example axis dropped when ``x`` is a single example).
        """
        for p in self.parameters():
            p.grad = None
        cache = self.run(x, requires_grad_inputs=True)
        single = cache["single"]
        L = dag_loss(self.graph, cache, y, single, reduction="sum")
        with debug.record_deltas() as deltas:
            L.backward()
        for p in self.parameters():
            p.grad = None
        g = self.graph
        nodes = {}
        for v in g.order:
            name, unit = g.names[v], g.units[v]
            o_t = cache["o"][v]
            ent = {"unit": unit, "o": np.array(o_t.data)}
            do = deltas[o_t] if o_t in deltas else np.zeros(o_t.shape, o_t.dtype)
            if unit != "input":
                a_t = cache["a"][v]
                ent["a"] = np.array(a_t.data)
                key = f"a[{name}]"
                da = deltas[key] if key in deltas else np.zeros(a_t.shape, a_t.dtype)
                ent["delta" if unit == "softmax" else "gamma"] = da
            ent["do"] = np.array(do)
            if single:
                ent = {k: (val[0] if isinstance(val, np.ndarray) else val) for k, val in ent.items()}
            nodes[name] = ent
        result = {"loss": float(L.item()), "loss_kind": self.loss_kind, "nodes": nodes}
        if not quiet:
            self._print_explain(result, single, file)
        return result

    def _print_explain(self, result, single, file):
        import sys
        out = file or sys.stdout
        rows = []
        first = (lambda a: a) if single else (lambda a: np.asarray(a)[0])
        for name, ent in result["nodes"].items():
            unit = ent["unit"]
            if unit == "softmax":
                unit = f"softmax({self.graph.pieces[self.graph.index[name]]})"
            sig = ("δ", ent["delta"]) if "delta" in ent else ("γ", ent["gamma"]) if "gamma" in ent else ("", None)
            rows.append((name, unit, _fmt(first(ent["a"])) if "a" in ent else "", _fmt(first(ent["o"])),
                         f"{sig[0]}={_fmt(first(sig[1]))}" if sig[1] is not None else "", _fmt(first(ent["do"]))))
        n = 1 if single else len(next(iter(result["nodes"].values()))["o"])
        head = ("node", "unit", "a[v]", "o[v]", "error signal", "∂L/∂o[v]")
        widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
        print(f"explain: loss ({self.loss_kind}, summed over the examples) = {result['loss']:.6g}"
              + (f"  [{n} examples; the first one shown]" if n > 1 else ""), file=out)
        print("  ".join(h.ljust(w) for h, w in zip(head, widths)), file=out)
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)), file=out)
        print("γ[v] = ∂L/∂a[v] (scalar units), δ[v][i] = ∂L/∂a[v][i] (soft-maximum units), seed 001's notation",
              file=out)
