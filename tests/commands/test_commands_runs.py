"""Run directories and the command line's error handling (issues 13 and 14): resume semantics,
--overwrite, --val-fraction 0, --out preflight, crafted checkpoints, exit codes, --debug, broken pipes."""
import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from chainrule.checkpoint import load_checkpoint, save_checkpoint
from chainrule.cli import main

SMALL = ["train", "mlp", "--hidden", "16", "--no-progress", "--batch-size", "64"]


def _epochs(out):
    return [json.loads(s)["epoch"] for s in (out / "metrics.jsonl").read_text().splitlines()]


def test_extending_a_run_without_schedule_continues_and_reports_the_new_epochs(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(SMALL + ["--schedule", "none", "--epochs", "2", "--out", str(out)]) == 0
    assert main(["train", "mlp", "--resume", "--epochs", "3", "--out", str(out), "--no-progress"]) == 0
    assert _epochs(out) == [1, 2, 3]
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["epochs"] == 3 and res["epochs_run"] == 3
    assert all(json.loads(s)["lr"] > 0 for s in (out / "metrics.jsonl").read_text().splitlines())


def test_extending_a_cosine_run_is_refused_and_shrinking_below_done(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(SMALL + ["--epochs", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["train", "mlp", "--resume", "--epochs", "4", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "planned for 2 epochs" in err and "cosine" in err and err.count("\n") == 1
    assert _epochs(out) == [1, 2]
    assert main(SMALL + ["--schedule", "none", "--epochs", "2", "--out", str(tmp_path / "n")]) == 0
    assert main(["train", "mlp", "--resume", "--epochs", "1", "--out", str(tmp_path / "n")]) == 2
    assert "already finished 2 epochs" in capsys.readouterr().err


def test_resume_with_changed_flags_is_refused_listing_them(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(SMALL + ["--schedule", "none", "--epochs", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    rc = main(["train", "mlp", "--resume", "--hidden", "32", "--lr", "0.5", "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--hidden [32] (the run has [16])" in err and "--lr 0.5 (the run has 0.001)" in err
    # the same values, given again, and flags that may change (patience, progress) are fine
    assert main(["train", "mlp", "--resume", "--hidden", "16", "--patience", "3", "--epochs", "2",
                 "--out", str(out), "--no-progress"]) == 0
    assert _epochs(out) == [1, 2]


def test_a_new_run_refuses_an_out_holding_a_run_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(SMALL + ["--epochs", "1", "--out", str(out)]) == 0
    before = load_checkpoint(out / "last.safetensors")[0]
    capsys.readouterr()
    assert main(SMALL + ["--epochs", "1", "--seed", "3", "--out", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    after = load_checkpoint(out / "last.safetensors")[0]
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])
    assert main(SMALL + ["--epochs", "1", "--seed", "3", "--out", str(out), "--overwrite"]) == 0
    assert _epochs(out) == [1]
    assert main(["train", "mlp", "--resume", "--overwrite", "--out", str(out)]) == 2
    assert main(["train", "mlp", "--resume", "--out", str(tmp_path / "empty")]) == 2
    assert "holds no checkpoint" in capsys.readouterr().err


def test_val_fraction_zero_selects_the_last_epoch(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(SMALL + ["--epochs", "3", "--val-fraction", "0", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "best epoch 3 (the last epoch: no validation set)" in text
    assert "val_acc" not in text
    res = json.loads((out / "results.json").read_text())
    assert res["best_epoch"] == 3 and "val_acc" not in res
    assert main(SMALL + ["--epochs", "3", "--val-fraction", "0", "--patience", "2", "--out", str(tmp_path / "p")]) == 2


@pytest.mark.parametrize("argv,msg", [
    (["--batch-size", "0"], "positive integer"), (["--batch-size", "-5"], "positive integer"),
    (["--lr", "nan"], "finite number"), (["--lr", "inf"], "finite number"), (["--epochs", "0"], "positive integer"),
    (["--val-fraction", "1.5"], "fraction"),
])
def test_nonsense_numbers_are_usage_errors(tmp_path, capsys, argv, msg):
    with pytest.raises(SystemExit) as e:
        main(SMALL + argv + ["--out", str(tmp_path / "r")])
    assert e.value.code == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_out_that_is_a_file_is_one_clear_error_before_training(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    assert main(SMALL + ["--epochs", "1", "--out", str(f)]) == 2
    cap = capsys.readouterr()
    assert "exists and is not a directory" in cap.err and cap.err.count("\n") == 1
    assert "epoch" not in cap.out and "Traceback" not in cap.err


@pytest.mark.parametrize("code,text", [(errno.ENOSPC, "no space left"), (errno.EROFS, "read-only"),
                                       (errno.EACCES, "permission denied")])
def test_out_on_a_full_or_read_only_file_system(tmp_path, capsys, monkeypatch, code, text):
    from chainrule.commands import rundir

    def refuse(*a, **k):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(rundir.tempfile, "mkstemp", refuse)
    assert main(SMALL + ["--epochs", "1", "--out", str(tmp_path / "r")]) == 2
    cap = capsys.readouterr()
    assert text in cap.err and "epoch" not in cap.out


def test_full_disk_at_the_end_of_an_epoch_says_the_old_checkpoint_is_kept(tmp_path, capsys, monkeypatch):
    out = tmp_path / "r"
    assert main(SMALL + ["--schedule", "none", "--epochs", "1", "--out", str(out)]) == 0
    from chainrule import checkpoint

    class FullDisk:                      # os for the checkpoint writer only: the preflight probe still passes
        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def fsync(fd):
            raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(checkpoint, "os", FullDisk())
    capsys.readouterr()
    rc = main(["train", "mlp", "--resume", "--epochs", "2", "--out", str(out)])
    monkeypatch.undo()
    assert rc == 2
    err = capsys.readouterr().err
    assert "no space left on the device" in err and "is kept unchanged" in err and "Traceback" not in err
    assert load_checkpoint(out / "last.safetensors")[1]["epoch"] == 1
    assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]


def _forge(path, config, epoch=1, extra_keys=None, arrays=None):
    meta = {"epoch": epoch, "batch": 0, "epoch_rng_state": {}, "history": [{"epoch": 1}], "bad_epochs": 0,
            "best": 0.5, "best_epoch": 1, "extra": {"config": config, **(extra_keys or {})}}
    save_checkpoint(path, arrays or {"model.layers.0.weight": np.zeros((64, 16), np.float32)}, meta)


def test_crafted_config_is_refused_by_a_sanity_bound(tmp_path, capsys):
    src = tmp_path / "r"
    assert main(SMALL + ["--epochs", "1", "--out", str(src)]) == 0
    arrays, meta = load_checkpoint(src / "best.safetensors")
    meta["extra"]["config"]["hidden"] = [200000, 200000]
    save_checkpoint(src / "best.safetensors", arrays, meta)
    save_checkpoint(src / "last.safetensors", arrays, meta)
    capsys.readouterr()
    assert main(["evaluate", str(src / "best.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "'hidden' is [200000, 200000]" in err and "no array in the checkpoint has a dimension above 64" in err
    assert main(["train", "mlp", "--resume", "--out", str(src)]) == 2
    assert "'hidden' is [200000, 200000]" in capsys.readouterr().err


def test_resume_from_another_kind_of_checkpoint_is_a_clear_error(tmp_path, capsys):
    """`chainrule train rntn ... --out R && chainrule train mlp --out R --resume` was KeyError: 'dataset'."""
    out = tmp_path / "r"
    out.mkdir()
    _forge(out / "last.safetensors", {"model": "rntn", "dim": 4}, extra_keys={"vocab": {"words": ["a"]}})
    assert main(["train", "mlp", "--resume", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "is not a checkpoint of 'chainrule train mlp' (its model is 'rntn')" in err
    meta_str = tmp_path / "s"
    meta_str.mkdir()
    save_checkpoint(meta_str / "last.safetensors", {}, {"epoch": "2", "batch": 0})
    assert main(["train", "mlp", "--resume", "--out", str(meta_str)]) == 2
    assert "metadata field 'epoch' is '2'" in capsys.readouterr().err
    save_checkpoint(meta_str / "last.safetensors", {}, {"epoch": 0, "batch": 0, "epoch_rng_state": {}, "history": [],
                                                        "bad_epochs": 0, "best": None, "best_epoch": None})
    assert main(["train", "mlp", "--resume", "--out", str(meta_str)]) == 2
    assert "holds no model configuration" in capsys.readouterr().err


def test_debug_shows_the_traceback_and_real_bugs_keep_theirs(tmp_path, capsys, monkeypatch):
    assert main(["evaluate", str(tmp_path / "nope.safetensors")]) == 2
    assert "no such file" in capsys.readouterr().err
    from chainrule.checkpoint import CheckpointError
    with pytest.raises(CheckpointError):
        main(["--debug", "evaluate", str(tmp_path / "nope.safetensors")])
    from chainrule.commands import mlp

    def bug(args):
        raise KeyError("a bug")
    monkeypatch.setattr(mlp, "cmd_evaluate", bug)        # register() reads it when the parser is built
    with pytest.raises(KeyError):
        main(["evaluate", "x"])


def test_broken_pipe_is_quiet(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), "..", "..", "src"),
               OPENBLAS_NUM_THREADS="1")
    p = subprocess.run(f"{sys.executable} -m chainrule gradcheck rntn --model treelstm | head -c 10",
                       shell=True, capture_output=True, env=env)
    assert p.stdout and b"Traceback" not in p.stderr and b"BrokenPipe" not in p.stderr, p.stderr.decode()


def test_evaluate_accepts_a_run_directory(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(SMALL + ["--epochs", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    assert "best.safetensors" in capsys.readouterr().out
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "without best.safetensors or last.safetensors" in capsys.readouterr().err


def test_blas_threads_default_to_one_unless_the_user_chose(monkeypatch):
    import argparse
    from chainrule.cli import BLAS_THREAD_ENV, default_threads
    for v in BLAS_THREAD_ENV:
        monkeypatch.delenv(v, raising=False)
    assert default_threads(argparse.Namespace()) == 1
    assert default_threads(argparse.Namespace(threads=3)) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert default_threads(argparse.Namespace()) is None
    env = {k: v for k, v in os.environ.items() if k not in BLAS_THREAD_ENV}
    env["PYTHONPATH"] = os.path.join(os.path.dirname(__file__), "..", "..", "src")
    code = ("from chainrule.cli import main; from threadpoolctl import threadpool_info; "
            "main(['gradcheck', 'mlp']); print('THREADS', {i['num_threads'] for i in threadpool_info()})")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert "THREADS {1}" in p.stdout, p.stdout + p.stderr


def test_help_prints_no_machine_specific_paths(capsys):
    for argv in (["train", "sequence", "--help"], ["train", "window", "--help"], ["train", "rntn", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        assert "/work/" not in out and "/home/" not in out and "/shared/" not in out, out
