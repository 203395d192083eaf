"""Divergences (losses) and penalties, written with engine ops.

Notation: a batch has N examples (the first axis; a 1-D prediction is *one* example unless the
loss is elementwise), K outputs per example.  ``y``/``p``/``z`` is the network's output
(prediction / probability / logit) and ``d`` the desired output (seed 004's notation).

=============================== ================================================================
``l2(y, d)``                     ½‖y − d‖² (seed 004's scaled L2 divergence); 'sum' or per-example mean
``mse(y, d)``                    (1/#elements) Σ (y − d)²
``binary_cross_entropy(p, d)``   −[d log p + (1 − d) log(1 − p)], p clipped to [eps, 1 − eps]
``binary_cross_entropy_with_logits(z, d)``  the same with p = σ(z), computed stably from z
``cross_entropy(z, t)``          −Σ_k t_k log softmax(z)_k (t one-hot, soft, or class indices)
``nll_loss(logp, t)``            −logp[n, t_n] (class indices; logp from log_softmax)
``multilabel_bce(z, d)``         (1/N) Σ_n Σ_k BCE(σ(z_nk), d_nk)   (seed 003's J̃)
``l2_penalty(params, C, m)``     C/(2m) Σ_W ‖W‖²   (seed 002; seed 003's λ term with C/m = λ)
=============================== ================================================================

All return a scalar Tensor (``reduction='none'`` returns the per-example or per-element losses).
Targets are constants (ndarrays) or Tensors; shapes must match exactly (no silent broadcasting).
"""
from __future__ import annotations

import numpy as np

from .ops import functional as F
from .ops.fused import bce_with_logits, sum_squares
from .tensor import Tensor

__all__ = ["l2", "mse", "binary_cross_entropy", "binary_cross_entropy_with_logits", "cross_entropy",
           "nll_loss", "multilabel_bce", "l2_penalty"]


def _arr(x):
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def _target(d, like, where):
    """Target as a Tensor (kept, may require grad) or an ndarray cast to the prediction's dtype."""
    ld = _arr(like)
    if isinstance(d, Tensor):
        dd = d.data
    else:
        dd = np.asarray(d)
        if dd.dtype != ld.dtype and ld.dtype.kind == "f":
            dd = dd.astype(ld.dtype)
        d = dd
    if dd.shape != ld.shape:
        raise ValueError(f"{where}: prediction of shape {ld.shape} and target of shape {dd.shape} differ")
    return d


def _check_reduction(reduction, where, allowed=("mean", "sum", "none")):
    if reduction not in allowed:
        raise ValueError(f"{where}: reduction must be one of {allowed}, got {reduction!r}")


def _n_examples(shape):
    return shape[0] if len(shape) >= 2 else 1


def _per_example_sum(t, ndim):
    """Σ over all axes but the first (a 1-D or 0-D value is one example: sum everything)."""
    if ndim >= 2:
        return F.sum(t, axis=tuple(range(1, ndim)))
    return F.sum(t)


def l2(y, d, reduction="sum"):
    """Scaled L2 divergence (seed 004): Div(y, d) = ½‖y − d‖² = ½ Σ_i (y_i − d_i)².

    For a batch y, d of shape (N, K, ...):

    * ``reduction='sum'`` (default): L = ½ Σ_n Σ_k (y_nk − d_nk)², the sum of the per-example
      divergences;  ∂L/∂y = y − d.
    * ``reduction='mean'``: L = (1/N) Σ_n ½‖y_n − d_n‖², the per-example divergence averaged over
      the N examples (the first axis) -- *not* over all N·K elements;  ∂L/∂y = (y − d)/N.
      A 1-D y is one example (N = 1).
    * ``reduction='none'``: the vector of per-example ½‖y_n − d_n‖² (shape (N,)).
    """
    _check_reduction(reduction, "l2")
    d = _target(d, y, "l2")
    r = F.sub(y, d)
    sq = F.mul(r, r)
    shape = _arr(y).shape
    if reduction == "sum":
        return F.sum(sq) * 0.5
    if reduction == "mean":
        return F.sum(sq) * (0.5 / max(_n_examples(shape), 1))
    return _per_example_sum(sq, len(shape)) * 0.5


