"""Run by tests/distributed/test_equivalence.py, alone or under ``mpiexec -n N``:

    python mpi_worker.py OUT_DIR MODEL [MODEL ...]

trains each tiny float64 model (dropout off) for a few steps with the Trainer (data-parallel when
started by mpiexec), evaluates it with the Trainer's (split) evaluation, and on rank 0 writes
``OUT_DIR/MODEL.npz`` (parameters) and ``OUT_DIR/MODEL.json`` (history, evaluation, world size).
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

from chainrule import distributed as D
from chainrule import optim
from chainrule.train import ArrayDataset, TrainConfig, Trainer

EPOCHS = 2
VAL = int(os.environ.get("CHAINRULE_TEST_VAL", 0)) or None    # a validation set of this many examples (sentences)


def setup_mlp():
    from chainrule.models import mlp
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 400)
    x = rng.standard_normal((10, 64))[y] + 1.5 * rng.standard_normal((400, 64))   # ten noisy blobs
    config = {"hidden": [16], "activation": "tanh", "dropout": 0.0, "seed": 1, "loss": "ce", "l2": 1e-3}
    model = mlp.build_model(config, 64, 10).to(np.float64)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    # 250 training examples, global batch 24: ten full batches and a last one of 10 (uneven on 3 ranks)
    return (model, opt, mlp.make_loss_fn(config, 10), mlp.make_evaluate_fn(config, 10, batch_size=64),
            ArrayDataset(x[:250], y[:250]), ArrayDataset(x[250:250 + (VAL or 150)], y[250:250 + (VAL or 150)]), 24)


def _ner_sentences(rng, n):
    from chainrule.data.conll import Sentence
    names, words = ["Anna", "Bob", "Carl", "Dora", "Emil"], ["the", "went", "to", "saw", "a", "city", "and", "then"]
    out = []
    for _ in range(n):
        toks, tags = [], []
        for _ in range(int(rng.integers(3, 9))):
            if rng.random() < 0.25:
                toks.append(str(rng.choice(names)))
                tags.append("I-PER" if rng.random() < 0.7 else "O")
            else:
                toks.append(str(rng.choice(words)))
                tags.append("O")
        out.append(Sentence(toks, None, None, tags))
    return out


def setup_window():
    from chainrule.models import window as W
    rng = np.random.default_rng(5)
    train_s, val_s = _ner_sentences(rng, 40), _ner_sentences(rng, VAL or 15)
    vocab = W.build_vocab(train_s, min_count=1)
    scheme = W.TagScheme("types", ["PER"])
    model = W.WindowClassifier(len(vocab), 6, window=3, hidden=8, n_tags=len(scheme), head="softmax",
                               caps_dim=2, seed=2).to(np.float64)
    opt = optim.AdaGrad(model.parameters(), lr=0.05)
    train = W.WindowData(train_s, vocab, 3, scheme)
    val = W.WindowData(val_s, vocab, 3, scheme)
    return model, opt, W.make_loss_fn(C=1e-2, m=len(train)), W.make_evaluate_fn(), train, val, 20


def _sst(n_train, n_val):
    from chainrule.data import sst
    trees = sst.load("dev")
    return trees[:n_train], trees[n_train:n_train + n_val]


def setup_rntn():
    # the default recipe's penalty on W, b, V, Ws and on the word vectors the batch used
    from chainrule.models import rntn as M
    train_t, val_t = _sst(30, VAL or 12)
    vocab = M.Vocab.from_trees(train_t)
    model = M.build_model({"model": "rntn", "dim": 4}, vocab, seed=4, dtype=np.float64)
    opt = optim.AdaGrad(model.parameters(), lr=0.05)
    return (model, opt, M.make_loss_fn(1e-2, 1e-2, 1e-2), M.evaluate_sharded,
            M.TreeDataset(train_t, vocab), M.TreeDataset(val_t, vocab), 7)


def setup_treelstm():
    # the Tree-LSTM's level-batched step through the same TreeDataset split and word penalty
    from chainrule.models import rntn as R
    from chainrule.models import treelstm as M
    train_t, val_t = _sst(20, VAL or 8)
    vocab = R.Vocab.from_trees(train_t)
    model = M.build_model({"dim": 4, "hidden": 5}, vocab, seed=7, dtype=np.float64)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    return (model, opt, M.make_loss_fn(1e-2, 1e-2, 1e-2), M.evaluate_sharded,
            R.TreeDataset(train_t, vocab), R.TreeDataset(val_t, vocab), 6)


def setup_lstm():
    # buckets of sentences of similar length (a dataset of batches) split inside each bucket
    from chainrule.models import sequence as S
    train_t, val_t = _sst(36, VAL or 12)
    vocab = S.build_vocab(train_t)
    model = S.SequenceClassifier(len(vocab), embed_dim=5, hidden_size=6, dropout=0.0, seed=6, dtype=np.float64)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    train = S.SequenceDataset(*S.make_examples(train_t, vocab))
    val = S.SequenceDataset(*S.make_examples(val_t, vocab))
    buckets = S.BucketedBatches(train, 8, seed=1)
    return model, opt, S.make_loss_fn(), S.evaluate_sharded, buckets, val, 1


SETUPS = {"mlp": setup_mlp, "window": setup_window, "rntn": setup_rntn, "treelstm": setup_treelstm,
          "lstm": setup_lstm}


def with_fault(loss_fn, spec):
    """CHAINRULE_TEST_FAULT=KIND:RANK:STEP[:MODEL] -- on that rank at that step (1-based) raise an
    error (KIND raise), never come back (KIND hang) or send itself SIGINT (KIND sigint: Ctrl-C on
    one rank only); with MODEL, only while training that model."""
    kind, at_rank, at_step = spec.split(":")[:3]
    calls = [0]

    def wrapped(model, batch):
        calls[0] += 1
        if D.rank() == int(at_rank) and calls[0] == int(at_step):
            if kind == "raise":
                raise RuntimeError(f"injected failure at step {at_step}")
            if kind == "sigint":
                import signal
                os.kill(os.getpid(), signal.SIGINT)
                return loss_fn(model, batch)
            import time
            time.sleep(3600)
        return loss_fn(model, batch)
    return wrapped


def main(out_dir, names):
    """Environment: CHAINRULE_TEST_EPOCHS (default 2), CHAINRULE_TEST_CKPT (the Trainer's out_dir:
    checkpoints), CHAINRULE_TEST_RESUME=1 (resume from CKPT/MODEL/last.safetensors first)."""
    epochs = int(os.environ.get("CHAINRULE_TEST_EPOCHS", EPOCHS))
    ckpt = os.environ.get("CHAINRULE_TEST_CKPT")
    for name in names:
        model, opt, loss_fn, evaluate_fn, train, val, batch = SETUPS[name]()
        fault = os.environ.get("CHAINRULE_TEST_FAULT", "")
        if fault and fault.split(":")[3:] in ([], [name]):
            loss_fn = with_fault(loss_fn, fault)
        tc = TrainConfig(epochs=epochs, batch_size=batch, seed=3, progress=False,
                         out_dir=os.path.join(ckpt, name) if ckpt else None)
        trainer = Trainer(model, opt, loss_fn, evaluate_fn, tc,
                          on_epoch_start=getattr(train, "reshuffle", None))
        if D.is_main():
            np.savez(os.path.join(out_dir, f"{name}.init.npz"), **{n: p.data for n, p in model.named_parameters()})
        if os.environ.get("CHAINRULE_TEST_RESUME"):
            trainer.load(os.path.join(ckpt, name, "last.safetensors"))
        try:
            trainer.fit(train, val)
        except KeyboardInterrupt:
            print(f"{name}: interrupted at epoch {trainer.epoch + 1} batch {trainer.batch} on rank {D.rank()}",
                  flush=True, file=sys.stderr)
            continue
        ev = trainer._evaluate(val)
        if D.is_main():
            np.savez(os.path.join(out_dir, f"{name}.npz"), **{n: p.data for n, p in model.named_parameters()})
            with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
                json.dump({"history": trainer.history, "eval": ev, "world_size": D.world_size()}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
