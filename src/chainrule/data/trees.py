"""Labelled binary parse trees in PTB bracket notation, as the Stanford Sentiment Treebank ships them.

One tree per line::

    (3 (2 The) (4 (3 good) (2 film)))

Every node carries an integer label (SST: 0 very negative ... 4 very positive). A leaf is
``(label word)``; an internal node is ``(label left right)`` with exactly two subtrees (SST trees
are binary, which is what the recursive tensor network of the seed document composes over).

Nothing in this module recurses: the parser keeps an explicit stack and every traversal is a
loop, so a tree of any depth (a right-branching tree of 100,000 words is 100,000 deep) parses,
prints and walks without ``RecursionError``.

Example
-------
>>> t = parse_tree("(3 (2 The) (4 (3 good) (2 film)))")
>>> t.label, t.words(), t.height(), len(t)
(3, ['The', 'good', 'film'], 2, 5)
>>> t.right.to_string()
'(4 (3 good) (2 film))'
>>> [n.label for n in t.nodes()]          # post-order: children before their parent
[2, 3, 2, 4, 3]
"""

from __future__ import annotations

import gc
import os
import re
from typing import Iterable, Sequence

__all__ = ["Tree", "TreeParseError", "parse_tree", "read_trees", "binarize_sentence"]


class TreeParseError(ValueError):
    """A tree string is malformed. ``str(err)`` reads ``source:line:column: message``.

    Attributes: ``source`` (file name or ``"<string>"``), ``line`` (1-based), ``column`` (1-based,
    the character where the problem was found), ``reason`` (the message without the location).
    """

    def __init__(self, reason: str, *, source: str, line: int, column: int):
        self.reason = reason
        self.source = source
        self.line = line
        self.column = column
        super().__init__(f"{source}:{line}:{column}: {reason}")


class Tree:
    """A node of a labelled binary tree.

    A leaf has a ``word`` and no ``children``; an internal node has ``word=None`` and two
    ``children`` (a tuple). Trees compare by identity (they are used as dictionary keys by the
    tree models); compare ``to_string()`` to compare structure.

    Args:
        label: the node's integer label.
        word: the token of a leaf, ``None`` for an internal node.
        children: ``()`` for a leaf, ``(left, right)`` for an internal node.
    """

    __slots__ = ("label", "word", "children")

    def __init__(self, label: int, word: str | None = None, children: Sequence["Tree"] = ()):
        children = tuple(children)
        if word is None and not children:
            raise ValueError("Tree: a leaf needs a word (word=None and no children)")
        if word is not None and children:
            raise ValueError("Tree: a node has either a word (leaf) or children, not both")
        self.label = label
        self.word = word
        self.children = children

    # -- structure -----------------------------------------------------------------------------
    @property
    def is_leaf(self) -> bool:
        return not self.children

    @property
    def left(self) -> "Tree":
        if not self.children:
            raise AttributeError(f"leaf {self.word!r} has no left child")
        return self.children[0]

    @property
    def right(self) -> "Tree":
        if not self.children:
            raise AttributeError(f"leaf {self.word!r} has no right child")
        return self.children[-1]

    def nodes(self) -> list["Tree"]:
        """All nodes in post-order (each node after all of its descendants, leaves left to right).

        This is a valid evaluation order for a bottom-up composition (forward pass); its reverse
        is a valid order for backpropagation through structure.
        """
        out: list[Tree] = []
        stack: list[tuple[Tree, bool]] = [(self, False)]
        push, pop, emit = stack.append, stack.pop, out.append
        while stack:
            node, expanded = pop()
            if expanded or not node.children:
                emit(node)
            else:
                push((node, True))
                for child in reversed(node.children):
                    push((child, False))
        return out

    def leaves(self) -> list["Tree"]:
        """The leaves, left to right."""
        out: list[Tree] = []
        stack = [self]
        while stack:
            node = stack.pop()
            if node.children:
                stack.extend(reversed(node.children))
            else:
                out.append(node)
        return out

    def words(self) -> list[str]:
        """The sentence: the words of the leaves, left to right."""
        return [leaf.word for leaf in self.leaves()]  # type: ignore[misc]

    def height(self) -> int:
        """Length of the longest path down to a leaf (a leaf has height 0)."""
        best = 0
        stack = [(self, 0)]
        while stack:
            node, depth = stack.pop()
            if node.children:
                for child in node.children:
                    stack.append((child, depth + 1))
            elif depth > best:
                best = depth
        return best

    def __bool__(self) -> bool:  # a tree is never empty; do not count nodes for `if tree:`
        return True

    def __len__(self) -> int:
        """Number of nodes (leaves and internal nodes)."""
        n = 0
        stack = [self]
        while stack:
            node = stack.pop()
            n += 1
            stack.extend(node.children)
        return n

    # -- text ----------------------------------------------------------------------------------
    def to_string(self) -> str:
        """The PTB bracket string, ``(label word)`` / ``(label left right)``, single spaces.

        ``parse_tree(line).to_string() == line`` for every line of the SST files.
        """
        parts: list[str] = []
        stack: list[Tree | str] = [self]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                parts.append(item)
            elif item.children:
                parts.append(f"({item.label}")
                stack.append(")")
                for child in reversed(item.children):
                    stack.append(child)
                    stack.append(" ")
            else:
                parts.append(f"({item.label} {item.word})")
        return "".join(parts)

    __str__ = to_string

    def __repr__(self) -> str:
        text = self.to_string()
        if len(text) > 80:
            text = text[:77] + "..."
        return f"Tree({text!r})"


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------

