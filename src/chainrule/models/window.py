"""The window classifier of seed 002 as a named-entity tagger.

Seed ``002_0bbd1c814c47e8da.txt`` classifies the middle word of a window of ``C`` words: the
columns of the word-vector matrix ``L`` for the window's words are stacked into ``x``, then

    h = tanh(W x + b1),    p = sigmoid(Uᵀ h + b2),
    J = (1/m) Σ BCE(p, y) + C/(2m) (‖W‖² + ‖U‖²),

trained by SGD one example at a time, with ∂J/∂x mapped back onto the columns of ``L``.  Here:

* ``L`` is an :class:`~chainrule.nn.Embedding` (rows, not columns: ``emb.weight = Lᵀ``) with
  row-sparse gradients, so an update touches only the rows of the words in the batch;
  ``W`` is ``hidden.weight`` (stored ``(n·C, H)``, i.e. ``Wᵀ``, because ``Linear`` computes
  ``x @ W + b``), ``b1 = hidden.bias``, ``U = out.weight``, ``b2 = out.bias``.
* Each word contributes its word vector and, when ``caps_dim > 0``, a learned vector for its
  capitalisation pattern (Collobert et al. 2011): ``x = [L w₁; K c₁; …; L w_C; K c_C]``.
  ``caps_dim=0`` gives exactly the seed's model.
* ``head='binary'``: the seed's sigmoid output and binary cross-entropy (PERSON vs. not).
  ``head='softmax'``: ``Uᵀ h + b2`` has one score per tag and the loss is softmax cross-entropy.
* The penalty ``C/(2m) (‖W‖² + ‖U‖²)`` covers ``W`` and ``U`` only; ``m`` is the size of the
  training set, so a minibatch's mean loss plus this penalty is an unbiased estimate of the
  seed's ``J`` and its gradient (the same convention as ``chainrule.derivations.window``).
* Sentence boundaries: a window that reaches past either end of its sentence is filled with the
  padding word (row 0 of ``L``, ``<pad>``, learned) and the padding capitalisation id.

Tag schemes (``scheme``), i.e. what the classifier predicts for each token:

* ``'person'`` (binary head): 1 if the gold tag's type is ``PER``.  Predicted runs of 1s are
  entities (a run of adjacent PER tokens is one entity).
* ``'types'`` (the CS224d setup): the entity type without IOB prefix (``O PER ORG LOC MISC``);
  a run of equal predicted types is one entity.  Every label sequence is valid, but two
  touching entities of one type merge (0.04 % of the training entities touch another of the
  same type).
* ``'iobes'``: ``O`` and ``B-/I-/E-/S-`` of each type (Collobert et al.'s scheme).  Decoding
  is a Viterbi search over the per-token log-probabilities restricted to valid IOBES
  sequences (``I-X``/``E-X`` only after ``B-X``/``I-X``, ``B-X``/``I-X`` must be followed by
  ``I-X``/``E-X``), so the predicted tags always form well-formed entities.

Predicted tags are returned in IOB1, the scheme of the CoNLL-2003 files, so token accuracy
compares like with like; the entity-level scores come from :func:`chainrule.data.conll.evaluate`
(conlleval's definition).
"""
from __future__ import annotations

import numpy as np

from .. import losses, nn
from ..ops import functional as F
from ..data import conll
from ..data.embeddings import Vocab, capitalization_features

__all__ = [
    "WindowClassifier", "WindowData", "TagScheme", "make_windows", "build_vocab", "N_CAPS",
    "CAPS_PAD", "viterbi_iobes", "predict_scores", "predict_tags", "evaluate_model",
    "make_loss_fn", "make_evaluate_fn", "penalty", "derivation_params", "from_derivation", "derivation_grads",
    "derivation_agreement",
]

N_CAPS = 6      # the 5 capitalisation patterns of embeddings.capitalization_feature + padding
CAPS_PAD = 5


