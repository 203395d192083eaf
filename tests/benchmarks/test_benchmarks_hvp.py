"""benchmarks/hvp.py, run briefly on a tiny network: forward-over-reverse and reverse-over-reverse
Hessian-vector products agree (the script asserts it) and the ratios are printed."""
import sys

import numpy as np


def test_main_tiny(load_benchmark, monkeypatch, capsys):
    B = load_benchmark("hvp")
    monkeypatch.setattr(B, "CONFIGS", [("tiny 5-4-3 b6", (5, 4, 3), 6, np.float64)])
    monkeypatch.setitem(sys.modules, "torch", None)          # the PyTorch column is optional: skipped here
    B.main(["--rounds", "1", "--budget", "0.005"])
    out = capsys.readouterr().out.splitlines()
    row = [line for line in out if line.startswith("tiny 5-4-3 b6")]
    assert len(row) == 1
    cells = row[0].split()[3:]
    grad_ms, hvp_ms, ratio = (float(v) for v in cells[:3])
    assert grad_ms > 0 and hvp_ms > 0 and abs(ratio - hvp_ms / grad_ms) < 0.05 * ratio + 0.01
    assert cells[-1] == "-"                                   # no PyTorch
    assert out[-1].startswith("goal: hvp/grad")
