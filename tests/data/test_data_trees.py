"""Trees: parser, printer, traversals, errors; the packaged SST."""

import math
import random
import sys

import pytest

from chainrule.data import sst
from chainrule.data.trees import (
    Tree,
    TreeParseError,
    _parse_checked,
    binarize_sentence,
    parse_tree,
    read_trees,
)


# --- structure -------------------------------------------------------------------------------


def test_parse_simple_tree_and_traversals():
    t = parse_tree("(3 (2 The) (4 (3 good) (2 film)))")
    assert t.label == 3 and t.word is None and not t.is_leaf
    assert t.left.is_leaf and t.left.word == "The" and t.left.label == 2
    assert t.right.label == 4 and t.right.left.word == "good"
    assert t.words() == ["The", "good", "film"]
    assert [leaf.word for leaf in t.leaves()] == ["The", "good", "film"]
    assert [n.label for n in t.nodes()] == [2, 3, 2, 4, 3]
    assert t.nodes()[-1] is t
    assert len(t) == 5
    assert t.height() == 2
    assert t.left.height() == 0
    assert t.to_string() == "(3 (2 The) (4 (3 good) (2 film)))"
    assert str(t.right) == "(4 (3 good) (2 film))"
    assert "Tree('(3 (2 The)" in repr(t)


def test_single_leaf_tree():
    t = parse_tree("(2 word)")
    assert t.is_leaf and t.word == "word" and len(t) == 1 and t.height() == 0
    assert t.nodes() == [t] and t.leaves() == [t]
    with pytest.raises(AttributeError):
        t.left  # noqa: B018


def test_postorder_children_before_parents():
    t = parse_tree("(1 (2 (3 a) (4 b)) (0 (1 c) (2 (3 d) (4 e))))")
    order = {id(n): i for i, n in enumerate(t.nodes())}
    for n in t.nodes():
        for c in n.children:
            assert order[id(c)] < order[id(n)]
    assert len(t) == 9 and t.height() == 3


def test_whitespace_is_flexible_but_printing_is_canonical():
    t = parse_tree("  (3\t(2 a)\n  (2   b) )\r\n")
    assert t.to_string() == "(3 (2 a) (2 b))"


def test_non_ascii_whitespace_stays_inside_a_word():
    # SST train line 4342 has the word "8\u00a01\/2" (a no-break space inside the token).
    line = "(2 (2 x) (2 8\u00a01\\/2))"
    t = parse_tree(line)
    assert t.words() == ["x", "8\u00a01\\/2"]
    assert t.to_string() == line


def test_tree_constructor_checks():
    with pytest.raises(ValueError, match="leaf needs a word"):
        Tree(2)
    with pytest.raises(ValueError, match="either a word"):
        Tree(2, "a", [Tree(1, "b"), Tree(1, "c")])
    t = Tree(3, None, [Tree(1, "a"), Tree(2, "b")])
    assert isinstance(t.children, tuple) and t.to_string() == "(3 (1 a) (2 b))"


def test_deep_trees_need_no_recursion():
    n = 30_000
    assert n > sys.getrecursionlimit()
    text = "".join(f"(1 (2 w{i}) " for i in range(n - 1)) + f"(3 w{n - 1})" + ")" * (n - 1)
    for parse in (parse_tree, _parse_checked):
        t = parse(text)
        assert t.height() == n - 1
        assert len(t) == 2 * n - 1
        assert len(t.nodes()) == 2 * n - 1
        assert t.words()[-1] == f"w{n - 1}"
        assert t.to_string() == text


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, column, fragment",
    [
        ("", 1, "empty input"),
        ("   \n", 1, "empty input"),
        ("(3 (2 a) (2 b)", 15, "unbalanced brackets: 1 unclosed '('"),
        ("(3 (2 a) (2 b", 14, "unbalanced brackets: 2 unclosed '('"),
        ("(3 (2 a) (2 b)))", 16, "unbalanced brackets: ')' without a matching '('"),
        (")", 1, "unbalanced brackets: ')' without a matching '('"),
        ("(x (2 a) (2 b))", 2, "label must be a non-negative integer, found 'x'"),
        ("(3 (2.5 a) (2 b))", 5, "found '2.5'"),
        ("(-1 a)", 2, "found '-1'"),
        ("(3 (2 a) (2 b) (2 c))", 16, "third child of the node opened at column 1"),
        ("(3 (2 a))", 9, "unary internal node (opened at column 1)"),
        ("(3 (2) (2 b))", 6, "leaf without a word: '(2)'"),
        ("(3 (2 a) (2 b)) extra", 17, "trailing text 'extra'"),
        ("(2 a) (2 b)", 7, "trailing text '('"),
        ("(2 a b)", 6, "second word 'b'"),
        ("(2 a (1 b))", 6, "has a subtree after its word"),
        ("(3 (2 a) b)", 10, "word 'b' after a subtree"),
        ("(3 (2 a) (2 b) c)", 16, "word 'c' after a subtree"),
        ("(( 2 a)", 2, "expected an integer label after '('"),
        ("()", 2, "expected an integer label after '(', found ')'"),
        ("2 a", 1, "expected '(' at the start of a tree"),
    ],
)
def test_parse_errors_name_line_and_column(text, column, fragment):
    with pytest.raises(TreeParseError) as info:
        parse_tree(text, line=7, source="trees.txt")
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.source, err.line, err.column) == ("trees.txt", 7, column)
    assert fragment in str(err)
    assert str(err).startswith(f"trees.txt:7:{column}: ")


