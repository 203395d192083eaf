"""A tree minibatch has a new level schedule: does a captured plan per schedule, or one bucketed
plan for many schedules, pay over the eager step?  (issue 17; RNTN d=25, SST, AdaGrad, float32)

    OPENBLAS_NUM_THREADS=1 python benchmarks/tree_plans.py               # ~1 min
    OPENBLAS_NUM_THREADS=1 python benchmarks/tree_plans.py --epochs 3 --rounds 7 --json

Two parts.

1. How often schedules repeat.  Shuffled epochs of the SST training set in minibatches of
   ``--batch-size`` trees: the number of distinct ``cr.compile`` signatures (the key of a plan: the
   shapes of every array of the batch) and the share of minibatches whose signature was seen
   before -- in the same epoch and in any earlier one.  Then *bucketed* schedules: every level's
   width (and the leaves) rounded up to a multiple of q, the number of levels to a multiple of r,
   so that schedules which round alike could share a plan: their distinct count, the share of
   repeats, and the rows the padding adds (padded nodes / real nodes).

2. What a step costs, each path on its own stream of minibatches, interleaved in ``--rounds``
   rounds of ``--block`` steps (paired per-round ratios t_hand / t_path, > 1 faster than the
   hand-written NumPy step of ``rntn_train.py``):

   * ``eager``: the eager step (``NodeTable.levels``) on new minibatches, as in training;
   * ``compiled, new schedules``: a fresh ``cr.compile`` fed the same kind of stream -- every call
     is a new signature, so every call captures (records) and none replays; it falls back to eager
     after 33 such calls (``max_signatures``), so a block is at most 30 steps;
   * ``eager, 4 cycled`` / ``compiled, 4 cycled``: four minibatches cycled (``peers.py``'s setting,
     the best case for plans per schedule: every schedule repeats), the replay against the eager
     step on the same four;
   * ``eager, padded`` / ``compiled, padded, cycled``: the same four padded to the buckets of
     ``--pad`` (q, r): the work a bucketed plan would replay (padding rows read two padding leaves;
     their labels are not masked here -- a real bucketed plan would also pay a weight array in the
     loss), eager and as a replay.

A bucketed plan's step costs at least ``compiled, padded, cycled``; a plan per schedule replays
only if schedules repeat (part 1 says they do not, in a shuffled epoch).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rntn_train as RT  # noqa: E402

import chainrule as cr  # noqa: E402
from chainrule.compile import _walk  # noqa: E402  (the plan key: the signature of the arguments)
from chainrule.data import sst  # noqa: E402
from chainrule.models import rntn as R  # noqa: E402
from chainrule.ops.table import LevelSchedule  # noqa: E402


def _up(n, q):
    return -(-n // q) * q


def bucket(batch, q, r):
    """The bucketed shape of a batch: (leaves, level widths), every width rounded up to a multiple
    of q (an empty level to q), the number of levels to a multiple of r, the leaves to a multiple
    of q plus 2q padding leaves (the children of the padding nodes: a level pads at most q rows).
    Batches with the same bucket have arrays of the same shapes: one plan would serve them."""
    widths = [len(c) for c in batch.children]
    widths += [0] * (_up(len(widths), r) - len(widths))
    return _up(int(batch.bounds[1]), q) + 2 * q, tuple(_up(max(w, 1), q) for w in widths)


def pad_batch(batch, q, r):
    """``batch`` with every level padded to its bucket (:func:`bucket`): padding leaves (word 0),
    padding nodes reading two padding leaves each, labels 0; the real rows keep their order."""
    n0, widths = bucket(batch, q, r)
    real = [len(c) for c in batch.children]
    pads = [w - (real[i] if i < len(real) else 0) for i, w in enumerate(widths)]
    starts = np.concatenate([[0, n0], n0 + np.cumsum(widths)])
    new = np.empty(batch.num_nodes, dtype=np.intp)             # old row -> new row
    b = batch.bounds
    new[:b[1]] = np.arange(b[1])
    for h in range(1, len(b) - 1):
        new[b[h]:b[h + 1]] = starts[h] + np.arange(b[h + 1] - b[h])
    first_pad_leaf = int(b[1])
    children = []
    for i, w in enumerate(widths):
        ch = new[batch.children[i]] if i < len(real) else np.empty((0, 2), np.intp)
        p = pads[i]
        padc = first_pad_leaf + np.arange(2 * p).reshape(p, 2)
        children.append(np.concatenate([ch, padc]).astype(np.intp))
    out = R.TreeBatch.__new__(R.TreeBatch)
    out.trees = batch.trees
    out.bounds = starts
    out.leaf_words = np.concatenate([batch.leaf_words, np.zeros(n0 - int(b[1]), np.intp)])
    labels = np.zeros(int(starts[-1]), np.intp)
    labels[new] = batch.labels
    out.labels = labels
    out.roots = new[batch.roots]
    out._pos, out._offs = np.zeros(0, np.intp), np.zeros(1, np.intp)
    out.num_nodes = int(starts[-1])
    out.schedule = LevelSchedule(starts[1:], children)
    return out


def epoch_stats(train, vocab, batch_size, epochs, buckets, seed=0):
    enc = [R.encode_tree(t, vocab) for t in train]
    rng = np.random.default_rng(seed)
    seen, seen_b = set(), {qr: set() for qr in buckets}
    rows = {"minibatches": 0, "exact": {"distinct": 0, "repeat_in_epoch": 0, "repeat_any": 0}}
    bstats = {qr: {"distinct": 0, "repeat_any": 0, "real_nodes": 0, "padded_nodes": 0} for qr in buckets}
    for _ in range(epochs):
        order = rng.permutation(len(enc))
        in_epoch = set()
        for i in range(0, len(order) - batch_size + 1, batch_size):
            batch = R.TreeBatch([enc[j] for j in order[i:i + batch_size]])
            sig = _walk((batch,))[1]
            rows["minibatches"] += 1
            ex = rows["exact"]
            ex["repeat_in_epoch"] += sig in in_epoch
            ex["repeat_any"] += sig in seen
            in_epoch.add(sig)
            seen.add(sig)
            for qr in buckets:
                key = bucket(batch, *qr)
                s = bstats[qr]
                s["repeat_any"] += key in seen_b[qr]
                seen_b[qr].add(key)
                s["real_nodes"] += batch.num_nodes
                s["padded_nodes"] += key[0] + sum(key[1])
    rows["exact"]["distinct"] = len(seen)
    for qr in buckets:
        bstats[qr]["distinct"] = len(seen_b[qr])
        bstats[qr]["padding"] = bstats[qr]["padded_nodes"] / bstats[qr]["real_nodes"]
    rows["bucketed"] = {f"q={q}, r={r}": v for (q, r), v in bstats.items()}
    return rows


def _stepper(vocab, compiled=False):
    step = RT.engine_step(vocab)
    return cr.compile(step) if compiled else step


def timings(train, vocab, rounds, block, pad, seed=1):
    rng = np.random.default_rng(seed)
    enc = [R.encode_tree(t, vocab) for t in train]
    nfresh = block * (rounds + 1)
    fresh = [R.TreeBatch([enc[j] for j in rng.choice(len(enc), 25, replace=False)]) for _ in range(nfresh)]
    cycle = fresh[:4]
    padded = [pad_batch(b, *pad) for b in cycle]
    model = R.build_model({"model": "rntn", "dim": 25}, vocab, seed=0)
    arrays = {k: t.data.copy() for k, t in model.params().items()}
    hist = {k: np.zeros_like(a) for k, a in arrays.items()}

    def hand(b):
        _, g = RT.numpy_grads(arrays, b)
        RT.adagrad_update(arrays, g, hist)
    eager, eager_c, eager_p = _stepper(vocab), _stepper(vocab), _stepper(vocab)
    comp_c, comp_p = _stepper(vocab, True), _stepper(vocab, True)
    paths = {"hand NumPy": (hand, "fresh"), "eager": (eager, "fresh"), "compiled, new schedules": (None, "fresh"),
             "eager, 4 cycled": (eager_c, cycle), "compiled, 4 cycled": (comp_c, cycle),
             "eager, padded": (eager_p, padded), "compiled, padded, cycled": (comp_p, padded)}
    for fn, stream in paths.values():             # warm-up; the cycled plans captured
        if fn is not None:
            for b in (fresh[:4] if isinstance(stream, str) else stream * 3):
                fn(b)
    times = {k: [] for k in paths}
    stats = {}
    for r in range(rounds):
        fr = fresh[(r + 1) * block:(r + 2) * block]
        for name, (fn, stream) in paths.items():
            if fn is None:                            # a new compiled step: every call a new signature
                fn = _stepper(vocab, True)
            bs = fr[:min(block, 30)] if name == "compiled, new schedules" else (
                fr if isinstance(stream, str) else [stream[k % 4] for k in range(block)])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                for b in bs:
                    fn(b)
                times[name].append((time.perf_counter() - t0) / len(bs))
            if name == "compiled, new schedules":
                stats[name] = dict(fn.stats)
    stats.update({k: dict(paths[k][0].stats) for k in ("compiled, 4 cycled", "compiled, padded, cycled")})
    hand_t = np.array(times["hand NumPy"])
    out = {}
    for name, ts in times.items():
        ratio = hand_t / np.array(ts)
        out[name] = {"us": float(np.median(ts) * 1e6), "vs_hand": float(np.median(ratio)),
                     "range": [float(ratio.min()), float(ratio.max())]}
    nodes = {"fresh": float(np.mean([b.num_nodes for b in fresh])), "cycled": float(np.mean([b.num_nodes for b in cycle])),
             "padded": float(np.mean([b.num_nodes for b in padded]))}
    return out, stats, nodes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-size", type=int, default=25)
    ap.add_argument("--epochs", type=int, default=2, help="shuffled epochs for the schedule statistics")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--block", type=int, default=20, help="steps per path per round")
    ap.add_argument("--pad", default="16,4", help="q,r of the padded batches timed (widths to q, levels to r)")
    ap.add_argument("--train-trees", type=int, default=0, help="use only the first N training trees (tests)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    train = sst.load("train")
    if args.train_trees:
        train = train[:args.train_trees]
    vocab = R.Vocab.from_trees(train)
    pad = tuple(int(x) for x in args.pad.split(","))
    buckets = [(8, 1), (16, 4), (32, 4), (64, 8), (128, 8)]
    st = epoch_stats(train, vocab, args.batch_size, args.epochs, buckets)
    t, cstats, nodes = timings(train, vocab, args.rounds, args.block, pad)
    out = {"schedules": st, "timing": t, "compile_stats": cstats, "nodes_per_batch": nodes, "pad": pad,
           "rounds": args.rounds, "block": args.block}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    mb, ex = st["minibatches"], st["exact"]
    print(f"{args.epochs} shuffled epochs of {len(train)} SST trees, minibatch {args.batch_size}: {mb} minibatches, "
          f"{ex['distinct']} distinct plan signatures; repeated within an epoch {ex['repeat_in_epoch']}, "
          f"seen in any earlier minibatch {ex['repeat_any']}")
    print(f"{'bucketed (widths to q, levels to r)':<38}{'distinct':>9}{'repeats':>9}{'padding':>9}")
    for k, v in st["bucketed"].items():
        print(f"{k:<38}{v['distinct']:>9}{v['repeat_any']:>9}{v['padding']:>8.2f}x")
    print(f"step times, RNTN d=25, {args.rounds} interleaved rounds of {args.block} steps (nodes per batch: "
          f"fresh {nodes['fresh']:.0f}, cycled {nodes['cycled']:.0f}, padded to q={pad[0]}, r={pad[1]}: {nodes['padded']:.0f})")
    for name, v in t.items():
        print(f"  {name:<28}{v['us']:>9.0f} µs  {v['vs_hand']:.2f}x hand ({v['range'][0]:.2f}-{v['range'][1]:.2f})"
              + (f"  {cstats[name]}" if name in cstats else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
