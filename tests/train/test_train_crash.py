"""Runs that survive anything (issue 14): interrupts at any moment, kill -9, metrics that agree with
the checkpoint, no temporaries left, a clear stop for a diverged loss."""
import json
import os
import signal
import sys

import numpy as np
import pytest

from chainrule.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from chainrule.train import RunAborted, TrainingDiverged, Trainer

from test_train import _params, _problem, _setup  # noqa: E402  (sibling module: tests/train/ is on sys.path)


def _straight(tmp_path, epochs=3, opt="sgd"):
    train, val, _ = _problem()
    t, m = _setup(tmp_path / "straight", epochs, opt=opt)
    t.fit(train, val)
    return _params(m), train, val


def _assert_same(params, model):
    for k, v in params.items():
        np.testing.assert_array_equal(v, model.state_dict()[k], err_msg=k)


def _epochs(path):
    return [json.loads(line)["epoch"] for line in open(path)]


def test_double_ctrl_c_writes_nothing_and_resume_is_exact(tmp_path, capsys):
    """Two SIGINTs inside one batch: the second quits without writing; last.safetensors is still the
    consistent end-of-epoch-1 state, and resuming from it gives the straight run's weights."""
    want, train, val = _straight(tmp_path)
    t, m = _setup(tmp_path / "run", 3, opt="sgd")
    inner, calls = t.loss_fn, {"n": 0}

    def loss(model, batch):
        calls["n"] += 1
        if calls["n"] == 9:                    # epoch 2, batch 3
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return inner(model, batch)
    t.loss_fn = loss
    with pytest.raises(RunAborted):
        t.fit(train, val)
    err = capsys.readouterr().err
    assert "interrupted twice: quit without saving" in err and "start of epoch 2" in err
    meta = load_checkpoint(tmp_path / "run" / "last.safetensors")[1]
    assert (meta["epoch"], meta["batch"]) == (1, 0)
    t2, m2 = _setup(tmp_path / "run", 3, opt="sgd")
    t2.load(tmp_path / "run" / "last.safetensors")
    t2.fit(train, val)
    _assert_same(want, m2)
    assert _epochs(tmp_path / "run" / "metrics.jsonl") == [1, 2, 3]


def test_ctrl_c_during_validation_finishes_the_epoch_once(tmp_path, capsys):
    """An interrupt while validating: the epoch is finished and saved (the scheduler stepped once),
    then the run stops; the resumed run equals the straight one (no second scheduler step)."""
    want, train, val = _straight(tmp_path, opt="adam")
    t, m = _setup(tmp_path / "run", 3, opt="adam")
    inner, calls = t.evaluate_fn, {"n": 0}

    def evaluate(model, data):
        calls["n"] += 1
        if calls["n"] == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return inner(model, data)
    t.evaluate_fn = evaluate
    with pytest.raises(KeyboardInterrupt) as e:
        t.fit(train, val)
    assert not isinstance(e.value, RunAborted)
    assert "interrupted: saved" in capsys.readouterr().out
    meta = load_checkpoint(tmp_path / "run" / "last.safetensors")[1]
    assert (meta["epoch"], meta["batch"]) == (1, 0) and meta["scheduler"]["epoch"] == 1
    t2, m2 = _setup(tmp_path / "run", 3, opt="adam")
    t2.load(tmp_path / "run" / "last.safetensors")
    t2.fit(train, val)
    _assert_same(want, m2)


def test_second_interrupt_during_the_save_keeps_the_old_checkpoint(tmp_path, capsys, monkeypatch):
    """A second SIGINT while the interrupt's checkpoint is being written: the write is abandoned,
    the previous file stays intact and no temporary is left."""
    want, train, val = _straight(tmp_path)
    t, m = _setup(tmp_path / "run", 3, opt="sgd")
    inner, calls = t.loss_fn, {"n": 0}

    def loss(model, batch):
        calls["n"] += 1
        if calls["n"] == 9:
            os.kill(os.getpid(), signal.SIGINT)
        return inner(model, batch)
    t.loss_fn = loss
    from chainrule import checkpoint
    real_fsync = os.fsync

    def fsync_then_interrupt(fd):
        if calls["n"] >= 9:
            os.kill(os.getpid(), signal.SIGINT)
        return real_fsync(fd)
    monkeypatch.setattr(checkpoint.os, "fsync", fsync_then_interrupt)
    before = (tmp_path / "run").exists()
    with pytest.raises(RunAborted):
        t.fit(train, val)
    monkeypatch.undo()
    assert not before
    assert not [f for f in os.listdir(tmp_path / "run") if f.startswith(".tmp-")]
    meta = load_checkpoint(tmp_path / "run" / "last.safetensors")[1]
    assert (meta["epoch"], meta["batch"]) == (1, 0)
    t2, m2 = _setup(tmp_path / "run", 3, opt="sgd")
    t2.load(tmp_path / "run" / "last.safetensors")
    t2.fit(train, val)
    _assert_same(want, m2)


