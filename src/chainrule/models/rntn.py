"""Recursive neural tensor network (RNTN) and plain recursive network (RNN) on the Sentiment Treebank.

Seed ``000_51219d21b4fc59a2.txt``; Socher et al., "Recursive Deep Models for Semantic
Compositionality Over a Sentiment Treebank", EMNLP 2013.

Model (d = ``dim``, K = 5 classes). A leaf with word w has the vector ``x = tanh(L[w])``
(Stanford CoreNLP's ``forwardPropagateTree`` applies tanh to the word vector; ``leaf_tanh=False``
uses ``L[w]`` itself, the paper's reading). An internal node with children vectors a, b
(``c = [a; b]``, 2d) has

    RNTN:  p = tanh(cᵀ V c + W c + b),   (cᵀ V c)_k = Σ_ij c_i V[i, j, k] c_j,  V (2d, 2d, d)
    RNN:   p = tanh(W c + b)

and every node (leaves included) has the classifier y = softmax(Wₛ x + bₛ), with cross-entropy
against the node's gold label. Parameters: ``embedding.weight`` L (|vocab|, d), ``W`` (d, 2d),
``b`` (d), ``V`` (2d, 2d, d) (RNTN only), ``Ws`` (K, d), ``bs`` (K).

Execution batched by level
--------------------------
:func:`forward_batched` computes a minibatch of trees level by level: the height of a node is
the length of its longest path down to a leaf, so all children of a node of height h have
height < h. The *node table* holds the vectors of every node of the batch sorted by height:
one ``take`` gives every leaf, then one graph node runs every level h = 1..H in order
(:meth:`NodeTable.levels <chainrule.ops.table.NodeTable.levels>` on the batch's
:class:`~chainrule.ops.table.LevelSchedule`, its indices checked once when the batch is built):
the gather of the children of all height-h nodes from the table (an (n_h, 2) index → (n_h, 2d)
rows c = [a; b]), their :func:`~chainrule.ops.fused.composition` p = tanh(c Wᵀ + b + cᵀ V c) (a
fused op whose rule is the matmul, add, ``bilinear`` and tanh rules in reverse order; the tensor
term is one GEMM U = c · V, V viewed as (2d, 2d·d), then Σ_j c_j U[n, j, k], see
:func:`chainrule.bilinear`), and the write of the level's rows into the table.  Its backward runs
the composition's rule level by level, top down, for the children's gradients only, and forms the
weights' gradients once over all internal nodes (W̄ = Cᵀ z̄, b̄ = Σ z̄, V̄ = Cᵀ (C ⊗ z̄): one GEMM
each where a level loop makes one per level plus a sum).  The table is a
:class:`~chainrule.ops.table.NodeTable`: one buffer written level by level, and in backward one
gradient buffer each level's gather adds into, so the cost is linear in the number of nodes
whatever the depth (appending with ``concat`` copied the whole table at every level: quadratic in
the depth). Then a single classifier matmul over all nodes and a single fused
``softmax_cross_entropy``.  Backpropagation through structure is the engine's reverse pass;
nothing in this module computes a gradient by hand.

:func:`forward_per_node` is the reference: one node at a time in post-order (an explicit loop,
no recursion), each node its own small ops. Tests assert that both give the same loss and the
same gradients (to 1e-10 in float64) on real SST trees.

Training objective (Stanford CoreNLP's ``SentimentCostAndGradient``)
-------------------------------------------------------------------
For a minibatch of B trees,

    J = (1/B) Σ_trees Σ_nodes −log y[gold]
        + λ_T/2 (‖W‖² + ‖b‖² + ‖V‖²) + λ_C/2 ‖Wₛ‖² + λ_L/2 Σ_{w in the batch} ‖L[w]‖²

CoreNLP sums the node errors of the batch and scales the sum by 1/B ("so that the
regularisation isn't drowned out"); the penalty is added at full strength to every batch (it is
*not* divided by the number of batches). W's penalty includes its bias column (CoreNLP's
``dropBiasColumn=false`` for the transform), the classifier's bias is not penalised, and only
the word vectors that occur in the batch are penalised (``activeMatricesOnly``), so the
embedding gradient stays row-sparse. Defaults λ_T = 0.001 (W and V), λ_C = 0.0001 (Wₛ),
λ_L = 0.0001 (word vectors). AdaGrad: θ ← θ − lr g / (√(Σg²) + 1e-3), lr 0.01, the history
reset at the start of every epoch (``adagradResetFrequency = 1``), minibatch 27.

Vocabulary: every word of the training trees plus ``*UNK*`` (index 0), case-sensitive by
default like CoreNLP (``lowercaseWordVectors = false``); ``lowercase=True`` folds case. As in
CoreNLP no training word maps to UNK, so the UNK vector keeps its random initial value
(N(0, 0.1²) like every word vector) and an unknown word enters as that fixed vector.

Initialisation (CoreNLP ``SentimentModel``): W = [I + U(±1/(2√d)), I + U(±1/(2√d))], b = 0,
V ~ U(±1/(4d)), Wₛ ~ U(±1/√d), bₛ ~ U(0, 1), L ~ N(0, 0.1²).
"""
from __future__ import annotations

