"""cr.compile: a captured training step equals the eager step bit for bit (float64) on the MLP,
window, RNTN and LSTM steps; it is captured again when shapes change; it falls back to eager with
a clear reason when the step cannot be captured."""
import numpy as np
import pytest

import chainrule as cr
from chainrule import losses, nn, optim
from chainrule.models import rntn as R
from chainrule.models.window import WindowClassifier, make_loss_fn as window_loss_fn

F64 = np.float64


def _twins(make):
    """Two identical (model, optimizer, step_fn) triples."""
    return make(), make()


def _assert_same_run(make, batches, min_replays=None):
    (ma, sa), (mb, sb) = _twins(make)
    compiled = cr.compile(sb)
    for k, args in enumerate(batches):
        la = sa(*args)
        lb = compiled(*args)
        assert la.item() == lb.item(), k                   # bit for bit
        for (na, pa), (nb, pb) in zip(ma.named_parameters(), mb.named_parameters()):
            assert np.array_equal(pa.data, pb.data), (k, na)
    assert compiled.fallback_reason is None
    assert compiled.stats["replays"] >= (len(batches) - 2 if min_replays is None else min_replays)
    return compiled


def test_mlp_step_bit_for_bit():
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((5, 6)), rng.integers(0, 3, 5)) for _ in range(6)]
    _assert_same_run(_mlp_twins(optim.SGD, lr=0.1, momentum=0.9), batches)


def _window_maker(vocab, dim, hidden, dtype, lr, C, m, seed):
    """make() for _assert_same_run/_twins: a binary window tagger and its SGD step (seed 002's loss)."""
    def make():
        model = WindowClassifier(vocab, dim, window=3, hidden=hidden, head="binary", caps_dim=0,
                                 embeddings=np.random.default_rng(seed).standard_normal((vocab, dim)))
        for p in model.parameters():
            p.data = p.data.astype(dtype)
        opt = optim.SGD(model.parameters(), lr=lr)
        loss_fn = window_loss_fn(C=C, m=m)

        def step(words, y):
            loss, _ = loss_fn(model, (words, None, y))
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss
        return model, step
    return make


def test_window_step_bit_for_bit():
    rng = np.random.default_rng(1)
    make = _window_maker(50, 4, 7, F64, lr=0.05, C=1.0, m=100, seed=2)
    batches = [(rng.integers(0, 50, (6, 3)), rng.integers(0, 2, 6).astype(F64)) for _ in range(6)]
    _assert_same_run(make, batches)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_window_plan_records_the_fused_losses_bit_for_bit(dtype):
    """The window step's fused BCE and L2 penalty (and their VJPs) are recorded on buffers, not
    replayed as opaque calls (only the embedding's row-sparse gradient is); every replay gives the
    eager step's loss, gradients and parameters bit for bit."""
    rng = np.random.default_rng(12)
    make = _window_maker(40, 5, 6, dtype, lr=0.1, C=2.0, m=50, seed=3)
    (ma, sa), (mb, sb) = _twins(make)
    c = cr.compile(sb)
    for k in range(7):
        words, y = rng.integers(0, 40, (8, 3)), rng.integers(0, 2, 8).astype(dtype)
        la, lb = sa(words, y), c(words, y)
        assert la.data.dtype == lb.data.dtype == dtype and la.data.tobytes() == lb.data.tobytes(), k
        for (name, pa), pb in zip(ma.named_parameters(), mb.parameters()):
            assert pa.data.tobytes() == pb.data.tobytes(), (k, name)
            ga, gb = (np.asarray(g) for g in (pa.grad, pb.grad))     # the embedding's: row-sparse
            assert ga.dtype == gb.dtype and ga.tobytes() == gb.tobytes(), (k, name)
    assert c.fallback_reason is None and c.stats["replays"] == 5
    (info,) = c.plans()
    names = [name for name, _ in info["opaque"]]
    assert info["buffered"], info
    assert not [n for n in names if "bce" in n or "sum_squares" in n], info["opaque"]
    assert len(names) <= 1, info["opaque"]          # take's row-sparse gradient (an object per replay)
    src = c._plans[next(iter(c._plans))].fast.source
    assert "u_log1p(" in src and "np.vdot(" in src       # the BCE and the penalty, written out