def test_read_trees_reports_file_and_line(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text("(3 (2 a) (2 b))\n\n(1 (2 c) (x d))\n", encoding="utf-8")
    with pytest.raises(TreeParseError) as info:
        read_trees(p)
    assert info.value.line == 3 and info.value.column == 11
    assert str(info.value).startswith(f"{p}:3:11: label must be a non-negative integer")

    with pytest.raises(TreeParseError, match=r"^<lines>:2:1: expected '\('"):
        read_trees(["(2 a)", "oops"])
    with pytest.raises(TreeParseError, match=r"^mine:2:"):
        read_trees(["(2 a)", "oops"], source="mine")


def test_read_trees_plain_gz_and_blank_lines(tmp_path):
    import gzip

    lines = ["(3 (2 a) (2 b))", "(1 (0 c) (2 d))"]
    (tmp_path / "t.txt").write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    with gzip.open(tmp_path / "t.txt.gz", "wt", encoding="utf-8") as fh:
        fh.write("\r\n".join(lines))
    for name in ("t.txt", "t.txt.gz"):
        trees = read_trees(tmp_path / name)
        assert [t.to_string() for t in trees] == lines
    assert read_trees([]) == []


def test_fast_and_checked_parsers_agree_on_mutations():
    rng = random.Random(1234)
    base = "(3 (2 (2 The) (2 Rock)) (4 (3 (2 is) (4 destined)) (2 .)))"
    alphabet = ["(", ")", " ", "  ", "2", "x", "12", "\t", "(2 a)", ""]
    for _ in range(3000):
        chars = list(base)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(chars) + 1)
            op = rng.random()
            if op < 0.4 and chars:
                del chars[min(i, len(chars) - 1)]
            elif op < 0.8:
                chars.insert(i, rng.choice(alphabet))
            elif chars:
                chars[min(i, len(chars) - 1)] = rng.choice(alphabet)
        text = "".join(chars)
        try:
            expected = ("ok", _parse_checked(text).to_string())
        except TreeParseError as e:
            expected = ("error", str(e))
        try:
            got = ("ok", parse_tree(text).to_string())
        except TreeParseError as e:
            got = ("error", str(e))
        assert got == expected, text


# --- binarisation ----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 100])
def test_binarize_sentence_is_balanced(n):
    tokens = [f"w{i}" for i in range(n)]
    t = binarize_sentence(tokens, label=1)
    assert t.words() == tokens
    assert len(t) == 2 * n - 1
    assert t.height() == math.ceil(math.log2(n))
    assert all(node.label == 1 for node in t.nodes())
    assert all(len(node.children) in (0, 2) for node in t.nodes())
    assert parse_tree(t.to_string()).to_string() == t.to_string()


def test_binarize_sentence_shape_and_errors():
    assert binarize_sentence(["a", "b", "c"]).to_string() == "(2 (2 (2 a) (2 b)) (2 c))"
    assert binarize_sentence(list("abcde")).to_string() == "(2 (2 (2 (2 a) (2 b)) (2 c)) (2 (2 d) (2 e)))"
    big = binarize_sentence([f"w{i}" for i in range(2 ** 13 + 1)])    # one past a power of two: ceil(log2 n)
    assert big.height() == 14 and len(big.words()) == 2 ** 13 + 1
    with pytest.raises(ValueError, match="empty sentence"):
        binarize_sentence([])
    with pytest.raises(ValueError, match="token 1"):
        binarize_sentence(["a", "b c"])
    with pytest.raises(ValueError, match="token 0"):
        binarize_sentence(["(", "b"])


# --- the packaged SST ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "split, count, nodes, roots",
    [
        ("train", 8544, 318_582, [1092, 2218, 1624, 2322, 1288]),
        ("dev", 1101, 41_447, [139, 289, 229, 279, 165]),
        ("test", 2210, 82_600, [279, 633, 389, 510, 399]),
    ],
)
def test_sst_counts(split, count, nodes, roots):
    trees = sst.load(split)
    assert len(trees) == count == sst.SIZES[split]
    assert sum(len(t) for t in trees) == nodes
    hist = [0] * 5
    for t in trees:
        hist[t.label] += 1
    assert hist == roots
    assert all(len(n.children) in (0, 2) for t in trees[:200] for n in t.nodes())


@pytest.mark.parametrize("split", sst.SPLITS)
def test_sst_every_line_round_trips(split):
    lines = sst.read_text(split).split("\n")
    assert lines[-1] == ""
    lines = lines[:-1]
    trees = sst.load(split)
    assert len(lines) == len(trees)
    for line, tree in zip(lines, trees):
        assert tree.to_string() == line
    # and through the checked (reference) parser too, for dev
    if split == "dev":
        for line in lines:
            assert _parse_checked(line).to_string() == line


def test_sst_first_trees_and_cache():
    dev = sst.load("dev")
    assert dev[0].label == 3 and dev[0].words()[:4] == ["It", "'s", "a", "lovely"]
    again = sst.load("dev")
    assert again is not dev and again[0] is dev[0]  # new list, cached trees
    test = sst.load("test")
    assert test[0].to_string().startswith("(2 (3 (3 Effective) (2 but)) (1 (1 too-tepid) (2 biopic)))")


def test_sst_unknown_split():
    with pytest.raises(ValueError, match="unknown split 'validation'.*'train', 'dev', 'test'"):
        sst.load("validation")


def test_sst_train_loads_all_trees():
    # speed is a benchmark matter, not a test assertion; here: the full split parses
    sst._cache.pop("train", None)
    trees = sst.load("train")
    assert len(trees) == 8544
    assert sum(len(t) for t in trees) == 318582
