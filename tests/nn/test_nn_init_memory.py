"""Initialisers draw a float32 table without a float64 copy of it (issue 17: Embedding(100000, 50)
peaked at 63 MB for a 20 MB table), and give the same numbers as one float64 draw cast."""
import tracemalloc

import numpy as np
import pytest

from chainrule import nn
from chainrule.nn import init


def test_embedding_float32_peak_is_the_table():
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        e = nn.Embedding(20000, 50, dtype=np.float32, rng=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    table = e.weight.data.nbytes
    assert peak < 1.25 * table, (peak, table)      # a float64 draw would be 3x the table
    ref = np.random.default_rng(0).normal(0.0, 1.0, size=(20000, 50)).astype(np.float32)
    np.testing.assert_array_equal(e.weight.data, ref)


@pytest.mark.parametrize("name,method,params", [
    ("uniform", "uniform", (-0.1, 0.1)), ("normal", "normal", (0.0, 1.0)),
    ("xavier_uniform", "uniform", None), ("he_normal", "normal", None)])
def test_chunked_draw_equals_one_draw(name, method, params):
    shape = (300, 401)                                      # more than one chunk
    got = init.get(name)(shape, rng=5, dtype=np.float32)
    if params is None:
        fi, fo = init.fans(shape)
        params = (-np.sqrt(6.0 / (fi + fo)), np.sqrt(6.0 / (fi + fo))) if method == "uniform" \
            else (0.0, np.sqrt(2.0 / fi))
    ref = getattr(np.random.default_rng(5), method)(*params, size=shape).astype(np.float32)
    np.testing.assert_array_equal(got, ref)
    t = nn.Parameter(np.zeros(shape, dtype=np.float64)[:, ::1])
    init.get(name)(t, rng=5)                                # filling a tensor in place
    np.testing.assert_array_equal(t.data, getattr(np.random.default_rng(5), method)(*params, size=shape))
