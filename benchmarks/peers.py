"""Every workload of issue 17, every implementation, interleaved in one run, under both allocator
settings: chainrule eager, chainrule compiled (``cr.compile``), the same step written by hand in
NumPy, PyTorch eager and JAX ``jit`` (each when importable; neither is a dependency).

    OPENBLAS_NUM_THREADS=1 python benchmarks/peers.py                  # all workloads, ~5 min
    OPENBLAS_NUM_THREADS=1 python benchmarks/peers.py --workloads mlp_small,window --rounds 9
    python benchmarks/peers.py --json
    OPENBLAS_NUM_THREADS=1 python benchmarks/peers.py --gc off --settings default   # the collector's cost
    python benchmarks/peers.py --settings default      # OpenBLAS's default threads (one per core)

Workloads (float32; "step" = forward + backward + update unless stated):

  chain       50 × (mul, add, tanh) on 16 elements, forward + backward (gradient w.r.t. the input)
  mlp_big     MLP 784-256-256-10, ReLU, softmax cross-entropy, batch 128, SGD
  mlp_small   MLP 64-64-64-10, batch 16, SGD
              (both MLPs also time "matmuls alone (bound)": only the step's 8 matrix products, into
              preallocated buffers -- the speed any NumPy implementation could reach were every other
              operation free)
  rntn        RNTN d=25 on 25 real SST training trees, level-batched, AdaGrad (lr 0.01, eps 1e-3);
              four minibatches cycled (a compiled step keeps one plan per level schedule)
  window      seed-002 window classifier: 100,000 × 50 embeddings, window 3, 100 tanh units, BCE,
              C/(2m)(‖W‖²+‖U‖²), batch 64, SGD with a row-sparse embedding update
  lstm        LSTM 64→128, T=50, batch 32, forward + backward of Σ r·h_T + Σ s·h_t (no update)

Method: each implementation is built once (same initial weights), warmed up, then timed in
``--rounds`` rounds; every round times every implementation of the workload back to back
(``--block`` steps each), so a burst of load from the other processes on the machine hits all of
them alike.  Reported: the median µs per step of each implementation, and its speed relative to
hand-written NumPy as the median over rounds of the *paired* per-round ratio t_hand / t_impl
(> 1: faster than the hand-written step), with its range.  The whole run happens twice, in child
processes: glibc's default malloc, and MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ raised
(see _harness.py).  JAX's times exclude compilation (warm-up); its steps are blocked on.  With one BLAS thread
the process is pinned to one core (JAX's XLA runs a thread pool of its own otherwise).  Page
faults per step: the median over rounds of the process's minor faults (``getrusage`` ru_minflt)
during a block, divided by its steps -- memory mapped and unmapped again by the allocator.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import SETTINGS, run_child  # noqa: E402

THREADS = int(os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))      # PyTorch's intra-op threads: the same budget


def _torch():
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(THREADS)
    return torch


def _jax():
    try:
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
                              if THREADS == 1 else "")
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None, None
    return jax, jnp


def _compiled(step):
    import chainrule as cr
    return cr.compile(step)


# ------------------------------------------------------------------------------------ chain
def chain_impls():
    import chainrule as cr
    steps, n = 50, 16
    x0 = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    a, c = np.float32(0.9), np.float32(0.1)

    def hand():
        ts, y = [], x0
        for _ in range(steps):
            y = np.tanh(y * a + c)
            ts.append(y)
        g = np.ones_like(x0)
        for t in reversed(ts):
            g = g * (1 - t * t) * a
        return g

    x = cr.Tensor._wrap(x0.copy(), requires_grad=True)

    def eager_step():
        x.grad = None
        y = x
        for _ in range(steps):
            y = cr.tanh(y * 0.9 + 0.1)
        loss = y.sum()
        loss.backward()
        return loss

    comp = _compiled(eager_step)
    impls = {"numpy (hand)": hand, "chainrule eager": eager_step, "chainrule compiled": lambda: comp()}
    torch = _torch()
    if torch is not None:
        xt = torch.tensor(x0, requires_grad=True)

        def torch_step():
            xt.grad = None
            y = xt
            for _ in range(steps):
                y = torch.tanh(y * 0.9 + 0.1)
            y.sum().backward()
        impls["torch eager"] = torch_step
    jax, jnp = _jax()
    if jax is not None:
        def f(x):
            y = x
            for _ in range(steps):
                y = jnp.tanh(y * 0.9 + 0.1)
            return y.sum()
        gf = jax.jit(jax.grad(f))
        xj = jnp.asarray(x0)
        impls["jax jit"] = lambda: gf(xj).block_until_ready()
    return impls, {"compiled": comp}


# ------------------------------------------------------------------------------------ MLPs
def mlp_impls(sizes, batch):
    import mlp_train as M

    import chainrule as cr
    from chainrule import losses, nn, optim
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], batch)
    impls = {}
    hand = M.numpy_step_factory(sizes)
    impls["numpy (hand)"] = lambda: hand(x, y)
    eager = M.chainrule_step_factory(sizes)
    impls["chainrule eager"] = lambda: eager(x, y)

    model = nn.MLP(list(sizes), activation="relu", seed=0)
    Ws, bs = M.init_params(sizes)
    for m, W, b in zip([m for m in model.modules() if isinstance(m, nn.Linear)], Ws, bs):
        m.weight.data[...] = W
        m.bias.data[...] = b
    opt = optim.SGD(model.parameters(), lr=0.01)

    def step(x, y):
        loss = losses.cross_entropy(model(cr.Tensor._wrap(x)), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss
    comp = _compiled(step)
    impls["chainrule compiled"] = lambda: comp(x, y)
    impls["matmuls alone (bound)"] = _matmuls_only(x, Ws)
    if _torch() is not None:
        ts = M.torch_step_factory(sizes)
        impls["torch eager"] = lambda: ts(x, y)
    jax, jnp = _jax()
    if jax is not None:
        params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in zip(Ws, bs)]

        def loss_fn(params, x, y):
            h = x
            for i, (W, b) in enumerate(params):
                h = h @ W + b
                if i < len(params) - 1:
                    h = jnp.maximum(h, 0)
            return jnp.mean(jax.nn.logsumexp(h, axis=1) - h[jnp.arange(h.shape[0]), y])

        @jax.jit
        def jstep(params, x, y):
            loss, g = jax.value_and_grad(loss_fn)(params, x, y)
            return [(W - 0.01 * gW, b - 0.01 * gb) for (W, b), (gW, gb) in zip(params, g)], loss
        state = {"p": params}
        xj, yj = jnp.asarray(x), jnp.asarray(y)

        def jax_step():
            state["p"], loss = jstep(state["p"], xj, yj)
            loss.block_until_ready()
        impls["jax jit"] = jax_step
    return impls, {"compiled": comp}


def _matmuls_only(x, Ws):
    """The step's matrix products and nothing else, into buffers allocated once: h_l = h_{l-1} W_l
    forward, W̄_l = h_{l-1}ᵀ δ_l and δ_{l-1} = δ_l W_lᵀ backward (no δ for the input), the same shapes
    and operand layouts as the hand-written step.  Not a training step: its speed vs hand is the bound
    any implementation making these products with NumPy's BLAS can reach (every other operation free)."""
    hs = [np.zeros((x.shape[0], W.shape[1]), x.dtype) for W in Ws]
    ds = [h.copy() for h in hs]
    gW = [np.empty_like(W) for W in Ws]

    def run():
        h = x
        for W, out in zip(Ws, hs):
            np.matmul(h, W, out=out)
            h = out
        for i in range(len(Ws) - 1, -1, -1):
            np.matmul((hs[i - 1] if i else x).T, ds[i], out=gW[i])
            if i:
                np.matmul(ds[i], Ws[i].T, out=ds[i - 1])
    return run


