"""benchmarks/tree_plans.py, run briefly: the schedule statistics count every minibatch, the padded
batches are what a bucketed plan would replay (the real rows' vectors unchanged), every path is timed."""
import json

import numpy as np

from chainrule.data import sst
from chainrule.models import rntn as R


def test_padded_batch_keeps_the_real_rows_and_rounds_every_level(load_benchmark):
    B = load_benchmark("tree_plans")
    trees = sst.load("dev")[:6]
    vocab = R.Vocab.from_trees(trees)
    batch = R.TreeDataset(trees, vocab).batch(np.arange(6))
    padded = B.pad_batch(batch, 8, 4)
    n0, widths = B.bucket(batch, 8, 4)
    assert [len(c) for c in padded.children] == list(widths) and len(widths) % 4 == 0
    assert all(w % 8 == 0 for w in widths) and padded.bounds[1] % 8 == 0 and padded.bounds[1] >= n0
    model = R.build_model({"model": "rntn", "dim": 4}, vocab, seed=0, dtype=np.float64)
    real, _ = R.forward_batched(model.params(), batch)
    pad, _ = R.forward_batched(model.params(), padded)
    new = np.concatenate([np.arange(batch.bounds[1])] + [padded.bounds[h] + np.arange(len(c))
                                                        for h, c in enumerate(batch.children, start=1)])
    np.testing.assert_allclose(pad.data[new], real.data, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(padded.labels[new], batch.labels)


def test_runs_briefly(load_benchmark, capsys):
    B = load_benchmark("tree_plans")
    assert B.main(["--train-trees", "60", "--epochs", "2", "--rounds", "2", "--block", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    st = out["schedules"]
    assert st["minibatches"] == 4 and st["exact"]["distinct"] + st["exact"]["repeat_any"] >= 4
    for v in st["bucketed"].values():
        assert v["padding"] >= 1.0 and v["distinct"] <= st["minibatches"]
    assert set(out["timing"]) == {"hand NumPy", "eager", "compiled, new schedules", "eager, 4 cycled",
                                  "compiled, 4 cycled", "eager, padded", "compiled, padded, cycled"}
    for v in out["timing"].values():
        assert v["us"] > 0 and v["range"][0] <= v["vs_hand"] <= v["range"][1]
    assert out["compile_stats"]["compiled, new schedules"]["replays"] == 0
    assert out["compile_stats"]["compiled, 4 cycled"]["replays"] > 0
