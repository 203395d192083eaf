"""Multi-label two-layer sigmoid network ("Alg 1"), seed ``003_2a213f0124292f46.txt``.

The document's network (``phi`` is the sigmoid, ``a^{(1)} = X`` the input):

$$z^{(2)} = W^{(1)} a^{(1)} + b^{(1)},\\quad a^{(2)} = \\varphi(z^{(2)}),\\quad
  z^{(3)} = W^{(2)} a^{(2)} + b^{(2)},\\quad a^{(3)} = \\varphi(z^{(3)}) \\in (0,1)^K,$$

and the loss, summed over the ``K`` labels and averaged over the ``N`` inputs:

$$\\tilde J = \\frac1N \\sum_{i=1}^N \\sum_{k=1}^K -y_{ik}\\log a^{(3)}_{ik} - (1-y_{ik})\\log(1-a^{(3)}_{ik}).$$

The λ-term: the document's (*) gives
$\\partial/\\partial W^{(2)}_{\\alpha\\beta} = \\frac1N\\sum_i \\partial\\tilde J^i/\\partial W^{(2)}_{\\alpha\\beta} + \\lambda W^{(2)}_{\\alpha\\beta}$
"etc.", i.e. a term ``λW`` on the weight matrices (not on the biases, which the
document never regularises). That is the gradient of

$$J = \\tilde J + \\frac\\lambda2\\big(\\|W^{(1)}\\|_F^2 + \\|W^{(2)}\\|_F^2\\big),$$

which is what :func:`loss` computes (with ``lam=0`` it is ``\\tilde J``).

Vectorised over ``N``: ``X`` is ``(N, D)`` (one input per row), ``Y`` is
``(N, K)``; ``W1`` is ``(H, D)``, ``W2`` is ``(K, H)``, so row ``i`` of the
computations is the document's column vector for input ``i``.

The document cites line numbers of an "Alg 1" that it does not reproduce; the
line references below are the document's own annotations.

This module imports nothing from chainrule's engine.
"""

from __future__ import annotations

import numpy as np

__all__ = ["init_params", "forward", "loss", "gradients"]


def _phi(z):
    """The sigmoid φ(z) = 1/(1+e^{-z}), without overflow."""
    return np.exp(-np.logaddexp(0.0, -z))


def init_params(D: int, H: int, K: int, rng=None, scale: float = 0.5) -> dict:
    """Random float64 ``{'W1': (H, D), 'b1': (H,), 'W2': (K, H), 'b2': (K,)}``."""
    rng = np.random.default_rng(rng)
    return {
        "W1": scale * rng.standard_normal((H, D)),
        "b1": scale * rng.standard_normal(H),
        "W2": scale * rng.standard_normal((K, H)),
        "b2": scale * rng.standard_normal(K),
    }


def _check_shapes(params, X, Y=None):
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != params["W1"].shape[1]:
        raise ValueError(
            f"multilabel_mlp: X must be (N, D={params['W1'].shape[1]}), got {X.shape}"
        )
    if Y is not None:
        Y = np.asarray(Y, dtype=np.float64)
        if Y.shape != (X.shape[0], params["W2"].shape[0]):
            raise ValueError(
                f"multilabel_mlp: Y must be (N={X.shape[0]}, K={params['W2'].shape[0]}), got {Y.shape}"
            )
    return X, Y


def forward(params: dict, X) -> dict:
    """``a1 = X``, ``z2 = a1 W1^T + b1``, ``a2 = φ(z2)``, ``z3 = a2 W2^T + b2``, ``a3 = φ(z3)``."""
    X, _ = _check_shapes(params, X)
    z2 = X @ params["W1"].T + params["b1"]
    a2 = _phi(z2)
    z3 = a2 @ params["W2"].T + params["b2"]
    a3 = _phi(z3)
    return {"a1": X, "z2": z2, "a2": a2, "z3": z3, "a3": a3}


