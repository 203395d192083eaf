r"""Sequence models of sentiment: word vectors → (Bi)LSTM/GRU → last state or attention pooling →
softmax, on the Stanford Sentiment Treebank (the sentences of the tree models, read left to right).

Model (:class:`SequenceClassifier`), for a sentence w_1 … w_T::

    x_t = E[w_t]                                   (dropout on x_t while training)
    h_1 … h_T = RNN(x_1 … x_T)                     (nn.LSTM / nn.GRU, one or two directions)
    r = [h_T^→ ; h_1^←]       (pool='last': each direction's state after its last token)
      | Σ_t α_t h_t            (pool='attention': nn.AttentionPooling over the real tokens)
    y = softmax(W_o dropout(r) + b_o)              (5 classes, or 2 with task='binary')

trained with cross-entropy.  Every gradient is the engine's: the embedding table gets a row-sparse
gradient (one ``take`` per time step), the recurrences are unrolled engine ops (see
:mod:`chainrule.nn.recurrent`).

Data (:func:`make_examples`): by default one example per sentence (its root label); with
``phrases=True`` also every labelled phrase of the training trees (each distinct (phrase, label)
once), as Socher et al. (2013) and Tai et al. (2015) train their models.  Evaluation is always on the
roots of dev/test: fine-grained (5-class) accuracy, and binary accuracy over the non-neutral
sentences with the 5-class model's decision P(3)+P(4) > P(0)+P(1) (as
:func:`chainrule.models.rntn.metrics_from_predictions`, so the table sits beside the RNTN's), or of
a model trained on the binary task (``task='binary'``: neutral sentences dropped, labels 0-1 → 0,
3-4 → 1, as the papers' binary models).

Training batches are buckets of sentences of similar length (:class:`BucketedBatches`): padding is
what costs time in an unrolled RNN (every step of a batch runs to its longest sentence).
"""
from __future__ import annotations

import numpy as np

from .. import nn
from ..autograd import no_grad
from ..data.embeddings import Vocab, build_embedding_matrix, load_glove
from ..nn.attention import AttentionPooling
from ..nn.recurrent import GRU, LSTM
from ..ops import functional as F
from ..tensor import Tensor
from ..train import ShardedEvaluation

__all__ = ["SequenceClassifier", "SequenceDataset", "BucketedBatches", "make_examples", "build_vocab",
           "evaluate", "predict", "metrics", "make_loss_fn", "PAPER_TAI2015"]

#: Tai et al. (2015), Table 2, SST test accuracy (%), root level
PAPER_TAI2015 = {
    "LSTM": {"fine": 46.4, "binary": 84.9},
    "Bidirectional LSTM": {"fine": 49.1, "binary": 87.5},
    "2-layer LSTM": {"fine": 46.0, "binary": 86.3},
    "2-layer Bidirectional LSTM": {"fine": 48.5, "binary": 87.2},
    "Constituency Tree-LSTM": {"fine": 51.0, "binary": 88.0},
}


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------
def build_vocab(train_trees, other_trees=(), glove_words=None, lower=True):
    """Every word of the training trees, plus the words of ``other_trees`` (dev/test sentences, no
    labels used) that have a pre-trained vector in ``glove_words`` (so they keep it instead of
    becoming ``<unk>``).  ``lower``: fold case (GloVe 6B is lower-cased)."""
    words = [t.words() for t in train_trees]
    v = Vocab.from_sentences(words, lower=lower)
    if glove_words is not None and other_trees:
        have = set(glove_words)
        extra = []
        for t in other_trees:
            for w in t.words():
                if w not in v:
                    n = v.normalize(w)
                    if n in have:
                        extra.append(n)
        v = Vocab(list(v.words[2:]) + list(dict.fromkeys(extra)), lower=v.lower, numbers=v.numbers)
    return v


def _binary_label(y):
    return -1 if y == 2 else int(y >= 3)