def test_rntn_step_bit_for_bit_and_recaptured_per_schedule():
    from chainrule.data.trees import parse_tree
    texts = ["(3 (2 a) (3 (1 b) (4 c)))", "(1 (2 (2 a) (1 d)) (3 b))", "(4 (3 c) (4 (2 d) (3 (2 a) (1 b))))"]
    vocab = R.Vocab(["*UNK*", "a", "b", "c", "d"])
    ds = R.TreeDataset([parse_tree(t) for t in texts], vocab)
    b1, b2 = ds.batch([0, 1]), ds.batch([2])

    def make():
        model = R.RNTN(vocab, dim=3, dtype=F64, seed=0)
        opt = optim.AdaGrad(model.parameters(), lr=0.01, eps=1e-3)
        loss_fn = R.make_loss_fn()

        def step(batch):
            loss, _ = loss_fn(model, batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss
        return model, step
    compiled = _assert_same_run(make, [(b1,)] * 4 + [(b2,)] * 4, min_replays=4)
    assert compiled.stats == {"captures": 4, "replays": 4, "eager": 0}     # two schedules, two plans
    # the same shapes everywhere, other indices (the two trees swapped): one plan, replayed with the
    # new batch's schedule (NodeTable.levels' children are looked up in the arguments, not kept)
    b1s = ds.batch([1, 0])
    assert [c.shape for c in b1s.children] == [c.shape for c in b1.children]
    assert any(not np.array_equal(c, d) for c, d in zip(b1s.children, b1.children))
    compiled = _assert_same_run(make, [(b1,), (b1,), (b1s,), (b1,), (b1s,)], min_replays=3)
    assert compiled.stats == {"captures": 2, "replays": 3, "eager": 0}


def test_lstm_step_bit_for_bit():
    rng = np.random.default_rng(3)

    def make():
        lstm = nn.LSTM(3, 4, rng=0, dtype=F64)
        opt = optim.Adam(lstm.parameters(), lr=0.01)

        def step(x, r):
            out, (h_n, _) = lstm(x)
            loss = (h_n[0] * r).sum() + (out * out).sum() * 0.1
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss
        return lstm, step
    batches = [(rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 4))) for _ in range(5)]
    _assert_same_run(make, batches)


@pytest.mark.parametrize("kind", ["layers", "state", "input grad"])
def test_lstm_sequence_steps_bit_for_bit(kind):
    """nn.LSTM's fused sequence op replayed on buffers: two bidirectional layers with lengths, an
    initial state from the arguments, an input that requires grad (a Linear before the LSTM); the
    plan records every rule (none opaque)."""
    rng = np.random.default_rng(4)
    lengths = np.array([5, 3, 4])

    def make():
        lstm = nn.LSTM(3, 4, num_layers=2 if kind == "layers" else 1, bidirectional=kind != "input grad",
                       rng=0, dtype=F64)
        lin = nn.Linear(3, 3, rng=1, dtype=F64)
        params = list(lstm.parameters()) + (list(lin.parameters()) if kind == "input grad" else [])
        opt = optim.SGD(params, lr=0.05)

        def step(x, r, h0, c0):
            state = (h0, c0) if kind == "state" else None
            out, (h_n, c_n) = lstm(lin(x) if kind == "input grad" else x, lengths=lengths, state=state)
            loss = (h_n[0] * r).sum() + (out * out).sum() * 0.1 + (c_n * c_n).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss
        return lstm, step
    k = 4 if kind == "layers" else 2
    batches = [(rng.standard_normal((3, 5, 3)), rng.standard_normal((3, 4)), rng.standard_normal((k, 3, 4)),
                rng.standard_normal((k, 3, 4))) for _ in range(5)]
    compiled = _assert_same_run(make, batches)
    (plan,) = compiled.plans()
    assert plan["buffered"] and plan["opaque"] == [], plan


