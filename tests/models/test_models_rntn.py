"""RNTN / RNN on the Sentiment Treebank: batched-by-level == per-node, gradchecks, the seed's
derivation, Table-1 metrics."""

import numpy as np
import pytest

from chainrule.data import sst
from chainrule.data.trees import parse_tree
from chainrule.gradcheck import gradcheck_params
from chainrule.models import rntn as R
from chainrule.tensor import Tensor


@pytest.fixture(scope="module")
def dev_trees():
    dev = sst.load("dev")
    deep = max(dev[:200], key=lambda t: t.height())
    assert deep.height() >= 15
    return dev[:5] + [deep]


@pytest.fixture(scope="module")
def vocab(dev_trees):
    # built from part of the trees only, so that some leaves are *UNK*
    return R.Vocab.from_trees(dev_trees[:4])


def _params(kind, d, n_words, seed=0):
    rng = np.random.default_rng(seed)
    p = {"L": 0.5 * rng.standard_normal((n_words, d)), "W": 0.5 * rng.standard_normal((d, 2 * d)),
         "b": 0.3 * rng.standard_normal(d), "Ws": rng.standard_normal((5, d)), "bs": rng.standard_normal(5)}
    if kind == "rntn":
        p["V"] = 0.1 * rng.standard_normal((2 * d, 2 * d, d))
    return {k: Tensor(v, requires_grad=True) for k, v in p.items()}


def _grads(P, loss):
    for t in P.values():
        t.grad = None
    loss.backward()
    out = {k: np.zeros(t.shape) if t.grad is None else np.asarray(t.grad, dtype=np.float64) for k, t in P.items()}
    for t in P.values():
        t.grad = None
    return out


@pytest.mark.parametrize("kind", ["rntn", "rnn"])
@pytest.mark.parametrize("leaf_tanh", [True, False])
def test_batched_equals_per_node(dev_trees, vocab, kind, leaf_tanh):
    ds = R.TreeDataset(dev_trees, vocab)
    assert any((e.word == 0).any() for e in ds.encoded)          # unknown words are exercised
    P = _params(kind, 7, len(vocab))
    batch = ds.batch(np.arange(len(ds)))
    lb, _ = R.loss_batched(P, batch, leaf_tanh)
    gb = _grads(P, lb)
    lp = R.loss_per_node(P, ds.encoded, leaf_tanh)
    gp = _grads(P, lp)
    assert abs(lb.item() - lp.item()) <= 1e-10 * max(1.0, abs(lp.item()))
    for k in P:
        scale = max(1.0, np.abs(gp[k]).max())
        assert np.abs(gb[k] - gp[k]).max() <= 1e-10 * scale, k


def test_batch_layout(dev_trees, vocab):
    ds = R.TreeDataset(dev_trees, vocab)
    b = ds.batch(np.arange(len(ds)))
    assert b.num_nodes == sum(len(t) for t in dev_trees)
    assert len(b.children) == max(t.height() for t in dev_trees)
    assert len(b.leaf_words) == sum(len(t.leaves()) for t in dev_trees)
    # every child sits in an earlier level than its parent
    for h, ch in enumerate(b.children, start=1):
        assert ch.max() < b.bounds[h]
    # roots carry the trees' labels
    assert list(b.labels[b.roots]) == [t.label for t in dev_trees]
    for e, pos in zip(ds.encoded, b.tree_pos):
        assert list(b.labels[pos]) == list(e.label)


@pytest.mark.parametrize("kind", ["rntn", "rnn"])
def test_gradcheck_models(dev_trees, kind):
    trees = [t for t in dev_trees if len(t) <= 25][:2] + [parse_tree("(1 (2 (2 not) (3 good)) (2 .))")]
    vocab = R.Vocab.from_trees(trees[:2])
    model = R.build_model({"model": kind, "dim": 3}, vocab, seed=1, dtype=np.float64)
    batch = R.TreeDataset(trees, vocab).batch(np.arange(len(trees)))
    loss_fn = R.make_loss_fn(0.05, 0.05, 0.05)
    report = gradcheck_params(lambda: loss_fn(model, batch)[0], model.named_parameters())
    assert report.ok, "\n".join(c.line() for c in report.comparisons)


