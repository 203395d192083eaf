"""Forward mode: the cost of ``cr.jvp`` (tangent rules, carried alongside the forward pass) against one
forward pass, against the double-VJP trick it replaced, against hand-written NumPy forward mode, and
against ``torch.func.jvp`` and ``jax.jvp`` (jit) when installed.

    OPENBLAS_NUM_THREADS=1 python benchmarks/jvp.py               # ~4 minutes, then benchmarks/hvp.py's table
    OPENBLAS_NUM_THREADS=1 python benchmarks/jvp.py --rounds 9    # steadier
    OPENBLAS_NUM_THREADS=1 python benchmarks/jvp.py --no-hvp      # forward mode only

The Hessian-vector products (forward over reverse with these tangent rules against reverse over
reverse) are measured by ``benchmarks/hvp.py``, which this script runs at the end with the same
number of rounds, so one command gives every number the README's second-order section quotes.

Workloads (the tangent is taken with respect to every primal, with random tangents):

  chain n      y ← tanh(y ⊙ w + x), 20 steps = 60 ops (mul, add, tanh) on vectors of n elements;
               primals x and w (y starts at x); the output is the vector y
  mlp          mean softmax cross-entropy of relu(X W₁ + b₁) W₂ + b₂ (matmul, add, relu, fused
               softmax-cross-entropy), primals W₁, b₁, W₂, b₂; the output is the scalar loss
  mlp-sq       the same network with ½ Σ (z − Y)² / N (sum of squares) as the loss

Columns (median of the rounds' times; every ratio is taken within a round, then the median):
``fwd`` chainrule's forward alone (no graph); ``jvp`` cr.jvp; ``2vjp`` the double-VJP jvp
(``cr.transforms.jvp_by_double_vjp``: forward, backward with create_graph, backward of that);
``np fwd`` / ``np jvp`` the hand-written NumPy forward and forward mode (the same formulas the
tangent rules compute); torch / jax their jvp over the same function.  Rounds interleave every
variant, so a busy machine slows them alike; absolute times on a shared machine are inflated, the
ratios much less so.  Before timing, every jvp is checked against the hand-written one.
"""
from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import chainrule as cr  # noqa: E402
from chainrule.transforms import jvp_by_double_vjp  # noqa: E402
from hvp import timeit  # noqa: E402  (benchmarks/hvp.py, this script's directory: one timing loop for both)

STEPS = 20


# ---------------------------------------------------------------------------------------- chain
def chain_cr(x, w):
    y = x
    for _ in range(STEPS):
        y = cr.tanh(y * w + x)
    return y


def chain_np(x, w):
    y = x
    for _ in range(STEPS):
        y = np.tanh(y * w + x)
    return y


def chain_np_jvp(x, w, vx, vw):
    y, dy = x, vx
    for _ in range(STEPS):
        a, da = y * w + x, dy * w + y * vw + vx
        y = np.tanh(a)
        dy = da * (1 - y * y)
    return y, dy


def chain_lib(lib):
    """The chain written with a peer's array library (``torch`` or ``jax.numpy``: both have ``tanh``)."""
    def f(x, w):
        y = x
        for _ in range(STEPS):
            y = lib.tanh(y * w + x)
        return y
    return f


def make_chain(n, dtype, rng):
    prim = [rng.standard_normal(n).astype(dtype), (0.5 * rng.standard_normal(n)).astype(dtype)]
    tang = [rng.standard_normal(n).astype(dtype) for _ in prim]
    return prim, tang


# ---------------------------------------------------------------------------------------- MLP
def mlp_cr(X, y, loss):
    Xt = cr.tensor(X)
    Y = np.eye(int(y.max()) + 1, dtype=X.dtype)[y] if loss == "sq" else None

    def f(W1, b1, W2, b2):
        z = cr.relu(Xt @ W1 + b1) @ W2 + b2
        if loss == "sq":
            r = z - Y
            return (r * r).sum() * (0.5 / X.shape[0])
        return cr.softmax_cross_entropy(z, y)
    return f