def _torn_log(run):
    """A crash after logging epoch 2, before its save: a line beyond the checkpoint, a torn last
    line, an orphaned temporary."""
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 2, "train_loss": 1.0}) + "\n" + '{"epoch": 3, "tr')
    (run / ".tmp-x1y2.safetensors").write_bytes(b"\0" * 1000)


def _lost_log(run):
    """A crash before the first log line was kept."""
    (run / "metrics.jsonl").unlink()


@pytest.mark.parametrize("done,crash", [(1, _torn_log), (2, _lost_log)], ids=["torn-log", "lost-log"])
def test_resume_after_a_crash_rewrites_the_metrics_of_a_straight_run(tmp_path, capsys, done, crash):
    """metrics.jsonl lines a crash wrote beyond the checkpoint (or a torn last line, or a lost log) are
    dropped or rewritten on resume, orphaned temporaries removed: the resumed run's weights and its
    metrics (except timings) are the straight run's."""
    want, train, val = _straight(tmp_path)
    run = tmp_path / "run"
    t, _ = _setup(run, done, opt="sgd", t_max=3)       # the first epochs of the 3-epoch schedule
    t.fit(train, val)
    crash(run)
    t2, m2 = _setup(run, 3, opt="sgd")
    t2.load(run / "last.safetensors")
    t2.fit(train, val)
    _assert_same(want, m2)
    assert _epochs(run / "metrics.jsonl") == [1, 2, 3]
    assert not [f for f in os.listdir(run) if f.startswith(".tmp-")]
    drop = ("train_seconds", "examples_per_s")
    a = [{k: v for k, v in json.loads(s).items() if k not in drop} for s in open(run / "metrics.jsonl")]
    b = [{k: v for k, v in json.loads(s).items() if k not in drop} for s in open(tmp_path / "straight" / "metrics.jsonl")]
    assert a == b


def test_trainer_refuses_checkpoint_metadata_of_another_kind(tmp_path):
    t, _ = _setup(tmp_path / "run", 1)
    p = tmp_path / "x.safetensors"
    save_checkpoint(p, {}, {"epoch": "3", "batch": 0})
    with pytest.raises(CheckpointError, match=r"x\.safetensors.*'epoch' is '3'"):
        t.load(p)
    save_checkpoint(p, {}, {"format": "something else"})
    with pytest.raises(CheckpointError, match="no 'epoch'"):
        t.load(p)


@pytest.mark.parametrize("field,value", [("batch_size", 0), ("batch_size", -5), ("epochs", -1), ("patience", 0),
                                         ("batch_size", 2.5)])
def test_trainer_refuses_bad_config(tmp_path, field, value):
    train, val, _ = _problem()
    t, _ = _setup(tmp_path / "run", 1)
    setattr(t.config, field, value)
    with pytest.raises(ValueError, match=field):
        t.fit(train, val)


def test_nan_loss_stops_with_a_clear_error_before_the_update(tmp_path, capsys):
    train, val, _ = _problem()
    t, m = _setup(tmp_path / "run", 2, opt="sgd")
    inner, calls, before = t.loss_fn, {"n": 0}, {}

    def loss(model, batch):
        calls["n"] += 1
        value, stats = inner(model, batch)
        if calls["n"] == 3:
            before.update(_params(model))
            value = value * float("nan")
        return value, stats
    t.loss_fn = loss
    with pytest.raises(TrainingDiverged, match="loss is nan at epoch 1, batch 3"):
        t.fit(train, val)
    _assert_same(before, m)


def test_without_validation_the_last_epoch_is_selected(tmp_path, capsys):
    train, _, _ = _problem()
    t, m = _setup(tmp_path / "run", 3)
    t.fit(train, None)
    assert t.best_epoch == 3
    best = load_checkpoint(tmp_path / "run" / "best.safetensors")[0]
    last = load_checkpoint(tmp_path / "run" / "last.safetensors")[0]
    for k in best:
        np.testing.assert_array_equal(best[k], last[k])
    t2, _ = _setup(tmp_path / "run2", 3)
    t2.config.patience = 2
    with pytest.raises(ValueError, match="needs a validation set"):
        t2.fit(train, None)


@pytest.mark.slow
def test_crash_soak_kill9_and_double_sigint(tmp_path):
    """~20 interruptions (SIGKILL, SIGINT, double SIGINT) of `chainrule train mlp` at random moments,
    each followed by --resume: every completed run equals a straight run bit for bit, its metrics
    log has each epoch once, and no temporary file is left (experiments/crash_soak.py; its default
    of 300 kills is the longer soak)."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "experiments"))
    from crash_soak import soak
    stats = soak(str(tmp_path), kills=20, seed=1, log=lambda s: None)
    assert stats["problems"] == []
    assert stats["kills"] == 20 and stats["runs_completed"] >= 2
