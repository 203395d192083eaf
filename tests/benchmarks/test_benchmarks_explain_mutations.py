"""benchmarks/explain_mutations.py: single-slip mutants of the five seed hand derivations
(chainrule.explain.hand) -- check_derivation localises each first wrong line and names the slip,
and raises no false alarm on the unmutated five."""
import io

from chainrule.explain import hand as H


def test_mutation_benchmark_meets_its_goals(load_benchmark):
    M = load_benchmark("explain_mutations")
    rows, false_alarms = M.run()
    res = M.summarise(rows, false_alarms, out=io.StringIO())
    assert res["mutants"] >= 100
    assert not false_alarms
    assert res["localised"] >= 0.95 and res["kind"] >= 0.80
    kinds = set(res["by_kind"])
    assert {"transpose", "missing f′", "wrong f′", "sign", "missing 1/m", "extra 1/m", "missing regularisation",
            "extra regularisation", "missing sum over consumers", "swapped children"} <= kinds
    assert set(res["by_seed"]) == set(H.SEEDS)
