"""Layer-by-layer backprop (seed 004): activations, softmax Jacobian, subgradients, divergences, corrections."""

import numpy as np
import pytest

from chainrule.derivations import layerwise as lw
from chainrule.derivations import numerical_gradient, rel_error

TOL = 1e-7

NETS = {
    # name: (sizes, activations, divergence, extra)
    "tanh_sigmoid_l2": ([3, 4, 2], ["tanh", "sigmoid"], "l2", {}),
    "deep_softmax_ce": ([4, 5, 5, 5, 5, 3], ["tanh", "sigmoid", "relu", "leaky_relu", "softmax"], "ce", {}),
    "maxout_bce": ([4, 3, 5, 2], ["maxout", "tanh", "sigmoid"], "bce", {"pieces": [3, None, None]}),
    "relu_identity_l2": ([5, 6, 3], ["relu", "identity"], "l2", {}),
    "leaky_softmax_ce": ([3, 6, 4], ["leaky_relu", "softmax"], "ce", {"alphas": [0.2, None]}),
}


def _targets(div, shape, rng):
    if div == "l2":
        return rng.standard_normal(shape)
    if div == "bce":
        return (rng.random(shape) < 0.5).astype(np.float64)
    d = np.zeros(shape)
    cls = rng.integers(0, shape[0], size=shape[1:] or None)
    if d.ndim == 1:
        d[cls] = 1.0
    else:
        d[cls, np.arange(shape[1])] = 1.0
    return d


@pytest.mark.parametrize("batch", [None, 1, 3])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", sorted(NETS))
def test_gradients_match_finite_differences(name, seed, batch):
    sizes, acts, div, extra = NETS[name]
    rng = np.random.default_rng(seed)
    layers = lw.init_layers(sizes, acts, rng, scale=0.8, **extra)
    shape_in = (sizes[0],) if batch is None else (sizes[0], batch)
    shape_out = (sizes[-1],) if batch is None else (sizes[-1], batch)
    x = rng.standard_normal(shape_in)
    d = _targets(div, shape_out, rng)
    g = lw.gradients(layers, x, d, div)
    for k, layer in enumerate(layers):
        for key in ("W", "b"):
            num = numerical_gradient(lambda: lw.loss(layers, x, d, div), layer[key])
            assert rel_error(g[key][k], num) <= TOL, (k, key)
    xx = x.copy()
    num_x = numerical_gradient(lambda: lw.loss(layers, xx, d, div), xx)
    assert rel_error(g["grad_y"][0], num_x) <= TOL


def test_randomised_leaky_relu_uses_the_sampled_slopes():
    rng = np.random.default_rng(3)
    layers = lw.init_layers([3, 5, 2], ["leaky_relu", "identity"], rng)
    layers[0]["alpha"] = lw.rrelu_slopes((5, 1), rng=rng)      # one slope per unit, shared by the batch
    assert np.all((layers[0]["alpha"] >= 1 / 8) & (layers[0]["alpha"] <= 1 / 3))
    x = rng.standard_normal((3, 4))
    d = rng.standard_normal((2, 4))
    g = lw.gradients(layers, x, d, "l2")
    for key in ("W", "b"):
        num = numerical_gradient(lambda: lw.loss(layers, x, d, "l2"), layers[0][key])
        assert rel_error(g[key][0], num) <= TOL


# ----------------------------------------------------------------------------- softmax as a vector activation
def _fd_jacobian(f, z, eps=6e-6):
    cols = []
    for i in range(z.size):
        e = np.zeros_like(z)
        e[i] = eps
        cols.append((f(z + e) - f(z - e)) / (2 * eps))
    return np.stack(cols, axis=1)   # J[j, i] = d f_j / d z_i


@pytest.mark.parametrize("n", [1, 2, 5])
def test_softmax_jacobian_is_diag_minus_outer(n):
    z = np.random.default_rng(n).standard_normal(n)
    y = lw.softmax(z)
    J = lw.softmax_jacobian(y)
    assert np.allclose(J, np.diag(y) - np.outer(y, y), rtol=0, atol=1e-16)
    # the document's case form: y_i(1 - y_i) on the diagonal, -y_i y_j off it
    case = np.array([[y[i] * (1 - y[i]) if i == j else -y[i] * y[j] for i in range(n)] for j in range(n)])
    assert np.allclose(J, case, rtol=0, atol=1e-16)
    assert rel_error(J, _fd_jacobian(lw.softmax, z)) <= TOL


def test_softmax_backward_kronecker_form_and_fast_form_agree():
    rng = np.random.default_rng(0)
    y = lw.softmax(rng.standard_normal((4, 3)), axis=0)
    g = rng.standard_normal((4, 3))
    explicit = lw.softmax_backward(y, g, explicit=True)
    fast = lw.softmax_backward(y, g, explicit=False)
    # sum_j dDiv/dy_j * y_i (delta_ij - y_j), per column
    kron = np.stack([[sum(g[j, b] * y[i, b] * ((i == j) - y[j, b]) for j in range(4)) for i in range(4)]
                     for b in range(3)], axis=1)
    assert rel_error(explicit, kron) <= 1e-14 and rel_error(fast, kron) <= 1e-14
    assert lw.softmax_jacobian(y).shape == (3, 4, 4)


def test_two_class_softmax_is_sigmoid():
    z = np.random.default_rng(1).standard_normal((2, 5))
    assert np.allclose(lw.softmax(z, axis=0)[0], lw.sigmoid(z[0] - z[1]), rtol=1e-14, atol=0)


def test_softmax_then_cross_entropy_gives_y_minus_d():
    rng = np.random.default_rng(2)
    y = lw.softmax(rng.standard_normal(5))
    d = np.eye(5)[3]
    assert rel_error(lw.softmax_backward(y, lw.ce_div_grad(y, d)), y - d) <= 1e-14
    assert np.isclose(lw.ce_div(y, d), -np.log(y[3]))      # -sum d_i log y_i = -log y_c


