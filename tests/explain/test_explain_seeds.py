"""Each seed document's final equations (corrected as in docs/derivations.md) next to the line
``chainrule explain`` generates for the same tensor, checked numerically pair by pair.

Every row: the seed, where the equation is, the equation in LaTeX, the built-in model and tensor
name, and the equation written literally in NumPy from the forward values ``v`` and the engine's δ's
``D`` of the tensors it refers to.  The test evaluates both sides and compares them with each other
and with the engine's δ; docs/explain.md shows the same table and must quote every generated line
as ``chainrule explain`` prints it (regenerate the table with
``PYTHONPATH=src python tests/explain/test_explain_seeds.py``).
"""
import os

import numpy as np
import pytest

from chainrule.explain import derive
from chainrule.explain.check import forward_values
from chainrule.explain.models import build

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "docs", "explain.md")


def sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def _L_rows(v, D):
    """The columns of the seed's L, i.e. the rows of the model's table (it stores Lᵀ)."""
    n, out = v["L"].shape[1], np.zeros_like(v["L"])
    for i, win in enumerate(v["idx"]):
        for c, w in enumerate(win):
            out[w] += D["x"][i, c * n:(c + 1) * n]
    return out


def _softmax_cols(v, D):
    y, g = v["y3"], D["y3"]
    return np.stack([(np.diag(y[:, b]) - np.outer(y[:, b], y[:, b])) @ g[:, b] for b in range(y.shape[1])], axis=1)


def _dag_out_delta(v, D):
    a, e = v["a[z]"][0], D["o[z]"][0]
    s = np.exp(a - a.max())
    s /= s.sum()
    n = len(a)
    return np.array([[e * (s[i] + a[i] * s[i] * (1 - s[i]) - sum(a[j] * s[i] * s[j] for j in range(n) if j != i))
                      for i in range(n)]])


def _rntn_down(v, D, p="6"):
    com = D["x" + p] * (1 - v["x" + p] ** 2)
    V, vv = v["V"], v["v" + p]
    return v["W"].T @ com + sum(com[k] * (V[:, :, k] + V[:, :, k].T) @ vv for k in range(V.shape[2]))


def _rntn_V(v, D):
    out = 0.01 * v["V"]
    for p in ("6", "5", "2"):
        com = D["x" + p] * (1 - v["x" + p] ** 2)
        out = out + np.einsum("k,i,j->ijk", com, v["v" + p], v["v" + p])
    return out


def _rntn_W(v, D):
    return 0.01 * v["W"] + sum(np.outer(D["x" + p] * (1 - v["x" + p] ** 2), v["v" + p]) for p in ("6", "5", "2"))


