"""``chainrule train mlp``, ``chainrule evaluate`` and ``chainrule gradcheck mlp``.

The multilayer perceptrons of :mod:`chainrule.models.mlp` (seed 003's network and its relatives) on
scikit-learn's bundled digits (offline) or MNIST / Fashion-MNIST idx files (``--data-dir``).
Checkpoints hold the model's arrays; the configuration is in their metadata (``extra``), so
``chainrule evaluate CHECKPOINT`` rebuilds the data splits and the model from it.
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np

from . import (add_batch_size_arg, add_optimizer_args, add_train_command, add_run_args, add_threads_arg, fit, lr_from_args,
               build_optimizer, plural, print_gradcheck_table, resume_trainer, start_run, summary,
               unit_fraction)


def int_list(s):
    """``"256,256"`` -> ``[256, 256]`` (an argparse type)."""
    try:
        sizes = [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        sizes = None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers like 256,256, got {s!r}")
    return sizes


# ------------------------------------------------------------------------------------ arguments
def add_train_args(p):
    from ..models.mlp import ACTIVATIONS, LOSSES
    p.add_argument("--dataset", default="digits", choices=["digits", "mnist", "fashion-mnist"],
                   help="digits is bundled with scikit-learn (offline); mnist/fashion-mnist read the idx .gz files from --data-dir")
    p.add_argument("--data-dir", default=None, help="directory holding the idx .gz files (mnist, fashion-mnist)")
    p.add_argument("--hidden", type=int_list, default=None, help="hidden layer sizes (default: 512,256 for digits, 256,256 otherwise)")
    p.add_argument("--activation", default="relu", choices=ACTIVATIONS)
    p.add_argument("--loss", default="ce", choices=LOSSES,
                   help="ce: softmax cross-entropy; multilabel-bce: K sigmoid outputs, summed BCE (seed 003); l2: ½‖σ(z)−d‖²")
    add_optimizer_args(p, default="adam", schedule="cosine")
    p.add_argument("--momentum", type=float, default=None, help="SGD (and RMSprop) momentum (default: 0.9 for SGD, else 0)")
    p.add_argument("--dropout", type=float, default=None, help="dropout probability after each hidden layer (default: 0.3 for digits, 0 otherwise)")
    p.add_argument("--l2", type=float, default=0.0, help="λ: adds λ/2 Σ‖W‖² over weight matrices to the loss (seed 003)")
    p.add_argument("--val-fraction", type=unit_fraction, default=0.1,
                   help="share of the training set held out for model selection (default 0.1); 0: no validation "
                        "set, the last epoch is the selected one")
    p.add_argument("--normalize", default=None, choices=["feature", "global", "none"],
                   help="input scaling fitted on the training split: per-feature standardisation, one global "
                        "mean/std, or none (pixels in [0, 1]); default: feature for digits, global otherwise")
    add_run_args(p, "runs/mlp-DATASET", "default: 30 for digits, 10 otherwise", "default: 32 for digits, 128 otherwise")


def config_from_args(args):
    big = args.dataset != "digits"
    return {
        "model": "mlp", "dataset": args.dataset,
        "hidden": args.hidden if args.hidden is not None else ([256, 256] if big else [512, 256]), "activation": args.activation,
        "loss": args.loss, "optimizer": args.optimizer, "lr": lr_from_args(args),
        "momentum": args.momentum if args.momentum is not None else (0.9 if args.optimizer == "sgd" else 0.0),
        "weight_decay": args.weight_decay, "l2": args.l2,
        "dropout": args.dropout if args.dropout is not None else (0.0 if big else 0.3),
        "schedule": args.schedule,
        "epochs": args.epochs if args.epochs is not None else (10 if big else 30),
        "batch_size": args.batch_size if args.batch_size is not None else (128 if big else 32),
        "val_fraction": args.val_fraction, "seed": args.seed,
        "normalize": args.normalize if args.normalize is not None else ("global" if big else "feature"),
    }


# ------------------------------------------------------------------------------------ setup
def setup(config, data_dir=None):
    """``(splits, model, optimizer, scheduler, datasets, loss_fn, evaluate_fn)`` of a run's ``config``."""
    from .. import optim
    from ..data import datasets
    from ..models import mlp
    from ..train import ArrayDataset
    norm = config.get("normalize", "feature")
    splits = datasets.load(config["dataset"], data_dir=data_dir, val_fraction=config["val_fraction"],
                           seed=config["seed"], standardize=norm == "feature")
    if norm == "global":       # one mean and std over all training pixels
        mu, sd = float(splits.train[0].mean()), float(splits.train[0].std())
        for k in ("train", "val", "test"):
            x, y = getattr(splits, k)
            setattr(splits, k, (((x - mu) / sd).astype(np.float32), y))
    n_in, n_out = splits.train[0].shape[1], len(splits.classes)
    model = mlp.build_model(config, n_in, n_out)
    opt = build_optimizer(config, model.parameters())
    sched = optim.make_scheduler(config["schedule"], opt, config["epochs"])
    data = {k: ArrayDataset(*getattr(splits, k)) for k in ("train", "val", "test")}
    return splits, model, opt, sched, data, mlp.make_loss_fn(config, n_out), mlp.make_evaluate_fn(config, n_out)


