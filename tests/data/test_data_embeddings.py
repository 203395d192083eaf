"""Vocabularies, GloVe-format loading, embedding matrices, capitalisation features."""

import gzip
import json

import numpy as np
import pytest

from chainrule.data.embeddings import (
    CAPITALIZATION_NAMES,
    PAD,
    UNK,
    GloveFormatError,
    Vocab,
    build_embedding_matrix,
    capitalization_feature,
    capitalization_features,
    load_glove,
    lookup_forms,
    normalize_word,
)

GLOVE = """\
the 0.1 0.2 -0.3
, 1 -2 3.5e-05
paris -0.5 0.25 1e3
1999 0.0 1.5 -1.5
0000 9 9 9
cat 0.125 -0.125 0.5
"""


def _write(tmp_path, text, name="vectors.txt"):
    p = tmp_path / name
    if name.endswith(".gz"):
        p.write_bytes(gzip.compress(text.encode("utf-8")))
    else:
        p.write_bytes(text.encode("utf-8"))
    return p


# --- words -----------------------------------------------------------------------------------


def test_normalize_word_and_lookup_forms():
    assert normalize_word("Paris") == "paris"
    assert normalize_word("In-1999,2.5") == "in-0000,0.0"
    assert normalize_word("ABC12", lower=False) == "ABC00"
    assert normalize_word("ABC12", numbers=False) == "abc12"
    assert lookup_forms("the") == ["the"]
    assert lookup_forms("Paris") == ["Paris", "paris"]
    assert lookup_forms("1999") == ["1999", "0000"]
    assert lookup_forms("Route66") == ["Route66", "route66", "route00"]


def test_vocab_basics_and_json():
    v = Vocab.from_sentences([["the", "cat", "sat"], ["the", "dog"], ["a", "cat"]], min_count=1)
    assert v.words[:2] == [PAD, UNK] and v.pad_index == 0 and v.unk_index == 1
    # most frequent first, ties in order of first appearance
    assert v.words[2:] == ["the", "cat", "sat", "dog", "a"]
    assert len(v) == 7 and "cat" in v and "zebra" not in v and 3 not in v
    assert v.index("cat") == 3 and v.index("zebra") == 1 and v.word(3) == "cat" and v[2] == "the"
    assert v.indices(["the", "zebra", "a"]).tolist() == [2, 1, 6]
    assert v.indices([]).dtype == np.int64
    w = Vocab.from_json(v.to_json())
    assert w == v and w is not v and list(w) == v.words
    assert json.loads(v.to_json())["words"][0] == PAD

    v2 = Vocab.from_sentences([["the", "cat"], ["the", "dog"]], min_count=2)
    assert v2.words == [PAD, UNK, "the"]
    assert Vocab.from_sentences([["a", "b", "c"]], max_size=2).words == [PAD, UNK, "a", "b"]


def test_vocab_normalisation():
    v = Vocab.from_sentences([["The", "Year", "1999"], ["the", "2001"]], lower=True, numbers=True)
    assert v.words[2:] == ["the", "0000", "year"]
    assert "THE" in v and v.index("1850") == v.index("0000") and v.index("YEAR") == 4
    assert Vocab.from_json(v.to_json()).index("1234") == 3


def test_vocab_errors():
    with pytest.raises(ValueError, match="min_count"):
        Vocab.from_sentences([["a"]], min_count=0)
    with pytest.raises(TypeError, match="split it first"):
        Vocab.from_sentences(["a sentence"])
    with pytest.raises(TypeError, match="strings"):
        Vocab(["a", 3])
    with pytest.raises(ValueError, match="not a vocabulary"):
        Vocab.from_json("[1, 2]")
    with pytest.raises(ValueError, match="first two words"):
        Vocab.from_json(json.dumps({"words": ["a", "b"]}))
    with pytest.raises(ValueError, match="duplicates"):
        Vocab.from_json(json.dumps({"words": [PAD, UNK, "a", "a"]}))


# --- GloVe -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vectors.txt", "vectors.txt.gz"])
def test_load_glove_plain_and_gz(tmp_path, name):
    p = _write(tmp_path, GLOVE, name)
    words, m = load_glove(p)
    assert words == ["the", ",", "paris", "1999", "0000", "cat"]
    assert m.dtype == np.float32 and m.shape == (6, 3)
    np.testing.assert_array_equal(m[0], np.array([0.1, 0.2, -0.3], dtype=np.float32))
    np.testing.assert_array_equal(m[1], np.array([1, -2, 3.5e-05], dtype=np.float32))
    assert m[2, 2] == 1000.0


def test_load_glove_restricted_to_vocab(tmp_path):
    p = _write(tmp_path, GLOVE)
    v = Vocab(["Paris", "cat", "2001", "zebra"])
    words, m = load_glove(p, vocab=v)
    # "Paris" -> "paris", "2001" -> "0000" (digit fallback); "the", ",", "1999" not wanted
    assert words == ["paris", "0000", "cat"]
    np.testing.assert_array_equal(m[1], [9, 9, 9])
    words2, _ = load_glove(p, vocab=["the", "1999"])
    assert words2 == ["the", "1999", "0000"]  # "0000": the digit fallback of "1999"
    words3, m3 = load_glove(p, vocab=["nothing"])
    assert words3 == [] and m3.shape == (0, 3)


