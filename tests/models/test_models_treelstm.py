"""Binary constituency Tree-LSTM: batched-by-level == per-node (loss and gradients), gradcheck,
and a training smoke test."""
import numpy as np
import pytest

from chainrule import optim
from chainrule.data import sst
from chainrule.data.trees import parse_tree
from chainrule.gradcheck import gradcheck_params
from chainrule.models import treelstm as T
from chainrule.models.rntn import TreeDataset, Vocab
from chainrule.tensor import Tensor


@pytest.fixture(scope="module")
def dev_trees():
    return sst.load("dev")[:4]


def _params(d, H, n_words, seed=0):
    rng = np.random.default_rng(seed)
    p = {"L": 0.5 * rng.standard_normal((n_words, d)), "Wx": 0.5 * rng.standard_normal((3 * H, d)),
         "bx": 0.3 * rng.standard_normal(3 * H), "U": 0.4 * rng.standard_normal((5 * H, 2 * H)),
         "b": 0.3 * rng.standard_normal(5 * H), "Ws": rng.standard_normal((5, H)), "bs": rng.standard_normal(5)}
    return {k: Tensor(v, requires_grad=True) for k, v in p.items()}


def _grads(P, loss):
    for t in P.values():
        t.grad = None
    loss.backward()
    out = {}
    for k, t in P.items():
        g = t.grad
        if g is None:
            out[k] = np.zeros(t.shape)
        else:
            out[k] = np.asarray(g.to_dense() if hasattr(g, "to_dense") else g, dtype=np.float64)
    for t in P.values():
        t.grad = None
    return out


def test_batched_equals_per_node(dev_trees):
    vocab = Vocab.from_trees(dev_trees[:3])                      # the 4th tree has some *UNK* leaves
    ds = TreeDataset(dev_trees, vocab)
    assert any((e.word == 0).any() for e in ds.encoded)
    P = _params(6, 5, len(vocab))
    batch = ds.batch(np.arange(len(ds)))
    lb, _ = T.loss_batched(P, batch)
    gb = _grads(P, lb)
    lp = T.loss_per_node(P, ds.encoded)
    gp = _grads(P, lp)
    assert abs(lb.item() - lp.item()) <= 1e-10 * max(1.0, abs(lp.item()))
    for k in P:
        scale = max(1.0, np.abs(gp[k]).max())
        assert np.abs(gb[k] - gp[k]).max() <= 1e-10 * scale, k
        assert np.abs(gp[k]).max() > 0, k                       # every parameter gets a gradient
    # per-node h at the roots equals the batched table's roots
    h_tab, _, _ = T.forward_batched(P, batch)
    for e, pos in zip(ds.encoded, batch.tree_pos):
        hs, _, _ = T.forward_per_node(P, e)
        assert np.allclose(h_tab.data[pos[-1]], hs[-1].data, atol=1e-12)


def _numpy_loss(P, encoded):
    """The paper's equations in plain NumPy (independent of the engine), for the loss value."""
    p = {k: t.data for k, t in P.items()}
    H = p["U"].shape[1] // 2
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))
    total = 0.0
    for e in encoded:
        h, c = {}, {}
        for n in range(len(e)):
            if e.word[n] >= 0:
                z = p["Wx"] @ p["L"][e.word[n]] + p["bx"]
                i, o, u = sig(z[:H]), sig(z[H:2 * H]), np.tanh(z[2 * H:])
                c[n] = i * u
            else:
                l, r = e.left[n], e.right[n]
                z = p["U"] @ np.concatenate([h[l], h[r]]) + p["b"]
                i, fl, fr, o = (sig(z[k * H:(k + 1) * H]) for k in range(4))
                u = np.tanh(z[4 * H:])
                c[n] = i * u + fl * c[l] + fr * c[r]
            h[n] = o * np.tanh(c[n])
            y = p["Ws"] @ h[n] + p["bs"]
            total += np.log(np.exp(y - y.max()).sum()) + y.max() - y[e.label[n]]
    return total / len(encoded)


def test_matches_numpy_equations(dev_trees):
    vocab = Vocab.from_trees(dev_trees)
    ds = TreeDataset(dev_trees, vocab)
    P = _params(4, 3, len(vocab), seed=3)
    lb, _ = T.loss_batched(P, ds.batch(np.arange(len(ds))))
    assert abs(lb.item() - _numpy_loss(P, ds.encoded)) <= 1e-10 * abs(lb.item())


def test_gradcheck_tiny_model(dev_trees):
    trees = [parse_tree("(1 (2 (2 not) (3 good)) (2 .))"),
             parse_tree("(3 (2 a) (3 (3 (3 very) (3 good)) (2 film)))")]
    vocab = Vocab.from_trees(trees[:1])                           # "a", "very", "film" are *UNK*
    model = T.build_model({"model": "treelstm", "dim": 3, "hidden": 4, "forget_bias": 0.5}, vocab, seed=1,
                          dtype=np.float64)
    batch = TreeDataset(trees, vocab).batch(np.arange(2))
    loss_fn = T.make_loss_fn(0.05, 0.05, 0.05)
    report = gradcheck_params(lambda: loss_fn(model, batch)[0], model.named_parameters())
    assert report.ok, "\n".join(c.line() for c in report.comparisons)


def test_training_smoke():
    trees = sst.load("train")[:30]
    vocab = Vocab.from_trees(trees)
    model = T.TreeLSTM(vocab, dim=10, hidden=12, seed=0, dtype=np.float64)
    ds = TreeDataset(trees, vocab)
    batch = ds.batch(np.arange(len(ds)))
    loss_fn = T.make_loss_fn()
    opt = optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss, _ = loss_fn(model, batch)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0], losses
    m = T.evaluate(model, ds)
    assert 0.0 <= m["fine_all"] <= 1.0 and m["loss"] < losses[0] / (batch.num_nodes / len(batch))
