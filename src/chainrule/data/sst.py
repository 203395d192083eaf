"""The Stanford Sentiment Treebank (SST), shipped with the package.

Socher et al., "Recursive Deep Models for Semantic Compositionality Over a Sentiment Treebank",
EMNLP 2013: 11,855 movie-review sentences parsed into binary trees, a sentiment label 0-4 on every
node (0 very negative, 1 negative, 2 neutral, 3 positive, 4 very positive). The three files of
Stanford's ``trainDevTestTrees_PTB.zip`` ship here unchanged except for gzip
(``sst/{train,dev,test}.txt.gz``); provenance and checksums are in ``ATTRIBUTION.md``.

| split | trees | nodes   |
|-------|------:|--------:|
| train | 8,544 | 318,582 |
| dev   | 1,101 |  41,447 |
| test  | 2,210 |  82,600 |

>>> from chainrule.data import sst
>>> dev = sst.load("dev")
>>> len(dev), dev[0].label, dev[0].words()[:4]
(1101, 3, ['It', "'s", 'a', 'lovely'])
"""

from __future__ import annotations

import gc
import gzip
import hashlib
import threading
from importlib import resources

from .trees import Tree, read_trees

__all__ = ["SPLITS", "LABEL_NAMES", "SIZES", "SHA256", "load", "read_text"]

SPLITS = ("train", "dev", "test")
LABEL_NAMES = ("very negative", "negative", "neutral", "positive", "very positive")
SIZES = {"train": 8544, "dev": 1101, "test": 2210}
#: sha256 of the decompressed text: that of Stanford's trees/{split}.txt (see ATTRIBUTION.md).
SHA256 = {
    "train": "e2f3f41b0b1e6d4dddc0effe3bfc2d27ed8928079aa9a03d652311614fc5feb7",
    "dev": "0e9336aed6e4730e19f58d00a77b3f0297efdb755f7b5e598c98a05e3f97ea40",
    "test": "6e54806dee95cf80cd918e7dfb3f6770f6df24bf826f289a4d1f709e1c8f6761",
}

_cache: dict[str, list[Tree]] = {}
_lock = threading.Lock()


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"sst: unknown split {split!r}; choose one of 'train', 'dev', 'test'")
    return split


def read_text(split: str) -> str:
    """The decompressed text of a packaged split (one tree per line), checked against its sha256."""
    _check_split(split)
    name = f"sst/{split}.txt.gz"
    try:
        raw = resources.files(__package__).joinpath(name).read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"sst: packaged file chainrule/data/{name} is missing; the installation is incomplete "
            "(the package data 'sst/*.txt.gz' was not installed)"
        ) from None
    data = gzip.decompress(raw)
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256[split]:
        raise ValueError(
            f"sst: packaged file chainrule/data/{name} is corrupt: sha256 of its text is {digest}, "
            f"expected {SHA256[split]}"
        )
    return data.decode("utf-8")


def load(split: str) -> list[Tree]:
    """The trees of one split, ``'train'``, ``'dev'`` or ``'test'``, in file order.

    Parsed once per process and cached (train takes about 0.3 s). Each call returns a new list,
    so shuffling it is safe; the trees themselves are shared between calls and must not be
    modified.
    """
    _check_split(split)
    trees = _cache.get(split)
    if trees is None:
        with _lock:
            trees = _cache.get(split)
            if trees is None:
                trees = read_trees(read_text(split).split("\n"), source=f"chainrule/data/sst/{split}.txt.gz")
                if len(trees) != SIZES[split]:  # pragma: no cover - guarded by the checksum
                    raise ValueError(f"sst: {split} has {len(trees)} trees, expected {SIZES[split]}")
                _cache[split] = trees
                # the cached trees live for the whole process: take them out of the cyclic garbage
                # collector's generations (they hold no cycles), so later gc passes do not re-walk
                # ~320,000 nodes each time
                gc.freeze()
    return list(trees)