def make_examples(trees, vocab, phrases=False, task="fine"):
    """(list of int64 index arrays, label array) for ``trees``: the sentences (roots) and, with
    ``phrases=True``, every distinct labelled phrase of every tree (sentences first).  With
    ``task='binary'`` neutral examples are dropped and labels become 0 (negative) / 1 (positive)."""
    seqs, labels, seen = [], [], set()
    for t in trees:
        nodes = [t] + ([n for n in t.nodes() if n is not t] if phrases else [])
        for n in nodes:
            words = tuple(n.words())
            y = int(n.label)
            if task == "binary":
                y = _binary_label(y)
                if y < 0:
                    continue
            if phrases:
                key = (words, y)
                if key in seen:
                    continue
                seen.add(key)
            seqs.append(vocab.indices(words))
            labels.append(y)
    return seqs, np.asarray(labels, dtype=np.int64)


def pad(seqs, idx):
    """(indices (N, T) int64 with 0 = <pad>, lengths (N,)) for the sequences ``seqs[i], i in idx``."""
    lengths = np.fromiter((len(seqs[i]) for i in idx), dtype=np.int64, count=len(idx))
    out = np.zeros((len(idx), int(lengths.max()) if len(idx) else 0), dtype=np.int64)
    for r, i in enumerate(idx):
        out[r, :lengths[r]] = seqs[i]
    return out, lengths


class SequenceDataset:
    """Sequences and labels; ``batch(idx)`` -> (indices (N, T), lengths (N,), labels (N,))."""

    def __init__(self, seqs, labels):
        if len(seqs) != len(labels):
            raise ValueError(f"SequenceDataset: {len(seqs)} sequences, {len(labels)} labels")
        self.seqs, self.labels = list(seqs), np.asarray(labels, dtype=np.int64)
        self.lengths = np.fromiter((len(s) for s in self.seqs), dtype=np.int64, count=len(self.seqs))

    def __len__(self):
        return len(self.seqs)

    def batch(self, idx):
        idx = np.asarray(idx)
        x, lengths = pad(self.seqs, idx)
        return x, lengths, self.labels[idx]


class BucketedBatches:
    """Minibatches of sentences of similar length, as a dataset of *batches* for the Trainer (use it
    with ``TrainConfig(batch_size=1)``; the Trainer shuffles the order of the batches).

    :meth:`reshuffle` (call it at the start of every epoch, with the epoch number) sorts the examples
    by length plus a uniform jitter of ±``jitter`` tokens drawn from ``(seed, epoch)`` and cuts the
    order into batches of ``batch_size``, so the batches differ from epoch to epoch and a resumed run
    rebuilds exactly the same ones.
    """

    def __init__(self, dataset, batch_size, seed=0, jitter=2.0):
        self.dataset, self.batch_size, self.seed, self.jitter = dataset, int(batch_size), int(seed), float(jitter)
        self.reshuffle(0)

    def reshuffle(self, epoch):
        rng = np.random.default_rng([self.seed, int(epoch)])
        key = self.dataset.lengths + rng.uniform(-self.jitter, self.jitter, len(self.dataset))
        order = np.argsort(key, kind="stable")
        self.batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def __len__(self):
        return len(self.batches)

    def batch(self, idx):
        return self.dataset.batch(np.concatenate([self.batches[int(i)] for i in np.atleast_1d(idx)]))

    def split_batch(self, idx, rank, size):
        """Data-parallel training: ``(batch of this rank's sentences or None, their number, the
        number in the whole batch)`` -- every ``size``-th sentence of the bucket(s) ``idx`` from
        ``rank`` on (see :meth:`chainrule.distributed.DataParallel.local_batch`)."""
        examples = np.concatenate([self.batches[int(i)] for i in np.atleast_1d(idx)])
        local = examples[rank::size]
        return (self.dataset.batch(local) if len(local) else None), len(local), len(examples)


