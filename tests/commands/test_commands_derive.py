"""`chainrule derive MODEL` and `chainrule dag SPEC.json`."""

import argparse
import json
import os
import shutil

import numpy as np
import pytest

from chainrule.commands import derive
from chainrule.cli import main
from chainrule.derivations import dag as D
from chainrule.derivations import rntn, window

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "dag_softmax.json")

PARAMS = {
    "window": ["L", "W", "b1", "U", "b2"],
    "multilabel-mlp": ["W1", "b1", "W2", "b2"],
    "layerwise": ["W1", "b1", "W2", "b2", "W3", "b3", "W4", "b4"],
    "dag": ["w[x1->h1]", "w[h1->m]", "w[m->z]"],
    "rntn": ["L", "V", "W", "Ws", "b", "bs"],
}


def _rows(out):
    """{parameter: (deriv~engine, deriv~numeric, engine~numeric, ok)} from the printed table."""
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[-1] in ("yes", "NO"):
            rows[parts[0]] = tuple(float(v) for v in parts[-4:-1]) + (parts[-1],)
    return rows


@pytest.mark.parametrize("model", sorted(PARAMS))
def test_derive_each_model_agrees_three_ways(model, capsys):
    assert main(["derive", model]) == 0
    out = capsys.readouterr().out
    assert f"derive {model}:" in out and "deriv~engine" in out and "engine~numeric" in out
    assert "all pairs agree" in out
    rows = _rows(out)
    for p in PARAMS[model]:
        assert p in rows, p
    for name, (de, dn, en, ok) in rows.items():
        assert ok == "yes" and de <= 1e-12 and dn <= 1e-7 and en <= 1e-7, name


def test_derive_all(capsys):
    assert main(["derive", "all", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("all pairs agree") == 5


def test_a_broken_derivation_fails(monkeypatch, capsys):
    real = window.gradients

    def broken(*a, **k):
        g = real(*a, **k)
        g["W"] = g["W"] * 1.01                           # a slip in one formula
        return g
    monkeypatch.setattr(window, "gradients", broken)
    assert main(["derive", "window"]) == 1
    rows = _rows(capsys.readouterr().out)
    assert rows["W"][3] == "NO" and rows["W"][0] > 1e-3 and rows["W"][2] < 1e-7     # engine still right
    assert rows["L"][3] == "yes"


def test_a_broken_rntn_message_fails(monkeypatch, capsys):
    real = rntn.batch_gradients

    def broken(*a, **k):
        g = real(*a, **k)
        g["V"] = np.swapaxes(g["V"], 0, 1)               # the transposed-slice slip
        return g
    monkeypatch.setattr(rntn, "batch_gradients", broken)
    assert main(["derive", "rntn"]) == 1
    assert "DISAGREEMENT" in capsys.readouterr().out


def test_derive_dag_with_a_spec_file(tmp_path, capsys):
    spec = D.two_layer_spec(np.array([[0.5, -1.0], [0.3, 0.8]]), np.array([[1.0, -0.5], [0.2, 0.4], [-1.0, 0.1]]))
    p = tmp_path / "b.json"
    p.write_text(json.dumps(spec))
    assert main(["derive", "dag", "--spec", str(p)]) == 0
    assert "w[h1->y]" in capsys.readouterr().out
    biased = dict(spec, nodes=[dict(n, bias=0.1) if n["unit"] != "input" else n for n in spec["nodes"]])
    p.write_text(json.dumps(biased))
    capsys.readouterr()
    assert main(["derive", "dag", "--spec", str(p)]) == 2          # bad input: exit 2, one clear line
    assert "bias" in capsys.readouterr().err


def test_dag_command_xor_explain_and_draw(tmp_path, capsys):
    out_svg = tmp_path / "net.svg"
    saved = tmp_path / "trained.json"
    assert main(["dag", EXAMPLE, "--epochs", "300", "--lr", "0.05", "--draw", str(out_svg), "--save", str(saved)]) == 0
    out = capsys.readouterr().out
    assert "training on XOR" in out and "loss curve: epoch 1:" in out
    assert "training accuracy 100.0%" in out
    assert "explain:" in out and "δ=" in out and "γ=" in out
    written = out_svg if shutil.which("dot") else tmp_path / "net.dot"
    assert written.exists() and f"wrote {written}" in out
    assert isinstance(json.loads(saved.read_text())["edges"][0]["weight"], float)


def test_dag_command_moons(capsys):
    assert main(["dag", EXAMPLE, "--task", "moons", "--epochs", "60", "--samples", "80"]) == 0
    out = capsys.readouterr().out
    assert "two moons" in out and "test accuracy" in out


def test_dag_command_uses_the_specs_data(tmp_path, capsys):
    spec = json.loads(open(EXAMPLE).read())
    spec["nodes"].insert(2, {"name": "x3", "unit": "input"})
    spec["edges"].append({"from": "x3", "to": "y"})
    spec["data"] = {"x": [[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]], "y": [[0], [1], [1], [0]]}
    p = tmp_path / "s.json"
    p.write_text(json.dumps(spec))
    assert main(["dag", str(p), "--epochs", "50", "--optimizer", "sgd"]) == 0
    assert "training on spec data: 4 examples" in capsys.readouterr().out
    assert main(["dag", str(p), "--task", "xor", "--epochs", "1"]) == 2
    assert "xor task has 2 inputs" in capsys.readouterr().err


def test_register_adds_both_subcommands():
    ap = argparse.ArgumentParser(prog="chainrule")
    sub = ap.add_subparsers(dest="command", required=True)
    derive.register(sub, None, None)
    args = ap.parse_args(["derive", "rntn", "--seed", "2"])
    assert args.func is derive.cmd_derive and args.model == "rntn" and args.seed == 2
    args = ap.parse_args(["dag", "net.json", "--draw", "out.svg", "--epochs", "5", "--lr", "0.1"])
    assert args.func is derive.cmd_dag and args.draw == "out.svg" and args.epochs == 5 and args.lr == 0.1
    with pytest.raises(SystemExit):
        ap.parse_args(["derive", "lstm"])
