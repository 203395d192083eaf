"""Page faults and time per step with each implementation alone in a fresh process, under glibc's
default malloc and with its thresholds raised -- issue 17's allocation question.

    OPENBLAS_NUM_THREADS=1 python benchmarks/page_faults.py                  # all workloads, ~4 min
    OPENBLAS_NUM_THREADS=1 python benchmarks/page_faults.py --workloads mlp_big,lstm --rounds 3
    python benchmarks/page_faults.py --json

Why separate processes: glibc adapts.  After the first free of a large memory-mapped block it raises
its mmap threshold (and its trim threshold with it) for the rest of the process, so in peers.py,
where every implementation shares one process, whichever ran first decides how the others allocate
(there: 0-0.6 faults a step for everybody).  Here each (workload, implementation, malloc setting)
gets its own child process that builds the workload (peers.py's builders, without PyTorch and JAX),
runs 6 warm-up steps (the compiled step's two captures and its recording among them) and then as
many steps as fit in ``--seconds``, counting the process's minor page faults (``getrusage``
ru_minflt: pages mapped anew -- memory the allocator returned to the system and takes back).
Rounds alternate the processes; reported are the medians over rounds.  The speed column is the ratio
of median times to the hand-written step's under the same setting (not paired: separate processes).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402
from _harness import SETTINGS, run_child  # noqa: E402

IMPLS = ("numpy (hand)", "chainrule eager", "chainrule compiled")


def _faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def child(workload, impl, seconds):
    """Build ``workload``, run ``impl`` alone; µs and minor faults per step after warm-up."""
    peers._torch = lambda: None                  # the peers stay out of these processes' heaps
    peers._jax = lambda: (None, None)
    impls, _ = peers.WORKLOADS[workload]()
    step = impls[impl]
    f0 = _faults()
    for _ in range(6):
        step()
    warm = _faults() - f0
    n, f0, t0 = 0, _faults(), time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < seconds:
        step()
        n += 1
    t = time.perf_counter() - t0
    return {"us_per_step": t / n * 1e6, "faults_per_step": (_faults() - f0) / n, "warmup_faults": warm, "steps": n}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", default=",".join(peers.WORKLOADS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.0, help="timed seconds per process")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", nargs=2, metavar=("WORKLOAD", "IMPL"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.seconds)))
        return 0
    wl = [w for w in args.workloads.split(",") if w]
    bad = [w for w in wl if w not in peers.WORKLOADS]
    if bad:
        ap.error(f"unknown workload(s) {bad}; choose from {list(peers.WORKLOADS)}")
    runs = {label: {w: {k: [] for k in IMPLS} for w in wl} for label, _ in SETTINGS}
    for _ in range(args.rounds):
        for w in wl:
            for k in IMPLS:
                for label, env in SETTINGS:
                    runs[label][w][k].append(run_child(__file__, ["--child", w, k, "--seconds", args.seconds], env))
    out = {label: {w: {k: {m: float(np.median([r[m] for r in rs])) for m in rs[0]} for k, rs in per.items()}
                   for w, per in res.items()} for label, res in runs.items()}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"each implementation alone in a fresh process; medians of {args.rounds} rounds; BLAS threads "
          f"{peers.THREADS}; speed = t_hand / t_impl under the same malloc setting (medians, not paired)")
    for label, res in out.items():
        print(f"\n== {label}")
        for w in wl:
            hand = res[w]["numpy (hand)"]["us_per_step"]
            print(w)
            for k, v in res[w].items():
                print(f"  {k:<22}{v['us_per_step']:>11.1f} µs  {hand / v['us_per_step']:>6.2f}x  "
                      f"{v['faults_per_step']:>9.1f} faults/step  ({v['warmup_faults']:.0f} in the 6 warm-up steps)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
