"""Layer-by-layer backpropagation, seed ``004_bd5a9a5e9da2efd0.txt``, in plain NumPy.

The network is a stack of ``N`` layers, layer ``k`` computing (column vectors;
the document's scalar form is $z^{(k)}_j = \\sum_i w^{(k)}_{ij} y^{(k-1)}_i$, so
the matrix here is ``W[j, i] = w_ij``)

$$z^{(k)} = W^{(k)} y^{(k-1)} + b^{(k)},\\qquad y^{(k)} = f_k(z^{(k)}),\\qquad y^{(0)} = x,$$

and the backward pass is the document's recursion ("Backpropagation" and
"Vector formulation"), for ``k = N, ..., 1``:

$$\\nabla_{z^{(k)}} = f_k'(z^{(k)}) \\odot \\nabla_{y^{(k)}} \\quad\\text{(scalar activations)},\\qquad
  \\nabla_{z^{(k)}} = J_{f_k}^\\top \\nabla_{y^{(k)}} \\quad\\text{(vector activations)},$$
$$\\nabla_{y^{(k-1)}} = W^{(k)\\top} \\nabla_{z^{(k)}},\\qquad
  \\nabla_{W^{(k)}} = \\nabla_{z^{(k)}}\\, y^{(k-1)\\top},\\qquad \\nabla_{b^{(k)}} = \\nabla_{z^{(k)}}.$$

(The document writes gradients as row vectors, $\\nabla_x D = \\nabla_z D\\, J_z(x)$;
its $\\nabla_{W_N} Div = y_{N-1} \\nabla_{z_N} Div$ is therefore the transpose of the
``W``-shaped gradient used here. That is a layout convention, not an error.)

Activations: ``sigmoid``, ``tanh``, ``relu``, ``leaky_relu`` (also the randomised
leaky ReLU: pass the sampled slopes as ``alpha``), ``identity``, ``softmax``
(vector activation with Jacobian ``diag(y) - y y^T``) and ``maxout`` (vector
activation: the max over groups of ``pieces`` consecutive entries of ``z``).

Subgradient conventions at the points where the activation is not differentiable
(the document: "if the function is differentiable at x, the subgradient is the
gradient"; elsewhere any ``v`` with ``f(x) - f(x0) >= v^T (x - x0)`` will do):

* ``relu'(0) = 0`` (the left derivative; any value in ``[0, 1]`` is a subgradient);
* ``leaky_relu'(0) = alpha`` (the left derivative again, so that ``alpha = 0``
  gives the ReLU convention; for ``alpha <= 1`` it is a subgradient);
* ``max``: the incoming gradient goes to the arg-max; when several entries tie
  for the maximum it is **split equally** among them. That is the centroid of
  the subdifferential ``conv{e_i : i tied}``, its element of least norm, and it
  is symmetric in the tied entries (PyTorch's ``amax`` makes the same choice).

Divergences (the document's "Problem setup"), per example, summed over the
columns of a batch:

* L2: $\\mathrm{Div}(Y, d) = \\tfrac12 \\|Y - d\\|^2$;
* binary: $\\mathrm{Div}(Y, d) = -d \\log Y - (1 - d) \\log(1 - Y)$ (summed over outputs);
* multi-class: $\\mathrm{Div}(Y, d) = -\\sum_i d_i \\log y_i$ ($= -\\log y_c$ for a one-hot ``d``).

This module imports nothing from chainrule's engine.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "sigmoid", "tanh", "relu", "leaky_relu", "identity",
    "sigmoid_grad", "tanh_grad", "relu_grad", "leaky_relu_grad", "identity_grad",
    "rrelu_slopes", "SCALAR_ACTIVATIONS",
    "softmax", "softmax_jacobian", "softmax_backward",
    "maxout", "maxout_backward",
    "multiplicative_backward",
    "l2_div", "l2_div_grad", "bce_div", "bce_div_grad", "ce_div", "ce_div_grad", "DIVERGENCES",
    "init_layers", "forward", "backward", "loss", "gradients",
]


# --------------------------------------------------------------------------- scalar activations
def sigmoid(z, alpha=None):
    """$f(z) = 1/(1+e^{-z})$ (overflow-free)."""
    return np.exp(-np.logaddexp(0.0, -z))


def sigmoid_grad(z, y, alpha=None):
    """$f'(z) = y(1-y)$."""
    return y * (1.0 - y)


def tanh(z, alpha=None):
    """$f(z) = \\tanh z$."""
    return np.tanh(z)


