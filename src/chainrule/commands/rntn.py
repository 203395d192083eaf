"""``chainrule train rntn``, ``chainrule sentiment`` and ``chainrule gradcheck rntn``.

The recursive neural tensor network of seed 000 (:mod:`chainrule.models.rntn`) on the Stanford
Sentiment Treebank shipped with the package (:mod:`chainrule.data.sst`), trained as Stanford
CoreNLP's sentiment trainer does (AdaGrad lr 0.01 with the history reset every epoch, minibatch
27, L2 0.001 on W and V and 0.0001 on Wₛ and the word vectors, the node errors of a batch summed
and divided by the batch size) and evaluated as the paper's Table 1 (fine-grained and binary
accuracy, over all nodes and at the roots).

Model selection: CoreNLP's trainer scores the dev set with ``exactNodeAccuracy`` (fine-grained,
all nodes); ``best.safetensors`` is the epoch with the best dev ``fine_all`` (``--monitor``
changes it, e.g. ``fine_root``).

Checkpoints hold the model's arrays; the configuration and the vocabulary are in the metadata
(``extra``), so ``chainrule sentiment CHECKPOINT "text"`` needs nothing else.

Registered in the ``chainrule`` parser by ``register(sub, train_sub, gradcheck_sub)``, as every
command module (:mod:`chainrule.commands`).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import time

import numpy as np
from . import (add_checkpoint_command, add_optimizer_args, add_train_command, add_run_args, add_threads_arg, fit, load_trained, lr_from_args, build_optimizer,
               plural, print_gradcheck_table, resume_trainer, start_run, summary)

METRICS = ("fine_all", "fine_root", "binary_all", "binary_root")
METRIC_TITLES = {"fine_all": "fine all", "fine_root": "fine root", "binary_all": "binary all",
                 "binary_root": "binary root"}


# ------------------------------------------------------------------------------------ arguments
def add_train_args(p):
    p.add_argument("--model", default="rntn", choices=["rntn", "rnn", "treelstm"],
                   help="rntn: tensor composition (default); rnn: the paper's plain recursive baseline; "
                   "treelstm: binary constituency Tree-LSTM (Tai et al. 2015)")
    p.add_argument("--embed-dim", type=int, default=25, help="word/node vector size d (default 25, as CoreNLP)")
    p.add_argument("--dim", dest="embed_dim", type=int, help=argparse.SUPPRESS)
    p.add_argument("--hidden", type=int, default=50, help="treelstm: memory size (default 50)")
    # AdaGrad as CoreNLP (lr 0.01, the table's default, with CoreNLP's eps 1e-3 -- see make_rntn_optimizer)
    add_optimizer_args(p, default="adagrad", schedule="none")
    p.add_argument("--reg-transform", type=float, default=1e-3, help="L2 on W and b (default 0.001)")
    p.add_argument("--reg-tensor", type=float, default=None,
                   help="L2 on the tensor V (default: the same as --reg-transform, as CoreNLP)")
    p.add_argument("--reg-classification", type=float, default=1e-4, help="L2 on Ws (default 0.0001)")
    p.add_argument("--reg-words", type=float, default=1e-4,
                   help="L2 on the word vectors used in each batch (default 0.0001)")
    p.add_argument("--lowercase", action="store_true",
                   help="fold word case (CoreNLP's default keeps case, as does this command)")
    p.add_argument("--no-leaf-tanh", dest="leaf_tanh", action="store_false", default=True,
                   help="use the word vector itself at a leaf (the paper) instead of tanh of it (CoreNLP)")
    p.add_argument("--no-adagrad-reset", dest="adagrad_reset", action="store_false", default=True,
                   help="keep the AdaGrad history across epochs (CoreNLP resets it every epoch)")
    p.add_argument("--monitor", default="fine_all", choices=list(METRICS),
                   help="dev metric for model selection (default fine_all, CoreNLP's exactNodeAccuracy)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--limit", type=int, default=None, help="train on the first N training trees only (smoke tests)")
    add_run_args(p, "runs/MODEL-sst", "training epochs (default 60)", "trees per minibatch (default 27, as CoreNLP)")


def config_from_args(args):
    return {
        "model": args.model, "dim": args.embed_dim, "hidden": args.hidden, "optimizer": args.optimizer,
        "num_classes": 5, "leaf_tanh": args.leaf_tanh,
        "epochs": args.epochs if args.epochs is not None else 60,
        "batch_size": args.batch_size if args.batch_size is not None else 27,
        "lr": lr_from_args(args), "adagrad_eps": 1e-3, "weight_decay": args.weight_decay, "schedule": args.schedule,
        "reg_transform": args.reg_transform, "reg_classification": args.reg_classification,
        "reg_words": args.reg_words, "reg_tensor": args.reg_tensor, "lowercase": args.lowercase, "monitor": args.monitor,
        "adagrad_reset": args.adagrad_reset,
        "dtype": args.dtype, "limit": args.limit, "seed": args.seed,
    }


def make_rntn_optimizer(config, model):
    """The run's optimizer (:func:`chainrule.commands.build_optimizer`); AdaGrad as CoreNLP:
    θ ← θ − lr g / (√(Σg²) + eps) with eps = 1e-3 (``config['adagrad_eps']``), row-sparse for the
    word vectors."""
    eps = {"eps": config.get("adagrad_eps", 1e-3)} if config.get("optimizer", "adagrad") == "adagrad" else {}
    return build_optimizer(config, model.parameters(), **eps)


def _dtype(config):
    return np.float64 if config.get("dtype") == "float64" else np.float32


def _models(config):
    """The model module for ``config['model']``: :mod:`~chainrule.models.rntn` or :mod:`~chainrule.models.treelstm`."""
    if config.get("model") == "treelstm":
        from ..models import treelstm as T
        return T
    from ..models import rntn as R
    return R


def load_model(path):
    """(model, config, meta) from a checkpoint written by ``chainrule train rntn``."""
    from ..models import rntn as R
    model, config, _, meta = load_trained(
        path, "rntn", ("rntn", "rnn", "treelstm"), R.Vocab,
        lambda config, vocab: _models(config).build_model(config, vocab, seed=config.get("seed", 0),
                                                          dtype=_dtype(config)))
    return model, config, meta


# ------------------------------------------------------------------------------------ train
def cmd_train_rntn(args):
    from .. import optim
    from ..data import sst
    from ..models import rntn as R
    from ..train import TrainConfig, Trainer
    wall0 = time.perf_counter()
    out = args.out or os.path.join("runs", f"{args.model}-sst")
    config, extra = start_run(args, out, config_from_args, models=("rntn", "rnn", "treelstm"))
    vocab = R.Vocab.from_json(extra["vocab"]) if extra is not None else None
    train_trees = sst.load("train")
    if config.get("limit"):
        train_trees = train_trees[:config["limit"]]
    if vocab is None:
        vocab = R.Vocab.from_trees(train_trees, lowercase=config["lowercase"])
    M = _models(config)
    model = M.build_model(config, vocab, seed=config["seed"], dtype=_dtype(config))
    data = {"train": R.TreeDataset(train_trees, vocab), "dev": R.TreeDataset(sst.load("dev"), vocab),
            "test": R.TreeDataset(sst.load("test"), vocab)}
    opt = make_rntn_optimizer(config, model)
    loss_fn = M.make_loss_fn(config["reg_transform"], config["reg_classification"], config["reg_words"],
                             config.get("reg_tensor"))
    tc = TrainConfig(epochs=config["epochs"], batch_size=config["batch_size"], seed=config["seed"], out_dir=out,
                     monitor=config["monitor"], mode="max", patience=getattr(args, "patience", None),
                     progress=getattr(args, "progress", None),
                     extra={"config": config, "vocab": vocab.to_json()})
    # CoreNLP: adagradResetFrequency = 1 -- the squared-gradient history restarts every epoch
    reset = config.get("adagrad_reset", True) and config.get("optimizer", "adagrad") == "adagrad"
    trainer = Trainer(model, opt, loss_fn, M.evaluate_sharded, tc,
                      scheduler=optim.make_scheduler(config.get("schedule", "none"), opt, config["epochs"]),
                      on_epoch_start=(lambda epoch: opt.reset_state()) if reset else None)
    resume_trainer(trainer, args, out)
    n_params = sum(int(np.prod(p.shape)) for p in model.parameters())
    tl = config["model"] == "treelstm"
    opt_name = {"adagrad": "AdaGrad", "adam": "Adam"}.get(config.get("optimizer", "adagrad"), config.get("optimizer"))
    print(f"chainrule train rntn: {config['model'].upper()} d={config['dim']}"
          f"{' H=%d' % config.get('hidden', 50) if tl else ''} ({n_params:,} parameters, "
          f"vocabulary {len(vocab):,}{', lower-cased' if config['lowercase'] else ''}), {opt_name} lr {config['lr']} "
          f"({'history reset each epoch' if reset else 'no reset'}), batch {config['batch_size']}, L2 {config['reg_transform']}/"
          f"{config['reg_transform'] if config.get('reg_tensor') is None else config['reg_tensor']}/"
          f"{config['reg_classification']}/{config['reg_words']} (W / V / Ws / words), {plural(config['epochs'], 'epoch')}; "
          f"trees train/dev/test = {len(data['train'])}/{len(data['dev'])}/{len(data['test'])}; "
          f"model selection on dev {config['monitor']}", flush=True)
    rc = fit(trainer, data["train"], data["dev"])
    return rc if rc is not None else report(out, data, trainer.train_seconds, time.perf_counter() - wall0,
                                            run_config=config, epochs_run=trainer.epoch)


def report(out, data, train_seconds, wall_seconds=None, run_config=None, epochs_run=None):
    """Evaluate ``out/best.safetensors`` on dev and test, print the Table-1 comparison, write results.json."""
    from ..checkpoint import atomic_write_text
    model, config, meta = load_model(os.path.join(out, "best.safetensors"))
    M = _models(config)
    rows = {s: M.evaluate(model, data[s]) for s in ("dev", "test")}
    paper = M.PAPER_TABLE1[config["model"]]
    print(f"\nbest epoch {meta['best_epoch']} (by dev {config['monitor']}); training time {train_seconds:.1f} s"
          + (f", wall time {wall_seconds:.1f} s" if wall_seconds is not None else ""))
    print(format_table(rows, paper, config["model"]))
    result = {"config": run_config or config, "best_epoch": meta["best_epoch"], "epochs_run": epochs_run,
              "train_seconds": train_seconds,
              "wall_seconds": wall_seconds, "paper_test": paper,
              **{f"{s}_{k}": v for s, m in rows.items() for k, v in m.items()}}
    atomic_write_text(os.path.join(out, "results.json"), json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}/best.safetensors, last.safetensors, metrics.jsonl, curves.png, results.json")
    return 0


def evaluate_checkpoint(path, splits=("dev", "test")):
    """``chainrule evaluate`` of an RNTN/RNN/Tree-LSTM checkpoint: the Table-1 metrics on SST splits."""
    from ..data import sst
    from ..models import rntn as R
    model, config, meta = load_model(path)
    M = _models(config)
    rows = {s: M.evaluate(model, R.TreeDataset(sst.load(s), model.vocab)) for s in splits}
    print(f"{path}: {config['model'].upper()}, epoch {meta['epoch']} (best epoch {meta.get('best_epoch')})")
    print(format_table(rows, M.PAPER_TABLE1[config["model"]], config["model"]))
    return 0


def format_table(rows, paper, model_name):
    """The four Table-1 numbers per split (percent) beside the paper's test row."""
    head = f"{'':<16}" + "".join(f"{METRIC_TITLES[k]:>13}" for k in METRICS)
    src = "Tai et al. 2015, Table 2 (root only)" if model_name == "treelstm" else "Table 1 (Socher et al. 2013)"
    lines = [f"{src}, {model_name.upper()}:", head]
    for split, m in rows.items():
        lines.append(f"{split + ' (ours)':<16}" + "".join(f"{100 * m[k]:>13.1f}" for k in METRICS))
    lines.append(f"{'test (paper)':<16}" + "".join(f"{paper[k]:>13.1f}" for k in METRICS))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ sentiment
