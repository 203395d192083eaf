"""One vocabulary of flags across the commands (issue 12/13): the shared options are defined once
(chainrule.commands), old spellings still parse as hidden aliases, ``--threads`` is accepted after
the subcommand, every default learning rate comes from the one optimizer table, and ``gradcheck`` /
``derive all`` end with one summary line."""
import json

import pytest

from chainrule import optim
from chainrule.cli import build_parser, main

TRAIN = {"mlp": [], "window": ["--data-dir", "D"], "rntn": [], "sequence": []}


@pytest.mark.parametrize("model", sorted(TRAIN))
def test_every_train_command_has_the_shared_options(model):
    ap = build_parser()
    base = ["train", model, *TRAIN[model]]
    a = ap.parse_args(base + ["--batch-size", "7", "--epochs", "2", "--patience", "3", "--schedule", "cosine",
                              "--weight-decay", "0.5", "--optimizer", "rmsprop", "--threads", "1", "--seed", "4"])
    assert (a.batch_size, a.epochs, a.patience, a.schedule, a.weight_decay, a.optimizer, a.threads, a.seed) == \
        (7, 2, 3, "cosine", 0.5, "rmsprop", 1, 4)
    # the old spellings are hidden aliases of the same options
    old = ap.parse_args(base + ["--batch", "7", "--lr-decay", "cosine"])
    assert (old.batch_size, old.schedule) == (7, "cosine")
    help_text = ap._subparsers._group_actions[0].choices["train"]._subparsers._group_actions[0].choices[model] \
        .format_help()
    assert "--batch-size" in help_text and "--lr-decay" not in help_text and "--batch " not in help_text


@pytest.mark.parametrize("argv", [["train", "window", "--data-dir", "D"], ["train", "rntn"],
                                  ["gradcheck", "window"], ["gradcheck", "rntn"]])
def test_dim_is_an_alias_of_embed_dim(argv):
    ap = build_parser()
    assert ap.parse_args(argv + ["--dim", "9"]).embed_dim == 9
    assert ap.parse_args(argv + ["--embed-dim", "9"]).embed_dim == 9


@pytest.mark.parametrize("argv", [["gradcheck", "mlp"], ["gradcheck", "lstm"], ["gradcheck", "attention"],
                                  ["gradcheck", "window"]])
def test_gradcheck_batch_size(argv):
    ap = build_parser()
    assert ap.parse_args(argv + ["--batch-size", "2"]).batch_size == 2
    assert ap.parse_args(argv + ["--batch", "2"]).batch_size == 2


@pytest.mark.parametrize("argv", [["train", "mlp"], ["evaluate", "x"], ["gradcheck", "rntn"], ["derive", "all"],
                                  ["dag", "x.json"], ["tag", "x", "a"], ["sentiment", "x", "a"]])
def test_threads_before_or_after_the_subcommand(argv):
    ap = build_parser()
    assert ap.parse_args(argv + ["--threads", "1"]).threads == 1
    assert ap.parse_args(["--threads", "2"] + argv).threads == 2
    assert ap.parse_args(argv).threads is None


def test_default_lr_comes_from_the_table(tmp_path, capsys):
    for name in ("sgd", "adagrad", "rmsprop"):
        out = tmp_path / name
        assert main(["train", "mlp", "--epochs", "1", "--hidden", "8", "--optimizer", name, "--out", str(out),
                     "--no-progress"]) == 0
        res = json.loads((out / "results.json").read_text())
        assert res["config"]["lr"] == optim.default_lr(name) == optim.OPTIMIZERS[name][1]["lr"]
    text = capsys.readouterr().out
    assert "1 epoch," in text and "1 epochs" not in text


def test_gradcheck_and_derive_all_end_with_one_summary_line(capsys):
    assert main(["gradcheck", "mlp", "--sizes", "3,4,2"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == "gradcheck mlp: all checks passed (4 of 4)"
    assert main(["derive", "all"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("derive all (derivation, engine and finite differences agree within 1e-06): "
                                "all checks passed (5 of 5)")
