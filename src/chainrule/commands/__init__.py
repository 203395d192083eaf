"""The ``chainrule`` subcommands, one module per model; ``chainrule.cli`` only assembles them.

========== ==========================================================================
module     commands
========== ==========================================================================
mlp        ``train mlp``, ``evaluate``, ``gradcheck mlp``
window     ``train window``, ``tag``, ``gradcheck window``
rntn       ``train rntn`` (RNTN, RNN, Tree-LSTM), ``sentiment``, ``gradcheck rntn``
sequence   ``train sequence``, ``gradcheck lstm|gru|attention``
derive     ``derive``, ``dag``
explain    ``explain``
========== ==========================================================================

Every module has ``register(sub, train_sub, gradcheck_sub)`` -- the top-level subparsers and those
of ``train`` and ``gradcheck`` -- and ``load_model(path)`` for the checkpoints its ``train`` command
writes.  The options the commands share are defined here once: :func:`add_run_args` (epochs,
batch size, patience, seed, output directory, resume, progress bar, BLAS threads) and
:func:`add_optimizer_args` (optimizer, learning rate, weight decay, schedule: the choices and
defaults come from the one optimizer table, :data:`chainrule.optim.OPTIMIZERS`).  Old spellings
(``--batch``, ``--lr-decay``, ``--dim``) are accepted as hidden aliases.
"""
import argparse
import math
import os

MODULES = ("mlp", "window", "rntn", "sequence", "derive", "explain")


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


def add_train_command(train_sub, name, help, description, add_args, func):
    """``chainrule train NAME``: its parser (``add_args(p)`` adds the options) calling ``func(args)``."""
    p = train_sub.add_parser(name, help=help, description=description)
    add_args(p)
    p.set_defaults(func=func)
    return p


def add_checkpoint_command(sub, name, help, description, text, text_help, func):
    """A command that uses a trained model: ``chainrule NAME CHECKPOINT TEXT...`` (``tag``, ``sentiment``)."""
    p = sub.add_parser(name, help=help, description=description)
    p.add_argument("checkpoint")
    p.add_argument(text, nargs="+", help=text_help)
    add_threads_arg(p)
    p.set_defaults(func=func)
    return p


def add_threads_arg(p):
    """``--threads N`` on a subcommand's parser too (``chainrule train mlp --threads 1``); it is
    left unset (``argparse.SUPPRESS``) when not given, so ``chainrule --threads 1 train mlp`` keeps
    working."""
    p.add_argument("--threads", type=int, default=argparse.SUPPRESS,
                   help="BLAS threads (also accepted before the subcommand)")


def add_batch_size_arg(p, default, help):
    """``--batch-size`` (the one spelling; ``--batch`` is a hidden alias)."""
    p.add_argument("--batch-size", type=positive_int, default=default, help=help)
    p.add_argument("--batch", dest="batch_size", type=positive_int, help=argparse.SUPPRESS)


def add_run_args(p, default_out, epochs_help, batch_help):
    """The options every ``chainrule train MODEL`` shares: epochs, batch size, early stopping, seed,
    output directory, resume, overwrite, progress bar, BLAS threads.  ``--epochs`` and ``--batch-size``
    default to None: each command fills in its own default (stated in ``epochs_help``/``batch_help``).
    Records the parser on ``args`` (``_parser``) so --resume can tell which flags were given on the
    command line (:func:`chainrule.commands.rundir.given_flags`)."""
    p.add_argument("--epochs", type=positive_int, default=None, help=epochs_help)
    add_batch_size_arg(p, None, batch_help)
    p.add_argument("--patience", type=positive_int, default=None,
                   help="early stopping after N epochs without improvement of the validation metric")
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
    add_threads_arg(p)


def add_optimizer_args(p, default="adam", choices=None, schedule="none"):
    """``--optimizer``, ``--lr``, ``--weight-decay`` and ``--schedule`` (hidden alias ``--lr-decay``)
    from the optimizer and schedule tables of :mod:`chainrule.optim`."""
    from .. import optim
    choices = list(choices or optim.OPTIMIZERS)
    p.add_argument("--optimizer", default=default, choices=choices, help=f"default {default}")
    p.add_argument("--lr", type=positive_float, default=None, help="learning rate (default: " + ", ".join(
        f"{k} {optim.default_lr(k):g}" for k in choices) + ")")
    p.add_argument("--weight-decay", type=nonnegative_float, default=0.0, help="L2 weight decay added to the gradients (default 0)")
    p.add_argument("--schedule", default=schedule, choices=list(optim.SCHEDULES),
                   help=f"learning-rate schedule over the epochs (default {schedule})")
    p.add_argument("--lr-decay", dest="schedule", choices=list(optim.SCHEDULES), help=argparse.SUPPRESS)


