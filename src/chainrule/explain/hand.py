"""The five seed derivations of :mod:`chainrule.derivations`, written as hand derivations.

Each function takes the forward values of the matching :mod:`chainrule.explain.models` problem
(``v``: name -> array, as :func:`chainrule.explain.check_derivation` passes them) and returns the δ's
and parameter gradients line by line, in the seed document's order and notation (corrected as in
``docs/derivations.md``), using the small helpers below for f′, the softmax and soft-maximum
Jacobians, the penalty and the sum over consumers -- the way a person writes it down.

They serve three purposes: the correct reference a user can compare their own lines with, the
"no false alarm" check of :func:`check_derivation`, and the material of the mutation benchmark
(``benchmarks/explain_mutations.py``), which makes single slips in their source.

* :func:`window` -- seed 002, eqs. (12), (15), (31), (25), (30), (29) and the columns of L;
* :func:`multilabel_mlp` -- seed 003, Alg 1 (batched, 1/N, +λW);
* :func:`layerwise` -- seed 004, the layer recursion with the softmax vector activation;
* :func:`dag` -- seed 001, δ[v] and the weight gradients on the example DAG;
* :func:`rntn` -- seed 000, the split of δ between the two children and ∂J/∂V.
"""
from __future__ import annotations

import numpy as np


# ---------------------------------------------------------------------------------- helpers
def sig(z):
    """σ(z)."""
    return np.exp(-np.logaddexp(0.0, -z))


def dsig(a):
    """σ′ written from the output a = σ(z): a ⊙ (1 − a)."""
    return a * (1.0 - a)


def dtanh(a):
    """tanh′ written from the output a = tanh(z): 1 − a²."""
    return 1.0 - a * a


def drelu(z):
    """relu′(z) = 1[z > 0]."""
    return (z > 0).astype(float)


def softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def softmax_jac(y, g, axis=0):
    """(diag(y) − y yᵀ) g for every column (axis=0) or row of y: the softmax's vector Jacobian."""
    return y * (g - np.sum(g * y, axis=axis, keepdims=True))


def dsmax(g, a, o):
    """Seed 001's soft maximum o = Σ_i σ_s(a)_i a_i: ∂/∂a_i = σ_s(a)_i (1 + a_i − o), times g."""
    return g[..., None] * softmax(a) * (1.0 + a - o[..., None])


def reg(c, W):
    """The gradient c·W of a penalty (c/2)‖W‖²."""
    return c * W


def consumers(*terms):
    """The distributed chain rule: a value that fans out gets the sum of its consumers' δ's."""
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


def bilinear_back(V, v, g):
    """Seed 000: ∂/∂v of Σ_k g_k vᵀ V^[k] v = Σ_k g_k (V^[k] + V^[k]ᵀ) v."""
    return np.einsum("k,ijk,j->i", g, V, v) + np.einsum("k,ijk,i->j", g, V, v)


def bilinear_V(g, v):
    """Seed 000: ∂/∂V^[k] = g_k v vᵀ."""
    return np.einsum("k,i,j->ijk", g, v, v)


# ---------------------------------------------------------------------------------- 002
def window(v):
    """Seed 002, batched over m windows, cost (1) with the C/2m penalty on W and U, in the layout of
    :mod:`chainrule.models.window` (rows are examples; W, U, L stored as the seed's Wᵀ, U, Lᵀ)."""
    m, C = v["x"].shape[0], 0.3
    D = {}
    D["z2"] = (sig(v["z2"]) - v["y"]) / m                              # (12): a2 − y, and the 1/m of the mean
    D["b2"] = np.sum(D["z2"], axis=0)                                  # (15)
    D["U"] = v["a1"].T @ D["z2"] + reg(C / m, v["U"])                  # (31)
    D["a1"] = D["z2"] @ v["U"].T                                       # U δ2 (per example)
    D["z1"] = D["a1"] * dtanh(v["a1"])                                 # δ1 = U δ2 ⊙ (1 − a1²)
    D["W"] = v["x"].T @ D["z1"] + reg(C / m, v["W"])                   # (30)
    D["b1"] = np.sum(D["z1"], axis=0)                                  # (25)
    D["x"] = D["z1"] @ v["W"].T                                        # (29): Wᵀ δ1 per example
    n = v["L"].shape[1]
    rows = {}
    for i, window_idx in enumerate(v["idx"]):                           # block c of ∂J/∂x to word w_c of L
        for c, w in enumerate(window_idx):
            rows[int(w)] = rows.get(int(w), 0) + D["x"][i, c * n:(c + 1) * n]
    D["L"] = rows
    return D