import numpy as np

from .. import nn
from ..autograd import no_grad
from ..ops import functional as F
from ..ops.fused import COMPOSITION, sum_squares
from ..ops.table import LevelSchedule, NodeTable
from ..train import ShardedEvaluation

__all__ = [
    "Vocab", "EncodedTree", "encode_tree", "TreeBatch", "TreeDataset", "RNTN", "RNN", "build_model",
    "forward_batched", "forward_per_node", "loss_batched", "loss_per_node", "l2_penalty", "penalty",
    "tree_loss_fn", "make_loss_fn",
    "predict", "evaluate", "metrics_from_predictions", "PAPER_TABLE1", "UNK",
    "engine_grads", "nested", "encode_nested", "derivation_params", "from_derivation", "derivation_grads",
    "derivation_loss", "derivation_agreement",
]

UNK = "*UNK*"
NUM_CLASSES = 5

#: Socher et al. 2013, Table 1 (test set, %): fine-grained all / root, binary all / root.
PAPER_TABLE1 = {
    "rntn": {"fine_all": 80.7, "fine_root": 45.7, "binary_all": 87.6, "binary_root": 85.4},
    "rnn": {"fine_all": 79.0, "fine_root": 43.2, "binary_all": 86.1, "binary_root": 82.4},
}


# ---------------------------------------------------------------------------------------- vocabulary
class Vocab:
    """Word → index. Index 0 is ``*UNK*``; ``lowercase`` folds case before every lookup."""

    def __init__(self, words, lowercase=False):
        self.lowercase = bool(lowercase)
        words = list(words)
        if not words or words[0] != UNK:
            words = [UNK] + [w for w in words if w != UNK]
        self.words = words
        self.index = {w: i for i, w in enumerate(words)}
        if len(self.index) != len(words):
            raise ValueError("Vocab: repeated words")

    @classmethod
    def from_trees(cls, trees, lowercase=False):
        """Every word of ``trees`` (in order of first appearance) plus ``*UNK*``."""
        seen = {UNK: None}
        for t in trees:
            for w in t.words():
                seen.setdefault(w.lower() if lowercase else w, None)
        return cls(list(seen), lowercase)

    def __len__(self):
        return len(self.words)

    def __contains__(self, word):
        return (word.lower() if self.lowercase else word) in self.index

    def encode(self, word):
        return self.index.get(word.lower() if self.lowercase else word, 0)

    def to_json(self):
        return {"words": self.words, "lowercase": self.lowercase}

    @classmethod
    def from_json(cls, obj):
        return cls(obj["words"], obj.get("lowercase", False))


# ---------------------------------------------------------------------------------------- trees
class EncodedTree:
    """A tree as flat arrays in post-order (children before parents, root last).

    ``word`` (vocabulary index, −1 at internal nodes), ``left``/``right`` (child positions, −1 at
    leaves), ``label`` (gold class), ``height`` (0 at leaves), and ``nodes`` (the Tree objects).
    """
    __slots__ = ("word", "left", "right", "label", "height", "nodes")

    def __len__(self):
        return len(self.label)