class WindowClassifier(nn.Module):
    """Window classifier (seed 002) with word vectors, capitalisation features and two heads.

    Args:
        vocab_size, dim: the word-vector table ``L`` (``vocab_size × dim``; row 0 = padding).
        window: ``C``, the number of words per window (odd: 3, 5, 7, ...).
        hidden: ``H``, the number of tanh units.
        n_tags: number of classes of the softmax head (ignored by the binary head).
        head: ``'binary'`` (sigmoid + BCE, the seed) or ``'softmax'``.
        caps_dim: size of the capitalisation embedding (0: none, the seed's exact model).
        embeddings: optional ``(vocab_size, dim)`` initial word vectors (e.g. GloVe).
        seed: initialisation seed.
        dropout: dropout rate on ``x`` while training (0: none, as in the seed).

    ``forward(words, caps)`` takes ``(B, C)`` integer arrays and returns the logits:
    ``(B,)`` for the binary head, ``(B, n_tags)`` for the softmax head.

    >>> m = WindowClassifier(10, 4, window=3, hidden=5, n_tags=3, head='softmax', caps_dim=2)
    >>> m(np.array([[0, 3, 4]]), np.array([[5, 2, 0]])).shape
    (1, 3)
    """

    def __init__(self, vocab_size, dim, window=3, hidden=100, n_tags=2, head="binary",
                 caps_dim=5, embeddings=None, seed=0, dropout=0.0):
        super().__init__()
        if window < 1 or window % 2 == 0:
            raise ValueError(f"WindowClassifier: window must be an odd positive number (3, 5, 7), got {window}")
        if head not in ("binary", "softmax"):
            raise ValueError(f"WindowClassifier: head must be 'binary' or 'softmax', got {head!r}")
        if head == "softmax" and n_tags < 2:
            raise ValueError(f"WindowClassifier: the softmax head needs n_tags >= 2, got {n_tags}")
        self.window, self.dim, self.caps_dim, self.head = int(window), int(dim), int(caps_dim), head
        self.n_tags = int(n_tags) if head == "softmax" else 2
        self.dropout = float(dropout)
        self._rng = np.random.default_rng(seed + 1)
        rng = np.random.default_rng(seed)
        self.emb = nn.Embedding(vocab_size, dim, sparse=True)
        if embeddings is not None:
            e = np.asarray(embeddings)
            if e.shape != (vocab_size, dim):
                raise ValueError(f"WindowClassifier: embeddings of shape {e.shape}, expected ({vocab_size}, {dim})")
            self.emb.weight.data[...] = e
        else:
            self.emb.weight.data[...] = rng.uniform(-1, 1, (vocab_size, dim)) * np.sqrt(3.0 / dim)
        if self.caps_dim:
            self.caps = nn.Embedding(N_CAPS, self.caps_dim, sparse=False)
            self.caps.weight.data[...] = rng.uniform(-1, 1, (N_CAPS, self.caps_dim)) * np.sqrt(3.0 / self.caps_dim)
        n_in = (dim + self.caps_dim) * self.window
        self.hidden = nn.Linear(n_in, hidden)
        self.out = nn.Linear(hidden, self.n_tags if head == "softmax" else 1)
        # Glorot-uniform W and U (tanh units), zero biases
        for lin in (self.hidden, self.out):
            fan_in, fan_out = lin.weight.shape
            a = np.sqrt(6.0 / (fan_in + fan_out))
            lin.weight.data[...] = rng.uniform(-a, a, lin.weight.shape)
            lin.bias.data[...] = 0.0

    def features(self, words, caps=None):
        """``x``: the window's word (and capitalisation) vectors concatenated, ``(B, (n+k)·C)``."""
        words = np.asarray(words)
        if not self.caps_dim:
            return self.emb(words, flat=True)                 # (B, C·n): the lookup and the reshape, one node
        if caps is None:
            raise ValueError("WindowClassifier: this model has capitalisation features; pass caps")
        e = F.concat([self.emb(words), self.caps(np.asarray(caps))], axis=-1)   # (B, C, n + k)
        return F.reshape(e, (words.shape[0], -1))

    def scores(self, words, caps=None):
        """``Uᵀ tanh(W x + b1) + b2`` as the output layer gives it: ``(B, 1)`` or ``(B, n_tags)``."""
        x = self.features(words, caps)
        if self.dropout and self.training:
            keep = 1.0 - self.dropout
            mask = (self._rng.random(x.shape) < keep).astype(x.dtype) / keep
            x = x * mask
        h = F.tanh(self.hidden(x))
        return self.out(h)

    def forward(self, words, caps=None):
        z = self.scores(words, caps)
        if self.head == "binary":
            z = F.reshape(z, (-1,))
        return z

    def regularized(self):
        """The parameters the seed's penalty covers: ``W`` and ``U``."""
        return [self.hidden.weight, self.out.weight]



