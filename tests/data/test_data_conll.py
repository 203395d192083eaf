"""CoNLL reader, tag schemes, conlleval scoring. All text is made up for the tests."""

import gzip

import pytest

from chainrule.data.conll import (
    ConllFormatError,
    Report,
    Sentence,
    entities,
    evaluate,
    format_report,
    iob1_to_iob2,
    iob2_to_iob1,
    iobes_to_iob2,
    parse_conll,
    read_conll,
    split_tag,
    to_iobes,
)

# Made-up sentences in the 4-column CoNLL-2003 layout (IOB1 tags).
SAMPLE = """\
-DOCSTART- -X- O O

Alice NNP B-NP I-PER
Moreau NNP I-NP I-PER
visited VBD B-VP O
Lyon NNP B-NP I-LOC
. . O O

Bob NNP B-NP I-PER
smiled VBD B-VP O
-DOCSTART- -X- O O

Zorbex NNP B-NP I-ORG
Quantix NNP B-NP B-ORG
merged VBD B-VP O



Then RB B-ADVP O
rain NN B-NP O
. . O O

-DOCSTART- -X- -X- O
"""


def test_read_conll_docstart_anywhere_and_fields(tmp_path):
    p = tmp_path / "sample.txt"
    p.write_text(SAMPLE, encoding="utf-8")
    sents = read_conll(p)
    assert [s.tokens for s in sents] == [
        ["Alice", "Moreau", "visited", "Lyon", "."],
        ["Bob", "smiled"],
        ["Zorbex", "Quantix", "merged"],
        ["Then", "rain", "."],
    ]
    s0 = sents[0]
    assert s0.pos == ["NNP", "NNP", "VBD", "NNP", "."]
    assert s0.chunks == ["B-NP", "I-NP", "B-VP", "B-NP", "O"]
    assert s0.tags == ["I-PER", "I-PER", "O", "I-LOC", "O"]
    assert sents[2].tags == ["I-ORG", "B-ORG", "O"]
    assert [s.line for s in sents] == [3, 9, 13, 19]
    assert len(s0) == 5
    assert s0 == Sentence(s0.tokens, s0.pos, s0.chunks, s0.tags)  # line is not compared


def test_no_final_newline_and_docstart_at_end(tmp_path):
    # like the shared eng.testa: DOCSTART moved to the end, and no final newline
    text = "Kiri NNP B-NP I-PER\nran VBD B-VP O\n\nOla NNP B-NP I-PER\n\n-DOCSTART- -X- O O"
    p = tmp_path / "a.txt"
    p.write_text(text, encoding="utf-8")
    assert [s.tokens for s in read_conll(p)] == [["Kiri", "ran"], ["Ola"]]
    p.write_text("Kiri NNP B-NP I-PER\nran VBD B-VP O", encoding="utf-8")
    assert [s.tokens for s in read_conll(p)] == [["Kiri", "ran"]]


def test_two_and_three_columns_tabs_crlf_gzip(tmp_path):
    two = "-DOCSTART-\tO\n\nKiri\tPER\nran\tO\n\nOla\tPER\n"
    p = tmp_path / "two.txt"
    p.write_bytes(two.replace("\n", "\r\n").encode())
    sents = read_conll(p)
    assert [s.tags for s in sents] == [["PER", "O"], ["PER"]]
    assert sents[0].pos is None and sents[0].chunks is None

    three = parse_conll(["Kiri NNP B-PER", "ran VBD O"])
    assert three[0].pos == ["NNP", "VBD"] and three[0].chunks is None and three[0].tags == ["B-PER", "O"]

    gz = tmp_path / "s.txt.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as fh:
        fh.write(SAMPLE)
    assert len(read_conll(gz)) == 4
    assert read_conll(tmp_path / "two.txt")[1].tokens == ["Ola"]
    (tmp_path / "empty.txt").write_text("")
    assert read_conll(tmp_path / "empty.txt") == []


def test_malformed_line_names_file_and_line(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text("-DOCSTART- -X- O O\n\nKiri NNP B-NP I-PER\nran VBD O\n", encoding="utf-8")
    with pytest.raises(ConllFormatError) as info:
        read_conll(p)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.line == 4 and err.source == str(p)
    assert str(err).startswith(f"{p}:4: expected 4 columns like line 3, found 3")

    p.write_text("Kiri\n", encoding="utf-8")
    with pytest.raises(ConllFormatError, match=r":1: expected at least 2 columns"):
        read_conll(p)
    p.write_bytes(b"Kiri NNP B-NP I-PER\nbad\xff NN O O\n")
    with pytest.raises(ConllFormatError, match=r":2:4: not valid utf-8"):
        read_conll(p)


# --- tags and entities -----------------------------------------------------------------------


def test_split_tag():
    assert split_tag("O") == ("O", "")
    assert split_tag("B-PER") == ("B", "PER")
    assert split_tag("I-MISC") == ("I", "MISC")
    assert split_tag("L-LOC") == ("E", "LOC") and split_tag("U-LOC") == ("S", "LOC")
    assert split_tag("PER") == ("I", "PER")


def test_entities_iob1():
    tags = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC", "I-ORG", "O", "I-MISC"]
    assert entities(tags) == [("PER", 0, 2), ("LOC", 3, 4), ("LOC", 4, 6), ("ORG", 6, 7), ("MISC", 8, 9)]


def test_entities_iob2():
    tags = ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "I-LOC", "I-LOC"]
    assert entities(tags) == [("PER", 0, 2), ("PER", 2, 3), ("LOC", 4, 7)]
    # conlleval: I- after O or after another type starts a chunk, even in IOB2 data
    assert entities(["O", "I-PER", "B-LOC", "I-PER"]) == [("PER", 1, 2), ("LOC", 2, 3), ("PER", 3, 4)]


