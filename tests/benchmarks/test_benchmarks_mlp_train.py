"""benchmarks/mlp_train.py, run briefly on a tiny network: the hand-written NumPy step and the
engine's step compute the same losses, and each implementation is measured."""


def test_losses_agree_and_each_implementation_is_measured(load_benchmark, monkeypatch):
    B = load_benchmark("mlp_train")
    monkeypatch.setattr(B, "CONFIGS", [((8, 6, 3), 4)])
    assert B.losses_agree(0) is True
    for impl in ("numpy", "chainrule"):
        assert B.child(impl, 0, 0.02) > 0
