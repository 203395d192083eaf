"""Embedding gradients: row-sparse (``sparse=True``) vs dense (``sparse=False``), one training step
(lookup → sum of a fixed linear readout → backward → optimizer step) per measurement, for tables a
user meets (a small task vocabulary, a mid-size one, GloVe-sized) and a batch of 32 × 20 lookups.
This is the measurement behind ``nn.Embedding``'s default (docs/coming-from-pytorch.md).

Rounds interleave the two paths; the table reports medians (ms per step) and the dense/sparse
ratio.  The machine is shared: read ratios, not absolute times.

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=src python benchmarks/embedding_sparse_dense.py [--rounds 7]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import chainrule as cr
from chainrule import nn, optim

SIZES = [(1_000, 50), (20_000, 50), (400_000, 50)]
BATCH = (32, 20)


def make(V, d, sparse, opt_name):
    emb = nn.Embedding(V, d, sparse=sparse, rng=0)
    opt = optim.SGD(emb.parameters(), lr=0.1) if opt_name == "sgd" else optim.Adam(emb.parameters(), lr=1e-3)
    return emb, opt


def step(emb, opt, idx, r):
    opt.zero_grad()
    (emb(idx) * r).sum().backward()
    opt.step()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'table':>14} {'opt':>4} {'sparse ms':>10} {'dense ms':>10} {'dense/sparse':>13}")
    for V, d in SIZES:
        idx = rng.integers(0, V, BATCH)
        r = rng.standard_normal(BATCH + (d,)).astype(np.float32)
        for opt_name in ("sgd", "adam"):
            models = {s: make(V, d, s, opt_name) for s in (True, False)}
            times = {True: [], False: []}
            for _ in range(args.rounds):
                for s in (True, False):
                    emb, opt = models[s]
                    t0 = time.perf_counter()
                    for _ in range(args.steps):
                        step(emb, opt, idx, r)
                    times[s].append((time.perf_counter() - t0) / args.steps * 1e3)
            ms_s, ms_d = statistics.median(times[True]), statistics.median(times[False])
            print(f"{V:>8}x{d:<5} {opt_name:>4} {ms_s:10.3f} {ms_d:10.3f} {ms_d / ms_s:13.1f}")


if __name__ == "__main__":
    main()