def loss(params: dict, X, Y, lam: float = 0.0) -> float:
    """$J = \\tilde J + \\frac\\lambda2(\\|W^{(1)}\\|^2 + \\|W^{(2)}\\|^2)$ (the document's first display and (*)).

    Each binary cross-entropy ``-y log φ(z) - (1-y) log(1-φ(z))`` is evaluated
    as ``softplus(z) - y z`` (the same number, without overflow).
    """
    X, Y = _check_shapes(params, X, Y)
    fw = forward(params, X)
    z3 = fw["z3"]
    N = X.shape[0]
    data = np.sum(np.logaddexp(0.0, z3) - Y * z3) / N
    reg = 0.5 * lam * (np.sum(params["W1"] ** 2) + np.sum(params["W2"] ** 2))
    return float(data + reg)


def gradients(params: dict, X, Y, lam: float = 0.0, return_signals: bool = False) -> dict:
    """Gradients of :func:`loss`, following the document step by step.

    For one input (index ``i`` dropped, as in the document):

    * line 5:  $\\eta^{(3)}_\\alpha = \\partial \\tilde J^i/\\partial a^{(3)}_\\alpha
      = -y_\\alpha / a^{(3)}_\\alpha + (1-y_\\alpha)/(1-a^{(3)}_\\alpha)$
    * line 8:  $\\delta^{(3)} = \\eta^{(3)} \\odot \\varphi(z^{(3)}) \\odot (1-\\varphi(z^{(3)}))$,
      which simplifies to $a^{(3)} - y$ (used here: same value, no division)
    * line 11: $\\partial \\tilde J^i/\\partial W^{(2)} = \\delta^{(3)} a^{(2)\\top}$
      (element form $\\delta^{(3)}_\\alpha a^{(2)}_\\beta$, from
      $\\partial z^{(3)}_\\gamma / \\partial W^{(2)}_{\\alpha\\beta} = \\delta_{\\gamma\\alpha} a^{(2)}_\\beta$)
    * line 13: $\\partial \\tilde J^i/\\partial b^{(2)} = \\delta^{(3)}$
    * line 15: $\\eta^{(2)} = W^{(2)\\top} \\delta^{(3)}$
    * line 17: $\\delta^{(2)} = \\eta^{(2)} \\odot \\varphi'(z^{(2)})
      = \\eta^{(2)} \\odot \\varphi(z^{(2)}) \\odot (1 - \\varphi(z^{(2)}))$
    * "analogous computations": $\\partial \\tilde J^i/\\partial W^{(1)} = \\delta^{(2)} a^{(1)\\top}$,
      $\\partial \\tilde J^i/\\partial b^{(1)} = \\delta^{(2)}$
    * (*) and the ``1/N`` of lines 11, 13, 26: average over the ``N`` inputs and
      add $\\lambda W^{(1)}$, $\\lambda W^{(2)}$.

    Args:
        return_signals: also return ``'eta3','delta3','eta2','delta2'`` (per input,
            rows; ``eta3`` by the literal line-5 formula).

    Returns:
        ``{'W1','b1','W2','b2'}`` shaped like the parameters (plus the signals).
    """
    X, Y = _check_shapes(params, X, Y)
    fw = forward(params, X)
    N = X.shape[0]
    a2, a3 = fw["a2"], fw["a3"]
    delta3 = a3 - Y                                   # line 8 (simplified)
    eta2 = delta3 @ params["W2"]                      # line 15: rows of W2^T delta3
    delta2 = eta2 * a2 * (1.0 - a2)                   # line 17 (corrected)
    out = {
        "W2": delta3.T @ a2 / N + lam * params["W2"],  # line 11, (*)
        "b2": delta3.sum(axis=0) / N,                 # line 13
        "W1": delta2.T @ X / N + lam * params["W1"],
        "b1": delta2.sum(axis=0) / N,
    }
    if return_signals:
        with np.errstate(divide="ignore", invalid="ignore"):
            eta3 = -Y / a3 + (1.0 - Y) / (1.0 - a3)   # line 5, literally
        out.update(eta3=eta3, delta3=delta3, eta2=eta2, delta2=delta2)
    return out