@pytest.mark.parametrize("kind", ["rntn", "rnn"])
def test_derivation_agreement(dev_trees, vocab, kind):
    model = R.build_model({"model": kind, "dim": 5}, vocab, seed=2, dtype=np.float64)
    errs = R.derivation_agreement(model, R.TreeDataset(dev_trees, vocab))
    assert max(errs.values()) <= 1e-7, errs


def test_penalty_is_corenlp_l2():
    P = _params("rntn", 3, 10)
    active = np.array([1, 4])
    pen = R.penalty(P, active, 0.1, 0.01, 0.001)
    want = (0.05 * sum(float((P[k].data ** 2).sum()) for k in ("W", "b", "V"))
            + 0.005 * float((P["Ws"].data ** 2).sum()) + 0.0005 * float((P["L"].data[active] ** 2).sum()))
    assert abs(pen.item() - want) < 1e-12
    g = _grads(P, pen)
    assert np.allclose(g["bs"], 0) and np.allclose(g["L"][[0, 2, 3]], 0)
    assert np.allclose(g["L"][active], 0.001 * P["L"].data[active])


def test_penalty_separate_tensor_l2():
    P = _params("rntn", 3, 10)
    active = np.array([2])
    pen = R.penalty(P, active, 0.1, 0.0, 0.0, reg_tensor=0.7)
    want = 0.05 * sum(float((P[k].data ** 2).sum()) for k in ("W", "b")) + 0.35 * float((P["V"].data ** 2).sum())
    assert abs(pen.item() - want) < 1e-12
    g = _grads(P, pen)
    assert np.allclose(g["V"], 0.7 * P["V"].data) and np.allclose(g["W"], 0.1 * P["W"].data)
    # the RNN has no tensor: reg_tensor changes nothing
    Q = _params("rnn", 3, 10)
    assert R.penalty(Q, active, 0.1, 0.0, 0.0, reg_tensor=5.0).item() == pytest.approx(
        R.penalty(Q, active, 0.1, 0.0, 0.0).item(), abs=1e-15)


def test_metrics_hand_made():
    # 6 nodes, two trees: roots are nodes 2 and 5
    labels = np.array([0, 2, 4, 1, 3, 2])
    is_root = np.array([False, False, True, False, False, True])
    probs = np.array([
        [0.6, 0.1, 0.1, 0.1, 0.1],     # pred 0, gold 0: fine ok, binary neg ok
        [0.1, 0.1, 0.5, 0.2, 0.1],     # pred 2, gold 2: fine ok, excluded from binary
        [0.1, 0.1, 0.4, 0.2, 0.2],     # pred 2, gold 4: fine wrong; binary: pos .4 > neg .2 -> ok; strict wrong
        [0.1, 0.1, 0.2, 0.5, 0.1],     # pred 3, gold 1: fine wrong, binary wrong
        [0.1, 0.1, 0.1, 0.6, 0.1],     # pred 3, gold 3: ok
        [0.5, 0.2, 0.1, 0.1, 0.1],     # pred 0, gold 2 (root): fine wrong, excluded from binary
    ])
    m = R.metrics_from_predictions(probs, labels, is_root)
    assert m["fine_all"] == pytest.approx(3 / 6)
    assert m["fine_root"] == pytest.approx(0 / 2)
    assert m["binary_all"] == pytest.approx(3 / 4)
    assert m["binary_root"] == pytest.approx(1 / 1)
    assert m["binary_strict_all"] == pytest.approx(2 / 4)
    assert m["binary_strict_root"] == pytest.approx(0 / 1)


def test_vocab_case_and_unk():
    t = parse_tree("(3 (2 The) (3 (2 the) (3 Film)))")
    v = R.Vocab.from_trees([t])
    assert v.words[0] == R.UNK and len(v) == 4 and v.encode("THE") == 0
    vl = R.Vocab.from_trees([t], lowercase=True)
    assert len(vl) == 3 and vl.encode("THE") == vl.encode("the") != 0
    assert R.Vocab.from_json(vl.to_json()).words == vl.words