ROWS = [
    # seed 002, batch of m = 3 windows, C = 0.3
    ("002", "(12), with the 1/m of (1)", r"\delta^{(2)} = \tfrac1m\,(a^{(2)} - y)", "window", "z2",
     lambda v, D: (sig(v["z2"]) - v["y"]) / 3),
    ("002", "(15)", r"\partial J/\partial b^{(2)} = \textstyle\sum_i \delta^{(2)}_i", "window", "b2",
     lambda v, D: D["z2"].sum()),
    ("002", "(31), corrected", r"\partial J/\partial U = \textstyle\sum_i \delta^{(2)}_i a^{(1)}_i + \tfrac Cm U", "window", "U",
     lambda v, D: v["a1"].T @ D["z2"] + 0.3 / 3 * v["U"]),
    ("002", "(25)", r"\partial J/\partial b^{(1)} = \textstyle\sum_i \delta^{(2)}_i U \diamond (1 - (a^{(1)}_i)^2)", "window", "b1",
     lambda v, D: (np.outer(D["z2"], v["U"]) * (1 - v["a1"] ** 2)).sum(axis=0)),
    ("002", "(30), transposed (the model stores Wᵀ)", r"\partial J/\partial W = \textstyle\sum_i \big(\delta^{(2)}_i U \diamond (1 - (a^{(1)}_i)^2)\big) x_i^\top + \tfrac Cm W",
     "window", "W", lambda v, D: v["x"].T @ (np.outer(D["z2"], v["U"]) * (1 - v["a1"] ** 2)) + 0.3 / 3 * v["W"]),
    ("002", "(29)", r"\partial J/\partial x = \delta^{(2)} W^\top \big[U \diamond (1 - (a^{(1)})^2)\big]", "window", "x",
     lambda v, D: (np.outer(D["z2"], v["U"]) * (1 - v["a1"] ** 2)) @ v["W"].T),
    ("002", "text after (29); L stored as Lᵀ", r"\partial J/\partial L_{:,w_c} \mathrel{+}= \text{block } c \text{ of } \partial J/\partial x", "window", "L",
     _L_rows),
    # seed 003, Alg 1, N = 4, λ = 0.1
    ("003", "Alg 1 line 8, /N", r"\delta^{(3)} = \tfrac1N (a^{(3)} - y)", "multilabel-mlp", "z3",
     lambda v, D: (sig(v["z3"]) - v["Y"]) / 4),
    ("003", "line 11 and (*), corrected; transposed", r"\partial J/\partial W^{(2)} = \textstyle\sum_i \delta^{(3)}_i a^{(2)\top}_i + \lambda W^{(2)}",
     "multilabel-mlp", "W2", lambda v, D: v["a2"].T @ D["z3"] + 0.1 * v["W2"]),
    ("003", "line 13", r"\partial J/\partial b^{(2)} = \textstyle\sum_i \delta^{(3)}_i", "multilabel-mlp", "b2",
     lambda v, D: D["z3"].sum(axis=0)),
    ("003", "line 15", r"\eta^{(2)} = W^{(2)\top} \delta^{(3)}", "multilabel-mlp", "a2", lambda v, D: D["z3"] @ v["W2"].T),
    ("003", "line 17, corrected", r"\delta^{(2)} = \eta^{(2)} \odot \varphi(z^{(2)}) \odot (1 - \varphi(z^{(2)}))",
     "multilabel-mlp", "z2", lambda v, D: D["a2"] * v["a2"] * (1 - v["a2"])),
    ("003", "analogous, + λW; transposed", r"\partial J/\partial W^{(1)} = \textstyle\sum_i \delta^{(2)}_i x_i^\top + \lambda W^{(1)}",
     "multilabel-mlp", "W1", lambda v, D: v["X"].T @ D["z2"] + 0.1 * v["W1"]),
    # seed 004, columns are examples, cross-entropy on a softmax output
    ("004", "∇ of −Σ d log y", r"\nabla_{y^{(N)}} Div = -d / y^{(N)}", "layerwise", "y3", lambda v, D: -v["d"] / v["y3"]),
    ("004", "vector activation (softmax)", r"\nabla_{z^{(N)}} = \big(\mathrm{diag}(y) - y y^\top\big) \nabla_{y^{(N)}}",
     "layerwise", "z3", _softmax_cols),
    ("004", "weights, corrected", r"\nabla_{W^{(N)}} = \nabla_{z^{(N)}}\, y^{(N-1)\top}", "layerwise", "W3",
     lambda v, D: D["z3"] @ v["y2"].T),
    ("004", "layer recursion", r"\nabla_{y^{(k-1)}} = W^{(k)\top} \nabla_{z^{(k)}}", "layerwise", "y2",
     lambda v, D: v["W3"].T @ D["z3"]),
    ("004", "ReLU subgradient", r"\nabla_{z^{(k)}} = f'(z^{(k)}) \odot \nabla_{y^{(k)}},\ f'(0) = 0", "layerwise", "z2",
     lambda v, D: D["y2"] * (v["z2"] > 0)),
    ("004", "scalar activation (tanh)", r"\nabla_{z^{(1)}} = (1 - y^{(1)2}) \odot \nabla_{y^{(1)}}", "layerwise", "z1",
     lambda v, D: D["y1"] * (1 - v["y1"] ** 2)),
    ("004", "biases", r"\nabla_{b^{(k)}} = \nabla_{z^{(k)}}\ \text{(summed over the batch)}", "layerwise", "b1",
     lambda v, D: D["z1"].sum(axis=1)),
    # seed 001, the example DAG, squared loss
    ("001", "(a) i., output soft maximum", r"\delta[v][i] = e\,\big(\sigma_{s,i} + a_i \sigma_{s,i}(1 - \sigma_{s,i}) - \textstyle\sum_{j \ne i} a_j \sigma_{s,i} \sigma_{s,j}\big)",
     "dag", "a[z]", _dag_out_delta),
    ("001", "γ[v], sigmoid unit", r"\gamma[v] = e[v]\, \sigma(a[v]) (1 - \sigma(a[v]))", "dag", "a[y]",
     lambda v, D: D["o[y]"] * v["o[y]"] * (1 - v["o[y]"])),
    ("001", "e[v], the sweep (corrected recursion)", r"e[v] = \textstyle\sum_{v \to p} \gamma[p]\, w(v,p) + \sum_{v \to p} \sum_j \delta[p][j]\, w(j,v,p)",
     "dag", "o[h1]", lambda v, D: D["a[y]"] * v["w[h1->y]"] + D["a[m]"] @ v["w[h1->m]"] + D["a[h2]"] * v["w[h1->h2]"]),
    ("001", "∂/∂w(u,v)", r"\partial \ell / \partial w(u,v) = \gamma[v]\, o[u]", "dag", "w[h1->y]",
     lambda v, D: np.sum(v["o[h1]"] * D["a[y]"])),
    ("001", "∂/∂w(i,u,v)", r"\partial \ell / \partial w(i,u,v) = \delta[v][i]\, o[u]", "dag", "w[h2->m]",
     lambda v, D: (v["o[h2]"][:, None] * D["a[m]"]).sum(axis=0)),
    # seed 000, the RNTN on ((w0 w1) (w2 w3)) (nodes 0..6 in post-order, the root 6 labelled 1), reg 0.01
    ("000", "softmax error at every node", r"\delta_{i,s} = y_i - t_i", "rntn", "s6",
     lambda v, D: np.exp(v["s6"]) / np.exp(v["s6"]).sum() - np.eye(5)[1]),
    ("000", "∂L/∂W_s (+ reg)", r"\partial \mathcal L / \partial W_s = \textstyle\sum_i (y_i - t_i) x_i^\top + \lambda W_s", "rntn", "Ws",
     lambda v, D: sum(np.outer(D[f"s{i}"], v[f"x{i}"]) for i in range(7)) + 0.01 * v["Ws"]),
    ("000", "δ_down", r"\delta_{down} = W^\top \delta_{com} + \textstyle\sum_k \delta_{com,k} (V^{[k]} + V^{[k]\top}) v", "rntn", "v6",
     _rntn_down),
    ("000", "left child: first d entries", r"\delta_{a} = W_s^\top(y_a - t_a) + \delta_{down}[1{:}d]", "rntn", "x2",
     lambda v, D: v["Ws"].T @ D["s2"] + _rntn_down(v, D)[:3]),
    ("000", "right child: last d entries", r"\delta_{b} = W_s^\top(y_b - t_b) + \delta_{down}[d{+}1{:}2d]", "rntn", "x5",
     lambda v, D: v["Ws"].T @ D["s5"] + _rntn_down(v, D)[3:]),
    ("000", "∂L/∂V, corrected (v the concatenation)", r"\partial \mathcal L / \partial V^{[k]} = \textstyle\sum_i \delta_{i,com,k}\, v_i v_i^\top + \lambda V",
     "rntn", "V", _rntn_V),
    ("000", "∂L/∂W", r"\partial \mathcal L / \partial W = \textstyle\sum_i \delta_{i,com}\, v_i^\top + \lambda W", "rntn", "W", _rntn_W),
]

