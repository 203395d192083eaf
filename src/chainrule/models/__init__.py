"""Each model once, with its forward, its parameter layout and (where a seed derives it) the
adapter to :mod:`chainrule.derivations`: the MLPs (:mod:`.mlp`: seed 003's sigmoid network, and seed
004's layer stack in the document's layout), the window tagger (:mod:`.window`, seed 002), the
RNTN/RNN (:mod:`.rntn`, seed 000) and the Tree-LSTM (:mod:`.treelstm`), the sequence classifiers
(:mod:`.sequence`), DAG training (:mod:`.dag`, seed 001; the network is :class:`chainrule.nn.DAGNetwork`).
``chainrule derive``, ``chainrule explain`` and the engine-vs-derivation tests use these models
through their adapters.  The classes below are imported on first use."""
import importlib

_LAZY = {"RNTN": "rntn", "RNN": "rntn", "WindowClassifier": "window", "SequenceClassifier": "sequence"}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'chainrule.models' has no attribute {name!r}")
