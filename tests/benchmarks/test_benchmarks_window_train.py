"""benchmarks/window_train.py, run briefly on a tiny table: the hand-written NumPy step and the
engine's step compute the same losses, and both are measured."""


def test_run_all_agrees_and_measures(load_benchmark, monkeypatch):
    B = load_benchmark("window_train")
    for k, v in {"V": 40, "N": 4, "H": 5, "BATCH": 6, "M": 100}.items():
        monkeypatch.setattr(B, k, v)
    res = B.run_all(0.02)
    assert res["losses_agree"] is True
    assert res["table"] == [40, 4] and res["batch"] == 6
    assert res["numpy_windows_per_s"] > 0 and res["chainrule_windows_per_s"] > 0
