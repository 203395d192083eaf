"""benchmarks/embedding_sparse_dense.py, run briefly on a small table: a row-sparse and a dense
embedding take the same training step (the comparison is fair), and the table is printed."""
import sys

import numpy as np


def test_sparse_and_dense_steps_agree_and_the_table_prints(load_benchmark, monkeypatch, capsys):
    B = load_benchmark("embedding_sparse_dense")
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 30, (4, 3))
    r = rng.standard_normal((4, 3, 5)).astype(np.float32)
    for opt in ("sgd", "adam"):
        (es, os_), (ed, od) = B.make(30, 5, True, opt), B.make(30, 5, False, opt)
        np.testing.assert_array_equal(es.weight.data, ed.weight.data)
        for _ in range(2):
            B.step(es, os_, idx, r)
            B.step(ed, od, idx, r)
        assert not np.array_equal(es.weight.data, B.make(30, 5, True, opt)[0].weight.data)
        np.testing.assert_allclose(es.weight.data, ed.weight.data, rtol=1e-6, atol=1e-7)
    monkeypatch.setattr(B, "SIZES", [(30, 5)])
    monkeypatch.setattr(B, "BATCH", (4, 3))
    monkeypatch.setattr(sys, "argv", ["embedding_sparse_dense.py", "--rounds", "1", "--steps", "1"])
    B.main()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[1].split()[:2] == ["30x5", "sgd"] and lines[2].split()[1] == "adam"
