"""The second-order examples run, and say what their docstrings claim (small settings)."""
import importlib.util
import pathlib

import numpy as np

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_newton_cg_converges_in_far_fewer_iterations_than_gradient_descent():
    rows = _load("newton_cg").main(["--n", "300", "--max-iter", "300", "--sgd-epochs", "2", "--tol", "1e-5"])
    newton = rows[0]
    assert newton[0] == "newton-cg" and newton[3] < 1e-5 and newton[1] <= 15
    for name, it, f, g, _, _ in rows[1:]:
        assert g > newton[3] and f >= newton[2] - 1e-9        # nobody else got as far
        if name.startswith("gd"):
            assert it >= 20 * newton[1]


def test_gradient_penalty_flattens_the_model_around_the_data():
    rows = _load("gradient_penalty").main(["--epochs", "3", "--lam", "1.0"])
    (lam0, acc0, g0), (lam1, acc1, g1) = rows
    assert lam0 == 0 and lam1 == 1.0
    assert g1 < 0.7 * g0 and acc1 > 0.6 and np.isfinite(g1)