def mse(y, d, reduction="mean"):
    """Mean squared error: L = (1/M) Σ_i (y_i − d_i)² over all M elements (PyTorch's MSELoss);
    ∂L/∂y = 2(y − d)/M.  ``reduction='sum'``: Σ_i (y_i − d_i)²; ``'none'``: elementwise."""
    _check_reduction(reduction, "mse")
    d = _target(d, y, "mse")
    r = F.sub(y, d)
    sq = F.mul(r, r)
    if reduction == "none":
        return sq
    s = F.sum(sq)
    return s * (1.0 / max(_arr(y).size, 1)) if reduction == "mean" else s


def _reduce_elementwise(loss, shape, reduction):
    if reduction == "none":
        return loss
    s = F.sum(loss)
    if reduction == "sum":
        return s
    if reduction == "mean":
        return s * (1.0 / max(int(np.prod(shape)), 1))
    # 'batchmean': sum over outputs, mean over examples
    return s * (1.0 / max(_n_examples(shape), 1))


def binary_cross_entropy(p, d, eps=1e-7, reduction="mean"):
    """Binary cross-entropy on probabilities (seed 004):
    Div(p, d) = −d log p − (1 − d) log(1 − p), elementwise,
    with p first clipped to [eps, 1 − eps] so that p = 0 or 1 gives a finite loss (at most
    −log eps ≈ 16.1) and a finite gradient.  Where p is clipped the gradient w.r.t. p is 0
    (the clip's rule); elsewhere ∂Div/∂p = −d/p + (1 − d)/(1 − p) (seed 003's η).

    ``reduction``: 'mean' over all elements (default), 'sum', 'none', or 'batchmean' (sum over the
    outputs, mean over the N examples: seed 003's J̃).  Prefer
    :func:`binary_cross_entropy_with_logits` when the logits are at hand.
    """
    _check_reduction(reduction, "binary_cross_entropy", ("mean", "sum", "none", "batchmean"))
    if not 0 < eps < 0.5:
        raise ValueError(f"binary_cross_entropy: eps must be in (0, 0.5), got {eps}")
    d = _target(d, p, "binary_cross_entropy")
    pc = F.clip(p, eps, 1.0 - eps)
    one_minus_d = 1.0 - d
    loss = -(d * F.log(pc) + one_minus_d * F.log(1.0 - pc))
    return _reduce_elementwise(loss, _arr(p).shape, reduction)


def binary_cross_entropy_with_logits(z, d, reduction="mean"):
    """Binary cross-entropy of p = σ(z) against d, computed from the logits z without overflow:

        Div(z, d) = −d log σ(z) − (1 − d) log(1 − σ(z)) = max(z, 0) − z d + log(1 + e^(−|z|)),

    where e^(−|z|) ≤ 1 never overflows (finite at z = ±1e4); ∂Div/∂z = σ(z) − d.

    Reduced ('mean', 'sum', 'batchmean') with a constant target it is one fused op
    (:func:`chainrule.ops.fused.bce_with_logits`); otherwise it is written with engine ops as
    m − z ⊙ d + softplus(a)  with m = where(z > 0, z, 0) = max(z, 0)
    and a = where(z > 0, −z, z) = −|z|.  (``relu`` and ``abs`` would give the same values, but
    their subgradients 0 at z = 0 would make the gradient −d instead of σ(0) − d = ½ − d there --
    and z = 0 is exactly where zero-initialised output layers start.)

    ``reduction``: 'mean' over all elements (default), 'sum', 'none', or 'batchmean'.
    """
    _check_reduction(reduction, "binary_cross_entropy_with_logits", ("mean", "sum", "none", "batchmean"))
    d = _target(d, z, "binary_cross_entropy_with_logits")
    zd = _arr(z)
    if reduction != "none" and not (isinstance(d, Tensor) and d.requires_grad):   # one fused op
        n = 1 if reduction == "sum" else zd.size if reduction == "mean" else _n_examples(zd.shape)
        return bce_with_logits(z, _arr(d), 1.0 / max(n, 1))      # (_target checked d's shape: z's)
    pos = zd > 0
    m = F.where(pos, z, 0.0)
    a = F.where(pos, -z if isinstance(z, Tensor) else -zd, z)
    loss = (m - z * d) + F.softplus(a)
    return _reduce_elementwise(loss, zd.shape, reduction)


