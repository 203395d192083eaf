"""chainrule.nn.DAGNetwork: seed 001's DAGs from a spec -- forward, explain() against the hand-derived
δ/γ recursion of chainrule.derivations.dag, validation, losses, biases, training."""

import io
import json
import os

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn  # noqa: F401
from chainrule.derivations import dag as D
from chainrule.derivations.dag import EXAMPLE_SPEC as SKIP_SPEC   # the skip-connection example DAG
from chainrule.derivations import numerical_gradient, rel_error
from chainrule.nn import DAGNetwork, DAGSpecError
from conftest import random_dag_spec  # (tests/ is on sys.path)

TOL = 1e-7
EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "dag_softmax.json")


def random_spec(seed, n_inputs=3, n_hidden=7, n_outputs=1):
    return random_dag_spec(seed, n_inputs, n_hidden, n_outputs, last_pieces=None, loss=None)


SPECS = {"skip": SKIP_SPEC, **{f"random{s}": random_spec(s, n_outputs=1 + s % 2) for s in range(4)}}


# ------------------------------------------------------------------------------------ forward
@pytest.mark.parametrize("name", sorted(SPECS))
def test_forward_matches_the_derivation(name):
    spec = SPECS[name]
    net = DAGNetwork(spec)
    X = np.random.default_rng(1).standard_normal((5, len(net.input_names)))
    out = net(X)
    assert out.shape == (5, len(spec["outputs"]))
    for i in range(5):
        fw = D.forward(spec, X[i])
        assert np.allclose(out.data[i], [fw["o"][o] for o in spec["outputs"]], rtol=1e-13, atol=1e-15)
    assert net(X[0]).shape == (len(spec["outputs"]),)                         # one example
    as_dict = net({k: X[:, j] for j, k in enumerate(net.input_names)})
    assert np.array_equal(as_dict.data, out.data)


# ------------------------------------------------------------------------------------ explain
@pytest.mark.parametrize("name", sorted(SPECS))
def test_explain_signals_are_the_derivations_delta_and_gamma(name):
    """explain()'s γ[v] = ∂L/∂a[v] and δ[v][i] = ∂L/∂a[v][i], read from the engine with record_deltas,
    equal chainrule.derivations.dag's recursion (the corrected form of the document's), per example."""
    spec = SPECS[name]
    net = DAGNetwork(spec)
    rng = np.random.default_rng(7)
    X = rng.standard_normal((3, len(net.input_names)))
    Y = rng.standard_normal((3, len(spec["outputs"])))
    ex = net.explain(X, Y, quiet=True)
    assert ex["loss"] == pytest.approx(sum(D.loss(spec, X[i], Y[i]) for i in range(3)), rel=1e-12)
    for i in range(3):
        want = D.gradients(spec, X[i], Y[i])
        for node in spec["nodes"]:
            v, got = node["name"], ex["nodes"][node["name"]]
            if node["unit"] == "softmax":
                assert rel_error(got["delta"][i], want["delta"][v]) <= TOL, v
                assert rel_error(got["a"][i], want["forward"]["a"][v]) <= 1e-13
            elif node["unit"] != "input":
                assert rel_error(np.array([got["gamma"][i]]), np.array([want["gamma"][v]])) <= TOL, v
            assert got["o"][i] == pytest.approx(want["forward"]["o"][v], rel=1e-12, abs=1e-15)
            assert got["do"][i] == pytest.approx(want["do"][v], rel=1e-9, abs=1e-15)   # e[v] = ∂L/∂o[v]


def test_explain_one_example_prints_the_documents_notation():
    net = DAGNetwork(SKIP_SPEC)
    buf = io.StringIO()
    ex = net.explain([0.3, -1.2], [0.4], file=buf)
    text = buf.getvalue()
    for token in ("a[v]", "o[v]", "γ=", "δ=", "softmax(3)", "h1", "z"):
        assert token in text
    want = D.gradients(SKIP_SPEC, [0.3, -1.2], [0.4])
    assert ex["nodes"]["m"]["delta"].shape == (3,)                  # one example: no example axis
    assert rel_error(ex["nodes"]["m"]["delta"], want["delta"]["m"]) <= TOL
    assert ex["nodes"]["h1"]["gamma"] == pytest.approx(want["gamma"]["h1"], rel=1e-9)
    assert all(p.grad is None for p in net.parameters())            # explain leaves no gradients behind