def tanh_grad(z, y, alpha=None):
    """$f'(z) = 1 - y^2$."""
    return 1.0 - y * y


def relu(z, alpha=None):
    """$f(z) = \\max(0, z)$."""
    return np.maximum(z, 0.0)


def relu_grad(z, y, alpha=None):
    """Subgradient $f'(z) = [z > 0]$; at exactly ``z = 0`` it is 0 (see module docstring)."""
    return (z > 0).astype(np.float64)


def leaky_relu(z, alpha=0.01):
    """$f(z) = z$ for $z > 0$, $\\alpha z$ otherwise; ``alpha`` may be an array (randomised leaky ReLU)."""
    return np.where(z > 0, z, alpha * z)


def leaky_relu_grad(z, y, alpha=0.01):
    """Subgradient $f'(z) = 1$ for $z > 0$, $\\alpha$ for $z \\le 0$ (so $f'(0) = \\alpha$)."""
    return np.where(z > 0, 1.0, alpha * np.ones_like(z))


def identity(z, alpha=None):
    """$f(z) = z$."""
    return z


def identity_grad(z, y, alpha=None):
    """$f'(z) = 1$."""
    return np.ones_like(z)


def rrelu_slopes(shape, lower: float = 1.0 / 8.0, upper: float = 1.0 / 3.0, rng=None):
    """Training-time slopes of the randomised leaky ReLU: ``alpha ~ U(lower, upper)`` per entry.

    At test time the randomised leaky ReLU uses the fixed slope ``(lower + upper) / 2``.
    The backward pass uses the same sampled ``alpha`` as the forward pass.
    """
    rng = np.random.default_rng(rng)
    return rng.uniform(lower, upper, size=shape)


SCALAR_ACTIVATIONS = {
    "sigmoid": (sigmoid, sigmoid_grad),
    "tanh": (tanh, tanh_grad),
    "relu": (relu, relu_grad),
    "leaky_relu": (leaky_relu, leaky_relu_grad),
    "identity": (identity, identity_grad),
}