def encode_tree(tree, vocab):
    """Flatten a :class:`~chainrule.data.trees.Tree` (iteratively, post-order) for the models."""
    nodes = tree.nodes()
    pos = {id(n): i for i, n in enumerate(nodes)}
    n = len(nodes)
    word = np.full(n, -1, dtype=np.intp)
    left = np.full(n, -1, dtype=np.intp)
    right = np.full(n, -1, dtype=np.intp)
    label = np.empty(n, dtype=np.intp)
    height = np.zeros(n, dtype=np.intp)
    for i, node in enumerate(nodes):
        lab = node.label
        if not isinstance(lab, (int, np.integer)) or not 0 <= lab < NUM_CLASSES:
            raise ValueError(f"rntn: node label {lab!r} is not a class in 0..{NUM_CLASSES - 1} "
                             f"(tree {tree.to_string()[:60]!r})")
        label[i] = lab
        if node.children:
            if len(node.children) != 2:
                raise ValueError(f"rntn: node {i} of tree {tree.to_string()[:60]!r} has "
                                 f"{len(node.children)} children; the models need binary trees")
            li, ri = pos[id(node.children[0])], pos[id(node.children[1])]
            left[i], right[i] = li, ri
            height[i] = 1 + max(height[li], height[ri])
        else:
            word[i] = vocab.encode(node.word)
    e = EncodedTree()
    e.word, e.left, e.right, e.label, e.height, e.nodes = word, left, right, label, height, nodes
    return e


class TreeBatch:
    """A minibatch of encoded trees laid out for level-by-level execution.

    Node table order: all nodes sorted by height (stable), so level h is the contiguous block
    ``bounds[h]:bounds[h+1]``. Attributes: ``leaf_words`` (n₀,), ``children`` (list over h = 1..H of
    (n_h, 2) table positions of the left/right child), ``labels`` (N,) in table order, ``roots``
    (B,) table positions of the roots, ``tree_pos`` (list of (n_t,) table positions of each tree's
    nodes in post-order), ``trees`` (the encoded trees).
    """

    def __init__(self, encoded):
        encoded = list(encoded)
        if not encoded:
            raise ValueError("TreeBatch: empty batch")
        self.trees = encoded
        sizes = np.array([len(e) for e in encoded])
        offs = np.concatenate([[0], np.cumsum(sizes)])
        word = np.concatenate([e.word for e in encoded])
        left = np.concatenate([np.where(e.left >= 0, e.left + o, -1) for e, o in zip(encoded, offs[:-1])])
        right = np.concatenate([np.where(e.right >= 0, e.right + o, -1) for e, o in zip(encoded, offs[:-1])])
        height = np.concatenate([e.height for e in encoded])
        label = np.concatenate([e.label for e in encoded])
        order = np.argsort(height, kind="stable")
        pos = np.empty_like(order)
        pos[order] = np.arange(len(order))
        counts = np.bincount(height)
        bounds = np.concatenate([[0], np.cumsum(counts)])
        self.bounds = bounds
        self.leaf_words = word[order[:bounds[1]]]
        children = []
        for h in range(1, len(counts)):
            sel = order[bounds[h]:bounds[h + 1]]
            children.append(np.stack([pos[left[sel]], pos[right[sel]]], axis=1))
        self.labels = label[order]
        self.roots = pos[offs[1:] - 1]
        self._pos, self._offs = pos, offs
        self.num_nodes = int(offs[-1])
        self.schedule = LevelSchedule(bounds[1:], children)     # checked once, here

    # two views, not attributes of their own: cr.compile's signature walk visits every attribute's arrays
    @property
    def children(self):
        return self.schedule.children

    @property
    def tree_pos(self):
        return [self._pos[o:p] for o, p in zip(self._offs[:-1], self._offs[1:])]

    def __len__(self):
        return len(self.trees)

    #: data-parallel training (:meth:`TreeDataset.split_batch`) sets which words' penalty this part of
    #: a global batch carries, and the factor that undoes the part's weight n_r/n
    penalty_words = None
    word_weight = 1.0

    @property
    def active_words(self):
        """The distinct vocabulary indices used by the batch's leaves (for the word-vector penalty)."""
        if self.penalty_words is not None:
            return self.penalty_words
        return np.unique(self.leaf_words)


