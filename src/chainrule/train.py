"""The training loop: seeded minibatches, a progress bar, evaluation each epoch, early stopping,
metrics as JSON lines, a loss/accuracy plot, checkpoints that resume bit for bit, and Ctrl-C that
saves before it exits.

The loop knows nothing of the model's kind.  It is given

* ``loss_fn(model, batch) -> (loss_tensor, stats)`` where ``stats`` may hold ``'correct'`` and
  ``'count'`` (for a running training accuracy);
* ``evaluate_fn(model, dataset) -> dict`` of metrics (``'loss'``, ``'acc'``, ...), run under
  ``no_grad`` in eval mode;
* datasets with ``len()`` and ``batch(indices)``; :class:`ArrayDataset` wraps arrays.

Files written to ``out_dir``: ``last.safetensors`` (every epoch and on Ctrl-C), ``best.safetensors``
(best validation metric; the last epoch when there is no validation set), ``metrics.jsonl`` (one
JSON object per epoch, appended as it ends) and ``curves.png`` (when training ends or is interrupted).

Crash safety.  Every checkpoint is written from a consistent state: Ctrl-C (or SIGTERM) only sets a
flag, honoured at the next batch boundary (or after the epoch's validation and saves), where the
state is saved and the run stops; a second Ctrl-C quits at once without writing.  At the end of an
epoch the files are written in the order best, last, metrics line, each atomically; a run that starts
(or resumes) rewrites ``metrics.jsonl`` from the checkpoint's history and removes temporary files an
earlier crash left, so after kill -9 at any point, ``--resume`` gives the weights of a straight run
bit for bit and a log without duplicate epochs.

Under MPI (``mpiexec -n N``, see :mod:`chainrule.distributed`) the same Trainer trains
data-parallel: each rank takes ``idx[rank::N]`` of every global batch, gradients are averaged so
the update equals one process on the global batch, evaluation is split when ``evaluate_fn`` is a
:class:`ShardedEvaluation`, and rank 0 alone prints and writes.  ``batch_size`` is the global batch.
An interrupt on any rank travels with the next gradient allreduce, so every rank stops after the
same batch; checkpoints are collective (rank 0 writes, with every rank's dropout generator state).
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from .autograd import no_grad
from .checkpoint import atomic_write_text, load_checkpoint, remove_stale_temps, save_checkpoint

__all__ = ["ArrayDataset", "Trainer", "TrainConfig", "ShardedEvaluation", "minibatches", "rng_state", "set_rng_state",
           "module_generators", "plot_history", "RunAborted", "TrainingDiverged", "check_trainer_meta"]


class ArrayDataset:
    """Examples as rows of arrays: ``batch(idx)`` returns ``tuple(a[idx] for a in arrays)``."""

    def __init__(self, *arrays):
        n = {len(a) for a in arrays}
        if len(n) != 1:
            raise ValueError(f"ArrayDataset: arrays of different lengths {[len(a) for a in arrays]}")
        self.arrays = arrays

    def __len__(self):
        return len(self.arrays[0])

    def batch(self, idx):
        return tuple(a[idx] for a in self.arrays)


class ShardedEvaluation:
    """An ``evaluate_fn`` in two parts, so data-parallel training can split it across ranks:

    * ``predict(model, data, lo, hi)`` -> a tuple of arrays about examples ``lo..hi-1`` of ``data``,
      whose first axes concatenate (rows per example, per node, per token, ...);
    * ``finish(data, arrays)`` -> the metrics dict, from the arrays of all of ``data`` in order.

    Called as ``evaluate_fn(model, data)`` it is ``finish(data, predict(model, data, 0, len(data)))``,
    so one process and N ranks compute the metrics from the same predictions.
    """

    def __init__(self, predict, finish):
        self.predict, self.finish = predict, finish

    def __call__(self, model, data):
        return self.finish(data, self.predict(model, data, 0, len(data)))


def minibatches(n, batch_size, rng=None):
    """Index arrays covering range(n) in batches; shuffled by ``rng`` (a np.random.Generator) if given."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def rng_state(gen):
    return gen.bit_generator.state


