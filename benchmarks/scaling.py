"""How the engine's cost grows with the size of a graph: wide (many inputs to one op, many
consumers of one tensor) and deep (long chains), 1e3 … 1e5, with the fitted exponent of each case
(issue 14, "no quadratic cliffs": every exponent should be ≤ 1.1 and the 1e5 cases take seconds).

    OPENBLAS_NUM_THREADS=1 python benchmarks/scaling.py                 # 1e3 … 1e5, every case
    python benchmarks/scaling.py --max 1e4 --cases stack_wide,rntn_deep   # a quick look
    python benchmarks/scaling.py --json

Cases (time of the stated part, seconds; n = the size swept):

  stack_wide    backward of ``stack`` of n leaf (1, 4) tensors, then a sum
  concat_wide   backward of ``concat`` of n leaf (1, 4) tensors, then a sum
  fanout_wide   backward of Σ_i c_i · x: one leaf with n consumers
  index_wide    backward of Σ_i c_i · x[i]: n indexing consumers of one leaf of n elements
  stack_deep    backward of a chain of n steps y ← sum(stack([y, x_k]), axis=0)
  concat_deep   backward of a chain of n steps y ← concat([y, x_k])[:4] (size stays 4)
  chain_deep    backward of a chain of n steps y ← y · c (one op per step)
  rntn_wide     RNTN (d=8) forward, then backward, of one balanced tree with n leaves
  rntn_deep     RNTN (d=8) forward, then backward, of one caterpillar tree of depth n (2n+1 nodes)

The exponent is the least-squares slope of log(time) against log(n) over the sizes measured that
took at least 20 ms (below that, timer noise and fixed costs dominate).
A case whose time at one size exceeds ``--budget`` seconds is not run at larger sizes (the cliff
is then visible in the exponent already; the skip is printed).  Times are single measurements on
a machine shared with other processes: the exponents are robust to that, single times are not.
The garbage collector's share of the forward of the 1e6-op chain is measured separately
(``--gc``): the same chain with the collector enabled and disabled.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import time

import numpy as np

import chainrule as cr
from chainrule.models import rntn as R


def _leafs(n, rng):
    return [cr.tensor(v, requires_grad=True) for v in rng.standard_normal((n, 1, 4))]


def _timed_backward(y):
    """Seconds taken by ``y.backward()``."""
    t0 = time.perf_counter()
    y.backward()
    return time.perf_counter() - t0


def stack_wide(n, rng):
    xs = _leafs(n, rng)
    y = cr.stack(xs).sum()
    return _timed_backward(y)


def concat_wide(n, rng):
    xs = _leafs(n, rng)
    y = cr.concat(xs).sum()
    return _timed_backward(y)


def fanout_wide(n, rng):
    x = cr.tensor(rng.standard_normal(4), requires_grad=True)
    terms = [x * float(c) for c in rng.standard_normal(n)]
    s = terms[0]
    for t in terms[1:]:
        s = s + t
    y = s.sum()
    return _timed_backward(y)


def index_wide(n, rng):
    x = cr.tensor(rng.standard_normal(n), requires_grad=True)
    c = rng.standard_normal(n)
    s = x[0] * float(c[0])
    for i in range(1, n):
        s = s + x[i] * float(c[i])
    return _timed_backward(s)


def stack_deep(n, rng):
    x = cr.tensor(rng.standard_normal(4), requires_grad=True)
    y = x
    for k in range(n):
        y = cr.stack([y, x * 0.5]).sum(axis=0) * 0.5
    y = y.sum()
    return _timed_backward(y)


def concat_deep(n, rng):
    x = cr.tensor(rng.standard_normal(4), requires_grad=True)
    y = x
    for k in range(n):
        y = cr.concat([y, x])[:4] * 0.5
    y = y.sum()
    return _timed_backward(y)


def chain_deep(n, rng):
    x = cr.tensor(rng.standard_normal(4), requires_grad=True)
    y = x
    for k in range(n):
        y = y * 0.999
    y = y.sum()
    return _timed_backward(y)


def caterpillar(depth, n_words, rng):
    """An EncodedTree: leaf, then depth times node(previous, new leaf); post-order."""
    n = 2 * depth + 1
    e = R.EncodedTree()
    e.word = np.full(n, -1, dtype=np.intp)
    e.left = np.full(n, -1, dtype=np.intp)
    e.right = np.full(n, -1, dtype=np.intp)
    e.height = np.zeros(n, dtype=np.intp)
    e.word[0] = 0
    k = np.arange(depth)
    e.word[2 * k + 1] = rng.integers(n_words, size=depth)
    e.left[2 * k + 2] = np.concatenate([[0], 2 * k[:-1] + 2])
    e.right[2 * k + 2] = 2 * k + 1
    e.height[2 * k + 2] = k + 1
    e.label = rng.integers(R.NUM_CLASSES, size=n).astype(np.intp)
    e.nodes = None
    return e


def balanced(leaves, n_words, rng):
    """An EncodedTree: a balanced binary tree over ``leaves`` leaves, post-order, built without recursion."""
    word, left, right, height = [], [], [], []
    level = []
    for _ in range(leaves):
        word.append(int(rng.integers(n_words)))
        left.append(-1), right.append(-1), height.append(0)
        level.append(len(word) - 1)
    while len(level) > 1:                       # pairs of the previous level (an odd one is carried)
        nxt = []
        for i in range(0, len(level) - 1, 2):
            a, b = level[i], level[i + 1]
            word.append(-1), left.append(a), right.append(b)
            height.append(1 + max(height[a], height[b]))
            nxt.append(len(word) - 1)
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    e = R.EncodedTree()                         # children always precede parents: a valid post-order
    e.word, e.left, e.right, e.height = (np.array(v, dtype=np.intp) for v in (word, left, right, height))
    e.label = rng.integers(R.NUM_CLASSES, size=len(word)).astype(np.intp)
    e.nodes = None
    return e


_VOCAB = R.Vocab([R.UNK] + [f"w{i}" for i in range(99)])


def _rntn(tree):
    model = R.RNTN(_VOCAB, dim=8, dtype=np.float64)
    batch = R.TreeBatch([tree])
    t0 = time.perf_counter()
    loss, _ = R.loss_batched(model.params(), batch)
    t1 = time.perf_counter()
    loss.backward()
    return t1 - t0, time.perf_counter() - t1


def rntn_wide(n, rng):
    return _rntn(balanced(n, len(_VOCAB), rng))


def rntn_deep(n, rng):
    return _rntn(caterpillar(n, len(_VOCAB), rng))


CASES = {"stack_wide": stack_wide, "concat_wide": concat_wide, "fanout_wide": fanout_wide, "index_wide": index_wide,
         "stack_deep": stack_deep, "concat_deep": concat_deep, "chain_deep": chain_deep,
         "rntn_wide": rntn_wide, "rntn_deep": rntn_deep}


def exponent(ns, ts, floor=0.02):
    """Least-squares slope of log t against log n over the points that took at least ``floor``
    seconds (timer noise and fixed costs dominate below; all points if fewer than two are above);
    None with fewer than two points."""
    pts = [(math.log(n), math.log(t)) for n, t in zip(ns, ts) if t >= floor]
    if len(pts) < 2:
        pts = [(math.log(n), math.log(t)) for n, t in zip(ns, ts) if t > 0]
    if len(pts) < 2:
        return None
    x, y = np.array(pts).T
    return float(np.polyfit(x, y, 1)[0])


def gc_share(n):
    """Forward and backward of an n-op chain with the garbage collector enabled and disabled."""
    out = {}
    for mode in ("enabled", "disabled"):
        gc.collect()
        if mode == "disabled":
            gc.disable()
        try:
            x = cr.tensor(np.ones(4), requires_grad=True)
            t0 = time.perf_counter()
            y = x
            for _ in range(n):
                y = y * 1.0000001
            t1 = time.perf_counter()
            y.sum().backward()
            t2 = time.perf_counter()
        finally:
            gc.enable()
        out[mode] = {"forward_s": t1 - t0, "backward_s": t2 - t1}
        del x, y
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--min", type=float, default=1e3)
    ap.add_argument("--max", type=float, default=1e5)
    ap.add_argument("--points", type=int, default=5, help="sizes, geometric from --min to --max")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--budget", type=float, default=60.0, help="seconds; larger sizes are skipped after a slower one")
    ap.add_argument("--gc", type=float, default=1e6, help="ops of the chain for the gc measurement (0: skip)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    sizes = sorted({int(round(v)) for v in np.geomspace(args.min, args.max, args.points)})
    rng = np.random.default_rng(0)
    results = {}
    for name in args.cases.split(","):
        fn = CASES[name]
        rows = []
        for n in sizes:
            if rows and rows[-1]["total_s"] > args.budget:
                rows.append({"n": n, "skipped": f"{rows[-1]['n']} took {rows[-1]['total_s']:.1f} s > budget"})
                continue
            t = fn(n, rng)
            row = {"n": n}
            if isinstance(t, tuple):
                row.update(forward_s=t[0], backward_s=t[1], total_s=t[0] + t[1])
            else:
                row.update(backward_s=t, total_s=t)
            rows.append(row)
            gc.collect()
        done = [r for r in rows if "total_s" in r]
        fit = {k: exponent([r["n"] for r in done], [r[k] for r in done])
               for k in ("forward_s", "backward_s", "total_s") if done and k in done[0]}
        results[name] = {"rows": rows, "exponent": fit}
        if not args.json:
            cells = "  ".join(f"n={r['n']}: " + (f"{r['total_s']:.3f}s" if "total_s" in r else "skipped")
                              for r in rows)
            ex = ", ".join(f"{k[:-2]} {v:.2f}" for k, v in fit.items() if v is not None)
            print(f"{name:<12} exponent {ex:<40} {cells}", flush=True)
    if args.gc:
        results["gc_chain"] = {"ops": int(args.gc), **gc_share(int(args.gc))}
        if not args.json:
            g = results["gc_chain"]
            share = 1 - g["disabled"]["forward_s"] / g["enabled"]["forward_s"]
            print(f"gc: {int(args.gc)}-op chain forward {g['enabled']['forward_s']:.2f} s with the collector, "
                  f"{g['disabled']['forward_s']:.2f} s without ({share:.0%} of the forward); backward "
                  f"{g['enabled']['backward_s']:.2f} s / {g['disabled']['backward_s']:.2f} s")
    worst = max((v for r in results.values() if "exponent" in r for v in r["exponent"].values() if v is not None),
                default=None)
    results["worst_exponent"] = worst
    if args.json:
        print(json.dumps(results, indent=2))
    elif worst is not None:
        print(f"worst exponent {worst:.2f} (goal <= 1.1); machine shared with other processes, "
              f"single measurements")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
