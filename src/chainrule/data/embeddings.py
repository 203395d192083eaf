"""Word vocabularies, pre-trained word vectors (GloVe text format), and token features.

The window NER model of the seed document looks up a column of a word-vector matrix ``L`` for
each word of a window. This module builds the pieces: a :class:`Vocab` mapping words to rows,
:func:`load_glove` to read pre-trained vectors, :func:`build_embedding_matrix` to align the two,
and :func:`capitalization_feature`, the case feature of Collobert et al. (2011) that recovers what
lower-casing throws away.

Word normalisation
------------------
:func:`normalize_word` lower-cases and, with ``numbers=True``, maps every digit to ``'0'``
(``"1,250.5"`` -> ``"0,000.0"``; the scheme of Lample et al. 2016), so all numbers of one shape
share a vector. GloVe 6B is lower-cased but keeps numbers as they are (``"1999"`` has its own
vector), so looking a word up tries, in order, :func:`lookup_forms`: the word itself, its lower
case form, then the digit-normalised lower case form.

>>> normalize_word("Paris-1999")
'paris-0000'
>>> lookup_forms("In 1999")
['In 1999', 'in 1999', 'in 0000']
>>> v = Vocab.from_sentences([["the", "cat"], ["the", "dog"]])
>>> len(v), v.index("the"), v.index("zebra") == v.unk_index
(5, 2, True)
>>> [capitalization_feature(w) for w in ["the", "NATO", "Paris", "iPhone", "1999"]]
[0, 1, 2, 3, 4]
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections import Counter
from typing import Iterable, Sequence

from ._io import SourceFormatError

import numpy as np

__all__ = [
    "PAD",
    "UNK",
    "normalize_word",
    "lookup_forms",
    "Vocab",
    "GloveFormatError",
    "load_glove",
    "build_embedding_matrix",
    "capitalization_feature",
    "capitalization_features",
    "CAPITALIZATION_NAMES",
]

PAD = "<pad>"
UNK = "<unk>"

_DIGIT = re.compile(r"[0-9]")


def normalize_word(word: str, lower: bool = True, numbers: bool = True) -> str:
    """Normalise a token: lower-case it (``lower``) and replace every ASCII digit by ``'0'`` (``numbers``).

    >>> normalize_word("CD-ROM 3.5"), normalize_word("CD-ROM 3.5", numbers=False)
    ('cd-rom 0.0', 'cd-rom 3.5')
    """
    if lower:
        word = word.lower()
    if numbers:
        word = _DIGIT.sub("0", word)
    return word


def lookup_forms(word: str) -> list[str]:
    """Forms to try, in order, when looking ``word`` up in pre-trained vectors (duplicates removed):
    the word, its lower-cased form, the lower-cased form with digits replaced by ``'0'``."""
    forms = [word]
    for f in (word.lower(), normalize_word(word)):
        if f not in forms:
            forms.append(f)
    return forms


class Vocab:
    """Word <-> index map with ``'<pad>'`` at index 0 and ``'<unk>'`` at index 1.

    Words are stored as given to the constructor; if the vocabulary was built with
    ``lower``/``numbers`` normalisation (see :meth:`from_sentences`), the same normalisation is
    applied to every word looked up (``index``, ``in``).

    Args:
        words: the words after the two special tokens, in order (duplicates and specials skipped).
        lower, numbers: the normalisation applied to looked-up words (see :func:`normalize_word`).
    """

    pad_index = 0
    unk_index = 1

    def __init__(self, words: Iterable[str] = (), *, lower: bool = False, numbers: bool = False):
        self.lower = bool(lower)
        self.numbers = bool(numbers)
        self._words: list[str] = [PAD, UNK]
        self._index: dict[str, int] = {PAD: 0, UNK: 1}
        for w in words:
            if not isinstance(w, str):
                raise TypeError(f"Vocab: words must be strings, got {type(w).__name__} {w!r}")
            if w not in self._index:
                self._index[w] = len(self._words)
                self._words.append(w)

    @classmethod
    def from_sentences(
        cls,
        token_lists: Iterable[Sequence[str]],
        min_count: int = 1,
        *,
        max_size: int | None = None,
        lower: bool = False,
        numbers: bool = False,
    ) -> "Vocab":
        """Build from tokenised sentences: words seen at least ``min_count`` times, most frequent
        first (ties in order of first appearance), at most ``max_size`` words besides the specials.
        ``lower``/``numbers`` normalise the words first (and later lookups)."""
        if min_count < 1:
            raise ValueError(f"Vocab.from_sentences: min_count must be >= 1, got {min_count}")
        counts: Counter[str] = Counter()
        norm = lower or numbers
        for tokens in token_lists:
            if isinstance(tokens, str):
                raise TypeError("Vocab.from_sentences: expected lists of tokens, got a string (split it first)")
            if norm:
                counts.update(normalize_word(t, lower, numbers) for t in tokens)
            else:
                counts.update(tokens)
        ranked = [w for w, c in sorted(counts.items(), key=lambda kv: -kv[1]) if c >= min_count and w not in (PAD, UNK)]
        if max_size is not None:
            ranked = ranked[:max_size]
        return cls(ranked, lower=lower, numbers=numbers)

    def normalize(self, word: str) -> str:
        """The form under which ``word`` is stored (identity unless built with normalisation)."""
        if self.lower or self.numbers:
            return normalize_word(word, self.lower, self.numbers)
        return word

    def __len__(self) -> int:
        return len(self._words)

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and self.normalize(word) in self._index

    def __iter__(self):
        return iter(self._words)

    def __getitem__(self, i: int) -> str:
        return self._words[i]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocab):
            return NotImplemented
        return (self._words, self.lower, self.numbers) == (other._words, other.lower, other.numbers)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Vocab({len(self)} words, lower={self.lower}, numbers={self.numbers})"

    @property
    def words(self) -> list[str]:
        """All words by index (a copy), specials included."""
        return list(self._words)

    def index(self, word: str) -> int:
        """The index of ``word`` (normalised as the vocabulary is), or ``unk_index`` if absent."""
        return self._index.get(self.normalize(word), 1)

    def indices(self, tokens: Iterable[str]) -> np.ndarray:
        """Indices of a token sequence as an int64 array (unknown words -> ``unk_index``)."""
        get, norm = self._index.get, self.normalize
        return np.fromiter((get(norm(t), 1) for t in tokens), dtype=np.int64)

    def word(self, index: int) -> str:
        return self._words[index]

    def to_json(self) -> str:
        """A JSON string: ``{"words": [...], "lower": bool, "numbers": bool}`` (specials included)."""
        return json.dumps({"words": self._words, "lower": self.lower, "numbers": self.numbers}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "Vocab":
        """Inverse of :meth:`to_json`."""
        try:
            obj = json.loads(text)
            words = obj["words"]
        except (json.JSONDecodeError, TypeError, KeyError) as e:
            raise ValueError(f"Vocab.from_json: not a vocabulary JSON object ({e})") from None
        if words[:2] != [PAD, UNK]:
            raise ValueError(f"Vocab.from_json: the first two words must be {PAD!r}, {UNK!r}; got {words[:2]}")
        v = cls(words[2:], lower=obj.get("lower", False), numbers=obj.get("numbers", False))
        if len(v) != len(words):
            raise ValueError("Vocab.from_json: the word list has duplicates")
        return v


# ---------------------------------------------------------------------------------------------
# GloVe
# ---------------------------------------------------------------------------------------------


class GloveFormatError(SourceFormatError):
    """A malformed line in a word-vector text file. ``str(err)`` starts with ``file:line:``."""


def _wanted_forms(vocab) -> set[bytes]:
    wanted: set[bytes] = set()
    words = vocab.words if isinstance(vocab, Vocab) else vocab
    if isinstance(words, str):
        raise TypeError("load_glove: vocab must be a Vocab or an iterable of words, not a string")
    for w in words:
        for f in lookup_forms(w):
            wanted.add(f.encode("utf-8"))
    return wanted


def load_glove(
    path: str | os.PathLike, vocab: Vocab | Iterable[str] | None = None, dim: int | None = None
) -> tuple[list[str], np.ndarray]:
    """Read word vectors in GloVe's text format: ``word v1 ... vd`` per line (plain or ``.gz``).

    With ``vocab``, only the vectors that :func:`build_embedding_matrix` may use for it are kept
    (every :func:`lookup_forms` form of each vocabulary word), and only those lines' numbers are
    parsed. GloVe 6B 50d (400,000 words, 68 MB gzipped) restricted to the CoNLL-2003 training
    vocabulary loads in about 1.3 s (1 s of it is gunzip); all 400,000 vectors take about 6 s
    (NumPy's text-to-float parser dominates). Lines of words not wanted are not checked.

    The file is read whole and split into lines as bytes; a word's bytes are compared with the
    wanted set before anything is decoded; the numbers of all kept lines are parsed in one call
    of NumPy's C parser. A first line of two integers (word2vec's ``count dim`` header) is
    skipped. Later duplicates of a word are ignored (the first vector wins).

    Args:
        path: the file.
        vocab: a :class:`Vocab` or an iterable of words, or ``None`` for every word.
        dim: the expected dimension; by default that of the first line.

    Returns:
        ``(words, matrix)``: the kept words in file order and a float32 ``(len(words), dim)`` array.

    Raises:
        GloveFormatError: ``file:line:`` for a kept line with a number of values other than
            ``dim`` (the message gives both), or a value that is not a number.
    """
    from ._io import BOM, read_file_bytes
    name = os.fspath(path)

    def error(reason, line=None, column=None):
        return GloveFormatError(reason, source=name, line=line, column=column)
    raw = read_file_bytes(name, error, what="word-vector file")
    if raw.startswith(BOM):        # not part of the first word
        raw = raw[len(BOM):]
    lines = raw.split(b"\n")
    del raw
    wanted = None if vocab is None else _wanted_forms(vocab)

    first = 0
    while first < len(lines) and not lines[first].strip():
        first += 1
    if first == len(lines):
        raise GloveFormatError("no word vectors in the file", source=name, line=1)
    head = lines[first].split()
    if len(head) == 2 and head[0].isdigit() and head[1].isdigit():  # word2vec text header
        if dim is None:
            dim = int(head[1])
        first += 1
    if dim is None:
        dim = len(lines[first].rstrip().split(b" ")) - 1
        if dim < 1:
            raise GloveFormatError(
                f"expected a word followed by its vector, found {lines[first][:60]!r}", source=name, line=first + 1
            )
    if dim < 1:
        raise ValueError(f"load_glove: dim must be >= 1, got {dim}")

    if wanted is None:
        candidates: Iterable[int] = range(first, len(lines))
    else:  # the cheap pass: only the first field of each line, compared as bytes
        candidates = [i for i in range(first, len(lines)) if lines[i].split(b" ", 1)[0] in wanted]
    words: list[bytes] = []
    rests: list[bytes] = []
    line_numbers: list[int] = []
    seen: set[bytes] = set()
    for i in candidates:
        line = lines[i]
        word, _, rest = line.partition(b" ")
        if word in seen:
            continue
        rest = rest.rstrip()  # tolerate "\r\n" and trailing spaces
        if not rest and not line.strip():
            continue  # blank line
        if not word:
            raise GloveFormatError(f"line starts with a space: no word, found {line[:60]!r}", source=name, line=i + 1)
        n = rest.count(b" ") + 1 if rest else 0
        if n != dim:
            raise GloveFormatError(
                f"expected {dim} values after the word {word.decode('utf-8', 'replace')!r}, found {n} "
                "(is the dimension right? are there spaces inside the word?)",
                source=name, line=i + 1,
            )
        seen.add(word)
        words.append(word)
        rests.append(rest)
        line_numbers.append(i + 1)
    del lines

    if not words:
        return [], np.zeros((0, dim), dtype=np.float32)
    try:
        with warnings.catch_warnings():
            # older NumPy warns (and stops early) on text that is not a number, newer raises
            warnings.simplefilter("ignore", DeprecationWarning)
            flat = np.fromstring(b" ".join(rests), dtype=np.float32, sep=" ")
    except ValueError:
        flat = None
    if flat is None or flat.size != len(words) * dim or not np.isfinite(flat).all():
        _raise_bad_number(name, rests, line_numbers, dim)
    matrix = flat.reshape(len(words), dim)
    try:
        decoded = [w.decode("utf-8") for w in words]
    except UnicodeDecodeError:
        for w, ln in zip(words, line_numbers):
            try:
                w.decode("utf-8")
            except UnicodeDecodeError as e:
                raise GloveFormatError(f"word is not valid UTF-8 ({e.reason})", source=name, line=ln) from None
        raise  # pragma: no cover
    return decoded, matrix


def _raise_bad_number(name: str, rests: list[bytes], line_numbers: list[int], dim: int) -> None:
    """Find the first line whose values do not all parse as finite numbers (slow path, errors only)."""
    for rest, ln in zip(rests, line_numbers):
        for k, tok in enumerate(rest.split(b" ")):
            try:
                value = float(tok)
            except ValueError:
                value = None
            if value is None or not np.isfinite(value):
                raise GloveFormatError(
                    f"value {k + 1} of {dim} is not a finite number: {tok.decode('utf-8', 'replace')!r}",
                    source=name, line=ln,
                )
    raise GloveFormatError("could not parse the vectors", source=name, line=line_numbers[0])  # pragma: no cover


def build_embedding_matrix(
    vocab: Vocab,
    glove_words: Sequence[str],
    glove_matrix: np.ndarray,
    scale: float | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, int]:
    """The embedding matrix of ``vocab``: one row per vocabulary index.

    * row 0 (``'<pad>'``): zeros;
    * a word found in the pre-trained vectors (trying :func:`lookup_forms` in order): its vector;
    * every other row, ``'<unk>'`` included: uniform in ``[-scale, scale]``, drawn from
      ``numpy.random.default_rng(seed)``. The default ``scale`` is ``sqrt(3) * s`` with ``s`` the
      standard deviation of all pre-trained values, so random rows have the same per-component
      variance as the pre-trained ones (for GloVe 6B 50d, s ~ 0.64, scale ~ 1.1); with no
      pre-trained vectors it is ``sqrt(3 / dim)`` (unit-norm rows on average).

    Returns:
        ``(matrix float32 (len(vocab), dim), found)``, ``found`` = number of vocabulary words
        (specials excluded) that got a pre-trained vector.
    """
    glove_matrix = np.asarray(glove_matrix)
    if glove_matrix.ndim != 2 or glove_matrix.shape[0] != len(glove_words):
        raise ValueError(
            f"build_embedding_matrix: glove_matrix has shape {glove_matrix.shape}, expected "
            f"({len(glove_words)}, dim) for {len(glove_words)} words"
        )
    dim = glove_matrix.shape[1]
    if scale is None:
        scale = float(np.sqrt(3.0) * glove_matrix.std()) if glove_matrix.size else float(np.sqrt(3.0 / dim))
    rng = np.random.default_rng(seed)
    out = rng.uniform(-scale, scale, size=(len(vocab), dim)).astype(np.float32)
    out[Vocab.pad_index] = 0.0
    row_of = {w: i for i, w in enumerate(glove_words)}
    rows, src = [], []
    for idx, w in enumerate(vocab.words):
        if idx < 2:
            continue
        for f in lookup_forms(w):
            j = row_of.get(f)
            if j is not None:
                rows.append(idx)
                src.append(j)
                break
    if rows:
        out[rows] = glove_matrix[src]
    return out, len(rows)


# ---------------------------------------------------------------------------------------------
# Capitalisation feature
# ---------------------------------------------------------------------------------------------

#: Names of the values of :func:`capitalization_feature`.
CAPITALIZATION_NAMES = ("all lower", "all caps", "initial cap", "has cap", "no letters")


def capitalization_feature(token: str) -> int:
    """Case pattern of a token, Collobert et al. (2011)'s "caps" feature.

    ===  ==============  ==============================================  =====================
    id   name            rule (cased letters only; digits, punctuation   examples
                         are ignored)
    ===  ==============  ==============================================  =====================
    0    all lower       every cased letter is lower case                ``the``, ``don't``, ``3rd``
    1    all caps        every cased letter is upper case                ``NATO``, ``U.S.``, ``I``, ``A4``
    2    initial cap     first character upper, the rest has no upper    ``Paris``, ``Mr.``
    3    has cap         any other mix                                   ``iPhone``, ``McDonald``
    4    no letters      no cased letter at all                          ``1999``, ``,``, ``--``
    ===  ==============  ==============================================  =====================

    A single capital letter (``I``, ``A``) counts as all caps.
    """
    if token.islower():
        return 0
    if token.isupper():
        return 1
    if token.lower() == token.upper():  # no cased character (also the empty string)
        return 4
    rest = token[1:]
    if token[0].isupper() and (rest.islower() or rest.lower() == rest.upper()):
        return 2
    return 3


def capitalization_features(tokens: Iterable[str]) -> np.ndarray:
    """:func:`capitalization_feature` of each token, as an int64 array."""
    return np.fromiter((capitalization_feature(t) for t in tokens), dtype=np.int64)
