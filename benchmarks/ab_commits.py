"""The eager workloads of this directory at several commits, interleaved: is the engine faster or
slower than it was?

    OPENBLAS_NUM_THREADS=1 python benchmarks/ab_commits.py c36bc65 main HEAD
    OPENBLAS_NUM_THREADS=1 python benchmarks/ab_commits.py c36bc65 HEAD --rounds 5 --work mlp_small,op_tanh_16

Each commit is checked out once into a temporary git worktree; every measurement runs in a fresh
child process with ``PYTHONPATH`` set to that worktree's ``src`` and the benchmark code of *this*
tree (``mlp_train.py``, ``op_overhead.py``, ...: the same workload and the same hand-written NumPy
for every commit).  A child times its workload against the hand-written NumPy step in alternating
blocks and reports the median over blocks of t_hand / t_chainrule (> 1: faster than hand-written
NumPy).  Rounds rotate the order of the commits; every (malloc setting, workload) pair runs each
commit once per round.  The table gives, per commit, the median (and range) over rounds, and for
each commit after the first the median (and range) of the per-round ratios to the first commit
(> 1: faster than the first commit) -- paired, so a burst of load from elsewhere hits both sides.
The 1-minute load average is printed: on a shared machine the absolute numbers move, the paired
ratios much less.

Workloads: ``mlp_small`` / ``mlp_big`` (``mlp_train.py``'s two configurations, one SGD step),
``lstm`` (``lstm_train.py``, fwd+bwd), ``window`` (``window_train.py``, sparse SGD), ``rntn``
(``rntn_train.py``'s level-batched AdaGrad step over 8 minibatches of 25 SST trees),
``op_<tanh|sig>_<size>`` (``op_overhead.py``'s chains).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _harness import MALLOC_ENV  # noqa: E402

WORKLOADS = ("mlp_small", "mlp_big", "op_tanh_16", "op_sig_16", "op_sig_4096", "lstm", "window", "rntn")


# ------------------------------------------------------------------------------- the child
def pair(work):
    """(hand, chainrule): two zero-argument functions, one training step (or chain) each."""
    if work.startswith("mlp"):
        import mlp_train as m
        sizes, _, x, y = m._data(0 if work == "mlp_big" else 1)
        a, b = m.numpy_step_factory(sizes), m.chainrule_step_factory(sizes)
        return (lambda: a(x, y)), (lambda: b(x, y))
    if work == "lstm":
        import lstm_train as m
        x, r, s = m.data()
        a, b = m.numpy_factory(), m.chainrule_factory()
        return (lambda: a(x, r, s)), (lambda: b(x, r, s))
    if work == "window":
        import window_train as m
        rng = np.random.default_rng(1)
        words = rng.integers(0, m.V, size=(m.BATCH, m.C))
        y = rng.integers(0, 2, size=m.BATCH).astype(np.float32)
        a, b = m.numpy_step_factory(), m.chainrule_step_factory()
        return (lambda: a(words, y)), (lambda: b(words, y))
    if work == "rntn":
        import rntn_train as m
        from chainrule.data import sst
        train = sst.load("train")
        vocab = m.R.Vocab.from_trees(train)
        rng = np.random.default_rng(0)
        idx = [rng.choice(len(train), 25, replace=False) for _ in range(8)]
        batches = [m.R.TreeBatch([m.R.encode_tree(train[int(j)], vocab) for j in i]) for i in idx]
        _, _, paths, _ = m.make_paths("rntn", 25, vocab, np.float32, with_torch=False)
        h, c = paths["numpy batched (hand)"], paths["chainrule batched"]
        return (lambda: [h(bt, True) for bt in batches]), (lambda: [c(bt, True) for bt in batches])
    if work.startswith("op_"):
        import op_overhead as m
        import chainrule as cr
        chain, n = work[3:].split("_")
        rng = np.random.default_rng(0)
        x0 = rng.uniform(-1, 1, int(n)).astype(np.float32)
        w0 = rng.uniform(0.5, 1.5, int(n)).astype(np.float32)
        if chain == "tanh":
            return (lambda: m.tanh_hand(x0)), (lambda: m.tanh_engine(cr, x0))
        return (lambda: m.sigmoid_hand(x0, w0)), (lambda: m.sigmoid_engine(cr, x0, w0))
    raise SystemExit(f"unknown workload {work!r}; known: {', '.join(WORKLOADS)}")


def child(work, seconds):
    hand, eng = pair(work)
    for f in (hand, eng, hand, eng):
        f()
    t0 = time.perf_counter()
    hand()
    eng()
    block = max(3, int(0.05 / max(time.perf_counter() - t0, 1e-6)))
    ratios, t_end = [], time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(ratios) < 5:
        ts = []
        for f in (hand, eng):
            f()                                   # the first step after the other one: not counted
            v = []
            for _ in range(block):
                t0 = time.perf_counter()
                f()
                v.append(time.perf_counter() - t0)
            ts.append(np.median(v))
        ratios.append(ts[0] / ts[1])
    return {"ratio": float(np.median(ratios)), "blocks": len(ratios)}


# ------------------------------------------------------------------------------- the driver
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("commits", nargs="*", help="commits (anything git rev-parse takes); the first is the baseline")
    ap.add_argument("--work", default=",".join(WORKLOADS), help="comma-separated workloads")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.5, help="timing budget per child")
    ap.add_argument("--malloc", default="default,raised", help="glibc malloc settings: default, raised or both")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.seconds)))
        return
    if len(args.commits) < 2:
        ap.error("give at least two commits")
    root = subprocess.run(["git", "-C", HERE, "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                          check=True).stdout.strip()
    tmp = tempfile.mkdtemp(prefix="ab_commits_")
    trees = {}
    try:
        for c in args.commits:
            sha = subprocess.run(["git", "-C", root, "rev-parse", "--short", c], capture_output=True, text=True,
                                 check=True).stdout.strip()
            path = os.path.join(tmp, sha)
            if sha not in trees.values():
                subprocess.run(["git", "-C", root, "worktree", "add", "--detach", path, sha], capture_output=True,
                               check=True)
            trees[f"{c} ({sha})" if c != sha else c] = path
        run(trees, args)
    finally:
        for path in set(trees.values()):
            subprocess.run(["git", "-C", root, "worktree", "remove", "--force", path], capture_output=True)


def run(trees, args):
    works = args.work.split(",")
    names = list(trees)
    res, loads = {}, []
    for r in range(args.rounds):
        for mal in args.malloc.split(","):
            for w in works:
                for name in names[r % len(names):] + names[:r % len(names)]:
                    env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
                    env["PYTHONPATH"] = os.path.join(trees[name], "src")
                    if mal == "raised":
                        env.update(MALLOC_ENV)
                    p = subprocess.run([sys.executable, __file__, "--child", w, "--seconds", str(args.seconds)],
                                       env=env, capture_output=True, text=True)
                    if p.returncode:
                        print(f"{name} {w}: {p.stderr[-1000:]}", file=sys.stderr)
                        continue
                    res.setdefault((mal, w), {}).setdefault(name, []).append(
                        json.loads(p.stdout.strip().splitlines()[-1])["ratio"])
        loads.append(os.getloadavg()[0])
        print(f"round {r + 1}/{args.rounds} done (load average {loads[-1]:.2f})", file=sys.stderr, flush=True)
    print(f"t_hand / t_chainrule, median (range) of {args.rounds} rounds; OPENBLAS_NUM_THREADS="
          f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}; 1-min load average {min(loads):.2f}-{max(loads):.2f}")
    base = names[0]
    head = f"{'malloc':<8}{'workload':<13}" + "".join(f"{n[:20]:>22}" for n in names)
    head += "".join(f"{(n.split()[0] + ' / ' + base.split()[0])[:20]:>22}" for n in names[1:])
    print(head)
    for (mal, w), d in res.items():
        row = f"{mal:<8}{w:<13}"
        for n in names:
            v = d.get(n, [])
            row += f"{np.median(v):>8.3f} ({min(v):.2f}-{max(v):.2f})".rjust(22) if v else "-".rjust(22)
        for n in names[1:]:
            k = min(len(d.get(n, [])), len(d.get(base, [])))
            q = np.array(d[n][:k]) / np.array(d[base][:k]) if k else None
            row += f"{np.median(q):>8.3f} ({q.min():.2f}-{q.max():.2f})".rjust(22) if k else "-".rjust(22)
        print(row)


if __name__ == "__main__":
    main()
