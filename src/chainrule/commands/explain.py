"""``chainrule explain MODEL`` and ``chainrule check-derivation``.

``chainrule explain {mlp,window,multilabel-mlp,layerwise,dag,rntn,lstm} [--format text|md|tex|html]
[--out FILE]`` builds the model on a small random float64 problem and prints (or writes) its backward
derivation, every equation checked against the engine's δ; the exit status is 1 if a check fails.
``seed`` names accepted as aliases: ``002`` window, ``003`` multilabel-mlp, ``004`` layerwise,
``001`` dag, ``000`` rntn.

``chainrule check-derivation FILE.py --model MODEL`` loads a hand derivation ``derive(values)`` from a
Python file (trusted code: it is run) and checks it against the model's backward pass; the exit
status is 1 if a line is wrong.
"""
from __future__ import annotations

import sys

from . import add_threads_arg

ALIASES = {"000": "rntn", "001": "dag", "002": "window", "003": "multilabel-mlp", "004": "layerwise",
           "seed-000": "rntn", "seed-001": "dag", "seed-002": "window", "seed-003": "multilabel-mlp",
           "seed-004": "layerwise"}


def cmd_explain(args):
    from ..explain import derive
    from ..explain import _write, _format_of
    from ..explain.models import build
    name = ALIASES.get(args.model, args.model)
    J, consts, title = build(name, seed=args.seed)
    d = derive(J, constants=consts, title=title)
    fmt = args.format or (_format_of(args.out) if args.out else "text")
    s = d.render(fmt)
    if args.out:
        _write(args.out, s)
        status = "all equations hold" if d.ok else f"{len(d.failures())} equation(s) FAIL their check"
        print(f"wrote {args.out} ({len(d.equations)} equations; {status})")
    else:
        sys.stdout.write(s)
    return 0 if d.ok else 1


def cmd_check_derivation(args):
    import runpy
    from ..explain import check_derivation
    from ..explain.models import build
    name = ALIASES.get(args.model, args.model)
    ns = runpy.run_path(args.file)
    fn = ns.get(args.function)
    if not callable(fn):
        raise ValueError(f"check-derivation: {args.file} defines no function {args.function!r} "
                         f"(functions found: {sorted(k for k, v in ns.items() if callable(v) and not k.startswith('_'))})")
    J, consts, title = build(name, seed=args.seed)
    rep = check_derivation(J, fn, constants=consts)
    print(rep)
    return 0 if rep.ok else 1


def register(sub, train_sub=None, gradcheck_sub=None):
    """Add ``explain`` to the ``chainrule`` parser (the same signature as every command module)."""
    from ..explain.models import MODELS
    choices = list(MODELS) + sorted(ALIASES)
    p = sub.add_parser("explain", help="write a model's backward pass as a derivation, each line checked",
                       description="Print the backward derivation of a built-in model in the seeds' notation "
                       "(δ of every named tensor, gradient of every parameter), every equation checked "
                       "numerically against the engine's δ in float64. Exit status 1 if a check fails.")
    p.add_argument("model", choices=choices, metavar="MODEL", help="one of: " + ", ".join(choices))
    p.add_argument("--format", choices=["text", "md", "tex", "html"], default=None,
                   help="output format (default: text, or from --out's suffix)")
    p.add_argument("--out", default=None, help="write to this file instead of standard output")
    p.add_argument("--seed", type=int, default=0, help="seed of the random problem (default 0)")
    add_threads_arg(p)
    p.set_defaults(func=cmd_explain)
    c = sub.add_parser("check-derivation", help="find the first wrong line of a hand derivation",
                       description="Run a hand derivation -- a Python function derive(values) returning "
                       "{name: array} of δ's and parameter gradients -- on a built-in model and report "
                       "the first wrong equation, the expected formula, the error and the likely slip. "
                       "The file is executed: only use files you trust.")
    c.add_argument("file", help="a Python file defining the derivation function")
    c.add_argument("--model", required=True, choices=choices, metavar="MODEL", help="one of: " + ", ".join(choices))
    c.add_argument("--function", default="derive", help="the function's name in the file (default: derive)")
    c.add_argument("--seed", type=int, default=0)
    add_threads_arg(c)
    c.set_defaults(func=cmd_check_derivation)