class TreeDataset:
    """Trees encoded once; ``batch(idx)`` returns a :class:`TreeBatch` (what :class:`~chainrule.train.Trainer` needs)."""

    def __init__(self, trees, vocab):
        self.raw = list(trees)
        self.encoded = [encode_tree(t, vocab) for t in self.raw]

    def __len__(self):
        return len(self.encoded)

    def batch(self, idx):
        return TreeBatch([self.encoded[int(i)] for i in np.asarray(idx).reshape(-1)])

    def split_batch(self, idx, rank, size):
        """Data-parallel training: ``(TreeBatch of trees idx[rank::size] or None, their number,
        len(idx))``.  The penalty on the word vectors of the whole batch is not a sum over trees,
        so each word the global batch uses is penalised on exactly one rank (word mod the number
        of ranks with trees), at weight n/n_r; after the Trainer's weighting by n_r/n the sum over
        ranks is exactly the one-process penalty."""
        idx = np.asarray(idx).reshape(-1)
        local = idx[rank::size]
        if not len(local):
            return None, 0, len(idx)
        b = self.batch(local)
        words = np.unique(np.concatenate([self.encoded[int(i)].word for i in idx]))
        words = words[words >= 0]
        b.penalty_words = words[words % min(size, len(idx)) == rank]
        b.word_weight = len(idx) / len(local)
        return b, len(local), len(idx)


# ---------------------------------------------------------------------------------------- models
def word_vectors(vocab, d, rng, dtype):
    """The word-vector table of the tree models: a row-sparse :class:`~chainrule.nn.Embedding`
    initialised from N(0, 0.1²) (CoreNLP's RNTN; the Tree-LSTM uses the same)."""
    emb = nn.Embedding(len(vocab), d, sparse=True, dtype=dtype)
    emb.weight.data = (0.1 * rng.standard_normal((len(vocab), d))).astype(dtype)
    return emb


class _Recursive(nn.Module):
    """Shared parts of :class:`RNTN` and :class:`RNN`."""

    tensor = False

    def __init__(self, vocab, dim=25, num_classes=NUM_CLASSES, leaf_tanh=True, seed=0, dtype=np.float32):
        super().__init__()
        self.vocab = vocab
        self.dim = d = int(dim)
        self.num_classes = K = int(num_classes)
        self.leaf_tanh = bool(leaf_tanh)
        rng = np.random.default_rng(seed)
        self.embedding = word_vectors(vocab, d, rng, dtype)
        r = 1.0 / (2.0 * np.sqrt(d))
        eye = np.eye(d)
        W = np.concatenate([eye + rng.uniform(-r, r, (d, d)), eye + rng.uniform(-r, r, (d, d))], axis=1)
        self.W = nn.Parameter(W.astype(dtype))
        self.b = nn.Parameter(np.zeros(d, dtype=dtype))
        if self.tensor:
            rv = 1.0 / (4.0 * d)
            self.V = nn.Parameter(rng.uniform(-rv, rv, (2 * d, 2 * d, d)).astype(dtype))
        rs = 1.0 / np.sqrt(d)
        self.Ws = nn.Parameter(rng.uniform(-rs, rs, (K, d)).astype(dtype))
        self.bs = nn.Parameter(rng.uniform(0.0, 1.0, K).astype(dtype))

    def params(self):
        """The parameters as a dict ``{'L', 'W', 'b', ['V'], 'Ws', 'bs'}`` of Tensors."""
        p = {"L": self.embedding.weight, "W": self.W, "b": self.b, "Ws": self.Ws, "bs": self.bs}
        if self.tensor:
            p["V"] = self.V
        return p

    def config(self):
        return {"model": "rntn" if self.tensor else "rnn", "dim": self.dim, "num_classes": self.num_classes,
                "leaf_tanh": self.leaf_tanh}

    def forward(self, batch):
        """Node vectors (N, d) in table order and logits (N, K), batched by level."""
        return forward_batched(self.params(), batch, self.leaf_tanh)

    def encode(self, trees):
        return TreeDataset(trees, self.vocab)


class RNTN(_Recursive):
    """Recursive neural tensor network: p = tanh([a;b]ᵀ V [a;b] + W[a;b] + b). See the module docstring."""
    tensor = True