# ------------------------------------------------------------------------------------ RNTN
def rntn_impls():
    import rntn_train as RT

    from chainrule.data import sst
    from chainrule.models import rntn as R
    train = sst.load("train")
    vocab = R.Vocab.from_trees(train)
    rng = np.random.default_rng(0)
    batches = [R.TreeBatch([R.encode_tree(train[int(j)], vocab) for j in rng.choice(len(train), 25, replace=False)])
               for _ in range(4)]
    cyc = {"k": 0}

    def nxt():
        cyc["k"] = (cyc["k"] + 1) % len(batches)
        return batches[cyc["k"]]

    model = R.build_model({"model": "rntn", "dim": 25}, vocab, seed=0)
    arrays = {k: t.data.copy() for k, t in model.params().items()}
    hist = {k: np.zeros_like(a) for k, a in arrays.items()}

    def hand():
        _, g = RT.numpy_grads(arrays, nxt())
        RT.adagrad_update(arrays, g, hist)

    eager = RT.engine_step(vocab)
    comp = _compiled(RT.engine_step(vocab))
    impls = {"numpy (hand)": hand, "chainrule eager": lambda: eager(nxt()), "chainrule compiled": lambda: comp(nxt())}
    torch = _torch()
    if torch is not None:
        impls["torch eager"] = _torch_rntn(torch, arrays, nxt)
    return impls, {"compiled": comp}


