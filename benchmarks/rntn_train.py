"""Trees per second of RNTN training steps on real SST training trees: chainrule batched by level,
the same level-batched step written by hand in NumPy, chainrule's per-node reference path and,
when PyTorch is importable, a per-node PyTorch implementation, in the same process on the same
minibatches (issue 6).

    python benchmarks/rntn_train.py                            # d=25, minibatch 25, RNTN
    OPENBLAS_NUM_THREADS=1 python benchmarks/rntn_train.py --batches 60
    python benchmarks/rntn_train.py --model rnn --json

Each path runs forward + backward (the gradient of the batch loss with respect to every
parameter, word vectors row-sparse) and, in the "step" column, an AdaGrad update too (lr 0.01,
eps 1e-3: θ ← θ − lr g / (√(Σg²) + eps)). The three NumPy-based paths share the same hand-written
row-sparse AdaGrad, so their update cost is identical. float32 unless ``--dtype float64``.
Run with ``OPENBLAS_NUM_THREADS=1`` for single-core numbers (PyTorch is given the same thread count).

The PyTorch path (never a dependency: imported inside :func:`torch_per_node`, skipped with a note
when missing, or with ``--no-torch``) is written like chainrule's per-node reference
(``rntn.loss_per_node``): one node at a time in a post-order loop, each leaf's word vector looked up
with ``torch.nn.functional.embedding(..., sparse=True)`` (a sparse gradient, like chainrule's
row-sparse one), each node's W·c + b, ``einsum('i,ijk,j->k', c, V, c)``, tanh, its own classifier
and cross-entropy, the node losses added one by one, then ``loss.backward()``. Its update is the
same row-sparse AdaGrad written by hand on the torch tensors (in ``torch.no_grad``), not
``torch.optim.Adagrad`` (equivalent with lr 0.01, eps 1e-3, lr_decay 0, initial accumulator 0, but
its constructor imports ``torch._dynamo``).

Checked before timing, on the first minibatch: the hand-written NumPy step against the engine's
gradients (in the benchmark's dtype), and the PyTorch path against chainrule in float64 (loss,
gradients, and the parameters after two AdaGrad updates).

Goals (issue 6), on the "step" column: chainrule batched ≥ 0.7× the hand-written batched NumPy
step, and ≥ 5× chainrule's per-node path.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from chainrule.autograd import RowSparseGrad
from chainrule.data import sst
from chainrule.models import rntn as R


# ------------------------------------------------------------------------------ hand-written NumPy
def numpy_grads(p, batch, leaf_tanh=True):
    """Loss and gradients of (1/B) Σ_nodes CE for a TreeBatch, level-batched, by hand."""
    L, W, b, Ws, bs = p["L"], p["W"], p["b"], p["Ws"], p["bs"]
    V = p.get("V")
    d = W.shape[0]
    N, bounds = batch.num_nodes, batch.bounds
    T = np.empty((N, d), dtype=W.dtype)
    e0 = L[batch.leaf_words]
    T[:bounds[1]] = np.tanh(e0) if leaf_tanh else e0
    Vm = V.reshape(2 * d, 2 * d * d) if V is not None else None
    saved = []
    for h, ch in enumerate(batch.children, start=1):
        n = ch.shape[0]
        C = T[ch].reshape(n, 2 * d)
        Z = C @ W.T + b
        U = None
        if Vm is not None:
            U = (C @ Vm).reshape(n, 2 * d, d)                  # U[n, j, k] = Σ_i c_i V[i, j, k]
            Z += (C[:, None, :] @ U)[:, 0, :]
        T[bounds[h]:bounds[h + 1]] = np.tanh(Z)
        saved.append((C, U))
    Zs = T @ Ws.T + bs
    m = Zs.max(axis=1, keepdims=True)
    E = np.exp(Zs - m)
    S = E.sum(axis=1, keepdims=True)
    y = batch.labels
    B = len(batch)
    loss = float(np.sum(np.log(S[:, 0]) + m[:, 0] - Zs[np.arange(N), y])) / B
    G = E / S
    G[np.arange(N), y] -= 1
    G /= B
    g = {"Ws": G.T @ T, "bs": G.sum(axis=0), "W": np.zeros_like(W), "b": np.zeros_like(b)}
    if V is not None:
        gVm = np.zeros_like(Vm)
    dT = G @ Ws
    for h in range(len(batch.children), 0, -1):
        ch = batch.children[h - 1]
        C, U = saved[h - 1]
        n = ch.shape[0]
        Hh = T[bounds[h]:bounds[h + 1]]
        dZ = dT[bounds[h]:bounds[h + 1]] * (1 - Hh * Hh)
        g["W"] += dZ.T @ C
        g["b"] += dZ.sum(axis=0)
        dC = dZ @ W
        if V is not None:
            dC += (U @ dZ[:, :, None])[:, :, 0]                 # through the c of cᵀU
            dU = (C[:, :, None] * dZ[:, None, :]).reshape(n, 2 * d * d)
            gVm += C.T @ dU
            dC += dU @ Vm.T                                      # through the c of U = c V
        np.add.at(dT, ch.reshape(-1), dC.reshape(-1, d))
    d0 = dT[:bounds[1]]
    if leaf_tanh:
        d0 = d0 * (1 - T[:bounds[1]] ** 2)
    g["L"] = RowSparseGrad(batch.leaf_words, d0, L.shape)
    if V is not None:
        g["V"] = gVm.reshape(V.shape)
    return loss, g


def adagrad_update(params, grads, hist, lr=0.01, eps=1e-3):
    for k, x in params.items():
        gk = grads[k]
        if type(gk) is RowSparseGrad:
            gk = gk.coalesce()
            i, v = gk.indices, gk.values
            hist[k][i] += v * v
            x[i] -= lr * v / (np.sqrt(hist[k][i]) + eps)
        else:
            hist[k] += gk * gk
            x -= lr * gk / (np.sqrt(hist[k]) + eps)


def engine_step(vocab, dim=25, seed=0):
    """chainrule's level-batched training step (loss, zero_grad, backward, AdaGrad) of a fresh RNTN:
    ``step(batch) -> loss`` (what peers.py and tree_plans.py time, eagerly or through cr.compile)."""
    from chainrule import optim
    from chainrule.models import rntn as R
    m = R.build_model({"model": "rntn", "dim": dim}, vocab, seed=seed)
    P = m.params()
    opt = optim.AdaGrad(m.parameters(), lr=LR, eps=EPS)

    def step(batch):
        loss, _ = R.loss_batched(P, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    return step


# ------------------------------------------------------------------------------ PyTorch, per node
LR, EPS = 0.01, 1e-3          # AdaGrad settings of every path (adagrad_update's defaults)


def torch_per_node(arrays, leaf_tanh=True):
    """A per-node PyTorch RNTN/RNN on copies of ``arrays`` (dtype kept). Returns ``(params, step)``:
    ``step(batch, update)`` runs forward + backward (+ the AdaGrad update if ``update``) and
    returns the loss tensor; the gradients stay in ``params[k].grad`` until the next call.
    The update is :func:`adagrad_update` written again on the torch tensors (not
    ``torch.optim.Adagrad``, whose constructor imports torch._dynamo, seconds on this machine; the
    formula is the same as Adagrad(lr=LR, eps=EPS) with lr_decay 0 and initial accumulator 0).
    Raises ImportError when PyTorch is not installed."""
    import torch
    import torch.nn.functional as TF

    # the same thread budget as NumPy's BLAS (OPENBLAS_NUM_THREADS=1 on a shared machine)
    torch.set_num_threads(int(os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
                              or os.cpu_count() or 1))
    params = {k: torch.tensor(np.array(a), requires_grad=True) for k, a in arrays.items()}
    hist = {k: torch.zeros_like(t) for k, t in params.items()}
    L, W, b, Ws, bs = params["L"], params["W"], params["b"], params["Ws"], params["bs"]
    V = params.get("V")

    def loss_fn(batch):
        w = 1.0 / len(batch)
        total = None
        for tree in batch.trees:                   # as rntn.forward_per_node: post-order, a loop
            xs = []
            for i in range(len(tree)):
                wi = int(tree.word[i])
                if wi >= 0:
                    x = TF.embedding(torch.tensor([wi]), L, sparse=True).view(-1)
                    if leaf_tanh:
                        x = torch.tanh(x)
                else:
                    c = torch.cat([xs[tree.left[i]], xs[tree.right[i]]])
                    z = W @ c + b
                    if V is not None:
                        z = z + torch.einsum("i,ijk,j->k", c, V, c)
                    x = torch.tanh(z)
                xs.append(x)
                li = TF.cross_entropy((Ws @ x + bs).view(1, -1), torch.tensor([int(tree.label[i])]),
                                      reduction="sum") * w
                total = li if total is None else total + li
        return total

    @torch.no_grad()
    def adagrad(lr=LR, eps=EPS):
        """adagrad_update on the torch tensors: dense for W, b, V, Ws, bs; the word vectors' sparse
        gradient coalesced (duplicate rows summed) and only its rows touched."""
        for k, x in params.items():
            g = x.grad
            if g.is_sparse:
                g = g.coalesce()
                i, v = g.indices()[0], g.values()
                hist[k][i] += v * v
                x[i] -= lr * v / (hist[k][i].sqrt() + eps)
            else:
                hist[k] += g * g
                x -= lr * g / (hist[k].sqrt() + eps)

    def step(batch, update):
        for t in params.values():
            t.grad = None
        loss = loss_fn(batch)
        loss.backward()
        if update:
            adagrad()
        return loss

    return params, step


def check_torch(kind, d, vocab, batch):
    """The PyTorch path against chainrule in float64 on ``batch``: relative errors of the loss, of
    the gradients (worst parameter, max-abs error over max-abs value, as :func:`check`) and of the
    parameters after two AdaGrad steps (chainrule batched + adagrad_update vs the torch path's)."""
    import torch
    model = R.build_model({"model": kind, "dim": d}, vocab, seed=0, dtype=np.float64)
    P = model.params()
    arrays = {k: t.data for k, t in P.items()}
    tp, tstep = torch_per_node(arrays)             # copies, taken before the updates below

    def engine(update_hist=None):
        loss, _ = R.loss_batched(P, batch)
        g = engine_grads(P, loss)
        if update_hist is not None:
            adagrad_update(arrays, g, update_hist, LR, EPS)
        return loss.item(), g

    def rel(a, ref):
        return float(np.abs(a - ref).max() / (np.abs(ref).max() + 1e-12))

    l_cr, g_cr = engine()
    l_t = tstep(batch, update=False).item()
    g_t = {k: (t.grad.to_dense() if t.grad.is_sparse else t.grad).numpy() for k, t in tp.items()}
    grad_err = max(rel(g_t[k], np.asarray(g_cr[k], dtype=np.float64)) for k in g_cr)
    hist = {k: np.zeros_like(a) for k, a in arrays.items()}
    for _ in range(2):
        engine(hist)
        tstep(batch, update=True)
    with torch.no_grad():
        upd_err = max(rel(tp[k].numpy(), arrays[k]) for k in arrays)
    return {"loss": abs(l_t - l_cr) / abs(l_cr), "grad": grad_err, "params_after_2_updates": upd_err}


# ------------------------------------------------------------------------------ the paths
def engine_grads(P, loss):
    """Backpropagate ``loss`` and return ``{name: gradient}`` of the parameter dict ``P``, leaving
    no gradient behind on the parameters."""
    for t in P.values():
        t.grad = None
    loss.backward()
    g = {k: t.grad for k, t in P.items()}
    for t in P.values():
        t.grad = None
    return g


def make_paths(kind, d, vocab, dtype, with_torch=True):
    model = R.build_model({"model": kind, "dim": d}, vocab, seed=0, dtype=dtype)
    P = model.params()
    arrays = {k: t.data for k, t in P.items()}
    hist = {k: np.zeros_like(a) for k, a in arrays.items()}

    def batched(batch, update):
        loss, _ = R.loss_batched(P, batch)
        g = engine_grads(P, loss)
        if update:
            adagrad_update(arrays, g, hist)

    def per_node(batch, update):
        loss = R.loss_per_node(P, batch.trees)
        g = engine_grads(P, loss)
        if update:
            adagrad_update(arrays, g, hist)

    def hand(batch, update):
        _, g = numpy_grads(arrays, batch)
        if update:
            adagrad_update(arrays, g, hist)

    paths = {"chainrule batched": batched, "numpy batched (hand)": hand, "chainrule per-node": per_node}
    torch_note = "skipped (--no-torch)"
    if with_torch:
        try:
            _, tstep = torch_per_node(arrays)
        except ImportError as e:
            torch_note = f"skipped (PyTorch not importable: {e})"
        else:
            import torch
            torch_note = f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)"
            paths["torch per-node"] = tstep
    return model, P, paths, torch_note


