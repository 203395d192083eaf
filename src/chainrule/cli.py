"""The ``chainrule`` command (also ``python -m chainrule``).

    chainrule train mlp [--dataset digits|mnist|fashion-mnist] ...   train, evaluate, checkpoint
    chainrule evaluate CHECKPOINT                                       re-evaluate a checkpoint
    chainrule gradcheck mlp                                             gradient-check a model

Every subcommand has ``--help``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
from .commands import add_run_args, positive_float, positive_int, unit_fraction


def _int_list(s):
    try:
        return [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 256,256, got {s!r}") from None


# ------------------------------------------------------------------------------------------ mlp
def _add_mlp_args(p):
    from .models.mlp import ACTIVATIONS, LOSSES, OPTIMIZERS
    p.add_argument("--dataset", default="digits", choices=["digits", "mnist", "fashion-mnist"],
                   help="digits is bundled with scikit-learn (offline); mnist/fashion-mnist read the idx .gz files from --data-dir")
    p.add_argument("--data-dir", default=None, help="directory holding the idx .gz files (mnist, fashion-mnist)")
    p.add_argument("--hidden", type=_int_list, default=None, help="hidden layer sizes (default: 512,256 for digits, 256,256 otherwise)")
    p.add_argument("--activation", default="relu", choices=ACTIVATIONS)
    p.add_argument("--loss", default="ce", choices=LOSSES,
                   help="ce: softmax cross-entropy; multilabel-bce: K sigmoid outputs, summed BCE (seed 003); l2: ½‖σ(z)−d‖²")
    p.add_argument("--optimizer", default="adam", choices=OPTIMIZERS)
    p.add_argument("--lr", type=positive_float, default=None, help="learning rate (default: sgd 0.1, adam 1e-3, adagrad 0.05)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="optimizer weight decay")
    p.add_argument("--dropout", type=float, default=None, help="dropout probability after each hidden layer (default: 0.3 for digits, 0 otherwise)")
    p.add_argument("--l2", type=float, default=0.0, help="λ: adds λ/2 Σ‖W‖² over weight matrices to the loss (seed 003)")
    p.add_argument("--schedule", default="cosine", choices=["none", "step", "cosine"], help="learning-rate schedule per epoch")
    p.add_argument("--epochs", type=positive_int, default=None, help="default: 30 for digits, 10 otherwise")
    p.add_argument("--batch-size", type=positive_int, default=None, help="default: 32 for digits, 128 otherwise")
    p.add_argument("--val-fraction", type=unit_fraction, default=0.1,
                   help="share of the training set held out for model selection (default 0.1); 0: no validation, the last epoch is the selected one")
    p.add_argument("--normalize", default=None, choices=["feature", "global", "none"],
                   help="input scaling fitted on the training split: per-feature standardisation, one global "
                        "mean/std, or none (pixels in [0, 1]); default: feature for digits, global otherwise")
    p.add_argument("--patience", type=positive_int, default=None, help="early stopping after N epochs without val improvement")
    add_run_args(p, "runs/mlp-DATASET")


def _mlp_config(args):
    from .models.mlp import default_lr
    big = args.dataset != "digits"
    return {
        "model": "mlp", "dataset": args.dataset,
        "hidden": args.hidden if args.hidden is not None else ([256, 256] if big else [512, 256]), "activation": args.activation,
        "loss": args.loss, "optimizer": args.optimizer,
        "lr": args.lr if args.lr is not None else default_lr(args.optimizer),
        "momentum": args.momentum, "weight_decay": args.weight_decay, "l2": args.l2,
        "dropout": args.dropout if args.dropout is not None else (0.0 if big else 0.3),
        "schedule": args.schedule,
        "epochs": args.epochs if args.epochs is not None else (10 if big else 30),
        "batch_size": args.batch_size if args.batch_size is not None else (128 if big else 32),
        "val_fraction": args.val_fraction, "seed": args.seed,
        "normalize": args.normalize if args.normalize is not None else ("global" if big else "feature"),
    }


def _mlp_setup(config, data_dir=None):
    from . import optim
    from .data import datasets
    from .models import mlp
    from .train import ArrayDataset
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
    opt = mlp.make_optimizer(config, model.parameters())
    sched = None
    if config["schedule"] == "cosine":
        sched = optim.CosineLR(opt, T_max=config["epochs"])
    elif config["schedule"] == "step":
        sched = optim.StepLR(opt, step_size=max(1, config["epochs"] // 3), gamma=0.1)
    data = {k: ArrayDataset(*getattr(splits, k)) for k in ("train", "val", "test")}
    return splits, model, opt, sched, data, mlp.make_loss_fn(config, n_out), mlp.make_evaluate_fn(config, n_out)


def cmd_train_mlp(args):
    from .distributed import is_main
    from .train import TrainConfig, Trainer
    from .commands.rundir import begin_run, check_space
    out = args.out or os.path.join("runs", f"mlp-{args.dataset}")
    last = os.path.join(out, "last.safetensors")
    config, meta = begin_run(args, out, "mlp", ("mlp",), lambda: _mlp_config(args), _mlp_schedule_spans_epochs)
    splits, model, opt, sched, data, loss_fn, evaluate_fn = _mlp_setup(config, args.data_dir)
    check_space(out, model)
    tc = TrainConfig(epochs=config["epochs"], batch_size=config["batch_size"], seed=config["seed"],
                     out_dir=out, monitor="acc", mode="max", patience=args.patience, progress=args.progress,
                     extra={"config": config, "data_dir": args.data_dir})
    trainer = Trainer(model, opt, loss_fn, evaluate_fn, tc, scheduler=sched)
    if meta is not None:
        trainer.load(last)
        trainer.config.epochs = config["epochs"]
        print(f"resuming {last}: epoch {trainer.epoch + 1}, batch {trainer.batch}")
    print(f"chainrule train mlp: {config['dataset']} {[splits.train[0].shape[1], *config['hidden'], len(splits.classes)]} "
          f"{config['activation']}, loss {config['loss']}, {config['optimizer']} lr {config['lr']}, "
          f"{config['epochs']} epochs, batch {config['batch_size']}; "
          f"train/val/test = {len(data['train'])}/{len(data['val'])}/{len(data['test'])}")
    try:
        trainer.fit(data["train"], data["val"])
    except KeyboardInterrupt:
        return 130
    if not is_main():          # data-parallel: rank 0 reports and writes results
        return 0
    return _report_mlp(out, config, data, args.data_dir, trainer.train_seconds, trainer.epoch)


def _mlp_schedule_spans_epochs(config):
    return f"{config['schedule']} learning-rate schedule" if config.get("schedule") in ("cosine", "step") else None


def _load_model_from_checkpoint(path, data_dir=None):
    from .checkpoint import load_checkpoint
    from .commands.rundir import check_config_bounds
    arrays, meta = load_checkpoint(path)
    extra = meta.get("extra")
    config = extra.get("config") if isinstance(extra, dict) else None
    if not isinstance(config, dict) or config.get("model") != "mlp":
        raise ValueError(f"{path} is not an MLP checkpoint written by 'chainrule train mlp'")
    check_config_bounds(config, arrays, path)
    splits, model, opt, sched, data, loss_fn, evaluate_fn = _mlp_setup(
        config, data_dir if data_dir is not None else meta.get("extra", {}).get("data_dir"))
    model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model.")})
    return model, config, data, evaluate_fn, meta


def _report_mlp(out, config, data, data_dir, seconds, epochs_run=None):
    """Evaluate best.safetensors on every non-empty split; results.json records the run's own
    configuration (with the epochs it was extended to) and the epochs actually run."""
    from .autograd import no_grad
    best = os.path.join(out, "best.safetensors")
    model, _, data, evaluate_fn, meta = _load_model_from_checkpoint(best, data_dir)
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
    from .checkpoint import atomic_write_text
    atomic_write_text(os.path.join(out, "results.json"), json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}/best.safetensors, last.safetensors, metrics.jsonl, curves.png, results.json")
    return 0


def cmd_evaluate(args):
    """Any checkpoint of ``chainrule train`` (or a run directory: its best checkpoint), by its kind."""
    from .autograd import no_grad
    from .checkpoint import load_checkpoint
    from .commands.rundir import resolve_checkpoint
    path = resolve_checkpoint(args.checkpoint)
    _, meta = load_checkpoint(path)
    extra = meta.get("extra")
    config = extra.get("config") if isinstance(extra, dict) else None
    kind = config.get("model") if isinstance(config, dict) else None
    dev_splits = tuple(dict.fromkeys("dev" if s == "val" else s for s in args.splits))
    if kind == "window":
        from .commands import window
        return window.evaluate_checkpoint(path, dev_splits, args.data_dir)
    if kind in ("rntn", "rnn", "treelstm"):
        from .commands import rntn
        return rntn.evaluate_checkpoint(path, tuple(s for s in dev_splits if s != "train") or ("dev",))
    if kind == "sequence":
        from .commands import sequence
        return sequence.evaluate_checkpoint(path, tuple(s for s in dev_splits if s != "train") or ("dev",))
    if kind != "mlp":
        raise ValueError(f"evaluate: {path} is not a checkpoint of 'chainrule train' (mlp, window, rntn, sequence)"
                         + (f"; its model is {kind!r}" if kind else "; its metadata holds no model configuration"))
    model, config, data, evaluate_fn, meta = _load_model_from_checkpoint(path, args.data_dir)
    model.eval()
    print(f"{path}: {config['model']} on {config['dataset']}, epoch {meta['epoch']}")
    print(f"{'split':<8}{'accuracy':>10}{'loss':>10}")
    with no_grad():
        for split in ("val" if s == "dev" else s for s in args.splits):
            if not len(data[split]):
                print(f"{split:<8}{'(empty)':>10}")
                continue
            m = evaluate_fn(model, data[split])
            print(f"{split:<8}{m['acc'] * 100:>9.2f}%{m['loss']:>10.4f}")
    return 0


def cmd_gradcheck_mlp(args):
    from . import losses, nn
    from .gradcheck import gradcheck_params
    from .tensor import Tensor
    rng = np.random.default_rng(args.seed)
    sizes = args.sizes
    model = nn.MLP(sizes, activation=args.activation, output=None, seed=args.seed).to(np.float64)
    x = rng.standard_normal((args.batch, sizes[0]))
    y = rng.integers(0, sizes[-1], size=args.batch)
    onehot = np.eye(sizes[-1])[y]

    def loss_fn():
        z = model(Tensor._wrap(x))
        if args.loss == "ce":
            return losses.cross_entropy(z, y)
        if args.loss == "multilabel-bce":
            return losses.multilabel_bce(z, onehot, from_logits=True)
        return losses.l2(z.sigmoid(), onehot, reduction="mean")
    report = gradcheck_params(loss_fn, model.named_parameters())
    print(f"gradcheck mlp {sizes} {args.activation}, loss {args.loss}, batch {args.batch}, float64, "
          f"central differences eps=1e-6")
    print(f"{'parameter':<24}{'shape':<14}{'max abs err':>14}{'max rel err':>14}  ok")
    shapes = dict((n, p.shape) for n, p in model.named_parameters())
    for c in report.comparisons:
        print(f"{c.name:<24}{str(shapes.get(c.name, '')):<14}{c.max_abs:>14.3e}{c.max_rel:>14.3e}  "
              f"{'yes' if c.ok else 'NO'}")
    return 0 if report.ok else 1


# ------------------------------------------------------------------------------------------ main
def _limit_threads(n):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("chainrule: --threads needs threadpoolctl (pip install threadpoolctl); ignored", file=sys.stderr)
        return
    threadpool_limits(limits=n)


def build_parser():
    ap = argparse.ArgumentParser(prog="chainrule", description="Backpropagation made real: train, check and "
                                 "derive neural networks with chainrule's autodiff engine.")
    ap.add_argument("--threads", type=int, default=None,
                    help="BLAS threads (default: the BLAS library's own choice). Use 1 on a busy machine: "
                         "OpenBLAS worker threads competing for oversubscribed cores slow small matmuls many-fold")
    ap.add_argument("--debug", action="store_true",
                    help="show the full traceback of an error (default: one line naming the problem, exit code 2)")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    tr = sub.add_parser("train", help="train a model", description="Train a model and write checkpoints, "
                        "metrics (JSON lines) and plots to --out.")
    trs = tr.add_subparsers(dest="model", required=True, metavar="MODEL")
    p = trs.add_parser("mlp", help="multilayer perceptron on digits / MNIST / Fashion-MNIST",
                       description="Train an MLP. Default: scikit-learn's bundled digits, 64-512-256-10 ReLU, "
                       "dropout 0.3, cross-entropy, Adam, cosine schedule (finishes in seconds).")
    _add_mlp_args(p)
    p.set_defaults(func=cmd_train_mlp)

    ev = sub.add_parser("evaluate", help="evaluate a checkpoint", description="Evaluate a checkpoint written by "
                        "any 'chainrule train' command (MLP, window tagger, RNTN/RNN/Tree-LSTM, sequence "
                        "classifier), or the best checkpoint of a run directory, on its data set's splits.")
    ev.add_argument("checkpoint", help="a checkpoint of any 'chainrule train' command, or a run directory (--out)")
    ev.add_argument("--data-dir", default=None, help="data directory (default: the one the run was trained on)")
    ev.add_argument("--splits", nargs="+", default=["val", "test"], choices=["train", "val", "dev", "test"],
                    help="val and dev name the same split (the validation / development set)")
    ev.set_defaults(func=cmd_evaluate)

    gc = sub.add_parser("gradcheck", help="gradient-check a model in float64",
                        description="Compare the engine's gradients of a model's parameters with central "
                        "finite differences in float64 and print the max relative error per parameter.")
    gcs = gc.add_subparsers(dest="model", required=True, metavar="MODEL")
    p = gcs.add_parser("mlp", help="an MLP on a random batch")
    p.add_argument("--sizes", type=_int_list, default=[8, 16, 16, 4])
    p.add_argument("--activation", default="tanh", choices=["sigmoid", "tanh", "relu", "leaky_relu", "rrelu"])
    p.add_argument("--loss", default="ce", choices=["ce", "multilabel-bce", "l2"])
    p.add_argument("--batch", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_gradcheck_mlp)
    from .commands import derive
    derive.register(sub)
    from .commands import rntn as rntn_cmd
    rntn_cmd.register(sub, trs, gcs)
    from .commands import sequence as sequence_cmd
    sequence_cmd.register(sub, trs, gcs)
    from .commands import window as window_cmd
    window_cmd.register(sub, trs, gcs)
    from .commands import explain as explain_cmd
    explain_cmd.register(sub)
    return ap


def _distributed(args, argv):
    """``--workers N``: relaunch under mpiexec (returns its exit status).  Under mpiexec: start MPI,
    and mute stdout on ranks other than 0 (errors still reach stderr).  None: carry on here."""
    from . import distributed
    n = distributed.launched_size()
    workers = getattr(args, "workers", None)
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if n == 1 and workers and workers > 1:
        return distributed.launch(list(argv), workers)
    if n > 1:
        if workers not in (None, n):
            raise ValueError(f"--workers {workers}, but mpiexec started {n} processes; drop --workers under mpiexec")
        distributed.init()
        if not distributed.is_main():
            sys.stdout = open(os.devnull, "w")
    return None


#: Errors that mean "the input or the environment is wrong", not "chainrule has a bug": the command
#: prints one line naming the problem and exits with 2 (``--debug`` or CHAINRULE_DEBUG=1 shows the
#: traceback).  Every chainrule error class for bad input (CheckpointError, TreeParseError,
#: ConllFormatError, GloveFormatError, IdxFormatError, DAGSpecError, ...) is a ValueError; files that
#: are missing, unreadable or unwritable are OSErrors.  Anything else is a bug and keeps its traceback.
EXPECTED_ERRORS = (ValueError, OSError, EOFError)


def _quiet_broken_pipe():
    """stdout's reader went away (``chainrule ... | head``): stop quietly, as a Unix tool does."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141                 # 128 + SIGPIPE, what a shell reports for a tool killed by the pipe


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = build_parser()
    args = ap.parse_args(argv)
    args._argv = argv
    debug = getattr(args, "debug", False) or bool(os.environ.get("CHAINRULE_DEBUG"))
    if getattr(args, "threads", None):
        _limit_threads(args.threads)
    name = " ".join(v for v in (getattr(args, "command", None), getattr(args, "model", None)) if isinstance(v, str))
    try:
        rc = _distributed(args, argv)
    except (ImportError, ValueError) as e:
        print(f"chainrule {name}: error: {e}", file=sys.stderr)
        return 2
    if rc is not None:
        return rc
    try:
        rc = args.func(args) or 0
        sys.stdout.flush()          # a reader that went away shows up here, not at interpreter exit
        return rc
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except KeyboardInterrupt:
        print(f"chainrule {name}: interrupted", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as e:
        if debug:
            raise
        print(f"chainrule {name}: error: {_describe(e)}", file=sys.stderr)
        from .distributed import abort_all
        abort_all(2)             # under mpiexec: the other ranks must not wait for this one
        return 2


def _describe(e):
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    if isinstance(e, EOFError):
        return f"unexpected end of a file ({e}); the file is truncated"
    return str(e) or type(e).__name__


if __name__ == "__main__":    # pragma: no cover
    sys.exit(main())
