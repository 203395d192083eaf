"""DAG of sigmoid / linear / soft-maximum units (seed 001): δ and γ, part (b), and the corrections."""

import json

import numpy as np
import pytest

from chainrule.derivations import dag
from chainrule.derivations import numerical_gradient, rel_error
from chainrule.derivations.dag import EXAMPLE_SPEC as SKIP_SPEC   # the skip-connection example DAG
from conftest import random_dag_spec  # (tests/ is on sys.path)

TOL = 1e-7


def random_spec(seed, n_inputs=3, n_hidden=6, n_outputs=1):
    return random_dag_spec(seed, n_inputs, n_hidden, n_outputs)


def _check_weight_gradients(spec, x, t):
    g = dag.gradients(spec, x, t)
    w = dag.weight_vector(spec)
    num = numerical_gradient(lambda: dag.loss(dag.with_weights(spec, w), x, t), w)
    assert rel_error(dag.gradient_vector(g), num) <= TOL
    return g


def test_skip_connections_and_a_three_piece_soft_maximum():
    _check_weight_gradients(SKIP_SPEC, [0.3, -1.2], [0.4])


@pytest.mark.parametrize("seed", range(6))
def test_random_dags(seed):
    spec = random_spec(seed, n_outputs=1 + seed % 2)
    rng = np.random.default_rng(100 + seed)
    _check_weight_gradients(spec, rng.standard_normal(3), rng.standard_normal(len(spec["outputs"])))


def test_input_gradients():
    x = np.array([0.3, -1.2])
    g = dag.gradients(SKIP_SPEC, x, [0.4])
    num = numerical_gradient(lambda: dag.loss(SKIP_SPEC, x, [0.4]), x)
    assert rel_error(np.array([g["do"]["x1"], g["do"]["x2"]]), num) <= TOL


def _with_probe(spec, node, piece=None):
    """Add an input 'probe' (held at 0) feeding a[node] (or a[node][piece]) with weight 1."""
    new = json.loads(json.dumps(spec))
    new["nodes"].append({"name": "probe", "unit": "input"})
    unit = next(n for n in spec["nodes"] if n["name"] == node)
    w = 1.0 if piece is None else np.eye(unit["pieces"])[piece].tolist()
    new["edges"].append({"from": "probe", "to": node, "weight": w})
    return new


def _fd_sensitivity(spec, x, node, piece=None, output=None):
    """Central difference of o[v_out] with respect to a[node] (or a[node][piece])."""
    probed = _with_probe(spec, node, piece)
    out = output or spec["outputs"][0]
    p = np.zeros(1)
    return numerical_gradient(lambda: dag.forward(probed, list(x) + [p[0]])["o"][out], p)[0]


@pytest.mark.parametrize("spec_name", ["skip", "random3"])
def test_delta_and_gamma_are_d_output_d_activation(spec_name):
    spec = SKIP_SPEC if spec_name == "skip" else random_spec(3)
    x = [0.3, -1.2] if spec_name == "skip" else [0.5, -0.1, 0.9]
    s = dag.output_sensitivities(spec, x)
    got, want = [], []
    for node in spec["nodes"]:
        name = node["name"]
        if node["unit"] == "softmax":
            for i in range(node["pieces"]):
                got.append(s["delta"][name][i])
                want.append(_fd_sensitivity(spec, x, name, i))
        elif node["unit"] != "input":
            got.append(s["gamma"][name])
            want.append(_fd_sensitivity(spec, x, name))
    assert rel_error(np.array(got), np.array(want)) <= TOL


def test_output_soft_max_delta_is_the_documents_formula():
    """Part (a) i.: delta[v][i] = s_i + a_i s_i (1 - s_i) - sum_{j != i} a_j s_i s_j (correct as written)."""
    a = np.random.default_rng(0).standard_normal(4)
    s = dag.softmax(a)
    literal = np.array([s[i] + a[i] * s[i] * (1 - s[i]) - sum(a[j] * s[i] * s[j] for j in range(4) if j != i)
                        for i in range(4)])
    aa = a.copy()
    num = numerical_gradient(lambda: dag.soft_max_unit(aa), aa)
    assert rel_error(literal, num) <= TOL
    assert rel_error(dag.soft_max_unit_grad(a), literal) <= 1e-14


def test_a_long_chain_needs_no_recursion():
    n = 3000
    nodes = [{"name": "x", "unit": "input"}] + [{"name": f"h{k}", "unit": "linear"} for k in range(n)]
    edges = [{"from": nodes[k]["name"], "to": nodes[k + 1]["name"], "weight": 1.0} for k in range(n)]
    spec = {"nodes": nodes, "edges": edges, "outputs": [f"h{n - 1}"], "loss": "squared"}
    g = dag.gradients(spec, [2.0], [0.5])
    assert g["do"]["x"] == pytest.approx(1.5)