# ----------------------------------------------------------------------------- subgradients
def test_subgradient_conventions_at_the_kinks():
    z = np.array([-1.0, 0.0, 2.0])
    assert lw.relu_grad(z, lw.relu(z)).tolist() == [0.0, 0.0, 1.0]            # relu'(0) = 0
    assert lw.leaky_relu_grad(z, None, 0.1).tolist() == [0.1, 0.1, 1.0]       # leaky'(0) = alpha
    zt = np.array([1.0, 3.0, 3.0, -2.0, 3.0, 0.5])                            # three-way tie in group 0
    assert lw.maxout(zt, 6).tolist() == [3.0]
    assert np.allclose(lw.maxout_backward(zt, np.array([1.5]), 6), [0, 0.5, 0.5, 0, 0.5, 0])
    g2 = lw.maxout_backward(zt, np.array([1.0, 2.0]), 3)                      # groups (1,3,3), (-2,3,.5)
    assert np.allclose(g2, [0, 0.5, 0.5, 0, 2.0, 0])


@pytest.mark.parametrize("seed", range(3))
def test_chosen_subgradients_satisfy_the_subgradient_inequality(seed):
    """f(x) - f(x0) >= v^T (x - x0) for the chosen v at the kinks (relu, leaky relu with alpha <= 1, max)."""
    rng = np.random.default_rng(seed)
    x0 = np.array([0.0, 0.0, 1.0, -1.0])
    for f, v in [(lw.relu, lw.relu_grad(x0, None)), (lambda z: lw.leaky_relu(z, 0.3), lw.leaky_relu_grad(x0, None, 0.3))]:
        for _ in range(50):
            x = x0 + rng.standard_normal(4)
            assert np.all(f(x) - f(x0) >= v * (x - x0) - 1e-15)
    z0 = np.array([2.0, 2.0, -1.0, 2.0])
    v = lw.maxout_backward(z0, np.array([1.0]), 4)
    for _ in range(50):
        z = z0 + rng.standard_normal(4)
        assert lw.maxout(z, 4)[0] - lw.maxout(z0, 4)[0] >= v @ (z - z0) - 1e-15


def test_multiplicative_combination():
    rng = np.random.default_rng(4)
    y1, y2, c = rng.standard_normal(3), rng.standard_normal(3), rng.standard_normal(3)
    g1, g2 = lw.multiplicative_backward(y1, y2, c)            # Div = c . (y1 * y2)
    assert rel_error(g1, numerical_gradient(lambda: float(c @ (y1 * y2)), y1)) <= TOL
    assert rel_error(g2, numerical_gradient(lambda: float(c @ (y1 * y2)), y2)) <= TOL


# ----------------------------------------------------------------------------- divergences
@pytest.mark.parametrize("div", ["l2", "bce", "ce"])
def test_divergence_derivatives(div):
    rng = np.random.default_rng(5)
    y = rng.uniform(0.05, 0.95, 4)
    d = rng.uniform(0, 1, 4)
    f, fp = lw.DIVERGENCES[div]
    assert rel_error(fp(y, d), numerical_gradient(lambda: f(y, d), y)) <= TOL


def test_bce_derivative_at_Y_equal_d():
    """The note "the derivative is not zero even when d = Y" holds for hard labels only."""
    d_soft = np.array([0.3])
    assert abs(lw.bce_div_grad(d_soft, d_soft)[0]) < 1e-15            # soft label: zero at Y = d
    Y = np.array([1 - 1e-9])
    assert np.isclose(lw.bce_div_grad(Y, np.array([1.0]))[0], -1.0)  # d = 1, Y -> 1: slope -> -1, not 0


# ----------------------------------------------------------------------------- corrections
def test_correction_output_layer_weight_factor_is_y_N_minus_1():
    """Written: dz_j^(N)/dw_ij^(N) = y_i^(N). Correct: y_i^(N-1) (the next bullet for layer N-1 has it right)."""
    rng = np.random.default_rng(6)
    layers = lw.init_layers([3, 3, 3], ["tanh", "sigmoid"], rng)   # square, so that y^(N) fits w^(N)
    x, d = rng.standard_normal(3), rng.standard_normal(3)
    cache = lw.forward(layers, x)
    g = lw.backward(layers, cache, lw.l2_div_grad(cache["y"][-1], d))
    num = numerical_gradient(lambda: lw.loss(layers, x, d), layers[-1]["W"])
    gz = g["grad_z"][-1]
    literal = np.outer(gz, cache["y"][2])       # W[j, i] = w_ij; factor y_i^(N)
    corrected = np.outer(gz, cache["y"][1])     # factor y_i^(N-1)
    assert rel_error(literal, num) > 1e-2
    assert rel_error(corrected, num) <= TOL


def test_convention_row_gradients_give_W_transposed():
    """'grad_W Div = y_{N-1} grad_z Div' with row-vector gradients is (dDiv/dW)^T: a layout, not an error."""
    rng = np.random.default_rng(7)
    layers = lw.init_layers([4, 2], ["sigmoid"], rng)
    x, d = rng.standard_normal(4), rng.standard_normal(2)
    cache = lw.forward(layers, x)
    gz = lw.backward(layers, cache, lw.l2_div_grad(cache["y"][-1], d))["grad_z"][0]
    doc = np.outer(cache["y"][0], gz)           # column y_{N-1} times row grad_z
    num = numerical_gradient(lambda: lw.loss(layers, x, d), layers[0]["W"])
    assert doc.shape == (4, 2) != num.shape
    assert rel_error(doc.T, num) <= TOL
