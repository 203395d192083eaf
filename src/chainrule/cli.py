"""The ``chainrule`` command (also ``python -m chainrule``): assembles the subcommands of
:mod:`chainrule.commands` (one module per model, each with ``register``).

    chainrule train mlp|window|rntn|sequence ...   train, evaluate, checkpoint
    chainrule evaluate CHECKPOINT                   re-evaluate a checkpoint
    chainrule gradcheck MODEL                       gradient-check a model
    chainrule derive MODEL | dag SPEC.json          the seed derivations; DAG networks
    chainrule tag | sentiment                       use a trained window / tree model

Every subcommand has ``--help``.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from .commands import MODULES


# ------------------------------------------------------------------------------------------ main
def _limit_threads(n):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("chainrule: --threads needs threadpoolctl (pip install threadpoolctl); ignored", file=sys.stderr)
        return
    threadpool_limits(limits=n)


def build_parser():
    ap = argparse.ArgumentParser(prog="chainrule", description="Backpropagation made real: train, check and "
                                 "derive neural networks with chainrule's autodiff engine.")
    ap.add_argument("--threads", type=int, default=None,
                    help="BLAS threads (default: the BLAS library's own choice). Use 1 on a busy machine: "
                         "OpenBLAS worker threads competing for oversubscribed cores slow small matmuls many-fold")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    tr = sub.add_parser("train", help="train a model", description="Train a model and write checkpoints, "
                        "metrics (JSON lines) and plots to --out.")
    trs = tr.add_subparsers(dest="model", required=True, metavar="MODEL")
    gc = sub.add_parser("gradcheck", help="gradient-check a model in float64",
                        description="Compare the engine's gradients of a model's parameters with central "
                        "finite differences in float64 and print the max relative error per parameter.")
    gcs = gc.add_subparsers(dest="model", required=True, metavar="MODEL")
    for name in MODULES:
        importlib.import_module(f".commands.{name}", __package__).register(sub, trs, gcs)
    return ap


def main(argv=None):
    ap = build_parser()
    args = ap.parse_args(argv)
    if getattr(args, "threads", None):
        _limit_threads(args.threads)
    try:
        return args.func(args) or 0
    except (FileNotFoundError, ValueError) as e:   # bad input: one clear line (CHAINRULE_DEBUG=1 for the traceback)
        if os.environ.get("CHAINRULE_DEBUG"):
            raise
        print(f"chainrule {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":    # pragma: no cover
    sys.exit(main())