def lr_from_args(args):
    """``--lr``, or the chosen optimizer's default learning rate."""
    from .. import optim
    return args.lr if args.lr is not None else optim.default_lr(args.optimizer)


def build_optimizer(config, params, **options):
    """The optimizer a run's ``config`` names (``optimizer``, ``lr``, ``weight_decay``, ``momentum``),
    through the one factory :func:`chainrule.optim.make_optimizer`; ``options`` override."""
    from .. import optim
    kw = {"lr": config["lr"], "weight_decay": config.get("weight_decay"), "momentum": config.get("momentum")}
    kw.update(options)
    return optim.make_optimizer(config["optimizer"], params, **kw)


def plural(n, word):
    """``1 epoch``, ``2 epochs``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def start_run(args, out, config_from_args, models=None):
    """``(config, extra)`` of a run, after :func:`chainrule.commands.rundir.begin_run` has checked
    ``--out`` (a writable directory; an earlier run there refused unless ``--resume`` or
    ``--overwrite``): with ``--resume`` the configuration and metadata stored in
    ``out/last.safetensors`` (flags that differ refused; ``--epochs`` may extend a run whose schedule
    does not span its epochs); else ``config_from_args(args)`` and None.  ``models``: the model
    kinds this command writes (default: the ``model`` of ``config_from_args(args)``)."""
    from .rundir import begin_run
    fresh = lambda: config_from_args(args)      # noqa: E731
    models = tuple(models or (fresh()["model"],))
    config, meta = begin_run(args, out, models[0], models, fresh, schedule_spans_epochs)
    return config, (meta["extra"] if meta is not None else None)


def schedule_spans_epochs(config):
    """The run's learning-rate schedule, when it depends on the planned number of epochs (any
    schedule but 'none'): then --resume may not change --epochs."""
    s = config.get("schedule", config.get("lr_decay", "none"))
    return f"{s} learning-rate schedule" if s not in (None, "none") else None


def resume_trainer(trainer, args, out):
    """With ``--resume``: load ``out/last.safetensors`` into ``trainer`` and say where it continues."""
    from .rundir import check_space
    check_space(out, trainer.model)
    if args.resume:
        last = os.path.join(out, "last.safetensors")
        trainer.load(last)
        print(f"resuming {last}: epoch {trainer.epoch + 1}, batch {trainer.batch}")


def fit(trainer, train, val):
    """``trainer.fit(train, val)``; returns None when the caller should report (evaluate the best
    checkpoint, write results.json), else the exit status: 130 (the shell's Ctrl-C status) if
    interrupted (the Trainer has saved last.safetensors), 0 on a data-parallel rank other than 0
    (rank 0 alone reports and writes results)."""
    from ..distributed import is_main
    try:
        trainer.fit(train, val)
    except KeyboardInterrupt:
        return 130
    return None if is_main() else 0


def print_gradcheck_table(report, shapes, width=24, note=None):
    """The per-parameter rows of a :class:`chainrule.gradcheck` report: name, shape, max abs and
    relative error, ok; ``note(c)`` may add a remark to a row."""
    print(f"{'parameter':<{width}}{'shape':<16}{'max abs err':>14}{'max rel err':>14}  ok")
    for c in report.comparisons:
        print(f"{c.name:<{width}}{str(shapes.get(c.name, '')):<16}{c.max_abs:>14.3e}{c.max_rel:>14.3e}  "
              f"{'yes' if c.ok else 'NO'}{note(c) if note else ''}")


def summary(what, checks):
    """Print the one summary line that ends ``gradcheck`` and ``derive``: ``checks`` is a list of
    ``(name, ok)``.  Returns the exit status (0: all passed, 1: some failed)."""
    failed = [name for name, ok in checks if not ok]
    if failed:
        print(f"\n{what}: {len(failed)} of {plural(len(checks), 'check')} FAILED: {', '.join(failed)}")
        return 1
    print(f"\n{what}: all checks passed ({len(checks)} of {len(checks)})")
    return 0


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
    if vocab_cls is not None and "vocab" not in extra:
        raise ValueError(f"{path}: no vocabulary in the checkpoint's metadata; {expected}")
    check_config_bounds(config, arrays, path)
    try:
        vocab = vocab_cls.from_json(extra["vocab"]) if vocab_cls is not None else None
    except (TypeError, KeyError, AttributeError, IndexError) as e:
        raise ValueError(f"{path}: the vocabulary in the checkpoint's metadata is malformed "
                         f"({type(e).__name__}: {e}); {expected}") from None
    model = build(config, vocab)
    model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model.")})
    model.eval()
    return model, config, vocab, meta