# Every non-space character is matched: a bracket, or a run of characters that are neither
# brackets nor ASCII whitespace (a label or a word). Whitespace between tokens is skipped by
# finditer. Only ASCII whitespace separates tokens: SST has words with a no-break space inside
# (train line 4342: "8\u00a01\\/2"), which must survive a round trip.
_WS = " \t\n\r\f\v"
_TOKEN = re.compile(r"[()]|[^ \t\n\r\f\v()]+")


def _is_label(s: str) -> bool:
    return s.isascii() and s.isdigit()


# Fast path for well-formed, canonically spaced text: one regex match per leaf "(2 word)",
# per opening "(3 " and per ")"; the optional trailing space is the separator between siblings.
# `_FAST.sub("", text) == ""` proves the matches tile the whole text, so nothing is skipped.
_FAST = re.compile(r"\(([0-9]+) ([^ \t\n\r\f\v()]+)\) ?|\(([0-9]+) |\) ?")
_SMALL_INT = {str(i): i for i in range(100)}


class _Irregular(Exception):
    """The fast path met something it does not handle; the checked parser decides."""


def _parse_fast(text: str) -> Tree:
    if _FAST.sub("", text):
        raise _Irregular
    new = Tree.__new__
    ints = _SMALL_INT
    stack: list[tuple[int, list]] = []
    root = None
    for leaf_label, word, open_label in _FAST.findall(text):
        if root is not None:
            raise _Irregular
        if word:
            node = new(Tree)
            node.label = ints.get(leaf_label) or int(leaf_label)
            node.word = word
            node.children = ()
        elif open_label:
            stack.append((ints.get(open_label) or int(open_label), []))
            continue
        else:
            if not stack:
                raise _Irregular
            label, children = stack.pop()
            if len(children) != 2:
                raise _Irregular
            node = new(Tree)
            node.label = label
            node.word = None
            node.children = (children[0], children[1])
        if stack:
            stack[-1][1].append(node)
        else:
            root = node
    if root is None or stack:
        raise _Irregular
    return root


def parse_tree(text: str, *, line: int = 1, source: str = "<string>") -> Tree:
    """Parse one bracketed tree, e.g. ``"(3 (2 The) (4 good))"``.

    The parser is iterative (an explicit stack of open nodes), so depth is unlimited. Tokens are
    separated by ASCII whitespace (any amount); a word is any run of other characters except
    brackets (PTB escapes them as ``-LRB-``/``-RRB-``).

    Args:
        text: the tree; surrounding whitespace (and a trailing newline) is ignored.
        line: line number reported in errors (the caller's line in its file).
        source: file name reported in errors.

    Returns:
        The root :class:`Tree`.

    Raises:
        TreeParseError: with ``source:line:column`` for empty input, unbalanced brackets, a
            non-integer label, a leaf without a word, a node with one child or with three or more
            (trees must be binary), a word next to subtrees, or text after the closing bracket.
    """

    try:
        return _parse_fast(text.strip(_WS))
    except (_Irregular, ValueError):
        pass
    return _parse_checked(text, line=line, source=source)


