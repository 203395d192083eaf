"""Per-op overhead of the engine: forward + backward of chains of small elementwise ops, against the
same computation written by hand in NumPy (a forward that stores what backward needs, then a
hand-written backward), in the same process, on the same data.

    python benchmarks/op_overhead.py            # both malloc settings, tables
    python benchmarks/op_overhead.py --json     # machine-readable
    python benchmarks/op_overhead.py --repeats 20     # quicker, noisier

Chains (float32, every step's ops counted; "µs/op" = (forward + backward time) / ops in the chain):

  tanh     y ← tanh(0.9·y + 0.1), 100 steps = 300 ops (mul, add, tanh); gradient w.r.t. the input x
  sigmoid  y ← σ(y ⊙ w) ⊙ x,      100 steps = 300 ops (mul, sigmoid, mul); gradients w.r.t. x and w,
           which are used at every step (the distributed chain rule accumulates 100 terms each)

The hand-written sigmoid uses the same overflow-safe formula as the engine (e^(−|a|), then a
select), so the ratio measures the engine's overhead, not a numerical shortcut.  At 16 elements
the time is all Python overhead per op; at 4096 it is mostly NumPy's own work.

Timing: best of ``--repeats`` rounds, each round running the chain enough times to fill ``--budget``
seconds, with time.perf_counter; engine and NumPy rounds are interleaved so that a busy machine
slows both alike.  The header of each table gives the process's CPU share of the wall-clock time
(well below 1: other processes were running and the absolute numbers are inflated).  glibc maps and unmaps every large temporary under its default
settings (a page fault costs ~3 µs on these machines, see DESIGN.md), so the whole measurement runs
twice in child processes: glibc defaults, and MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ raised.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from _harness import SETTINGS, run_child

SIZES = (16, 256, 4096)
STEPS = 100


# ----------------------------------------------------------------------------------------- chains
def tanh_engine(cr, x0):
    x = cr.Tensor._wrap(x0, requires_grad=True)
    y = x
    for _ in range(STEPS):
        y = cr.tanh(y * 0.9 + 0.1)
    y.sum().backward()
    return x.grad


def tanh_hand(x0):
    ts = []
    y = x0
    for _ in range(STEPS):                  # forward: keep each tanh output (its derivative is 1 − t²)
        y = np.tanh(y * np.float32(0.9) + np.float32(0.1))
        ts.append(y)
    g = np.ones_like(x0)
    for t in reversed(ts):                  # backward: ȳ_prev = 0.9 · ȳ ⊙ (1 − t²)
        g = g * (1 - t * t) * np.float32(0.9)
    return g


def sigmoid_engine(cr, x0, w0):
    x = cr.Tensor._wrap(x0, requires_grad=True)
    w = cr.Tensor._wrap(w0, requires_grad=True)
    y = x
    for _ in range(STEPS):
        y = cr.sigmoid(y * w) * x
    y.sum().backward()
    return x.grad, w.grad


def _sigmoid(a):
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)


def sigmoid_hand(x0, w0):
    ys, ss = [], []
    y = x0
    for _ in range(STEPS):                  # forward: a = y ⊙ w, s = σ(a), y ← s ⊙ x
        s = _sigmoid(y * w0)
        ys.append(y)
        ss.append(s)
        y = s * x0
    g = np.ones_like(x0)
    gx = np.zeros_like(x0)
    gw = np.zeros_like(w0)
    for y, s in zip(reversed(ys), reversed(ss)):
        gx += g * s                         # through "⊙ x"
        ga = g * x0 * s * (1 - s)           # through σ: σ' = s(1 − s)
        gw += ga * y                        # through "y ⊙ w"
        g = ga * w0
    gx += g                                 # y₀ = x
    return gx, gw


# ----------------------------------------------------------------------------------------- timing
def best_times(fns, repeats, budget):
    """Best seconds per call of each function.  The rounds of the functions are interleaved, so
    that a busy machine slows all of them alike and the ratio stays meaningful."""
    inner = []
    for fn in fns:
        fn()                                # warm-up (and first-touch of the arrays)
        t0 = time.perf_counter()
        fn()
        inner.append(max(1, int(budget / max(time.perf_counter() - t0, 1e-7))))
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            for _ in range(inner[k]):
                fn()
            best[k] = min(best[k], (time.perf_counter() - t0) / inner[k])
    return best


def run_all(repeats, budget):
    import chainrule as cr
    rng = np.random.default_rng(0)
    out = []
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for chain in ("tanh", "sigmoid"):
        for n in SIZES:
            x0 = rng.uniform(-1, 1, n).astype(np.float32)
            w0 = rng.uniform(0.5, 1.5, n).astype(np.float32)
            if chain == "tanh":
                eng, hand = (lambda: tanh_engine(cr, x0)), (lambda: tanh_hand(x0))
            else:
                eng, hand = (lambda: sigmoid_engine(cr, x0, w0)), (lambda: sigmoid_hand(x0, w0))
            ge, gh = eng(), hand()
            ge, gh = (ge,) if chain == "tanh" else ge, (gh,) if chain == "tanh" else gh
            agree = all(np.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(ge, gh))
            ops = 3 * STEPS
            te, th = best_times([eng, hand], repeats, budget)
            out.append({"chain": chain, "size": n, "ops": ops, "grads_agree": bool(agree),
                        "engine_us_per_op": te / ops * 1e6, "numpy_us_per_op": th / ops * 1e6,
                        "ratio": te / th})
    # share of the wall-clock time this process was on a CPU: well below 1 means a busy machine
    cpu_share = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    return {"results": out, "cpu_share": cpu_share}


def table(run, title):
    results = run["results"]
    busy = "" if run["cpu_share"] > 0.9 else "   -- busy machine: numbers are inflated"
    lines = [f"{title} (CPU share {run['cpu_share']:.2f}{busy})",
             f"{'chain':<9}{'size':>6}{'ops':>6}{'engine µs/op':>14}{'numpy µs/op':>13}{'ratio':>8}"]
    for r in results:
        lines.append(f"{r['chain']:<9}{r['size']:>6}{r['ops']:>6}{r['engine_us_per_op']:>14.2f}"
                     f"{r['numpy_us_per_op']:>13.2f}{r['ratio']:>8.2f}"
                     + ("" if r["grads_agree"] else "   (gradients differ!)"))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=100, help="timing rounds; the best is kept (default 100)")
    ap.add_argument("--budget", type=float, default=0.003,
                    help="seconds per timing round (default 0.003: short rounds fit between preemptions)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_all(args.repeats, args.budget)))
        return
    runs = {}
    for label, extra in SETTINGS:
        runs[label] = run_child(__file__, ["--child", "--repeats", args.repeats, "--budget", args.budget], extra)
    if args.json:
        print(json.dumps({"python": platform.python_version(), "numpy": np.__version__,
                          "steps": STEPS, "runs": runs}, indent=2))
        return
    print(f"Python {platform.python_version()}, NumPy {np.__version__}, float32; "
          f"ratio = engine time / hand-written NumPy time (lower is better)\n")
    for label, res in runs.items():
        print(table(res, f"== {label}"))
        print()


if __name__ == "__main__":
    main()