class RNN(_Recursive):
    """Plain recursive network (the paper's RNN baseline): p = tanh(W[a;b] + b)."""
    tensor = False


def build_model(config, vocab, seed=0, dtype=np.float32):
    cls = {"rntn": RNTN, "rnn": RNN}[config["model"]]
    return cls(vocab, dim=config.get("dim", 25), num_classes=config.get("num_classes", NUM_CLASSES),
               leaf_tanh=config.get("leaf_tanh", True), seed=seed, dtype=dtype)


# ---------------------------------------------------------------------------------------- forward passes
def forward_batched(params, batch, leaf_tanh=True):
    """All node vectors and logits of a :class:`TreeBatch`, one batched op per level.

    Returns ``(table, logits)``: the (N, d) node table in height order and the (N, K) logits.
    """
    L, W, b, Ws, bs = params["L"], params["W"], params["b"], params["Ws"], params["bs"]
    V = params.get("V")
    x = F.take(L, batch.leaf_words, sparse=True)                 # every leaf: one gather
    if leaf_tanh:
        x = F.tanh(x)
    WT = F.transpose(W)                                           # (2d, d), once per batch
    table = NodeTable(batch.num_nodes)                            # rows in height order
    table.write(0, x)
    table.levels(batch.schedule, COMPOSITION, WT, b, V)           # p = tanh(c Wᵀ + b + cᵀ V c), c = [a; b]
                                                                  # of every node, level by level: one op
    table = table.read()
    logits = F.matmul(table, F.transpose(Ws)) + bs                # every node's classifier: one matmul
    return table, logits


def loss_batched(params, batch, leaf_tanh=True):
    """(1/B) Σ_nodes −log softmax(logits)[gold] over the batch (one fused op); returns (loss, logits)."""
    _, logits = forward_batched(params, batch, leaf_tanh)
    loss = F.softmax_cross_entropy(logits, batch.labels, weight=1.0 / len(batch))
    return loss, logits


def forward_per_node(params, tree, leaf_tanh=True):
    """Reference path: node vectors and logits of one :class:`EncodedTree`, one node at a time in
    post-order (a loop, no recursion). Returns lists of (d,) vectors and (K,) logits in post-order."""
    L, W, b, Ws, bs = params["L"], params["W"], params["b"], params["Ws"], params["bs"]
    V = params.get("V")
    d = W.shape[0]
    xs, logits = [], []
    for i in range(len(tree)):
        w = tree.word[i]
        if w >= 0:
            x = F.reshape(F.take(L, np.array([w]), sparse=True), (d,))
            if leaf_tanh:
                x = F.tanh(x)
        else:
            c = F.concat([xs[tree.left[i]], xs[tree.right[i]]])
            c.name = f"v{i}"                                  # the seed's names (chainrule explain rntn)
            z = F.matmul(W, c) + b
            if V is not None:
                z = z + F.bilinear(c, V)                      # (cᵀ V^[k] c)_k
            x = F.tanh(z)
        x.name = f"x{i}"
        xs.append(x)
        s = F.matmul(Ws, x) + bs
        s.name = f"s{i}"
        logits.append(s)
    return xs, logits


def loss_per_node(params, trees, leaf_tanh=True):
    """The same objective as :func:`loss_batched`, computed node by node: (1/B) Σ −log y[gold]."""
    trees = list(trees)
    total = None
    w = 1.0 / len(trees)
    for t in trees:
        _, logits = forward_per_node(params, t, leaf_tanh)
        for i, z in enumerate(logits):
            li = F.softmax_cross_entropy(F.reshape(z, (1, -1)), np.array([t.label[i]]), weight=w)
            total = li if total is None else total + li
    return total


def l2_penalty(params, groups, active_words, reg_words):
    """Σ over ``groups`` of λ/2 Σ_{k in keys} ‖params[k]‖² plus λ_L/2 Σ_{w active} ‖L[w]‖² (only the
    word vectors a batch used, so the embedding gradient stays row-sparse); ``groups`` is a list of
    ``(keys, λ)``. None when every λ is zero. Shared by the RNTN/RNN and the Tree-LSTM."""
    xs, scales = [], []
    for keys, lam in groups:
        if lam and keys:
            xs += [params[k] for k in keys]
            scales += [lam] * len(keys)
    if reg_words and len(active_words):
        xs.append(F.take(params["L"], np.asarray(active_words), sparse=True))
        scales.append(reg_words)
    if not xs:
        return None
    return sum_squares(xs, scales)                  # the whole penalty: one fused op


