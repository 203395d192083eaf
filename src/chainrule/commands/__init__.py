"""The model-specific ``chainrule`` subcommands (derive/dag, rntn/sentiment, sequence, window/tag);
each module has a ``register`` function that cli.py calls."""


def add_run_args(p, default_out):
    """The options every ``chainrule train MODEL`` shares: seed, output directory, resume, progress bar."""
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help=f"output directory (default {default_out})")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
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
    arrays, meta = load_checkpoint(path)
    extra = meta.get("extra") or {}
    config = extra.get("config")
    expected = f"not a checkpoint written by 'chainrule train {command}'"
    if not config:
        raise ValueError(f"{path}: no model configuration in the checkpoint's metadata; {expected}")
    if config.get("model") not in models:
        raise ValueError(f"{path}: its model is {config.get('model')!r}, not {' or '.join(map(repr, models))}; "
                         f"{expected}")
    if "vocab" not in extra:
        raise ValueError(f"{path}: no vocabulary in the checkpoint's metadata; {expected}")
    vocab = vocab_cls.from_json(extra["vocab"])
    model = build(config, vocab)
    model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model.")})
    model.eval()
    return model, config, vocab, meta
