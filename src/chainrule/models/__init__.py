"""End-to-end models: the MLP runner (:mod:`.mlp`), the seed models written with engine ops
(:mod:`.seeds`), the window tagger (:mod:`.window`), tree networks (:mod:`.rntn`) and sequence
classifiers (:mod:`.sequence`).  The classes below are imported on first use."""
import importlib

_LAZY = {"RNTN": "rntn", "RNN": "rntn", "WindowClassifier": "window", "SequenceClassifier": "sequence"}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'chainrule.models' has no attribute {name!r}")