def penalty(params, active_words, reg_transform=1e-3, reg_classification=1e-4, reg_words=1e-4,
            reg_tensor=None, word_weight=1.0):
    """CoreNLP's L2 term: λ_T/2 (‖W‖²+‖b‖²) + λ_V/2 ‖V‖² + λ_C/2 ‖Wₛ‖² + λ_L/2 Σ_{w active} ‖L[w]‖².

    λ_V (``reg_tensor``) defaults to λ_T, as in CoreNLP (both 0.001)."""
    reg_tensor = reg_transform if reg_tensor is None else reg_tensor
    return l2_penalty(params, [(("W", "b"), reg_transform), (("V",) if "V" in params else (), reg_tensor),
                               (("Ws",), reg_classification)], active_words, reg_words * word_weight)


def tree_loss_fn(penalty_of):
    """``loss_fn(model, batch) -> (loss, stats)`` for :class:`~chainrule.train.Trainer`, for any tree
    model whose ``forward(batch)`` ends with the logits: (1/B) Σ_nodes −log softmax[gold] (one fused
    op) plus ``penalty_of(params, active_words, word_weight)`` (the batch's; ``word_weight`` scales the
    word-vector term, 1 except under data parallelism); stats count correct fine-grained node predictions."""

    def loss_fn(model, batch):
        p = model.params()
        logits = model.forward(batch)[-1]
        loss = F.softmax_cross_entropy(logits, batch.labels, weight=1.0 / len(batch))
        pen = penalty_of(p, batch.active_words, batch.word_weight)
        if pen is not None:
            loss = loss + pen
        pred = logits.data.argmax(axis=1)
        return loss, {"correct": int((pred == batch.labels).sum()), "count": batch.num_nodes,
                      "loss_units": batch.num_nodes}
    return loss_fn


def make_loss_fn(reg_transform=1e-3, reg_classification=1e-4, reg_words=1e-4, reg_tensor=None):
    """The batched data term plus :func:`penalty` (see :func:`tree_loss_fn`)."""
    return tree_loss_fn(lambda p, active, ww: penalty(p, active, reg_transform, reg_classification, reg_words,
                                                      reg_tensor, ww))