def test_recapture_on_shape_change():
    model = nn.Linear(3, 2, rng=0, dtype=F64)
    opt = optim.SGD(model.parameters(), lr=0.1)

    def step(x):
        loss = (model(x) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    c = cr.compile(step)
    for n in (4, 4, 4, 7, 7, 7, 4):
        c(np.ones((n, 3)))
    assert c.stats == {"captures": 4, "replays": 3, "eager": 0}


def test_recapture_when_an_array_inside_an_argument_object_changes_shape():
    # the replay's signature walks objects' attributes without building paths: a new shape deep
    # inside, or another set of attributes, must still select (or capture) another plan
    model = nn.Linear(3, 1, rng=0, dtype=F64)
    opt = optim.SGD(model.parameters(), lr=0.1)

    class Batch:
        def __init__(self, n, extra=False):
            self.parts = {"x": [np.ones((n, 3))]}
            if extra:
                self.note = "x"

    def step(b):
        loss = model(b.parts["x"][0]).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    c = cr.compile(step)
    for b in (Batch(4), Batch(4), Batch(4), Batch(5), Batch(5), Batch(5), Batch(4, True), Batch(4, True)):
        c(b)
    assert c.stats == {"captures": 6, "replays": 2, "eager": 0}


def test_fallback_reasons():
    model = nn.Linear(3, 1, rng=0, dtype=F64)
    opt = optim.SGD(model.parameters(), lr=0.1)

    def returns_float(x):
        loss = model(x).sum()
        loss.backward()
        opt.step()
        return loss.item()
    c = cr.compile(returns_float)
    with pytest.warns(RuntimeWarning, match="returns a float"):
        v = c(np.ones((2, 3)))
    assert isinstance(v, float) and "call .item() outside" in c.fallback_reason
    assert isinstance(c(np.ones((2, 3))), float) and c.stats["eager"] == 1

    def no_backward(x):
        return model(x).sum()
    c = cr.compile(no_backward)
    with pytest.warns(RuntimeWarning, match="never calls backward"):
        c(np.ones((2, 3)))

    def data_dependent(x):                                   # Python control flow on the data
        y = model(x)
        loss = (y * y).sum() if x[0, 0] > 0 else y.sum()
        loss.backward()
        return loss
    c = cr.compile(data_dependent)
    with pytest.warns(RuntimeWarning, match="two captures of the step disagree"):
        for s in (1, -1, 1, -1):
            c(np.full((2, 3), s, dtype=F64))
    assert c.fallback_reason.startswith("two captures")

    def outside_numpy(x):                                    # an input-derived array made by NumPy
        loss = (model(x) * np.exp(x[:, :1])).sum()
        loss.backward()
        return loss
    c = cr.compile(outside_numpy)
    with pytest.warns(RuntimeWarning, match="computed outside chainrule ops"):
        for k in range(4):
            c(np.full((2, 3), float(k)))


def test_new_signature_every_call_falls_back():
    model = nn.Linear(3, 1, rng=0, dtype=F64)
    opt = optim.SGD(model.parameters(), lr=0.1)

    def step(x):
        loss = model(x).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    c = cr.compile(step)
    c.max_signatures = 3
    with pytest.warns(RuntimeWarning, match="none repeated"):
        for n in range(1, 6):
            c(np.ones((n, 3)))
    assert c.stats["captures"] == 4 and c.stats["eager"] == 1 and not c._pending


# ------------------------------------------------------------------ replay on buffers
def _mlp_twins(opt_cls, zero_grad=True, **kw):
    def make():
        model = nn.MLP([6, 8, 8, 3], activation="relu", seed=0, dtype=F64)
        opt = opt_cls(model.parameters(), **kw)

        def step(x, y):
            loss = losses.cross_entropy(model(x), y)
            if zero_grad:
                opt.zero_grad()
            loss.backward()
            opt.step()
            return loss
        return model, step
    return make


@pytest.mark.parametrize("cls,kw", [(optim.SGD, {"lr": 0.1}), (optim.AdaGrad, {"lr": 0.1, "eps": 1e-3}),
                                    (optim.Adam, {"lr": 0.01, "weight_decay": 0.01})])
def test_mlp_plan_runs_on_buffers_with_every_rule_recorded(cls, kw):
    rng = np.random.default_rng(4)
    batches = [(rng.standard_normal((5, 6)), rng.integers(0, 3, 5)) for _ in range(6)]
    c = _assert_same_run(_mlp_twins(cls, **kw), batches)
    (info,) = c.plans()
    assert info["buffered"] and info["opaque"] == [], info
    assert 0 < info["buffers"] < info["lines"]              # buffers are reused across the plan


def test_gradients_accumulate_without_zero_grad_as_eager():
    """No zero_grad: each backward adds into .grad, which after the first replay is a buffer of the plan."""
    rng = np.random.default_rng(5)
    batches = [(rng.standard_normal((5, 6)), rng.integers(0, 3, 5)) for _ in range(6)]
    (ma, sa), (mb, sb) = _mlp_twins(optim.SGD, zero_grad=False, lr=0.01)(), _mlp_twins(optim.SGD, zero_grad=False,
                                                                                     lr=0.01)()
    c = cr.compile(sb)
    for args in batches:
        assert sa(*args).item() == c(*args).item()
        for pa, pb in zip(ma.parameters(), mb.parameters()):
            assert np.array_equal(pa.grad, pb.grad) and np.array_equal(pa.data, pb.data)
    assert c.stats["replays"] == 4 and c.plans()[0]["buffered"]


def test_returned_losses_are_not_overwritten_by_later_replays():
    make = _mlp_twins(optim.SGD, lr=0.1)
    _, step = make()
    c = cr.compile(step)
    rng = np.random.default_rng(6)
    batches = [(rng.standard_normal((5, 6)), rng.integers(0, 3, 5)) for _ in range(6)]
    out = [c(*b) for b in batches]
    vals = [t.item() for t in out]
    assert len(set(vals)) == len(vals)
    _, step2 = make()
    assert vals == [step2(*b).item() for b in batches]


def test_a_rule_that_cannot_be_recorded_is_replayed_opaquely():
    """A primitive whose rule reads a Python number from the data: that rule runs as one call per
    replay (and the rest on buffers); the step stays bit for bit the eager one."""
    from chainrule.ops.rules import defop
    from chainrule.tensor import apply

    def fwd(x):
        """z = x · max|x| (the scale read as a Python float)"""
        s = float(np.abs(x).max())
        return x * s, (s,)
    op = defop("test_scaled_by_max", fwd, lambda g, n, s: (g * s,), replace=True)

    def make():
        lin = nn.Linear(3, 2, rng=0, dtype=F64)
        opt = optim.SGD(lin.parameters(), lr=0.1)

        def step(x):
            loss = (apply(op, (lin(x),)) ** 2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss
        return lin, step
    rng = np.random.default_rng(7)
    c = _assert_same_run(make, [(rng.standard_normal((4, 3)),) for _ in range(5)])
    (info,) = c.plans()
    assert info["buffered"] and [name for name, _ in info["opaque"]] == ["fwd", "<lambda>"], info
    assert "Python value" in info["opaque"][0][1] and "opaque call" in info["opaque"][1][1]


def test_memory_plan_with_views_slices_and_in_place_accumulation_bit_for_bit():
    """A step full of views (slices, transposes, reshapes), shared subexpressions and slice
    gradients added in place: the plan reuses dead buffers (fewer arrays than buffers written) and
    every replay is the eager step bit for bit."""
    def make():
        W = cr.tensor(np.random.default_rng(0).standard_normal((4, 8)), requires_grad=True, dtype="float64")
        opt = optim.SGD([W], lr=0.01, momentum=0.9)

        class M:
            def named_parameters(self):
                return [("W", W)]

        def step(x):
            y = x @ W
            parts = [cr.tanh(y[:, 2 * k:2 * k + 2]) * (k + 1) for k in range(4)]
            z = cr.concat(parts, axis=1)
            for _ in range(6):
                z = cr.sigmoid(z * 0.7 + y) + z.T.reshape(z.shape) * 0.1
            loss = (z * z).sum() + y[:, :4].sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss
        return M(), step
    rng = np.random.default_rng(9)
    c = _assert_same_run(make, [(rng.standard_normal((8, 4)),) for _ in range(6)])
    (info,) = c.plans()
    assert info["buffered"] and info["opaque"] == [], info
    assert info["buffers"] < info["lines"] // 2, info
