"""``chainrule train rntn`` (RNTN, RNN, Tree-LSTM), ``chainrule sentiment`` and ``chainrule gradcheck rntn``."""
import os

import numpy as np

from chainrule.cli import main
from chainrule.commands import rntn as C
from chainrule.data.trees import parse_tree
from chainrule.models import treelstm as T
from chainrule.models.rntn import TreeDataset


def test_tokenize():
    assert C.tokenize("It doesn't work (at all), it's bad.") == \
        ["It", "does", "n't", "work", "-LRB-", "at", "all", "-RRB-", ",", "it", "'s", "bad", "."]


def test_smoke_train_and_sentiment(tmp_path, capsys):
    out = str(tmp_path / "run")
    rc = main(["train", "rntn", "--dim", "8", "--epochs", "1", "--limit", "50", "--out", out, "--no-progress"])
    assert rc == 0
    for f in ("best.safetensors", "last.safetensors", "metrics.jsonl", "results.json"):
        assert os.path.exists(os.path.join(out, f)), f
    text = capsys.readouterr().out
    assert "test (paper)" in text and "80.7" in text
    rc = main(["sentiment", os.path.join(out, "best.safetensors"), "not a good movie at all"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "balanced fallback" in text and "predicted: (" in text
    rc = main(["sentiment", os.path.join(out, "best.safetensors"), "(3 (2 a) (3 (3 good) (2 film)))"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "PTB tree" in text and text.count("\n") > 5
    # evaluate accepts a tree-model checkpoint (issue 13: it was MLP-only) and the run directory
    assert main(["evaluate", out, "--splits", "dev"]) == 0
    text = capsys.readouterr().out
    assert "dev (ours)" in text and "best.safetensors" in text
    # the plot's training loss is per node, the validation loss's scale (issue 13)
    import json
    rec = json.loads(open(os.path.join(out, "metrics.jsonl")).readline())
    assert rec["train_loss_per_unit"] < rec["train_loss"] and abs(rec["train_loss_per_unit"] - rec["val_loss"]) < 1.0


def test_gradcheck_command(capsys):
    assert main(["gradcheck", "rntn", "--trees", "1", "--dim", "3"]) == 0
    text = capsys.readouterr().out
    assert "RNTN" in text and "RNN" in text and "all checks passed" in text and "V " in text
    assert text.count("derivation check vs chainrule.derivations.rntn") == 2


def test_train_command_treelstm(tmp_path, capsys):
    out = str(tmp_path / "run")
    rc = main(["train", "rntn", "--model", "treelstm", "--dim", "6", "--hidden", "5", "--epochs", "1",
                 "--limit", "40", "--optimizer", "adam", "--lr", "0.01", "--out", out, "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "TREELSTM" in text and "Tai et al. 2015" in text and "51.0" in text
    model, config, _ = C.load_model(str(tmp_path / "run" / "best.safetensors"))
    assert isinstance(model, T.TreeLSTM) and config["hidden"] == 5


def test_sentiment_command_treelstm_checkpoint(tmp_path, capsys):
    """``chainrule sentiment`` on a Tree-LSTM checkpoint (one training step): the tree with every node's
    prediction, the same as ``predict`` gives."""
    import os
    out = str(tmp_path / "run")
    assert main(["train", "rntn", "--model", "treelstm", "--dim", "4", "--hidden", "3", "--epochs", "1",
                   "--limit", "2", "--batch-size", "2", "--out", out, "--no-progress"]) == 0
    ckpt = os.path.join(out, "best.safetensors")
    capsys.readouterr()
    assert main(["sentiment", ckpt, "not a good movie at all"]) == 0
    text = capsys.readouterr().out
    assert "TREELSTM d=4 H=3" in text and "balanced fallback" in text and "predicted: (" in text
    assert main(["sentiment", ckpt, "(3 (2 a) (3 (3 good) (2 film)))"]) == 0
    text = capsys.readouterr().out
    assert "PTB tree" in text and text.count("\n") > 5
    model, _, _ = C.load_model(ckpt)
    tree = parse_tree("(3 (2 a) (3 (3 good) (2 film)))")
    nodes = C.analyse(model, tree)
    assert len(nodes) == 5 and nodes[-1][0] is tree
    probs, _, is_root = T.predict(model, TreeDataset([tree], model.vocab))
    np.testing.assert_allclose(nodes[-1][2], probs[is_root][0])


def test_gradcheck_command_treelstm(capsys):
    assert main(["gradcheck", "rntn", "--model", "treelstm", "--trees", "1", "--dim", "3", "--hidden", "2"]) == 0
    text = capsys.readouterr().out
    assert "TREELSTM" in text and "float64" in text and "all checks passed" in text
    for name in ("Wx", "bx", "U", "Ws", "bs", "embedding.weight"):
        assert f"\n{name} " in text, name
    assert "NO" not in text.split()
    assert "derivation check: none for the Tree-LSTM" in text          # said, not silently skipped
    assert "batched vs node-by-node reference" in text
