"""benchmarks/rntn_train.py, run briefly on real SST trees: every path timed, the hand-written
level-batched NumPy step agrees with the engine, the PyTorch per-node path computes chainrule's
loss and gradients."""
import json

import numpy as np
import pytest

from chainrule.data import sst
from chainrule.models import rntn as R


@pytest.fixture(scope="module")
def trees_and_vocab():
    dev = sst.load("dev")[:3]
    return dev, R.Vocab.from_trees(dev[:2])


def test_runs_and_the_hand_written_step_agrees(load_benchmark, capsys):
    """Tiny sizes, PyTorch path off (the next test covers it): the three NumPy-based paths are timed,
    the hand-written level-batched step agrees with the engine, and both goals are reported."""
    B = load_benchmark("rntn_train")
    assert B.main(["--batches", "2", "--batch-size", "2", "--dim", "6", "--rounds", "3", "--no-torch", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["batch_size"] == 2 and out["dim"] == 6
    assert set(out["trees_per_s"]) == {"chainrule batched", "numpy batched (hand)", "chainrule per-node"}
    for row in out["trees_per_s"].values():
        assert row["fwd+bwd"] > 0 and row["step"] > 0
    err = out["hand_vs_engine_rel_error"]
    assert err["loss"] < 1e-4 and err["grad"] < 1e-4
    assert out["torch"]["vs_chainrule_float64_rel_error"] is None and "skipped" in out["torch"]["note"]
    assert [g["goal"] for g in out["goals_step"].values()] == [0.7, 5.0]
    # batched paths run every round, per-node paths once; ratios are paired per round
    assert [len(out["trees_per_s_by_round"][k]["step"]) for k in out["trees_per_s"]] == [3, 3, 1]
    g = out["goals_step"]["chainrule batched vs hand-written batched NumPy"]
    assert g["rounds"] == 3 and g["range"][0] <= g["ratio"] <= g["range"][1]
    assert B.main(["--batches", "2", "--batch-size", "2", "--dim", "6", "--rounds", "2", "--no-torch", "--model", "rnn"]) == 0
    assert "goal: chainrule batched vs chainrule per-node >= 5x" in capsys.readouterr().out


def test_torch_per_node_path_matches_chainrule(load_benchmark, trees_and_vocab):
    """The per-node PyTorch path (only where PyTorch is installed) computes chainrule's loss and
    gradients in float64, and its hand-written AdaGrad updates the same way."""
    pytest.importorskip("torch")
    trees, vocab = trees_and_vocab
    B = load_benchmark("rntn_train")
    batch = R.TreeDataset(trees, vocab).batch(np.arange(len(trees)))
    for kind in ("rntn", "rnn"):
        err = B.check_torch(kind, 5, vocab, batch)
        assert err["loss"] < 1e-12 and err["grad"] < 1e-10 and err["params_after_2_updates"] < 1e-10, err
    _, _, paths, note = B.make_paths("rntn", 5, vocab, np.float32)
    assert "torch per-node" in paths and note.startswith("torch ")
