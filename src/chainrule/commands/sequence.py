"""``chainrule train sequence`` and ``chainrule gradcheck lstm|gru|attention``.

``train sequence``: a (Bi)LSTM/GRU sentence classifier (:mod:`chainrule.models.sequence`) on the
Stanford Sentiment Treebank shipped with the package: word vectors (random, or GloVe with
``--embeddings``) → recurrent layer → last state or attention pooling → softmax over the 5 classes
(or 2 with ``--task binary``), trained on the sentences' root labels (``--phrases`` adds every
labelled phrase of the training trees), minibatches bucketed by length, model selection on dev
fine-grained root accuracy; then dev and test accuracy (fine-grained and binary, at the roots) beside
Tai et al. (2015)'s table.  Same outputs as the other training commands: ``best.safetensors``,
``last.safetensors``, ``metrics.jsonl``, ``curves.png``, ``results.json`` in ``--out``; ``--resume``
continues bit for bit.  (The Trainer's ``examples_per_s`` counts minibatches here: one bucket is one
Trainer example.)

``gradcheck lstm|gru|attention``: float64 central differences against the engine for every parameter
of a small bidirectional two-layer LSTM/GRU over a padded batch of variable lengths with an initial
state (and the input), or of multi-head attention with a key padding mask and the causal mask plus
attention pooling; prints the per-parameter max relative error, and checks that padded positions get
exactly zero gradient.

Registered in the ``chainrule`` parser by ``register(sub, train_sub, gradcheck_sub)``, as every
command module (:mod:`chainrule.commands`).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from . import (add_batch_size_arg, add_optimizer_args, add_train_command, add_run_args, add_threads_arg, fit, load_trained,
               lr_from_args, build_optimizer, plural, print_gradcheck_table, resume_trainer, start_run, summary)

GLOVE_HINT = "glove.6B.50d.txt.gz (https://nlp.stanford.edu/projects/glove/)"


# ------------------------------------------------------------------------------------ arguments
def add_train_args(p):
    p.add_argument("--cell", default="lstm", choices=["lstm", "gru"])
    p.add_argument("--bidirectional", action="store_true", help="run a second recurrence right to left")
    p.add_argument("--pool", default="last", choices=["last", "attention"],
                   help="sentence vector: the final state(s) (default) or attention pooling over the steps")
    p.add_argument("--hidden", type=int, default=168, help="hidden units per direction (default 168, Tai et al.'s LSTM)")
    p.add_argument("--layers", type=int, default=1, help="stacked recurrent layers (default 1)")
    p.add_argument("--embeddings", default=None, metavar="PATH",
                   help=f"GloVe text file (.txt or .gz) to initialise the word vectors, e.g. {GLOVE_HINT}")
    p.add_argument("--embed-dim", type=int, default=50, help="word-vector size without --embeddings (default 50)")
    p.add_argument("--freeze-embeddings", action="store_true", help="do not train the word vectors")
    p.add_argument("--phrases", action="store_true",
                   help="also train on every labelled phrase of the training trees (as the literature does)")
    p.add_argument("--task", default="fine", choices=["fine", "binary"],
                   help="fine: 5 classes (binary accuracy from the same model); binary: neutral dropped, 2 classes")
    add_optimizer_args(p, default="adam", schedule="none")
    p.add_argument("--dropout", type=float, default=0.5, help="dropout on the sentence vector (default 0.5)")
    p.add_argument("--embed-dropout", type=float, default=0.2, help="dropout on the word vectors (default 0.2)")
    p.add_argument("--attention-size", type=int, default=None, help="hidden units of the attention scorer (default: linear)")
    p.add_argument("--clip", type=float, default=5.0, help="clip the global gradient norm (default 5; 0 = off)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--limit", type=int, default=None, help="train on the first N training trees only (smoke tests)")
    p.add_argument("--eval-limit", type=int, default=None, help=argparse.SUPPRESS)
    add_run_args(p, "runs/sequence-CELL-sst", "training epochs (default 12)", "sentences per minibatch (default 25)")


def config_from_args(args):
    return {
        "model": "sequence", "cell": args.cell, "bidirectional": args.bidirectional, "pool": args.pool,
        "hidden": args.hidden, "layers": args.layers, "embeddings": args.embeddings, "embed_dim": args.embed_dim,
        "freeze_embeddings": args.freeze_embeddings, "phrases": args.phrases, "task": args.task,
        "optimizer": args.optimizer, "lr": lr_from_args(args), "weight_decay": args.weight_decay,
        "schedule": args.schedule, "dropout": args.dropout, "embed_dropout": args.embed_dropout,
        "attention_size": args.attention_size, "clip": args.clip,
        "epochs": args.epochs if args.epochs is not None else 12,
        "batch_size": args.batch_size if args.batch_size is not None else 25,
        "dtype": args.dtype, "limit": args.limit, "eval_limit": getattr(args, "eval_limit", None), "seed": args.seed,
    }


def _dtype(config):
    return np.float64 if config.get("dtype") == "float64" else np.float32


def describe(config):
    name = ("2-layer " if config["layers"] == 2 else f"{config['layers']}-layer " if config["layers"] > 2 else "")
    name += ("Bidirectional " if config["bidirectional"] else "") + config["cell"].upper()
    if config["pool"] == "attention":
        name += " + attention pooling"
    return name


def build_model(config, vocab, embeddings=None):
    from ..models.sequence import SequenceClassifier
    return SequenceClassifier(
        len(vocab), embed_dim=config["embed_dim"], hidden_size=config["hidden"], cell=config["cell"],
        bidirectional=config["bidirectional"], num_layers=config["layers"], pool=config["pool"],
        num_classes=2 if config["task"] == "binary" else 5, dropout=config["dropout"],
        embed_dropout=config["embed_dropout"], attention_size=config["attention_size"], embeddings=embeddings,
        freeze_embeddings=config["freeze_embeddings"], seed=config["seed"], dtype=_dtype(config))


def load_model(path):
    """(model, config, vocab, meta) from a checkpoint written by ``chainrule train sequence``."""
    from ..data.embeddings import Vocab
    return load_trained(path, "sequence", ("sequence",), Vocab, build_model)


def _datasets(config, vocab):
    from ..data import sst
    from ..models.sequence import SequenceDataset, make_examples
    train_trees = sst.load("train")
    if config.get("limit"):
        train_trees = train_trees[:config["limit"]]
    data = {"train": SequenceDataset(*make_examples(train_trees, vocab, phrases=config["phrases"], task=config["task"]))}
    for split in ("dev", "test"):
        trees = sst.load(split)
        if config.get("eval_limit"):
            trees = trees[:config["eval_limit"]]
        data[split] = SequenceDataset(*make_examples(trees, vocab, phrases=False, task=config["task"]))
    return data


def _vocab_and_embeddings(config):
    """Vocabulary (train words + dev/test words that have a GloVe vector) and the initial table."""
    from ..data import sst
    from ..data.embeddings import build_embedding_matrix, load_glove
    from ..models.sequence import build_vocab
    train_trees = sst.load("train")
    if config.get("limit"):
        train_trees = train_trees[:config["limit"]]
    others = sst.load("dev") + sst.load("test")
    if not config["embeddings"]:
        return build_vocab(train_trees), None, None
    cand = {w for t in train_trees + others for w in t.words()}
    gwords, gmat = load_glove(config["embeddings"], vocab=sorted(cand))
    vocab = build_vocab(train_trees, others, glove_words=gwords)
    table, found = build_embedding_matrix(vocab, gwords, gmat, seed=config["seed"])
    config["embed_dim"] = int(table.shape[1])
    return vocab, table, found


# ------------------------------------------------------------------------------------ train
def cmd_train_sequence(args):
    from .. import optim
    from ..data.embeddings import Vocab
    from ..models import sequence as S
    from ..train import TrainConfig, Trainer
    wall0 = time.perf_counter()
    out = args.out or os.path.join("runs", f"sequence-{args.cell}-sst")
    table = found = None
    config, extra = start_run(args, out, config_from_args)
    if extra is not None:
        vocab = Vocab.from_json(extra["vocab"])
    else:
        vocab, table, found = _vocab_and_embeddings(config)
    model = build_model(config, vocab, table)
    data = _datasets(config, vocab)
    buckets = S.BucketedBatches(data["train"], config["batch_size"], seed=config["seed"])
    opt = build_optimizer(config, [p for p in model.parameters() if p.requires_grad])
    tc = TrainConfig(epochs=config["epochs"], batch_size=1, seed=config["seed"], out_dir=out, monitor="acc", mode="max",
                     patience=args.patience, clip_norm=config["clip"] or None, progress=args.progress,
                     extra={"config": config, "vocab": vocab.to_json()})
    trainer = Trainer(model, opt, S.make_loss_fn(), S.evaluate_sharded, tc,
                      scheduler=optim.make_scheduler(config.get("schedule", "none"), opt, config["epochs"]),
                      on_epoch_start=buckets.reshuffle)
    resume_trainer(trainer, args, out)
    if args.resume:
        buckets.reshuffle(trainer.epoch)
    n_params = sum(int(np.prod(p.shape)) for p in model.parameters())
    emb = (f"GloVe {config['embeddings']} ({found:,} of {len(vocab) - 2:,} words found)" if found is not None
           else ("GloVe (from checkpoint)" if config["embeddings"] else "random"))
    print(f"chainrule train sequence: {describe(config)} H={config['hidden']}, pool {config['pool']}, "
          f"{config['task']} task, {n_params:,} parameters, vocabulary {len(vocab):,}, word vectors {emb}"
          f"{' (frozen)' if config['freeze_embeddings'] else ''}; {config['optimizer']} lr {config['lr']}, "
          f"batch {config['batch_size']} (bucketed by length), dropout {config['dropout']}/{config['embed_dropout']} "
          f"(sentence/words), clip {config['clip']}, {plural(config['epochs'], 'epoch')}; train examples "
          f"{len(data['train']):,} ({'sentences + phrases' if config['phrases'] else 'sentences'}) in "
          f"{len(buckets)} batches, dev/test sentences {len(data['dev'])}/{len(data['test'])}", flush=True)
    rc = fit(trainer, buckets, data["dev"])
    return rc if rc is not None else report(out, data, trainer.train_seconds, time.perf_counter() - wall0,
                                            run_config=config, epochs_run=trainer.epoch)


def report(out, data, train_seconds, wall_seconds=None, run_config=None, epochs_run=None):
    """Evaluate ``out/best.safetensors`` on dev and test, print the table beside Tai et al.'s, write
    results.json."""
    from ..checkpoint import atomic_write_text
    from ..models import sequence as S
    model, config, vocab, meta = load_model(os.path.join(out, "best.safetensors"))
    rows = {s: S.evaluate(model, data[s]) for s in ("dev", "test")}
    print(f"\nbest epoch {meta['best_epoch']} (by dev root accuracy); training time {train_seconds:.1f} s"
          + (f", wall time {wall_seconds:.1f} s" if wall_seconds is not None else ""))
    print(format_table(rows, config))
    result = {"config": run_config or config, "model": describe(config), "best_epoch": meta["best_epoch"],
              "epochs_run": epochs_run,
              "train_seconds": train_seconds, "wall_seconds": wall_seconds, "paper_test_tai2015": S.PAPER_TAI2015,
              **{f"{s}_{k}": v for s, m in rows.items() for k, v in m.items()}}
    atomic_write_text(os.path.join(out, "results.json"), json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}/best.safetensors, last.safetensors, metrics.jsonl, curves.png, results.json")
    return 0


def evaluate_checkpoint(path, splits=("dev", "test")):
    """``chainrule evaluate`` of a sequence-classifier checkpoint: root accuracies on SST splits."""
    from ..models import sequence as S
    model, config, vocab, meta = load_model(path)
    data = _datasets(dict(config, limit=1), vocab)
    rows = {s: S.evaluate(model, data[s]) for s in splits}
    print(f"{path}: {describe(config)} H={config['hidden']}, epoch {meta['epoch']} (best epoch {meta.get('best_epoch')})")
    print(format_table(rows, config))
    return 0


def sentiment(path, text):
    """``chainrule sentiment`` with a sequence-classifier checkpoint: the sentence's class
    probabilities (a PTB tree's leaves are read as its words; phrases are not scored -- the model
    reads whole sequences)."""
    from ..data.sst import LABEL_NAMES
    from ..data.trees import parse_tree
    from ..models import sequence as S
    from .rntn import tokenize
    model, config, vocab, meta = load_model(path)
    if text.startswith("("):
        words, note = parse_tree(text).words(), "input: a PTB tree, read as the sequence of its leaves"
    else:
        words = tokenize(text)
        note = f"input: a raw sentence, tokenised to {len(words)} tokens"
    if not words:
        raise ValueError("sentiment: no words in the text")
    probs = S.predict(model, S.SequenceDataset([vocab.indices(words)], [0]))[0]
    unknown = [w for w in words if w not in vocab]
    print(f"{path}: {describe(config)} H={config['hidden']}, task {config['task']}")
    print(note + (f"; unknown words: {' '.join(unknown)}" if unknown else ""))
    if len(probs) == 2:
        lab = int(probs.argmax())
        print(f"sentence sentiment: {'positive' if lab else 'negative'}, p = {probs[lab]:.2f}")
    else:
        lab = int(probs.argmax())
        print(f"sentence sentiment: {lab} ({LABEL_NAMES[lab]}), p = {probs[lab]:.2f}; "
              f"P(positive) = {probs[3] + probs[4]:.2f}, P(negative) = {probs[0] + probs[1]:.2f}")
    return 0


def format_table(rows, config):
    from ..models.sequence import PAPER_TAI2015
    lines = ["SST root-level accuracy (%): ours vs Tai et al. (2015), Table 2 (test)",
             f"{'':<34}{'fine-grained':>14}{'binary':>10}"]
    for split, m in rows.items():
        fine = f"{100 * m['fine']:>14.1f}" if "fine" in m else f"{'-':>14}"
        lines.append(f"{describe(config) + ' ' + split + ' (ours)':<34}{fine}{100 * m['binary']:>10.1f}")
    for name, v in PAPER_TAI2015.items():
        lines.append(f"{name + ' (paper)':<34}{v['fine']:>14.1f}{v['binary']:>10.1f}")
    if config["task"] == "fine":
        lines.append("(our binary column: the 5-class model on non-neutral sentences, positive iff "
                     "P(3)+P(4) > P(0)+P(1); the paper trains separate binary models)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ gradcheck
def _print_report(title, report, shapes):
    print(f"\n{title}")
    print_gradcheck_table(report, shapes, width=30, note=lambda c: "  (the gradient is 0 here: the relative error "
                          "compares rounding noise with rounding noise)" if c.ok and c.max_rel > 1e-3 else "")


def cmd_gradcheck_recurrent(args):
    from ..gradcheck import gradcheck_params
    from ..nn.recurrent import GRU, LSTM, lengths_to_mask
    from ..tensor import Tensor
    rng = np.random.default_rng(args.seed)
    N, T, D, H = args.batch_size, args.length, args.input, args.hidden
    lengths = np.round(np.linspace(T, 1, N)).astype(np.int64)        # e.g. [5, 3, 1]: full, padded, one token
    mask = lengths_to_mask(lengths, T)
    cls = LSTM if args.model == "lstm" else GRU
    rnn = cls(D, H, num_layers=args.layers, bidirectional=not args.unidirectional, rng=args.seed).to(np.float64)
    nd = rnn.num_directions
    x = Tensor(rng.standard_normal((N, T, D)), requires_grad=True, name="input x")
    h0 = Tensor(rng.standard_normal((args.layers * nd, N, H)) * 0.5, requires_grad=True, name="h0")
    c0 = Tensor(rng.standard_normal((args.layers * nd, N, H)) * 0.5, requires_grad=True, name="c0")
    r_out = rng.standard_normal((N, T, H * nd))
    r_h = rng.standard_normal((args.layers * nd, N, H))

    def loss_fn():
        state = (h0, c0) if args.model == "lstm" else h0
        out, st = rnn(x, lengths=lengths, state=state)
        h_n = st[0] if args.model == "lstm" else st
        loss = (out * r_out).sum() + (h_n * r_h).sum()
        if args.model == "lstm":
            loss = loss + (st[1] * r_h).sum()
        return loss

    def label(name):                      # cells.k.weight_ih -> layer0.forward.weight_ih
        _, k, rest = name.split(".", 2)
        layer, d = divmod(int(k), nd)
        return f"layer{layer}.{'backward' if d else 'forward'}.{rest}"
    named = [(label(n), p) for n, p in rnn.named_parameters()] + [("input x", x), ("h0", h0)] + \
        ([("c0", c0)] if args.model == "lstm" else [])
    report = gradcheck_params(loss_fn, named)
    shapes = {n: p.shape for n, p in named}
    print(f"gradcheck {args.model}: {args.layers} layer(s), {'bidirectional' if nd == 2 else 'one direction'}, "
          f"N={N}, T={T}, D={D}, H={H}, lengths {lengths.tolist()} (padded batch), initial state given, float64, "
          f"central differences eps=1e-6; loss = Σ r ⊙ outputs + Σ r' ⊙ final states")
    _print_report(args.model.upper(), report, shapes)
    # the padding checks: zero gradient, and no effect on the result
    for p in (x, h0, c0):
        p.grad = None
    loss = loss_fn()
    loss.backward()
    pad_grad = float(np.abs(x.grad[~mask]).max()) if (~mask).any() else 0.0
    xd = x.data.copy()
    x.data[~mask] = rng.standard_normal(int((~mask).sum() * D)).reshape(-1, D) * 100
    changed = abs(float(loss_fn().item()) - float(loss.item()))
    x.data[...] = xd
    print(f"\npadded positions: max |∂L/∂x| = {pad_grad:.1e} (must be 0); loss change when they are "
          f"overwritten with noise = {changed:.1e} (must be 0)")
    return summary(f"gradcheck {args.model}", [(c.name, c.ok) for c in report.comparisons] +
                   [("zero gradient at padding", pad_grad == 0.0), ("padding does not change the loss", changed == 0.0)])


def cmd_gradcheck_attention(args):
    from ..gradcheck import gradcheck_params
    from ..nn.attention import AttentionPooling, MultiHeadAttention
    from ..tensor import Tensor
    rng = np.random.default_rng(args.seed)
    N, T, E = args.batch_size, args.length, args.embed
    lengths = np.round(np.linspace(T, 1, N)).astype(np.int64)        # e.g. [5, 3, 1]: full, padded, one token
    pad = np.arange(T)[None, :] >= lengths[:, None]
    mha = MultiHeadAttention(E, args.heads, rng=args.seed).to(np.float64)
    pool = AttentionPooling(E, args.attention_size, rng=args.seed).to(np.float64)
    x = Tensor(rng.standard_normal((N, T, E)), requires_grad=True, name="input x")
    r = rng.standard_normal((N, T, E))
    rp = rng.standard_normal((N, E))

    def loss_fn():
        y = mha(x, key_padding_mask=pad, causal=True)
        return (y * r).sum() + (pool(y, lengths=lengths) * rp).sum()

    named = [(f"attn.{n}", p) for n, p in mha.named_parameters()] + \
            [(f"pool.{n}", p) for n, p in pool.named_parameters()] + [("input x", x)]
    report = gradcheck_params(loss_fn, named)
    print(f"gradcheck attention: MultiHeadAttention(E={E}, heads={args.heads}) self-attention with key padding mask "
          f"and causal mask, then AttentionPooling(attention_size={args.attention_size}); N={N}, T={T}, lengths "
          f"{lengths.tolist()}, float64, central differences eps=1e-6")
    _print_report("ATTENTION", report, {n: p.shape for n, p in named})
    # causal property: the output at t does not move when inputs after t change
    from ..autograd import no_grad
    with no_grad():
        y0 = mha(x, causal=True).data
        x2 = x.data.copy()
        t = T // 2
        x2[:, t + 1:] += rng.standard_normal(x2[:, t + 1:].shape)
        y1 = mha(Tensor(x2), causal=True).data
    causal_diff = float(np.abs(y0[:, :t + 1] - y1[:, :t + 1]).max())
    # padded keys: with every query's output read only at real steps (the pooling's mask), a padded
    # position must get zero gradient and must not change the result
    def pooled(xx):
        return (pool(mha(xx, key_padding_mask=pad, causal=True), lengths=lengths) * rp).sum()
    x.grad = None
    lp = pooled(x)
    lp.backward()
    pad_grad = float(np.abs(x.grad[pad]).max()) if pad.any() else 0.0
    x3 = x.data.copy()
    x3[pad] = rng.standard_normal((int(pad.sum()), E)) * 100
    with no_grad():
        pad_change = abs(float(pooled(Tensor(x3)).item()) - float(lp.item()))
    print(f"\npadded positions (key padding mask + pooling mask): max |∂L/∂x| = {pad_grad:.1e} (must be 0); "
          f"loss change when they are overwritten with noise = {pad_change:.1e} (must be 0)")
    print(f"\ncausal mask: max change of outputs at steps ≤ {t} when inputs after {t} change = {causal_diff:.1e} "
          f"(must be 0)")
    return summary("gradcheck attention", [(c.name, c.ok) for c in report.comparisons] + [
        ("zero gradient at padding", pad_grad == 0.0), ("padding does not change the loss", pad_change == 0.0),
        ("causal mask", causal_diff == 0.0)])


# ------------------------------------------------------------------------------------ registration
def register(sub, train_sub, gradcheck_sub):
    """Add ``train sequence`` and ``gradcheck lstm|gru|attention`` to the ``chainrule`` parser
    (``sub`` unused: the signature of every module of :mod:`chainrule.commands`)."""
    add_train_command(
        train_sub, "sequence", "(Bi)LSTM/GRU sentence classifier on the Stanford Sentiment Treebank",
        "Train a sequence model on SST sentences: word vectors (random or --embeddings GloVe) -> LSTM/GRU "
        "(--bidirectional, --layers) -> last state or attention pooling -> softmax over 5 classes; root labels "
        "(--phrases adds all labelled phrases). Prints dev/test fine-grained and binary root accuracy beside "
        "Tai et al. (2015).", add_train_args, cmd_train_sequence)

    for name, helptext in (("lstm", "LSTM layer (bidirectional, 2 layers, padded batch)"),
                           ("gru", "GRU layer (bidirectional, 2 layers, padded batch)")):
        g = gradcheck_sub.add_parser(name, help=helptext,
                                     description="Finite-difference check (float64) of every parameter, the input "
                                     "and the initial state of a small recurrent layer over a padded batch of "
                                     "variable lengths; checks that padded positions get zero gradient and do "
                                     "not change the result.")
        _add_gradcheck_shape_args(g)
        g.add_argument("--input", type=int, default=3)
        g.add_argument("--hidden", type=int, default=4)
        g.add_argument("--layers", type=int, default=2)
        g.add_argument("--unidirectional", action="store_true")
        g.set_defaults(func=cmd_gradcheck_recurrent, model=name)
    g = gradcheck_sub.add_parser("attention", help="multi-head attention (padding + causal masks) and attention pooling",
                                 description="Finite-difference check (float64) of MultiHeadAttention with a key "
                                 "padding mask and the causal mask followed by AttentionPooling, and the causal "
                                 "property (outputs at t independent of inputs after t).")
    _add_gradcheck_shape_args(g)
    g.add_argument("--embed", type=int, default=4)
    g.add_argument("--heads", type=int, default=2)
    g.add_argument("--attention-size", type=int, default=3)
    g.set_defaults(func=cmd_gradcheck_attention, model="attention")



def _add_gradcheck_shape_args(g):
    add_batch_size_arg(g, 3, "sequences in the padded batch (default 3)")
    g.add_argument("--length", type=int, default=5, help="longest sequence (default 5)")
    g.add_argument("--seed", type=int, default=0)
    add_threads_arg(g)
