"""``chainrule train sequence`` and ``chainrule gradcheck lstm|gru|attention``."""
import json
import os

import pytest

from chainrule.cli import main


@pytest.mark.parametrize("which", ["lstm", "gru", "attention"])
def test_gradcheck_commands(which, capsys):
    small = [] if which == "attention" else ["--hidden", "3", "--input", "2", "--length", "4"]
    assert main(["gradcheck", which, *small]) == 0
    out = capsys.readouterr().out
    assert "all checks passed" in out and "max rel err" in out


def test_train_sequence_command_smoke(tmp_path, capsys):
    from chainrule.data import sst
    cached = set(sst._cache)
    try:
        _smoke(tmp_path, capsys)
    finally:
        # drop the trees this test parsed: ~400,000 objects that every later gc.collect() (pytest
        # runs one after each test) would otherwise walk again
        for split in set(sst._cache) - cached:
            sst._cache.pop(split, None)


def _smoke(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "sequence", "--cell", "gru", "--bidirectional", "--pool", "attention", "--hidden", "8",
            "--embed-dim", "8", "--limit", "40", "--eval-limit", "30", "--epochs", "2", "--batch-size", "16",
            "--phrases", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "Bidirectional GRU + attention pooling" in text and "Tai et al." in text
    res = json.loads((out / "results.json").read_text())
    assert 0.0 <= res["test_fine"] <= 1.0 and 0.0 <= res["test_binary"] <= 1.0
    for f in ("best.safetensors", "last.safetensors", "metrics.jsonl", "curves.png"):
        assert os.path.exists(out / f)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    # resume: one more epoch from the checkpoint
    assert main(argv[:-4] + ["--epochs", "3", "--out", str(out), "--no-progress", "--resume"]) == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3
    from chainrule.commands import sequence as S
    _, config, _, _ = S.load_model(str(out / "best.safetensors"))
    assert config["cell"] == "gru" and config["phrases"] is True
    # a sequence checkpoint works with `sentiment` and `evaluate` (issue 13), a run directory too
    capsys.readouterr()
    assert main(["sentiment", str(out), "a", "gripping", "and", "moving", "film"]) == 0
    text = capsys.readouterr().out
    assert "sentence sentiment:" in text and "P(positive)" in text
    assert main(["sentiment", str(out / "best.safetensors"), "(3 (2 a) (3 film))"]) == 0
    assert "PTB tree" in capsys.readouterr().out
    assert main(["evaluate", str(out), "--splits", "dev"]) == 0
    assert "dev (ours)" in capsys.readouterr().out
