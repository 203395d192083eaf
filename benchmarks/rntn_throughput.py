"""Trees per second of RNTN training steps on real SST training trees: chainrule batched by level,
the same level-batched step written by hand in NumPy, and chainrule's per-node reference path, in
the same process on the same minibatches.

    python benchmarks/rntn_throughput.py                       # d=25, batch 27, RNTN
    python benchmarks/rntn_throughput.py --batch-size 25 --model rnn --json

Each path runs forward + backward (the gradient of the batch loss with respect to every
parameter, word vectors row-sparse) and, in the "step" column, an AdaGrad update too (the same
hand-written row-sparse AdaGrad for all three, so the update cost is identical). float32 unless
``--dtype float64``. The hand-written NumPy step is checked against the engine's gradients first.
Run with ``OPENBLAS_NUM_THREADS=1`` for single-core numbers.
"""
from __future__ import annotations

import argparse
import json
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


# ------------------------------------------------------------------------------ the three paths
def make_paths(kind, d, vocab, dtype):
    model = R.build_model({"model": kind, "dim": d}, vocab, seed=0, dtype=dtype)
    P = model.params()
    arrays = {k: t.data for k, t in P.items()}
    hist = {k: np.zeros_like(a) for k, a in arrays.items()}

    def engine_grads(loss):
        for t in P.values():
            t.grad = None
        loss.backward()
        g = {k: t.grad for k, t in P.items()}
        for t in P.values():
            t.grad = None
        return g

    def batched(batch, update):
        loss, _ = R.loss_batched(P, batch)
        g = engine_grads(loss)
        if update:
            adagrad_update(arrays, g, hist)

    def per_node(batch, update):
        loss = R.loss_per_node(P, batch.trees)
        g = engine_grads(loss)
        if update:
            adagrad_update(arrays, g, hist)

    def hand(batch, update):
        _, g = numpy_grads(arrays, batch)
        if update:
            adagrad_update(arrays, g, hist)

    return model, P, {"chainrule batched": batched, "numpy batched (hand)": hand, "chainrule per-node": per_node}


def check(P, batch):
    loss, _ = R.loss_batched(P, batch)
    for t in P.values():
        t.grad = None
    loss.backward()
    ref = {k: np.asarray(t.grad, dtype=np.float64) for k, t in P.items()}
    for t in P.values():
        t.grad = None
    l2, g = numpy_grads({k: t.data for k, t in P.items()}, batch)
    worst = max(float(np.abs(np.asarray(g[k], dtype=np.float64) - ref[k]).max() / (np.abs(ref[k]).max() + 1e-12))
                for k in ref)
    return abs(l2 - loss.item()) / abs(loss.item()), worst


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="rntn", choices=["rntn", "rnn"])
    ap.add_argument("--dim", type=int, default=25)
    ap.add_argument("--batch-size", type=int, default=27)
    ap.add_argument("--batches", type=int, default=40, help="minibatches timed per path (per-node: a quarter)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    dtype = np.float32 if args.dtype == "float32" else np.float64
    train = sst.load("train")
    vocab = R.Vocab.from_trees(train)
    ds = R.TreeDataset(train, vocab)
    rng = np.random.default_rng(0)
    idx = [rng.choice(len(ds), args.batch_size, replace=False) for _ in range(args.batches)]
    batches = [ds.batch(i) for i in idx]
    _, P, paths = make_paths(args.model, args.dim, vocab, dtype)
    rel_loss, rel_grad = check(P, batches[0])
    results = {}
    for name, fn in paths.items():
        nb = max(2, args.batches // 4) if "per-node" in name else args.batches
        row = {}
        for update in (False, True):
            fn(batches[0], update)                        # warm-up
            t0 = time.perf_counter()
            for bt in batches[:nb]:
                fn(bt, update)
            dt = time.perf_counter() - t0
            row["step" if update else "fwd+bwd"] = nb * args.batch_size / dt
        results[name] = row
    base = results["numpy batched (hand)"]
    out = {"model": args.model, "dim": args.dim, "batch_size": args.batch_size, "dtype": args.dtype,
           "nodes_per_batch": float(np.mean([b.num_nodes for b in batches])),
           "levels_per_batch": float(np.mean([len(b.children) for b in batches])),
           "hand_vs_engine_rel_error": {"loss": rel_loss, "grad": rel_grad}, "trees_per_s": results}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{args.model.upper()} d={args.dim}, batch {args.batch_size} real SST train trees "
          f"({out['nodes_per_batch']:.0f} nodes, {out['levels_per_batch']:.1f} levels per batch), {args.dtype}; "
          f"hand NumPy vs engine: loss rel err {rel_loss:.1e}, grad rel err {rel_grad:.1e}")
    print(f"{'path':<24}{'fwd+bwd trees/s':>17}{'step trees/s':>15}{'vs hand (step)':>16}")
    for name, row in results.items():
        print(f"{name:<24}{row['fwd+bwd']:>17.0f}{row['step']:>15.0f}{row['step'] / base['step']:>15.2f}x")
    b, pn = results["chainrule batched"], results["chainrule per-node"]
    print(f"batched / per-node: {b['fwd+bwd'] / pn['fwd+bwd']:.1f}x (fwd+bwd), {b['step'] / pn['step']:.1f}x (step)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