_TOKEN = re.compile(r"\w+(?=n't\b)|n't\b|'(?:s|re|ve|ll|d|m)\b|-LRB-|-RRB-|\w+(?:[-./]\w+)*|\.\.\.|--|[^\w\s]",
                    re.IGNORECASE)
_BRACKETS = {"(": "-LRB-", ")": "-RRB-", "[": "-LRB-", "]": "-RRB-", "{": "-LRB-", "}": "-RRB-"}


def tokenize(text):
    """A small PTB-like tokenizer: splits off punctuation and the clitics n't 's 're 've 'll 'd 'm
    (SST's tokenisation: "does n't", "it 's"), brackets become -LRB-/-RRB-."""
    toks = []
    for word in text.split():
        for m in _TOKEN.finditer(word):
            t = m.group(0)
            toks.append(_BRACKETS.get(t, t))
    return [t for t in toks if t]


def analyse(model, tree):
    """Predicted class and probabilities of every node of ``tree`` (a Tree) by ``model`` (an RNTN,
    RNN or Tree-LSTM), in post-order: a list of (node, predicted_label, probs)."""
    from ..autograd import no_grad
    from ..models import rntn as R
    ds = R.TreeDataset([tree], model.vocab)
    batch = ds.batch([0])
    with no_grad():
        logits = model.forward(batch)[-1]          # RNTN/RNN: (table, logits); Tree-LSTM: (h, c, logits)
    probs = R._softmax_rows(logits.data.astype(np.float64))[batch.tree_pos[0]]
    return [(n, int(p.argmax()), p) for n, p in zip(ds.encoded[0].nodes, probs)]


