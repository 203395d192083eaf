"""Window classifier, seed ``002_0bbd1c814c47e8da.txt``, written as plain NumPy.

Model (the document's eqs. 2-4 and 10; ``x`` is the concatenation of the ``C``
word vectors of a window, each a column of ``L``):

$$z^{(1)} = W x + b^{(1)},\\quad a^{(1)} = \\tanh(z^{(1)}),\\quad
  z^{(2)} = U^\\top a^{(1)} + b^{(2)},\\quad a^{(2)} = g(z^{(2)}) = h_\\theta(x).$$

Cost over ``m`` examples (eq. 1), with the document's ``C`` the regularisation
strength (the same letter also names the window size in the document; here the
window size is ``window_indices.shape[-1]`` and ``C`` is only the constant of the
penalty):

$$J = \\frac1m \\sum_{i=1}^m \\big[-y^{(i)}\\log a^{(2)(i)} - (1-y^{(i)})\\log(1-a^{(2)(i)})\\big]
      + \\frac{C}{2m}\\Big[\\sum_{j,k} W_{k,j}^2 + \\sum_k U_k^2\\Big].$$

For a single example (eq. 7) the same penalty ``C/2m`` is kept, ``m`` being the
size of the training set; the batch cost (1) is exactly the mean of the
single-example costs (7), so the batch gradient is the mean of the per-example
gradients (30), (31), (15), (25), (29).

Shapes: ``L`` is ``n x |V|`` (the document writes ``nC x V`` in its first
paragraph; that is a slip, see ``docs/derivations.md``), ``W`` is ``H x nC``,
``b1`` and ``U`` have ``H`` entries, ``b2`` is a scalar.

This module imports nothing from chainrule's engine.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "init_params",
    "window_vectors",
    "forward",
    "loss",
    "gradients",
    "sparse_L_gradient",
]


def _sigmoid(z):
    """g(z) = 1 / (1 + e^{-z}) (eq. 4), evaluated without overflow."""
    return np.exp(-np.logaddexp(0.0, -z))


def init_params(n: int, window: int, hidden: int, vocab: int, rng=None, scale: float = 0.5) -> dict:
    """Random float64 parameters ``{'L': n x vocab, 'W': hidden x n*window, 'b1', 'U', 'b2'}``."""
    rng = np.random.default_rng(rng)
    return {
        "L": scale * rng.standard_normal((n, vocab)),
        "W": scale * rng.standard_normal((hidden, n * window)),
        "b1": scale * rng.standard_normal(hidden),
        "U": scale * rng.standard_normal(hidden),
        "b2": float(scale * rng.standard_normal()),
    }


def _indices(window_indices):
    idx = np.asarray(window_indices)
    if idx.ndim not in (1, 2) or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(
            "window: window_indices must be integer word indices of shape (C,) for one "
            f"example or (m, C) for a batch, got dtype {idx.dtype} and shape {idx.shape}"
        )
    return idx


def window_vectors(L: np.ndarray, window_indices) -> np.ndarray:
    """The input ``x = [x_1; ...; x_C]``: the columns ``L[:, w_1], ..., L[:, w_C]`` stacked.

    The document, after eq. 29: "x is an nC column vector ... each of these C
    n-dimensional vectors x_i correspond to a column of L".

    Returns shape ``(n*C,)`` for one example, ``(m, n*C)`` for a batch.
    """
    idx = _indices(window_indices)
    n = L.shape[0]
    cols = L[:, idx]  # (n, C) or (n, m, C)
    if idx.ndim == 1:
        return cols.T.reshape(-1)
    return np.transpose(cols, (1, 2, 0)).reshape(idx.shape[0], idx.shape[1] * n)


def forward(params: dict, window_indices) -> dict:
    """Forward pass, eq. (10): returns ``x, z1, a1, z2, a2`` (batched along axis 0)."""
    W, b1, U, b2 = params["W"], params["b1"], params["U"], params["b2"]
    x = window_vectors(params["L"], window_indices)
    if x.shape[-1] != W.shape[1]:
        raise ValueError(
            f"window: W has {W.shape[1]} columns but the window gives x of length {x.shape[-1]} "
            f"(n={params['L'].shape[0]} times C={np.asarray(window_indices).shape[-1]})"
        )
    z1 = x @ W.T + b1
    a1 = np.tanh(z1)
    z2 = a1 @ U + b2
    a2 = _sigmoid(z2)
    return {"x": x, "z1": z1, "a1": a1, "z2": z2, "a2": a2}


def _batch_m(idx, m):
    if idx.ndim == 2:
        if m is not None and m != idx.shape[0]:
            raise ValueError(f"window: for a batch, m is the batch size {idx.shape[0]}, got m={m}")
        return idx.shape[0]
    return 1 if m is None else m


def loss(params: dict, window_indices, labels, C: float = 0.0, m: int | None = None) -> float:
    """The cost ``J``: eq. (1) for a batch ``(m, C_window)``, eq. (7) for one window.

    $$J = \\frac1m\\sum_i \\big[-y\\log a^{(2)} - (1-y)\\log(1-a^{(2)})\\big]
          + \\frac{C}{2m}\\big(\\|W\\|_F^2 + \\|U\\|^2\\big)$$

    The cross-entropy is evaluated as ``softplus(z2) - y*z2``, which equals
    ``-y log g(z2) - (1-y) log(1-g(z2))`` exactly and does not overflow.

    Args:
        params: ``{'L','W','b1','U','b2'}``.
        window_indices: ``(C,)`` word indices (one example) or ``(m, C)`` (batch).
        labels: ``y`` in ``[0, 1]``: a scalar, or ``(m,)`` for a batch.
        C: the regularisation constant of eq. (1) (not the window size).
        m: for a single example, the training-set size in ``C/2m`` (default 1);
            for a batch it is the batch size and need not be given.
    """
    idx = _indices(window_indices)
    mm = _batch_m(idx, m)
    fw = forward(params, idx)
    y = np.asarray(labels, dtype=np.float64)
    z2 = fw["z2"]
    ce = np.logaddexp(0.0, z2) - y * z2
    data = float(np.mean(ce)) if idx.ndim == 2 else float(ce)
    reg = C / (2.0 * mm) * (np.sum(params["W"] ** 2) + np.sum(params["U"] ** 2))
    return data + float(reg)


def gradients(params: dict, window_indices, labels, C: float = 0.0, m: int | None = None) -> dict:
    """Gradients of :func:`loss`, each the shape of its parameter.

    Single example (the document's equations; ``delta2 = a2 - y`` is eq. 12):

    * ``U``:  eq. (31), corrected to the shape of ``U``:
      $\\partial J/\\partial U = (a^{(2)} - y)\\, a^{(1)} + \\frac{C}{m} U$
      (eqs. 8, 13, 14; the document writes $(a^{(1)})^T$, a row, and adds the
      column $\\frac Cm U$).
    * ``b2``: eq. (15), $a^{(2)} - y$.
    * ``W``:  eq. (30) = (22) + (9),
      $\\big((a^{(2)} - y)\\, U \\diamond (1 - (a^{(1)})^2)\\big) x^T + \\frac{C}{m} W$
      (element form eq. 21).
    * ``b1``: eq. (25), $(a^{(2)} - y)\\, U \\diamond (1 - (a^{(1)})^2)$.
    * ``x``:  eq. (29), $\\partial J/\\partial x = (a^{(2)} - y) W^T [U \\diamond (1 - (a^{(1)})^2)]$
      (element form eq. 28).
    * ``L``:  the text after eq. (29): the ``n``-blocks ``x_1..x_C`` of ``dJ/dx``
      are added to the columns ``L[:, w_1..w_C]``; a word that occurs twice in a
      window receives the sum of both blocks (the document does not mention
      repeats; the chain rule requires the sum).

    Batch ``(m, C_window)``: the gradient of eq. (1) is the mean over the batch of
    the single-example gradients above (each carrying ``C/m``).

    Returns:
        ``{'U','b2','W','b1','L','x'}``; ``'L'`` is dense ``n x |V|``
        (see :func:`sparse_L_gradient` for the row-sparse form), ``'x'`` is
        ``dJ/dx`` (eq. 29; for a batch, row ``i`` is ``dJ/dx^(i)`` of the batch
        cost, i.e. eq. 29 divided by ``m``), shape ``(nC,)`` or ``(m, nC)``.
    """
    idx = _indices(window_indices)
    mm = _batch_m(idx, m)
    fw = forward(params, idx)
    W, U, L = params["W"], params["U"], params["L"]
    y = np.asarray(labels, dtype=np.float64)
    batched = idx.ndim == 2
    # eq. (12)/(15): dJ/dz2 = a2 - y; the batch mean contributes 1/m per example.
    d2 = (fw["a2"] - y) / (mm if batched else 1.0)
    a1, x = fw["a1"], fw["x"]
    # eq. (25): dJ/dz1 = (a2 - y) U <> (1 - a1^2)
    d1 = (d2[..., None] if batched else d2) * U * (1.0 - a1 ** 2)
    if batched:
        gU = a1.T @ d2
        gb2 = float(np.sum(d2))
        gW = d1.T @ x
        gb1 = d1.sum(axis=0)
    else:
        gU = d2 * a1                     # eq. (14) as a column
        gb2 = float(d2)                  # eq. (15)
        gW = np.outer(d1, x)             # eq. (22)
        gb1 = d1                         # eq. (25)
    gU = gU + (C / mm) * U               # eq. (8), (31)
    gW = gW + (C / mm) * W               # eq. (9), (30)
    gx = d1 @ W                          # eq. (29): W^T d1 (per row for a batch)
    gL = np.zeros_like(L)
    n = L.shape[0]
    blocks = gx.reshape(idx.shape + (n,))  # (C, n) or (m, C, n)
    np.add.at(gL.T, idx, blocks)         # repeated words accumulate
    out = {"U": gU, "b2": gb2, "W": gW, "b1": gb1, "L": gL}
    out["x"] = gx
    return out


def sparse_L_gradient(grads: dict, window_indices):
    """Row-sparse form of ``dJ/dL``: ``(unique_word_indices, columns)``.

    ``columns[:, k]`` is the gradient of the column ``L[:, unique_word_indices[k]]``;
    all other columns of ``L`` have zero gradient. ``grads`` is the dict returned
    by :func:`gradients` (its dense ``'L'`` is read).
    """
    idx = _indices(window_indices)
    words = np.unique(idx)
    return words, grads["L"][:, words]
