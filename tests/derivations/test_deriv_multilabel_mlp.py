"""Multi-label two-layer sigmoid net, "Alg 1" (seed 003): finite differences and the corrections."""

import numpy as np
import pytest

from chainrule.derivations import multilabel_mlp as mlp
from chainrule.derivations import numerical_gradient, rel_error

TOL = 1e-7


def _problem(N, D, H, K, seed, scale=0.7):
    rng = np.random.default_rng(seed)
    p = mlp.init_params(D, H, K, rng, scale=scale)
    X = rng.standard_normal((N, D))
    Y = (rng.random((N, K)) < 0.5).astype(np.float64)
    return p, X, Y


SHAPES = [(1, 3, 4, 2), (6, 4, 5, 3), (9, 2, 3, 1), (5, 5, 2, 4)]


@pytest.mark.parametrize("lam", [0.0, 0.05])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("shape", SHAPES)
def test_gradients_match_finite_differences(shape, seed, lam):
    p, X, Y = _problem(*shape, seed)
    g = mlp.gradients(p, X, Y, lam=lam)
    for key in ("W1", "b1", "W2", "b2"):
        num = numerical_gradient(lambda: mlp.loss(p, X, Y, lam=lam), p[key])
        assert rel_error(g[key], num) <= TOL, key


def test_soft_labels():
    p, X, _ = _problem(4, 3, 3, 2, 7)
    Y = np.random.default_rng(7).random((4, 2))
    g = mlp.gradients(p, X, Y, lam=0.1)
    for key in p:
        assert rel_error(g[key], numerical_gradient(lambda: mlp.loss(p, X, Y, lam=0.1), p[key])) <= TOL


def test_lines_5_and_8_simplify_to_a3_minus_y():
    p, X, Y = _problem(6, 4, 5, 3, 2)
    s = mlp.gradients(p, X, Y, return_signals=True)
    a3 = mlp.forward(p, X)["a3"]
    assert rel_error(s["eta3"] * a3 * (1 - a3), a3 - Y) <= 1e-13      # eta3 . phi(z3)(1 - phi(z3))
    assert rel_error(s["delta3"], a3 - Y) == 0.0


def test_loss_is_the_documents_formula():
    p, X, Y = _problem(6, 4, 5, 3, 3)
    a3 = mlp.forward(p, X)["a3"]
    literal = np.sum(-Y * np.log(a3) - (1 - Y) * np.log(1 - a3)) / X.shape[0]
    assert np.isclose(mlp.loss(p, X, Y), literal, rtol=1e-13)


# ----------------------------------------------------------------------------- corrections
def test_correction_dz3_dW2_is_delta_gamma_alpha():
    """Written: dz_g/dW_ab = sum_t d_at d_tb a_t = d_ab a_b. Correct: d_ga a_b, so dJ/dW_ab = delta3_a a2_b."""
    p, X, Y = _problem(1, 3, 3, 3, 4)          # K = H so that the Kronecker d_ab is defined
    fw = mlp.forward(p, X)
    delta3, a2 = (fw["a3"] - Y)[0], fw["a2"][0]
    K, H = p["W2"].shape
    num = numerical_gradient(lambda: mlp.loss(p, X, Y), p["W2"])
    # literal: sum_g delta3_g * d_ab a2_b  (a diagonal matrix)
    literal = np.sum(delta3) * np.eye(K, H) * a2[None, :]
    assert rel_error(literal, num) > 1e-2
    corrected = np.einsum("g,ga,b->ab", delta3, np.eye(K), a2)   # sum_g delta3_g d_ga a2_b
    assert rel_error(corrected, num) <= TOL
    assert rel_error(np.outer(delta3, a2), num) <= TOL          # the document's final line 11


def test_correction_line17_is_a_product_not_a_difference():
    """Written: delta2 = eta2 - phi(z2) . phi'(z2). Correct: delta2 = eta2 (.) phi'(z2)."""
    p, X, Y = _problem(5, 4, 3, 2, 5)
    fw = mlp.forward(p, X)
    s = mlp.gradients(p, X, Y, return_signals=True)
    phi = fw["a2"]
    dphi = phi * (1 - phi)
    num = numerical_gradient(lambda: mlp.loss(p, X, Y), p["W1"])
    N = X.shape[0]
    literal = s["eta2"] - phi * dphi
    assert rel_error(literal.T @ X / N, num) > 1e-2
    corrected = s["eta2"] * dphi
    assert rel_error(corrected.T @ X / N, num) <= TOL
    assert rel_error(corrected, s["delta2"]) <= 1e-15


def test_correction_lambda_term_belongs_to_the_regularised_objective():
    """(*) writes dJ~/dW = (1/N) sum_i dJ~^i/dW + lambda W; J~ as defined has no penalty.

    The lambda W term is the gradient of J = J~ + (lambda/2)(|W1|^2 + |W2|^2).
    """
    p, X, Y = _problem(6, 4, 5, 3, 6)
    lam = 0.3
    star = mlp.gradients(p, X, Y, lam=lam)

    def j_tilde():
        return mlp.loss(p, X, Y, lam=0.0)

    def j_full():
        return j_tilde() + lam / 2 * (np.sum(p["W1"] ** 2) + np.sum(p["W2"] ** 2))

    def j_lam_no_half():
        return j_tilde() + lam * (np.sum(p["W1"] ** 2) + np.sum(p["W2"] ** 2))

    for key in ("W1", "W2"):
        assert rel_error(star[key], numerical_gradient(j_tilde, p[key])) > 1e-2
        assert rel_error(star[key], numerical_gradient(j_lam_no_half, p[key])) > 1e-2
        assert rel_error(star[key], numerical_gradient(j_full, p[key])) <= TOL
    # the biases carry no lambda term
    for key in ("b1", "b2"):
        assert rel_error(star[key], numerical_gradient(j_full, p[key])) <= TOL
    assert np.isclose(mlp.loss(p, X, Y, lam=lam), j_full(), rtol=1e-14)


def test_shape_errors_name_the_shapes():
    p, X, Y = _problem(3, 4, 2, 2, 0)
    with pytest.raises(ValueError, match=r"\(N, D=4\)"):
        mlp.loss(p, X[:, :3], Y)
    with pytest.raises(ValueError, match="K=2"):
        mlp.loss(p, X, Y[:, :1])