def render(model, tree):
    """Lines: the tree as an indented outline (each node's phrase, predicted label, confidence),
    then the PTB string with predicted labels."""
    from ..data.sst import LABEL_NAMES
    from ..data.trees import Tree
    result = analyse(model, tree)
    pred = {id(n): (lab, p) for n, lab, p in result}
    lines = []
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        lab, p = pred[id(node)]
        if node.children:
            phrase = " ".join(node.words())
            if len(phrase) > 60:
                phrase = phrase[:57] + "..."
        else:
            phrase = node.word + ("" if node.word in model.vocab else "  [unknown word]")
        lines.append(f"{'  ' * depth}{lab} {LABEL_NAMES[lab]:<14} {p[lab]:.2f}  {phrase}")
        for c in reversed(node.children):
            stack.append((c, depth + 1))
    # the same tree with predicted labels, as PTB
    done = {}
    for n, lab, _ in result:
        done[id(n)] = Tree(lab, n.word) if not n.children else Tree(lab, None, tuple(done[id(c)] for c in n.children))
    lines.append("")
    lines.append("predicted: " + done[id(tree)].to_string())
    return lines


def _checkpoint_kind(path):
    from ..checkpoint import load_checkpoint
    _, meta = load_checkpoint(path)
    extra = meta.get("extra")
    config = extra.get("config") if isinstance(extra, dict) else None
    return config.get("model") if isinstance(config, dict) else None