def mlp_np_fwd(X, y, loss):
    Y = np.eye(int(y.max()) + 1, dtype=X.dtype)[y]

    def f(W1, b1, W2, b2):
        z = np.maximum(X @ W1 + b1, 0) @ W2 + b2
        if loss == "sq":
            r = z - Y
            return np.sum(r * r) * (0.5 / X.shape[0])
        m = z.max(axis=1, keepdims=True)
        logp = z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))
        return -logp[np.arange(len(y)), y].mean()
    return f


def mlp_np_jvp(X, y, loss):
    Y = np.eye(int(y.max()) + 1, dtype=X.dtype)[y]
    N = X.shape[0]

    def f(W1, b1, W2, b2, V1, c1, V2, c2):
        a = X @ W1 + b1
        da = X @ V1 + c1
        mask = a > 0
        h, dh = a * mask, da * mask
        z = h @ W2 + b2
        dz = dh @ W2 + h @ V2 + c2
        if loss == "sq":
            r = z - Y
            return np.sum(r * r) * (0.5 / N), np.sum(r * dz) / N
        m = z.max(axis=1, keepdims=True)
        logp = z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))
        p = np.exp(logp)
        L = -logp[np.arange(N), y].mean()
        p[np.arange(N), y] -= 1                                    # softmax − one-hot
        return L, np.sum(p * dz) / N
    return f


def mlp_torch(torch, X, y, loss):
    Xt, yt = torch.tensor(X), torch.tensor(y)
    Yt = torch.tensor(np.eye(int(y.max()) + 1, dtype=X.dtype)[y])

    def f(W1, b1, W2, b2):
        z = torch.relu(Xt @ W1 + b1) @ W2 + b2
        if loss == "sq":
            r = z - Yt
            return (r * r).sum() * (0.5 / X.shape[0])
        return torch.nn.functional.cross_entropy(z, yt)
    return f


def mlp_jax(jax, X, y, loss):
    jnp = jax.numpy
    Xj, yj = jnp.asarray(X), jnp.asarray(y)
    Yj = jnp.asarray(np.eye(int(y.max()) + 1, dtype=X.dtype)[y])

    def f(W1, b1, W2, b2):
        z = jax.nn.relu(Xj @ W1 + b1) @ W2 + b2
        if loss == "sq":
            r = z - Yj
            return (r * r).sum() * (0.5 / X.shape[0])
        logp = jax.nn.log_softmax(z, axis=1)
        return -jnp.take_along_axis(logp, yj[:, None], axis=1).mean()
    return f


def make_mlp(sizes, batch, dtype, rng):
    prim = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        prim += [(rng.standard_normal((a, b)) / np.sqrt(a)).astype(dtype), (0.1 * rng.standard_normal(b)).astype(dtype)]
    tang = [rng.standard_normal(p.shape).astype(dtype) for p in prim]
    X = rng.standard_normal((batch, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], batch)
    return prim, tang, X, y


