"""The checkers themselves: gradcheck must pass correct ops, catch a wrong backward rule with a useful
message, work in float64 whatever it is given, and tell kinks from bugs; check_gradient must accept a
correct hand-derived gradient and reject wrong ones (a missing factor, a transposed term)."""
import re
import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule.gradcheck import gradcheck_params
from chainrule.ops import rules as R
from chainrule.tensor import apply

RNG = np.random.default_rng(11)


def T(a, rg=True, dtype=np.float64):
    return cr.tensor(np.asarray(a, dtype=dtype), requires_grad=rg)


@pytest.fixture
def bad_square():
    """z = x², with the backward rule missing its factor 2."""
    def fwd(x):
        """z = x²   |   x̄ = g ⊙ x   (WRONG on purpose: should be 2 g ⊙ x)"""
        return x * x, x
    op = cr.ops.defop("bad_square", fwd, lambda g, x, n: (g * x,))
    yield lambda t: apply(op, (t,))
    R.RULES.pop("bad_square", None)          # keep the global table clean for other tests


@pytest.fixture
def bad_relu():
    """relu whose subgradient at 0 is 2 (outside the valid interval [0, 1])."""
    def fwd(x):
        """z = max(x, 0)   |   x̄ = g ⊙ ([x > 0] + 2[x = 0])   (WRONG at 0 on purpose)"""
        return np.maximum(x, 0), x
    op = cr.ops.defop("bad_relu", fwd, lambda g, x, n: (g * ((x > 0) + 2.0 * (x == 0)),))
    yield lambda t: apply(op, (t,))
    R.RULES.pop("bad_relu", None)


# --------------------------------------------------------------------------- gradcheck
def test_gradcheck_true_on_correct_functions():
    x, y = T(RNG.standard_normal((3, 4))), T(RNG.standard_normal(4))
    assert cr.gradcheck(lambda x, y: (cr.tanh(x) * y).sum(), x, y) is True
    assert cr.gradcheck(lambda x, y: cr.softmax(x @ y[:, None] + y, axis=0), x, y) is True  # non-scalar output
    # a constant (non-requires-grad) input is simply not checked
    c = T(RNG.standard_normal(4), rg=False)
    assert cr.gradcheck(lambda x, c: x * c, x, c) is True


def test_gradcheck_raises_with_a_detailed_message(bad_square):
    x = T([1.0, -2.0, 3.0])
    with pytest.raises(cr.GradcheckError) as ei:
        cr.gradcheck(lambda x: bad_square(x).sum(), x)
    msg = str(ei.value)
    assert "max abs err" in msg and "max rel err" in msg
    m = re.search(r"max abs err ([0-9.e+-]+), max rel err ([0-9.e+-]+), worst at index \((\d+),\): "
                  r"analytic ([0-9.e+-]+), finite differences ([0-9.e+-]+)", msg)
    assert m, msg
    assert float(m.group(1)) == pytest.approx(3.0, rel=1e-3)       # printed to 4 digits; |3 − 6|
    assert float(m.group(2)) == pytest.approx(2 * 3 / 9, rel=1e-3)  # symmetric relative error
    assert m.group(3) == "2"
    assert float(m.group(4)) == pytest.approx(3.0)
    assert float(m.group(5)) == pytest.approx(6.0, rel=1e-6)
    assert "MISMATCH" in msg
    assert isinstance(ei.value, AssertionError)                    # pytest shows it as a failed assert
    assert not ei.value.report.ok
    # raise_on_error=False returns False instead
    assert cr.gradcheck(lambda x: bad_square(x).sum(), x, raise_on_error=False) is False


def test_gradcheck_catches_a_wrong_rule_behind_a_non_scalar_output(bad_square):
    x = T(RNG.uniform(0.5, 2.0, (2, 3)))
    with pytest.raises(cr.GradcheckError):
        cr.gradcheck(lambda x: bad_square(x) + 1.0, x)         # output (2, 3): random projection


def test_gradcheck_names_the_inputs(bad_square):
    x = T([1.0, 2.0])
    x.name = "weights"
    y = T([1.0, 2.0])
    with pytest.raises(cr.GradcheckError) as ei:
        cr.gradcheck(lambda x, y: (bad_square(x) * y).sum(), x, y)
    lines = str(ei.value).splitlines()
    assert any(line.startswith("weights") and "MISMATCH" in line for line in lines)
    assert any(line.startswith("input 1") and "MISMATCH" not in line for line in lines)


