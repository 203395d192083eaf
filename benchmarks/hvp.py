"""Cost of a Hessian-vector product against one gradient, on MLPs (issue 11's goal: hvp ≤ 3x grad;
HIPS autograd documents ~4x for its Hessian-vector product).

    python benchmarks/hvp.py              # a few seconds per configuration
    python benchmarks/hvp.py --rounds 9

For each configuration: ``t_grad`` = one ``cr.value_and_grad`` (forward + backward), ``t_hvp`` = one
``cr.hvp`` (forward, backward with create_graph, backward of ⟨∇L, v⟩: reverse over reverse), and the
same pair in PyTorch (``torch.autograd.grad`` twice, ``create_graph=True``) when installed, and
forward over reverse: ``cr.hvp(..., mode="fwd")`` = ``cr.jvp(cr.grad(f), x, v)`` with the tangent
rules (the backward pass run on tensors that carry tangents), the same through the double-VJP jvp
(``cr.transforms.jvp_by_double_vjp``: three reverse passes), and PyTorch's
``torch.func.jvp(torch.func.grad(f))``.  Rounds interleave all of them; the table gives medians of
the times and of the per-round ratios to the same round's gradient.  The machine may be shared:
absolute times are inflated, the ratios much less so.

    OPENBLAS_NUM_THREADS=1 python benchmarks/hvp.py
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import chainrule as cr  # noqa: E402
from chainrule.transforms import jvp_by_double_vjp  # noqa: E402

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

    def floss(*qs):
        h = Xt
        for k in range(0, len(qs) - 2, 2):
            h = torch.sigmoid(h @ qs[k] + qs[k + 1])
        z = h @ qs[-2] + qs[-1]
        return (torch.nn.functional.softplus(z) - z * Yt).sum() / X.shape[0]
    primals = tuple(p.detach() for p in ps)
    gfun = torch.func.grad(floss, argnums=tuple(range(len(ps))))

    def fwd_rev():
        return torch.func.jvp(gfun, primals, tuple(vt))[1]
    return grad, hvp, fwd_rev


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
        import torch.func
        torch.set_num_threads(1)
    except ImportError:
        torch = None
    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the start; ratios = time / one gradient")
    print(f"{'configuration':42s} {'grad ms':>8s} {'rev-rev':>8s} {'(range)':>11s} {'fwd-rev':>8s} {'(range)':>11s}"
          f" {'fwd-rev 2vjp':>13s} {'torch rev-rev':>14s} {'torch fwd-rev':>14s}")
    for name, sizes, batch, dtype in CONFIGS:
        params, X, Y, vs = make(sizes, batch, dtype)
        f = loss_cr(X, Y)
        vg = cr.value_and_grad(f, argnums=tuple(range(len(params))))
        grad = lambda: vg(*params)                                        # noqa: E731
        hvp = lambda: cr.hvp(f, tuple(params), tuple(vs), mode="rev")     # noqa: E731
        fwd = lambda: cr.hvp(f, tuple(params), tuple(vs), mode="fwd")     # noqa: E731
        gf = cr.grad(f, argnums=tuple(range(len(params))))
        flat_grad = lambda *ps: cr.concat([gi.reshape(-1) for gi in gf(*ps)])  # noqa: E731 (one output)
        fwd2 = lambda: jvp_by_double_vjp(flat_grad, tuple(params), tuple(vs))  # noqa: E731
        a = np.concatenate([np.asarray(x).ravel() for x in hvp()])
        for b in (np.concatenate([np.asarray(x).ravel() for x in fwd()]), np.asarray(fwd2()[1])):
            assert np.allclose(a, b, rtol=1e-4, atol=1e-5), "forward-over-reverse and reverse-over-reverse disagree"
        runs = {"grad": grad, "rev": hvp, "fwd": fwd, "fwd2": fwd2}
        if torch is not None:
            tgrad, thvp, tfwd = torch_pair(params, X, Y, vs)
            assert np.allclose(a, np.concatenate([t.numpy().ravel() for t in tfwd()]), rtol=1e-4, atol=1e-5)
            runs.update(tgrad=tgrad, trev=thvp, tfwd=tfwd)
        times = {k: [] for k in runs}
        for _ in range(args.rounds):
            for k, fn in runs.items():
                times[k].append(timeit(fn, args.budget))
        med = statistics.median

        def rat(k, base="grad"):
            return [x / y for x, y in zip(times[k], times[base])]
        r, fw = rat("rev"), rat("fwd")
        tr = f"{med(rat('trev', 'tgrad')):14.2f} {med(rat('tfwd', 'tgrad')):14.2f}" if torch else f"{'-':>14s} {'-':>14s}"
        print(f"{name:42s} {med(times['grad']) * 1e3:8.3f} {med(r):8.2f} ({min(r):.2f}-{max(r):.2f})"
              f" {med(fw):8.2f} ({min(fw):.2f}-{max(fw):.2f}) {med(rat('fwd2')):13.2f} {tr}", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end; goal: hvp/grad <= 3 (HIPS autograd documents ~4x)")


if __name__ == "__main__":
    main()
