"""``chainrule train window``, ``chainrule tag`` and ``chainrule gradcheck window`` on the made-up
CoNLL files of the ``ner_dir`` fixture (conftest.py)."""
import json

import pytest

from chainrule.checkpoint import load_checkpoint
from chainrule.cli import main
from chainrule.data import conll
from chainrule.data.embeddings import Vocab


def test_gradcheck_command(capsys):
    assert main(["gradcheck", "window"]) == 0
    out = capsys.readouterr().out
    assert "emb.weight" in out and "hidden.weight" in out and "(30)" in out and "all checks passed (18 of 18)" in out


def test_train_command_and_tag(ner_dir, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "window", "--data-dir", str(ner_dir), "--embeddings", str(ner_dir / "vectors.txt.gz"),
               "--epochs", "4", "--batch-size", "16", "--hidden", "20", "--lr", "0.01", "--out", str(out),
               "--no-progress", "--min-count", "1", "--lr-decay", "cosine"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "dev (eng.testa)" in text and "test (eng.testb)" in text
    assert "overall" in text and "PER" in text and "token accuracy" in text
    res = json.loads((out / "results.json").read_text())
    assert res["dev"]["overall"]["f1"] > 0.5          # the made-up data is easy
    arrays, meta = load_checkpoint(str(out / "best.safetensors"))
    vocab = Vocab.from_json(meta["extra"]["vocab"])
    assert "visited" in vocab and meta["extra"]["config"]["labels"][0] == "O"
    assert arrays["model.emb.weight"].shape == (len(vocab), 8)

    assert main(["tag", str(out / "best.safetensors"), "Alice Moreau visited Lyon on Monday ."]) == 0
    tagged = capsys.readouterr().out.splitlines()[0].split()
    assert [t.rsplit("/", 1)[0] for t in tagged] == ["Alice", "Moreau", "visited", "Lyon", "on", "Monday", "."]
    tags = [t.rsplit("/", 1)[1] for t in tagged]
    assert conll.iob1_to_iob2(tags) == tags                 # printed in IOB2, well formed

    # the cosine decay spans the 4 planned epochs: extending the run is refused (issue 13), the files stay
    rc = main(["train", "window", "--data-dir", str(ner_dir), "--epochs", "5", "--out", str(out),
               "--resume", "--no-progress"])
    assert rc == 2 and "cosine learning-rate schedule spans them" in capsys.readouterr().err
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["epoch"] == 4
    # resuming the finished run with its own flags trains nothing more and reports again
    assert main(["train", "window", "--data-dir", str(ner_dir), "--out", str(out), "--resume", "--no-progress"]) == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 4
    # evaluate accepts a window checkpoint and the run directory
    assert main(["evaluate", str(out)]) == 0
    assert "eng.testa" in capsys.readouterr().out


def test_person_task_seed_sgd(ner_dir, tmp_path, capsys):
    """The seed's model and training: binary head, no caps features, SGD one window at a time."""
    out = tmp_path / "person"
    rc = main(["train", "window", "--task", "person", "--data-dir", str(ner_dir), "--caps-dim", "0",
               "--batch-size", "1", "--optimizer", "sgd", "--lr", "0.05", "--epochs", "1", "--hidden", "10",
               "--dim", "8", "--out", str(out), "--no-progress"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["head"] == "binary" and res["config"]["labels"] == ["O", "PER"]
    assert set(res["test"]["per_type"]) <= {"PER"}
    assert res["test"]["overall"]["f1"] > 0.5


def test_missing_data_dir_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "window", "--data-dir", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "eng.train" in capsys.readouterr().err


def test_an_empty_split_file_is_refused(ner_dir, tmp_path, capsys):
    """An empty eng.testa was accepted, so model selection ran on nothing (issue 14)."""
    import shutil
    d = tmp_path / "ner_empty_dev"
    shutil.copytree(ner_dir, d)
    (d / "eng.testa").write_text("-DOCSTART- -X- O O\n\n")
    rc = main(["train", "window", "--data-dir", str(d), "--epochs", "1", "--out", str(tmp_path / "r"),
               "--no-progress"])
    assert rc == 2
    assert "eng.testa: no sentences in the file" in capsys.readouterr().err
