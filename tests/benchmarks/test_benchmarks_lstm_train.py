"""benchmarks/lstm_train.py, run briefly with tiny sizes: its hand-written BPTT (the gate derivatives
of LSTMCell's docstring) is an independent witness of the engine's unrolled graph, and the timed
run reports that every implementation agrees."""
import numpy as np
import pytest

TINY = {"D": 3, "H": 4, "T": 6, "N": 2}


@pytest.fixture
def bench(load_benchmark, monkeypatch):
    B = load_benchmark("lstm_train")
    for k, v in TINY.items():
        monkeypatch.setattr(B, k, v)
    return B


def test_engine_bptt_equals_the_hand_written_numpy_bptt(bench):
    x, r, s = bench.data()
    la, ga = bench.numpy_factory()(x, r, s)
    lb, gb = bench.chainrule_factory()(x, r, s)
    assert np.isclose(la, lb, rtol=1e-5)
    for u, v in zip(ga, gb):
        np.testing.assert_allclose(u, np.asarray(v), rtol=1e-4, atol=1e-5)


def test_run_all_agrees_and_measures(bench):
    res = bench.run_all(0.02)
    assert res["grads_agree"] is True
    assert res["config"] == {"input": 3, "hidden": 4, "length": 6, "batch": 2}
    assert res["numpy_seq_per_s"] > 0 and res["chainrule_seq_per_s"] > 0
