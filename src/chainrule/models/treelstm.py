"""Binary constituency Tree-LSTM on the Sentiment Treebank, batched by tree level.

Tai, Socher & Manning, "Improved Semantic Representations From Tree-Structured Long Short-Term
Memory Networks", ACL 2015 -- the N-ary Tree-LSTM with N = 2 (the constituency variant).

Model (d = ``dim`` word-vector size, H = ``hidden`` memory size, K = 5 classes, σ the logistic
sigmoid, ⊙ elementwise product).

Leaf with word w, x = L[w] (no forget gates: a leaf has no children)::

    [z_i; z_o; z_u] = W_x x + b_x                      W_x (3H, d), b_x (3H)
    i = σ(z_i),  o = σ(z_o),  u = tanh(z_u)
    c = i ⊙ u,   h = o ⊙ tanh(c)

Internal node with children (h_l, c_l), (h_r, c_r) (internal constituency nodes have no word),
with s = [h_l; h_r] (2H) and one fused matmul for the five gates::

    [z_i; z_fl; z_fr; z_o; z_u] = U s + b               U (5H, 2H), b (5H)
    i = σ(z_i),  f_l = σ(z_fl),  f_r = σ(z_fr),  o = σ(z_o),  u = tanh(z_u)
    c = i ⊙ u + f_l ⊙ c_l + f_r ⊙ c_r
    h = o ⊙ tanh(c)

(U's blocks are the paper's U^{(·)}_{k}: row block g, column block k multiplies h_k into gate g,
so each forget gate f_k sees *both* children, as in the paper's eq. (N-ary) with U^{(f)}_{kl}.)

Every node (leaves included) has the classifier y = softmax(Wₛ h + bₛ) and cross-entropy against
its gold label, as :mod:`chainrule.models.rntn`.

Derivatives (what the engine's reverse pass computes; nothing here is hand-coded). With
σ'(z) = σ(1 − σ), tanh'(z) = 1 − tanh², and δ· = ∂J/∂·; at a node, δh collects Wₛᵀ(y − e_gold)
(times the batch weight) plus what its parent sends, and δc what its parent's cell sends::

    δc̃   = δc + δh ⊙ o ⊙ (1 − tanh²(c))                  (total gradient into the cell)
    δz_o = δh ⊙ tanh(c) ⊙ o (1 − o)
    δz_i = δc̃ ⊙ u ⊙ i (1 − i)
    δz_u = δc̃ ⊙ i ⊙ (1 − u²)
    δz_fk = δc̃ ⊙ c_k ⊙ f_k (1 − f_k)                    (internal, k ∈ {l, r})
    δc_k += δc̃ ⊙ f_k                                    (cell gradient to child k)
    δs   = Uᵀ δz   → δh_l += δs[:H], δh_r += δs[H:]
    δU  += δz sᵀ,  δb += δz                              (internal)
    δW_x += δz xᵀ, δb_x += δz, δL[w] += W_xᵀ δz          (leaf, z = [z_i; z_o; z_u])

The forget path δc_k += δc̃ ⊙ f_k is the Tree-LSTM's point: cell gradient flows down the tree
multiplied only by gates, not by a squashing Jacobian, unlike the RNTN's tanh at every node.

Execution
---------
:func:`forward_batched` reuses :class:`~chainrule.models.rntn.TreeBatch` (node table sorted by
height): one ``take`` + matmul for all leaves, then per level h = 1..H one gather of the
children's h (reshaped to (n_h, 2H) = [h_l; h_r]) and c, one fused (n_h, 2H)·(2H, 5H) matmul,
one sigmoid (four gates) and one tanh, and two writes of the level into the h- and c-tables
(:class:`~chainrule.ops.table.NodeTable`: linear in the number of nodes whatever the depth); then a single classifier matmul and a single fused ``softmax_cross_entropy``.
:func:`forward_per_node` is the reference: one node at a time in post-order (a loop, no
recursion). Tests assert both give the same loss and gradients to 1e-10 in float64.

Objective: (1/B) Σ_trees Σ_nodes −log y[gold] + λ_T/2 (‖W_x‖² + ‖b_x‖² + ‖U‖² + ‖b‖²)
+ λ_C/2 ‖Wₛ‖² + λ_L/2 Σ_{w in the batch} ‖L[w]‖² (the RNTN module's conventions).

Initialisation: L ~ N(0, 0.1²) (no pretrained GloVe vectors here, unlike the paper's 300-d
GloVe), W_x ~ U(±1/√d), U ~ U(±1/√(2H)), Wₛ ~ U(±1/√H), biases 0 except the forget-gate biases
(``forget_bias``, default 0).
"""
from __future__ import annotations

import numpy as np

