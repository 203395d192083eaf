"""benchmarks/hvp.py, run briefly on a tiny network: forward-over-reverse (both ways) and
reverse-over-reverse Hessian-vector products agree (the script asserts it) and the ratios to one
gradient are printed, each median inside its printed range."""
import re
import sys

import numpy as np


def test_main_tiny(load_benchmark, monkeypatch, capsys):
    B = load_benchmark("hvp")
    monkeypatch.setattr(B, "CONFIGS", [("tiny 5-4-3 b6", (5, 4, 3), 6, np.float64)])
    monkeypatch.setitem(sys.modules, "torch", None)          # the PyTorch columns are optional: skipped here
    B.main(["--rounds", "2", "--budget", "0.002"])
    out = capsys.readouterr().out.splitlines()
    row = [line for line in out if line.startswith("tiny 5-4-3 b6")]
    assert len(row) == 1
    cells = row[0][len("tiny 5-4-3 b6"):].split()
    assert float(cells[0]) > 0                                # ms per gradient
    for med, rng in re.findall(r"([0-9.]+) \(([0-9.]+-[0-9.]+)\)", row[0]):
        lo, hi = (float(v) for v in rng.split("-"))
        assert 0 < lo <= float(med) <= hi
    assert cells[-2:] == ["-", "-"]                          # no PyTorch
    assert "goal: hvp/grad <= 3" in out[-1]
