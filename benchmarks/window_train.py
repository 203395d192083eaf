"""Windows per second of the seed-002 window classifier's training step: chainrule vs. the same step
written by hand in NumPy (np.add.at for the embedding rows), in the same process, on the same data.

    python benchmarks/window_train.py            # both malloc settings
    python benchmarks/window_train.py --json

Configuration (issue 5): a 100,000 x 50 word-vector table, window 3, 100 tanh units, the seed's
sigmoid output with binary cross-entropy and C/(2m)(|W|^2+|U|^2), batch 64, float32, plain SGD with
a row-sparse update of the table (only the rows of the batch's words move).  Each step is
forward + backward + update.  Like benchmarks/mlp_train.py, it runs once with glibc's default
malloc and once with MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ raised.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from _harness import SETTINGS, run_child

V, N, C, H, BATCH = 100_000, 50, 3, 100, 64
REG_C, M = 1.0, 200_000


def init_params(seed=0):
    rng = np.random.default_rng(seed)
    L = (rng.standard_normal((V, N)) * 0.5).astype(np.float32)
    a = np.sqrt(6.0 / (N * C + H))
    W = rng.uniform(-a, a, (N * C, H)).astype(np.float32)
    U = rng.uniform(-0.2, 0.2, (H, 1)).astype(np.float32)
    return L, W, np.zeros(H, np.float32), U, np.zeros(1, np.float32)


def numpy_step_factory(lr=0.05):
    L, W, b1, U, b2 = init_params()
    k = np.float32(REG_C / M)

    def step(words, y):
        m = words.shape[0]
        x = L[words].reshape(m, -1)                  # (m, nC)
        a1 = np.tanh(x @ W + b1)
        z2 = (a1 @ U)[:, 0] + b2[0]
        loss = float(np.mean(np.logaddexp(0, z2) - y * z2)) + float(k / 2 * ((W * W).sum() + (U * U).sum()))
        d2 = (1.0 / (1.0 + np.exp(-z2)) - y).astype(np.float32) / m      # eqs. (12)/(15), batch mean
        gU = a1.T @ d2[:, None] + k * U                                  # (31)
        gb2 = d2.sum(keepdims=True)                                      # (15)
        d1 = (d2[:, None] * U[:, 0]) * (1 - a1 * a1)                     # (25)
        gW = x.T @ d1 + k * W                                            # (30)
        gb1 = d1.sum(axis=0)
        gx = d1 @ W.T                                                    # (29)
        W.__isub__(lr * gW)
        b1.__isub__(lr * gb1)
        U.__isub__(lr * gU)
        b2.__isub__(lr * gb2)
        np.add.at(L, words.reshape(-1), (-lr) * gx.reshape(-1, N))       # columns of L, repeats add
        return loss
    return step


def chainrule_step_factory(lr=0.05):
    from chainrule import optim
    from chainrule.models.window import WindowClassifier, make_loss_fn
    L, W, _, U, _ = init_params()          # zero biases, as the Linear layers start
    model = WindowClassifier(V, N, window=C, hidden=H, head="binary", caps_dim=0, embeddings=L)
    model.hidden.weight.data[...] = W
    model.out.weight.data[...] = U
    opt = optim.SGD(model.parameters(), lr=lr)
    loss_fn = make_loss_fn(REG_C, M)

    def step(words, y):
        loss, _ = loss_fn(model, (words, None, y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.item())
    return step


def measure(step, words, y, seconds=2.0, repeats=3):
    for _ in range(5):
        step(words, y)
    best = 0.0
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / repeats:
            step(words, y)
            n += 1
        best = max(best, n / (time.perf_counter() - t0))
    return best * words.shape[0]


def run_all(seconds):
    rng = np.random.default_rng(1)
    words = rng.integers(0, V, size=(BATCH, C))
    y = rng.integers(0, 2, size=BATCH).astype(np.float32)
    a, b = numpy_step_factory(), chainrule_step_factory()
    la, lb = [a(words, y) for _ in range(3)], [b(words, y) for _ in range(3)]
    return {"table": [V, N], "window": C, "hidden": H, "batch": BATCH,
            "losses_agree": bool(np.allclose(la, lb, rtol=1e-4, atol=1e-5)),
            "numpy_windows_per_s": measure(numpy_step_factory(), words, y, seconds),
            "chainrule_windows_per_s": measure(chainrule_step_factory(), words, y, seconds)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="timing budget per measurement")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_all(args.seconds)))
        return
    runs = {}
    for label, extra in SETTINGS:
        runs[label] = run_child(__file__, ["--child", "--seconds", args.seconds], extra)
    if args.json:
        print(json.dumps(runs, indent=2))
        return
    print(f"window classifier step: table {V} x {N}, window {C}, H {H}, batch {BATCH}, SGD, float32")
    print(f"{'malloc':<48}{'numpy win/s':>13}{'chainrule win/s':>17}{'ratio':>8}")
    for label, r in runs.items():
        ratio = r["chainrule_windows_per_s"] / r["numpy_windows_per_s"]
        print(f"{label:<48}{r['numpy_windows_per_s']:>13.0f}{r['chainrule_windows_per_s']:>17.0f}{ratio:>8.2f}"
              + ("" if r["losses_agree"] else "   (losses differ!)"))


if __name__ == "__main__":
    main()
