"""CoNLL-style named-entity data: a reader, tag-scheme conversions and conlleval scoring.

File format (CoNLL-2003): one token per line, whitespace-separated columns, the token first and
the tag last; a blank line ends a sentence; ``-DOCSTART-`` lines mark document boundaries::

    Alice NNP B-NP I-PER
    visited VBD B-VP O
    Paris NNP B-NP I-LOC
    . . O O

Accepted column layouts (fixed per file by its first token line):

======  =====================================  =========================================
cols    layout                                  Sentence fields filled
======  =====================================  =========================================
2       ``token tag``  (e.g. CS224d's files)    tokens, tags (pos, chunks are ``None``)
3       ``token POS tag``                       tokens, pos, tags
4+      ``token ... POS chunk tag``             tokens, pos (col -3), chunks (col -2), tags
======  =====================================  =========================================

Tags are scored as entities (chunks) with the rules of the CoNLL shared tasks' ``conlleval``
script: ``B-X`` always starts an entity; ``I-X`` continues the entity before it only if that one
has type ``X`` (so both IOB1 and IOB2 read correctly); ``E-``/``S-`` (IOBES) and ``L-``/``U-``
(BILOU) are understood too. A bare tag without a prefix (``PER``, as in CS224d's collapsed data)
reads as ``I-PER``, so a run of equal bare tags is one entity.

Example, with made-up sentences:

>>> tags = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC"]
>>> entities(tags)                          # (type, start, end), end exclusive
[('PER', 0, 2), ('LOC', 3, 4), ('LOC', 4, 5)]
>>> iob1_to_iob2(tags)
['B-PER', 'I-PER', 'O', 'B-LOC', 'B-LOC']
>>> r = evaluate([tags], [["I-PER", "I-PER", "O", "I-LOC", "I-LOC"]])
>>> round(r.overall.precision, 3), round(r.overall.recall, 3), round(r.overall.f1, 3)
(0.5, 0.333, 0.4)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from ._io import SourceFormatError

__all__ = [
    "Sentence",
    "ConllFormatError",
    "read_conll",
    "parse_conll",
    "split_tag",
    "entities",
    "iob1_to_iob2",
    "iob2_to_iob1",
    "to_iobes",
    "iobes_to_iob2",
    "Scores",
    "Report",
    "evaluate",
    "format_report",
]

DOCSTART = "-DOCSTART-"


class ConllFormatError(SourceFormatError):
    """A malformed CoNLL file. ``str(err)`` starts with ``file:line:`` (``file:line:column:`` when
    the column is known)."""


@dataclass
class Sentence:
    """One sentence: parallel lists of tokens and their annotations.

    ``pos`` and ``chunks`` are ``None`` when the file has no such columns. ``line`` is the
    1-based line number of the sentence's first token in its file (0 if built by hand).
    """

    tokens: list[str]
    pos: list[str] | None
    chunks: list[str] | None
    tags: list[str]
    line: int = field(default=0, compare=False)

    def __len__(self) -> int:
        return len(self.tokens)


def read_conll(path: str | os.PathLike, *, encoding: str = "utf-8") -> list[Sentence]:
    """Read a CoNLL file (plain or ``.gz``) into sentences.

    Blank lines separate sentences (several in a row are one separator); ``-DOCSTART-`` lines are
    skipped wherever they are and also end the sentence before them; a last sentence without a
    trailing blank line or final newline is kept. ``\\r\\n`` line ends are accepted.

    Raises:
        ConllFormatError: ``file:line:`` and the problem, for a line with a column count other
            than that of the file's first token line, or with fewer than 2 columns.
    """
    from ._io import decode_text, read_file_bytes
    name = os.fspath(path)

    def error(reason, line=None, column=None):
        return ConllFormatError(reason, source=name, line=line, column=column)
    text = decode_text(read_file_bytes(name, error, what="CoNLL file"), error, encoding)
    return parse_conll(text.split("\n"), source=name)


def parse_conll(lines: Iterable[str], *, source: str = "<lines>") -> list[Sentence]:
    """Parse CoNLL lines (an iterable of strings) into sentences; see :func:`read_conll`."""
    sentences: list[Sentence] = []
    ncols = 0
    first_line = 0
    cols: list[list[str]] = []  # current sentence, one list per line
    start = 0

    def flush() -> None:
        if not cols:
            return
        tokens = [c[0] for c in cols]
        tags = [c[-1] for c in cols]
        if ncols == 2:
            pos = chunks = None
        elif ncols == 3:
            pos, chunks = [c[1] for c in cols], None
        else:
            pos, chunks = [c[-3] for c in cols], [c[-2] for c in cols]
        sentences.append(Sentence(tokens, pos, chunks, tags, start))
        cols.clear()

    for lineno, text in enumerate(lines, 1):
        fields = text.split()
        if not fields:
            flush()
            continue
        if fields[0] == DOCSTART:
            flush()
            continue
        n = len(fields)
        if ncols == 0:
            if n < 2:
                raise ConllFormatError(
                    f"expected at least 2 columns (token and tag), found {n}: {text.strip()!r}",
                    source=source, line=lineno,
                )
            ncols, first_line = n, lineno
        elif n != ncols:
            raise ConllFormatError(
                f"expected {ncols} columns like line {first_line}, found {n}: {text.strip()!r}",
                source=source, line=lineno,
            )
        tag = fields[-1]
        bad = _bad_tag(tag)
        if bad:
            raise ConllFormatError(f"tag {tag!r}: {bad}", source=source, line=lineno, column=text.rfind(tag) + 1)
        if not cols:
            start = lineno
        cols.append(fields)
    flush()
    return sentences


_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9_.]*\Z")
_BARE = re.compile(r"[A-Z][A-Z0-9_]*\Z")


def _bad_tag(tag: str) -> str | None:
    """Why ``tag`` is not a named-entity tag (None if it is one): ``O``, ``P-TYPE`` with ``P`` one
    of ``B I E S L U`` and a type of letters, digits, ``_``, ``.`` starting with a letter, or a bare
    upper-case type (``PER``, CS224d's collapsed data).  ``b-per``, ``B-``, ``42`` are refused: they
    would silently become entity types."""
    if tag == "O":
        return None
    if "-" in tag:
        prefix, _, type_ = tag.partition("-")
        if prefix not in ("B", "I", "E", "S", "L", "U"):
            return "the prefix before '-' must be one of B I E S L U (upper case)"
        if not _TYPE.match(type_):
            return "the entity type after the prefix must be a name (letters, digits, '_', '.', starting with a letter)"
        return None
    if not _BARE.match(tag):
        return "not O, B-TYPE/I-TYPE/... or a bare upper-case entity type"
    return None


# ---------------------------------------------------------------------------------------------
# Tag schemes
# ---------------------------------------------------------------------------------------------

_PREFIX_ALIASES = {"L": "E", "U": "S"}  # BILOU -> IOBES


def split_tag(tag: str) -> tuple[str, str]:
    """``'B-PER'`` -> ``('B', 'PER')``; ``'O'`` -> ``('O', '')``; bare ``'PER'`` -> ``('I', 'PER')``.

    The prefix is one of ``O B I E S`` (BILOU's ``L``/``U`` map to ``E``/``S``).
    """
    if tag == "O":
        return "O", ""
    if len(tag) > 2 and tag[1] == "-" and tag[0] in "BIESLU":
        prefix = tag[0]
        return _PREFIX_ALIASES.get(prefix, prefix), tag[2:]
    return "I", tag


def _end_of_chunk(prev_prefix: str, prefix: str, prev_type: str, type_: str) -> bool:
    """conlleval's endOfChunk: does the entity open before this token end before it?"""
    if prev_prefix in ("E", "S"):
        return True
    if prev_prefix in ("B", "I") and prefix in ("B", "S", "O"):
        return True
    return prev_prefix != "O" and prev_type != type_


def _start_of_chunk(prev_prefix: str, prefix: str, prev_type: str, type_: str) -> bool:
    """conlleval's startOfChunk: does an entity start at this token?"""
    if prefix in ("B", "S"):
        return True
    if prefix in ("I", "E") and prev_prefix in ("E", "S", "O"):
        return True
    return prefix != "O" and prev_type != type_


def entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The entities of a tag sequence as ``(type, start, end)``, ``end`` exclusive.

    conlleval's chunk rules: ``B-``/``S-`` always start an entity; ``I-``/``E-`` start one after
    ``O``, after ``E-``/``S-``, or after a different type, and otherwise continue it. Works for
    IOB1, IOB2, IOBES and BILOU input alike.

    >>> entities(["B-PER", "I-PER", "I-LOC", "O", "I-ORG"])
    [('PER', 0, 2), ('LOC', 2, 3), ('ORG', 4, 5)]
    """
    out: list[tuple[str, int, int]] = []
    prev_prefix, prev_type = "O", ""
    start = -1
    for i, tag in enumerate(tags):
        prefix, type_ = split_tag(tag)
        if start >= 0 and (
            _end_of_chunk(prev_prefix, prefix, prev_type, type_)
            or _start_of_chunk(prev_prefix, prefix, prev_type, type_)
        ):
            out.append((prev_type, start, i))
            start = -1
        if start < 0 and prefix != "O" and _start_of_chunk(prev_prefix, prefix, prev_type, type_):
            start = i
        prev_prefix, prev_type = prefix, type_
    if start >= 0:
        out.append((prev_type, start, len(tags)))
    return out


def _from_entities(n: int, spans: list[tuple[str, int, int]], begin_rule) -> list[str]:
    tags = ["O"] * n
    prev_end, prev_type = -1, None
    for type_, s, e in spans:
        first = "B" if begin_rule(s == prev_end and type_ == prev_type) else "I"
        tags[s] = f"{first}-{type_}"
        for k in range(s + 1, e):
            tags[k] = f"I-{type_}"
        prev_end, prev_type = e, type_
    return tags


def iob1_to_iob2(tags: Sequence[str]) -> list[str]:
    """IOB1 (``B-`` only between touching entities of one type) -> IOB2 (every entity starts ``B-``).

    Reads any scheme :func:`entities` reads, so it also normalises IOBES/BILOU to IOB2.
    """
    return _from_entities(len(tags), entities(tags), lambda touching: True)


def iob2_to_iob1(tags: Sequence[str]) -> list[str]:
    """IOB2 -> IOB1: an entity starts with ``I-`` unless it directly follows one of the same type."""
    return _from_entities(len(tags), entities(tags), lambda touching: touching)


def to_iobes(tags: Sequence[str]) -> list[str]:
    """Any IOB scheme -> IOBES (``S-`` single-token entity, ``B-``/``I-``/``E-`` longer ones)."""
    out = ["O"] * len(tags)
    for type_, s, e in entities(tags):
        if e - s == 1:
            out[s] = f"S-{type_}"
        else:
            out[s] = f"B-{type_}"
            for k in range(s + 1, e - 1):
                out[k] = f"I-{type_}"
            out[e - 1] = f"E-{type_}"
    return out


def iobes_to_iob2(tags: Sequence[str]) -> list[str]:
    """IOBES (or BILOU) -> IOB2. Same as :func:`iob1_to_iob2`, named for readability."""
    return iob1_to_iob2(tags)


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------


@dataclass
class Scores:
    """Entity counts and scores of one type (or of all types: ``Report.overall``)."""

    gold: int = 0  # entities in the gold tags
    predicted: int = 0  # entities in the predicted tags
    correct: int = 0  # predicted entities with exactly a gold entity's span and type

    @property
    def precision(self) -> float:
        return self.correct / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.correct / self.gold if self.gold else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass
class Report:
    """Result of :func:`evaluate`. Scores are fractions in [0, 1]."""

    per_type: dict[str, Scores]
    overall: Scores
    tokens: int
    correct_tokens: int
    sentences: int

    @property
    def accuracy(self) -> float:
        """Token accuracy: share of tokens whose predicted tag string equals the gold one."""
        return self.correct_tokens / self.tokens if self.tokens else 0.0

    @property
    def precision(self) -> float:
        return self.overall.precision

    @property
    def recall(self) -> float:
        return self.overall.recall

    @property
    def f1(self) -> float:
        return self.overall.f1

    def to_dict(self) -> dict:
        """Plain numbers, for JSON metric logs."""

        def row(s: Scores) -> dict:
            return {"precision": s.precision, "recall": s.recall, "f1": s.f1,
                    "gold": s.gold, "predicted": s.predicted, "correct": s.correct}

        return {
            "accuracy": self.accuracy, "tokens": self.tokens, "sentences": self.sentences,
            "overall": row(self.overall),
            "per_type": {t: row(s) for t, s in self.per_type.items()},
        }


def _tag_list(x, what: str, i: int) -> Sequence[str]:
    if isinstance(x, Sentence):
        return x.tags
    if isinstance(x, str):
        raise TypeError(f"evaluate: {what} sentence {i} is a string; expected a list of tags")
    return x


def evaluate(
    gold: Sequence[Sequence[str]] | Sequence[Sentence], pred: Sequence[Sequence[str]] | Sequence[Sentence]
) -> Report:
    """Entity-level precision, recall and F1 (per type and overall) and token accuracy.

    conlleval's definitions: entities are read from each sentence's tags with :func:`entities`;
    a predicted entity is correct only if a gold entity has exactly its start, end and type.
    precision = correct / predicted, recall = correct / gold, F1 = 2PR / (P + R) (0 when a
    denominator is 0). Token accuracy compares the tag strings, so give gold and predictions in
    the same scheme (convert with :func:`iob1_to_iob2` first if needed).

    Args:
        gold: per sentence, the gold tags (lists of strings or :class:`Sentence` objects).
        pred: per sentence, the predicted tags, same lengths.

    Raises:
        ValueError: the numbers of sentences, or the lengths of a sentence, differ.
    """
    if len(gold) != len(pred):
        raise ValueError(f"evaluate: {len(gold)} gold sentences but {len(pred)} predicted")
    per_type: dict[str, Scores] = {}
    overall = Scores()
    tokens = correct_tokens = 0
    for i, (g, p) in enumerate(zip(gold, pred)):
        g, p = _tag_list(g, "gold", i), _tag_list(p, "predicted", i)
        if len(g) != len(p):
            raise ValueError(f"evaluate: sentence {i} has {len(g)} gold tags but {len(p)} predicted")
        tokens += len(g)
        correct_tokens += sum(a == b for a, b in zip(g, p))
        ge, pe = entities(g), entities(p)
        gs = set(ge)
        for t, _, _ in ge:
            per_type.setdefault(t, Scores()).gold += 1
        for ent in pe:
            s = per_type.setdefault(ent[0], Scores())
            s.predicted += 1
            if ent in gs:
                s.correct += 1
        overall.gold += len(ge)
        overall.predicted += len(pe)
        overall.correct += len(gs.intersection(pe))
    return Report(
        per_type=dict(sorted(per_type.items())),
        overall=overall,
        tokens=tokens,
        correct_tokens=correct_tokens,
        sentences=len(gold),
    )


def format_report(report: Report, *, digits: int = 2) -> str:
    """The report as a text table, percentages like conlleval's output.

    ::

        processed 9 tokens in 2 sentences with 3 entities; found: 3 entities; correct: 2.
        type      precision  recall      f1  gold  pred  correct
        LOC          100.00  100.00  100.00     1     1        1
        ...
        overall       66.67   66.67   66.67     3     3        2
        token accuracy: 88.89%
    """
    o = report.overall
    lines = [
        f"processed {report.tokens} tokens in {report.sentences} sentences with {o.gold} entities; "
        f"found: {o.predicted} entities; correct: {o.correct}."
    ]
    names = list(report.per_type) + ["overall"]
    w = max(7, *(len(n) for n in names))
    num = 6 + digits  # width of "100.00"-style fields, at least the header's
    head = (
        f"{'type':<{w}}  {'precision':>{max(num, 9)}}  {'recall':>{num}}  {'f1':>{num}}  "
        f"{'gold':>5}  {'pred':>5}  {'correct':>7}"
    )
    lines.append(head)

    def row(name: str, s: Scores) -> str:
        return (
            f"{name:<{w}}  {100 * s.precision:>{max(num, 9)}.{digits}f}  {100 * s.recall:>{num}.{digits}f}  "
            f"{100 * s.f1:>{num}.{digits}f}  {s.gold:>5}  {s.predicted:>5}  {s.correct:>7}"
        )

    for name, s in report.per_type.items():
        lines.append(row(name, s))
    lines.append("-" * len(head))
    lines.append(row("overall", o))
    lines.append(f"token accuracy: {100 * report.accuracy:.{digits}f}%")
    return "\n".join(lines)
