"""The window classifier of seed 002 (chainrule.models.window).

All sentences here are made up (the project ships no CoNLL-2003 text).
"""
import numpy as np
import pytest

from chainrule import optim
from chainrule.autograd import RowSparseGrad
from chainrule.data import conll
from chainrule.data.embeddings import Vocab
from chainrule.gradcheck import gradcheck_params
from chainrule.models import window as W
from chainrule.models.window import WindowClassifier


# ------------------------------------------------------------------------------------ gradients
@pytest.mark.parametrize("head,caps_dim,K", [("binary", 3, 2), ("softmax", 3, 5), ("binary", 0, 2)])
def test_model_gradcheck(head, caps_dim, K):
    rng = np.random.default_rng(0)
    model = WindowClassifier(9, 4, window=3, hidden=5, n_tags=K, head=head, caps_dim=caps_dim, seed=1).to(np.float64)
    words = rng.integers(0, 9, size=(4, 3))
    words[0, 2] = words[0, 0]
    caps = rng.integers(0, W.N_CAPS, size=(4, 3))
    y = rng.integers(0, K, size=4)
    loss_fn = W.make_loss_fn(C=0.7, m=10)
    rep = gradcheck_params(lambda: loss_fn(model, (words, caps, y))[0], model.named_parameters())
    assert rep.ok, str(rep)


@pytest.mark.parametrize("window", [3, 5])
def test_derivation_agreement(window):
    """The engine's gradients equal seed 002's hand-derived equations (derivations.window)."""
    rng = np.random.default_rng(window)
    model = WindowClassifier(11, 4, window=window, hidden=6, head="binary", caps_dim=0, seed=2).to(np.float64)
    words = rng.integers(0, 11, size=(6, window))
    words[1, 1] = words[1, 0]
    y = rng.integers(0, 2, size=6)
    errs = W.derivation_agreement(model, words, y, C=0.3)
    assert set(errs) == {"J", "U", "b2", "W", "b1", "L"}
    for name, r in errs.items():
        assert r <= 1e-12, (name, r)