def multilabel_bce(outputs, targets, from_logits=True):
    """Multi-label loss of seed 003:

        J̃ = (1/N) Σ_{n=1..N} Σ_{k=1..K} −d_nk log a_nk − (1 − d_nk) log(1 − a_nk),

    K independent sigmoid outputs a = σ(z), the binary cross-entropies *summed* over the K outputs
    and *averaged* over the N examples (shape (N, K); a 1-D input is one example).
    ``from_logits=True`` (default): ``outputs`` are the logits z (stable,
    :func:`binary_cross_entropy_with_logits`); ∂J̃/∂z = (σ(z) − d)/N.  ``from_logits=False``:
    ``outputs`` are the probabilities a (clipped, :func:`binary_cross_entropy`).
    The λ-regularisation of seed 003's Alg 1 is :func:`l2_penalty` (with C/m = λ).
    """
    if from_logits:
        return binary_cross_entropy_with_logits(outputs, targets, reduction="batchmean")
    return binary_cross_entropy(outputs, targets, reduction="batchmean")


_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _class_targets(t, z, where, ignore_index):
    """Validate integer class targets against logits/log-probabilities z (class axis last); returns
    the mask of positions that count (``t != ignore_index``), or None when every position counts.

    The common case -- every target in [0, K) and an ``ignore_index`` outside that range -- costs
    one reduction and builds no mask: the largest target read as an unsigned integer (a negative
    one reads as a huge number) is below K."""
    K = z.shape[-1]
    if t.shape != z.shape[:-1]:
        raise ValueError(f"{where}: class-index targets of shape {t.shape} for {('logits' if where == 'cross_entropy' else 'inputs')} "
                         f"of shape {z.shape}; expected {z.shape[:-1]}")
    if t.size and (ignore_index is None or not 0 <= ignore_index < K) \
            and (t.view(_UNSIGNED[t.itemsize]) if t.dtype.kind == "i" else t).max() < K:
        return None
    valid = t != ignore_index if ignore_index is not None else np.ones(t.shape, bool)
    tv = t[valid]
    if tv.size and (tv.min() < 0 or tv.max() >= K):
        bad = int(tv.min()) if tv.min() < 0 else int(tv.max())
        raise ValueError(f"{where}: class index {bad} out of range [0, {K}) for {('logits' if where == 'cross_entropy' else 'inputs')} "
                         f"of shape {z.shape}" + (f" (ignore_index={ignore_index})" if ignore_index is not None else ""))
    return valid


def _reduce_weighted(per, w, reduction):
    """per-example losses ``per`` (already multiplied by the weights ``w``): 'none' → per,
    'sum' → Σ per, 'mean' → Σ per / Σ w."""
    if reduction == "none":
        return per
    total = F.sum(per)
    if reduction == "sum":
        return total
    return total * (1.0 / float(np.sum(w)) if np.sum(w) else np.nan)


