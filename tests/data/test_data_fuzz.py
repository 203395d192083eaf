"""Property tests of every reader (issue 14): malformed input gives the reader's error, naming the file
and the place -- never another exception, a hang or a silent success.

Readers: PTB trees, CoNLL, GloVe, idx, DAG spec JSON, checkpoint metadata.  Each is fed

* arbitrary bytes (hypothesis): it either parses (the bytes happened to be valid) or raises its own
  error class (a ValueError) whose message names the file;
* targeted damage that must be refused: a truncated ``.gz``, an invalid UTF-8 byte at a random
  place (the error names that line and column), a directory or a FIFO given for the file.
"""
import gzip
import json
import os
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainrule.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from chainrule.data.conll import ConllFormatError, read_conll
from chainrule.data.datasets import IdxFormatError, read_idx, write_idx
from chainrule.data.embeddings import GloveFormatError, load_glove
from chainrule.data.trees import TreeParseError, read_trees
from chainrule.nn.dag import DAGSpecError, compile_spec

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

VALID = {
    "trees": b"(3 (2 It) (4 (3 (2 works) (2 well)) (2 .)))\n(1 (1 Bad) (2 .))\n",
    "conll": b"-DOCSTART- -X- O O\n\nAlice NNP B-NP B-PER\nvisited VBD B-VP O\nParis NNP B-NP B-LOC\n\n"
             b"Bob NNP B-NP B-PER\n. . O O\n",
    "glove": b"the 0.1 0.2 0.3\nof -0.5 0.25 1e-3\nparis 1 2 3\n",
    "dag": json.dumps({"nodes": [{"name": "x", "unit": "input"}, {"name": "h", "unit": "sigmoid"},
                                 {"name": "y", "unit": "sigmoid"}],
                       "edges": [{"from": "x", "to": "h", "weight": 0.5}, {"from": "h", "to": "y", "weight": -1}],
                       "outputs": ["y"]}).encode(),
}


def _read(kind, path):
    if kind == "trees":
        return read_trees(path)
    if kind == "conll":
        return read_conll(path)
    if kind == "glove":
        return load_glove(path)
    if kind == "dag":
        return compile_spec(str(path))
    if kind == "idx":
        return read_idx(path)
    if kind == "checkpoint":
        return load_checkpoint(path)
    raise AssertionError(kind)


ERRORS = {"trees": TreeParseError, "conll": ConllFormatError, "glove": GloveFormatError, "dag": DAGSpecError,
          "idx": IdxFormatError, "checkpoint": CheckpointError}


def _outcome(kind, path):
    """Run the reader in a thread with a time limit (a hang fails); returns the exception or None."""
    box = {}

    def run():
        try:
            _read(kind, path)
        except BaseException as e:       # noqa: BLE001 - the test classifies it
            box["e"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), f"{kind} reader hung on {path}"
    return box.get("e")


def _assert_clean(kind, path, e):
    if e is None:
        return
    assert isinstance(e, ERRORS[kind]), f"{kind}: {type(e).__name__}: {e}"
    assert os.fspath(path) in str(e), f"{kind}: the error does not name the file: {e}"


@pytest.mark.parametrize("kind", ["trees", "conll", "glove", "dag", "idx", "checkpoint"])
@SETTINGS
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_give_the_readers_error(tmp_path, kind, data):
    p = tmp_path / f"in.{kind}"
    p.write_bytes(data)
    _assert_clean(kind, p, _outcome(kind, p))


@pytest.mark.parametrize("kind", ["trees", "conll", "glove", "dag"])
@SETTINGS
@given(data=st.data())
def test_mutated_valid_files_parse_or_give_the_readers_error(tmp_path, kind, data):
    raw = bytearray(VALID[kind])
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        i = data.draw(st.integers(0, len(raw) - 1))
        if op == "flip":
            raw[i] = data.draw(st.integers(0, 255))
        elif op == "insert":
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=4))
        elif len(raw) > 1:
            del raw[i]
    p = tmp_path / f"m.{kind}"
    p.write_bytes(bytes(raw))
    _assert_clean(kind, p, _outcome(kind, p))


@pytest.mark.parametrize("kind", ["trees", "conll", "glove", "dag", "idx"])
@SETTINGS
@given(frac=st.floats(0.05, 0.95))
def test_truncated_gz_is_named_never_eoferror(tmp_path, kind, frac):
    payload = VALID.get(kind) or _idx_bytes(tmp_path)
    blob = gzip.compress(payload * 20, mtime=0)
    cut = blob[: max(11, int(len(blob) * frac))]
    p = tmp_path / f"t.{kind}.gz"
    p.write_bytes(cut)
    e = _outcome(kind, p)
    assert e is not None, f"{kind}: a truncated .gz was accepted"
    _assert_clean(kind, p, e)
    assert "gzip" in str(e) or "truncated" in str(e)


def _idx_bytes(tmp_path):
    q = tmp_path / "x.idx"
    write_idx(q, np.arange(24, dtype=np.uint8).reshape(2, 3, 4), compress=False)
    return q.read_bytes()


