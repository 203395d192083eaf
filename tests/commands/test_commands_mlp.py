"""``chainrule train mlp``, ``chainrule evaluate``, ``chainrule gradcheck mlp`` and ``--help``."""
import json

import numpy as np
import pytest

from chainrule.checkpoint import load_checkpoint
from chainrule.cli import main


def test_cli_train_evaluate_resume(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["--threads", "1", "train", "mlp", "--epochs", "3", "--hidden", "64", "--lr", "0.01", "--out", str(out), "--no-progress"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["test_acc"] > 0.85                  # digits, 3 epochs of a small MLP (measured: 0.967)
    text = capsys.readouterr().out
    assert "test" in text and "accuracy" in text
    for f in ("best.safetensors", "last.safetensors", "metrics.jsonl", "curves.png"):
        assert (out / f).exists(), f
    assert main(["evaluate", str(out / "best.safetensors")]) == 0
    assert "test" in capsys.readouterr().out
    # the cosine schedule spans the 3 planned epochs: extending the finished run is refused (issue 13:
    # it used to train epochs 4-5 at lr 0 and report 3 epochs)
    assert main(["train", "mlp", "--resume", "--epochs", "5", "--out", str(out), "--no-progress"]) == 2
    assert "cosine learning-rate schedule spans them" in capsys.readouterr().err
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3


def test_cli_resume_equals_straight_run(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["train", "mlp", "--hidden", "16", "--no-progress", "--dropout", "0.2", "--schedule", "none"]
    assert main(common + ["--epochs", "4", "--out", str(a)]) == 0
    assert main(common + ["--epochs", "2", "--out", str(b)]) == 0
    assert main(["train", "mlp", "--resume", "--epochs", "4", "--out", str(b), "--no-progress"]) == 0
    arrays_a, _ = load_checkpoint(a / "last.safetensors")
    arrays_b, _ = load_checkpoint(b / "last.safetensors")
    assert set(arrays_a) == set(arrays_b)
    for k in arrays_a:                       # model and optimizer state, bit for bit
        np.testing.assert_array_equal(arrays_a[k], arrays_b[k])


def test_cli_gradcheck_mlp(capsys):
    assert main(["gradcheck", "mlp", "--activation", "sigmoid", "--loss", "multilabel-bce"]) == 0
    out = capsys.readouterr().out
    assert "layers.0.weight" in out and "max rel err" in out


def test_cli_missing_data_is_a_clear_error(tmp_path, capsys):
    rc = main(["train", "mlp", "--dataset", "mnist", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte.gz" in err and "sha256" in err.lower()


def test_cli_help_everywhere(capsys):
    for argv in (["--help"], ["train", "--help"], ["train", "mlp", "--help"], ["evaluate", "--help"],
                 ["gradcheck", "--help"], ["gradcheck", "mlp", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
    assert "usage" in capsys.readouterr().out
