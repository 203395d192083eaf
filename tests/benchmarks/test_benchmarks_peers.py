"""benchmarks/peers.py, run briefly without PyTorch and JAX: the workloads time the hand-written
NumPy step and chainrule's, and report each as a ratio to the hand-written one."""
import pytest


@pytest.fixture
def bench(load_benchmark, monkeypatch):
    B = load_benchmark("peers")
    monkeypatch.setattr(B, "_torch", lambda: None)
    monkeypatch.setattr(B, "_jax", lambda: (None, None))
    return B


def test_child_times_every_implementation(bench):
    res = bench.child(["chain", "mlp_small"], 2, 0.002)
    assert 0 < res["_cpu_share"] <= 1.5
    for w in ("chain", "mlp_small"):
        impls = res[w]["impls"]
        assert "numpy (hand)" in impls and any(k.startswith("chainrule") for k in impls)
        assert impls["numpy (hand)"]["vs_hand"] == 1.0
        for v in impls.values():
            assert v["us_per_step"] > 0 and v["range"][0] <= v["vs_hand"] <= v["range"][1]


def test_unknown_workload_is_refused(bench):
    with pytest.raises(SystemExit):
        bench.main(["--workloads", "nope", "--child"])
