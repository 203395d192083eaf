"""benchmarks/op_overhead.py, run briefly: the engine's and the hand-written chains give the same
gradients, and the per-op times and their ratio are reported."""


def test_run_all_gradients_agree(load_benchmark, monkeypatch):
    B = load_benchmark("op_overhead")
    monkeypatch.setattr(B, "SIZES", (16,))
    monkeypatch.setattr(B, "STEPS", 5)
    res = B.run_all(2, 0.0005)
    rows = res["results"]
    assert [(r["chain"], r["size"]) for r in rows] == [("tanh", 16), ("sigmoid", 16)]
    for r in rows:
        assert r["grads_agree"] is True and r["ops"] == 15
        assert r["ratio"] > 0 and abs(r["ratio"] - r["engine_us_per_op"] / r["numpy_us_per_op"]) < 1e-9
    assert "engine" in B.table(res, "t").splitlines()[1]