def set_rng_state(gen, state):
    gen.bit_generator.state = state


def module_generators(model):
    """(name, np.random.Generator) for every generator held by the model's modules (dropout, rrelu):
    saved in checkpoints so a resumed run draws the same random numbers."""
    out = []
    for mname, mod in model.named_modules():
        for k, v in vars(mod).items():
            if isinstance(v, np.random.Generator):
                out.append((f"{mname}.{k}" if mname else k, v))
    return out


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    seed: int = 0
    out_dir: str | None = None
    monitor: str = "acc"              # validation metric for model selection / early stopping
    mode: str = "max"                 # 'max' (accuracy) or 'min' (loss)
    patience: int | None = None       # epochs without improvement before stopping
    clip_norm: float | None = None
    progress: bool | None = None      # None: a bar when stderr is a terminal
    log_every: int = 0                # >0: also print a line every N batches
    verbose: bool = True              # False: no line per epoch (e.g. a DAG trained for 1000 tiny epochs)
    extra: dict = field(default_factory=dict)   # saved in the checkpoint (model config etc.)


class Trainer:
    """Runs epochs of minibatch training; see the module docstring."""

    def __init__(self, model, optimizer, loss_fn, evaluate_fn, config, scheduler=None,
                 on_epoch_start=None, distributed="auto"):
        """``distributed``: ``"auto"`` trains data-parallel when started by ``mpiexec -n N`` with
        N > 1 (:func:`chainrule.distributed.data_parallel`); a
        :class:`~chainrule.distributed.DataParallel` to use that one; None for one process."""
        self.model, self.optimizer, self.loss_fn, self.evaluate_fn = model, optimizer, loss_fn, evaluate_fn
        self.config, self.scheduler, self.on_epoch_start = config, scheduler, on_epoch_start
        self.rng = np.random.default_rng(config.seed)
        self.epoch = 0                 # the epoch in progress (or next to start)
        self.batch = 0                 # next batch within that epoch
        self.epoch_rng_state = rng_state(self.rng)
        self.history = []              # one dict per finished epoch
        self.best = None
        self.best_epoch = None
        self.bad_epochs = 0
        self.train_seconds = 0.0
        self._running = {"loss": 0.0, "n": 0, "correct": 0, "count": 0}
        self._stop = False
        self._saved_at = None          # (epoch, batch) of the last checkpoint this trainer wrote or read
        if distributed == "auto":
            from .distributed import data_parallel
            distributed = data_parallel()
        self.dist = distributed or None
        self.is_main = self.dist is None or self.dist.is_main
        self._synced = False
        self._rank_rngs_restored = False
        self._stop_agreed = False

    # ------------------------------------------------------------ checkpoints
    def state(self):
        if self.batch == 0:               # at an epoch boundary the next epoch's shuffle starts here
            self.epoch_rng_state = rng_state(self.rng)
        arrays = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        meta_opt = {}
        for k, v in self.optimizer.state_dict().items():
            if isinstance(v, np.ndarray):
                arrays[f"optim.{k}"] = v
            else:
                meta_opt[k] = v
        meta = {
            "format": "chainrule-checkpoint-1",
            "epoch": self.epoch, "batch": self.batch,
            "epoch_rng_state": self.epoch_rng_state,
            "module_rng_states": {n: rng_state(g) for n, g in module_generators(self.model)},
            "optimizer_scalars": meta_opt,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "history": self.history, "best": self.best, "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs, "train_seconds": self.train_seconds,
            "running": self._running,
            "config": {k: v for k, v in vars(self.config).items() if k != "extra"},
            "extra": self.config.extra,
        }
        return arrays, meta

    def save(self, path):
        """Write a checkpoint.  Data-parallel: every rank calls it; rank 0 writes (with every rank's
        dropout generator states), then all wait at a barrier, so the file exists on return."""
        arrays, meta = self.state()
        if self.dist is None:
            save_checkpoint(path, arrays, meta)
        else:
            meta["world_size"] = self.dist.size
            meta["rank_module_rng_states"] = self.dist.gather_json(meta["module_rng_states"], "checkpoint")
            if self.dist.is_main:
                save_checkpoint(path, arrays, meta)
            self.dist.barrier(f"barrier after writing {path}")
        self._saved_at = (self.epoch, self.batch)

    def load(self, path):
        """Restore everything a resumed run needs, from a checkpoint written by :meth:`save`.
        Metadata of the wrong shape (another kind of checkpoint, a hand-edited file) is a
        :class:`~chainrule.checkpoint.CheckpointError` naming the file and the field."""
        arrays, meta = load_checkpoint(path)
        check_trainer_meta(meta, path)
        model_sd = {k[6:]: v for k, v in arrays.items() if k.startswith("model.")}
        opt_sd = {k[6:]: v for k, v in arrays.items() if k.startswith("optim.")}
        opt_sd.update(meta.get("optimizer_scalars", {}))
        self.model.load_state_dict(model_sd)
        self.optimizer.load_state_dict(opt_sd)
        if self.scheduler is not None and meta.get("scheduler") is not None:
            self.scheduler.load_state_dict(meta["scheduler"])
        self.epoch, self.batch = meta["epoch"], meta["batch"]
        self.epoch_rng_state = meta["epoch_rng_state"]
        set_rng_state(self.rng, self.epoch_rng_state)
        gens = dict(module_generators(self.model))
        states = meta.get("module_rng_states", {})
        per_rank = meta.get("rank_module_rng_states")
        if self.dist is not None and per_rank and len(per_rank) == self.dist.size:
            states, self._rank_rngs_restored = per_rank[self.dist.rank], True
        for n, st in states.items():
            if n in gens:
                set_rng_state(gens[n], st)
        self.history = meta["history"]
        self.best, self.best_epoch, self.bad_epochs = meta["best"], meta["best_epoch"], meta["bad_epochs"]
        self.train_seconds = meta.get("train_seconds", 0.0)
        self._running = meta.get("running", self._running)
        self._saved_at = (self.epoch, self.batch)
        return meta

    def _forward_backward(self, train, idx):
        """Loss and gradients of the global batch ``idx``: ``(mean loss, correct, count)``.
        Data-parallel: this rank's share, then the weighted gradient allreduce, which also carries
        the statistics and the interrupt flag (so every rank agrees where to stop)."""
        if self.dist is None:
            loss, stats = self.loss_fn(self.model, train.batch(idx))
            self._last_units = stats.get("loss_units")     # see _record_units
            lv = float(loss.item())
            if math.isfinite(lv):          # a diverged loss is reported before any gradient is made
                self.optimizer.zero_grad()
                loss.backward()
            return lv, int(stats.get("correct", 0)), int(stats.get("count", 0))
        batch, n_local, n = self.dist.local_batch(train, idx)
        self.optimizer.zero_grad()
        lv, correct, count = 0.0, 0, 0
        if n_local:
            loss, stats = self.loss_fn(self.model, batch)
            loss.backward()
            lv, correct, count = float(loss.item()), int(stats.get("correct", 0)), int(stats.get("count", 0))
        w = n_local / n
        tot = self.dist.reduce(self.optimizer.params, w, np.array([lv * w, correct, count, float(self._stop)]))
        self._stop_agreed = bool(tot[3] > 0)
        return float(tot[0]), int(round(tot[1])), int(round(tot[2]))

    def _record_units(self, r):
        """A loss function may report ``loss_units``: the batch loss times the batch size sums that
        many terms (tree models: nodes).  The epoch's ``train_loss_per_unit`` is then on the scale of a
        per-node validation loss.  (Single process only: not carried through the MPI reduction.)"""
        units = getattr(self, "_last_units", None)
        if units and self.dist is None:
            r["units"] = r.get("units", 0) + int(units)

    def _stopping(self):
        """An interrupt is being honoured: this process's flag, or under MPI the flag all ranks agreed on."""
        return self._stop_agreed if self.dist is not None else self._stop

    def _evaluate(self, data):
        if self.dist is None:
            return self.evaluate_fn(self.model, data)
        return self.dist.evaluate(self.evaluate_fn, self.model, data)

    def _path(self, name):
        return os.path.join(self.config.out_dir, name) if self.config.out_dir else None

    # ------------------------------------------------------------ the loop
    def _better(self, value):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        if self.best is None:
            return True
        return value > self.best if self.config.mode == "max" else value < self.best

    def _check_config(self):
        cfg = self.config
        for name in ("epochs", "batch_size"):
            v = getattr(cfg, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (1 if name == "batch_size" else 0):
                raise ValueError(f"Trainer: {name} must be an integer >= {1 if name == 'batch_size' else 0}, got {v!r}")
        if cfg.patience is not None and (isinstance(cfg.patience, bool) or not isinstance(cfg.patience, (int, np.integer))
                                         or cfg.patience < 1):
            raise ValueError(f"Trainer: patience must be a positive integer or None, got {cfg.patience!r}")
        if cfg.mode not in ("max", "min"):
            raise ValueError(f"Trainer: mode must be 'max' or 'min', got {cfg.mode!r}")

    def _sync_metrics(self):
        """Make ``metrics.jsonl`` hold exactly the finished epochs this trainer knows of (the history
        restored from the checkpoint): lines a crash wrote after the last checkpoint are dropped, so
        a resumed run never logs an epoch twice."""
        path = self._path("metrics.jsonl")
        text = "".join(json.dumps(rec) + "\n" for rec in self.history)
        if not self.history and not os.path.exists(path):
            return
        try:
            with open(path) as f:
                if f.read() == text:
                    return
        except (OSError, UnicodeDecodeError):
            pass
        atomic_write_text(path, text)

    def _end_of_epoch_files(self, rec, improved):
        """best (if improved), then last, then the metrics line: a crash between any two leaves files
        a resume reconciles (a best.safetensors one epoch ahead is rewritten identically by the rerun;
        the metrics log is rewritten from the checkpoint's history)."""
        if improved:
            self.save(self._path("best.safetensors"))
        self.save(self._path("last.safetensors"))
        if self.is_main:
            with open(self._path("metrics.jsonl"), "a") as f:
                f.write(json.dumps(rec) + "\n")

    def _install_signal_handlers(self):
        """SIGINT (Ctrl-C) and SIGTERM set a flag the loop honours at the next batch boundary, where
        model, optimizer, scheduler, counters and RNGs agree; a second signal aborts at once without
        writing anything (the checkpoint on disk stays the last consistent one)."""
        self._stop = False
        self._signals = 0
        previous = {}

        def handler(signum, frame):
            self._signals += 1
            if self._signals > 1:
                raise RunAborted(signum)
            self._stop = True
            print("\ninterrupt: stopping at the end of this batch to save a consistent checkpoint "
                  "(interrupt again to quit at once without saving)", file=sys.stderr, flush=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[sig] = signal.signal(sig, handler)
            except (ValueError, OSError):     # not the main thread: plain KeyboardInterrupt semantics
                pass
        return previous

    def _saved_description(self, verb="holds"):
        last = self._path("last.safetensors")
        if last is None or self._saved_at is None or not os.path.exists(last):
            return "no checkpoint was saved"
        e, b = self._saved_at
        where = f"the state at the start of epoch {e + 1}" if b == 0 else f"epoch {e + 1} after batch {b}"
        return f"{verb} {last} ({where}); continue with --resume"

    def fit(self, train, val=None):
        """Train until ``config.epochs`` epochs are done or early stopping triggers.
        Returns the history (one dict of metrics per epoch).

        With no validation set (``val`` None or empty) the last epoch is the selected one: each
        epoch writes ``best.safetensors``, and early stopping is refused.  A non-finite training
        loss stops the run with :class:`TrainingDiverged` before the update is applied."""
        cfg = self.config
        self._check_config()
        has_val = val is not None and len(val) > 0
        if cfg.patience is not None and not has_val:
            raise ValueError("Trainer: early stopping (patience) needs a validation set, and this run has none")
        try:
            from tqdm.auto import tqdm
        except ImportError:       # pragma: no cover
            tqdm = None
        if cfg.out_dir and self.is_main:
            os.makedirs(cfg.out_dir, exist_ok=True)
            remove_stale_temps(cfg.out_dir)
            self._sync_metrics()
        previous = self._install_signal_handlers()
        self._stop_agreed = False
        failed = True
        try:
            if self.dist is not None and not self._synced:
                self.dist.sync_start(self.model, module_generators(self.model),
                                     decorrelate=not self._rank_rngs_restored)
                self._synced = True
            while self.epoch < cfg.epochs and not self._stopping():
                if self.batch == 0:
                    self.epoch_rng_state = rng_state(self.rng)
                    self._running = {"loss": 0.0, "n": 0, "correct": 0, "count": 0}
                    if self.on_epoch_start is not None:
                        self.on_epoch_start(self.epoch)
                else:
                    set_rng_state(self.rng, self.epoch_rng_state)
                batches = minibatches(len(train), cfg.batch_size, self.rng)
                show = cfg.progress if cfg.progress is not None else None
                bar = None
                if tqdm is not None and show is not False and self.is_main:
                    bar = tqdm(total=len(batches), initial=self.batch, desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                               leave=False, disable=None if show is None else not show, unit="batch")
                t0 = time.perf_counter()
                seen = 0
                self.model.train()
                for bi in range(self.batch, len(batches)):
                    idx = batches[bi]
                    if self.dist is not None:
                        self.dist.comm.context = f"epoch {self.epoch + 1} batch {bi + 1}"
                    lv, correct, count = self._forward_backward(train, idx)
                    if not math.isfinite(lv):
                        raise TrainingDiverged(f"training diverged: the loss is {lv} at epoch {self.epoch + 1}, "
                                               f"batch {bi + 1}; the update was not applied (lower the learning "
                                               "rate, or check the data)")
                    if cfg.clip_norm:
                        from .optim import clip_grad_norm
                        clip_grad_norm(self.optimizer.params, cfg.clip_norm)
                    self.optimizer.step()
                    # release the gradients now, not at the next step: large arrays freed in the
                    # order they were made let malloc reuse them (no fresh page faults next step)
                    self.optimizer.zero_grad()
                    r = self._running
                    r["loss"] += lv * len(idx)
                    r["n"] += len(idx)
                    r["correct"] += correct
                    r["count"] += count
                    self._record_units(r)
                    seen += len(idx)
                    self.batch = bi + 1
                    if bar is not None:
                        dt = time.perf_counter() - t0
                        bar.set_postfix(loss=f"{r['loss'] / r['n']:.4f}", ex_s=f"{seen / max(dt, 1e-9):.0f}",
                                        refresh=False)
                        bar.update(1)
                    if cfg.log_every and self.batch % cfg.log_every == 0 and self.is_main:
                        print(f"  epoch {self.epoch + 1} batch {self.batch}/{len(batches)} "
                              f"loss {r['loss'] / r['n']:.4f}", flush=True)
                    if self._stopping() and self.batch < len(batches):
                        break
                if bar is not None:
                    bar.close()
                dt = time.perf_counter() - t0
                self.train_seconds += dt
                if self.batch < len(batches):        # stopped inside the epoch, at a batch boundary
                    break
                # ---- end of epoch (an interrupt here only sets the flag: the epoch finishes and is saved)
                if self.scheduler is not None:
                    self.scheduler.step()
                r = self._running
                rec = {"epoch": self.epoch + 1, "train_loss": r["loss"] / max(r["n"], 1),
                       "train_seconds": dt, "examples_per_s": seen / max(dt, 1e-9),
                       "lr": float(getattr(self.optimizer, "lr", float("nan")))}
                if r["count"]:
                    rec["train_acc"] = r["correct"] / r["count"]
                if r.get("units"):        # on the validation loss's scale (mean per node, not per tree)
                    rec["train_loss_per_unit"] = r["loss"] / r["units"]
                if has_val:
                    self.model.eval()
                    with no_grad():
                        vm = self._evaluate(val)
                    rec.update({f"val_{k}": v for k, v in vm.items()})
                self.history.append(rec)
                self.epoch += 1
                self.batch = 0
                if has_val:
                    improved = self._better(rec.get(f"val_{cfg.monitor}"))
                    if improved:
                        self.best, self.best_epoch, self.bad_epochs = rec[f"val_{cfg.monitor}"], self.epoch, 0
                    else:
                        self.bad_epochs += 1
                else:                                # no validation set: the last epoch is the selected one
                    improved, self.best_epoch, self.bad_epochs = True, self.epoch, 0
                rec["best"] = improved
                if self.dist is not None:
                    self.dist.verify(self.model, f"after epoch {self.epoch}")
                if cfg.out_dir:
                    self._end_of_epoch_files(rec, improved)
                if self.is_main and cfg.verbose:
                    _print_epoch(rec, cfg.monitor)
                if cfg.patience is not None and self.bad_epochs >= cfg.patience:
                    if self.is_main:
                        print(f"early stopping: no improvement of val_{cfg.monitor} for {cfg.patience} epochs")
                    break
            if self._stopping() and cfg.out_dir and self._saved_at != (self.epoch, self.batch):
                self.save(self._path("last.safetensors"))     # still under the handlers: a 2nd Ctrl-C aborts it
            failed = False
        except RunAborted as e:
            print(f"\ninterrupted twice: quit without saving; the last checkpoint {self._saved_description('is')}",
                  file=sys.stderr, flush=True)
            if self.dist is not None:
                self.dist.fail(e)            # the other ranks would wait for this one forever
            raise
        except Exception as e:
            if self.dist is not None:
                self.dist.fail(e)            # print this rank's traceback, abort every rank
            raise
        finally:
            for sig, h in previous.items():
                signal.signal(sig, h)
            if cfg.out_dir and self.history and self.is_main:
                try:        # once, at the end (or on Ctrl-C); never masks the error that ended the run
                    plot_history(self.history, self._path("curves.png"), monitor=cfg.monitor,
                                 best_epoch=self.best_epoch)
                except Exception as e:
                    if not failed:
                        raise
                    print(f"(the plot {self._path('curves.png')} was not written: {e})", file=sys.stderr)
        if self._stopping():
            if self.is_main:
                print(f"\ninterrupted: {self._saved_description('saved')}", flush=True)
            raise KeyboardInterrupt
        return self.history


class RunAborted(KeyboardInterrupt):
    """A second interrupt: the run quit at once, without writing a checkpoint."""


class TrainingDiverged(ValueError):
    """The training loss became NaN or infinite; the offending update was not applied."""


_META_FIELDS = {"epoch": int, "batch": int, "epoch_rng_state": dict, "history": list, "bad_epochs": int}


def check_trainer_meta(meta, path):
    """Refuse checkpoint metadata a :class:`Trainer` cannot resume from, naming the field."""
    from .checkpoint import CheckpointError
    for key, typ in _META_FIELDS.items():
        if key not in meta:
            raise CheckpointError(f"checkpoint {path}: its metadata has no '{key}'; it was not written by the "
                                  "training loop (chainrule train ...)")
        v = meta[key]
        if isinstance(v, bool) or not isinstance(v, typ) or (typ is int and v < 0):
            raise CheckpointError(f"checkpoint {path}: metadata field '{key}' is {v!r} "
                                  f"({type(v).__name__}); expected a {'non-negative integer' if typ is int else typ.__name__}")
    if not all(isinstance(h, dict) for h in meta["history"]) or len(meta["history"]) != meta["epoch"]:
        raise CheckpointError(f"checkpoint {path}: metadata 'history' has {len(meta['history'])} entries for "
                              f"epoch {meta['epoch']}; the file is inconsistent")
    for key in ("best", "best_epoch"):
        if key not in meta:
            raise CheckpointError(f"checkpoint {path}: its metadata has no '{key}'")


def _print_epoch(rec, monitor):
    parts = [f"epoch {rec['epoch']:3d}", f"train loss {rec['train_loss']:.4f}"]
    if "train_acc" in rec:
        parts.append(f"acc {rec['train_acc']:.4f}")
    for k, v in rec.items():
        if k.startswith("val_") and isinstance(v, (int, float)):
            parts.append(f"{k} {v:.4f}")
    parts.append(f"{rec['examples_per_s']:.0f} ex/s")
    if rec.get("best"):
        parts.append("*")
    print("  ".join(parts), flush=True)


def plot_history(history, path, monitor=None, best_epoch=None):
    """Loss and metric curves per epoch as a PNG (matplotlib, Agg backend).

    Left: training and validation loss, on one scale: the mean per example, or -- when the loss
    function reports ``loss_units`` (tree models: nodes) -- the training loss per scored item, as the
    validation loss is (the RNTN's summed per-tree loss of ~45 beside a per-node loss of ~1 was
    unreadable).  Right: every accuracy/F1 metric, with the selection metric ``val_<monitor>`` drawn
    thicker and named in the legend.  The selected epoch (``best_epoch``) is marked in both panels.
    Written through a temporary file and a rename.

    Drawn on a bare ``matplotlib.figure.Figure`` (no pyplot: no global figure manager, ~0.2 s less to
    import) with fixed margins instead of ``tight_layout`` (which draws every text twice to measure
    it: ~35% of the plot's time; the margins fit the labels of these two panels)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:          # pragma: no cover
        return None
    ep = [h["epoch"] for h in history]
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    if history and "train_loss_per_unit" in history[0]:      # summed per example: plot it per scored item
        axes[0].plot(ep, [h.get("train_loss_per_unit") for h in history], "o-", color="C0",
                     label="train loss (mean per scored item, incl. penalty)")
    else:
        axes[0].plot(ep, [h["train_loss"] for h in history], "o-", color="C0", label="train loss (mean)")
    if history and "val_loss" in history[0]:
        axes[0].plot(ep, [h.get("val_loss") for h in history], "s-", color="C1", label="validation loss (mean)")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    keys = []
    for h in history:
        for k, v in h.items():
            if (k.endswith("acc") or k.endswith("f1") or (monitor and k == f"val_{monitor}")) \
                    and isinstance(v, (int, float)) and k not in keys:
                keys.append(k)
    sel = f"val_{monitor}" if monitor else None
    for i, k in enumerate(keys):
        label = k.replace("_", " ") + (" (selection metric)" if k == sel else "")
        axes[1].plot(ep, [h.get(k) for h in history], "o-", color=f"C{i + 2}", label=label,
                     linewidth=2.5 if k == sel else 1.2)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("accuracy / F1")
    if best_epoch is not None:
        for ax in axes:
            ax.axvline(best_epoch, color="0.4", linestyle="--", linewidth=1, label=f"selected epoch {best_epoch}")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.subplots_adjust(left=0.08, right=0.985, bottom=0.12, top=0.97, wspace=0.22)
    d, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(d, f".tmp-{base}")
    try:
        fig.savefig(tmp, dpi=90, format="png")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
