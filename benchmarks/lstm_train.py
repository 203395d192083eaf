"""Sequences per second for forward + backward of an LSTM: chainrule's ``nn.LSTM`` (backprop through
time done by the engine over the unrolled graph) vs. the same LSTM with BPTT written by hand in NumPy,
in the same process, on the same data; a PyTorch ``LSTMCell`` loop and ``nn.LSTM`` too when torch is
importable.

    python benchmarks/lstm_train.py            # both malloc settings
    python benchmarks/lstm_train.py --json

Configuration (issue 7): input 64, hidden 128, length 50, batch 32, float32, one layer, one direction,
loss = Σ r ⊙ h_T (a fixed random projection of the final hidden state) plus Σ s ⊙ outputs, so the
gradient enters at every step as it does for attention pooling; parameter gradients only (the input is
data).  One measured step = forward + backward (+ for chainrule, zeroing the grads).

The hand-written NumPy version is what one writes for speed: the input projection of all 50 steps is
one matmul, the per-step recurrence is h W_hh, and the weight gradients are two matmuls over all steps
after the backward sweep.  glibc maps and unmaps every large temporary by default (a page fault costs
~3 µs here), so every configuration is also run in a child process with MALLOC_MMAP_THRESHOLD_ /
MALLOC_TRIM_THRESHOLD_ raised (see DESIGN.md).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from _harness import SETTINGS, run_child

D, H, T, N = 64, 128, 50, 32


def init_params(seed=0):
    rng = np.random.default_rng(seed)
    k = 1 / np.sqrt(H)
    Wih = rng.uniform(-k, k, (D, 4 * H)).astype(np.float32)
    Whh = rng.uniform(-k, k, (H, 4 * H)).astype(np.float32)
    b = rng.uniform(-k, k, 4 * H).astype(np.float32)
    b[H:2 * H] = 1.0
    return Wih, Whh, b


def data(seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, T, D)).astype(np.float32)
    r = rng.standard_normal((N, H)).astype(np.float32)
    s = (rng.standard_normal((N, T, H)) * 0.1).astype(np.float32)
    return x, r, s


def _sig(a):
    return 1 / (1 + np.exp(-a))


def numpy_factory():
    """Hand-written forward and BPTT; returns step(x, r, s) -> (loss, grads)."""
    Wih, Whh, b = init_params()

    def step(x, r, s):
        xt = np.ascontiguousarray(x.transpose(1, 0, 2))             # (T, N, D)
        XP = (xt.reshape(T * N, D) @ Wih).reshape(T, N, 4 * H) + b  # all input projections at once
        hs = np.zeros((T + 1, N, H), np.float32)
        cs = np.zeros((T + 1, N, H), np.float32)
        S = np.empty((T, N, 3 * H), np.float32)
        G = np.empty((T, N, H), np.float32)
        TC = np.empty((T, N, H), np.float32)
        for t in range(T):
            z = XP[t] + hs[t] @ Whh
            S[t] = _sig(z[:, :3 * H])
            G[t] = np.tanh(z[:, 3 * H:])
            cs[t + 1] = S[t, :, H:2 * H] * cs[t] + S[t, :, :H] * G[t]
            TC[t] = np.tanh(cs[t + 1])
            hs[t + 1] = S[t, :, 2 * H:] * TC[t]
        sT = s.transpose(1, 0, 2)
        loss = float(np.sum(r * hs[T]) + np.sum(sT * hs[1:]))
        # backward through time
        dZ = np.empty((T, N, 4 * H), np.float32)
        dh = r.copy()
        dc = np.zeros((N, H), np.float32)
        for t in range(T - 1, -1, -1):
            dh += sT[t]
            i, f, o = S[t, :, :H], S[t, :, H:2 * H], S[t, :, 2 * H:]
            g, tc = G[t], TC[t]
            dc += dh * o * (1 - tc * tc)
            dZ[t, :, :H] = dc * g * i * (1 - i)
            dZ[t, :, H:2 * H] = dc * cs[t] * f * (1 - f)
            dZ[t, :, 2 * H:3 * H] = dh * tc * o * (1 - o)
            dZ[t, :, 3 * H:] = dc * i * (1 - g * g)
            dc = dc * f
            dh = dZ[t] @ Whh.T
        dZ2 = dZ.reshape(T * N, 4 * H)
        dWih = xt.reshape(T * N, D).T @ dZ2
        dWhh = hs[:T].reshape(T * N, H).T @ dZ2
        db = dZ2.sum(axis=0)
        return loss, (dWih, dWhh, db)
    return step


def chainrule_factory():
    from chainrule.nn.recurrent import LSTM
    lstm = LSTM(D, H, rng=0)
    cell = lstm.cells[0]
    Wih, Whh, b = init_params()
    cell.weight_ih.data[...] = Wih
    cell.weight_hh.data[...] = Whh
    cell.bias.data[...] = b
    params = [cell.weight_ih, cell.weight_hh, cell.bias]

    def step(x, r, s):
        for p in params:
            p.grad = None
        out, (h_n, _) = lstm(x)
        loss = (h_n[0] * r).sum() + (out * s).sum()
        loss.backward()
        return float(loss.item()), tuple(p.grad for p in params)
    return step


def torch_factories():
    import torch
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    Wih, Whh, b = init_params()

    def load(mod_ih, mod_hh, b_ih, b_hh):
        # torch gate order i, f, g, o; ours i, f, o, g; torch weights are (4H, in)
        perm = np.concatenate([np.arange(0, 2 * H), np.arange(3 * H, 4 * H), np.arange(2 * H, 3 * H)])
        with torch.no_grad():
            mod_ih.copy_(torch.from_numpy(Wih[:, perm].T.copy()))
            mod_hh.copy_(torch.from_numpy(Whh[:, perm].T.copy()))
            b_ih.copy_(torch.from_numpy(b[perm].copy()))
            b_hh.zero_()

    cell = torch.nn.LSTMCell(D, H)
    load(cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    full = torch.nn.LSTM(D, H, batch_first=True)
    load(full.weight_ih_l0, full.weight_hh_l0, full.bias_ih_l0, full.bias_hh_l0)

    def cell_step(x, r, s):
        cell.zero_grad()
        xt, rt, st = torch.from_numpy(x), torch.from_numpy(r), torch.from_numpy(s)
        h = torch.zeros(N, H)
        c = torch.zeros(N, H)
        loss = 0
        for t in range(T):
            h, c = cell(xt[:, t], (h, c))
            loss = loss + (h * st[:, t]).sum()
        loss = loss + (h * rt).sum()
        loss.backward()
        return float(loss.item()), (cell.weight_ih.grad,)

    def full_step(x, r, s):
        full.zero_grad()
        xt, rt, st = torch.from_numpy(x), torch.from_numpy(r), torch.from_numpy(s)
        out, (h_n, _) = full(xt)
        loss = (h_n[0] * rt).sum() + (out * st).sum()
        loss.backward()
        return float(loss.item()), (full.weight_ih_l0.grad,)
    return cell_step, full_step


def measure(steps, args, seconds=6.0, block=6):
    """Sequences/s of each step function, N / median step time.  The implementations take turns in
    blocks of ``block`` consecutive steps until the budget is spent, so a change of machine load (this
    machine is shared) hits all of them alike, while each block runs in the steady state of a training
    loop (the first step of every block, which pays for the other implementation's cache and
    allocator footprint, is not counted); the median discards steps hit by a burst of load."""
    for step in steps.values():
        for _ in range(2):
            step(*args)
    times = {k: [] for k in steps}
    t_end = time.perf_counter() + seconds * len(steps)
    while time.perf_counter() < t_end or min(len(v) for v in times.values()) < 10:
        for name, step in steps.items():
            for k in range(block):
                t0 = time.perf_counter()
                step(*args)
                if k:
                    times[name].append(time.perf_counter() - t0)
    return {k: N / float(np.median(v)) for k, v in times.items()}


def run_all(seconds):
    x, r, s = data()
    a, b = numpy_factory(), chainrule_factory()
    la, ga = a(x, r, s)
    lb, gb = b(x, r, s)
    agree = bool(np.isclose(la, lb, rtol=1e-4) and all(np.allclose(u, np.asarray(v), rtol=1e-3, atol=1e-4)
                                                       for u, v in zip(ga, gb)))
    steps = {"numpy_seq_per_s": numpy_factory(), "chainrule_seq_per_s": chainrule_factory()}
    try:
        cs, fs = torch_factories()
        lt1, lt2 = cs(x, r, s)[0], fs(x, r, s)[0]
        agree = agree and bool(np.isclose(la, lt1, rtol=1e-4) and np.isclose(la, lt2, rtol=1e-4))
        steps["torch_cell_loop_seq_per_s"] = cs
        steps["torch_nn_lstm_seq_per_s"] = fs
    except ImportError:
        pass
    res = {"config": {"input": D, "hidden": H, "length": T, "batch": N}, "torch_cell_loop_seq_per_s": None,
           "torch_nn_lstm_seq_per_s": None}
    res["grads_agree"] = agree
    res.update(measure(steps, (x, r, s), seconds))
    return res


def table(res, title):
    base = res["numpy_seq_per_s"]
    lines = [title, f"{'implementation':<34}{'sequences/s':>12}{'vs numpy':>10}"]
    for key, name in (("numpy_seq_per_s", "hand-written NumPy BPTT"), ("chainrule_seq_per_s", "chainrule nn.LSTM"),
                      ("torch_cell_loop_seq_per_s", "PyTorch LSTMCell loop"),
                      ("torch_nn_lstm_seq_per_s", "PyTorch nn.LSTM")):
        v = res.get(key)
        lines.append(f"{name:<34}{v:>12.0f}{v / base:>10.2f}" if v else f"{name:<34}{'-':>12}{'-':>10}")
    if not res["grads_agree"]:
        lines.append("(the implementations disagree on the loss or the gradients!)")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=6.0, help="timing budget per measurement")
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
    c = runs[next(iter(runs))]["config"]
    print(f"LSTM input {c['input']}, hidden {c['hidden']}, length {c['length']}, batch {c['batch']}, float32, "
          f"forward + backward; OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}\n")
    for label, res in runs.items():
        print(table(res, f"== {label}"))
        print()


if __name__ == "__main__":
    main()
