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
(best validation metric), ``metrics.jsonl`` (one JSON object per epoch, appended as it ends) and
``curves.png`` (when training ends or is interrupted).

Under MPI (``mpiexec -n N``, see :mod:`chainrule.distributed`) the same Trainer trains
data-parallel: each rank takes ``idx[rank::N]`` of every global batch, gradients are averaged so
the update equals one process on the global batch, evaluation is split when ``evaluate_fn`` is a
:class:`ShardedEvaluation`, and rank 0 alone prints and writes.  ``batch_size`` is the global batch.
"""
from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import dataclass, field

import numpy as np

from .autograd import no_grad
from .checkpoint import load_checkpoint, save_checkpoint

__all__ = ["ArrayDataset", "Trainer", "TrainConfig", "ShardedEvaluation", "minibatches", "rng_state",
           "set_rng_state", "module_generators", "plot_history"]


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
            return
        meta["world_size"] = self.dist.size
        meta["rank_module_rng_states"] = self.dist.gather_json(meta["module_rng_states"], "checkpoint")
        if self.dist.is_main:
            save_checkpoint(path, arrays, meta)
        self.dist.barrier(f"barrier after writing {path}")

    def load(self, path):
        """Restore everything a resumed run needs, from a checkpoint written by :meth:`save`."""
        arrays, meta = load_checkpoint(path)
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
        return meta

    def _forward_backward(self, train, idx):
        """Loss and gradients of the global batch ``idx``: ``(mean loss, correct, count)``.
        Data-parallel: this rank's share, then the weighted gradient allreduce (which also carries
        the statistics and the Ctrl-C flag, so every rank agrees where to stop)."""
        if self.dist is None:
            loss, stats = self.loss_fn(self.model, train.batch(idx))
            self.optimizer.zero_grad()
            loss.backward()
            return float(loss.item()), int(stats.get("correct", 0)), int(stats.get("count", 0))
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

    def fit(self, train, val=None):
        """Train until ``config.epochs`` epochs are done or early stopping triggers.
        Returns the history (one dict of metrics per epoch)."""
        cfg = self.config
        try:
            from tqdm.auto import tqdm
        except ImportError:       # pragma: no cover
            tqdm = None
        # Ctrl-C sets a flag; the loop stops at the next batch boundary, where model, optimizer,
        # counters and RNGs agree, so the checkpoint resumes bit for bit.  A second Ctrl-C aborts.
        self._stop = False

        def on_sigint(signum, frame):
            if self._stop:
                raise KeyboardInterrupt
            self._stop = True
        try:
            prev_handler = signal.signal(signal.SIGINT, on_sigint)
        except ValueError:            # not the main thread: plain KeyboardInterrupt semantics
            prev_handler = None
        if self.dist is not None and not self._synced:
            self.dist.sync_start(self.model, module_generators(self.model), decorrelate=not self._rank_rngs_restored)
            self._synced = True
        try:
            while self.epoch < cfg.epochs:
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
                    if self._stop_agreed if self.dist is not None else self._stop:
                        raise KeyboardInterrupt
                if bar is not None:
                    bar.close()
                dt = time.perf_counter() - t0
                self.train_seconds += dt
                # ---- end of epoch
                if self.scheduler is not None:
                    self.scheduler.step()
                r = self._running
                rec = {"epoch": self.epoch + 1, "train_loss": r["loss"] / max(r["n"], 1),
                       "train_seconds": dt, "examples_per_s": seen / max(dt, 1e-9),
                       "lr": float(getattr(self.optimizer, "lr", float("nan")))}
                if r["count"]:
                    rec["train_acc"] = r["correct"] / r["count"]
                if val is not None:
                    self.model.eval()
                    with no_grad():
                        vm = self._evaluate(val)
                    rec.update({f"val_{k}": v for k, v in vm.items()})
                self.history.append(rec)
                self.epoch += 1
                self.batch = 0
                improved = self._better(rec.get(f"val_{cfg.monitor}"))
                if improved:
                    self.best, self.best_epoch, self.bad_epochs = rec[f"val_{cfg.monitor}"], self.epoch, 0
                else:
                    self.bad_epochs += 1
                rec["best"] = improved
                if self.dist is not None:
                    self.dist.verify(self.model, f"after epoch {self.epoch}")
                if cfg.out_dir:
                    if self.is_main:
                        os.makedirs(cfg.out_dir, exist_ok=True)
                        with open(self._path("metrics.jsonl"), "a") as f:
                            f.write(json.dumps(rec) + "\n")
                    self.save(self._path("last.safetensors"))
                    if improved:
                        self.save(self._path("best.safetensors"))
                if self.is_main:
                    _print_epoch(rec, cfg.monitor)
                if cfg.patience is not None and self.bad_epochs >= cfg.patience:
                    if self.is_main:
                        print(f"early stopping: no improvement of val_{cfg.monitor} for {cfg.patience} epochs")
                    break
        except KeyboardInterrupt as e:
            if self.dist is not None and not self._stop_agreed:
                self.dist.fail(e)          # a rank-local interrupt (a second Ctrl-C): take all ranks down
            if cfg.out_dir:
                self.save(self._path("last.safetensors"))
                if self.is_main:
                    print(f"\ninterrupted: saved {self._path('last.safetensors')} "
                          f"(epoch {self.epoch + 1}, batch {self.batch}); continue with --resume")
            raise
        except Exception as e:
            if self.dist is not None:
                self.dist.fail(e)          # print this rank's traceback, abort every rank
            raise
        finally:
            if prev_handler is not None:
                signal.signal(signal.SIGINT, prev_handler)
            if cfg.out_dir and self.history and self.is_main:
                plot_history(self.history, self._path("curves.png"))   # once, at the end (or on Ctrl-C)
        return self.history


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


def plot_history(history, path):
    """Loss (train/val) and accuracy curves per epoch as a PNG (matplotlib, Agg backend)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:          # pragma: no cover
        return None
    ep = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    if history and "val_loss" in history[0]:
        axes[0].plot(ep, [h.get("val_loss") for h in history], "o-", label="validation")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    axes[0].legend()
    keys = [k for k in (history[0] if history else {}) if k.endswith("acc") or k.endswith("f1")]
    for k in keys:
        axes[1].plot(ep, [h.get(k) for h in history], "o-", label=k)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("accuracy")
    if keys:
        axes[1].legend()
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)
    return path