def penalty(model, C, m):
    """C/(2m) (‖W‖² + ‖U‖²), the seed's regularisation term (W and U only): :func:`chainrule.losses.l2_penalty`."""
    return losses.l2_penalty(model.regularized(), C=C, m=m) if C else None


# ---------------------------------------------------------------------------------------------
# The adapter to seed 002's layout (chainrule.derivations.window)
# ---------------------------------------------------------------------------------------------
def derivation_params(model):
    """The parameters of a binary-head model without capitalisation features in the layout of
    :mod:`chainrule.derivations.window` (float64 copies): ``L = emb.weightᵀ`` (n, |V|),
    ``W = hidden.weightᵀ`` (H, n·C), ``b1``, ``U = out.weight[:, 0]`` (H,), ``b2`` (a float)."""
    if model.head != "binary" or model.caps_dim:
        raise ValueError("derivation_params: seed 002's model has the binary head and no capitalisation "
                         f"features (got head={model.head!r}, caps_dim={model.caps_dim})")
    a = lambda t: np.array(t.data if hasattr(t, "data") else t, dtype=np.float64)  # noqa: E731
    return {"L": a(model.emb.weight).T, "W": a(model.hidden.weight).T, "b1": a(model.hidden.bias),
            "U": a(model.out.weight)[:, 0], "b2": float(model.out.bias.data[0])}


def from_derivation(params, window, seed=0):
    """The inverse of :func:`derivation_params`: a float64 binary-head model without capitalisation
    features whose parameters are ``params`` (the layout of :mod:`chainrule.derivations.window`)."""
    n, V = np.shape(params["L"])
    model = WindowClassifier(V, n, window=window, hidden=len(params["b1"]), head="binary", caps_dim=0,
                             seed=seed).to(np.float64)
    model.emb.weight.data[...] = np.asarray(params["L"]).T
    model.hidden.weight.data[...] = np.asarray(params["W"]).T
    model.hidden.bias.data[...] = params["b1"]
    model.out.weight.data[:, 0] = params["U"]
    model.out.bias.data[0] = float(params["b2"])
    return model


def derivation_grads(model, loss):
    """The engine's gradients of ``loss`` w.r.t. the model's parameters, mapped to the derivation's
    layout (the same transposes as :func:`derivation_params`); no ``.grad`` is touched."""
    from ..autograd import gradients
    gL, gW, gb1, gU, gb2 = gradients(loss, [model.emb.weight, model.hidden.weight, model.hidden.bias,
                                            model.out.weight, model.out.bias])
    return {"L": gL.T, "W": gW.T, "b1": gb1, "U": gU[:, 0], "b2": gb2[0]}


def derivation_agreement(model, words, y, C):
    """Relative differences (:func:`chainrule.derivations.rel_error`) between the engine's gradients
    of the seed's model and the hand-derived ones of :mod:`chainrule.derivations.window` (same
    parameters, same batch), and of the two costs J.

    ``model`` must be a float64 binary-head model without capitalisation features.  The batch
    cost is eq. (1) with ``m`` = batch size.  Returns ``{name: rel_error}`` for ``J, U, b2, W, b1, L``.
    """
    from ..derivations import rel_error, window as D
    params = derivation_params(model)
    yf = np.asarray(y, dtype=np.float64)
    hand = D.gradients(params, words, yf, C=C)
    loss, _ = make_loss_fn(C, words.shape[0])(model, (words, None, y))
    eng = derivation_grads(model, loss)
    out = {"J": rel_error(D.loss(params, words, yf, C=C), loss.item())}
    for k in ("U", "b2", "W", "b1", "L"):
        out[k] = rel_error(hand[k], eng[k])
    return out


