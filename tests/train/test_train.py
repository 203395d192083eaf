"""The training loop, checkpoints and the `chainrule` command (issue 3)."""
import hashlib
import json
import os

import numpy as np
import pytest

import chainrule as cr
from chainrule import losses, nn, optim
from chainrule.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from chainrule.train import ArrayDataset, TrainConfig, Trainer


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip(tmp_path):
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, 2], dtype=np.int64)}
    meta = {"epoch": 3, "nested": {"x": [1, 2.5]}, "big": 2 ** 100}
    p = tmp_path / "c.safetensors"
    save_checkpoint(p, arrays, meta)
    got, m = load_checkpoint(p)
    assert m == meta
    for k in arrays:
        np.testing.assert_array_equal(got[k], arrays[k])
        assert got[k].dtype == arrays[k].dtype


@pytest.mark.parametrize("damage", ["truncate", "garbage", "header"])
def test_corrupt_checkpoint_clear_error(tmp_path, damage):
    p = tmp_path / "c.safetensors"
    save_checkpoint(p, {"w": np.ones((4, 4), np.float32)}, {"epoch": 1})
    blob = p.read_bytes()
    if damage == "truncate":
        p.write_bytes(blob[: len(blob) // 2])
    elif damage == "garbage":
        p.write_bytes(b"\x00" * 64)
    else:
        p.write_bytes(blob[:8] + b"{not json" + blob[17:])
    with pytest.raises(CheckpointError, match="c.safetensors"):
        load_checkpoint(p)


def test_missing_checkpoint_and_foreign_safetensors(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "nope.safetensors")
    from safetensors.numpy import save_file
    save_file({"x": np.zeros(2, np.float32)}, str(tmp_path / "f.safetensors"))
    with pytest.raises(CheckpointError, match="not a chainrule checkpoint"):
        load_checkpoint(tmp_path / "f.safetensors")


def test_failed_write_keeps_old_checkpoint(tmp_path, monkeypatch):
    p = tmp_path / "c.safetensors"
    save_checkpoint(p, {"w": np.ones(3, np.float32)}, {"epoch": 1})
    before = _sha(p)

    def boom(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(p, {"w": np.zeros(3, np.float32)}, {"epoch": 2})
    monkeypatch.undo()
    assert _sha(p) == before
    assert [f.name for f in tmp_path.iterdir()] == ["c.safetensors"]      # no temporary left behind
    with pytest.raises(TypeError, match="dtype object"):
        save_checkpoint(p, {"w": np.array([None])}, {})
    assert _sha(p) == before


# ----------------------------------------------------------------------------- the loop
def _problem(n=120, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)
    return ArrayDataset(X[:90], y[:90]), ArrayDataset(X[90:], y[90:]), k


def _setup(out, epochs, k=3, opt="adam", t_max=None):
    model = nn.MLP([5, 16, k], activation="rrelu", dropout=0.3, seed=1)
    o = optim.Adam(model.parameters(), lr=0.01) if opt == "adam" else optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = optim.CosineLR(o, T_max=t_max or epochs)

    def loss_fn(m, batch):
        x, y = batch
        z = m(cr.Tensor._wrap(x))
        return losses.cross_entropy(z, y), {"correct": int((z.data.argmax(1) == y).sum()), "count": len(y)}

    def evaluate(m, data):
        x, y = data.arrays
        z = m(cr.Tensor._wrap(x))
        return {"loss": float(losses.cross_entropy(z, y).item()), "acc": float((z.data.argmax(1) == y).mean())}
    cfg = TrainConfig(epochs=epochs, batch_size=16, seed=7, out_dir=str(out), progress=False)
    return Trainer(model, o, loss_fn, evaluate, cfg, scheduler=sched), model


def _params(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def test_resume_at_epoch_boundary_is_bit_for_bit(tmp_path, capsys):
    train, val, _ = _problem()
    t_full, m_full = _setup(tmp_path / "full", 4)
    t_full.fit(train, val)
    t_a, _ = _setup(tmp_path / "split", 2, t_max=4)     # the first half of the same 4-epoch schedule
    t_a.fit(train, val)
    t_b, m_b = _setup(tmp_path / "split", 4)
    t_b.load(tmp_path / "split" / "last.safetensors")
    t_b.config.epochs = 4
    t_b.fit(train, val)
    for k, v in _params(m_full).items():
        np.testing.assert_array_equal(v, m_b.state_dict()[k])
    assert [h["train_loss"] for h in t_full.history] == [h["train_loss"] for h in t_b.history]
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(s)["epoch"] for s in lines] == [1, 2, 3, 4]
    assert (tmp_path / "split" / "curves.png").stat().st_size > 1000
    assert (tmp_path / "split" / "best.safetensors").exists()


def test_interrupt_mid_epoch_saves_and_resumes_bit_for_bit(tmp_path, capsys):
    train, val, _ = _problem()
    t_full, m_full = _setup(tmp_path / "full", 3, opt="sgd")
    t_full.fit(train, val)

    t_a, m_a = _setup(tmp_path / "int", 3, opt="sgd")
    inner = t_a.loss_fn
    calls = {"n": 0}

    def loss_and_ctrl_c(m, batch):       # Ctrl-C arrives during the 9th batch (epoch 2)
        calls["n"] += 1
        if calls["n"] == 9:
            t_a._stop = True
        return inner(m, batch)
    t_a.loss_fn = loss_and_ctrl_c
    with pytest.raises(KeyboardInterrupt):
        t_a.fit(train, val)
    assert "interrupted: saved" in capsys.readouterr().out
    t_b, m_b = _setup(tmp_path / "int", 3, opt="sgd")
    meta = t_b.load(tmp_path / "int" / "last.safetensors")
    assert (meta["epoch"], meta["batch"]) == (1, 3)      # 6 batches per epoch: stopped after batch 3 of epoch 2
    t_b.fit(train, val)
    for k, v in _params(m_full).items():
        np.testing.assert_array_equal(v, m_b.state_dict()[k])


def test_early_stopping(tmp_path, capsys):
    train, val, _ = _problem()
    t, _ = _setup(tmp_path / "es", 50)
    t.config.monitor, t.config.mode, t.config.patience = "loss", "max", 2   # loss going down never "improves"
    hist = t.fit(train, val)
    assert len(hist) == 3
    assert "early stopping" in capsys.readouterr().out


def test_wrong_shaped_checkpoint_leaves_model_and_files_alone(tmp_path, capsys):
    train, val, _ = _problem()
    t, m = _setup(tmp_path / "a", 1)
    t.fit(train, val)
    last = tmp_path / "a" / "last.safetensors"
    arrays, meta = load_checkpoint(last)
    arrays["model.layers.0.weight"] = np.zeros((7, 7), np.float32)
    bad = tmp_path / "bad.safetensors"
    save_checkpoint(bad, arrays, meta)
    t2, m2 = _setup(tmp_path / "b", 1)
    before = _params(m2)
    sha = _sha(last), _sha(bad)
    with pytest.raises(ValueError, match=r"layers\.0\.weight.*\(7, 7\)|\(7, 7\).*layers\.0\.weight"):
        t2.load(bad)
    for k, v in before.items():
        np.testing.assert_array_equal(v, m2.state_dict()[k])
    assert (_sha(last), _sha(bad)) == sha


# ----------------------------------------------------------------------------- the command


def test_train_loss_per_unit_and_the_plot(tmp_path, capsys):
    """A loss summed per example (tree models: over nodes) is also logged per scored item, the
    validation loss's scale; the plot marks the selected epoch and names the selection metric."""
    train, val, _ = _problem()
    t, _ = _setup(tmp_path / "r", 2)
    inner = t.loss_fn

    def loss_fn(m, batch):
        loss, stats = inner(m, batch)
        return loss, {**stats, "loss_units": 3 * len(batch[0])}
    t.loss_fn = loss_fn
    t.fit(train, val)
    for h in t.history:
        assert abs(h["train_loss_per_unit"] - h["train_loss"] / 3) < 1e-12
    from chainrule.train import plot_history
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    saved = {}
    real_savefig = plt.Figure.savefig

    def capture(fig, *a, **k):
        saved["labels"] = [line.get_label() for ax in fig.axes for line in ax.get_lines()]
        return real_savefig(fig, *a, **k)
    plt.Figure.savefig = capture
    try:
        plot_history(t.history, str(tmp_path / "c.png"), monitor="acc", best_epoch=1)
    finally:
        plt.Figure.savefig = real_savefig
    labels = saved["labels"]
    assert "train loss (mean per scored item, incl. penalty)" in labels
    assert "val acc (selection metric)" in labels
    assert labels.count("selected epoch 1") == 2