from .. import nn
from ..ops import functional as F
from ..ops.table import NodeTable
# predict/evaluate: the RNTN module's, which run any tree model's forward (ours returns (h, c, logits))
from .rntn import word_vectors
from .rntn import (NUM_CLASSES, TreeBatch, TreeDataset, Vocab, encode_tree, evaluate,  # noqa: F401 (re-exported)
                   evaluate_sharded, l2_penalty, predict, tree_loss_fn)

__all__ = ["TreeLSTM", "build_model", "forward_batched", "forward_per_node", "loss_batched", "loss_per_node",
           "penalty", "make_loss_fn", "predict", "evaluate", "evaluate_sharded", "PAPER_TABLE1", "Vocab", "TreeDataset", "TreeBatch"]

#: Tai et al. 2015, Table 2 (SST test accuracy at the root, %), constituency Tree-LSTM:
#: fine-grained 51.0, binary 88.0. The paper reports root accuracy only (nan: not reported).
PAPER_TABLE1 = {
    "treelstm": {"fine_all": float("nan"), "fine_root": 51.0, "binary_all": float("nan"), "binary_root": 88.0},
}


class TreeLSTM(nn.Module):
    """Binary constituency Tree-LSTM with a softmax classifier at every node (module docstring)."""

    def __init__(self, vocab, dim=25, hidden=50, num_classes=NUM_CLASSES, forget_bias=0.0, seed=0,
                 dtype=np.float32):
        super().__init__()
        self.vocab = vocab
        self.dim = d = int(dim)
        self.hidden = H = int(hidden)
        self.num_classes = K = int(num_classes)
        self.forget_bias = float(forget_bias)
        rng = np.random.default_rng(seed)
        self.embedding = word_vectors(vocab, d, rng, dtype)
        rx = 1.0 / np.sqrt(d)
        self.Wx = nn.Parameter(rng.uniform(-rx, rx, (3 * H, d)).astype(dtype))
        self.bx = nn.Parameter(np.zeros(3 * H, dtype=dtype))
        ru = 1.0 / np.sqrt(2 * H)
        self.U = nn.Parameter(rng.uniform(-ru, ru, (5 * H, 2 * H)).astype(dtype))
        b = np.zeros(5 * H)
        b[H:3 * H] = self.forget_bias
        self.b = nn.Parameter(b.astype(dtype))
        rs = 1.0 / np.sqrt(H)
        self.Ws = nn.Parameter(rng.uniform(-rs, rs, (K, H)).astype(dtype))
        self.bs = nn.Parameter(np.zeros(K, dtype=dtype))

    def params(self):
        """``{'L', 'Wx', 'bx', 'U', 'b', 'Ws', 'bs'}`` as Tensors."""
        return {"L": self.embedding.weight, "Wx": self.Wx, "bx": self.bx, "U": self.U, "b": self.b,
                "Ws": self.Ws, "bs": self.bs}

    def config(self):
        return {"model": "treelstm", "dim": self.dim, "hidden": self.hidden, "num_classes": self.num_classes,
                "forget_bias": self.forget_bias}

    def forward(self, batch):
        """(h table (N, H), c table (N, H), logits (N, K)) in the batch's table order."""
        return forward_batched(self.params(), batch)

    def encode(self, trees):
        return TreeDataset(trees, self.vocab)


def build_model(config, vocab, seed=0, dtype=np.float32):
    return TreeLSTM(vocab, dim=config.get("dim", 25), hidden=config.get("hidden", 50),
                    num_classes=config.get("num_classes", NUM_CLASSES),
                    forget_bias=config.get("forget_bias", 0.0), seed=seed, dtype=dtype)


# ---------------------------------------------------------------------------------------- forward passes
def forward_batched(params, batch):
    """Every node's h, c and logits for a :class:`~chainrule.models.rntn.TreeBatch`, batched by level."""
    L, Wx, bx, U, b, Ws, bs = (params[k] for k in ("L", "Wx", "bx", "U", "b", "Ws", "bs"))
    H = U.shape[1] // 2
    x = F.take(L, batch.leaf_words, sparse=True)                     # every leaf: one gather
    z = F.matmul(x, F.transpose(Wx)) + bx                             # (n0, 3H): i, o, u
    io = F.sigmoid(F.getitem(z, (slice(None), slice(0, 2 * H))))
    i, o = F.getitem(io, (slice(None), slice(0, H))), F.getitem(io, (slice(None), slice(H, 2 * H)))
    u = F.tanh(F.getitem(z, (slice(None), slice(2 * H, 3 * H))))
    c0 = i * u
    c_tab, h_tab = NodeTable(batch.num_nodes), NodeTable(batch.num_nodes)   # rows in height order
    c_tab.write(0, c0)
    h_tab.write(0, o * F.tanh(c0))
    UT = F.transpose(U)                                               # (2H, 5H), once per batch
    for lev, ch in enumerate(batch.children, start=1):
        s = h_tab.gather(ch, distinct=True, flat=True)                # [h_l; h_r] for the level (n, 2H)
        cc = c_tab.gather(ch, distinct=True)                          # (n, 2, H)
        z = F.matmul(s, UT) + b                                       # (n, 5H): all five gates
        g = F.sigmoid(F.getitem(z, (slice(None), slice(0, 4 * H))))   # i, f_l, f_r, o
        u = F.tanh(F.getitem(z, (slice(None), slice(4 * H, 5 * H))))
        i, fl, fr, o = (F.getitem(g, (slice(None), slice(k * H, (k + 1) * H))) for k in range(4))
        c = i * u + fl * F.getitem(cc, (slice(None), 0)) + fr * F.getitem(cc, (slice(None), 1))
        h = o * F.tanh(c)
        c_tab.write(batch.bounds[lev], c)
        h_tab.write(batch.bounds[lev], h)
    c_tab, h_tab = c_tab.read(), h_tab.read()
    logits = F.matmul(h_tab, F.transpose(Ws)) + bs                    # every node's classifier
    return h_tab, c_tab, logits