def test_named_tensors_are_retrievable_with_record_deltas():
    net = DAGNetwork(SKIP_SPEC)
    with cr.record_deltas() as d:
        net.loss([[0.3, -1.2]], [[0.4]], reduction="sum").backward()
    want = D.gradients(SKIP_SPEC, [0.3, -1.2], [0.4])
    assert rel_error(d["a[m]"][0], want["delta"]["m"]) <= TOL
    assert d["a[h2]"][0] == pytest.approx(want["gamma"]["h2"], rel=1e-9)
    assert d["o[h1]"][0] == pytest.approx(want["do"]["h1"], rel=1e-9)


def test_parameter_gradients_are_the_derivations_edge_gradients():
    spec = random_spec(11, n_hidden=9, n_outputs=2)
    net = DAGNetwork(spec)
    X = np.random.default_rng(2).standard_normal((4, 3))
    Y = np.random.default_rng(3).standard_normal((4, 2))
    net.loss(X, Y, reduction="sum").backward()
    names = [n for n, _ in net.named_parameters()]
    assert names == [f"w[{e['from']}->{e['to']}]" for e in spec["edges"]]
    for k, (_, p) in enumerate(net.named_parameters()):
        want = sum(np.asarray(D.gradients(spec, X[i], Y[i])["edges"][k]) for i in range(4))
        got = np.zeros(p.shape) if p.grad is None else p.grad
        assert rel_error(np.atleast_1d(got), np.atleast_1d(want)) <= TOL


# ------------------------------------------------------------------------------------ validation
def _spec(nodes, edges, outputs=("y",), **kw):
    return {"nodes": nodes, "edges": edges, "outputs": list(outputs), **kw}


X_IN = {"name": "x", "unit": "input"}


@pytest.mark.parametrize("spec,match", [
    (_spec([X_IN, {"name": "y", "unit": "cosine"}], [{"from": "x", "to": "y", "weight": 1.0}]),
     "unknown unit 'cosine'"),
    (_spec([X_IN, X_IN, {"name": "y", "unit": "linear"}], [{"from": "x", "to": "y", "weight": 1.0}]),
     "duplicate node name 'x'"),
    (_spec([X_IN, {"name": "y", "unit": "linear"}], [{"from": "x", "to": "y", "weight": 1.0},
                                                     {"from": "q", "to": "y", "weight": 1.0}]), "unknown node 'q'"),
    (_spec([X_IN, {"name": "y", "unit": "linear"}], [{"from": "x", "to": "y", "weight": 1.0},
                                                     {"from": "x", "to": "nowhere", "weight": 1.0}]),
     "unknown node 'nowhere'"),
    (_spec([X_IN, {"name": "x2", "unit": "input"}, {"name": "y", "unit": "linear"}],
           [{"from": "x", "to": "y", "weight": 1.0}, {"from": "x", "to": "x2", "weight": 1.0}]),
     "goes into the input node 'x2'"),
    (_spec([X_IN, {"name": "y", "unit": "linear"}], [{"from": "x", "to": "y", "weight": 1.0}], outputs=["out"]),
     "output 'out' is not a node"),
    (_spec([X_IN, {"name": "h", "unit": "sigmoid"}, {"name": "y", "unit": "linear"}],
           [{"from": "x", "to": "y", "weight": 1.0}]), "node 'h' \\(sigmoid\\) has no incoming edges"),
    (_spec([X_IN, {"name": "y", "unit": "softmax", "pieces": 3}], [{"from": "x", "to": "y", "weight": [1.0, 2.0]}]),
     "3-piece soft-maximum unit 'y' and needs a list of 3 weights"),
    (_spec([X_IN, {"name": "y", "unit": "softmax", "pieces": 2}], [{"from": "x", "to": "y", "weight": 1.0}]),
     "needs a list of 2 weights"),
    (_spec([X_IN, {"name": "y", "unit": "sigmoid"}], [{"from": "x", "to": "y", "weight": [1.0, 2.0]}]),
     "needs one number as 'weight'"),
    (_spec([X_IN, {"name": "y", "unit": "softmax"}], [{"from": "x", "to": "y", "weight": [1.0]}]),
     "needs an integer 'pieces'"),
    (_spec([X_IN, {"name": "y", "unit": "softmax", "pieces": 2, "bias": 0.5}], [{"from": "x", "to": "y"}]),
     "needs a 'bias' list of 2 numbers"),
    (_spec([X_IN, {"name": "y", "unit": "linear"}], [{"from": "x", "to": "y"}, {"from": "x", "to": "y"}]),
     "duplicate edge 'x' -> 'y'"),
    (_spec([X_IN, {"name": "y", "unit": "linear"}], [{"from": "x", "to": "y"}], loss="hinge"), "unknown loss 'hinge'"),
    (_spec([X_IN, {"name": "y", "unit": "linear"}], [{"from": "x", "to": "y"}], loss="bce"),
     "needs sigmoid output units"),
    (_spec([X_IN, {"name": "y", "unit": "linear"}], [{"from": "x", "to": "y"}], outputs=[]), "non-empty 'outputs'"),
    ({"nodes": []}, "a spec is a dict"),
])
def test_invalid_specs_are_rejected_with_a_clear_error(spec, match):
    with pytest.raises(DAGSpecError, match=match):
        DAGNetwork(spec)
    assert issubclass(DAGSpecError, ValueError)


