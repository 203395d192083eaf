"""Window classifier (seed 002): every gradient against central finite differences, and the corrections."""

import numpy as np
import pytest

from chainrule.derivations import numerical_gradient, rel_error
from chainrule.derivations import window

TOL = 1e-7

CASES = {
    # name: (n, window C, H, |V|, window indices, labels, reg C, m)
    "single_repeated_word": (3, 3, 4, 6, [1, 3, 1], 1.0, 0.3, 5),
    "single_no_reg": (2, 4, 3, 5, [4, 0, 2, 3], 0.0, 0.0, None),
    "batch_of_1_repeated": (2, 5, 3, 4, [[0, 2, 2, 3, 2]], [0.0], 0.2, None),
    "batch_of_7": (4, 3, 5, 10, "random7", "random7", 0.1, None),
    "tiny": (1, 1, 1, 2, [0], 1.0, 0.5, 3),
}


def _case(name, seed):
    n, C, H, V, idx, y, reg, m = CASES[name]
    rng = np.random.default_rng(seed)
    p = window.init_params(n, C, H, V, rng, scale=0.8)
    p["b2"] = np.array(p["b2"])  # a 0-d array, so that it can be perturbed in place
    if isinstance(idx, str):
        idx = rng.integers(0, V, size=(7, C))
        idx[3, :2] = idx[5, 1]  # make sure some words repeat, inside and across windows
        y = rng.integers(0, 2, size=7).astype(np.float64)
    return p, np.asarray(idx), np.asarray(y, dtype=np.float64), reg, m


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_match_finite_differences(name, seed):
    p, idx, y, reg, m = _case(name, seed)
    g = window.gradients(p, idx, y, C=reg, m=m)
    for key in ("U", "b2", "W", "b1", "L"):
        num = numerical_gradient(lambda: window.loss(p, idx, y, C=reg, m=m), p[key])
        assert np.shape(g[key]) == p[key].shape
        assert rel_error(g[key], num) <= TOL, key


def test_x_gradient_is_eq29_and_maps_to_columns_of_L():
    p, idx, y, reg, m = _case("single_no_reg", 0)
    g = window.gradients(p, idx, y, C=reg)
    fw = window.forward(p, idx)
    d1 = (fw["a2"] - y) * p["U"] * (1 - fw["a1"] ** 2)
    assert rel_error(g["x"], p["W"].T @ d1) <= 1e-14          # eq. (29)
    n = p["L"].shape[0]
    for k, w in enumerate(idx):                                # all distinct: one block per column
        assert np.array_equal(g["L"][:, w], g["x"][k * n:(k + 1) * n])


def test_repeated_word_accumulates():
    p, idx, y, reg, m = _case("single_repeated_word", 0)       # word 1 at positions 0 and 2
    g = window.gradients(p, idx, y, C=reg, m=m)
    n = p["L"].shape[0]
    blocks = g["x"].reshape(3, n)
    assert np.allclose(g["L"][:, 1], blocks[0] + blocks[2], rtol=0, atol=1e-15)
    assert np.allclose(g["L"][:, 3], blocks[1], rtol=0, atol=1e-15)
    words, cols = window.sparse_L_gradient(g, idx)
    assert words.tolist() == [1, 3]
    assert np.array_equal(cols, g["L"][:, [1, 3]])
    untouched = np.setdiff1d(np.arange(p["L"].shape[1]), words)
    assert not np.any(g["L"][:, untouched])


def test_batch_cost_and_gradient_are_means_of_eq7():
    """Eq. (1) is the mean of the single-example costs (7) with the same m: so are the gradients."""
    p, idx, y, reg, _ = _case("batch_of_7", 4)
    m = idx.shape[0]
    singles = [window.gradients(p, idx[i], y[i], C=reg, m=m) for i in range(m)]
    batch = window.gradients(p, idx, y, C=reg)
    assert np.isclose(window.loss(p, idx, y, C=reg),
                      np.mean([window.loss(p, idx[i], y[i], C=reg, m=m) for i in range(m)]), rtol=1e-14)
    for key in ("U", "b2", "W", "b1", "L"):
        assert rel_error(batch[key], np.mean([s[key] for s in singles], axis=0)) <= 1e-14


def test_loss_is_eq1_literally():
    p, idx, y, reg, _ = _case("batch_of_7", 5)
    h = window.forward(p, idx)["a2"]
    m = len(y)
    literal = (np.mean(-y * np.log(h) - (1 - y) * np.log(1 - h))
               + reg / (2 * m) * (np.sum(p["W"] ** 2) + np.sum(p["U"] ** 2)))
    assert np.isclose(window.loss(p, idx, y, C=reg), literal, rtol=1e-13)


# ----------------------------------------------------------------------------- corrections
def test_correction_eq31_U_gradient_is_a_column():
    """(31) adds the row (a2-y)(a1)^T (eq. 14) to the column (C/m)U: as written it is not U's gradient."""
    p, idx, y, reg, m = _case("single_repeated_word", 1)
    H = p["U"].size
    fw = window.forward(p, idx)
    num = numerical_gradient(lambda: window.loss(p, idx, y, C=reg, m=m), p["U"])
    row_a1 = fw["a1"][None, :]                    # (a^(1))^T
    col_U = p["U"][:, None]                       # U in R^H, a column
    literal = (fw["a2"] - y) * row_a1 + reg / m * col_U
    assert literal.shape == (H, H)                # a row plus a column broadcasts to H x H
    with pytest.raises(ValueError):
        rel_error(literal, num)
    # what was meant: the diagonal of the broadcast is the gradient (both terms as columns)
    assert rel_error(np.diag(literal), num) <= TOL
    corrected = (fw["a2"] - y) * fw["a1"] + reg / m * p["U"]
    assert rel_error(corrected, num) <= TOL
    assert rel_error(window.gradients(p, idx, y, C=reg, m=m)["U"], num) <= TOL


def test_correction_L_is_n_by_V():
    """The first paragraph says L in R^{nC x V}; x is C columns of L and must have nC entries, so L is n x |V|."""
    n, C, H, V = 3, 4, 5, 7
    rng = np.random.default_rng(0)
    p = window.init_params(n, C, H, V, rng)
    idx = np.array([0, 6, 2, 6])
    literal = dict(p, L=rng.standard_normal((n * C, V)))   # L in R^{nC x V}
    with pytest.raises(ValueError, match="columns"):
        window.forward(literal, idx)                        # C columns of length nC: x has n*C*C entries
    assert window.window_vectors(literal["L"], idx).size == n * C * C != p["W"].shape[1]
    g = window.gradients(p, idx, 1.0)
    num = numerical_gradient(lambda: window.loss(p, idx, 1.0), p["L"])
    assert g["L"].shape == (n, V) and rel_error(g["L"], num) <= TOL


def test_bad_indices_are_rejected():
    p = window.init_params(2, 3, 2, 4, 0)
    with pytest.raises(ValueError, match="integer"):
        window.loss(p, np.array([0.0, 1.0, 2.0]), 1.0)
    with pytest.raises(ValueError, match="batch size"):
        window.loss(p, np.array([[0, 1, 2]]), [1.0], m=5)