_CACHE = {}


def _derived(model):
    if model not in _CACHE:
        J, consts, _ = build(model)
        d = derive(J, constants=consts)
        D = {e.name: d.ctx.deltas[e.key] for e in d.equations}
        _CACHE[model] = (d, forward_values(d), D)
    return _CACHE[model]


@pytest.mark.parametrize("row", ROWS, ids=[f"{r[0]}-{r[4]}" for r in ROWS])
def test_seed_equation_and_generated_line_agree(row):
    seed, where, latex, model, name, seed_fn = row
    d, v, D = _derived(model)
    eq = d[name]
    generated = eq.evaluate(d.ctx)
    by_hand = np.asarray(seed_fn(v, D), dtype=np.float64).reshape(generated.shape)
    engine = D[name]
    scale = 1.0 + np.abs(engine).max()
    assert np.abs(by_hand - generated).max() <= 1e-9 * scale, (seed, where, eq.txt())
    assert np.abs(by_hand - engine).max() <= 1e-9 * scale
    assert eq.ok


def test_docs_table_quotes_every_generated_line():
    text = open(DOC, encoding="utf-8").read()
    missing = []
    for seed, where, latex, model, name, _ in ROWS:
        d, _, _ = _derived(model)
        line = d[name].txt()
        if f"`{line}`" not in text:
            missing.append(line)
    assert not missing, "docs/explain.md is out of date; regenerate its table:\n" + "\n".join(missing)


def table():
    out = ["| seed | where | the seed's equation (corrected) | `chainrule explain` writes |", "|---|---|---|---|"]
    for seed, where, latex, model, name, _ in ROWS:
        d, _, _ = _derived(model)
        out.append(f"| {seed} | {where} | ${latex}$ | `{d[name].txt()}` |")
    return "\n".join(out)


if __name__ == "__main__":
    print(table())