def load_model(path, data_dir=None):
    """``(model, config, data, evaluate_fn, meta)`` from a checkpoint written by ``chainrule train mlp``
    (the data splits rebuilt from the stored configuration)."""
    from ..checkpoint import load_checkpoint
    from .rundir import check_config_bounds
    arrays, meta = load_checkpoint(path)
    extra = meta.get("extra")
    config = extra.get("config") if isinstance(extra, dict) else None
    if not isinstance(config, dict) or config.get("model") != "mlp":
        raise ValueError(f"{path} is not an MLP checkpoint written by 'chainrule train mlp'")
    check_config_bounds(config, arrays, path)
    splits, model, opt, sched, data, loss_fn, evaluate_fn = setup(
        config, data_dir if data_dir is not None else meta.get("extra", {}).get("data_dir"))
    model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model.")})
    return model, config, data, evaluate_fn, meta


# ------------------------------------------------------------------------------------ train
def cmd_train_mlp(args):
    from ..train import TrainConfig, Trainer
    out = args.out or os.path.join("runs", f"mlp-{args.dataset}")
    config, _ = start_run(args, out, config_from_args)
    splits, model, opt, sched, data, loss_fn, evaluate_fn = setup(config, args.data_dir)
    tc = TrainConfig(epochs=config["epochs"], batch_size=config["batch_size"], seed=config["seed"],
                     out_dir=out, monitor="acc", mode="max", patience=args.patience, progress=args.progress,
                     extra={"config": config, "data_dir": args.data_dir})
    trainer = Trainer(model, opt, loss_fn, evaluate_fn, tc, scheduler=sched)
    resume_trainer(trainer, args, out)
    print(f"chainrule train mlp: {config['dataset']} {[splits.train[0].shape[1], *config['hidden'], len(splits.classes)]} "
          f"{config['activation']}, loss {config['loss']}, {config['optimizer']} lr {config['lr']}, "
          f"{plural(config['epochs'], 'epoch')}, batch {config['batch_size']}; "
          f"train/val/test = {len(data['train'])}/{len(data['val'])}/{len(data['test'])}")
    rc = fit(trainer, data["train"], data["val"])
    return rc if rc is not None else report(out, config, data, args.data_dir, trainer.train_seconds, trainer.epoch)


def report(out, config, data, data_dir, seconds, epochs_run=None):
    """Evaluate ``out/best.safetensors`` on every non-empty split, print the table, write results.json
    (with the run's own configuration -- its epochs as extended -- and the epochs actually run)."""
    from ..autograd import no_grad
    from ..checkpoint import atomic_write_text
    model, _, data, evaluate_fn, meta = load_model(os.path.join(out, "best.safetensors"), data_dir)
    model.eval()
    rows = {}
    with no_grad():
        for split in ("train", "val", "test"):
            if len(data[split]):
                rows[split] = evaluate_fn(model, data[split])
    how = "by validation accuracy" if len(data["val"]) else "the last epoch: no validation set"
    print(f"\nbest epoch {meta['best_epoch']} ({how}), training time {seconds:.1f} s")
    print(f"{'split':<8}{'accuracy':>10}{'loss':>10}")
    for split, m in rows.items():
        print(f"{split:<8}{m['acc'] * 100:>9.2f}%{m['loss']:>10.4f}")
    result = {"config": config, "best_epoch": meta["best_epoch"], "epochs_run": epochs_run, "train_seconds": seconds,
              **{f"{s}_{k}": v for s, m in rows.items() for k, v in m.items()}}
    atomic_write_text(os.path.join(out, "results.json"), json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}/best.safetensors, last.safetensors, metrics.jsonl, curves.png, results.json")
    return 0