def loss_batched(params, batch):
    """(1/B) Σ_nodes −log softmax(logits)[gold] (one fused op); returns (loss, logits)."""
    _, _, logits = forward_batched(params, batch)
    return F.softmax_cross_entropy(logits, batch.labels, weight=1.0 / len(batch)), logits


def forward_per_node(params, tree):
    """Reference: h, c and logits of one :class:`~chainrule.models.rntn.EncodedTree`, node by node in
    post-order (a loop, no recursion). Returns lists of (H,), (H,), (K,) tensors."""
    L, Wx, bx, U, b, Ws, bs = (params[k] for k in ("L", "Wx", "bx", "U", "b", "Ws", "bs"))
    H = U.shape[1] // 2
    d = L.shape[1]
    hs, cs, logits = [], [], []
    for n in range(len(tree)):
        w = tree.word[n]
        if w >= 0:
            x = F.reshape(F.take(L, np.array([w]), sparse=True), (d,))
            z = F.matmul(Wx, x) + bx
            i = F.sigmoid(z[0:H])
            o = F.sigmoid(z[H:2 * H])
            u = F.tanh(z[2 * H:3 * H])
            c = i * u
        else:
            lc, rc = tree.left[n], tree.right[n]
            z = F.matmul(U, F.concat([hs[lc], hs[rc]])) + b
            i, fl, fr, o = (F.sigmoid(z[k * H:(k + 1) * H]) for k in range(4))
            u = F.tanh(z[4 * H:5 * H])
            c = i * u + fl * cs[lc] + fr * cs[rc]
        h = o * F.tanh(c)
        hs.append(h)
        cs.append(c)
        logits.append(F.matmul(Ws, h) + bs)
    return hs, cs, logits


def loss_per_node(params, trees):
    """The objective of :func:`loss_batched`, node by node."""
    trees = list(trees)
    w = 1.0 / len(trees)
    total = None
    for t in trees:
        _, _, logits = forward_per_node(params, t)
        for n, z in enumerate(logits):
            li = F.softmax_cross_entropy(F.reshape(z, (1, -1)), np.array([t.label[n]]), weight=w)
            total = li if total is None else total + li
    return total


def penalty(params, active_words, reg_transform=1e-4, reg_classification=1e-4, reg_words=1e-4, word_weight=1.0):
    """λ_T/2 (‖W_x‖²+‖b_x‖²+‖U‖²+‖b‖²) + λ_C/2 ‖Wₛ‖² + λ_L/2 Σ_{w active} ‖L[w]‖²."""
    return l2_penalty(params, [(("Wx", "bx", "U", "b"), reg_transform), (("Ws",), reg_classification)],
                      active_words, reg_words * word_weight)


def make_loss_fn(reg_transform=1e-4, reg_classification=1e-4, reg_words=1e-4, reg_tensor=None):
    """The batched data term plus :func:`penalty` (:func:`chainrule.models.rntn.tree_loss_fn`; same
    signature as :func:`chainrule.models.rntn.make_loss_fn`; the Tree-LSTM has no tensor, so
    ``reg_tensor`` is unused)."""
    return tree_loss_fn(lambda p, active, ww: penalty(p, active, reg_transform, reg_classification, reg_words, ww))


def per_node_agreement(model, dataset):
    """Relative error (:func:`chainrule.derivations.rel_error`) per parameter between the gradients
    of the batched-by-level loss and of the node-by-node reference (:func:`loss_per_node`): the
    Tree-LSTM's independent check (the seeds derive no Tree-LSTM)."""
    from ..derivations import rel_error
    from .rntn import engine_grads
    p = model.params()
    batched, _ = loss_batched(p, dataset.batch(np.arange(len(dataset))))
    reference = loss_per_node(p, dataset.encoded)
    errs = {"loss": abs(batched.item() - reference.item()) / max(1.0, abs(reference.item()))}
    gb, gr = engine_grads(p, batched), engine_grads(p, reference)
    errs.update({k: rel_error(gb[k], gr[k]) for k in p})
    return errs
