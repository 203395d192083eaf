"""Drawing the graph that produced a tensor: ops, shapes, names and the gradients that flowed back.

    >>> import chainrule as cr
    >>> W = cr.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True, name="W")
    >>> loss = cr.tanh(W @ cr.tensor([1.0, -1.0])).sum()
    >>> with cr.record_deltas() as d:
    ...     loss.backward(retain_graph=True)
    >>> cr.draw(loss, "graph.svg", deltas=d)          # doctest: +SKIP
    'graph.svg'

The graph is walked iteratively from the tensor's node through ``Node.parents`` (leaves are the
tensors themselves), so graphs of any depth are fine.  Each op node shows the op's name, the tensor's
name if it has one, its shape and dtype; each leaf its name, shape and dtype.  With ``show_grad``,
every node whose gradient is known shows it: the value of ``∂out/∂t`` for a one-element ``t``, its
norm ``‖∂out/∂t‖`` otherwise.  Gradients come from ``deltas`` (a :class:`chainrule.Deltas` recorded
by :func:`chainrule.record_deltas` during backward -- the only way to know the gradients of
intermediate tensors) and, for leaves, from ``.grad``.

Backward frees the graph unless ``retain_graph=True``: draw before backward, or backward with
``retain_graph=True`` (a freed graph is drawn as far as it still exists, with a warning).

Rendering goes through the ``graphviz`` Python package and Graphviz's ``dot`` program (the output
format is the path's suffix: ``.svg``, ``.png``, ``.pdf``; ``.dot``/``.gv`` writes the DOT text).
Without ``dot`` the DOT text is written next to the requested path (``graph.svg`` -> ``graph.dot``)
and a :class:`DrawWarning` says how to install Graphviz.  Without the Python package but with
``dot``, ``dot`` is run directly.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import warnings

import numpy as np

from .autograd import Node, RowSparseGrad
from .tensor import Tensor

__all__ = ["draw", "to_dot", "DrawWarning"]

_INSTALL = ("install Graphviz to render it: `apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` "
            "(macOS) or `conda install graphviz`, and `pip install graphviz`")
_TEXT_FORMATS = ("dot", "gv")


class DrawWarning(UserWarning):
    """Emitted when a drawing could not be rendered (no Graphviz) or the graph was already freed."""


def _esc(s):
    return str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(x):
    return f"{x:.4g}"


def _grad_line(g):
    if g is None:
        return None
    arr = g.to_dense() if type(g) is RowSparseGrad else np.asarray(g)
    if arr.size == 1:
        return f"grad = {_num(float(arr.reshape(-1)[0]))}"
    return f"‖grad‖ = {_num(float(np.linalg.norm(arr.astype(np.float64, copy=False).reshape(-1))))}"


def _shape(shape):
    return "(" + ", ".join(str(s) for s in shape) + (",)" if len(shape) == 1 else ")")


def to_dot(tensor, show_grad=True, deltas=None, rankdir="TB", max_nodes=5000, title=None, edge_deltas=False):
    """The DOT source text of the graph that produced ``tensor`` (see :func:`draw`).  With
    ``edge_deltas`` each edge is labelled with the norm of the δ that flows back along it (the δ of
    the tensor it leaves), as :func:`chainrule.explain`'s HTML page shows it."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"draw: expected a Tensor, got {type(tensor).__name__}")
    by_key = getattr(deltas, "_by_key", {}) if deltas is not None else {}
    root = tensor._node if tensor._node is not None else tensor
    ids, lines, edges = {}, [], []
    freed = truncated = False
    stack = [root]
    ids[id(root)] = "n0"
    order = [root]
    while stack:                                   # iterative DFS over Node.parents
        item = stack.pop()
        if type(item) is not Node:
            continue
        parents = item.parents
        if parents is None:
            freed = True
            continue
        for i, p in enumerate(parents):
            if p is None:
                continue
            k = id(p)
            if k not in ids:
                if len(ids) >= max_nodes:
                    truncated = True
                    continue
                ids[k] = f"n{len(ids)}"
                order.append(p)
                stack.append(p)
            edges.append((ids[k], ids[id(item)], i, len(parents), p))
    for item in order:
        nid = ids[id(item)]
        is_root = item is root
        if type(item) is Node:
            head = item.op.name + (f" '{item.name}'" if item.name else "")
            parts = [head, f"{_shape(item.shape)} {item.dtype}"]
            g = by_key.get(item) if show_grad else None
            attrs = 'shape=ellipse, style=filled, fillcolor="#fff3d6"'
            if item.parents is None:
                parts.append("(graph freed)")
        else:
            head = f"'{item.name}'" if item.name else "leaf"
            parts = [head, f"{_shape(item.shape)} {item.dtype}"]
            g = None
            if show_grad:
                g = by_key.get(id(item))
                if g is None:
                    g = item.grad
            attrs = 'shape=box, style="rounded,filled", fillcolor="#d6ecff"'
        if is_root and tensor.data.size == 1:
            parts.append(f"value = {_num(float(tensor.data.reshape(-1)[0]))}")
        gl = _grad_line(g)
        if gl:
            parts.append(gl)
        if is_root:
            attrs += ", penwidth=2"
        lines.append(f'  {nid} [label="{_esc(chr(10).join(parts))}", {attrs}];')
    out = ["digraph chainrule {", f'  graph [rankdir={rankdir}, fontname="Helvetica"];',
           '  node [fontname="Helvetica", fontsize=10];', '  edge [fontname="Helvetica", fontsize=8, color="#555555"];']
    if title:
        out.append(f'  labelloc=t; label="{_esc(title)}";')
    out += lines
    for src, dst, i, n, p in edges:
        lab = [str(i)] if n > 1 else []
        if edge_deltas:
            gl = _grad_line(by_key.get(p if type(p) is Node else id(p)))
            if gl:
                lab.append(gl.replace("‖grad‖", "‖δ‖").replace("grad", "δ"))
        out.append(f'  {src} -> {dst}' + (f' [label="{_esc(chr(10).join(lab))}"]' if lab else "") + ";")
    out.append("}")
    text = "\n".join(out) + "\n"
    if freed:
        warnings.warn("draw: part of the graph was freed by an earlier backward(); call "
                      "backward(retain_graph=True), or draw before backward, to see all of it", DrawWarning,
                      stacklevel=3)
    if truncated:
        warnings.warn(f"draw: the graph has more than {max_nodes} nodes; only the first {max_nodes} are drawn "
                      "(raise max_nodes=)", DrawWarning, stacklevel=3)
    return text