def test_gradcheck_float32_warns_and_checks_in_float64():
    seen = []

    def f(x):
        seen.append(x.dtype)
        return (x * x * x).sum()
    x = cr.tensor(RNG.standard_normal(4).astype(np.float32), requires_grad=True)
    with pytest.warns(UserWarning, match="float32.*float64"):
        assert cr.gradcheck(f, x) is True
    assert seen and all(d == np.float64 for d in seen)
    assert x.dtype == np.float32 and x.grad is None          # the caller's tensor is left alone


def test_gradcheck_random_direction_mode(bad_square):
    x = T(RNG.standard_normal((20, 30)))
    W = T(RNG.standard_normal((30, 5)))
    assert cr.gradcheck(lambda x, W: cr.tanh(x @ W), x, W, mode="random", n_directions=4) is True
    with pytest.raises(cr.GradcheckError, match="directional"):
        cr.gradcheck(lambda x: bad_square(x).sum(), T(RNG.uniform(1, 2, 50)), mode="random")
    with pytest.raises(ValueError, match="mode"):
        cr.gradcheck(lambda x: x.sum(), T([1.0]), mode="sideways")


def test_gradcheck_kinks_are_not_failures():
    x = T([-1.0, 0.0, 0.0, 2.0])                               # relu at exactly 0
    assert cr.gradcheck(cr.relu, x) is True
    assert cr.gradcheck(lambda x: cr.relu(x).sum(), x) is True
    assert cr.gradcheck(cr.abs, x) is True
    assert cr.gradcheck(lambda x: cr.leaky_relu(x, 0.1), x) is True
    t = T([1.0, 3.0, 3.0, -2.0])                               # a tie for the maximum
    assert cr.gradcheck(cr.max, t) is True
    assert cr.gradcheck(lambda t: cr.min(t * -1.0), t) is True
    assert cr.gradcheck(lambda a, b: cr.maximum(a, b), T([1.0, 2.0]), T([1.0, 0.0])) is True
    assert cr.gradcheck(lambda x: cr.clip(x, -1.0, 1.0), T([-1.0, 1.0, 0.5])) is True


def test_gradcheck_reports_kinks_in_its_message(bad_square):
    # the relu kink at index 1 is listed as skipped; the wrong square elsewhere still fails
    x = T([2.0, 0.0, -1.0])
    with pytest.raises(cr.GradcheckError) as ei:
        cr.gradcheck(lambda x: (bad_square(x) + cr.relu(x)).sum(), x)
    msg = str(ei.value)
    assert "non-differentiable point(s) skipped, e.g. index (1,)" in msg
    assert re.search(r"worst at index \(0,\)", msg)


def test_gradcheck_invalid_subgradient_at_a_kink_fails(bad_relu):
    x = T([-1.0, 0.0, 2.0])
    with pytest.raises(cr.GradcheckError, match=r"index \(1,\)"):
        cr.gradcheck(lambda x: bad_relu(x).sum(), x)
    # away from 0 the same rule is right
    assert cr.gradcheck(lambda x: bad_relu(x).sum(), T([-1.0, 0.5, 2.0])) is True


def test_gradcheck_argument_errors():
    with pytest.raises(ValueError, match="requires grad"):
        cr.gradcheck(lambda x: x.sum(), T([1.0], rg=False))
    with pytest.raises(TypeError, match="Tensor"):
        cr.gradcheck(lambda x: 1.0, T([1.0]))


def test_gradcheck_output_independent_of_input():
    x = T([1.0, 2.0])
    assert cr.gradcheck(lambda x: cr.tensor(3.0) * 2.0, x) is True


# --------------------------------------------------------------------------- check_gradient
N, D = 12, 3
X = RNG.standard_normal((N, D))
Y = (RNG.random(N) > 0.5).astype(np.float64)


def logreg_loss(p):
    """Mean logistic loss written with cr ops: works on arrays and on tensors."""
    z = X @ p["w"] + p["b"]
    return (cr.softplus(z) - z * Y).mean()


def logreg_grad(p):
    s = 1 / (1 + np.exp(-(X @ p["w"] + p["b"])))
    return {"w": X.T @ (s - Y) / N, "b": np.mean(s - Y)}