def cross_entropy(logits, targets, weight=None, reduction="mean", ignore_index=-100, label_smoothing=0.0):
    """Multi-class cross-entropy from logits (seed 004): Div = −Σ_k t_k log y_k with
    y = softmax(z), i.e. −log y_c for a class index c.  The class axis is the *last* axis of z
    (PyTorch's is axis 1 for inputs of more than two axes).

    ``targets``: class indices (integer array of shape z.shape[:-1]) or one-hot / soft target rows
    (floating, the shape of z; each row must sum to 1).  Computed by the fused primitive
    ``cr.softmax_cross_entropy`` (log-sum-exp shifted by the max: finite for logits of ±1e4);
    ∂ℓ_n/∂z_n = softmax(z_n) − t_n.

    ``weight``: optional class weights c (shape (K,)).  Example n gets w_n = c_{y_n} (for soft
    targets, w_n = Σ_k c_k t_nk, its expected class weight -- PyTorch weights each term instead).

    ``ignore_index`` (class-index targets; default −100 as PyTorch): positions whose target is
    this value contribute nothing and are not counted (w_n = 0); None disables it.

    ``label_smoothing`` ε ∈ [0, 1] (PyTorch's): the target distribution becomes
    (1 − ε) t + ε/K, i.e. for a class index c, ℓ_n = (1 − ε)(−log y_c) + (ε/K) Σ_k c_k (−log y_k)
    (c_k = 1 without class weights), averaged over Σ_n w_n as PyTorch.

    ``reduction``:
      * 'mean' (default): L = Σ_n w_n ℓ_n / Σ_n w_n (= (1/N) Σ_n ℓ_n without weights or ignored
        positions; PyTorch's convention);
      * 'sum': L = Σ_n w_n ℓ_n;
      * 'none': the vector of ℓ_n (times w_n; 0 at ignored positions), via log_softmax.
    N counts every position of z.shape[:-1] (sequences (N, T, K) average over N·T).
    """
    _check_reduction(reduction, "cross_entropy")
    z = _arr(logits)
    if z.ndim == 0:
        raise ValueError("cross_entropy: logits must have a class axis (shape (..., K)), got a scalar")
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    K = z.shape[-1]
    t = _arr(targets)
    valid = None
    if t.dtype.kind in "iu":
        valid = _class_targets(t, z, "cross_entropy", ignore_index)
        if valid is None and eps:
            valid = np.ones(t.shape, bool)
    elif t.dtype.kind == "f":
        if t.shape != z.shape:
            raise ValueError(f"cross_entropy: one-hot/soft targets of shape {t.shape} for logits of shape "
                             f"{z.shape}; they must match")
        sums = t.sum(axis=-1)
        if t.size and not np.allclose(sums, 1.0, atol=1e-4 * max(1, K) ** 0.5):
            raise ValueError(f"cross_entropy: soft target rows must sum to 1 (got sums in "
                             f"[{sums.min():.4g}, {sums.max():.4g}])")
        t = t.astype(z.dtype, copy=False)
        if eps:
            t = (1.0 - eps) * t + eps / K
    else:
        raise TypeError(f"cross_entropy: targets must be class indices (integers) or probabilities "
                        f"(floats), got dtype {t.dtype}")
    c = None
    if weight is not None:
        c = np.asarray(_arr(weight), dtype=z.dtype)
        if c.shape != (K,):
            raise ValueError(f"cross_entropy: class weights of shape {c.shape} for {K} classes")
    if valid is not None and (eps or not valid.all()):
        # ignored positions or label smoothing with class indices: the composite path
        tt = np.where(valid, t, 0)
        wn = (c[tt] if c is not None else np.ones(t.shape, z.dtype)) * valid
        logp = F.log_softmax(logits, -1)
        oh = np.zeros(z.shape, dtype=z.dtype)
        np.put_along_axis(oh, tt[..., None], 1, axis=-1)
        per = -F.sum(logp * (oh * ((1.0 - eps) * wn)[..., None]), axis=-1)
        if eps:
            cw = c if c is not None else np.ones(K, z.dtype)
            per = per - F.sum(logp * ((eps / K) * valid[..., None] * cw), axis=-1)
        return _reduce_weighted(per, wn, reduction)
    w = None
    if c is not None:
        w = c[t] if t.dtype.kind in "iu" else t @ c
    if reduction == "none":
        logp = F.log_softmax(logits, -1)
        if t.dtype.kind in "iu":
            oh = np.zeros(z.shape, dtype=z.dtype)
            np.put_along_axis(oh, t[..., None], 1, axis=-1)
            t = oh
        nll = -F.sum(logp * t, axis=-1)
        return nll if w is None else nll * w
    # targets validated above: the fused op without its own checks
    if w is None:
        per = (1.0 / max(z.size // K, 1)) if reduction == "mean" else 1.0
        return F.softmax_cross_entropy(logits, t, z.dtype.type(per), check=False)
    if reduction == "mean":
        w = w / w.sum()
    return F.softmax_cross_entropy(logits, t, w, check=False)


def nll_loss(log_probs, targets, weight=None, reduction="mean", ignore_index=-100):
    """Negative log-likelihood of class indices given log-probabilities (e.g. the output of
    ``log_softmax``), PyTorch's ``nll_loss``:  ℓ_n = −w_n · logp[n, t_n],  w_n = c_{t_n} (class
    weights, default 1; 0 where t_n = ignore_index).  'mean' divides by Σ_n w_n.  The class axis is
    the last axis.  ``nll_loss(log_softmax(z), t) == cross_entropy(z, t)``.
    Composite: an integer-array gather (its gradient is a scatter: ∂ℓ_n/∂logp[n, t_n] = −w_n)."""
    _check_reduction(reduction, "nll_loss")
    z = _arr(log_probs)
    if z.ndim == 0:
        raise ValueError("nll_loss: inputs must have a class axis (shape (..., K)), got a scalar")
    t = _arr(targets)
    if t.dtype.kind not in "iu":
        raise TypeError(f"nll_loss: targets must be class indices (integers), got dtype {t.dtype}")
    valid = _class_targets(t, z, "nll_loss", ignore_index)
    if valid is None:
        valid = np.ones(t.shape, bool)
    tt = np.where(valid, t, 0)
    c = None
    if weight is not None:
        c = np.asarray(_arr(weight), dtype=z.dtype)
        if c.shape != (z.shape[-1],):
            raise ValueError(f"nll_loss: class weights of shape {c.shape} for {z.shape[-1]} classes")
    wn = (c[tt] if c is not None else np.ones(t.shape, z.dtype)) * valid
    picked = log_probs[(*np.indices(t.shape, sparse=True), tt)] if t.ndim else log_probs[tt]
    return _reduce_weighted(-(picked * wn), wn, reduction)


def l2_penalty(params, C, m=1):
    """L2 regularisation term of seed 002, over exactly the tensors passed:

        R = C/(2m) Σ_{W in params} ‖W‖²  (sum of squares of every element),  ∂R/∂W = (C/m) W.

    Seed 002 regularises W and U only -- not the biases, not the word vectors L -- so pass
    ``[model.W, model.U]``, not ``model.parameters()``.  Seed 003's "+ λW" is C/m = λ (m = 1,
    C = λ).  Returns a scalar Tensor (0 for an empty list).
    """
    if callable(getattr(params, "named_parameters", None)):      # a Module (losses does not import nn)
        raise TypeError("l2_penalty: pass the list of tensors to regularise explicitly (e.g. the weight "
                        "matrices), not a Module: seed 002 regularises W and U, not biases or embeddings")
    if isinstance(params, Tensor):
        params = [params]
    params = list(params)
    if m <= 0:
        raise ValueError(f"l2_penalty: m (the number of training examples) must be positive, got {m}")
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(f"l2_penalty: item {i} is a {type(p).__name__}, expected a Tensor/Parameter")
    if not params:
        return Tensor(np.zeros((), dtype=np.float32))
    return sum_squares(params, C / m)            # one fused op: Σ C/(2m) ‖W‖²,  W̄ = (C/m) W