# ------------------------------------------------------------------------------------------------
# model
# ------------------------------------------------------------------------------------------------
class SequenceClassifier(nn.Module):
    """Embeddings → (Bi)LSTM/GRU → last state or attention pooling → linear → logits.

    Args:
        vocab_size, embed_dim: the embedding table (row 0 = ``<pad>``).
        hidden_size, cell ('lstm' | 'gru'), bidirectional, num_layers: the recurrent layer.
        pool: 'last' (final states of the directions, concatenated) or 'attention'
            (:class:`~chainrule.nn.AttentionPooling` with ``attention_size`` hidden units; None =
            linear scoring).
        num_classes: 5 (fine-grained) or 2 (binary).
        dropout: on the pooled representation; ``embed_dropout``: on the word vectors;
            ``layer_dropout``: between stacked recurrent layers.
        embeddings: an initial table (vocab_size, embed_dim) (e.g. GloVe via
            :func:`chainrule.data.embeddings.build_embedding_matrix`), trained unless
            ``freeze_embeddings``.
        seed, dtype: initialisation.

    ``forward(indices (N, T), lengths (N,))`` → logits (N, num_classes).
    """

    def __init__(self, vocab_size, embed_dim=50, hidden_size=150, cell="lstm", bidirectional=False, num_layers=1,
                 pool="last", num_classes=5, dropout=0.5, embed_dropout=0.0, layer_dropout=0.0,
                 attention_size=None, embeddings=None, freeze_embeddings=False, seed=0, dtype=np.float32):
        super().__init__()
        if cell not in ("lstm", "gru"):
            raise ValueError(f"SequenceClassifier: cell must be 'lstm' or 'gru', got {cell!r}")
        if pool not in ("last", "attention"):
            raise ValueError(f"SequenceClassifier: pool must be 'last' or 'attention', got {pool!r}")
        rng = np.random.default_rng(seed)
        self.cell, self.pool_kind, self.bidirectional = cell, pool, bool(bidirectional)
        if embeddings is not None:
            emb = np.asarray(embeddings, dtype=dtype)
            if emb.shape[0] != vocab_size:
                raise ValueError(f"SequenceClassifier: embeddings of shape {emb.shape} for a vocabulary of {vocab_size}")
            self.embedding = nn.Embedding.from_pretrained(emb, sparse=True, freeze=freeze_embeddings)
        else:
            self.embedding = nn.Embedding(vocab_size, embed_dim, sparse=True, init="normal", rng=rng, dtype=dtype)
            self.embedding.weight.data *= 0.3          # N(0, 0.3²): about GloVe 50d's spread / 2
            self.embedding.weight.data[0] = 0
            if freeze_embeddings:
                self.embedding.weight.requires_grad = False
        D = self.embedding.embedding_dim
        rnn_cls = LSTM if cell == "lstm" else GRU
        self.rnn = rnn_cls(D, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                           dropout=layer_dropout, rng=rng, dtype=dtype)
        feat = hidden_size * (2 if bidirectional else 1)
        self.pool = AttentionPooling(feat, attention_size, rng=rng, dtype=dtype) if pool == "attention" else None
        self.embed_drop = nn.Dropout(embed_dropout, seed=int(rng.integers(2 ** 31)))
        self.drop = nn.Dropout(dropout, seed=int(rng.integers(2 ** 31)))
        self.out = nn.Linear(feat, num_classes, rng=rng, dtype=dtype)

    def features(self, indices, lengths):
        """The pooled sentence representation (N, H · directions)."""
        idx = np.asarray(indices.data if isinstance(indices, Tensor) else indices)
        lengths = np.asarray(lengths)
        N, T = idx.shape
        W = self.embedding.weight
        drop = self.embed_drop.training and self.embed_drop.p > 0
        xs = []
        for t in range(T):
            x = F.take(W, idx[:, t], sparse=True)           # row-sparse gradient into the table
            xs.append(self.embed_drop(x) if drop else x)
        attention = self.pool is not None
        outs, finals = self.rnn.forward_steps(xs, lengths=lengths, outputs=attention)
        if attention:
            H = F.stack(outs, axis=1)
            return self.pool(H, lengths=lengths)
        nd = self.rnn.num_directions
        top = [h for h, _ in finals[-nd:]]
        return top[0] if nd == 1 else F.concat(top, axis=1)

    def forward(self, indices, lengths):
        return self.out(self.drop(self.features(indices, lengths)))

    def extra_repr(self):
        return f"cell={self.cell}, bidirectional={self.bidirectional}, pool={self.pool_kind}"