# --------------------------------------------------------------------------- vector activations
def softmax(z, axis=0):
    """$y_i = e^{z_i} / \\sum_j e^{z_j}$ along ``axis`` (columns are examples), shifted by the max."""
    e = np.exp(z - np.max(z, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def softmax_jacobian(y):
    """The explicit Jacobian $J_{ji} = \\partial y_j / \\partial z_i = y_i(\\delta_{ij} - y_j)$, i.e. $\\mathrm{diag}(y) - y y^\\top$.

    The document ("Vector activations", softmax): $y_i(1-y_i)$ on the diagonal,
    $-y_i y_j$ off it. ``y`` of shape ``(n,)`` gives ``(n, n)``; ``(n, B)``
    (one column per example) gives ``(B, n, n)``.
    """
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        return np.diag(y) - np.outer(y, y)
    yt = y.T  # (B, n)
    return yt[:, :, None] * np.eye(y.shape[0]) - yt[:, :, None] * yt[:, None, :]


def softmax_backward(y, grad_y, explicit: bool = True):
    """$\\partial Div/\\partial z_i = \\sum_j \\partial Div/\\partial y_j \\; y_i(\\delta_{ij} - y_j)$ (the document's Kronecker-delta line).

    With ``explicit=True`` (default) this multiplies by :func:`softmax_jacobian`,
    as the document does; ``explicit=False`` uses the equivalent
    ``y * (g - sum(g * y))`` (what an engine should do; the two are compared in
    the tests). The Jacobian is symmetric, so ``J^T g = J g``.
    """
    y = np.asarray(y, dtype=np.float64)
    g = np.asarray(grad_y, dtype=np.float64)
    if not explicit:
        return y * (g - np.sum(g * y, axis=0, keepdims=True))
    J = softmax_jacobian(y)
    if y.ndim == 1:
        return J.T @ g
    return np.einsum("bji,jb->ib", J, g)


def maxout(z, pieces: int):
    """Max over consecutive groups: ``y[j] = max(z[j*pieces : (j+1)*pieces])`` (rows; columns are examples).

    With ``pieces == len(z)`` this is the document's "max" function.
    """
    z = np.asarray(z, dtype=np.float64)
    if z.shape[0] % pieces:
        raise ValueError(f"maxout: {z.shape[0]} inputs do not split into groups of {pieces}")
    g = z.reshape((z.shape[0] // pieces, pieces) + z.shape[1:])
    return g.max(axis=1)


def maxout_backward(z, grad_y, pieces: int):
    """Subgradient of :func:`maxout`: ``grad_y[j]`` goes to the arg-max of group ``j``, split equally among ties.

    $$\\frac{\\partial y_j}{\\partial z_i} = \\frac{[z_i = y_j]}{\\#\\{i' \\in \\text{group } j: z_{i'} = y_j\\}}\\quad(i \\in \\text{group } j).$$
    """
    z = np.asarray(z, dtype=np.float64)
    g = z.reshape((z.shape[0] // pieces, pieces) + z.shape[1:])
    mask = (g == g.max(axis=1, keepdims=True)).astype(np.float64)
    mask /= mask.sum(axis=1, keepdims=True)
    gy = np.asarray(grad_y, dtype=np.float64)
    return (mask * gy[:, None, ...]).reshape(z.shape)


def multiplicative_backward(y1, y2, grad_o):
    """Multiplicative combination ``o = y1 ⊙ y2`` (the document's "Multiplicative networks").

    $$\\frac{\\partial Div}{\\partial y^{(k-1)}_j} = \\frac{\\partial o^{(k)}_i}{\\partial y^{(k-1)}_j}
      \\frac{\\partial Div}{\\partial o^{(k)}_i} = y^{(k-1)}_l \\frac{\\partial Div}{\\partial o^{(k)}_i}
      \\quad\\text{for } o_i = y_j y_l.$$

    Returns ``(grad_y1, grad_y2) = (grad_o * y2, grad_o * y1)``.
    """
    return grad_o * y2, grad_o * y1


# --------------------------------------------------------------------------- divergences
def l2_div(y, d):
    """$\\tfrac12 \\|Y - d\\|^2$ (summed over all entries)."""
    return 0.5 * float(np.sum((y - d) ** 2))


def l2_div_grad(y, d):
    """$\\partial Div/\\partial y = y - d$."""
    return y - d


def bce_div(y, d):
    """$-d \\log Y - (1 - d) \\log(1 - Y)$, summed over all entries (``Y`` in (0, 1))."""
    return float(np.sum(-d * np.log(y) - (1.0 - d) * np.log1p(-y)))


def bce_div_grad(y, d):
    """$\\partial Div/\\partial Y = -d/Y + (1-d)/(1-Y)$ (zero at ``Y = d`` only for ``0 < d < 1``)."""
    return -d / y + (1.0 - d) / (1.0 - y)


def ce_div(y, d):
    """$-\\sum_i d_i \\log y_i$ (summed over the columns of a batch)."""
    return float(-np.sum(d * np.log(y)))


def ce_div_grad(y, d):
    """$\\partial Div/\\partial y_i = -d_i / y_i$ (negative in ``y_c``: increasing ``y_c`` lowers the divergence)."""
    return -d / y


DIVERGENCES = {"l2": (l2_div, l2_div_grad), "bce": (bce_div, bce_div_grad), "ce": (ce_div, ce_div_grad)}


# --------------------------------------------------------------------------- the network
def init_layers(sizes, activations, rng=None, scale: float = 0.5, pieces=None, alphas=None):
    """Random layers ``[{'W': (n_k', n_{k-1}), 'b', 'activation', ...}]``.

    ``sizes = [n_0, n_1, ..., n_N]`` are the sizes of ``y^{(k)}``. For a
    ``maxout`` layer ``k`` with ``pieces[k]`` pieces, ``z^{(k)}`` has
    ``n_k * pieces`` entries. ``alphas[k]`` is the slope of a leaky ReLU.
    """
    rng = np.random.default_rng(rng)
    layers = []
    for k, act in enumerate(activations):
        n_in, n_out = sizes[k], sizes[k + 1]
        layer = {"activation": act}
        if act == "maxout":
            p = pieces[k] if pieces is not None else 2
            layer["pieces"] = p
            n_out = n_out * p
        if act == "leaky_relu":
            layer["alpha"] = 0.01 if alphas is None or alphas[k] is None else alphas[k]
        layer["W"] = scale * rng.standard_normal((n_out, n_in))
        layer["b"] = scale * rng.standard_normal(n_out)
        layers.append(layer)
    return layers


def _act_forward(layer, z):
    act = layer["activation"]
    if act == "softmax":
        return softmax(z, axis=0)
    if act == "maxout":
        return maxout(z, layer["pieces"])
    try:
        f = SCALAR_ACTIVATIONS[act][0]
    except KeyError:
        raise ValueError(f"layerwise: unknown activation {act!r}") from None
    return f(z, layer.get("alpha", 0.01))


def _act_backward(layer, z, y, grad_y):
    act = layer["activation"]
    if act == "softmax":
        return softmax_backward(y, grad_y, explicit=True)
    if act == "maxout":
        return maxout_backward(z, grad_y, layer["pieces"])
    fprime = SCALAR_ACTIVATIONS[act][1]
    return fprime(z, y, layer.get("alpha", 0.01)) * grad_y


def forward(layers, x) -> dict:
    """``y^(0) = x``; ``z^(k) = W^(k) y^(k-1) + b^(k)``, ``y^(k) = f_k(z^(k))``.

    ``x`` is ``(n_0,)`` or ``(n_0, B)`` (one column per example). Returns
    ``{'y': [y0, ..., yN], 'z': [z1, ..., zN]}``.
    """
    y = np.asarray(x, dtype=np.float64)
    ys, zs = [y], []
    for layer in layers:
        b = layer["b"] if y.ndim == 1 else layer["b"][:, None]
        z = layer["W"] @ y + b
        y = _act_forward(layer, z)
        zs.append(z)
        ys.append(y)
    return {"y": ys, "z": zs}


def backward(layers, cache, grad_out) -> dict:
    """The document's layer recursion, from ``grad_out = ∂Div/∂y^(N)`` down to ``∂Div/∂y^(0)``.

    For each layer ``k = N..1`` ("For each layer: first compute ∇_y Div, then
    ∇_z Div, finally ∇_W Div, ∇_b Div"):

    * $\\partial Div/\\partial z^{(k)}_i = f_k'(z^{(k)}_i)\\, \\partial Div/\\partial y^{(k)}_i$
      (scalar activation), or $\\sum_j \\partial Div/\\partial y^{(k)}_j\\, \\partial y^{(k)}_j/\\partial z^{(k)}_i$
      (vector activation: softmax, maxout);
    * $\\partial Div/\\partial w^{(k)}_{ij} = y^{(k-1)}_i\\, \\partial Div/\\partial z^{(k)}_j$,
      i.e. ``grad_W = grad_z y^(k-1)^T`` (the document's output-layer line writes
      ``y_i^(N)``; the corrected factor is ``y_i^(N-1)``);
    * $\\partial Div/\\partial b^{(k)} = \\partial Div/\\partial z^{(k)}$;
    * $\\partial Div/\\partial y^{(k-1)}_i = \\sum_j w^{(k)}_{ij}\\, \\partial Div/\\partial z^{(k)}_j$, i.e. ``W^T grad_z``.

    Returns ``{'W': [...], 'b': [...], 'grad_z': [...], 'grad_y': [gy0, ..., gyN]}``
    (lists indexed like ``layers``; ``grad_y[0]`` is the input gradient).
    """
    N = len(layers)
    gW, gb, gz_list = [None] * N, [None] * N, [None] * N
    gy_list = [None] * (N + 1)
    gy = np.asarray(grad_out, dtype=np.float64)
    gy_list[N] = gy
    for k in range(N - 1, -1, -1):
        layer = layers[k]
        z, y, y_prev = cache["z"][k], cache["y"][k + 1], cache["y"][k]
        gz = _act_backward(layer, z, y, gy)
        if gz.ndim == 1:
            gW[k] = np.outer(gz, y_prev)
            gb[k] = gz
        else:
            gW[k] = gz @ y_prev.T
            gb[k] = gz.sum(axis=1)
        gz_list[k] = gz
        gy = layer["W"].T @ gz
        gy_list[k] = gy
    return {"W": gW, "b": gb, "grad_z": gz_list, "grad_y": gy_list}


def loss(layers, x, d, div: str = "l2") -> float:
    """$Div(y^{(N)}, d)$ for the divergence ``div`` in ``{'l2', 'bce', 'ce'}``, summed over a batch."""
    try:
        f = DIVERGENCES[div][0]
    except KeyError:
        raise ValueError(f"layerwise: unknown divergence {div!r}; use one of {sorted(DIVERGENCES)}") from None
    return f(forward(layers, x)["y"][-1], np.asarray(d, dtype=np.float64))


def gradients(layers, x, d, div: str = "l2") -> dict:
    """Gradients of :func:`loss`: forward, $\\partial Div/\\partial y^{(N)}$ from the divergence, then :func:`backward`."""
    cache = forward(layers, x)
    d = np.asarray(d, dtype=np.float64)
    gout = DIVERGENCES[div][1](cache["y"][-1], d)
    return backward(layers, cache, gout)