@pytest.mark.parametrize("kind", ["trees", "conll", "dag"])
@SETTINGS
@given(data=st.data())
def test_invalid_utf8_names_line_and_column(tmp_path, kind, data):
    raw = VALID[kind]
    lines = raw.split(b"\n")
    li = data.draw(st.integers(0, len([x for x in lines if x]) - 1))
    line = lines[li]
    col = data.draw(st.integers(0, len(line)))
    lines[li] = line[:col] + b"\xff" + line[col:]
    p = tmp_path / f"u.{kind}"
    p.write_bytes(b"\n".join(lines))
    e = _outcome(kind, p)
    assert isinstance(e, ERRORS[kind]), repr(e)
    s = str(e)
    assert str(p) in s and "UTF-8" in s.upper().replace("UTF8", "UTF-8")
    assert (f":{li + 1}:{col + 1}:" in s) or (f"line {li + 1}, column {col + 1}" in s), s


@pytest.mark.parametrize("kind", ["trees", "conll", "glove", "dag", "idx", "checkpoint"])
@pytest.mark.parametrize("what", ["directory", "fifo"])
def test_a_directory_or_fifo_for_the_file(tmp_path, kind, what):
    p = tmp_path / f"d.{kind}"
    if what == "directory":
        p.mkdir()
    else:
        os.mkfifo(p)
    e = _outcome(kind, p)
    _assert_clean(kind, p, e)
    assert e is not None and ("directory" in str(e) or "FIFO" in str(e))


def test_bom_is_not_glued_to_the_first_token_or_word(tmp_path):
    p = tmp_path / "bom.conll"
    p.write_bytes(b"\xef\xbb\xbf" + VALID["conll"][len(b"-DOCSTART- -X- O O\n\n"):])
    assert read_conll(p)[0].tokens[0] == "Alice"
    g = tmp_path / "bom.txt"
    g.write_bytes(b"\xef\xbb\xbf" + VALID["glove"])
    assert load_glove(g)[0][0] == "the"
    t = tmp_path / "bom.trees"
    t.write_bytes(b"\xef\xbb\xbf" + VALID["trees"])
    assert len(read_trees(t)) == 2


@pytest.mark.parametrize("tag", ["b-per", "B-", "42", "I-", "X-PER", "B-P ER"[0:3] + "?"])
def test_garbage_tags_are_refused_with_line_and_column(tmp_path, tag):
    p = tmp_path / "g.conll"
    p.write_text(f"Alice NNP B-NP B-PER\nvisited VBD B-VP {tag}\n")
    with pytest.raises(ConllFormatError) as e:
        read_conll(p)
    assert f"{p}:2:18:" in str(e.value) and repr(tag) in str(e.value)


@pytest.mark.parametrize("bad,match", [
    ('"unit": ["sigmoid"]', "'unit' must be a string"),
    ('"weight": NaN', "NaN is not a JSON number"),
    ('"weight": Infinity', "Infinity is not a JSON number"),
    ('"weight": -Infinity', "Infinity is not a JSON number"),
])
def test_dag_spec_wrong_types_and_non_finite_weights(tmp_path, bad, match):
    spec = json.loads(VALID["dag"])
    text = json.dumps(spec)
    if "unit" in bad:
        text = text.replace('"unit": "sigmoid"', bad, 1)
    else:
        text = text.replace('"weight": 0.5', bad, 1)
    p = tmp_path / "s.json"
    p.write_text(text)
    with pytest.raises(DAGSpecError, match=match) as e:
        compile_spec(str(p))
    assert str(p) in str(e.value)


def test_dag_spec_nested_deeply_and_arrow_names(tmp_path):
    p = tmp_path / "deep.json"
    p.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DAGSpecError, match="nested too deeply"):
        compile_spec(str(p))
    spec = json.loads(VALID["dag"])
    spec["nodes"][1]["name"] = "a->b"
    spec["edges"][0]["to"] = spec["edges"][1]["from"] = "a->b"
    with pytest.raises(DAGSpecError, match="contains '->'"):
        compile_spec(spec)
    spec = json.loads(VALID["dag"])
    spec["edges"][0]["weight"] = float("nan")                # a dict given directly, not JSON
    with pytest.raises(DAGSpecError, match="needs one number"):
        compile_spec(spec)


@SETTINGS
@given(meta=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                         lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                         max_leaves=10))
def test_checkpoint_metadata_of_any_shape_is_refused_by_the_trainer_naming_the_file(tmp_path, meta):
    from chainrule.train import check_trainer_meta
    p = tmp_path / "c.safetensors"
    if not isinstance(meta, dict):
        meta = {"epoch": meta}
    save_checkpoint(p, {"w": np.zeros(2, np.float32)}, meta)
    _, got = load_checkpoint(p)
    with pytest.raises(CheckpointError) as e:
        check_trainer_meta(got, str(p))
    assert str(p) in str(e.value)
