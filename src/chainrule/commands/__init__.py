"""The model-specific ``chainrule`` subcommands (derive/dag, rntn/sentiment, sequence, window/tag);
each module has a ``register`` function that cli.py calls."""


import argparse
import math


def _number(kind, convert, ok, what):
    def parse(s):
        try:
            v = convert(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}")
        return v
    parse.__name__ = kind
    return parse


#: argparse types that refuse values a run cannot use (``--batch-size 0``, ``--lr nan``) with a usage error
positive_int = _number("positive_int", int, lambda v: v >= 1, "a positive integer")
nonnegative_int = _number("nonnegative_int", int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number("positive_float", float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
nonnegative_float = _number("nonnegative_float", float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")
unit_fraction = _number("unit_fraction", float, lambda v: 0 <= v < 1, "a fraction in [0, 1)")


def add_run_args(p, default_out):
    """The options every ``chainrule train MODEL`` shares: seed, output directory, resume, overwrite,
    progress bar.  Records the parser on ``args`` (``_parser``) so --resume can tell which flags were
    given on the command line (:func:`chainrule.commands.rundir.given_flags`)."""
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help=f"output directory (default {default_out})")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint, with its own flags (only --epochs, "
                        "--patience and output options may change)")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in an --out that holds an earlier run (its checkpoints, metrics and results "
                        "are deleted); without it such an --out is refused")
    p.set_defaults(_parser=p)
    p.add_argument("--progress", dest="progress", action="store_true", default=None, help="force the progress bar")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="train data-parallel on N processes: runs this command under 'mpiexec -n N' "
                        "(needs pip install 'chainrule[mpi]'); --batch-size stays the global batch")


def load_trained(path, command, models, vocab_cls, build):
    """A model from a checkpoint written by ``chainrule train COMMAND``: ``(model, config, vocab, meta)``.

    Checks that the checkpoint's metadata (``extra``) holds a configuration whose ``model`` is one of
    ``models`` and a vocabulary (each failure a ``ValueError`` naming ``path``, what is wrong and the
    command that writes such checkpoints), rebuilds the vocabulary with ``vocab_cls.from_json``, the
    model with ``build(config, vocab)``, loads its arrays and puts it in eval mode.
    """
    from ..checkpoint import load_checkpoint
    from .rundir import check_config_bounds
    arrays, meta = load_checkpoint(path)
    extra = meta.get("extra")
    extra = extra if isinstance(extra, dict) else {}
    config = extra.get("config")
    expected = f"not a checkpoint written by 'chainrule train {command}'"
    if not isinstance(config, dict) or not config:
        raise ValueError(f"{path}: no model configuration in the checkpoint's metadata; {expected}")
    if config.get("model") not in models:
        raise ValueError(f"{path}: its model is {config.get('model')!r}, not {' or '.join(map(repr, models))}; "
                         f"{expected}")
    if "vocab" not in extra:
        raise ValueError(f"{path}: no vocabulary in the checkpoint's metadata; {expected}")
    check_config_bounds(config, arrays, path)
    try:
        vocab = vocab_cls.from_json(extra["vocab"])
    except (TypeError, KeyError, AttributeError, IndexError) as e:
        raise ValueError(f"{path}: the vocabulary in the checkpoint's metadata is malformed "
                         f"({type(e).__name__}: {e}); {expected}") from None
    model = build(config, vocab)
    model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model.")})
    model.eval()
    return model, config, vocab, meta
