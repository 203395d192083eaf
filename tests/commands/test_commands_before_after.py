"""Every ``train``, ``evaluate``, ``tag``, ``sentiment``, ``gradcheck``, ``derive`` and ``dag`` command
gives the same numbers as it did before the restructuring of issue 12 (the values in
``before_after.json`` were recorded at commit c36bc65, before any of it).  The runs use the old flag
spellings (``--dim``, ``--lr-decay``: hidden aliases now) and pass ``--lr`` where the old default
differed from the one optimizer table's (issue 12 made every command take its default learning rate
from :data:`chainrule.optim.OPTIMIZERS`).

What is compared, per command:

* ``train``: every number of ``results.json`` except wall-clock times and the configuration (whose
  key names follow the flag vocabulary), and every per-epoch number of ``metrics.jsonl`` except
  times and throughput -- float32 runs to 1e-6 relative, float64 tighter;
* ``evaluate``: the accuracy and loss of each split; ``tag``: the tagged sentence; ``sentiment``:
  the label and probability of every node and the predicted tree;
* ``gradcheck`` and ``derive``: the exit status, each parameter's ok flag, the losses (``derive``
  prints 12 digits); the error columns are differences between two float64 computations of the same
  gradient (rounding noise, ~1e-10), which any change in summation order moves, so they are held to
  "no worse than 10x the recorded value (or 1e-8)" -- a wrong gradient gives errors near 1 (where a
  table now prints one error measure instead of two, e.g. ``gradcheck window``'s seed-002 rows use the
  one relative-error helper, the largest of each row is compared);
* ``dag``: the trained weights written by ``--save`` (float64, 1e-9) and the final losses.

Re-record (only from a commit whose numbers are known to be right):
``PYTHONPATH=src python tests/commands/test_before_after.py --record``.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
import os
import re
import sys
import tempfile

import numpy as np
import pytest

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "before_after.json")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DAG_SPEC = os.path.join(ROOT, "examples", "dag_softmax.json")
NUM = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
SKIP_KEYS = ("seconds", "examples_per_s", "time", "epochs_run", "train_loss_per_unit")   # epochs_run: added after the recording (issue 13)
pytestmark = pytest.mark.usefixtures("release_parsed_sst")


# ------------------------------------------------------------------------------------ running
def _cli(argv):
    """Run ``chainrule ARGV`` in this process: (exit status, stdout)."""
    from chainrule.cli import main
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(list(argv))
    return rc, buf.getvalue()


def _numbers(line):
    return [float(v) for v in NUM.findall(line)]


def _run_files(out):
    """The numbers of a run directory: results.json (minus times and config) and metrics.jsonl."""
    res = json.loads(open(os.path.join(out, "results.json"), encoding="utf-8").read())
    flat = {}
    stack = [("", res)]
    while stack:
        prefix, d = stack.pop()
        for k, v in d.items():
            key = f"{prefix}{k}"
            if k == "config" or any(s in k for s in SKIP_KEYS):
                continue
            if isinstance(v, dict):
                stack.append((key + ".", v))
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                flat[key] = v
    epochs = []
    for line in open(os.path.join(out, "metrics.jsonl"), encoding="utf-8"):
        rec = json.loads(line)
        epochs.append({k: v for k, v in rec.items()
                       if isinstance(v, (int, float)) and not any(s in k for s in SKIP_KEYS)})
    return {"results": flat, "epochs": epochs}


def _table_rows(text):
    """Gradient-check tables: {table#/parameter: {"errors": [...], "ok": bool}} from the rows that end
    in yes/NO (a table starts at its header line "parameter ..." or "gradient ...")."""
    rows, table = {}, 0
    for line in text.splitlines():
        tok = line.split()
        if tok and tok[0] in ("parameter", "gradient"):
            table += 1
            continue
        m = re.search(r"\s(yes|NO)(\s|$)", line)
        if tok and m and table:
            errors = [float(v) for v in re.findall(r"\d\.\d+e[-+]\d+", line[:m.start()])]
            rows[f"{table}/{tok[0]}"] = {"errors": errors, "ok": m.group(1) == "yes"}
    return rows


def _noise_lines(text, prefix):
    """The ``derivation check ...: L 1e-16, W ...`` lines: {section/line#: numbers}."""
    return {f"{i}": {"errors": _numbers(line.split(":", 1)[1])} for i, line in enumerate(
        ln for ln in text.splitlines() if ln.startswith(prefix))}


def case_mlp(tmp):
    out = os.path.join(tmp, "mlp")
    rc, _ = _cli(["train", "mlp", "--epochs", "2", "--hidden", "32", "--out", out, "--no-progress"])
    r = {"rc": rc, "run": _run_files(out)}
    rc, text = _cli(["evaluate", os.path.join(out, "best.safetensors"), "--splits", "train", "val", "test"])
    r["evaluate"] = {"rc": rc, **{ln.split()[0]: _numbers(ln) for ln in text.splitlines()
                                  if ln.split() and ln.split()[0] in ("train", "val", "test")}}
    return r


def case_mlp_sgd(tmp):
    out = os.path.join(tmp, "mlp-sgd")
    rc, _ = _cli(["train", "mlp", "--epochs", "3", "--hidden", "24,16", "--optimizer", "sgd", "--schedule", "step",
                  "--weight-decay", "1e-3", "--dropout", "0", "--batch-size", "64", "--activation", "tanh",
                  "--out", out, "--no-progress"])
    return {"rc": rc, "run": _run_files(out)}


def case_mlp_adagrad(tmp):
    out = os.path.join(tmp, "mlp-adagrad")
    rc, _ = _cli(["train", "mlp", "--epochs", "2", "--hidden", "16", "--optimizer", "adagrad", "--schedule", "none",
                  "--loss", "multilabel-bce", "--l2", "0.01", "--activation", "sigmoid", "--lr", "0.05", "--out", out,
                  "--no-progress"])
    return {"rc": rc, "run": _run_files(out)}


def write_ner_sample(d):
    """A tiny made-up CoNLL-2003 directory (eng.train/testa/testb) and a GloVe-format file."""
    first = ["Alice", "Bruno", "Chloe", "Dmitri", "Elena", "Farid", "Greta", "Hugo"]
    last = ["Moreau", "Lindqvist", "Okafor", "Petrov", "Quispe", "Rossi"]
    cities = ["Lyon", "Tampere", "Oaxaca", "Brisbane", "Kraków", "Valparaiso"]
    orgs = [["Zentra", "Holdings"], ["Bluefin", "Labs"], ["Orvane"], ["Kestrel", "Bank"]]
    os.makedirs(d, exist_ok=True)
    for name, n, seed in (("eng.train", 80, 0), ("eng.testa", 15, 1), ("eng.testb", 15, 2)):
        rng = np.random.default_rng(seed)
        lines = ["-DOCSTART- -X- O O", ""]
        for _ in range(n):
            per = [(first[rng.integers(len(first))], "I-PER"), (last[rng.integers(len(last))], "I-PER")]
            loc = [(cities[rng.integers(len(cities))], "I-LOC")]
            org = [(w, "I-ORG") for w in orgs[rng.integers(len(orgs))]]
            s = (per + [("visited", "O")] + loc + [(".", "O")] if rng.integers(2) else
                 org + [("said", "O")] + per + [(".", "O")])
            lines += [f"{w} NNP I-NP {t}" for w, t in s] + [""]
        with open(os.path.join(d, name), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    rng = np.random.default_rng(3)
    with gzip.open(os.path.join(d, "vectors.txt.gz"), "wt", encoding="utf-8") as f:
        for w in ["the", "visited", "said", "lyon", "alice", "moreau", "."]:
            f.write(w + " " + " ".join(f"{v:.4f}" for v in rng.standard_normal(6)) + "\n")
    return d


def case_window(tmp):
    ner = write_ner_sample(os.path.join(tmp, "ner"))
    out = os.path.join(tmp, "window")
    rc, _ = _cli(["train", "window", "--data-dir", ner, "--embeddings", os.path.join(ner, "vectors.txt.gz"),
                  "--epochs", "2", "--batch-size", "16", "--hidden", "12", "--min-count", "1", "--lr-decay", "cosine",
                  "--out", out, "--no-progress"])
    r = {"rc": rc, "run": _run_files(out)}
    rc, text = _cli(["tag", os.path.join(out, "best.safetensors"), "Alice Moreau visited Lyon ."])
    r["tag"] = {"rc": rc, "line": text.splitlines()[0]}
    return r


def case_window_person_sgd(tmp):
    ner = write_ner_sample(os.path.join(tmp, "ner"))
    out = os.path.join(tmp, "person")
    rc, _ = _cli(["train", "window", "--task", "person", "--data-dir", ner, "--caps-dim", "0", "--batch-size", "1",
                  "--optimizer", "sgd", "--lr", "0.01", "--epochs", "1", "--hidden", "8", "--dim", "6", "--min-count", "1",
                  "--out", out, "--no-progress"])
    return {"rc": rc, "run": _run_files(out)}


def _sentiment(ckpt, text):
    rc, out = _cli(["sentiment", ckpt, text])
    lines = out.splitlines()
    outline = [[int(m.group(1)), float(m.group(2))] for m in
               (re.match(r"^\s*([0-4]) .{14} (\d\.\d\d)  ", ln) for ln in lines) if m]
    pred = [ln for ln in lines if ln.startswith("predicted:")]
    summary = [_numbers(ln) for ln in lines if ln.startswith("sentence sentiment")]
    return {"rc": rc, "outline": outline, "predicted": pred, "summary": summary}


def case_rntn(tmp):
    out = os.path.join(tmp, "rntn")
    rc, _ = _cli(["train", "rntn", "--dim", "6", "--epochs", "2", "--limit", "40", "--batch-size", "10",
                  "--out", out, "--no-progress"])
    r = {"rc": rc, "run": _run_files(out)}
    r["sentiment"] = _sentiment(os.path.join(out, "best.safetensors"), "not a good movie at all")
    return r


def case_rnn_adam_f64(tmp):
    out = os.path.join(tmp, "rnn")
    rc, _ = _cli(["train", "rntn", "--model", "rnn", "--dim", "5", "--epochs", "1", "--limit", "30",
                  "--optimizer", "adam", "--lr", "0.01", "--dtype", "float64", "--out", out, "--no-progress"])
    return {"rc": rc, "run": _run_files(out)}


def case_treelstm(tmp):
    out = os.path.join(tmp, "treelstm")
    rc, _ = _cli(["train", "rntn", "--model", "treelstm", "--dim", "5", "--hidden", "6", "--epochs", "1",
                  "--limit", "30", "--out", out, "--no-progress"])
    r = {"rc": rc, "run": _run_files(out)}
    r["sentiment"] = _sentiment(os.path.join(out, "best.safetensors"), "(3 (2 a) (3 (3 good) (2 film)))")
    return r


def case_sequence(tmp):
    out = os.path.join(tmp, "seq")
    rc, _ = _cli(["train", "sequence", "--cell", "gru", "--bidirectional", "--pool", "attention", "--hidden", "6",
                  "--embed-dim", "6", "--limit", "40", "--eval-limit", "30", "--epochs", "2", "--batch-size", "16",
                  "--lr", "2e-3", "--out", out, "--no-progress"])
    return {"rc": rc, "run": _run_files(out)}


def case_sequence_sgd(tmp):
    out = os.path.join(tmp, "seq-sgd")
    rc, _ = _cli(["train", "sequence", "--cell", "lstm", "--hidden", "5", "--embed-dim", "5", "--limit", "30",
                  "--eval-limit", "20", "--epochs", "1", "--batch-size", "8", "--optimizer", "sgd", "--lr", "0.5",
                  "--weight-decay", "1e-3", "--out", out, "--no-progress"])
    return {"rc": rc, "run": _run_files(out)}


def _gradcheck(argv):
    rc, text = _cli(argv)
    return {"rc": rc, "rows": _table_rows(text), "derivation": _noise_lines(text, "derivation check vs"),
            "per_node": _noise_lines(text, "batched vs node-by-node")}


def case_gradcheck_mlp(tmp):
    return _gradcheck(["gradcheck", "mlp"])


def case_gradcheck_window(tmp):
    return _gradcheck(["gradcheck", "window"])


def case_gradcheck_rntn(tmp):
    return _gradcheck(["gradcheck", "rntn", "--models", "rntn", "rnn", "treelstm", "--trees", "2"])


def case_gradcheck_recurrent(tmp):
    small = ["--hidden", "3", "--input", "2", "--length", "4"]
    return {name: _gradcheck(["gradcheck", name, *(small if name != "attention" else [])])
            for name in ("lstm", "gru", "attention")}


def case_derive(tmp):
    rc, text = _cli(["derive", "all"])
    losses = [_numbers(ln) for ln in text.splitlines() if ln.startswith("loss: derivation")]
    return {"rc": rc, "losses": losses, "rows": _table_rows(text)}


def _dag(tmp, name, extra):
    save = os.path.join(tmp, f"{name}.json")
    rc, text = _cli(["dag", DAG_SPEC, "--save", save, *extra])
    spec = json.load(open(save, encoding="utf-8"))
    weights = [w for e in spec["edges"] for w in np.atleast_1d(e["weight"]).tolist()]
    biases = [b for n in spec["nodes"] if isinstance(n.get("bias"), (list, float, int)) and not isinstance(
        n.get("bias"), bool) for b in np.atleast_1d(n["bias"]).tolist()]
    final = [_numbers(ln.split("accuracy")[0]) + _numbers(ln.split("accuracy")[1])
             for ln in text.splitlines() if ln.strip().startswith(("final:", "test loss"))]
    return {"rc": rc, "weights": weights, "biases": biases, "final": final}


def case_dag_adam(tmp):
    return _dag(tmp, "adam", ["--epochs", "60", "--lr", "0.05"])


def case_dag_sgd_moons(tmp):
    return _dag(tmp, "moons", ["--task", "moons", "--optimizer", "sgd", "--lr", "0.5", "--epochs", "4", "--batch-size", "32",
                               "--samples", "100", "--seed", "3"])


CASES = {k[5:]: v for k, v in sorted(globals().items()) if k.startswith("case_")}


# ------------------------------------------------------------------------------------ comparing
def _close(a, b, rel):
    return a == b or (math.isnan(a) and math.isnan(b)) or (math.isfinite(a) and math.isfinite(b) and abs(a - b) <= rel * max(abs(a), abs(b)))


def compare(before, after, path="", rel=1e-6, errors=None):
    """Differences between two recorded structures, as a list of strings (empty: the same)."""
    errors = [] if errors is None else errors
    if path.endswith("/errors"):               # rounding-noise columns: no worse than 10x (or 1e-8)
        if len(before) != len(after):          # a table that now prints one error measure, not two
            before, after = [max(before, default=0.0)], [max(after, default=0.0)]
        if any(a > max(10 * abs(b), 1e-8) for a, b in zip(after, before)):
            errors.append(f"{path}: {before} -> {after}")
        return errors
    if isinstance(before, dict):
        if not isinstance(after, dict):
            return errors + [f"{path}: {before!r} -> {after!r}"]
        for k in before:
            if k not in after:
                errors.append(f"{path}/{k}: missing now")
            else:
                compare(before[k], after[k], f"{path}/{k}", rel, errors)
        for k in after:
            if k not in before:
                errors.append(f"{path}/{k}: new (not recorded before)")
    elif isinstance(before, list):
        if not isinstance(after, list) or len(before) != len(after):
            return errors + [f"{path}: {before!r} -> {after!r}"]
        for i, (a, b) in enumerate(zip(before, after)):
            compare(a, b, f"{path}[{i}]", rel, errors)
    elif isinstance(before, float) or isinstance(after, float):
        if not isinstance(after, (int, float)) or not _close(float(before), float(after), rel):
            errors.append(f"{path}: {before!r} -> {after!r}")
    elif before != after:
        errors.append(f"{path}: {before!r} -> {after!r}")
    return errors


def _recorded():
    with open(FIXTURE, encoding="utf-8") as f:
        return json.load(f)


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_numbers_as_before(name, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    before = _recorded()[name]
    after = json.loads(json.dumps(CASES[name](str(tmp_path))))
    diffs = compare(before, after)
    assert not diffs, f"{name}: {len(diffs)} numbers differ from the recording:\n" + "\n".join(diffs[:30])
    assert before["rc"] == 0 if "rc" in before else True


def test_compare_catches_a_change():
    rec = {"rc": 0, "run": {"results": {"test_acc": 0.5}}, "rows": {"W": {"errors": [1e-10], "ok": True}}}
    assert compare(rec, rec) == []
    assert compare(rec, {**rec, "run": {"results": {"test_acc": 0.5000006}}})
    assert compare(rec, {**rec, "rows": {"W": {"errors": [0.3], "ok": True}}})
    assert compare(rec, {**rec, "rows": {"W": {"errors": [5e-9], "ok": False}}})
    assert not compare(rec, {**rec, "rows": {"W": {"errors": [5e-9], "ok": True}}})


if __name__ == "__main__":
    if "--record" not in sys.argv:
        sys.exit("usage: PYTHONPATH=src python tests/commands/test_before_after.py --record [CASE ...]")
    os.environ.setdefault("MPLBACKEND", "Agg")
    names = [a for a in sys.argv[1:] if a != "--record"] or sorted(CASES)
    data = _recorded() if os.path.exists(FIXTURE) else {}
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            data[name] = CASES[name](tmp)
        print(name, "recorded", file=sys.stderr)
    with open(FIXTURE, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
