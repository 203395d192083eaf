"""The model-specific ``chainrule`` subcommands (derive/dag, rntn/sentiment, sequence, window/tag);
each module has a ``register`` function that cli.py calls."""


def add_run_args(p, default_out):
    """The options every ``chainrule train MODEL`` shares: seed, output directory, resume, progress bar."""
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help=f"output directory (default {default_out})")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--progress", dest="progress", action="store_true", default=None, help="force the progress bar")
    p.add_argument("--no-progress", dest="progress", action="store_false")