def test_a_cycle_is_named_in_order():
    spec = _spec([X_IN] + [{"name": n, "unit": "sigmoid"} for n in ("a", "b", "c", "y")],
                 [{"from": "x", "to": "a"}, {"from": "a", "to": "b"}, {"from": "b", "to": "c"},
                  {"from": "c", "to": "a"}, {"from": "c", "to": "y"}])
    with pytest.raises(DAGSpecError, match=r"cycle: a -> b -> c -> a"):
        DAGNetwork(spec)
    self_loop = _spec([X_IN, {"name": "y", "unit": "linear"}], [{"from": "x", "to": "y"}, {"from": "y", "to": "y"}])
    with pytest.raises(DAGSpecError, match=r"cycle: y -> y"):
        DAGNetwork(self_loop)


def test_spec_from_a_json_file(tmp_path):
    p = tmp_path / "net.json"
    p.write_text(json.dumps(SKIP_SPEC))
    net = DAGNetwork(str(p))
    assert np.allclose(net([[0.3, -1.2]]).data, DAGNetwork(SKIP_SPEC)([[0.3, -1.2]]).data)
    bad = tmp_path / "bad.json"
    bad.write_text('{"nodes": [\n  {"name": "x"},\n]}')
    with pytest.raises(DAGSpecError, match="line 3"):
        DAGNetwork(str(bad))
    with pytest.raises(FileNotFoundError):
        DAGNetwork(str(tmp_path / "missing.json"))


def test_wrong_input_and_target_shapes():
    net = DAGNetwork(SKIP_SPEC)
    with pytest.raises(DAGSpecError, match=r"shape \(N, 2\)"):
        net(np.zeros((4, 3)))
    with pytest.raises(DAGSpecError, match="missing"):
        net({"x1": np.zeros(3)})
    with pytest.raises(DAGSpecError, match="targets of shape"):
        net.loss(np.zeros((4, 2)), np.zeros((4, 2)))