# ----------------------------------------------------------------------------- part (b)
@pytest.mark.parametrize("shape", [(3, 4, 2), (1, 1, 1), (2, 5, 3)])
def test_part_b_closed_forms(shape):
    d, h, n = shape
    rng = np.random.default_rng(sum(shape))
    W1, W2, x, y = rng.standard_normal((h, d)), rng.standard_normal((n, h)), rng.standard_normal(d), 0.7
    cf = dag.two_layer_gradients(W1, W2, x, y)
    assert rel_error(cf["W1"], numerical_gradient(lambda: dag.two_layer_loss(W1, W2, x, y), W1)) <= TOL
    assert rel_error(cf["W2"], numerical_gradient(lambda: dag.two_layer_loss(W1, W2, x, y), W2)) <= TOL
    # the same network through the general DAG recursion
    spec = dag.two_layer_spec(W1, W2)
    g = dag.gradients(spec, x, y)
    assert rel_error(dag.gradient_vector(g), np.concatenate([cf["W1"].ravel(), cf["W2"].T.ravel()])) <= 1e-13
    assert dag.loss(spec, x, y) == pytest.approx(dag.two_layer_loss(W1, W2, x, y), rel=1e-14)


def test_part_b_convention_doc_layout_is_the_transpose():
    """d y_hat = Tr(G dW) gives G shaped like W^T: the document's results are the transposed gradients."""
    rng = np.random.default_rng(1)
    W1, W2, x = rng.standard_normal((4, 3)), rng.standard_normal((2, 4)), rng.standard_normal(3)
    doc = dag.two_layer_gradients(W1, W2, x, 0.2, layout="doc")
    assert doc["W1"].shape == (3, 4) and doc["W2"].shape == (4, 2)
    assert rel_error(doc["W1"].T, numerical_gradient(lambda: dag.two_layer_loss(W1, W2, x, 0.2), W1)) <= TOL
    assert rel_error(doc["W2"].T, numerical_gradient(lambda: dag.two_layer_loss(W1, W2, x, 0.2), W2)) <= TOL


# ----------------------------------------------------------------------------- corrections
def _chain(units_weights, x=0.7):
    """x -> n1 -> n2 -> ... with scalar weights; units_weights = [(unit, weight), ...]."""
    nodes = [{"name": "x", "unit": "input"}]
    edges = []
    prev = "x"
    for k, (unit, w) in enumerate(units_weights):
        name = f"n{k}"
        node = {"name": name, "unit": unit}
        if unit == "softmax":
            node["pieces"] = len(w)
        nodes.append(node)
        edges.append({"from": prev, "to": name, "weight": w})
        prev = name
    return {"nodes": nodes, "edges": edges, "outputs": [prev], "loss": "squared"}, [x]


def _dsig(a):
    s = dag.sigmoid(a)
    return float(s * (1 - s))


def test_correction_parent_case_misses_do_v_da_v_sigmoid_output():
    """Written: d o[v_out]/d a[v] = sigma'(a[v_out]) w(v, v_out). Missing: the factor sigma'(a[v])."""
    spec, x = _chain([("sigmoid", 1.3), ("sigmoid", -0.9)])
    fw = dag.forward(spec, x)
    a_h, a_y = fw["a"]["n0"], fw["a"]["n1"]
    num = _fd_sensitivity(spec, x, "n0")
    literal = _dsig(a_y) * -0.9
    corrected = _dsig(a_y) * -0.9 * _dsig(a_h)
    assert rel_error(literal, num) > 1e-2
    assert rel_error(corrected, num) <= TOL
    assert rel_error(dag.output_sensitivities(spec, x)["gamma"]["n0"], num) <= TOL


def test_correction_parent_case_misses_do_v_da_v_softmax_output():
    """Written: sigma_s(a_out) . w(v, v_out) + a_out . J sigma_s(a_out) w(v, v_out). Missing: d o[v]/d a[v]."""
    w = np.array([0.8, -0.5, 1.1])
    spec, x = _chain([("sigmoid", 1.3), ("softmax", w.tolist())])
    fw = dag.forward(spec, x)
    a_h, a_out = fw["a"]["n0"], fw["a"]["n1"]
    s = dag.softmax(a_out)
    literal = s @ w + a_out @ dag.softmax_jacobian(a_out) @ w
    num = _fd_sensitivity(spec, x, "n0")
    assert rel_error(literal, num) > 1e-2
    assert rel_error(literal * _dsig(a_h), num) <= TOL


def _doc_recursion_gamma(spec, x, v, succ, out):
    """The document's recursion for v not a parent of v_out (sigmoid output):
    gamma[v] = sum_{v_p} sigma'(a[v_out]) w(v_p, v_out) gamma^{(v_p)}[v], with w = 0 where there is no edge
    and gamma^{(v_p)}[v] = d o[v_p] / d a[v] (computed exactly, "as if v_p were the output node")."""
    fw = dag.forward(spec, x)
    weights = {(e["from"], e["to"]): e["weight"] for e in spec["edges"]}
    total = 0.0
    for vp in succ:
        g_vp = dag.output_sensitivities(dict(spec, outputs=[vp]), x)["gamma"][v]
        total += _dsig(fw["a"][out]) * weights.get((vp, out), 0.0) * g_vp
    return total


