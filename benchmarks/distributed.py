"""Data-parallel training on MPI: steps/s of 1 process vs 2 ranks (1 BLAS thread each), scaling
efficiency, allreduce time per step and bytes moved, for the MLP and the window NER tagger; the
cost of an allreduce by message size (latency α and bandwidth β for docs/distributed.md's model);
and whether bucketing the gradients pays.

    python benchmarks/distributed.py                 # 3 interleaved rounds
    python benchmarks/distributed.py --rounds 5 --steps 300 --json

Each measurement is a fresh process (``python`` alone for 1 process, ``mpiexec -n 2`` for 2
ranks) running the Trainer's own step (``Trainer._forward_backward`` -- this rank's share, backward,
the gradient allreduce -- then ``optimizer.step``) for ``--steps`` steps after 10 warm-up steps.
The rounds interleave 1 and 2 ranks so that changes in the machine's load hit both alike.

* MLP: MNIST 784-256-256-10 ReLU, Adam, float32, when the idx files are in ``--mnist-dir``
  (default /work/shared/data/mnist); otherwise scikit-learn's digits 64-512-256-10.
* window: the seed-002 window tagger (window 3, 50-d word vectors, 5 capitalisation dims, 300 tanh
  units, softmax over O + 4 types), AdaGrad, float32, on CoNLL-2003 eng.train when ``--conll-dir``
  has it (vocabulary of every training word); otherwise synthetic sentences over 20,000 words.

Strong scaling: the same global batch B on 1 process and on 2 ranks (B/2 each) -- the same
training, so ``efficiency = (steps/s on 2 ranks) / (2 x steps/s on 1)`` in examples/s terms is the
speed-up over 2.  Weak scaling: B per rank (global 2B).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)


# ------------------------------------------------------------------------------------ the worker
def build(model, mnist_dir, conll_dir, seed=0):
    """(Trainer-ready pieces) for 'mlp' or 'window': model, optimizer, loss_fn, dataset, description."""
    from chainrule import optim
    from chainrule.train import ArrayDataset
    if model == "mlp":
        from chainrule.data import datasets
        from chainrule.models import mlp
        have = mnist_dir and os.path.exists(os.path.join(mnist_dir, "train-images-idx3-ubyte.gz"))
        name = "mnist" if have else "digits"
        sp = datasets.load(name, data_dir=mnist_dir if have else None, val_fraction=0.0, seed=seed)
        x, y = sp.train
        hidden = [256, 256] if have else [512, 256]
        config = {"hidden": hidden, "activation": "relu", "dropout": 0.0, "seed": seed, "loss": "ce", "l2": 0.0}
        net = mlp.build_model(config, x.shape[1], 10)
        return (net, optim.Adam(net.parameters(), lr=1e-3), mlp.make_loss_fn(config, 10), ArrayDataset(x, y),
                f"MLP {name} {[x.shape[1], *hidden, 10]}")
    from chainrule.models import window as W
    path = os.path.join(conll_dir or "", "eng.train")
    if conll_dir and os.path.exists(path):
        from chainrule.data.conll import read_conll
        sents, src = read_conll(path), "CoNLL-2003 eng.train"
    else:
        from chainrule.data.conll import Sentence
        rng = np.random.default_rng(seed)
        words = [f"w{i}" for i in range(20000)]
        sents = [Sentence([words[j] for j in rng.zipf(1.3, 14) % 20000], None, None, ["O"] * 14) for _ in range(15000)]
        src = "synthetic sentences, 20,000 words"
    vocab = W.build_vocab(sents, min_count=1)
    scheme = W.TagScheme("types", ["LOC", "MISC", "ORG", "PER"])
    net = W.WindowClassifier(len(vocab), 50, window=3, hidden=300, n_tags=len(scheme), head="softmax",
                             caps_dim=5, seed=seed)
    data = W.WindowData(sents, vocab, 3, scheme)
    return (net, optim.AdaGrad(net.parameters(), lr=0.05), W.make_loss_fn(C=1e-4, m=len(data)), data,
            f"window tagger, vocabulary {len(vocab):,} x 50 ({src})")


def worker(args):
    from chainrule import distributed as D
    from chainrule.train import TrainConfig, Trainer
    net, opt, loss_fn, data, desc = build(args.worker, args.mnist_dir, args.conll_dir)
    trainer = Trainer(net, opt, loss_fn, lambda m, d: {}, TrainConfig(epochs=1, batch_size=args.batch, progress=False))
    dp = trainer.dist
    if dp is not None:
        dp.sync_start(net, ())
    rng = np.random.default_rng(0)
    order = rng.permutation(len(data))
    B = args.batch

    def steps(k, start):
        for s in range(start, start + k):
            i = (s * B) % (len(data) - B)
            trainer._forward_backward(data, order[i:i + B])
            opt.step()
            opt.zero_grad()
    steps(10, 0)
    before = dp.stats() if dp is not None else None
    if dp is not None:
        dp.barrier()
    t0 = time.perf_counter()
    steps(args.steps, 10)
    if dp is not None:
        dp.barrier()
    dt = time.perf_counter() - t0
    out = {"model": args.worker, "desc": desc, "ranks": D.world_size(), "batch": B, "steps": args.steps,
           "seconds": dt, "steps_per_s": args.steps / dt, "examples_per_s": args.steps * B / dt}
    if dp is not None:
        after = dp.stats()
        out["reduce_s_per_step"] = (after["reduce_seconds"] - before["reduce_seconds"]) / args.steps
        out["collective_s_per_step"] = (after["collective_seconds"] - before["collective_seconds"]) / args.steps
        out["bytes_per_step"] = (after["bytes_sent"] - before["bytes_sent"]) / args.steps
        if args.allreduce_table:          # collective: every rank takes part
            out["allreduce"] = allreduce_table(dp, net, opt)
    if dp is not None:
        out["dense_grad_bytes"] = int(sum(g["size"] * g["dtype"].itemsize for g in dp._plan["groups"]))
    out["params"] = int(sum(p.size for p in net.parameters()))
    out["dense_param_bytes"] = int(sum(p.data.nbytes for p in net.parameters()))
    if D.is_main():
        print(json.dumps(out), flush=True)


def allreduce_table(dp, net, opt, reps=40, rounds=5):
    """Seconds per allreduce by size (raw MPI_Allreduce vs the Communicator's, which runs under the
    timeout watchdog), and for this model's dense gradients one flat buffer vs one allreduce per
    tensor vs 256 KB buckets; each a median over ``rounds`` interleaved rounds of ``reps`` calls."""
    comm, MPI = dp.comm.comm, dp.comm.MPI

    def timed(fn):
        comm.Barrier()
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t) / reps

    def median_of(fns):
        runs = {k: [] for k in fns}
        for _ in range(rounds):
            for k, fn in fns.items():
                runs[k].append(timed(fn))
        return {k: statistics.median(v) for k, v in runs.items()}
    res = {"sizes": []}
    for nbytes in [8, 512, 4096, 32768, 262144, 1 << 20, 4 << 20, 16 << 20]:
        buf = np.ones(nbytes // 4, np.float32)
        m = median_of({"raw_s": lambda: comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM),
                       "watched_s": lambda: dp.comm.allreduce_(buf)})
        res["sizes"].append({"bytes": nbytes, **m})
    dense = [opt.params[i] for g in dp._plan["groups"] for i, _, _ in g["items"]]   # what travels dense
    tensors = [np.ones(p.size, np.float32) for p in dense]
    flat = np.concatenate(tensors)

    def buckets(limit=256 * 1024):
        for start in range(0, flat.size, limit // 4):
            comm.Allreduce(MPI.IN_PLACE, flat[start:start + limit // 4], op=MPI.SUM)
    res["fusion"] = {"tensors": len(tensors), "bytes": int(flat.nbytes), **median_of({
        "one_flat_buffer_s": lambda: comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM),
        "one_per_tensor_s": lambda: [comm.Allreduce(MPI.IN_PLACE, t, op=MPI.SUM) for t in tensors],
        "buckets_256KB_s": buckets})}
    return res


# ------------------------------------------------------------------------------------ the driver
def child(model, ranks, batch, args, table=False):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([SRC] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", model, "--batch", str(batch), "--steps",
           str(args.steps), "--mnist-dir", args.mnist_dir or "", "--conll-dir", args.conll_dir or ""]
    if table:
        cmd.append("--allreduce-table")
    if ranks > 1:
        from chainrule.distributed import mpiexec_path
        cmd = [mpiexec_path(), "-n", str(ranks)] + cmd
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--mnist-dir", default="/work/shared/data/mnist")
    ap.add_argument("--conll-dir", default="/work/shared/data/ner/conll2003")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--report", default=None, metavar="JSON", help="print the report of an earlier --json run")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=128, help=argparse.SUPPRESS)
    ap.add_argument("--allreduce-table", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if args.report:
        with open(args.report) as f:
            out = json.load(f)
        out["projection"] = projection(out)
        report(out)
        print_projection(out["projection"])
        return None
    configs = [("mlp", 128), ("window", 256)]
    # (label, ranks, batch per process given global B)
    modes = [("1 process, batch B", 1, lambda B: B), ("2 ranks, B/2 each (strong)", 2, lambda B: B),
             ("2 ranks, B each (weak)", 2, lambda B: 2 * B)]
    results = {}
    for r in range(args.rounds):
        for model, B in configs:
            for label, n, gb in (modes if r % 2 == 0 else modes[::-1]):      # alternate the order too
                res = child(model, n, gb(B), args, table=(r == 0 and n == 2 and label.endswith("(strong)")))
                results.setdefault((model, label), []).append(res)
                print(f"round {r + 1}: {model:<7} {label:<28} {res['steps_per_s']:8.1f} steps/s", file=sys.stderr)
    out = summarize(results, configs, modes)
    out["projection"] = projection(out)
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        report(out)
        print_projection(out["projection"])


def summarize(results, configs, modes):
    out = {"rounds": len(next(iter(results.values()))), "models": {}}
    for model, B in configs:
        one = results[(model, modes[0][0])]
        m = {"desc": one[0]["desc"], "global_batch": B, "params": one[0]["params"],
             "dense_param_bytes": one[0]["dense_param_bytes"], "modes": {}}
        base = statistics.median(x["examples_per_s"] for x in one)
        for label, n, _ in modes:
            rs = results[(model, label)]
            eps = [x["examples_per_s"] for x in rs]
            d = {"steps_per_s": statistics.median(x["steps_per_s"] for x in rs),
                 "steps_per_s_range": [min(x["steps_per_s"] for x in rs), max(x["steps_per_s"] for x in rs)],
                 "examples_per_s": statistics.median(eps), "batch_per_step": rs[0]["batch"]}
            if n > 1:
                d["efficiency"] = statistics.median(eps) / (n * base)
                d["efficiency_range"] = [min(eps) / (n * base), max(eps) / (n * base)]
                d["reduce_ms_per_step"] = 1e3 * statistics.median(x["reduce_s_per_step"] for x in rs)
                d["collective_ms_per_step"] = 1e3 * statistics.median(x["collective_s_per_step"] for x in rs)
                d["bytes_per_step_per_rank"] = statistics.median(x["bytes_per_step"] for x in rs)
                m["dense_grad_bytes"] = rs[0].get("dense_grad_bytes")
                tab = [x["allreduce"] for x in rs if "allreduce" in x]
                if tab:
                    m["allreduce"] = tab[0]
            else:
                d["compute_ms_per_step"] = 1e3 / d["steps_per_s"]
            m["modes"][label] = d
        out["models"][model] = m
    return out


def report(out):
    print(f"Data parallelism on MPI (mpich), 1 BLAS thread per process; medians of {out['rounds']} interleaved "
          f"rounds (range in brackets). The machine has 2 cores shared with other jobs: expect noise.")
    for model, m in out["models"].items():
        print(f"\n{m['desc']}: {m['params']:,} parameters ({m['dense_param_bytes'] / 1e6:.2f} MB), global batch B = "
              f"{m['global_batch']}")
        print(f"  {'':<30}{'steps/s':>22}{'examples/s':>12}{'efficiency':>20}{'allreduce ms/step':>19}{'bytes/step/rank':>17}")
        for label, d in m["modes"].items():
            eff = (f"{d['efficiency']:.2f} [{d['efficiency_range'][0]:.2f}-{d['efficiency_range'][1]:.2f}]"
                   if "efficiency" in d else "")
            red = f"{d['collective_ms_per_step']:.2f}" if "collective_ms_per_step" in d else ""
            by = f"{d['bytes_per_step_per_rank']:,.0f}" if "bytes_per_step_per_rank" in d else ""
            rng = f"{d['steps_per_s']:.1f} [{d['steps_per_s_range'][0]:.0f}-{d['steps_per_s_range'][1]:.0f}]"
            print(f"  {label:<30}{rng:>22}{d['examples_per_s']:>12,.0f}{eff:>20}{red:>19}{by:>17}")
        if "allreduce" in m:
            a = m["allreduce"]
            print("  allreduce on 2 ranks by size (µs): " + ", ".join(
                f"{s['bytes']:,} B {1e6 * s['raw_s']:.0f}/{1e6 * s['watched_s']:.0f}" for s in a["sizes"])
                + "  (MPI_Allreduce / the Trainer's, under the timeout watchdog)")
            f = a["fusion"]
            print(f"  fusion, {f['tensors']} dense tensors, {f['bytes']:,} B: one flat buffer "
                  f"{1e3 * f['one_flat_buffer_s']:.3f} ms, one allreduce per tensor {1e3 * f['one_per_tensor_s']:.3f} ms, "
                  f"256 KB buckets {1e3 * f['buckets_256KB_s']:.3f} ms")


NETWORKS = (("10 Gb Ethernet", 20e-6, 1.25e9), ("100 Gb/s InfiniBand", 2e-6, 12.5e9))


def ring_seconds(nbytes, n, alpha, beta):
    """Ring allreduce: 2(N-1) steps, each one latency plus 1/N of the buffer: 2(N-1)/N * S/beta + 2(N-1) alpha."""
    return 2 * (n - 1) / n * nbytes / beta + 2 * (n - 1) * alpha


def allgather_seconds(nbytes_per_rank, n, alpha, beta):
    """Ring allgather(v): every rank receives the other N-1 ranks' parts: (N-1) * s/beta + (N-1) alpha."""
    return (n - 1) * nbytes_per_rank / beta + (n - 1) * alpha