# ---------------------------------------------------------------------------------------- evaluation
def _softmax_rows(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict(model, dataset, batch_size=256, lo=0, hi=None):
    """Class probabilities of every node: returns ``(probs, labels, is_root)`` over all nodes of
    ``dataset`` (a :class:`TreeDataset`; of its trees ``lo..hi-1`` only, if given), batched by
    level without recording a graph.

    ``model`` is any tree model whose ``forward(batch)`` returns a tuple ending with the (N, K)
    logits in the batch's table order: :class:`RNTN`, :class:`RNN` and
    :class:`~chainrule.models.treelstm.TreeLSTM` (whose ``predict`` is this function)."""
    hi = len(dataset) if hi is None else hi
    probs, labels, roots = [], [], []
    if hi <= lo:
        k = getattr(model, "num_classes", NUM_CLASSES)
        return np.zeros((0, k)), np.zeros(0, np.int64), np.zeros(0, bool)
    with no_grad():
        for i in range(lo, hi, batch_size):
            batch = dataset.batch(np.arange(i, min(i + batch_size, hi)))
            logits = model.forward(batch)[-1]
            probs.append(_softmax_rows(logits.data.astype(np.float64)))
            labels.append(batch.labels)
            r = np.zeros(batch.num_nodes, dtype=bool)
            r[batch.roots] = True
            roots.append(r)
    return np.concatenate(probs), np.concatenate(labels), np.concatenate(roots)


def metrics_from_predictions(probs, labels, is_root):
    """The paper's Table 1 metrics (fractions in [0, 1]) from node class probabilities.

    * ``fine_all`` / ``fine_root``: 5-class accuracy of argmax over all nodes / at the roots.
    * ``binary_all`` / ``binary_root``: over nodes whose gold label is not neutral (0–1 negative,
      3–4 positive); the prediction is positive iff P(3) + P(4) > P(0) + P(1), i.e. the 5-class
      model's binary decision with the neutral mass ignored.
    * ``binary_strict_*``: CoreNLP's ``Evaluate`` variant: the 5-class argmax must fall in the
      gold's group, so a neutral prediction counts as wrong (a lower bound on the above).
    * ``loss``: mean cross-entropy per node.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    is_root = np.asarray(is_root, dtype=bool)
    pred = probs.argmax(axis=1)
    nonneutral = labels != 2
    gold_pos = labels >= 3
    pred_pos = probs[:, 3] + probs[:, 4] > probs[:, 0] + probs[:, 1]
    strict_ok = np.where(gold_pos, pred >= 3, pred <= 1)

    def acc(ok, mask):
        n = int(mask.sum())
        return float(ok[mask].sum()) / n if n else float("nan")

    allm = np.ones(len(labels), dtype=bool)
    out = {
        "fine_all": acc(pred == labels, allm),
        "fine_root": acc(pred == labels, is_root),
        "binary_all": acc(pred_pos == gold_pos, nonneutral),
        "binary_root": acc(pred_pos == gold_pos, nonneutral & is_root),
        "binary_strict_all": acc(strict_ok, nonneutral),
        "binary_strict_root": acc(strict_ok, nonneutral & is_root),
    }
    if len(labels):
        out["loss"] = float(-np.mean(np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-300))))
    return out


def evaluate(model, dataset, batch_size=256):
    """Table-1 metrics of ``model`` (any model :func:`predict` takes) on a :class:`TreeDataset`
    (see :func:`metrics_from_predictions`)."""
    return metrics_from_predictions(*predict(model, dataset, batch_size))


#: :func:`evaluate` as the Trainer's ``evaluate_fn``, in two parts so data-parallel training splits
#: the trees across ranks (each predicts a range of trees; the metrics come from all nodes).
evaluate_sharded = ShardedEvaluation(lambda model, data, lo, hi: predict(model, data, lo=lo, hi=hi),
                                     lambda data, parts: metrics_from_predictions(*parts))


# ---------------------------------------------------------------------------------------------
# The adapter to seed 000's layout (chainrule.derivations.rntn)
# ---------------------------------------------------------------------------------------------
def engine_grads(params, loss):
    """``{name: ∂loss/∂params[name]}`` as dense float64 arrays (zeros where nothing reached a
    tensor), by :func:`chainrule.gradients`; no ``.grad`` is touched."""
    from ..autograd import gradients
    names = list(params)
    return {k: np.asarray(g, dtype=np.float64) for k, g in zip(names, gradients(loss, [params[k] for k in names]))}


def encode_nested(tree):
    """The derivation's nested tuples (``(label, word)`` at a leaf, ``(label, left, right)`` inside;
    ``word`` an index into the word vectors) as an :class:`EncodedTree` (post-order, an explicit
    stack: no recursion); the inverse of :func:`nested`."""
    word, left, right, label, height = [], [], [], [], []
    done, stack = [], [(tree, False)]
    while stack:
        t, expanded = stack.pop()
        if not isinstance(t, tuple) or len(t) not in (2, 3):
            raise ValueError(f"rntn: a tree node must be (label, word) or (label, left, right), got {t!r}")
        if len(t) == 3 and not expanded:
            stack += [(t, True), (t[2], False), (t[1], False)]
            continue
        if len(t) == 2:
            word.append(int(t[1]))
            left.append(-1)
            right.append(-1)
            height.append(0)
        else:
            r, l_ = done.pop(), done.pop()
            word.append(-1)
            left.append(l_)
            right.append(r)
            height.append(1 + max(height[l_], height[r]))
        label.append(int(t[0]))
        done.append(len(label) - 1)
    e = EncodedTree()
    e.word, e.left, e.right, e.label, e.height = (np.array(a, dtype=np.intp) for a in (word, left, right, label, height))
    e.nodes = None
    return e


def nested(e):
    """An :class:`EncodedTree` as the derivation's nested tuples: ``(label, word)`` at a leaf,
    ``(label, left, right)`` inside."""
    objs = [None] * len(e)
    for i in range(len(e)):
        if e.word[i] >= 0:
            objs[i] = (int(e.label[i]), int(e.word[i]))
        else:
            objs[i] = (int(e.label[i]), objs[e.left[i]], objs[e.right[i]])
    return objs[-1]


def derivation_params(model):
    """An RNTN's (or RNN's: ``V = 0``) parameters in the layout of :mod:`chainrule.derivations.rntn`
    (float64): ``L`` transposed to (d, |V|) columns; ``W, b, Ws, bs, V`` as they are."""
    p, d = model.params(), model.dim
    a = lambda k: p[k].data.astype(np.float64)  # noqa: E731
    return {"L": a("L").T, "W": a("W"), "b": a("b"), "Ws": a("Ws"), "bs": a("bs"),
            "V": a("V") if "V" in p else np.zeros((2 * d, 2 * d, d))}


def from_derivation(params, leaf_tanh=False, dtype=np.float64):
    """The inverse of :func:`derivation_params`: an :class:`RNTN` whose parameters are ``params`` (the
    layout of :mod:`chainrule.derivations.rntn`: ``L`` (d, |V|) columns, ``V``, ``W``, ``Ws``, and
    ``b``, ``bs`` when given -- zeros otherwise); word ``w`` of the derivation's trees is row ``w``
    of the embedding.  ``leaf_tanh`` is the derivation's ``leaf_activation``."""
    d, nwords = np.shape(params["L"])
    vocab = Vocab([UNK] + [f"w{i}" for i in range(1, nwords)])
    model = RNTN(vocab, dim=d, num_classes=np.shape(params["Ws"])[0], leaf_tanh=leaf_tanh, dtype=dtype)
    p = model.params()
    p["L"].data[...] = np.asarray(params["L"]).T
    for k in ("V", "W", "Ws", "b", "bs"):
        p[k].data[...] = params[k] if k in params else 0.0
    return model