def test_check_gradient_passes_a_correct_gradient_with_the_engine_column():
    params = {"w": RNG.standard_normal(D), "b": np.array(0.3)}
    rep = cr.check_gradient(logreg_loss, logreg_grad, params)
    assert isinstance(rep, cr.GradcheckReport) and rep.ok
    refs = [(c.name, c.reference) for c in rep.comparisons]
    assert ("w", "engine") in refs and ("b", "engine") in refs       # the engine column was used
    assert ("w", "finite differences") in refs
    assert rep.max_rel() < 1e-5
    assert "engine" in str(rep)


def test_check_gradient_rejects_a_missing_factor():
    params = {"w": RNG.standard_normal(D), "b": np.array(0.3)}

    def no_mean(p):
        g = logreg_grad(p)
        return {"w": g["w"] * N, "b": g["b"]}                          # forgot the 1/N
    with pytest.raises(cr.GradcheckError) as ei:
        cr.check_gradient(logreg_loss, no_mean, params)
    msg = str(ei.value)
    assert "w vs finite differences" in msg and "w vs engine" in msg and "MISMATCH" in msg
    assert "b vs finite differences" in msg
    rep = cr.check_gradient(logreg_loss, no_mean, params, raise_on_error=False)
    assert not rep.ok


def test_check_gradient_rejects_a_transposed_term():
    K = D                                        # square weights, so a transposed gradient fits the shape
    Xs = RNG.standard_normal((8, D))
    ys = RNG.integers(0, K, size=8)

    def loss(p):
        return cr.softmax_cross_entropy(Xs @ p["W"], ys)

    def grad(p):
        z = Xs @ p["W"]
        s = np.exp(z - z.max(1, keepdims=True))
        s /= s.sum(1, keepdims=True)
        s[np.arange(8), ys] -= 1
        return {"W": Xs.T @ s / 8}

    def grad_transposed(p):
        return {"W": grad(p)["W"].T}
    params = {"W": RNG.standard_normal((D, K))}
    assert cr.check_gradient(loss, grad, params).ok
    with pytest.raises(cr.GradcheckError, match="MISMATCH"):
        cr.check_gradient(loss, grad_transposed, params)


def test_check_gradient_with_a_pure_numpy_loss():
    def loss(p):
        z = X @ p["w"] + p["b"]
        return np.mean(np.logaddexp(0, z) - z * Y)                      # np.logaddexp refuses tensors
    params = {"w": RNG.standard_normal(D), "b": np.array(-0.2)}
    rep = cr.check_gradient(loss, logreg_grad, params)
    assert rep.ok
    assert all(c.reference == "finite differences" for c in rep.comparisons)   # engine column skipped
    with pytest.raises(cr.GradcheckError):
        cr.check_gradient(loss, lambda p: {"w": logreg_grad(p)["w"], "b": 2 * logreg_grad(p)["b"]}, params)


def test_check_gradient_list_params_float32_and_shape_errors():
    A = RNG.standard_normal((4, 3))

    def loss(ps):
        return 0.5 * ((A @ ps[0] - ps[1]) ** 2).sum()

    def grad(ps):
        r = A @ ps[0] - ps[1]
        return [A.T @ r, -r]
    ps = [RNG.standard_normal(3).astype(np.float32), RNG.standard_normal(4)]
    with pytest.warns(UserWarning, match="float32"):
        rep = cr.check_gradient(loss, grad, ps)
    assert rep.ok and [c.name for c in rep.comparisons][0] == "0"
    with pytest.raises(cr.GradcheckError, match="shape"):
        cr.check_gradient(loss, lambda ps: [grad(ps)[0][:2], grad(ps)[1]], [p.astype(np.float64) for p in ps])
    with pytest.raises(TypeError, match="None"):
        cr.check_gradient(loss, lambda ps: None, [p.astype(np.float64) for p in ps])


def test_check_gradient_does_not_modify_params():
    params = {"w": RNG.standard_normal(D), "b": np.array(0.3)}
    keep = {k: v.copy() for k, v in params.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cr.check_gradient(logreg_loss, logreg_grad, params)
    for k in params:
        np.testing.assert_array_equal(params[k], keep[k])


def test_gradcheck_params_of_a_small_model():
    W = T(RNG.standard_normal((3, 2)))
    b = T(RNG.standard_normal(2))
    x = RNG.standard_normal((5, 3))
    rep = gradcheck_params(lambda: cr.tanh(cr.tensor(x) @ W + b).sum(), [("W", W), ("b", b)])
    assert rep.ok and W.grad is None and b.grad is None
    rep = gradcheck_params(lambda: cr.tanh(cr.tensor(x) @ W + b).sum(), [("W", W), ("b", b)], max_elements=2)
    assert rep.ok
