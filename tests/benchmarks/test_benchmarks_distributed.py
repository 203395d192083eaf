"""benchmarks/distributed.py's analysis (the MPI runs themselves need the machine's mpiexec and are
the tests/distributed suite's): per-round results summarised into medians and efficiencies, the
report printed, and the network projection's ring-allreduce cost."""
import pytest


def _round(steps_per_s, batch, n):
    r = {"desc": "MLP digits [64, 8, 10]", "params": 610, "dense_param_bytes": 2440, "steps_per_s": steps_per_s,
         "examples_per_s": steps_per_s * batch, "batch": batch}
    if n > 1:
        r.update(reduce_s_per_step=1e-4, collective_s_per_step=2e-4, bytes_per_step=2440, dense_grad_bytes=2440)
    return r


def test_summary_report_and_projection(load_benchmark, capsys):
    B = load_benchmark("distributed")
    modes = [("1 process, batch B", 1, None), ("2 ranks, B/2 each (strong)", 2, None)]
    results = {("mlp", modes[0][0]): [_round(100.0, 64, 1), _round(120.0, 64, 1), _round(110.0, 64, 1)],
               ("mlp", modes[1][0]): [_round(150.0, 32, 2), _round(170.0, 32, 2), _round(160.0, 32, 2)]}
    out = B.summarize(results, [("mlp", 64)], modes)
    m = out["models"]["mlp"]["modes"]
    assert out["rounds"] == 3
    assert m["1 process, batch B"]["steps_per_s"] == 110.0
    assert m["1 process, batch B"]["compute_ms_per_step"] == pytest.approx(1e3 / 110.0)
    # efficiency = examples/s on 2 ranks / (2 x examples/s of one process)
    assert m["2 ranks, B/2 each (strong)"]["efficiency"] == pytest.approx(160.0 * 32 / (2 * 110.0 * 64))
    B.report(out)
    assert "MLP digits [64, 8, 10]: 610 parameters" in capsys.readouterr().out
    rows = B.projection(out, nodes=(2, 8))
    assert len(rows) == 2 * len(B.NETWORKS)
    for r in rows:
        assert 0 < r["efficiency_no_overlap"] <= r["efficiency_full_overlap"] <= 1
    # ring allreduce: 2(N-1)/N S/beta + 2(N-1) alpha
    assert B.ring_seconds(1000, 2, 1e-6, 1e9) == pytest.approx(1000 / 1e9 + 2e-6)
    assert B.allgather_seconds(1000, 4, 1e-6, 1e9) == pytest.approx(3 * 1000 / 1e9 + 3e-6)