# ---------------------------------------------------------------------------------------------
# Tag schemes
# ---------------------------------------------------------------------------------------------
class TagScheme:
    """Maps gold tags to class labels and predicted labels back to IOB1 tags.

    ``kind``: ``'person'`` (binary), ``'types'`` (O + entity types) or ``'iobes'``.
    ``types``: the entity types (e.g. ``['LOC', 'MISC', 'ORG', 'PER']``).
    """

    def __init__(self, kind, types):
        if kind not in ("person", "types", "iobes"):
            raise ValueError(f"TagScheme: kind must be 'person', 'types' or 'iobes', got {kind!r}")
        self.kind = kind
        self.types = list(types)
        if kind == "person":
            self.labels = ["O", "PER"]
        elif kind == "types":
            self.labels = ["O"] + self.types
        else:
            self.labels = ["O"] + [f"{p}-{t}" for t in self.types for p in "BIES"]
        self.index = {t: i for i, t in enumerate(self.labels)}

    def __len__(self):
        return len(self.labels)

    def gold_tags(self, tags):
        """The gold IOB1 tags this task is scored against (the person task keeps only PER)."""
        if self.kind != "person":
            return list(tags)
        keep = [t if conll.split_tag(t)[1] == "PER" else "O" for t in tags]
        return conll.iob2_to_iob1(conll.iob1_to_iob2(keep))

    def encode(self, tags):
        """Class labels (int64) of one sentence's gold tags (any IOB scheme)."""
        if self.kind == "person":
            return np.array([conll.split_tag(t)[1] == "PER" for t in tags], dtype=np.int64)
        if self.kind == "types":
            src = [conll.split_tag(t)[1] or "O" for t in tags]
        else:
            src = conll.to_iobes(tags)
        try:
            return np.array([self.index[t] for t in src], dtype=np.int64)
        except KeyError as e:
            raise ValueError(f"TagScheme: tag {e.args[0]!r} is not one of the training tags {self.labels}") from None

    def decode(self, scores):
        """IOB1 tags of one sentence from its per-token scores.

        ``scores``: ``(n,)`` logits (binary head) or ``(n, K)`` log-probabilities (softmax head).
        """
        scores = np.asarray(scores)
        if self.kind == "person":
            if scores.ndim == 2:
                pred = scores.argmax(axis=1) == 1
            else:
                pred = scores > 0
            bare = ["PER" if p else "O" for p in pred]
        elif self.kind == "types":
            bare = [self.labels[k] for k in scores.argmax(axis=1)]
        else:
            bare = [self.labels[k] for k in viterbi_iobes(scores, self.labels)]
        # bare types read as I-X (a run is one entity); IOBES reads as itself; both -> IOB1
        return conll.iob2_to_iob1(conll.iob1_to_iob2(bare))


_TRANS_CACHE = {}


def _iobes_transitions(labels):
    key = tuple(labels)
    if key in _TRANS_CACHE:
        return _TRANS_CACHE[key]
    K = len(labels)
    parts = [conll.split_tag(t) if t != "O" else ("O", "") for t in labels]
    allowed = np.zeros((K, K), dtype=bool)     # allowed[prev, cur]
    start = np.zeros(K, dtype=bool)
    end = np.zeros(K, dtype=bool)
    for j, (pc, tc) in enumerate(parts):
        start[j] = pc in ("O", "B", "S")
        end[j] = pc in ("O", "E", "S")
        for i, (pp, tp) in enumerate(parts):
            if pp in ("O", "E", "S"):
                allowed[i, j] = pc in ("O", "B", "S")
            else:                                  # B or I: the entity must go on
                allowed[i, j] = pc in ("I", "E") and tc == tp
    trans = np.where(allowed, 0.0, -np.inf)
    res = (trans, np.where(start, 0.0, -np.inf), np.where(end, 0.0, -np.inf))
    _TRANS_CACHE[key] = res
    return res