# ---------------------------------------------------------------------------------- 003
def multilabel_mlp(v):
    """Seed 003, Alg 1: δ3 = a3 − y (per example, /N), Δ2 = δ3 a2ᵀ + λW2, δ2 = W2ᵀ δ3 ⊙ a2 ⊙ (1 − a2),
    in the layout of :mod:`chainrule.models.mlp` (rows are examples; W_k stored (in, out))."""
    N, lam = v["X"].shape[0], 0.1
    D = {}
    D["z3"] = (sig(v["z3"]) - v["Y"]) / N
    D["b2"] = np.sum(D["z3"], axis=0)
    D["W2"] = v["a2"].T @ D["z3"] + reg(lam, v["W2"])
    D["a2"] = D["z3"] @ v["W2"].T
    D["z2"] = D["a2"] * dsig(v["a2"])
    D["b1"] = np.sum(D["z2"], axis=0)
    D["W1"] = v["X"].T @ D["z2"] + reg(lam, v["W1"])
    return D


# ---------------------------------------------------------------------------------- 004
def layerwise(v):
    """Seed 004, columns are examples: δy_N = ∇Div, δz_k = J_{f_k}ᵀ δy_k, ∂W_k = δz_k y_{k−1}ᵀ,
    δy_{k−1} = W_kᵀ δz_k (tanh, relu, then a softmax vector activation with cross-entropy)."""
    D = {}
    D["y3"] = -v["d"] / v["y3"]
    D["z3"] = softmax_jac(v["y3"], D["y3"], axis=0)
    D["W3"] = D["z3"] @ v["y2"].T
    D["b3"] = np.sum(D["z3"], axis=1)
    D["y2"] = v["W3"].T @ D["z3"]
    D["z2"] = D["y2"] * drelu(v["z2"])
    D["W2"] = D["z2"] @ v["y1"].T
    D["b2"] = np.sum(D["z2"], axis=1)
    D["y1"] = v["W2"].T @ D["z2"]
    D["z1"] = D["y1"] * dtanh(v["y1"])
    D["W1"] = D["z1"] @ v["x"].T
    D["b1"] = np.sum(D["z1"], axis=1)
    return D


# ---------------------------------------------------------------------------------- 001
def dag(v):
    """Seed 001 on the example DAG: δ_o[u] = Σ_{v ∈ consumers(u)} w(u,v) δ_a[v]; δ_a[v] = σ′ δ_o[v] for a
    sigmoid unit, σ_s(a)_i (1 + a_i − o) δ_o[v] for a soft maximum; ∂w(u,v) = o[u] δ_a[v]."""
    x1, x2 = v["x"][:, 0], v["x"][:, 1]
    D = {}
    D["o[z]"] = v["o[z]"] - v["y"]
    D["a[z]"] = dsmax(D["o[z]"], v["a[z]"], v["o[z]"])
    D["w[y->z]"] = np.sum(v["o[y]"][:, None] * D["a[z]"], axis=0)
    D["w[m->z]"] = np.sum(v["o[m]"][:, None] * D["a[z]"], axis=0)
    D["o[y]"] = D["a[z]"] @ v["w[y->z]"]
    D["a[y]"] = D["o[y]"] * dsig(v["o[y]"])
    D["w[l->y]"] = np.sum(v["a[l]"] * D["a[y]"])
    D["w[h1->y]"] = np.sum(v["o[h1]"] * D["a[y]"])
    D["a[l]"] = D["a[y]"] * v["w[l->y]"]
    D["w[m->l]"] = np.sum(v["o[m]"] * D["a[l]"])
    D["w[x1->l]"] = np.sum(x1 * D["a[l]"])
    D["o[m]"] = consumers(D["a[z]"] @ v["w[m->z]"], D["a[l]"] * v["w[m->l]"])
    D["a[m]"] = dsmax(D["o[m]"], v["a[m]"], v["o[m]"])
    D["w[h1->m]"] = np.sum(v["o[h1]"][:, None] * D["a[m]"], axis=0)
    D["w[h2->m]"] = np.sum(v["o[h2]"][:, None] * D["a[m]"], axis=0)
    D["w[x2->m]"] = np.sum(x2[:, None] * D["a[m]"], axis=0)
    D["o[h2]"] = D["a[m]"] @ v["w[h2->m]"]
    D["a[h2]"] = D["o[h2]"] * dsig(v["o[h2]"])
    D["w[x1->h2]"] = np.sum(x1 * D["a[h2]"])
    D["w[h1->h2]"] = np.sum(v["o[h1]"] * D["a[h2]"])
    D["o[h1]"] = consumers(D["a[y]"] * v["w[h1->y]"], D["a[m]"] @ v["w[h1->m]"], D["a[h2]"] * v["w[h1->h2]"])
    D["a[h1]"] = D["o[h1]"] * dsig(v["o[h1]"])
    D["w[x1->h1]"] = np.sum(x1 * D["a[h1]"])
    D["w[x2->h1]"] = np.sum(x2 * D["a[h1]"])
    return D


