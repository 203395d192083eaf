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

import argparse
import json
import os
import time

import numpy as np
from . import (add_batch_size_arg, add_checkpoint_command, add_optimizer_args, add_train_command, add_run_args, add_threads_arg, fit, load_trained,
               lr_from_args, build_optimizer, plural, print_gradcheck_table, resume_trainer, start_run, summary)

SPLIT_FILES = {"train": "eng.train", "dev": "eng.testa", "test": "eng.testb"}


# ------------------------------------------------------------------------------------ arguments
def add_train_args(p):
    p.add_argument("--task", default="ner", choices=["person", "ner"],
                   help="person: PERSON vs. not, the seed's binary model; ner: the 4 entity types (default)")
    p.add_argument("--data-dir", required=True,
                   help="directory holding the CoNLL-2003 files eng.train, eng.testa (dev), eng.testb (test)")
    p.add_argument("--embeddings", default=None,
                   help="GloVe-format word vectors (.txt or .txt.gz), e.g. glove.6B.50d.txt.gz; default: random init")
    p.add_argument("--embed-dim", type=int, default=50, help="word-vector size without --embeddings (default 50)")
    p.add_argument("--dim", dest="embed_dim", type=int, help=argparse.SUPPRESS)
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
    add_optimizer_args(p, default="adam", schedule="none")
    p.add_argument("--min-count", type=int, default=2,
                   help="training words rarer than this and without a pre-trained vector map to <unk> (default 2)")
    add_run_args(p, "runs/window-TASK", "default 10 (5 with --batch-size 1)",
                 "windows per step (default 64); --batch-size 1 --optimizer sgd is the seed's SGD")