def cmd_sentiment(args):
    from ..data.sst import LABEL_NAMES
    from ..data.trees import binarize_sentence, parse_tree
    from .rundir import resolve_checkpoint
    args.checkpoint = resolve_checkpoint(args.checkpoint)
    text = " ".join(args.text).strip()
    if not text:
        raise ValueError("sentiment: empty text")
    if _checkpoint_kind(args.checkpoint) == "sequence":       # an LSTM/GRU sentence classifier
        from . import sequence
        return sequence.sentiment(args.checkpoint, text)
    model, config, _ = load_model(args.checkpoint)
    if text.startswith("("):
        tree = parse_tree(text)
        note = "input: a PTB tree (its structure is used; its labels are ignored)"
    else:
        tokens = tokenize(text)
        tree = binarize_sentence(tokens)
        note = (f"input: a raw sentence, tokenised to {len(tokens)} tokens and binarised by the balanced fallback "
                "(chainrule.data.trees.binarize_sentence: no parser here, so the tree is not a syntactic parse; "
                "pass a PTB tree for that)")
    lines = render(model, tree)
    root = analyse(model, tree)[-1]
    print(f"{args.checkpoint}: {config['model'].upper()} d={config['dim']}"
          + (f" H={config.get('hidden', 50)}" if config["model"] == "treelstm" else ""))
    print(note)
    print(f"sentence sentiment: {root[1]} ({LABEL_NAMES[root[1]]}), p = {root[2][root[1]]:.2f}; "
          f"P(positive) = {root[2][3] + root[2][4]:.2f}, P(negative) = {root[2][0] + root[2][1]:.2f}")
    print()
    print("\n".join(lines))
    return 0


# ------------------------------------------------------------------------------------ gradcheck
def gradcheck_trees(n=3, max_nodes=25):
    """A few short real SST dev trees, plus the deepest short one (for a long chain of levels)."""
    from ..data import sst
    dev = sst.load("dev")
    small = [t for t in dev if len(t) <= max_nodes]
    deep = max(small, key=lambda t: t.height())
    out = small[:n]
    if deep not in out:
        out.append(deep)
    return out


