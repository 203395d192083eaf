"""Training steps per second of an MLP: chainrule vs. the same step written by hand in NumPy
(forward, backward, SGD update), in the same process, on the same data; PyTorch eager too when it is
installed.

    python benchmarks/mlp_train.py            # both malloc settings, both configurations
    python benchmarks/mlp_train.py --json

Configurations (issue 3): 784-256-256-10 ReLU, batch 128 (BLAS-bound) and 64-64-64-10, batch 16
(overhead-bound); float32, cross-entropy, plain SGD.  glibc maps and unmaps every large temporary by
default (a page fault costs ~3 µs here), so each configuration is also run in a child process with
MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ raised (see DESIGN.md).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from _harness import SETTINGS, run_child

CONFIGS = [((784, 256, 256, 10), 128), ((64, 64, 64, 10), 16)]


def init_params(sizes, seed=0):
    rng = np.random.default_rng(seed)
    Ws = [(rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32) for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [np.zeros(b, dtype=np.float32) for b in sizes[1:]]
    return Ws, bs


def numpy_step_factory(sizes, lr=0.01):
    Ws, bs = init_params(sizes)

    def step(x, y):
        # forward
        hs, zs = [x], []
        h = x
        for i, (W, b) in enumerate(zip(Ws, bs)):
            z = h @ W + b
            zs.append(z)
            h = np.maximum(z, 0) if i < len(Ws) - 1 else z
            hs.append(h)
        z = zs[-1]
        m = z.max(axis=1, keepdims=True)
        e = np.exp(z - m)
        s = e.sum(axis=1, keepdims=True)
        n = len(y)
        loss = float(np.mean(np.log(s[:, 0]) + m[:, 0] - z[np.arange(n), y]))
        # backward
        g = e / s
        g[np.arange(n), y] -= 1
        g /= n
        for i in range(len(Ws) - 1, -1, -1):
            dW = hs[i].T @ g
            db = g.sum(axis=0)
            if i:
                g = (g @ Ws[i].T) * (zs[i - 1] > 0)
            Ws[i] -= lr * dW
            bs[i] -= lr * db
        return loss
    return step


def chainrule_step_factory(sizes, lr=0.01):
    import chainrule as cr
    from chainrule import losses, nn, optim
    model = nn.MLP(list(sizes), activation="relu", seed=0)
    Ws, bs = init_params(sizes)
    lin = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for m, W, b in zip(lin, Ws, bs):          # same starting point as the NumPy version
        m.weight.data[...] = W
        m.bias.data[...] = b
    opt = optim.SGD(model.parameters(), lr=lr)

    def step(x, y):
        loss = losses.cross_entropy(model(cr.Tensor._wrap(x)), y)
        loss.backward()
        opt.step()
        opt.zero_grad()          # as chainrule.train.Trainer does: gradients released after the update
        return float(loss.item())
    return step


def torch_step_factory(sizes, lr=0.01):
    import torch
    # same thread budget as NumPy's BLAS (OPENBLAS_NUM_THREADS=1 on a shared machine)
    torch.set_num_threads(int(os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
                              or os.cpu_count() or 1))
    Ws, bs = init_params(sizes)
    layers = []
    for i, (W, b) in enumerate(zip(Ws, bs)):
        lin = torch.nn.Linear(*W.shape)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(W.T.copy()))
            lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
        if i < len(Ws) - 1:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    lossf = torch.nn.CrossEntropyLoss()

    def step(x, y):
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        loss = lossf(model(xt), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.item())
    return step


def measure(step, x, y, seconds=2.0, repeats=3):
    for _ in range(5):
        step(x, y)
    best = 0.0
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / repeats:
            step(x, y)
            n += 1
        best = max(best, n / (time.perf_counter() - t0))
    return best


IMPLS = {"numpy": numpy_step_factory, "chainrule": chainrule_step_factory, "torch": torch_step_factory}


def _data(ci):
    sizes, batch = CONFIGS[ci]
    rng = np.random.default_rng(1)
    return sizes, batch, rng.standard_normal((batch, sizes[0])).astype(np.float32), rng.integers(0, sizes[-1], size=batch)


def child(impl, ci, seconds):
    """One implementation, one configuration, in a fresh process (the heap's history in a shared
    process changes how many page faults each implementation pays)."""
    sizes, batch, x, y = _data(ci)
    try:
        step = IMPLS[impl](sizes)
    except ImportError:
        return None
    return measure(step, x, y, seconds)


def losses_agree(ci):
    sizes, batch, x, y = _data(ci)
    a, b = numpy_step_factory(sizes), chainrule_step_factory(sizes)
    la, lb = [a(x, y) for _ in range(3)], [b(x, y) for _ in range(3)]
    return bool(np.allclose(la, lb, rtol=1e-4, atol=1e-5))


def run_all(seconds, malloc_env):
    out = []
    for ci, (sizes, batch) in enumerate(CONFIGS):
        res = {"sizes": list(sizes), "batch": batch, "losses_agree": losses_agree(ci)}
        for impl in IMPLS:
            res[f"{impl}_steps_per_s"] = run_child(__file__, ["--child", impl, ci, "--seconds", seconds], malloc_env)
        out.append(res)
    return out


def table(results, title):
    lines = [title, f"{'config':<24}{'numpy/s':>10}{'chainrule/s':>13}{'ratio':>8}{'torch/s':>10}{'ratio':>8}"]
    for r in results:
        cfg = "-".join(map(str, r["sizes"])) + f" b{r['batch']}"
        ratio = r["chainrule_steps_per_s"] / r["numpy_steps_per_s"]
        t = r["torch_steps_per_s"]
        tcols = f"{t:>10.0f}{t / r['numpy_steps_per_s']:>8.2f}" if t else f"{'-':>10}{'-':>8}"
        lines.append(f"{cfg:<24}{r['numpy_steps_per_s']:>10.0f}{r['chainrule_steps_per_s']:>13.0f}{ratio:>8.2f}{tcols}"
                     + ("" if r["losses_agree"] else "   (losses differ!)"))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="timing budget per measurement")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", nargs=2, metavar=("IMPL", "CONFIG"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.seconds)))
        return
    runs = {}
    for label, extra in SETTINGS:
        runs[label] = run_all(args.seconds, extra)
    if args.json:
        print(json.dumps(runs, indent=2))
        return
    for label, res in runs.items():
        print(table(res, f"== {label} (ratio = steps/s relative to hand-written NumPy; higher is better)"))
        print()


if __name__ == "__main__":
    main()