def viterbi_iobes(logp, labels):
    """The best valid IOBES label sequence for per-token log-probabilities ``logp`` ``(n, K)``.

    Maximises Σ_t logp[t, y_t] over sequences whose transitions are allowed (hard constraints, no
    learned transition scores), so the result always reads as well-formed entities.
    """
    logp = np.asarray(logp, dtype=np.float64)
    n = logp.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    trans, start, end = _iobes_transitions(labels)
    score = logp[0] + start
    back = np.empty((n, logp.shape[1]), dtype=np.int64)
    for t in range(1, n):
        cand = score[:, None] + trans                 # (prev, cur)
        back[t] = cand.argmax(axis=0)
        score = cand[back[t], np.arange(cand.shape[1])] + logp[t]
    score = score + end
    path = np.empty(n, dtype=np.int64)
    path[-1] = int(score.argmax())
    for t in range(n - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


# ---------------------------------------------------------------------------------------------
# Data: vocabulary and windows
# ---------------------------------------------------------------------------------------------
def build_vocab(train_sentences, other_sentences=(), pretrained_words=None, min_count=2):
    """The vocabulary: lower-cased, digits -> '0' (:func:`~chainrule.data.embeddings.normalize_word`).

    * every training word seen at least ``min_count`` times, or having a pre-trained vector;
    * words of ``other_sentences`` (dev/test; only their words, never their tags) that have a
      pre-trained vector, so the tagger can use GloVe's knowledge of words it never saw in
      training (the usual practice, e.g. Lample et al. 2016);
    * every other word maps to ``<unk>``, whose vector is trained on the rare training words.
    """
    from ..data.embeddings import lookup_forms, normalize_word
    counts = {}
    for s in train_sentences:
        for t in s.tokens:
            w = normalize_word(t)
            counts[w] = counts.get(w, 0) + 1
    known = set(pretrained_words or ())

    def has_vec(tok):
        return any(f in known for f in lookup_forms(tok))

    keep = {}
    for s in train_sentences:
        for t in s.tokens:
            w = normalize_word(t)
            if w not in keep and (counts[w] >= min_count or (known and has_vec(t))):
                keep[w] = counts[w]
    if known:
        for s in other_sentences:
            for t in s.tokens:
                w = normalize_word(t)
                if w not in keep and has_vec(t):
                    keep[w] = 0
    words = sorted(keep, key=lambda w: -keep[w])     # most frequent first (stable)
    return Vocab(words, lower=True, numbers=True)


def make_windows(token_lists, vocab, window):
    """Word and capitalisation ids of every token's window: two ``(N, C)`` int64 arrays.

    ``token_lists``: sentences as lists of tokens; ``N`` = total number of tokens.  Positions
    beyond a sentence's ends hold ``vocab.pad_index`` / :data:`CAPS_PAD`.
    """
    r = window // 2
    wl, cl = [], []
    for toks in token_lists:
        n = len(toks)
        if n == 0:
            continue
        w = np.full(n + 2 * r, vocab.pad_index, dtype=np.int64)
        c = np.full(n + 2 * r, CAPS_PAD, dtype=np.int64)
        w[r:r + n] = vocab.indices(toks)
        c[r:r + n] = capitalization_features(toks)
        wl.append(np.lib.stride_tricks.sliding_window_view(w, window))
        cl.append(np.lib.stride_tricks.sliding_window_view(c, window))
    if not wl:
        return np.zeros((0, window), np.int64), np.zeros((0, window), np.int64)
    return np.ascontiguousarray(np.concatenate(wl)), np.ascontiguousarray(np.concatenate(cl))


class WindowData:
    """One split as windows: ``batch(idx) -> (words (B, C), caps (B, C), labels (B,))``.

    Keeps the sentences (for scoring) and their token offsets (to cut predictions back into
    sentences).
    """

    def __init__(self, sentences, vocab, window, scheme):
        self.sentences = [s for s in sentences if len(s)]
        self.scheme = scheme
        self.words, self.caps = make_windows([s.tokens for s in self.sentences], vocab, window)
        self.labels = (np.concatenate([scheme.encode(s.tags) for s in self.sentences])
                       if self.sentences else np.zeros(0, np.int64))
        lens = np.array([len(s) for s in self.sentences], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(lens)])

    def __len__(self):
        return self.words.shape[0]

    def batch(self, idx):
        return self.words[idx], self.caps[idx], self.labels[idx]

    def gold(self):
        return [self.scheme.gold_tags(s.tags) for s in self.sentences]


