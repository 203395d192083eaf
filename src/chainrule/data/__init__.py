"""Data sets and readers, in plain NumPy/Python (nothing here imports the autodiff engine).

Submodules, imported on first use (``import chainrule.data`` itself costs nothing, and never
imports scikit-learn):

* :mod:`~chainrule.data.datasets`: digits (scikit-learn's bundled copy), MNIST and Fashion-MNIST
  (original idx files, sha256-checked) as standardised train/val/test arrays;
* :mod:`~chainrule.data.trees`: labelled binary PTB trees (parser, printer, traversals);
* :mod:`~chainrule.data.sst`: the Stanford Sentiment Treebank, shipped with the package;
* :mod:`~chainrule.data.conll`: CoNLL NER files, IOB tag schemes, conlleval scoring;
* :mod:`~chainrule.data.embeddings`: vocabularies, GloVe vectors, capitalisation features;
* :mod:`~chainrule.data.loader`: ``DataLoader`` (iterable mini-batches: shuffle, drop_last, seed).

The most used names are also available here, e.g. ``chainrule.data.parse_tree``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_SUBMODULES = ("datasets", "trees", "sst", "conll", "embeddings", "loader")

# name -> submodule that defines it (resolved lazily by __getattr__)
_NAMES = {
    "DataLoader": "loader",
    "TensorDataset": "loader",
    "Splits": "datasets",
    "load_dataset": "datasets",
    "standardize": "datasets",
    "train_val_split": "datasets",
    "read_idx": "datasets",
    "Tree": "trees",
    "TreeParseError": "trees",
    "parse_tree": "trees",
    "read_trees": "trees",
    "binarize_sentence": "trees",
    "Sentence": "conll",
    "ConllFormatError": "conll",
    "read_conll": "conll",
    "entities": "conll",
    "evaluate": "conll",
    "format_report": "conll",
    "Vocab": "embeddings",
    "load_glove": "embeddings",
    "build_embedding_matrix": "embeddings",
    "normalize_word": "embeddings",
    "capitalization_feature": "embeddings",
}
_ALIASES = {"load_dataset": "load"}

__all__ = [*_SUBMODULES, *_NAMES]

if TYPE_CHECKING:  # pragma: no cover
    from . import conll, datasets, embeddings, sst, trees  # noqa: F401


def __getattr__(name: str):
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    if name in _NAMES:
        module = importlib.import_module(f"{__name__}.{_NAMES[name]}")
        value = getattr(module, _ALIASES.get(name, name))
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