def cmd_gradcheck_rntn(args):
    from ..gradcheck import gradcheck_params
    from ..models import rntn as R
    trees = gradcheck_trees(args.trees)
    vocab = R.Vocab.from_trees(trees)
    checks = []
    print(f"gradcheck rntn: {len(trees)} real SST dev trees ({sum(len(t) for t in trees)} nodes, heights "
          f"{[t.height() for t in trees]}), d={args.embed_dim}"
          f"{f' (Tree-LSTM H={args.hidden})' if 'treelstm' in args.models else ''}, float64, central "
          f"differences eps=1e-6, loss = batched data term + L2 penalty")
    for kind in args.models:
        config = {"model": kind, "dim": args.embed_dim, "hidden": args.hidden}
        M = _models(config)
        model = M.build_model(config, vocab, seed=args.seed, dtype=np.float64)
        ds = R.TreeDataset(trees, vocab)
        batch = ds.batch(np.arange(len(ds)))
        # larger regularisation constants than CoreNLP's so that the penalty's gradient is visible
        loss_fn = M.make_loss_fn(0.01, 0.01, 0.01)
        report = gradcheck_params(lambda m=model, b=batch, f=loss_fn: f(m, b)[0], model.named_parameters())
        print(f"\n{kind.upper()}")
        print_gradcheck_table(report, {n: p.shape for n, p in model.named_parameters()}, width=22)
        checks += [(f"{kind} {c.name}", c.ok) for c in report.comparisons]
        if kind == "treelstm":
            # no hand derivation of the Tree-LSTM in chainrule.derivations (seed 000 derives the RNTN);
            # the independent reference is the node-by-node forward pass
            print("derivation check: none for the Tree-LSTM (chainrule.derivations has no Tree-LSTM "
                  "derivation; the seeds derive the RNTN/RNN only)")
            errs = M.per_node_agreement(model, ds)
            print("batched vs node-by-node reference (chainrule.models.treelstm.loss_per_node): "
                  + ", ".join(f"{k} {v:.1e}" for k, v in errs.items()))
            checks.append((f"{kind} batched vs node-by-node", max(errs.values()) <= 1e-7))
            continue
        errs = R.derivation_agreement(model, ds)
        print("derivation check vs chainrule.derivations.rntn (message passing, leaf_activation=True): "
              + ", ".join(f"{k} {v:.1e}" for k, v in errs.items()))
        checks.append((f"{kind} vs seed 000's derivation", max(errs.values()) <= 1e-7))
    return summary("gradcheck rntn", checks)


# ------------------------------------------------------------------------------------ registration
def register(sub, train_sub, gradcheck_sub):
    """Add ``train rntn``, ``sentiment`` and ``gradcheck rntn``.

    Every command module registers itself with this same sequence of calls (the shared helpers of
    :mod:`chainrule.commands`): the likeness between the ``register`` functions is by design."""
    add_train_command(
        train_sub, "rntn", "recursive neural tensor network (seed 000) on the Stanford Sentiment Treebank",
        "Train an RNTN (or the plain RNN with --model rnn, the Tree-LSTM with --model treelstm) on SST, batched "
        "by tree level, as Stanford CoreNLP's sentiment trainer does (AdaGrad 0.01 reset each epoch, batch 27, "
        "L2 0.001 on W,V and 0.0001 on Ws and word vectors). Prints the paper's Table 1 numbers on dev and "
        "test beside the paper's.", add_train_args, cmd_train_rntn)
    add_checkpoint_command(
        sub, "sentiment", "sentiment of every phrase of a sentence with a trained RNTN/RNN/Tree-LSTM",
        "Print the tree of a sentence with each node's predicted sentiment (0 very negative .. 4 very "
        "positive). TEXT is a PTB tree '(2 (2 not) (3 good))' or a raw sentence, which is tokenised and "
        "binarised by a balanced fallback (no parser).",
        "text", 'a sentence ("not a good movie") or a PTB tree string', cmd_sentiment)

    g = gradcheck_sub.add_parser("rntn", help="RNTN, RNN (or Tree-LSTM) on real SST trees, and seed 000's equations",
                                 description="Finite-difference check of every parameter of small float64 "
                                 "RNTN and RNN models (and the Tree-LSTM with --model treelstm) on a few real "
                                 "SST dev trees (batched-by-level path, with the L2 penalty), and agreement of "
                                 "the engine's gradients with the hand derivation chainrule.derivations.rntn "
                                 "(≤ 1e-7). There is no Tree-LSTM derivation: its gradients are compared with "
                                 "those of the node-by-node reference pass instead.")
    g.add_argument("--embed-dim", type=int, default=4)
    g.add_argument("--dim", dest="embed_dim", type=int, help=argparse.SUPPRESS)
    g.add_argument("--hidden", type=int, default=3, help="treelstm: memory size H (default 3)")
    g.add_argument("--trees", type=int, default=3, help="number of short dev trees (plus a deep one)")
    g.add_argument("--models", "--model", dest="models", nargs="+", default=["rntn", "rnn"],
                   choices=["rntn", "rnn", "treelstm"], help="models to check (default: rntn rnn)")
    g.add_argument("--seed", type=int, default=0)
    add_threads_arg(g)
    g.set_defaults(func=cmd_gradcheck_rntn)

