"""``chainrule train window``, ``chainrule tag`` and ``chainrule gradcheck window``.

The window classifier of seed 002 (:mod:`chainrule.models.window`) as a named-entity tagger on
CoNLL-2003-format files that the user provides (``--data-dir`` holding ``eng.train``,
``eng.testa``, ``eng.testb``; the project ships no CoNLL text), optionally with GloVe vectors
(``--embeddings glove.6B.50d.txt.gz``).

Checkpoints (safetensors, no pickle) hold the model's arrays; the model configuration, the tag
labels and the vocabulary (as JSON) are in the checkpoint's metadata (``extra``), so
``chainrule tag CHECKPOINT "A sentence ."`` needs nothing else.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np
from . import add_run_args, positive_float, positive_int, load_trained

OPTIMIZERS = ("sgd", "adam", "adagrad")
SPLIT_FILES = {"train": "eng.train", "dev": "eng.testa", "test": "eng.testb"}


def default_lr(optimizer):
    return {"sgd": 0.01, "adam": 1e-3, "adagrad": 0.05}[optimizer]


# ------------------------------------------------------------------------------------ arguments
def add_train_args(p):
    p.add_argument("--task", default="ner", choices=["person", "ner"],
                   help="person: PERSON vs. not, the seed's binary model; ner: the 4 entity types (default)")
    p.add_argument("--data-dir", required=True,
                   help="directory holding the CoNLL-2003 files eng.train, eng.testa (dev), eng.testb (test)")
    p.add_argument("--embeddings", default=None,
                   help="GloVe-format word vectors (.txt or .txt.gz), e.g. glove.6B.50d.txt.gz; default: random init")
    p.add_argument("--dim", type=int, default=50, help="word-vector size without --embeddings (default 50)")
    p.add_argument("--window", type=int, default=3, choices=[1, 3, 5, 7, 9], help="window size C (default 3)")
    p.add_argument("--hidden", type=int, default=100, help="hidden tanh units H (default 100)")
    p.add_argument("--caps-dim", type=int, default=5,
                   help="capitalisation-feature embedding size per word (0: none, the seed's exact input; default 5)")
    p.add_argument("--head", default=None, choices=["binary", "softmax"],
                   help="output layer: binary sigmoid (the seed; default for --task person) or softmax (default for ner)")
    p.add_argument("--scheme", default="iobes", choices=["types", "iobes"],
                   help="ner labels: 'types' = O/PER/ORG/LOC/MISC (CS224d), re-chunked runs; 'iobes' = "
                        "B-/I-/E-/S- per type, Viterbi-decoded to valid entities (default)")
    p.add_argument("--C", dest="C", type=float, default=1.0,
                   help="regularisation constant of the seed: adds C/(2m)(‖W‖²+‖U‖²), m = training windows (default 1)")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout on the window input x while training (default 0)")
    p.add_argument("--optimizer", default="adam", choices=OPTIMIZERS)
    p.add_argument("--lr", type=positive_float, default=None, help="learning rate (default: sgd 0.01, adam 1e-3, adagrad 0.05)")
    p.add_argument("--lr-decay", default="none", choices=["none", "cosine"], help="learning-rate schedule per epoch")
    p.add_argument("--epochs", type=positive_int, default=None, help="default 10 (5 with --batch-size 1)")
    p.add_argument("--batch-size", type=positive_int, default=64,
                   help="windows per step (default 64); --batch-size 1 --optimizer sgd is the seed's SGD")
    p.add_argument("--min-count", type=int, default=2,
                   help="training words rarer than this and without a pre-trained vector map to <unk> (default 2)")
    p.add_argument("--patience", type=positive_int, default=None, help="early stopping after N epochs without dev F1 gain")
    add_run_args(p, "runs/window-TASK")


def config_from_args(args):
    head = args.head or ("binary" if args.task == "person" else "softmax")
    opt = args.optimizer
    return {
        "model": "window", "task": args.task, "head": head,
        "scheme": "person" if args.task == "person" else args.scheme,
        "embeddings": os.path.abspath(args.embeddings) if args.embeddings else None,
        "dim": args.dim, "window": args.window, "hidden": args.hidden, "caps_dim": args.caps_dim,
        "C": args.C, "dropout": args.dropout, "optimizer": opt,
        "lr": args.lr if args.lr is not None else default_lr(opt), "lr_decay": args.lr_decay,
        "epochs": args.epochs if args.epochs is not None else (5 if args.batch_size == 1 else 10),
        "batch_size": args.batch_size, "min_count": args.min_count, "seed": args.seed,
    }


# ------------------------------------------------------------------------------------ setup
def read_splits(data_dir):
    from ..data.conll import read_conll
    out = {}
    for split, name in SPLIT_FILES.items():
        path = os.path.join(data_dir, name)
        if not os.path.exists(path):
            raise FileNotFoundError(f"train window: {path} not found; --data-dir must hold "
                                    f"{', '.join(SPLIT_FILES.values())} (CoNLL-2003 format)")
        out[split] = read_conll(path)
    return out


def entity_types(sentences):
    from ..data.conll import split_tag
    types = set()
    for s in sentences:
        for t in s.tags:
            ty = split_tag(t)[1]
            if ty:
                types.add(ty)
    return sorted(types)


def build_vocab_and_vectors(config, splits, log=print):
    """(Vocab, initial embedding matrix or None, dim) for a new run."""
    from ..data.embeddings import build_embedding_matrix, load_glove
    from ..models.window import build_vocab
    train = splits["train"]
    others = splits["dev"] + splits["test"]
    if config["embeddings"]:
        t0 = time.perf_counter()
        candidates = {t for s in train + others for t in s.tokens}
        words, mat = load_glove(config["embeddings"], sorted(candidates))
        vocab = build_vocab(train, others, words, min_count=config["min_count"])
        emb, found = build_embedding_matrix(vocab, words, mat, seed=config["seed"])
        log(f"word vectors: {config['embeddings']}: {found}/{len(vocab) - 2} vocabulary words found "
            f"({time.perf_counter() - t0:.1f} s), dim {mat.shape[1]}")
        return vocab, emb, mat.shape[1]
    vocab = build_vocab(train, min_count=config["min_count"])
    return vocab, None, config["dim"]


def build_model(config, vocab_size, embeddings=None):
    from ..models.window import WindowClassifier
    return WindowClassifier(vocab_size, config["dim"], window=config["window"], hidden=config["hidden"],
                            n_tags=len(config["labels"]), head=config["head"], caps_dim=config["caps_dim"],
                            embeddings=embeddings, seed=config["seed"], dropout=config["dropout"])


def make_optimizer(config, params):
    from .. import optim
    name, lr = config["optimizer"], config["lr"]
    if name == "sgd":
        return optim.SGD(params, lr=lr)
    if name == "adam":
        return optim.Adam(params, lr=lr)
    return optim.AdaGrad(params, lr=lr, eps=1e-8)  # eps pinned: recorded results predate the 1e-10 default


def load_tagger(path):
    """(model, config, vocab, scheme, meta) from a checkpoint written by ``chainrule train window``."""
    from ..data.embeddings import Vocab
    from ..models.window import TagScheme
    model, config, vocab, meta = load_trained(path, "window", ("window",), Vocab,
                                              lambda config, vocab: build_model(config, len(vocab)))
    return model, config, vocab, TagScheme(config["scheme"], config["types"]), meta


# ------------------------------------------------------------------------------------ train
def cmd_train_window(args):
    from ..distributed import is_main
    from ..data.embeddings import Vocab
    from ..models import window as W
    from ..train import TrainConfig, Trainer
    from .rundir import begin_run, check_space
    t_start = time.perf_counter()
    out = args.out or os.path.join("runs", f"window-{args.task}")
    last = os.path.join(out, "last.safetensors")
    if not args.resume and config_from_args(args)["head"] == "binary" and args.task != "person":
        raise ValueError("train window: the binary head is for --task person (PERSON vs. not); use --head softmax")
    config, meta = begin_run(args, out, "window", ("window",), lambda: config_from_args(args),
                             lambda c: "cosine learning-rate decay" if c.get("lr_decay") == "cosine" else None)
    splits = read_splits(args.data_dir)
    embeddings = None
    if meta is not None:
        vocab = Vocab.from_json(meta["extra"]["vocab"])
    else:
        config["types"] = entity_types(splits["train"])
        vocab, embeddings, config["dim"] = build_vocab_and_vectors(config, splits)
        config["labels"] = W.TagScheme(config["scheme"], config["types"]).labels
    scheme = W.TagScheme(config["scheme"], config["types"])
    data = {k: W.WindowData(v, vocab, config["window"], scheme) for k, v in splits.items()}
    model = build_model(config, len(vocab), embeddings)
    opt = make_optimizer(config, model.parameters())
    sched = None
    if config.get("lr_decay") == "cosine":
        from .. import optim
        sched = optim.CosineLR(opt, T_max=config["epochs"])
    m = len(data["train"])
    tc = TrainConfig(epochs=config["epochs"], batch_size=config["batch_size"], seed=config["seed"],
                     out_dir=out, monitor="f1", mode="max", patience=args.patience, progress=args.progress,
                     extra={"config": config, "vocab": vocab.to_json(), "data_dir": os.path.abspath(args.data_dir)})
    trainer = Trainer(model, opt, W.make_loss_fn(config["C"], m), W.make_evaluate_fn(), tc, scheduler=sched)
    check_space(out, model)
    if meta is not None:
        trainer.load(last)
        trainer.config.epochs = config["epochs"]
        print(f"resuming {last}: epoch {trainer.epoch + 1}, batch {trainer.batch}")
    n_in = (config["dim"] + config["caps_dim"]) * config["window"]
    print(f"chainrule train window: task {config['task']}, {config['head']} head over {len(scheme)} labels "
          f"({config['scheme']}); vocabulary {len(vocab)}, x = {config['window']} x ({config['dim']} + "
          f"{config['caps_dim']}) = {n_in}, H = {config['hidden']}; {config['optimizer']} lr {config['lr']}, "
          f"batch {config['batch_size']}, {config['epochs']} epochs, C = {config['C']} (C/m = {config['C'] / m:.3g}); "
          f"windows train/dev/test = {len(data['train'])}/{len(data['dev'])}/{len(data['test'])}", flush=True)
    try:
        trainer.fit(data["train"], data["dev"])
    except KeyboardInterrupt:
        return 130
    if not is_main():          # data-parallel: rank 0 reports and writes results
        return 0
    return report(out, data, trainer.train_seconds, time.perf_counter() - t_start, run_config=config,
                  epochs_run=trainer.epoch)


def report(out, data, train_seconds, wall_seconds=None, run_config=None, epochs_run=None):
    """Evaluate best.safetensors on dev and test; print the per-type tables; write results.json."""
    from ..checkpoint import atomic_write_text
    from ..data.conll import format_report
    from ..models.window import evaluate_model
    model, config, vocab, scheme, meta = load_tagger(os.path.join(out, "best.safetensors"))
    res = {"config": dict(run_config or config), "best_epoch": meta["best_epoch"], "epochs_run": epochs_run,
           "train_seconds": train_seconds}
    if wall_seconds is not None:
        res["wall_seconds"] = wall_seconds
    print(f"\nbest epoch {meta['best_epoch']} (by dev entity F1); training time {train_seconds:.1f} s"
          + (f", wall time {wall_seconds:.1f} s" if wall_seconds is not None else ""))
    for split, name in (("dev", "eng.testa"), ("test", "eng.testb")):
        rep, loss = evaluate_model(model, data[split])
        print(f"\n{split} ({name}), task {config['task']}:")
        print(format_report(rep))
        res[split] = {**rep.to_dict(), "loss": loss}
    atomic_write_text(os.path.join(out, "results.json"), json.dumps(res, indent=2) + "\n")
    print(f"\nwrote {out}/best.safetensors, last.safetensors, metrics.jsonl, curves.png, results.json")
    return 0


def evaluate_checkpoint(path, splits=("dev", "test"), data_dir=None):
    """``chainrule evaluate`` of a window-tagger checkpoint: entity P/R/F1 on CoNLL splits (the data
    directory given, else the one the run was trained on)."""
    from ..data.conll import format_report
    from ..models.window import WindowData, evaluate_model
    model, config, vocab, scheme, meta = load_tagger(path)
    data_dir = data_dir or (meta.get("extra") or {}).get("data_dir")
    if not data_dir:
        raise ValueError(f"evaluate: {path} does not record its CoNLL directory; give --data-dir")
    conll = read_splits(data_dir)
    print(f"{path}: window tagger, task {config['task']}, epoch {meta['epoch']} (best epoch {meta.get('best_epoch')})")
    names = {"train": "eng.train", "dev": "eng.testa", "test": "eng.testb"}
    for split in splits:
        rep, loss = evaluate_model(model, WindowData(conll[split], vocab, config["window"], scheme))
        print(f"\n{split} ({names[split]}), task {config['task']}:")
        print(format_report(rep))
    return 0


# ------------------------------------------------------------------------------------ tag
def tag_tokens(model, config, vocab, scheme, tokens):
    """IOB2 tags for one tokenised sentence."""
    from ..data.conll import Sentence, iob1_to_iob2
    from ..models.window import WindowData, predict_tags
    if not tokens:
        return []
    data = WindowData([Sentence(list(tokens), None, None, ["O"] * len(tokens))], vocab, config["window"], scheme)
    return iob1_to_iob2(predict_tags(model, data)[0])


def cmd_tag(args):
    from ..data.conll import entities
    model, config, vocab, scheme, _ = load_tagger(args.checkpoint)
    tokens = " ".join(args.sentence).split()
    tags = tag_tokens(model, config, vocab, scheme, tokens)
    print(" ".join(f"{w}/{t}" for w, t in zip(tokens, tags)))
    for ty, s, e in entities(tags):
        print(f"  {ty:<5} {' '.join(tokens[s:e])}")
    return 0


# ------------------------------------------------------------------------------------ gradcheck
def cmd_gradcheck_window(args):
    from ..gradcheck import gradcheck_params
    from ..models.window import WindowClassifier, make_loss_fn
    rng = np.random.default_rng(args.seed)
    V, n, C, H, B = args.vocab, args.dim, args.window, args.hidden, args.batch
    ok = True
    words = rng.integers(0, V, size=(B, C))
    words[0, 1] = words[0, 0]                  # a word twice in one window: its rows must add up
    caps = rng.integers(0, 6, size=(B, C))
    cases = [("binary head, caps features (PERSON task)", "binary", args.caps_dim, 2),
             ("softmax head, caps features (NER task)", "softmax", args.caps_dim, 5)]
    print(f"gradcheck window: V={V}, n={n}, window C={C}, H={H}, batch {B}, penalty C/(2m)(|W|^2+|U|^2) "
          f"with C={args.C}, m={args.m}; float64, central differences eps=1e-6")
    for title, head, kdim, K in cases:
        model = WindowClassifier(V, n, window=C, hidden=H, n_tags=K, head=head, caps_dim=kdim,
                                 seed=args.seed).to(np.float64)
        y = rng.integers(0, K if head == "softmax" else 2, size=B)
        lf = make_loss_fn(args.C, args.m)
        rep = gradcheck_params(lambda: lf(model, (words, caps, y))[0], model.named_parameters())
        shapes = dict((nm, p.shape) for nm, p in model.named_parameters())
        print(f"\n{title}")
        print(f"{'parameter':<16}{'shape':<12}{'max abs err':>14}{'max rel err':>14}  ok")
        for c in rep.comparisons:
            print(f"{c.name:<16}{str(shapes.get(c.name, '')):<12}{c.max_abs:>14.3e}{c.max_rel:>14.3e}  "
                  f"{'yes' if c.ok else 'NO'}")
        ok &= rep.ok
    # the seed's equations (chainrule.derivations.window) against the engine, seed model exactly
    model = WindowClassifier(V, n, window=C, hidden=H, head="binary", caps_dim=0, seed=args.seed).to(np.float64)
    y = rng.integers(0, 2, size=B)
    errs = derivation_agreement(model, words, y, args.C)
    print(f"\nseed 002's equations (chainrule.derivations.window.gradients, batch mean of eqs. 14/15/25/29/30/31,"
          f" m = batch = {B}) vs the engine, caps_dim=0 (the seed's model):")
    print(f"{'gradient':<10}{'equation':<14}{'max abs diff':>14}{'max rel diff':>14}  ok (<= 1e-7)")
    eqs = {"J": "(1)", "U": "(31)", "b2": "(15)", "W": "(30)", "b1": "(25)", "L": "(29)->cols of L"}
    for name, (a, r) in errs.items():
        good = r <= 1e-7
        ok &= good
        print(f"{name:<10}{eqs[name]:<14}{a:>14.3e}{r:>14.3e}  {'yes' if good else 'NO'}")
    print("\nall agree" if ok else "\nMISMATCH")
    return 0 if ok else 1


def derivation_agreement(model, words, y, C):
    """Max abs and relative differences between the engine's gradients of the seed's model and the
    hand-derived ones of :mod:`chainrule.derivations.window` (same parameters, same batch).

    ``model`` must be a float64 binary-head model without capitalisation features.  The batch
    cost is eq. (1) with ``m`` = batch size.  Returns ``{name: (max_abs, max_rel)}`` for
    ``J, U, b2, W, b1, L``.
    """
    from ..derivations import window as D
    from ..models.window import make_loss_fn
    B = words.shape[0]
    params = {"L": model.emb.weight.data.T.copy(), "W": model.hidden.weight.data.T.copy(),
              "b1": model.hidden.bias.data.copy(), "U": model.out.weight.data[:, 0].copy(),
              "b2": float(model.out.bias.data[0])}
    hand = D.gradients(params, words, y.astype(np.float64), C=C)
    J_hand = D.loss(params, words, y.astype(np.float64), C=C)
    for p in model.parameters():
        p.grad = None
    loss, _ = make_loss_fn(C, B)(model, (words, None, y))
    loss.backward()
    eng = {"U": np.asarray(model.out.weight.grad)[:, 0], "b2": float(np.asarray(model.out.bias.grad)[0]),
           "W": np.asarray(model.hidden.weight.grad).T, "b1": np.asarray(model.hidden.bias.grad),
           "L": np.asarray(model.emb.weight.grad).T}
    out = {"J": _diff(J_hand, loss.item())}
    for k in ("U", "b2", "W", "b1", "L"):
        out[k] = _diff(hand[k], eng[k])
    for p in model.parameters():
        p.grad = None
    return out


def _diff(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    d = np.abs(a - b)
    return float(d.max()), float((d / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-12)).max())


# ------------------------------------------------------------------------------------ registration
def register(sub, train_sub, gradcheck_sub):
    """Add ``train window``, ``tag`` and ``gradcheck window`` to the ``chainrule`` parser.

    ``sub``: the top-level subparsers; ``train_sub``/``gradcheck_sub``: those of ``train`` and
    ``gradcheck``.
    """
    p = train_sub.add_parser(
        "window", help="window classifier (seed 002) as a named-entity tagger on CoNLL-2003",
        description="Train the window classifier of seed 002 on CoNLL-2003-format files: word vectors "
        "(optionally GloVe) with row-sparse updates, capitalisation features, a tanh hidden layer and a "
        "binary (--task person) or softmax (--task ner) output. Prints entity-level P/R/F1 per type "
        "(conlleval) for dev (eng.testa) and test (eng.testb).")
    add_train_args(p)
    p.set_defaults(func=cmd_train_window)

    t = sub.add_parser("tag", help="tag a sentence with a trained window NER model",
                       description="Tag the tokens of a sentence (split on whitespace) with a checkpoint "
                       "written by 'chainrule train window'; prints token/TAG (IOB2) and the entities.")
    t.add_argument("checkpoint")
    t.add_argument("sentence", nargs="+", help='the sentence, e.g. "Alice Moreau visited Lyon ."')
    t.set_defaults(func=cmd_tag)

    g = gradcheck_sub.add_parser("window", help="the window classifier (both heads) and seed 002's equations",
                                 description="Finite-difference check of every parameter of small float64 "
                                 "window classifiers, and agreement of the engine with the seed's hand-derived "
                                 "gradients (chainrule.derivations.window) to 1e-7.")
    g.add_argument("--vocab", type=int, default=12)
    g.add_argument("--dim", type=int, default=4)
    g.add_argument("--window", type=int, default=3)
    g.add_argument("--hidden", type=int, default=6)
    g.add_argument("--caps-dim", type=int, default=3)
    g.add_argument("--batch", type=int, default=5)
    g.add_argument("--C", dest="C", type=float, default=0.5)
    g.add_argument("--m", type=int, default=7, help="the m of C/(2m) in the model check")
    g.add_argument("--seed", type=int, default=0)
    g.set_defaults(func=cmd_gradcheck_window)


def main(argv=None):
    """``python -m chainrule.commands.window train window ...`` (same as ``chainrule train window``,
    usable before the subcommands are registered in ``chainrule.cli``)."""
    import argparse
    import sys
    ap = argparse.ArgumentParser(prog="python -m chainrule.commands.window")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    tr = sub.add_parser("train", help="train a model").add_subparsers(dest="model", required=True, metavar="MODEL")
    gc = sub.add_parser("gradcheck", help="gradient-check a model").add_subparsers(dest="model", required=True,
                                                                                 metavar="MODEL")
    register(sub, tr, gc)
    args = ap.parse_args(argv)
    args._argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args) or 0
    except (FileNotFoundError, ValueError) as e:
        if os.environ.get("CHAINRULE_DEBUG"):
            raise
        print(f"chainrule {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":      # pragma: no cover
    raise SystemExit(main())