def check(P, batch):
    loss, _ = R.loss_batched(P, batch)
    ref = {k: np.asarray(g, dtype=np.float64) for k, g in engine_grads(P, loss).items()}
    l2, g = numpy_grads({k: t.data for k, t in P.items()}, batch)
    worst = max(float(np.abs(np.asarray(g[k], dtype=np.float64) - ref[k]).max() / (np.abs(ref[k]).max() + 1e-12))
                for k in ref)
    return abs(l2 - loss.item()) / abs(loss.item()), worst


GOALS = (("chainrule batched vs hand-written batched NumPy", "numpy batched (hand)", 0.7),
         ("chainrule batched vs chainrule per-node", "chainrule per-node", 5.0))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="rntn", choices=["rntn", "rnn"])
    ap.add_argument("--dim", type=int, default=25)
    ap.add_argument("--batch-size", type=int, default=25)
    ap.add_argument("--batches", type=int, default=40, help="minibatches timed per path (per-node paths: a quarter)")
    ap.add_argument("--rounds", type=int, default=5,
                    help="interleaved rounds over the batched paths (per-node paths: the first only); "
                    "medians are reported (default 5)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch per-node path")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    dtype = np.float32 if args.dtype == "float32" else np.float64
    train = sst.load("train")
    vocab = R.Vocab.from_trees(train)              # the whole training vocabulary, as in training
    rng = np.random.default_rng(0)
    idx = [rng.choice(len(train), args.batch_size, replace=False) for _ in range(args.batches)]
    batches = [R.TreeBatch([R.encode_tree(train[int(j)], vocab) for j in i]) for i in idx]
    _, P, paths, torch_note = make_paths(args.model, args.dim, vocab, dtype, with_torch=not args.no_torch)
    rel_loss, rel_grad = check(P, batches[0])
    torch_err = check_torch(args.model, args.dim, vocab, batches[0]) if "torch per-node" in paths else None
    # Rounds interleave the paths, so a burst of load from elsewhere hits all of them. Each round
    # times every batched path back to back (the slow per-node paths only in the first round);
    # a path's rate is its median over rounds, and a ratio between two batched paths is the median
    # of the per-round ratios (paired, so a slow round slows both), with its range.
    rates = {name: {"fwd+bwd": [], "step": []} for name in paths}
    for r in range(args.rounds):
        for name, fn in paths.items():
            if "per-node" in name and r > 0:
                continue
            nb = max(2, args.batches // 4) if "per-node" in name else args.batches
            for update in (False, True):
                fn(batches[0], update)                        # warm-up
                t0 = time.perf_counter()
                for bt in batches[:nb]:
                    fn(bt, update)
                rates[name]["step" if update else "fwd+bwd"].append(nb * args.batch_size / (time.perf_counter() - t0))
    results = {name: {k: float(np.median(v)) for k, v in row.items()} for name, row in rates.items()}

    def ratio(a, b, key):
        """median and range of rates[a]/rates[b] over the rounds both ran"""
        x = np.array(rates[a][key][:len(rates[b][key])]) / np.array(rates[b][key][:len(rates[a][key])])
        return {"median": float(np.median(x)), "min": float(x.min()), "max": float(x.max()), "rounds": len(x)}
    base = results["numpy batched (hand)"]
    ours = results["chainrule batched"]
    goals = {}
    for label, ref, g in GOALS:
        q = ratio("chainrule batched", ref, "step")
        goals[label] = {"goal": g, "ratio": q["median"], "range": [q["min"], q["max"]], "rounds": q["rounds"],
                        "met": bool(q["median"] >= g)}
    out = {"model": args.model, "dim": args.dim, "batch_size": args.batch_size, "dtype": args.dtype,
           "nodes_per_batch": float(np.mean([b.num_nodes for b in batches])),
           "levels_per_batch": float(np.mean([len(b.children) for b in batches])),
           "hand_vs_engine_rel_error": {"loss": rel_loss, "grad": rel_grad},
           "torch": {"note": torch_note, "vs_chainrule_float64_rel_error": torch_err},
           "rounds": args.rounds, "trees_per_s": results, "trees_per_s_by_round": rates,
           "vs_hand_fwd_bwd": ratio("chainrule batched", "numpy batched (hand)", "fwd+bwd"), "goals_step": goals}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{args.model.upper()} d={args.dim}, batch {args.batch_size} real SST train trees "
          f"({out['nodes_per_batch']:.0f} nodes, {out['levels_per_batch']:.1f} levels per batch), {args.dtype}; "
          f"hand NumPy vs engine: loss rel err {rel_loss:.1e}, grad rel err {rel_grad:.1e}")
    if torch_err is None:
        print(f"PyTorch per-node path: {torch_note}")
    else:
        print(f"PyTorch per-node path ({torch_note}; AdaGrad by hand on torch tensors) vs chainrule, "
              f"float64: loss rel err {torch_err['loss']:.1e}, grad rel err {torch_err['grad']:.1e}, "
              f"params after 2 updates {torch_err['params_after_2_updates']:.1e}")
    print(f"trees/s: median over {args.rounds} interleaved rounds (per-node paths: one round)")
    print(f"{'path':<24}{'fwd+bwd trees/s':>17}{'step trees/s':>15}{'vs hand (fwd+bwd)':>19}{'vs hand (step)':>16}")
    for name, row in results.items():
        print(f"{name:<24}{row['fwd+bwd']:>17.0f}{row['step']:>15.0f}"
              f"{row['fwd+bwd'] / base['fwd+bwd']:>18.2f}x{row['step'] / base['step']:>15.2f}x")
    for name in ("chainrule per-node", "torch per-node"):
        if name in results:
            pn = results[name]
            print(f"chainrule batched / {name}: {ours['fwd+bwd'] / pn['fwd+bwd']:.1f}x (fwd+bwd), "
                  f"{ours['step'] / pn['step']:.1f}x (step)")
    for label, g in goals.items():
        spread = (f" (median of {g['rounds']} paired rounds, range {g['range'][0]:.3g}-{g['range'][1]:.3g})"
                  if g["rounds"] > 1 else " (one round)")
        print(f"goal: {label} >= {g['goal']:g}x (step): {g['ratio']:.3g}x{spread} -- {'met' if g['met'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
