"""benchmarks/page_faults.py: one implementation alone in a process, its time and page faults a step."""
import pytest


@pytest.fixture
def bench(load_benchmark):
    return load_benchmark("page_faults")


def test_child_runs_one_implementation_and_counts_faults(bench):
    res = bench.child("mlp_small", "chainrule compiled", 0.01)
    assert res["steps"] >= 3 and res["us_per_step"] > 0
    assert res["faults_per_step"] >= 0 and res["warmup_faults"] >= 0
    assert bench.peers._torch() is None                  # the peers stay out of the measured process


def test_a_round_in_child_processes_prints_every_implementation(bench, capsys):
    assert bench.main(["--workloads", "chain", "--rounds", "1", "--seconds", "0.01"]) == 0
    out = capsys.readouterr().out
    for k in bench.IMPLS:
        assert out.count(k) == 2                         # once per malloc setting


def test_unknown_workload_is_refused(bench):
    with pytest.raises(SystemExit):
        bench.main(["--workloads", "nope"])