def _render(text, fmt):
    """The rendered bytes, or None when Graphviz's ``dot`` program is not available."""
    if shutil.which("dot") is None:
        return None
    try:
        import graphviz
    except ImportError:
        graphviz = None
    if graphviz is not None:
        try:
            return graphviz.Source(text).pipe(format=fmt)
        except graphviz.ExecutableNotFound:
            return None
    try:
        return subprocess.run(["dot", f"-T{fmt}"], input=text.encode(), capture_output=True, check=True).stdout
    except FileNotFoundError:
        return None
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"draw: dot failed: {e.stderr.decode(errors='replace').strip()}") from None


def draw(tensor, path, show_grad=True, deltas=None, rankdir="TB", max_nodes=5000, title=None):
    """Draw the graph that produced ``tensor`` to ``path`` and return the path written.

    Args:
        tensor: the output whose graph is drawn (usually the loss).
        path: the file to write; its suffix picks the format (``.svg``, ``.png``, ``.pdf``, or
            ``.dot``/``.gv`` for the DOT text).
        show_grad: show the gradient at every node where it is known (``deltas``, leaves' ``.grad``):
            its value for one-element tensors, its norm otherwise.
        deltas: the :class:`chainrule.Deltas` recorded by ``with cr.record_deltas() as d:
            loss.backward(retain_graph=True)``.
        rankdir: Graphviz layout direction (``'TB'`` inputs at the top, ``'LR'`` left to right).
        max_nodes: draw at most this many nodes (with a warning beyond).
        title: an optional caption.

    Returns:
        ``path``, or -- when Graphviz's ``dot`` is not installed -- the path of the ``.dot`` file
        written next to it instead (a :class:`DrawWarning` says so and how to install Graphviz).
    """
    path = os.fspath(path)
    root, ext = os.path.splitext(path)
    fmt = ext[1:].lower() or "svg"
    if not ext:
        path = path + ".svg"
    text = to_dot(tensor, show_grad=show_grad, deltas=deltas, rankdir=rankdir, max_nodes=max_nodes, title=title)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    if fmt in _TEXT_FORMATS:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path
    data = _render(text, fmt)
    if data is None:
        dot_path = root + ".dot"
        with open(dot_path, "w", encoding="utf-8") as f:
            f.write(text)
        warnings.warn(f"draw: Graphviz's `dot` program was not found, so {path} was not rendered; wrote the graph "
                      f"as DOT text to {dot_path} instead. To render, {_INSTALL}; then `dot -T{fmt} {dot_path} "
                      f"-o {path}`.", DrawWarning, stacklevel=2)
        return dot_path
    with open(path, "wb") as f:
        f.write(data)
    return path
