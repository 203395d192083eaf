"""benchmarks/scaling.py, run briefly on small sizes: every case runs at two sizes, the fitted
exponents and the gc measurement are reported."""
import json


def test_main_small_sizes(load_benchmark, capsys):
    B = load_benchmark("scaling")
    assert B.main(["--min", "50", "--max", "200", "--points", "2", "--gc", "2000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for name in B.CASES:
        rows = out[name]["rows"]
        assert [r["n"] for r in rows] == [50, 200]
        assert all(r["total_s"] > 0 for r in rows)
        assert set(out[name]["exponent"]) >= {"total_s"}
    assert out["gc_chain"]["ops"] == 2000 and out["gc_chain"]["enabled"]["backward_s"] > 0
    assert out["worst_exponent"] == max(v for name in B.CASES for v in out[name]["exponent"].values() if v is not None)


def test_exponent_of_a_known_power_law(load_benchmark):
    B = load_benchmark("scaling")
    ns = [1000, 2000, 4000, 8000]
    assert abs(B.exponent(ns, [1e-6 * n ** 2 for n in ns], floor=0.0) - 2.0) < 1e-9