def config_from_args(args):
    head = args.head or ("binary" if args.task == "person" else "softmax")
    batch_size = args.batch_size if args.batch_size is not None else 64
    return {
        "model": "window", "task": args.task, "head": head,
        "scheme": "person" if args.task == "person" else args.scheme,
        "embeddings": os.path.abspath(args.embeddings) if args.embeddings else None,
        "dim": args.embed_dim, "window": args.window, "hidden": args.hidden, "caps_dim": args.caps_dim,
        "C": args.C, "dropout": args.dropout, "optimizer": args.optimizer, "lr": lr_from_args(args),
        "weight_decay": args.weight_decay, "schedule": args.schedule,
        "epochs": args.epochs if args.epochs is not None else (5 if batch_size == 1 else 10),
        "batch_size": batch_size, "min_count": args.min_count, "seed": args.seed,
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
        if not out[split]:     # model selection (dev) or the report (test) would run on nothing
            raise ValueError(f"{path}: no sentences in the file; the {split} split cannot be empty")
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


def load_model(path):
    """(model, config, vocab, scheme, meta) from a checkpoint written by ``chainrule train window``."""
    from ..data.embeddings import Vocab
    from ..models.window import TagScheme
    model, config, vocab, meta = load_trained(path, "window", ("window",), Vocab,
                                              lambda config, vocab: build_model(config, len(vocab)))
    return model, config, vocab, TagScheme(config["scheme"], config["types"]), meta


# ------------------------------------------------------------------------------------ train
def cmd_train_window(args):
    from .. import optim
    from ..data.embeddings import Vocab
    from ..models import window as W
    from ..train import TrainConfig, Trainer
    t_start = time.perf_counter()
    out = args.out or os.path.join("runs", f"window-{args.task}")
    splits = read_splits(args.data_dir)
    embeddings = None
    config, extra = start_run(args, out, config_from_args)
    if extra is not None:
        vocab = Vocab.from_json(extra["vocab"])
    else:
        if config["head"] == "binary" and config["task"] != "person":
            raise ValueError("train window: the binary head is for --task person (PERSON vs. not); use --head softmax")
        config["types"] = entity_types(splits["train"])
        vocab, embeddings, config["dim"] = build_vocab_and_vectors(config, splits)
        config["labels"] = W.TagScheme(config["scheme"], config["types"]).labels
    scheme = W.TagScheme(config["scheme"], config["types"])
    data = {k: W.WindowData(v, vocab, config["window"], scheme) for k, v in splits.items()}
    model = build_model(config, len(vocab), embeddings)
    opt = build_optimizer(config, model.parameters())
    sched = optim.make_scheduler(config.get("schedule", config.get("lr_decay", "none")), opt, config["epochs"])
    m = len(data["train"])
    tc = TrainConfig(epochs=config["epochs"], batch_size=config["batch_size"], seed=config["seed"],
                     out_dir=out, monitor="f1", mode="max", patience=args.patience, progress=args.progress,
                     extra={"config": config, "vocab": vocab.to_json(), "data_dir": os.path.abspath(args.data_dir)})
    trainer = Trainer(model, opt, W.make_loss_fn(config["C"], m), W.make_evaluate_fn(), tc, scheduler=sched)
    resume_trainer(trainer, args, out)
    n_in = (config["dim"] + config["caps_dim"]) * config["window"]
    print(f"chainrule train window: task {config['task']}, {config['head']} head over {len(scheme)} labels "
          f"({config['scheme']}); vocabulary {len(vocab)}, x = {config['window']} x ({config['dim']} + "
          f"{config['caps_dim']}) = {n_in}, H = {config['hidden']}; {config['optimizer']} lr {config['lr']}, "
          f"batch {config['batch_size']}, {plural(config['epochs'], 'epoch')}, C = {config['C']} (C/m = {config['C'] / m:.3g}); "
          f"windows train/dev/test = {len(data['train'])}/{len(data['dev'])}/{len(data['test'])}", flush=True)
    rc = fit(trainer, data["train"], data["dev"])
    return rc if rc is not None else report(out, data, trainer.train_seconds, time.perf_counter() - t_start,
                                            run_config=config, epochs_run=trainer.epoch)


def report(out, data, train_seconds, wall_seconds=None, run_config=None, epochs_run=None):
    """Evaluate best.safetensors on dev and test; print the per-type tables; write results.json."""
    from ..checkpoint import atomic_write_text
    from ..data.conll import format_report
    from ..models.window import evaluate_model
    model, config, vocab, scheme, meta = load_model(os.path.join(out, "best.safetensors"))
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
    model, config, vocab, scheme, meta = load_model(path)
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
    model, config, vocab, scheme, _ = load_model(args.checkpoint)
    tokens = " ".join(args.sentence).split()
    tags = tag_tokens(model, config, vocab, scheme, tokens)
    print(" ".join(f"{w}/{t}" for w, t in zip(tokens, tags)))
    for ty, s, e in entities(tags):
        print(f"  {ty:<5} {' '.join(tokens[s:e])}")
    return 0


# ------------------------------------------------------------------------------------ gradcheck
def cmd_gradcheck_window(args):
    from ..gradcheck import gradcheck_params
    from ..models.window import WindowClassifier, derivation_agreement, make_loss_fn
    rng = np.random.default_rng(args.seed)
    V, n, C, H, B = args.vocab, args.embed_dim, args.window, args.hidden, args.batch_size
    checks = []
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
        print(f"\n{title}")
        print_gradcheck_table(rep, dict((nm, p.shape) for nm, p in model.named_parameters()), width=16)
        checks += [(f"{head} {c.name}", c.ok) for c in rep.comparisons]
    # the seed's equations (chainrule.derivations.window) against the engine, seed model exactly
    model = WindowClassifier(V, n, window=C, hidden=H, head="binary", caps_dim=0, seed=args.seed).to(np.float64)
    y = rng.integers(0, 2, size=B)
    errs = derivation_agreement(model, words, y, args.C)
    print(f"\nseed 002's equations (chainrule.derivations.window.gradients, batch mean of eqs. 14/15/25/29/30/31,"
          f" m = batch = {B}) vs the engine, caps_dim=0 (the seed's model); rel(a, b) = max|a-b| / "
          f"max(1e-8, max|a| + max|b|):")
    print(f"{'gradient':<10}{'equation':<18}{'rel error':>14}  ok (<= 1e-7)")
    eqs = {"J": "(1)", "U": "(31)", "b2": "(15)", "W": "(30)", "b1": "(25)", "L": "(29)->cols of L"}
    for name, r in errs.items():
        good = r <= 1e-7
        checks.append((f"seed 002 {name}", good))
        print(f"{name:<10}{eqs[name]:<18}{r:>14.3e}  {'yes' if good else 'NO'}")
    return summary("gradcheck window", checks)


# ------------------------------------------------------------------------------------ registration
def register(sub, train_sub, gradcheck_sub):
    """Add ``train window``, ``tag`` and ``gradcheck window``.

    Every command module registers itself with this same sequence of calls (the shared helpers of
    :mod:`chainrule.commands`): the likeness between the ``register`` functions is by design."""
    add_train_command(
        train_sub, "window", "window classifier (seed 002) as a named-entity tagger on CoNLL-2003",
        "Train the window classifier of seed 002 on CoNLL-2003-format files: word vectors (optionally GloVe) "
        "with row-sparse updates, capitalisation features, a tanh hidden layer and a binary (--task person) or "
        "softmax (--task ner) output. Prints entity-level P/R/F1 per type (conlleval) for dev (eng.testa) and "
        "test (eng.testb).", add_train_args, cmd_train_window)
    add_checkpoint_command(
        sub, "tag", "tag a sentence with a trained window NER model",
        "Tag the tokens of a sentence (split on whitespace) with a checkpoint written by 'chainrule train "
        "window'; prints token/TAG (IOB2) and the entities.",
        "sentence", 'the sentence, e.g. "Alice Moreau visited Lyon ."', cmd_tag)

    g = gradcheck_sub.add_parser("window", help="the window classifier (both heads) and seed 002's equations",
                                 description="Finite-difference check of every parameter of small float64 "
                                 "window classifiers, and agreement of the engine with the seed's hand-derived "
                                 "gradients (chainrule.derivations.window) to 1e-7.")
    g.add_argument("--vocab", type=int, default=12)
    g.add_argument("--embed-dim", type=int, default=4)
    g.add_argument("--dim", dest="embed_dim", type=int, help=argparse.SUPPRESS)
    g.add_argument("--window", type=int, default=3)
    g.add_argument("--hidden", type=int, default=6)
    g.add_argument("--caps-dim", type=int, default=3)
    add_batch_size_arg(g, 5, "windows in the random batch (default 5)")
    g.add_argument("--C", dest="C", type=float, default=0.5)
    g.add_argument("--m", type=int, default=7, help="the m of C/(2m) in the model check")
    g.add_argument("--seed", type=int, default=0)
    add_threads_arg(g)
    g.set_defaults(func=cmd_gradcheck_window)