# ------------------------------------------------------------------------------------------------
# training and evaluation
# ------------------------------------------------------------------------------------------------
def make_loss_fn():
    """``loss_fn(model, batch) -> (mean cross-entropy, stats)`` for the Trainer."""
    def loss_fn(model, batch):
        x, lengths, y = batch
        logits = model(x, lengths)
        loss = F.softmax_cross_entropy(logits, y)
        correct = int((logits.data.argmax(axis=1) == y).sum())
        return loss, {"correct": correct, "count": len(y)}
    return loss_fn


def _softmax_rows(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict(model, dataset, batch_size=256):
    """Class probabilities (len(dataset), K) in dataset order, batched by length, no graph."""
    return _finish_probs(dataset, *_predict_part(model, dataset, 0, len(dataset), batch_size))


def metrics(probs, labels):
    """Root-level metrics (fractions): ``acc`` = ``fine`` (5-class accuracy), ``binary`` (non-neutral
    sentences, positive iff P(3)+P(4) > P(0)+P(1)), ``binary_strict`` (the argmax must fall on the
    gold side), ``loss``; for a 2-class model ``acc`` = ``binary`` = plain accuracy."""
    labels = np.asarray(labels)
    pred = probs.argmax(axis=1)
    out = {"loss": float(-np.mean(np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-300))))}
    if probs.shape[1] == 2:
        out["acc"] = out["binary"] = float(np.mean(pred == labels))
        return out
    nn_ = labels != 2
    gold_pos = labels >= 3
    pred_pos = probs[:, 3] + probs[:, 4] > probs[:, 0] + probs[:, 1]
    out["acc"] = out["fine"] = float(np.mean(pred == labels))
    out["binary"] = float(np.mean((pred_pos == gold_pos)[nn_]))
    out["binary_strict"] = float(np.mean(np.where(gold_pos, pred >= 3, pred <= 1)[nn_]))
    return out


def evaluate(model, dataset, batch_size=256):
    return metrics(predict(model, dataset, batch_size), dataset.labels)


def _predict_part(model, dataset, lo, hi, batch_size=256):
    """(example indices, their class probabilities): positions lo..hi-1 of the length-sorted order,
    batched by length, no graph."""
    order = np.argsort(dataset.lengths, kind="stable")[lo:hi]
    probs = [np.zeros((0, model.out.weight.shape[1]))]
    was = model.training
    model.eval()
    try:
        with no_grad():
            for i in range(0, len(order), batch_size):
                x, lengths, _ = dataset.batch(order[i:i + batch_size])
                probs.append(_softmax_rows(model(x, lengths).data.astype(np.float64)))
    finally:
        model.train(was)
    return order, np.concatenate(probs)


def _finish_probs(dataset, idx, p):
    probs = np.zeros((len(dataset), p.shape[1]))
    probs[idx] = p
    return probs


#: :func:`evaluate` as the Trainer's ``evaluate_fn``, in two parts so data-parallel training splits
#: the sentences across ranks.
evaluate_sharded = ShardedEvaluation(_predict_part,
                                     lambda dataset, parts: metrics(_finish_probs(dataset, *parts), dataset.labels))


def glove_matrix(path, vocab, seed=0):
    """(embedding table for ``vocab`` from the GloVe file at ``path``, number of words found)."""
    words, mat = load_glove(path, vocab=vocab)
    return build_embedding_matrix(vocab, words, mat, seed=seed)