def _torch_rntn(torch, arrays, nxt):
    """The level-batched RNTN step in PyTorch: a preallocated node table written level by level
    (index_copy, out of place so autograd sees it), sparse embedding gradient, AdaGrad by hand."""
    import torch.nn.functional as TF
    P = {k: torch.tensor(np.array(a), requires_grad=True) for k, a in arrays.items()}
    hist = {k: torch.zeros_like(t) for k, t in P.items()}
    d = P["W"].shape[0]

    def step():
        batch = nxt()
        for t in P.values():
            t.grad = None
        x = torch.tanh(TF.embedding(torch.from_numpy(batch.leaf_words), P["L"], sparse=True))
        levels = [x]
        rows = x                                   # the table so far, one cat per level (as autograd needs)
        for h, ch in enumerate(batch.children, start=1):
            c = rows[torch.from_numpy(ch.reshape(-1))].reshape(-1, 2 * d)
            z = c @ P["W"].T + P["b"] + torch.einsum("ni,ijk,nj->nk", c, P["V"], c)
            p = torch.tanh(z)
            levels.append(p)
            rows = torch.cat([rows, p])
        logits = rows @ P["Ws"].T + P["bs"]
        loss = TF.cross_entropy(logits, torch.from_numpy(batch.labels), reduction="sum") / len(batch)
        loss.backward()
        with torch.no_grad():
            for k, t in P.items():
                g = t.grad
                if g.is_sparse:
                    g = g.coalesce()
                    i, v = g.indices()[0], g.values()
                    hist[k][i] += v * v
                    t[i] -= 0.01 * v / (hist[k][i].sqrt() + 1e-3)
                else:
                    hist[k] += g * g
                    t -= 0.01 * g / (hist[k].sqrt() + 1e-3)
    return step


# ------------------------------------------------------------------------------------ window
def window_impls():
    import window_train as WT
    rng = np.random.default_rng(1)
    words = rng.integers(0, WT.V, size=(WT.BATCH, WT.C))
    y = rng.integers(0, 2, size=WT.BATCH).astype(np.float32)
    hand, eager = WT.numpy_step_factory(), WT.chainrule_step_factory()

    from chainrule import optim
    from chainrule.models.window import WindowClassifier, make_loss_fn
    L, W, _, U, _ = WT.init_params()
    model = WindowClassifier(WT.V, WT.N, window=WT.C, hidden=WT.H, head="binary", caps_dim=0, embeddings=L)
    model.hidden.weight.data[...] = W
    model.out.weight.data[...] = U
    opt = optim.SGD(model.parameters(), lr=0.05)
    loss_fn = make_loss_fn(WT.REG_C, WT.M)

    def step(words, y):
        loss, _ = loss_fn(model, (words, None, y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss
    comp = _compiled(step)
    impls = {"numpy (hand)": lambda: hand(words, y), "chainrule eager": lambda: eager(words, y),
             "chainrule compiled": lambda: comp(words, y)}
    torch = _torch()
    if torch is not None:
        impls["torch eager"] = _torch_window(torch, WT, words, y)
    return impls, {"compiled": comp}


def _torch_window(torch, WT, words, y):
    import torch.nn.functional as TF
    L, W, b1, U, b2 = (torch.tensor(a, requires_grad=True) for a in WT.init_params())
    opt = torch.optim.SGD([L, W, b1, U, b2], lr=0.05)
    k = WT.REG_C / WT.M
    wt, yt = torch.from_numpy(words), torch.from_numpy(y)

    def step():
        opt.zero_grad()
        x = TF.embedding(wt, L, sparse=True).reshape(wt.shape[0], -1)
        z = (torch.tanh(x @ W + b1) @ U)[:, 0] + b2[0]
        loss = TF.binary_cross_entropy_with_logits(z, yt) + k / 2 * ((W * W).sum() + (U * U).sum())
        loss.backward()
        opt.step()
    return step


# ------------------------------------------------------------------------------------ LSTM
def lstm_impls():
    import lstm_train as LT

    from chainrule import optim
    from chainrule.nn.recurrent import LSTM
    x, r, s = LT.data()
    hand = LT.numpy_factory()
    eager = LT.chainrule_factory()
    lstm = LSTM(LT.D, LT.H, rng=0)
    cell = lstm.cells[0]
    Wih, Whh, b = LT.init_params()
    cell.weight_ih.data[...] = Wih
    cell.weight_hh.data[...] = Whh
    cell.bias.data[...] = b
    opt = optim.SGD(lstm.parameters(), lr=0.0)        # only its zero_grad: the workload has no update

    def step(x, r, s):
        opt.zero_grad()
        out, (h_n, _) = lstm(x)
        loss = (h_n[0] * r).sum() + (out * s).sum()
        loss.backward()
        return loss
    comp = _compiled(step)
    impls = {"numpy (hand)": lambda: hand(x, r, s), "chainrule eager": lambda: eager(x, r, s),
             "chainrule compiled": lambda: comp(x, r, s)}
    if _torch() is not None:
        cell_step, full_step = LT.torch_factories()
        impls["torch eager (cell loop)"] = lambda: cell_step(x, r, s)
        impls["torch eager (fused nn.LSTM)"] = lambda: full_step(x, r, s)
    return impls, {"compiled": comp}


WORKLOADS = {"chain": chain_impls, "mlp_big": lambda: mlp_impls((784, 256, 256, 10), 128),
             "mlp_small": lambda: mlp_impls((64, 64, 64, 10), 16), "rntn": rntn_impls,
             "window": window_impls, "lstm": lstm_impls}


def time_workload(name, rounds, budget):
    impls, extra = WORKLOADS[name]()
    for f in impls.values():                      # warm-up (and the compiled steps' two captures)
        for _ in range(6):
            f()
    block = {}
    for k, f in impls.items():                    # steps per block: about `budget` seconds each
        t0 = time.perf_counter()
        f()
        f()
        block[k] = max(2, int(budget / max((time.perf_counter() - t0) / 2, 1e-7)))
    times = {k: [] for k in impls}
    faults = {k: [] for k in impls}
    for _ in range(rounds):
        for k, f in impls.items():
            m0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0 = time.perf_counter()
            for _ in range(block[k]):
                f()
            times[k].append((time.perf_counter() - t0) / block[k] * 1e6)
            faults[k].append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - m0) / block[k])
    hand = np.array(times["numpy (hand)"])
    out = {}
    for k, v in times.items():
        q = hand / np.array(v)
        out[k] = {"us_per_step": float(np.median(v)), "vs_hand": float(np.median(q)),
                  "range": [float(q.min()), float(q.max())], "faults_per_step": float(np.median(faults[k]))}
    comp = extra.get("compiled")
    note = None
    if comp is not None:
        note = comp.fallback_reason or f"captures {comp.stats['captures']}, replays {comp.stats['replays']}"
    return {"impls": out, "compiled": note}


