"""cr.draw: the graph of a tensor as SVG through Graphviz, or the .dot text when Graphviz is absent."""

import importlib
import shutil
import sys
import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule.draw import DrawWarning, to_dot

draw_mod = importlib.import_module("chainrule.draw")   # (cr.draw is the function)


def _model():
    W = cr.tensor(np.arange(12.0).reshape(3, 4) / 10, requires_grad=True, name="W")
    b = cr.tensor(np.zeros(3), requires_grad=True, name="b")
    x = cr.tensor(np.ones(4))
    h = cr.tanh(W @ x + b)
    h.name = "h"
    loss = (h * h).sum()
    loss.name = "loss"
    return W, b, h, loss


def test_labels_have_op_names_shapes_names_and_gradients():
    W, b, h, loss = _model()
    with cr.record_deltas() as d:
        loss.backward(retain_graph=True)
    text = to_dot(loss, deltas=d)
    assert text.startswith("digraph")
    for token in ("matmul", "add", "tanh 'h'", "mul", "sum 'loss'", "'W'", "'b'", "(3, 4) float64", "(3,) float64",
                  "() float64"):
        assert token in text, token
    assert f"value = {loss.item():.4g}" in text                           # a scalar shows its value
    assert "grad = 1" in text                                              # ∂loss/∂loss
    assert f"‖grad‖ = {np.linalg.norm(d['h']):.4g}" in text                  # norms of the others
    assert f"‖grad‖ = {np.linalg.norm(W.grad):.4g}" in text
    assert "grad" not in to_dot(loss, show_grad=False).replace("digraph", "")


def test_a_tensor_used_twice_gets_two_edges():
    x = cr.tensor([1.0, 2.0], requires_grad=True, name="x")
    text = to_dot(x * x)
    assert text.count("-> n0") == 2


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed "
                    "(apt-get install graphviz); CI installs it")
def test_svg_is_rendered_when_dot_exists(tmp_path):
    *_, loss = _model()
    with cr.record_deltas() as d:
        loss.backward(retain_graph=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = cr.draw(loss, tmp_path / "graph.svg", deltas=d)
    assert path == str(tmp_path / "graph.svg")
    svg = (tmp_path / "graph.svg").read_text()
    assert "<svg" in svg and "matmul" in svg and "tanh" in svg
    assert not (tmp_path / "graph.dot").exists()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_dot_is_run_directly_without_the_python_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "graphviz", None)          # import graphviz -> ImportError
    *_, loss = _model()
    path = cr.draw(loss, tmp_path / "g.png")
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_dot_fallback_when_graphviz_is_absent(tmp_path, monkeypatch):
    monkeypatch.setattr(draw_mod.shutil, "which", lambda name: None)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    *_, loss = _model()
    with pytest.warns(DrawWarning, match=r"(?s)dot.*not found.*apt-get install graphviz"):
        path = cr.draw(loss, tmp_path / "graph.svg")
    assert path == str(tmp_path / "graph.dot")
    assert not (tmp_path / "graph.svg").exists()
    text = (tmp_path / "graph.dot").read_text()
    assert text.startswith("digraph") and "matmul" in text and "(3, 4)" in text


def test_dot_suffix_writes_the_text_without_graphviz(tmp_path, monkeypatch):
    monkeypatch.setattr(draw_mod.shutil, "which", lambda name: None)
    *_, loss = _model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = cr.draw(loss, tmp_path / "sub" / "g.dot")
    assert open(path).read().startswith("digraph")


def test_a_long_chain_is_walked_without_recursion(tmp_path):
    x = cr.tensor([1.0], requires_grad=True, name="x")
    y = x
    for _ in range(5000):
        y = y * 1.0
    text = to_dot(y, max_nodes=10_000)
    assert text.count("mul") == 5000 and "'x'" in text


def test_a_freed_graph_warns():
    *_, loss = _model()
    loss.backward()
    with pytest.warns(DrawWarning, match="retain_graph=True"):
        text = to_dot(loss)
    assert "graph freed" in text


def test_a_leaf_and_bad_arguments():
    w = cr.tensor([[1.0, 2.0]], requires_grad=True, name="w")
    w.grad = np.array([[3.0, 4.0]])
    text = to_dot(w)
    assert "'w'" in text and "‖grad‖ = 5" in text
    with pytest.raises(TypeError, match="Tensor"):
        to_dot(np.zeros(2))