def test_load_glove_quirks(tmp_path):
    # word2vec-style header, CRLF, trailing spaces, a blank line, a duplicate (first wins)
    text = "3 2\r\nthe 1 2 \r\n\r\ncat 3 4\r\nthe 5 6\r\n"
    words, m = load_glove(_write(tmp_path, text))
    assert words == ["the", "cat"] and m.tolist() == [[1, 2], [3, 4]]
    words, m = load_glove(_write(tmp_path, "é 0.5\n", "u.txt"))
    assert words == ["é"] and m.shape == (1, 1)


def test_load_glove_malformed_line(tmp_path):
    p = _write(tmp_path, "the 0.1 0.2 0.3\ncat 0.1 0.2\ndog 1 2 3\n")
    with pytest.raises(GloveFormatError) as info:
        load_glove(p)
    err = info.value
    assert isinstance(err, ValueError) and err.line == 2
    assert str(err).startswith(f"{p}:2: expected 3 values after the word 'cat', found 2")
    # a wrong line outside the wanted words is not even looked at
    assert load_glove(p, vocab=["dog"])[0] == ["dog"]
    # explicit dim
    with pytest.raises(GloveFormatError, match=r":1: expected 4 values after the word 'the', found 3"):
        load_glove(p, dim=4)


def test_load_glove_bad_number(tmp_path):
    p = _write(tmp_path, "the 0.1 0.2\ncat 0.1 0.2\ndog 1 x7\n")
    with pytest.raises(GloveFormatError, match=r":3: value 2 of 2 is not a finite number: 'x7'"):
        load_glove(p)
    p = _write(tmp_path, "the 0.1 nan\n", "nan.txt")
    with pytest.raises(GloveFormatError, match=r":1: value 2 of 2 is not a finite number: 'nan'"):
        load_glove(p)
    with pytest.raises(GloveFormatError, match="no word vectors"):
        load_glove(_write(tmp_path, "\n\n", "empty.txt"))


# --- embedding matrix ------------------------------------------------------------------------


def test_build_embedding_matrix(tmp_path):
    gw, gm = load_glove(_write(tmp_path, GLOVE))
    v = Vocab(["the", "Paris", "2001", "zebra", "1999"])
    m, found = build_embedding_matrix(v, gw, gm, seed=0)
    assert m.dtype == np.float32 and m.shape == (7, 3)
    assert found == 4  # the, Paris->paris, 2001->0000, 1999 exact; not zebra
    assert np.all(m[0] == 0)  # <pad>
    np.testing.assert_array_equal(m[v.index("the")], gm[gw.index("the")])
    np.testing.assert_array_equal(m[v.index("Paris")], gm[gw.index("paris")])
    np.testing.assert_array_equal(m[v.index("2001")], gm[gw.index("0000")])
    np.testing.assert_array_equal(m[v.index("1999")], gm[gw.index("1999")])  # exact form wins
    scale = np.sqrt(3) * gm.std()
    for i in (v.unk_index, v.index("zebra")):
        assert np.all(np.abs(m[i]) <= scale) and np.any(m[i] != 0)
    m2, _ = build_embedding_matrix(v, gw, gm, seed=0)
    np.testing.assert_array_equal(m, m2)
    m3, _ = build_embedding_matrix(v, gw, gm, scale=0.01, seed=1)
    assert np.all(np.abs(m3[1]) <= 0.01)
    m4, found4 = build_embedding_matrix(v, [], np.zeros((0, 3)))
    assert found4 == 0 and np.all(np.abs(m4[1:]) <= np.sqrt(3 / 3)) and np.all(m4[0] == 0)
    with pytest.raises(ValueError, match="expected \\(2, dim\\)"):
        build_embedding_matrix(v, ["a", "b"], np.zeros((3, 3)))


# --- capitalisation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token, feature",
    [
        ("the", 0), ("don't", 0), ("3rd", 0), ("e-mail", 0),
        ("NATO", 1), ("U.S.", 1), ("I", 1), ("A4", 1),
        ("Paris", 2), ("Mr.", 2), ("Ab", 2), ("O-", 1),
        ("iPhone", 3), ("McDonald", 3), ("O'Neil", 3), ("eBay", 3),
        ("1999", 4), (",", 4), ("--", 4), ("", 4),
        ("Élan", 2), ("ÉLAN", 1), ("élan", 0),
    ],
)
def test_capitalization_feature_table(token, feature):
    assert capitalization_feature(token) == feature


def test_capitalization_features_array():
    out = capitalization_features(["the", "NATO", "Paris", "iPhone", "1999"])
    assert out.dtype == np.int64 and out.tolist() == [0, 1, 2, 3, 4]
    assert len(CAPITALIZATION_NAMES) == 5