def test_entities_iobes_bilou_and_bare_tags():
    assert entities(["S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC", "O"]) == [
        ("PER", 0, 1), ("LOC", 1, 4), ("LOC", 4, 5)
    ]
    assert entities(["U-PER", "B-LOC", "L-LOC"]) == [("PER", 0, 1), ("LOC", 1, 3)]
    assert entities(["E-PER", "I-PER"]) == [("PER", 0, 1), ("PER", 1, 2)]
    assert entities(["PER", "PER", "O", "LOC", "ORG"]) == [("PER", 0, 2), ("LOC", 3, 4), ("ORG", 4, 5)]
    assert entities([]) == [] and entities(["O", "O"]) == []


def test_scheme_conversions():
    iob1 = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG", "I-ORG"]
    iob2 = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "B-ORG", "I-ORG"]
    iobes = ["B-PER", "E-PER", "O", "S-LOC", "S-LOC", "B-ORG", "E-ORG"]
    assert iob1_to_iob2(iob1) == iob2
    assert iob2_to_iob1(iob2) == iob1
    assert to_iobes(iob1) == iobes == to_iobes(iob2)
    assert iobes_to_iob2(iobes) == iob2
    assert iob1_to_iob2(iob2) == iob2  # idempotent
    for tags in (iob1, iob2, iobes):
        assert entities(tags) == entities(iob1)
    long = ["B-MISC", "I-MISC", "I-MISC"]
    assert to_iobes(long) == ["B-MISC", "I-MISC", "E-MISC"]


# --- scoring ---------------------------------------------------------------------------------


def _hand_example():
    gold = [
        ["I-PER", "I-PER", "O", "I-LOC", "O"],  # PER(0,2) LOC(3,4)
        ["I-ORG", "B-ORG", "O", "I-MISC"],  # ORG(0,1) ORG(1,2) MISC(3,4)
        ["O", "O", "O"],
    ]
    pred = [
        ["I-PER", "I-PER", "O", "I-ORG", "O"],  # PER ok; ORG(3,4) wrong type
        ["I-ORG", "I-ORG", "O", "I-MISC"],  # ORG(0,2) wrong span; MISC ok
        ["I-LOC", "O", "O"],  # LOC(0,1) spurious
    ]
    return gold, pred


def test_evaluate_hand_computed():
    gold, pred = _hand_example()
    r = evaluate(gold, pred)
    assert isinstance(r, Report)
    # gold: PER 1, LOC 1, ORG 2, MISC 1 = 5 ; pred: PER 1, ORG 2, MISC 1, LOC 1 = 5 ; correct: PER, MISC = 2
    assert (r.overall.gold, r.overall.predicted, r.overall.correct) == (5, 5, 2)
    assert r.precision == pytest.approx(0.4) and r.recall == pytest.approx(0.4) and r.f1 == pytest.approx(0.4)
    per = {t: (s.gold, s.predicted, s.correct) for t, s in r.per_type.items()}
    assert per == {"LOC": (1, 1, 0), "MISC": (1, 1, 1), "ORG": (2, 2, 0), "PER": (1, 1, 1)}
    assert list(r.per_type) == ["LOC", "MISC", "ORG", "PER"]
    assert r.per_type["PER"].f1 == 1.0 and r.per_type["ORG"].f1 == 0.0
    # tokens: 12, differing: sentence 1 token 3, sentence 2 token 1, sentence 3 token 0 -> 9/12
    assert (r.tokens, r.correct_tokens, r.sentences) == (12, 9, 3)
    assert r.accuracy == pytest.approx(0.75)


def test_evaluate_precision_recall_differ():
    gold = [["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG"]]
    pred = [["B-PER", "I-PER", "O", "O", "O", "O"]]
    r = evaluate(gold, pred)
    assert r.precision == 1.0 and r.recall == pytest.approx(1 / 3) and r.f1 == pytest.approx(0.5)
    assert r.per_type["LOC"].precision == 0.0 and r.per_type["LOC"].recall == 0.0  # 0/0 -> 0
    empty = evaluate([["O"]], [["O"]])
    assert empty.f1 == 0.0 and empty.accuracy == 1.0


def test_evaluate_accepts_sentences_and_checks_lengths():
    s = Sentence(["a", "b"], None, None, ["I-PER", "O"])
    assert evaluate([s], [["I-PER", "O"]]).f1 == 1.0
    with pytest.raises(ValueError, match="2 gold sentences but 1 predicted"):
        evaluate([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="sentence 1 has 2 gold tags but 1 predicted"):
        evaluate([["O"], ["O", "O"]], [["O"], ["O"]])
    with pytest.raises(TypeError, match="string"):
        evaluate(["O"], ["O"])


def test_format_report_table():
    gold, pred = _hand_example()
    text = format_report(evaluate(gold, pred))
    lines = text.splitlines()
    assert lines[0] == "processed 12 tokens in 3 sentences with 5 entities; found: 5 entities; correct: 2."
    assert lines[1].split() == ["type", "precision", "recall", "f1", "gold", "pred", "correct"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:] if line and line[0].isalpha() and ":" not in line}
    assert rows["PER"] == ["100.00", "100.00", "100.00", "1", "1", "1"]
    assert rows["ORG"] == ["0.00", "0.00", "0.00", "2", "2", "0"]
    assert rows["overall"] == ["40.00", "40.00", "40.00", "5", "5", "2"]
    assert lines[-1] == "token accuracy: 75.00%"
    d = evaluate(gold, pred).to_dict()
    assert d["overall"]["f1"] == pytest.approx(0.4) and d["per_type"]["MISC"]["correct"] == 1