# ------------------------------------------------------------------------------------ evaluate
def cmd_evaluate(args):
    """Any checkpoint of ``chainrule train`` (or a run directory: its best checkpoint), by its kind."""
    from ..autograd import no_grad
    from ..checkpoint import load_checkpoint
    from .rundir import resolve_checkpoint
    path = resolve_checkpoint(args.checkpoint)
    _, meta = load_checkpoint(path)
    extra = meta.get("extra")
    config = extra.get("config") if isinstance(extra, dict) else None
    kind = config.get("model") if isinstance(config, dict) else None
    dev_splits = tuple(dict.fromkeys("dev" if s == "val" else s for s in args.splits))
    if kind == "window":
        from . import window
        return window.evaluate_checkpoint(path, dev_splits, args.data_dir)
    if kind in ("rntn", "rnn", "treelstm", "sequence"):
        from . import rntn, sequence
        return (sequence if kind == "sequence" else rntn).evaluate_checkpoint(
            path, tuple(s for s in dev_splits if s != "train") or ("dev",))
    if kind != "mlp":
        raise ValueError(f"evaluate: {path} is not a checkpoint of 'chainrule train' (mlp, window, rntn, sequence)"
                         + (f"; its model is {kind!r}" if kind else "; its metadata holds no model configuration"))
    model, config, data, evaluate_fn, meta = load_model(path, args.data_dir)
    model.eval()
    print(f"{path}: {config['model']} on {config['dataset']}, epoch {meta['epoch']}")
    print(f"{'split':<8}{'accuracy':>10}{'loss':>10}")
    with no_grad():
        for split in dict.fromkeys("val" if s == "dev" else s for s in args.splits):
            if not len(data[split]):
                print(f"{split:<8}{'(empty)':>10}")
                continue
            m = evaluate_fn(model, data[split])
            print(f"{split:<8}{m['acc'] * 100:>9.2f}%{m['loss']:>10.4f}")
    return 0


# ------------------------------------------------------------------------------------ gradcheck
def cmd_gradcheck_mlp(args):
    from .. import losses, nn
    from ..gradcheck import gradcheck_params
    from ..tensor import Tensor
    rng = np.random.default_rng(args.seed)
    sizes = args.sizes
    model = nn.MLP(sizes, activation=args.activation, output=None, seed=args.seed).to(np.float64)
    x = rng.standard_normal((args.batch_size, sizes[0]))
    y = rng.integers(0, sizes[-1], size=args.batch_size)
    onehot = np.eye(sizes[-1])[y]

    def loss_fn():
        z = model(Tensor._wrap(x))
        if args.loss == "ce":
            return losses.cross_entropy(z, y)
        if args.loss == "multilabel-bce":
            return losses.multilabel_bce(z, onehot, from_logits=True)
        return losses.l2(z.sigmoid(), onehot, reduction="mean")
    report = gradcheck_params(loss_fn, model.named_parameters())
    print(f"gradcheck mlp {sizes} {args.activation}, loss {args.loss}, batch {args.batch_size}, float64, "
          f"central differences eps=1e-6")
    print_gradcheck_table(report, dict((n, p.shape) for n, p in model.named_parameters()), width=24)
    return summary("gradcheck mlp", [(c.name, c.ok) for c in report.comparisons])


# ------------------------------------------------------------------------------------ registration
def register(sub, train_sub, gradcheck_sub):
    """Add ``train mlp``, ``evaluate`` and ``gradcheck mlp`` to the ``chainrule`` parser."""
    add_train_command(train_sub, "mlp", "multilayer perceptron on digits / MNIST / Fashion-MNIST",
                      "Train an MLP. Default: scikit-learn's bundled digits, 64-512-256-10 ReLU, dropout 0.3, "
                      "cross-entropy, Adam, cosine schedule (finishes in seconds).", add_train_args, cmd_train_mlp)

    ev = sub.add_parser("evaluate", help="evaluate a checkpoint", description="Evaluate a checkpoint written by "
                        "any 'chainrule train' command (MLP, window tagger, RNTN/RNN/Tree-LSTM, sequence "
                        "classifier), or the best checkpoint of a run directory, on its data set's splits.")
    ev.add_argument("checkpoint", help="a checkpoint of any 'chainrule train' command, or a run directory (--out)")
    ev.add_argument("--data-dir", default=None, help="data directory (default: the one the run was trained on)")
    ev.add_argument("--splits", nargs="+", default=["val", "test"], choices=["train", "val", "dev", "test"],
                    help="val and dev name the same split (the validation / development set)")
    add_threads_arg(ev)
    ev.set_defaults(func=cmd_evaluate)

    p = gradcheck_sub.add_parser("mlp", help="an MLP on a random batch")
    p.add_argument("--sizes", type=int_list, default=[8, 16, 16, 4])
    p.add_argument("--activation", default="tanh", choices=["sigmoid", "tanh", "relu", "leaky_relu", "rrelu"])
    p.add_argument("--loss", default="ce", choices=["ce", "multilabel-bce", "l2"])
    add_batch_size_arg(p, 5, "examples in the random batch (default 5)")
    p.add_argument("--seed", type=int, default=0)
    add_threads_arg(p)
    p.set_defaults(func=cmd_gradcheck_mlp)
