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
#: environment variables with which a user chooses the BLAS thread count; when one is set, chainrule
#: leaves the choice alone
BLAS_THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                   "VECLIB_MAXIMUM_THREADS")


def _limit_threads(n, quiet=False):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        if not quiet:
            print("chainrule: --threads needs threadpoolctl (pip install threadpoolctl); ignored", file=sys.stderr)
        return
    threadpool_limits(limits=n)


def default_threads(args):
    """BLAS threads for this command: ``--threads`` if given; else the user's environment variable
    (:data:`BLAS_THREAD_ENV`) decides; else 1.  The built-in models' matrices are small (digits MLP:
    32 x 64 @ 64 x 512), where a second BLAS thread buys little on an idle machine and costs many-fold
    on a busy one (measured, README: 5 epochs of the main job 1.5-1.8 s with 1 thread, 45-56 s with
    OpenBLAS's default of 2 on this 2-core machine under load ~8).  None: leave the library's choice."""
    n = getattr(args, "threads", None)
    if n is not None:
        return n
    if any(os.environ.get(v) for v in BLAS_THREAD_ENV):
        return None
    return 1


def build_parser():
    ap = argparse.ArgumentParser(prog="chainrule", description="Backpropagation made real: train, check and "
                                 "derive neural networks with chainrule's autodiff engine.")
    ap.add_argument("--threads", type=int, default=None,
                    help="BLAS threads (default 1, unless OPENBLAS_NUM_THREADS/OMP_NUM_THREADS/MKL_NUM_THREADS is "
                         "set: the built-in models' matrices are small, and BLAS worker threads competing for busy "
                         "cores slow them many-fold)")
    ap.add_argument("--debug", action="store_true",
                    help="show the full traceback of an error (default: one line naming the problem, exit code 2)")
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


def _distributed(args, argv):
    """``--workers N``: relaunch under mpiexec (returns its exit status).  Under mpiexec: start MPI,
    and mute stdout on ranks other than 0 (errors still reach stderr).  None: carry on here."""
    from . import distributed
    n = distributed.launched_size()
    workers = getattr(args, "workers", None)
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if n == 1 and workers and workers > 1:
        return distributed.launch(list(argv), workers)
    if n > 1:
        if workers not in (None, n):
            raise ValueError(f"--workers {workers}, but mpiexec started {n} processes; drop --workers under mpiexec")
        distributed.init()
        if not distributed.is_main():
            sys.stdout = open(os.devnull, "w")
    return None


#: Errors that mean "the input or the environment is wrong", not "chainrule has a bug": the command
#: prints one line naming the problem and exits with 2 (``--debug`` or CHAINRULE_DEBUG=1 shows the
#: traceback).  Every chainrule error class for bad input (CheckpointError, TreeParseError,
#: ConllFormatError, GloveFormatError, IdxFormatError, DAGSpecError, ...) is a ValueError; files that
#: are missing, unreadable or unwritable are OSErrors.  Anything else is a bug and keeps its traceback.
EXPECTED_ERRORS = (ValueError, OSError, EOFError)


def _quiet_broken_pipe():
    """stdout's reader went away (``chainrule ... | head``): stop quietly, as a Unix tool does."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141                 # 128 + SIGPIPE, what a shell reports for a tool killed by the pipe


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = build_parser()
    args = ap.parse_args(argv)
    args._argv = argv
    debug = getattr(args, "debug", False) or bool(os.environ.get("CHAINRULE_DEBUG"))
    threads = default_threads(args)
    if threads:
        _limit_threads(threads, quiet=getattr(args, "threads", None) is None)
    name = " ".join(v for v in (getattr(args, "command", None), getattr(args, "model", None)) if isinstance(v, str))
    try:
        try:
            rc = _distributed(args, argv)     # --workers N: relaunch under mpiexec; under mpiexec: start MPI
        except ImportError as e:
            raise ValueError(str(e)) from None
        if rc is not None:
            return rc
        rc = args.func(args) or 0
        sys.stdout.flush()          # a reader that went away shows up here, not at interpreter exit
        return rc
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except KeyboardInterrupt:
        print(f"chainrule {name}: interrupted", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as e:
        if debug:
            raise
        print(f"chainrule {name}: error: {_describe(e)}", file=sys.stderr)
        from .distributed import abort_all
        abort_all(2)             # under mpiexec: the other ranks must not wait for this one
        return 2


def _describe(e):
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    if isinstance(e, EOFError):
        return f"unexpected end of a file ({e}); the file is truncated"
    return str(e) or type(e).__name__


if __name__ == "__main__":    # pragma: no cover
    sys.exit(main())