# ------------------------------------------------------------------------------------ units, biases, losses
ALL_UNITS = {
    "nodes": [X_IN, {"name": "x2", "unit": "input"},
              {"name": "t", "unit": "tanh", "bias": 0.3}, {"name": "r", "unit": "relu", "bias": True},
              {"name": "k", "unit": "leaky_relu", "slope": 0.2}, {"name": "i", "unit": "identity"},
              {"name": "s", "unit": "smax", "pieces": 4, "bias": [0.1, 0.2, -0.3, 0.0]},
              {"name": "y1", "unit": "sigmoid", "bias": -0.2}, {"name": "y2", "unit": "sigmoid"}],
    "edges": [{"from": "x", "to": "t"}, {"from": "x2", "to": "t"}, {"from": "x", "to": "r"},
              {"from": "t", "to": "k"}, {"from": "x2", "to": "k"}, {"from": "k", "to": "i"},
              {"from": "r", "to": "s"}, {"from": "i", "to": "s"}, {"from": "x", "to": "s"},
              {"from": "s", "to": "y1"}, {"from": "t", "to": "y1"}, {"from": "s", "to": "y2"}],
    "outputs": ["y1", "y2"],
    "seed": 3,
}


@pytest.mark.parametrize("loss", ["squared", "bce", "ce"])
def test_every_unit_bias_and_loss_against_finite_differences(loss):
    spec = dict(ALL_UNITS, loss=loss)
    net = DAGNetwork(spec)
    names = [n for n, _ in net.named_parameters()]
    assert "b[t]" in names and "b[s]" in names and "b[i]" not in names
    rng = np.random.default_rng(4)
    X = rng.standard_normal((6, 2)) + 0.1
    Y = rng.integers(0, 2, size=6) if loss == "ce" else (rng.random((6, 2)) < 0.5).astype(float)
    net.loss(X, Y).backward()
    for name, p in net.named_parameters():
        num = numerical_gradient(lambda: float(net.loss(X, Y).item()), p.data)
        got = np.zeros(p.shape) if p.grad is None else p.grad
        assert rel_error(got, num) <= 1e-6, name


def test_loss_values():
    spec = dict(ALL_UNITS)
    X = np.random.default_rng(5).standard_normal((3, 2))
    Y = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    o = DAGNetwork(spec)(X).data
    assert DAGNetwork(spec).loss(X, Y).item() == pytest.approx(np.mean(0.5 * np.sum((o - Y) ** 2, 1)))
    bce = -(Y * np.log(o) + (1 - Y) * np.log(1 - o)).sum(1).mean()
    assert DAGNetwork(dict(spec, loss="bce")).loss(X, Y).item() == pytest.approx(bce, rel=1e-10)
    c = np.array([0, 1, 1])
    ce = np.mean(np.log(np.exp(o).sum(1)) - o[np.arange(3), c])
    net = DAGNetwork(dict(spec, loss="ce"))
    assert net.loss(X, c).item() == pytest.approx(ce, rel=1e-10)
    assert net.loss(X, np.eye(2)[c]).item() == pytest.approx(ce, rel=1e-10)     # one-hot targets
    assert net.loss(X, c, reduction="sum").item() == pytest.approx(3 * ce, rel=1e-10)


def test_module_api_dtype_state_dict_and_to_spec():
    net = DAGNetwork(ALL_UNITS)
    sd = net.state_dict()
    assert "w[s->y1]" in sd and sd["w[r->s]"].shape == (4,)
    X = np.random.default_rng(0).standard_normal((2, 2))
    ref = net(X).data
    again = DAGNetwork(net.to_spec())                      # the trained weights written back into a spec
    assert np.allclose(again(X).data, ref, rtol=1e-14)
    net.to(np.float32)
    assert net(X).dtype == np.float32
    assert np.allclose(net(X).data, ref, rtol=1e-5)
    assert "9 nodes" in repr(net)


def test_a_long_chain_needs_no_recursion():
    n = 3000
    nodes = [X_IN] + [{"name": f"h{k}", "unit": "linear"} for k in range(n)]
    edges = [{"from": nodes[k]["name"], "to": nodes[k + 1]["name"], "weight": 1.0} for k in range(n)]
    net = DAGNetwork({"nodes": nodes, "edges": edges, "outputs": [f"h{n - 1}"]})
    ex = net.explain([2.0], [0.5], quiet=True)
    assert ex["nodes"]["x"]["do"] == pytest.approx(1.5)

