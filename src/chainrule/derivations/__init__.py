"""The hand derivations of the five seed documents, made executable in plain NumPy.

Each submodule follows one document, formula by formula, and cites the
document's equation or line in its docstrings:

* :mod:`~chainrule.derivations.window`          -- ``002``: window classifier (eqs. 1-31)
* :mod:`~chainrule.derivations.multilabel_mlp`  -- ``003``: multi-label two-layer sigmoid net ("Alg 1")
* :mod:`~chainrule.derivations.layerwise`       -- ``004``: layer-by-layer backprop, softmax Jacobian, subgradients
* :mod:`~chainrule.derivations.dag`             -- ``001``: DAG of sigmoid / soft-maximum units, δ and γ
* :mod:`~chainrule.derivations.rntn`            -- ``000``: recursive neural tensor network

Where a document has a slip, the code implements the correct mathematics;
``docs/derivations.md`` lists every correction and the test that settles it.

This package is the engine's independent witness: it imports nothing from the
rest of chainrule (only NumPy), so a bug in the engine cannot hide in both.
"""

from . import dag, layerwise, multilabel_mlp, rntn, window
from ._check import numerical_gradient, rel_error

__all__ = ["dag", "layerwise", "multilabel_mlp", "rntn", "window", "numerical_gradient", "rel_error"]
