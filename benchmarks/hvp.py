"""Cost of a Hessian-vector product against one gradient, on MLPs (issue 11's goal: hvp ≤ 3x grad;
HIPS autograd documents ~4x for its Hessian-vector product).

    python benchmarks/hvp.py              # a few seconds per configuration
    python benchmarks/hvp.py --rounds 9

For each configuration: ``t_grad`` = one ``cr.value_and_grad`` (forward + backward), ``t_hvp`` = one
``cr.hvp`` (forward, backward with create_graph, backward of ⟨∇L, v⟩: reverse over reverse), and the
same pair in PyTorch (``torch.autograd.grad`` twice, ``create_graph=True``) when installed, and the
alternative cr.hvp did not choose: forward over reverse, ``cr.jvp(cr.grad(f), x, v)`` (chainrule's jvp
is the double-VJP trick, so this is three reverse passes).  Rounds interleave all of them; the table gives medians and the ratio hvp/grad per round's median.  The machine
may be shared: absolute times are inflated, the ratios much less so.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import chainrule as cr

CONFIGS = [  # (name, sizes, batch, dtype)
    ("seed-003 MLP on digits size 64-32-10 b256", (64, 32, 10), 256, np.float64),
    ("784-256-256-10 b128", (784, 256, 256, 10), 128, np.float32),
]


def make(sizes, batch, dtype, seed=0):
    rng = np.random.default_rng(seed)
    params = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        params += [(rng.standard_normal((a, b)) / np.sqrt(a)).astype(dtype), np.zeros(b, dtype)]
    X = rng.standard_normal((batch, sizes[0])).astype(dtype)
    Y = (rng.random((batch, sizes[-1])) > 0.5).astype(dtype)
    vs = [rng.standard_normal(p.shape).astype(dtype) for p in params]
    return params, X, Y, vs


def loss_cr(X, Y):
    def loss(*ps):
        h = cr.tensor(X)
        for k in range(0, len(ps) - 2, 2):
            h = cr.sigmoid(h @ ps[k] + ps[k + 1])
        z = h @ ps[-2] + ps[-1]
        return (cr.softplus(z) - z * Y).sum() * (1.0 / X.shape[0])      # seed 003: summed BCE, mean over N
    return loss


def torch_pair(params, X, Y, vs):
    import torch
    ps = [torch.tensor(p, requires_grad=True) for p in params]
    Xt, Yt = torch.tensor(X), torch.tensor(Y)
    vt = [torch.tensor(v) for v in vs]

    def loss():
        h = Xt
        for k in range(0, len(ps) - 2, 2):
            h = torch.sigmoid(h @ ps[k] + ps[k + 1])
        z = h @ ps[-2] + ps[-1]
        return (torch.nn.functional.softplus(z) - z * Yt).sum() / X.shape[0]

    def grad():
        return torch.autograd.grad(loss(), ps)

    def hvp():
        g = torch.autograd.grad(loss(), ps, create_graph=True)
        return torch.autograd.grad(sum((gi * v).sum() for gi, v in zip(g, vt)), ps)
    return grad, hvp


def timeit(fn, budget):
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        t = time.perf_counter() - t0
        if t > budget:
            return t / n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=0.3, help="seconds per measurement")
    args = ap.parse_args(argv)
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        torch = None
    print(f"{'configuration':42s} {'grad ms':>8s} {'hvp ms':>8s} {'hvp/grad':>9s} {'(range)':>13s}"
          f" {'fwd-over-rev/grad':>18s} {'torch hvp/grad':>15s}")
    for name, sizes, batch, dtype in CONFIGS:
        params, X, Y, vs = make(sizes, batch, dtype)
        f = loss_cr(X, Y)
        vg = cr.value_and_grad(f, argnums=tuple(range(len(params))))
        grad = lambda: vg(*params)                                        # noqa: E731
        hvp = lambda: cr.hvp(f, tuple(params), tuple(vs))                 # noqa: E731
        gf = cr.grad(f, argnums=tuple(range(len(params))))
        flat_grad = lambda *ps: cr.concat([gi.reshape(-1) for gi in gf(*ps)])  # noqa: E731 (jvp: one output)
        fwd = lambda: cr.jvp(flat_grad, tuple(params), tuple(vs))         # noqa: E731
        a, b = np.concatenate([np.asarray(x).ravel() for x in hvp()]), np.asarray(fwd()[1])
        assert np.allclose(a, b, rtol=1e-4, atol=1e-5), "forward-over-reverse and reverse-over-reverse disagree"
        tg, th, ratios, tr, fr = [], [], [], [], []
        tgrad, thvp = torch_pair(params, X, Y, vs) if torch is not None else (None, None)
        for _ in range(args.rounds):
            a, b = timeit(grad, args.budget), timeit(hvp, args.budget)
            tg.append(a)
            th.append(b)
            ratios.append(b / a)
            fr.append(timeit(fwd, args.budget) / a)
            if tgrad is not None:
                tr.append(timeit(thvp, args.budget) / timeit(tgrad, args.budget))
        med = statistics.median
        trs = f"{med(tr):15.2f}" if tr else f"{'-':>15s}"
        print(f"{name:42s} {med(tg) * 1e3:8.3f} {med(th) * 1e3:8.3f} {med(ratios):9.2f} "
              f"({min(ratios):.2f}-{max(ratios):.2f}) {med(fr):18.2f} {trs}")
    print("goal: hvp/grad <= 3 (HIPS autograd documents ~4x)")


if __name__ == "__main__":
    main()