def test_doc_recursion_holds_two_levels_below_the_output():
    """x -> h1 -> h2 -> y: every successor of h1 is a parent of y, and the document's recursion is exact."""
    spec, x = _chain([("sigmoid", 0.9), ("sigmoid", -1.4), ("sigmoid", 1.1)])
    num = _fd_sensitivity(spec, x, "n0")
    assert rel_error(_doc_recursion_gamma(spec, x, "n0", ["n1"], "n2"), num) <= TOL


def test_correction_recursion_fails_three_levels_below_the_output():
    """x -> h1 -> h2 -> h3 -> y: h2 is not a parent of y, w(h2, y) does not exist, the formula gives 0."""
    spec, x = _chain([("sigmoid", 0.9), ("sigmoid", -1.4), ("sigmoid", 1.1), ("sigmoid", 0.8)])
    num = _fd_sensitivity(spec, x, "n0")
    literal = _doc_recursion_gamma(spec, x, "n0", ["n1"], "n3")
    assert literal == 0.0 and abs(num) > 1e-3
    assert rel_error(literal, num) > 1e-2
    assert rel_error(dag.output_sensitivities(spec, x)["gamma"]["n0"], num) <= TOL


def test_correction_parent_case_ignores_other_paths_skip_connection():
    """h1 -> y and h1 -> h2 -> y: the parent-case formula (even with sigma'(a[h1]) restored) keeps only the edge."""
    spec = {
        "nodes": [{"name": "x", "unit": "input"}, {"name": "h1", "unit": "sigmoid"},
                  {"name": "h2", "unit": "sigmoid"}, {"name": "y", "unit": "sigmoid"}],
        "edges": [{"from": "x", "to": "h1", "weight": 0.9}, {"from": "h1", "to": "h2", "weight": -1.4},
                  {"from": "h2", "to": "y", "weight": 1.1}, {"from": "h1", "to": "y", "weight": 0.8}],
        "outputs": ["y"], "loss": "squared",
    }
    x = [0.7]
    fw = dag.forward(spec, x)
    num = _fd_sensitivity(spec, x, "h1")
    parent_formula = _dsig(fw["a"]["y"]) * 0.8 * _dsig(fw["a"]["h1"])
    assert rel_error(parent_formula, num) > 1e-2
    assert rel_error(dag.output_sensitivities(spec, x)["gamma"]["h1"], num) <= TOL


def test_correction_part_b_expansion_diag_not_vector():
    """Written: o[u] a^T (I s - s s^T) = o[u] a^T s - o[u] a^T s s^T. I s must be Diag(s): a^T Diag(s) = (a*s)^T."""
    rng = np.random.default_rng(2)
    W1, W2, x, y = rng.standard_normal((4, 3)), rng.standard_normal((3, 4)), rng.standard_normal(3), 0.3
    fw = dag.two_layer_forward(W1, W2, x)
    ou, a, s, r = fw["o_u"], fw["a_v"], fw["sigma_s"], fw["y_hat"] - y
    num = numerical_gradient(lambda: dag.two_layer_loss(W1, W2, x, y), W2).T     # doc layout (h, n)
    literal = r * (np.outer(ou, s) + (ou * (a @ s))[:, None] - np.outer(ou, s) * (a @ s))
    corrected = r * (np.outer(ou, s) + np.outer(ou, a * s) - (a @ s) * np.outer(ou, s))
    assert rel_error(literal, num) > 1e-2
    assert rel_error(corrected, num) <= TOL
    # the unexpanded line (with J written as Diag(s) - s s^T) is right
    assert rel_error(r * (np.outer(ou, s) + np.outer(ou, a) @ (np.diag(s) - np.outer(s, s))), num) <= TOL


# ----------------------------------------------------------------------------- spec validation
@pytest.mark.parametrize("mutate, message", [
    (lambda s: s["edges"].append({"from": "z", "to": "h1", "weight": 1.0}), "cycle"),
    (lambda s: s["nodes"][2].update(bias=0.5), "bias"),
    (lambda s: s["edges"][4].update(weight=[0.1, 0.2]), "3 weights"),
    (lambda s: s["edges"].append({"from": "h1", "to": "x2", "weight": 1.0}), "input node"),
    (lambda s: s["edges"].append({"from": "h1", "to": "nope", "weight": 1.0}), "unknown node"),
    (lambda s: s["nodes"][2].update(unit="relu"), "unit"),
    (lambda s: s.update(loss="cross_entropy"), "squared"),
    (lambda s: s.update(outputs=["q"]), "not a node"),
    (lambda s: s["edges"].append({"from": "x1", "to": "h1", "weight": 2.0}), "duplicate edge"),
])
def test_bad_specs_are_rejected_with_a_clear_message(mutate, message):
    spec = json.loads(json.dumps(SKIP_SPEC))
    mutate(spec)
    with pytest.raises(ValueError, match=message):
        dag.compile_spec(spec)


def test_spec_is_json_and_inputs_may_be_named():
    spec = json.loads(json.dumps(SKIP_SPEC))
    assert dag.loss(spec, {"x1": 0.3, "x2": -1.2}, {"z": 0.4}) == dag.loss(spec, [0.3, -1.2], [0.4])
    with pytest.raises(ValueError, match="x2"):
        dag.forward(spec, {"x1": 0.3})