def projection(out, nodes=(8, 64, 256)):
    """Per model and network: time per step and efficiency on N nodes (weak scaling, the measured
    per-node batch B and compute time), and b* = the per-node batch at which the gradient exchange
    takes as long as the compute (below b* communication cannot hide behind compute even with
    perfect overlap; without overlap, the efficiency at b* is 50%)."""
    rows = []
    for model, m in out["models"].items():
        one = m["modes"]["1 process, batch B"]
        B = m["global_batch"]
        t_step = one["compute_ms_per_step"] / 1e3              # measured: one process, batch B
        t_ex = t_step / B
        strong = m["modes"]["2 ranks, B/2 each (strong)"]
        total = strong["bytes_per_step_per_rank"]
        dense = m["dense_param_bytes"] if model == "mlp" else m.get("dense_grad_bytes", total)
        sparse = max(0.0, total - dense) if model != "mlp" else 0.0
        for name, alpha, beta in NETWORKS:
            for n in nodes:
                comm = ring_seconds(dense, n, alpha, beta) + (allgather_seconds(sparse, n, alpha, beta) if sparse else 0.0)
                rows.append({"model": model, "network": name, "nodes": n, "batch_per_node": B,
                             "compute_ms": 1e3 * t_step, "comm_ms": 1e3 * comm,
                             "efficiency_no_overlap": t_step / (t_step + comm),
                             "efficiency_full_overlap": min(1.0, t_step / comm),
                             "b_star": comm / t_ex})
    return rows


def print_projection(rows):
    print("\nProjection (weak scaling: the measured per-node batch and compute time per step; ring allreduce "
          "2(N-1)/N*S/beta + 2(N-1)*alpha for dense gradients, ring allgather (N-1)*s/beta + (N-1)*alpha for "
          "the sparse rows):")
    print(f"  {'model':<8}{'network':<22}{'N':>5}{'compute ms':>12}{'comm ms':>10}{'eff. (no overlap)':>19}"
          f"{'eff. (overlap)':>16}{'b* per node':>13}")
    for r in rows:
        print(f"  {r['model']:<8}{r['network']:<22}{r['nodes']:>5}{r['compute_ms']:>12.2f}{r['comm_ms']:>10.2f}"
              f"{r['efficiency_no_overlap']:>19.2f}{r['efficiency_full_overlap']:>16.2f}{r['b_star']:>13.0f}")


if __name__ == "__main__":
    main()
