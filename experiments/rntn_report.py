"""Table-1 numbers of every finished ``chainrule train rntn`` run under experiments/results/, read from
their results.json (what the command writes at the end), beside Socher et al. (2013); runs that
differ only in ``--seed`` are also averaged (mean ± sample standard deviation).

    python experiments/rntn_report.py                    # markdown table of all runs
    python experiments/rntn_report.py --dir experiments/results
"""
import argparse
import glob
import json
import os
from collections import defaultdict

import numpy as np

from chainrule.models.rntn import PAPER_TABLE1

METRICS = ("fine_all", "fine_root", "binary_all", "binary_root")
SETTING = ("model", "dim", "reg_transform", "reg_tensor", "lr", "adagrad_reset", "leaf_tanh", "lowercase", "monitor")


def setting(config):
    return tuple((k, config.get(k)) for k in SETTING)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args(argv)
    runs = []
    for path in sorted(glob.glob(os.path.join(args.dir, "*", "results.json"))):
        r = json.load(open(path))
        if r.get("config", {}).get("model") in ("rntn", "rnn"):
            runs.append((os.path.basename(os.path.dirname(path)), r))
    if not runs:
        print(f"no finished rntn/rnn runs under {args.dir}")
        return 1
    print("| run | model | d | L2 W,b / V | seed | fine all | fine root | binary all | binary root | best epoch | train s |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    groups = defaultdict(list)
    for name, r in runs:
        c = r["config"]
        v = c.get("reg_tensor")
        reg = f"{c['reg_transform']:g} / {c['reg_transform'] if v is None else v:g}"
        cells = " | ".join(f"{100 * r['test_' + m]:.1f}" for m in METRICS)
        print(f"| {name} | {c['model']} | {c['dim']} | {reg} | {c['seed']} | {cells} | {r['best_epoch']} | "
              f"{r.get('train_seconds', 0):.0f} |")
        groups[setting(c)].append(r)
    for model in ("rntn", "rnn"):
        print(f"| paper ({model.upper()}) | | | | | " + " | ".join(f"{PAPER_TABLE1[model][m]:.1f}" for m in METRICS)
              + " | | |")
    print()
    for key, rs in groups.items():
        if len(rs) < 2:
            continue
        k = dict(key)
        seeds = sorted(r["config"]["seed"] for r in rs)
        stats = []
        for m in METRICS:
            x = np.array([100 * r["test_" + m] for r in rs])
            stats.append(f"{x.mean():.1f} ± {x.std(ddof=1):.1f}")
        print(f"{k['model'].upper()} d={k['dim']} L2 {k['reg_transform']:g}, seeds {seeds}: test "
              + ", ".join(f"{m} {s}" for m, s in zip(METRICS, stats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