def derivation_grads(model, loss, keys=None):
    """The engine's gradients of ``loss`` w.r.t. the model's parameters in the derivation's layout
    (``L`` transposed back to columns); ``keys``: only these (e.g. without ``b``/``bs`` for a
    derivation without biases)."""
    g = engine_grads(model.params(), loss)
    g["L"] = g["L"].T
    return {k: g[k] for k in (keys or g)}


def derivation_loss(model, trees, reg=0.0):
    """The derivation's objective for ``model``: Σ over the nested-tuple ``trees`` of Σ_nodes
    −log softmax(Ws x_i + bs)[t_i], node by node (:func:`loss_per_node`), plus
    reg/2 (‖V‖² + ‖W‖² + ‖Ws‖² + ‖L‖²) (all word vectors: :func:`l2_penalty` with every word active)."""
    p = model.params()
    total = None
    for t in trees:
        lt = loss_per_node(p, [encode_nested(t)], model.leaf_tanh)
        total = lt if total is None else total + lt
    pen = l2_penalty(p, [(("V", "W", "Ws"), reg)], np.arange(p["L"].shape[0]), reg)
    return total if pen is None else total + pen


def derivation_agreement(model, dataset):
    """Relative error (:func:`chainrule.derivations.rel_error`) per parameter between the engine's
    gradient of the batched (unregularised) loss and the seed's hand-derived message passing
    (:mod:`chainrule.derivations.rntn`), and of the two losses."""
    from ..derivations import rel_error, rntn as D
    p = model.params()
    batch = dataset.batch(np.arange(len(dataset)))
    loss, _ = loss_batched(p, batch, model.leaf_tanh)
    B = len(dataset)
    eng = {k: g * B for k, g in engine_grads(p, loss).items()}   # the derivation sums over trees
    dp = derivation_params(model)
    trees = [nested(e) for e in dataset.encoded]
    ref = D.batch_gradients(dp, trees, leaf_activation=model.leaf_tanh)
    errs = {"loss": abs(float(loss.item()) * B - D.batch_loss(dp, trees, leaf_activation=model.leaf_tanh))
            / max(1.0, abs(float(loss.item()) * B))}
    for k in eng:
        errs[k] = rel_error(eng[k], ref[k].T if k == "L" else ref[k])
    return errs