# ---------------------------------------------------------------------------------- 000
RNTN_LABELS = (2, 1, 0, 1, 4, 3, 1)     # the node labels of chainrule.explain.models.TREE, post-order


def rntn(v):
    """Seed 000 on the tree ((w0 w1) (w2 w3)) (nodes 0..6 in post-order, 6 the root): the softmax
    error δ_s = y − t at every node, δ_x = Wsᵀ δ_s + the parent's message, split between the two
    children as the halves of δ_v = Wᵀ δ_net + Σ_k δ_net,k (V^[k] + V^[k]ᵀ) v, δ_net = δ_x ⊙ (1 − x²);
    ∂J/∂V^[k] = Σ_nodes δ_net,k v vᵀ (the layout of :mod:`chainrule.models.rntn`: L's rows are words)."""
    d, K, lam = v["x0"].shape[0], v["Ws"].shape[0], 0.01
    D = {}
    for i, label in enumerate(RNTN_LABELS):
        D[f"s{i}"] = softmax(v[f"s{i}"]) - np.eye(K)[label]
    D["bs"] = consumers(*(D[f"s{i}"] for i in range(7)))
    D["Ws"] = consumers(*(np.outer(D[f"s{i}"], v[f"x{i}"]) for i in range(7))) + reg(lam, v["Ws"])
    D["x6"] = v["Ws"].T @ D["s6"]
    D["v6"] = v["W"].T @ (D["x6"] * dtanh(v["x6"])) + bilinear_back(v["V"], v["v6"], D["x6"] * dtanh(v["x6"]))
    D["x5"] = consumers(v["Ws"].T @ D["s5"], D["v6"][d:])
    D["v5"] = v["W"].T @ (D["x5"] * dtanh(v["x5"])) + bilinear_back(v["V"], v["v5"], D["x5"] * dtanh(v["x5"]))
    D["x4"] = consumers(v["Ws"].T @ D["s4"], D["v5"][d:])
    D["x3"] = consumers(v["Ws"].T @ D["s3"], D["v5"][:d])
    D["x2"] = consumers(v["Ws"].T @ D["s2"], D["v6"][:d])
    D["b"] = consumers(D["x6"] * dtanh(v["x6"]), D["x5"] * dtanh(v["x5"]), D["x2"] * dtanh(v["x2"]))
    D["W"] = consumers(np.outer(D["x6"] * dtanh(v["x6"]), v["v6"]), np.outer(D["x5"] * dtanh(v["x5"]), v["v5"]),
                       np.outer(D["x2"] * dtanh(v["x2"]), v["v2"])) + reg(lam, v["W"])
    D["V"] = consumers(bilinear_V(D["x6"] * dtanh(v["x6"]), v["v6"]), bilinear_V(D["x5"] * dtanh(v["x5"]), v["v5"]),
                       bilinear_V(D["x2"] * dtanh(v["x2"]), v["v2"])) + reg(lam, v["V"])
    D["v2"] = v["W"].T @ (D["x2"] * dtanh(v["x2"])) + bilinear_back(v["V"], v["v2"], D["x2"] * dtanh(v["x2"]))
    D["x1"] = consumers(v["Ws"].T @ D["s1"], D["v2"][d:])
    D["x0"] = consumers(v["Ws"].T @ D["s0"], D["v2"][:d])
    gL = reg(lam, v["L"])
    for i, w in ((0, 0), (1, 1), (3, 2), (4, 3)):                      # leaf i holds word w: row w of L
        gL = gL + np.outer(np.eye(gL.shape[0])[w], D[f"x{i}"])
    D["L"] = gL
    return D


SEEDS = {"window": window, "multilabel-mlp": multilabel_mlp, "layerwise": layerwise, "dag": dag, "rntn": rntn}