# ---------------------------------------------------------------------------------------------
# Loss, prediction, evaluation
# ---------------------------------------------------------------------------------------------
def make_loss_fn(C=0.0, m=1):
    """``loss_fn(model, batch) -> (loss, stats)`` for :class:`chainrule.train.Trainer`:
    mean BCE (binary head) or softmax cross-entropy, plus C/(2m)(‖W‖² + ‖U‖²)."""

    def loss_fn(model, batch):
        words, caps, y = batch
        z = model.scores(words, caps)
        if model.head == "binary":       # mean BCE(σ(z), y) from the logits: one fused op (eqs. 11-12)
            loss = losses.binary_cross_entropy_with_logits(z, np.asarray(y).reshape(z.shape), reduction="batchmean")
            pred = z.data[:, 0] > 0
        else:
            loss = F.softmax_cross_entropy(z, y)
            pred = z.data.argmax(axis=1)
        reg = penalty(model, C, m)
        if reg is not None:
            loss = loss + reg
        return loss, {"correct": int(np.count_nonzero(pred == y)), "count": len(y)}
    return loss_fn


def predict_scores(model, data, batch_size=4096):
    """Per-token scores of a :class:`WindowData` (no graph): logits ``(N,)`` for the binary head,
    log-probabilities ``(N, K)`` for the softmax head; also the mean loss (without penalty)."""
    scores, loss_sum = _scores_part(model, data, 0, len(data), batch_size)
    return scores, (float(loss_sum[0]) / len(data) if len(data) else float("nan"))


def _scores_part(model, data, lo, hi, batch_size=4096):
    """Scores of tokens lo..hi-1 and their summed loss (as a 1-element array)."""
    from ..autograd import no_grad
    outs = []
    loss_sum = 0.0
    was = model.training
    model.eval()
    try:
        with no_grad():
            for i in range(lo, hi, batch_size):
                w, c, y = data.batch(slice(i, min(i + batch_size, hi)))
                z = model(w, c).data.astype(np.float64)
                if model.head == "binary":
                    loss_sum += float(np.sum(np.logaddexp(0.0, z) - y * z))
                    outs.append(z)
                else:
                    mx = z.max(axis=1, keepdims=True)
                    lp = z - mx - np.log(np.exp(z - mx).sum(axis=1, keepdims=True))
                    loss_sum += float(-lp[np.arange(len(y)), y].sum())
                    outs.append(lp)
    finally:
        model.train(was)
    empty = np.zeros((0,) if model.head == "binary" else (0, model.n_tags))
    return (np.concatenate(outs) if outs else empty), np.array([loss_sum])


def predict_tags(model, data, scheme=None, batch_size=4096):
    """Predicted IOB1 tags, one list per sentence of ``data``."""
    scheme = scheme or data.scheme
    scores, _ = predict_scores(model, data, batch_size)
    o = data.offsets
    return [scheme.decode(scores[o[k]:o[k + 1]]) for k in range(len(o) - 1)]


def evaluate_model(model, data, batch_size=4096):
    """(conll.Report, mean loss): entity-level P/R/F1 per type and overall, token accuracy."""
    scores, loss = predict_scores(model, data, batch_size)
    return _report(data, scores), loss


def _report(data, scores):
    o = data.offsets
    pred = [data.scheme.decode(scores[o[k]:o[k + 1]]) for k in range(len(o) - 1)]
    return conll.evaluate(data.gold(), pred)


def make_evaluate_fn():
    """``evaluate_fn(model, data) -> {'loss', 'acc', 'precision', 'recall', 'f1'}`` (fractions), a
    :class:`~chainrule.train.ShardedEvaluation`: data-parallel training splits the tokens across
    ranks and scores the entities of all sentences from the gathered per-token scores."""
    from ..train import ShardedEvaluation

    def finish(data, parts):
        scores, loss_sums = parts
        rep = _report(data, scores)
        return {"loss": float(loss_sums.sum()) / len(data) if len(data) else float("nan"), "acc": rep.accuracy,
                "precision": rep.precision, "recall": rep.recall, "f1": rep.f1}
    return ShardedEvaluation(_scores_part, finish)