def child(workloads, rounds, budget):
    t0, c0 = time.perf_counter(), time.process_time()
    res = {w: time_workload(w, rounds, budget) for w in workloads}
    res["_cpu_share"] = (time.process_time() - c0) / (time.perf_counter() - t0)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--budget", type=float, default=0.15, help="seconds per implementation per round")
    ap.add_argument("--settings", default="both", choices=["both", "default", "raised"])
    ap.add_argument("--gc", default="on", choices=["on", "off"],
                    help="off: the cyclic garbage collector disabled in the timed process (its cost)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    wl = [w for w in args.workloads.split(",") if w]
    bad = [w for w in wl if w not in WORKLOADS]
    if bad:
        ap.error(f"unknown workload(s) {bad}; choose from {list(WORKLOADS)}")
    if args.child:
        if THREADS == 1 and hasattr(os, "sched_setaffinity"):
            # one core for the whole process: XLA keeps a thread pool of its own whatever its flags
            # say (JAX used 1.6 cores of 2 on the big MLP unpinned), so "one thread" holds for it too
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        if args.gc == "off":
            import gc
            gc.disable()
        print(json.dumps(child(wl, args.rounds, args.budget)))
        return 0
    settings = SETTINGS if args.settings == "both" else SETTINGS[:1] if args.settings == "default" else SETTINGS[1:]
    runs = {}
    for label, env in settings:
        runs[label] = run_child(__file__, ["--child", "--workloads", ",".join(wl), "--rounds", args.rounds,
                                           "--budget", args.budget, "--gc", args.gc], env)
    if args.json:
        print(json.dumps(runs, indent=2))
        return 0
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, BLAS/torch threads {THREADS}; "
          f"{args.rounds} interleaved rounds; garbage collector {args.gc}; speed vs hand-written NumPy = median of paired per-round "
          f"t_hand/t_impl (range); > 1 is faster than hand")
    for label, res in runs.items():
        print(f"\n== {label} (this process's CPU share of wall time: {res['_cpu_share']:.2f}; "
              f"below 1 means other processes were running)")
        for w in wl:
            r = res[w]
            print(f"{w}  [compiled: {r['compiled']}]")
            for k, v in r["impls"].items():
                print(f"  {k:<30}{v['us_per_step']:>11.1f} µs  {v['vs_hand']:>6.2f}x  "
                      f"({v['range'][0]:.2f}-{v['range'][1]:.2f})  {v['faults_per_step']:>8.1f} faults/step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