# ---------------------------------------------------------------------------------------- configurations
def configs(rng):
    out = []
    for n, dtype in ((16, np.float64), (4096, np.float64)):
        prim, tang = make_chain(n, dtype, rng)
        out.append((f"chain n={n} (60 ops) f64", "chain", prim, tang, None))
    for sizes, batch, dtype in (((64, 32, 10), 256, np.float64), ((784, 256, 10), 128, np.float32)):
        prim, tang, X, y = make_mlp(sizes, batch, dtype, rng)
        name = "-".join(map(str, sizes)) + f" b{batch} {np.dtype(dtype).name[0]}{np.dtype(dtype).itemsize * 8}"
        out.append((f"mlp {name}", "ce", prim, tang, (X, y)))
        out.append((f"mlp-sq {name}", "sq", prim, tang, (X, y)))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=0.15, help="seconds per measurement")
    ap.add_argument("--no-hvp", action="store_true", help="skip benchmarks/hvp.py's table at the end")
    args = ap.parse_args(argv)
    try:
        import torch
        import torch.func
        torch.set_num_threads(1)
    except ImportError:
        torch = None
    try:
        import jax
        jax.config.update("jax_enable_x64", True)
        jax.config.update("jax_platforms", "cpu")
    except ImportError:
        jax = None
    rng = np.random.default_rng(0)
    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the start")
    print(f"{'workload':30s} {'fwd µs':>9s} {'jvp µs':>9s} {'jvp/fwd':>8s} {'2vjp/fwd':>9s} {'2vjp/jvp':>9s}"
          f" {'np jvp/np fwd':>14s} {'jvp/np jvp':>11s} {'torch jvp/np jvp':>17s} {'jax jvp/np jvp':>15s}")
    for name, kind, prim, tang, data in configs(rng):
        if kind == "chain":
            f, fnp, hand = chain_cr, chain_np, chain_np_jvp
            tf = chain_lib(torch) if torch else None
            jf = chain_lib(jax.numpy) if jax else None
        else:
            X, y = data
            f, fnp, hand = mlp_cr(X, y, kind), mlp_np_fwd(X, y, kind), mlp_np_jvp(X, y, kind)
            tf = mlp_torch(torch, X, y, kind) if torch else None
            jf = mlp_jax(jax, X, y, kind) if jax else None
        P, V = tuple(prim), tuple(tang)
        want = hand(*P, *V)[1]
        got_jvp = cr.jvp(f, P, V)[1]
        got_2 = jvp_by_double_vjp(f, P, V)[1]
        tol = dict(rtol=1e-4, atol=1e-5) if prim[0].dtype == np.float32 else dict(rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got_jvp, want, **tol)
        np.testing.assert_allclose(got_2, want, **tol)

        def fwd():
            with cr.no_grad():
                return f(*[cr.Tensor._wrap(p) for p in P])
        runs = {"fwd": fwd, "jvp": lambda: cr.jvp(f, P, V), "2vjp": lambda: jvp_by_double_vjp(f, P, V),
                "np fwd": lambda: fnp(*P), "np jvp": lambda: hand(*P, *V)}
        if tf is not None:
            TP, TV = tuple(torch.tensor(p) for p in P), tuple(torch.tensor(v) for v in V)
            np.testing.assert_allclose(torch.func.jvp(tf, TP, TV)[1].numpy(), want, **tol)
            runs["torch"] = lambda: torch.func.jvp(tf, TP, TV)
        if jf is not None:
            JP, JV = tuple(jax.numpy.asarray(p) for p in P), tuple(jax.numpy.asarray(v) for v in V)
            jj = jax.jit(lambda p, v: jax.jvp(jf, p, v))
            np.testing.assert_allclose(np.asarray(jj(JP, JV)[1]), want, **tol)
            runs["jax"] = lambda: jax.block_until_ready(jj(JP, JV))
        times = {k: [] for k in runs}
        for _ in range(args.rounds):
            for k, fn in runs.items():
                times[k].append(timeit(fn, args.budget))
        med = statistics.median

        def ratio(a, b):
            return med([x / y for x, y in zip(times[a], times[b])])
        tr = f"{ratio('torch', 'np jvp'):17.2f}" if "torch" in times else f"{'-':>17s}"
        jr = f"{ratio('jax', 'np jvp'):15.2f}" if "jax" in times else f"{'-':>15s}"
        print(f"{name:30s} {med(times['fwd']) * 1e6:9.1f} {med(times['jvp']) * 1e6:9.1f} {ratio('jvp', 'fwd'):8.2f}"
              f" {ratio('2vjp', 'fwd'):9.2f} {ratio('2vjp', 'jvp'):9.2f} {ratio('np jvp', 'np fwd'):14.2f}"
              f" {ratio('jvp', 'np jvp'):11.2f} {tr} {jr}", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    if not args.no_hvp:
        import hvp                                    # benchmarks/hvp.py (this script's directory)
        print()
        hvp.main(["--rounds", str(args.rounds)])


if __name__ == "__main__":
    main()
