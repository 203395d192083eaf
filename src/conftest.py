"""Doctests of the sources (``--doctest-modules``): ``cr`` is chainrule and ``np`` NumPy in every
example, as NumPy's own examples assume ``np``."""
import numpy as np
import pytest

import chainrule


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    doctest_namespace["cr"] = chainrule
    doctest_namespace["np"] = np