def _parse_checked(text: str, *, line: int = 1, source: str = "<string>") -> Tree:
    """The reference parser: one token at a time, with a precise error for every malformed input."""

    def fail(reason: str, pos: int) -> TreeParseError:
        return TreeParseError(reason, source=source, line=line, column=pos + 1)

    # Open nodes: [label, word, children, column of '(']. label None = label not read yet.
    stack: list[list] = []
    root: Tree | None = None
    root_end = 0
    for m in _TOKEN.finditer(text):
        tok = m.group()
        pos = m.start()
        if root is not None:
            if tok == ")":
                raise fail(
                    f"unbalanced brackets: ')' without a matching '(' (the tree closed at column {root_end})", pos
                )
            raise fail(f"trailing text {tok!r} after the end of the tree (closed at column {root_end})", pos)
        if tok == "(":
            if stack:
                top = stack[-1]
                if top[0] is None:
                    raise fail("expected an integer label after '(', found '('", pos)
                if top[1] is not None:
                    raise fail(f"leaf ({top[0]} {top[1]} ...) has a subtree after its word", pos)
                if len(top[2]) == 2:
                    raise fail(
                        f"third child of the node opened at column {top[3] + 1}: trees must be binary, "
                        "every internal node has exactly 2 children",
                        pos,
                    )
            stack.append([None, None, [], pos])
        elif tok == ")":
            if not stack:
                raise fail("unbalanced brackets: ')' without a matching '('", pos)
            label, word, children, start = stack.pop()
            if label is None:
                raise fail("expected an integer label after '(', found ')'", pos)
            if word is not None:
                node = Tree(label, word)
            elif not children:
                raise fail(f"leaf without a word: '({label})' (node opened at column {start + 1})", pos)
            elif len(children) == 1:
                raise fail(
                    f"unary internal node (opened at column {start + 1}): trees must be binary, "
                    "every internal node has exactly 2 children",
                    pos,
                )
            else:
                node = Tree(label, None, children)
            if stack:
                stack[-1][2].append(node)
            else:
                root = node
                root_end = pos + 1
        else:
            if not stack:
                raise fail(f"expected '(' at the start of a tree, found {tok!r}", pos)
            top = stack[-1]
            if top[0] is None:
                if not _is_label(tok):
                    raise fail(f"label must be a non-negative integer, found {tok!r}", pos)
                top[0] = int(tok)
            elif top[2]:
                raise fail(f"word {tok!r} after a subtree: a node has either one word or two subtrees", pos)
            elif top[1] is not None:
                raise fail(f"second word {tok!r} in leaf ({top[0]} {top[1]} ...): a leaf has one word", pos)
            else:
                top[1] = tok
    if root is not None:
        return root
    if stack:
        opened = ", ".join(str(frame[3] + 1) for frame in stack[-5:])
        more = "" if len(stack) <= 5 else f" (last 5 of {len(stack)})"
        raise fail(
            f"unbalanced brackets: {len(stack)} unclosed '(' at end of input, opened at column(s) {opened}{more}",
            len(text.rstrip(_WS)),
        )
    raise fail("empty input: expected a tree '(label ...)'", 0)


def read_trees(path_or_lines: str | os.PathLike | Iterable[str], *, source: str | None = None) -> list[Tree]:
    """Read one tree per line from a file (plain or ``.gz``, UTF-8) or from an iterable of lines.

    Lines are split at "\\n" only (a "\\r" before it is whitespace). Blank lines are skipped (they
    still count for the line numbers in errors).

    Args:
        path_or_lines: a path (``str`` or ``os.PathLike``), or an iterable of strings.
        source: name used in error messages (default: the path, or ``"<lines>"``).

    Raises:
        TreeParseError: naming the source, line and column of the first malformed tree.
    """
    if isinstance(path_or_lines, (str, os.PathLike)):
        from ._io import decode_text, read_file_bytes
        path = os.fspath(path_or_lines)
        src = source if source is not None else path

        def error(reason, line=None, column=None):
            return TreeParseError(reason, source=src, line=line or 1, column=column or 1)
        lines: Iterable[str] = decode_text(read_file_bytes(path, error, what="tree file"), error).split("\n")
    else:
        lines = path_or_lines
        src = source if source is not None else "<lines>"
    trees = []
    # Parsing allocates ~40 objects per sentence and none of them form cycles: pausing the cyclic
    # garbage collector meanwhile halves the time (it would otherwise rescan the growing heap).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i, text in enumerate(lines, 1):
            if text.strip(_WS):
                trees.append(parse_tree(text, line=i, source=src))
    finally:
        if gc_was_enabled:
            gc.enable()
    return trees


def binarize_sentence(tokens: Sequence[str], label: int = 2) -> Tree:
    """A balanced binary tree over a raw sentence, for text that has no parse.

    Fallback when no parser is at hand: the span is cut in two halves, the left half taking the
    extra token when the length is odd, and each half again, down to single words. Every node gets
    ``label`` (2 = neutral in SST). The tree has height ``ceil(log2(n))``. Built bottom-up with an
    explicit stack (no recursion).

    >>> binarize_sentence(["a", "b", "c"]).to_string()
    '(2 (2 (2 a) (2 b)) (2 c))'
    """
    tokens = list(tokens)
    if not tokens:
        raise ValueError("binarize_sentence: cannot build a tree over an empty sentence")
    for i, tok in enumerate(tokens):
        if not isinstance(tok, str) or not tok or any(c in _WS or c in "()" for c in tok):
            raise ValueError(
                f"binarize_sentence: token {i} ({tok!r}) must be a non-empty string without "
                "ASCII whitespace or brackets (escape brackets as -LRB- / -RRB-)"
            )
    done: list[Tree] = []
    stack: list[tuple[int, int, bool]] = [(0, len(tokens), False)]
    while stack:
        lo, hi, combine = stack.pop()
        if hi - lo == 1:
            done.append(Tree(label, tokens[lo]))
        elif combine:
            right = done.pop()
            left = done.pop()
            done.append(Tree(label, None, (left, right)))
        else:
            mid = (lo + hi + 1) // 2
            stack.append((lo, hi, True))
            stack.append((mid, hi, False))
            stack.append((lo, mid, False))
    return done[0]