# ------------------------------------------------------------------------------------ sparse updates
def test_sparse_update_moves_only_batch_rows_and_equals_dense():
    rng = np.random.default_rng(0)
    words = rng.integers(0, 50, size=(8, 3))
    caps = rng.integers(0, W.N_CAPS, size=(8, 3))
    y = rng.integers(0, 2, size=8)
    models = []
    for sparse in (True, False):
        m = WindowClassifier(50, 6, window=3, hidden=7, head="binary", caps_dim=2, seed=4)
        m.emb.sparse = sparse
        models.append(m)
    before = models[0].emb.weight.data.copy()
    loss_fn = W.make_loss_fn(C=1.0, m=100)
    for m in models:
        opt = optim.SGD(m.parameters(), lr=0.5)
        opt.zero_grad()
        loss, _ = loss_fn(m, (words, caps, y))
        loss.backward()
        if m.emb.sparse:
            assert isinstance(m.emb.weight.grad, RowSparseGrad)
        opt.step()
    after = models[0].emb.weight.data
    touched = np.unique(words)
    untouched = np.setdiff1d(np.arange(50), touched)
    assert np.array_equal(after[untouched], before[untouched])
    assert np.abs(after[touched] - before[touched]).max() > 0
    np.testing.assert_allclose(after, models[1].emb.weight.data, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------ data, decoding
def test_windows_pad_sentence_boundaries():
    vocab = Vocab(["alice", "visited", "lyon"], lower=True, numbers=True)
    words, caps = W.make_windows([["Alice", "visited", "Lyon"], ["LYON"]], vocab, 3)
    a, v, l = vocab.index("alice"), vocab.index("visited"), vocab.index("lyon")
    assert words.tolist() == [[0, a, v], [a, v, l], [v, l, 0], [0, l, 0]]
    assert caps.tolist() == [[5, 2, 0], [2, 0, 2], [0, 2, 5], [5, 1, 5]]
    words5, _ = W.make_windows([["Alice", "visited"]], vocab, 5)
    assert words5.tolist() == [[0, 0, a, v, 0], [0, a, v, 0, 0]]


@pytest.mark.parametrize("kind", ["person", "types", "iobes"])
def test_scheme_round_trip(kind):
    gold = ["I-PER", "I-PER", "O", "I-ORG", "I-LOC", "B-LOC", "O", "I-MISC"]
    s = W.TagScheme(kind, ["LOC", "MISC", "ORG", "PER"])
    labels = s.encode(gold)
    logp = np.log(np.full((len(gold), len(s)), 1e-3))
    logp[np.arange(len(gold)), labels] = 0.0
    pred = s.decode(logp if kind != "person" else np.where(labels == 1, 3.0, -3.0))
    if kind == "types":       # touching LOC entities merge: the documented limit of the IO labels
        assert conll.entities(pred) == [("PER", 0, 2), ("ORG", 3, 4), ("LOC", 4, 6), ("MISC", 7, 8)]
    else:
        assert pred == s.gold_tags(gold)
    if kind == "person":
        assert s.gold_tags(gold) == ["I-PER", "I-PER", "O", "O", "O", "O", "O", "O"]


def test_viterbi_gives_valid_iobes():
    s = W.TagScheme("iobes", ["LOC", "PER"])
    rng = np.random.default_rng(0)
    for _ in range(50):
        logp = rng.standard_normal((7, len(s)))
        path = [s.labels[k] for k in W.viterbi_iobes(logp, s.labels)]
        assert conll.to_iobes(path) == path       # already well-formed IOBES
    # the best valid path, not the greedy one: a lone I-PER is impossible
    logp = np.log(np.full((1, len(s)), 0.01))
    logp[0, s.index["I-PER"]] = np.log(0.9)
    logp[0, s.index["S-PER"]] = np.log(0.05)
    assert [s.labels[k] for k in W.viterbi_iobes(logp, s.labels)] == ["S-PER"]


def test_report_table_format():
    gold = [["I-PER", "I-PER", "O", "I-LOC"], ["I-ORG", "O"]]
    pred = [["I-PER", "I-PER", "O", "I-ORG"], ["I-ORG", "O"]]
    text = conll.format_report(conll.evaluate(gold, pred))
    lines = text.splitlines()
    assert lines[1].split() == ["type", "precision", "recall", "f1", "gold", "pred", "correct"]
    rows = {ln.split()[0]: ln.split()[1:] for ln in lines[2:] if ln and ln[0].isalpha() and not ln.startswith("token")}
    assert rows["PER"][:3] == ["100.00", "100.00", "100.00"]
    assert rows["LOC"][:3] == ["0.00", "0.00", "0.00"]
    assert rows["ORG"][:3] == ["50.00", "100.00", "66.67"]
    assert rows["overall"][:3] == ["66.67", "66.67", "66.67"]
    assert lines[-1] == "token accuracy: 83.33%"


# ------------------------------------------------------------------------------------ loss
def test_binary_loss_is_the_fused_bce_of_losses():
    """The binary head's loss is losses.binary_cross_entropy_with_logits (one fused op): equal to
    the elementwise engine-op form, with the seed's gradient (σ(z) − y)/B (eq. 12)."""
    import chainrule as cr
    from chainrule import losses
    rng = np.random.default_rng(0)
    z0 = rng.standard_normal((7, 1)) * 5
    y = rng.integers(0, 2, size=7)
    za = cr.tensor(z0, requires_grad=True, dtype="float64")
    zb = cr.tensor(z0[:, 0], requires_grad=True, dtype="float64")
    la = losses.binary_cross_entropy_with_logits(za, y.reshape(7, 1), reduction="batchmean")
    lb = losses.binary_cross_entropy_with_logits(zb, y.astype(np.float64), reduction="none").mean()
    la.backward()
    lb.backward()
    assert abs(la.item() - lb.item()) < 1e-12
    np.testing.assert_allclose(za.grad[:, 0], zb.grad, atol=1e-14)
    np.testing.assert_allclose(zb.grad, (1 / (1 + np.exp(-z0[:, 0])) - y) / 7, atol=1e-14)   # eq. (12)
