"""The level-batched RNTN costs linear work in the depth of a tree (issue 14: it re-concatenated the
whole node table at every level, so a depth-8,000 tree took 16 s and 1e5 never finished).

Time-free: every rule's forward and backward is wrapped to count the array elements it produces;
doubling the depth of a caterpillar tree must about double that count (it quadrupled)."""
import numpy as np
import pytest

from chainrule.data.trees import parse_tree
from chainrule.models import rntn as R
from chainrule.models import treelstm as TL
from chainrule.ops import RULES


def caterpillar(depth):
    s = "(2 w0)"
    for k in range(depth):
        s = f"(3 {s} (1 w{k % 7 + 1}))"
    return parse_tree(s)


def _elements(v):
    if isinstance(v, (tuple, list)):
        return sum(_elements(x) for x in v)
    return int(np.size(v.values if hasattr(v, "values") and hasattr(v, "indices") else v)) \
        if v is not None and hasattr(v, "shape") else 0


@pytest.fixture
def counter(monkeypatch):
    total = [0]
    for op in RULES.values():
        fwd, bwd = op.forward, op.backward

        def f(*a, _f=fwd, **k):
            out, saved = _f(*a, **k)
            total[0] += _elements(out)
            return out, saved

        def b(g, n, *s, _b=bwd):             # the rules' convention: backward(g, needs, *saved)
            outs = _b(g, n, *s)
            total[0] += _elements(outs)
            return outs
        monkeypatch.setattr(op, "forward", f)
        monkeypatch.setattr(op, "backward", b)
    return total


@pytest.mark.parametrize("model", ["rntn", "treelstm"])
def test_tree_step_work_is_linear_in_depth(counter, model):
    vocab = R.Vocab(["*UNK*"] + [f"w{k}" for k in range(8)])
    work = []
    for depth in (150, 300):
        if model == "rntn":
            m = R.RNTN(vocab, dim=4, dtype=np.float64)
            loss_fn = R.make_loss_fn()
        else:
            m = TL.TreeLSTM(vocab, dim=4, hidden=4, dtype=np.float64)
            loss_fn = TL.make_loss_fn()
        batch = R.TreeDataset([caterpillar(depth)], vocab).batch([0])
        counter[0] = 0
        loss, _ = loss_fn(m, batch)
        loss.backward()
        work.append(counter[0])
    # linear: 2x (plus the fixed parameter-sized terms); the concat table gave ~3.5x here
    assert work[1] / work[0] < 2.3, work
