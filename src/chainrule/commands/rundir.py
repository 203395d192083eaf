"""The run directory (``--out``) of ``chainrule train``: checked before any training, resumed only
with the flags it was started with, never overwritten by accident.

* :func:`preflight_out` -- ``--out`` must be (or become) a writable directory with room for the
  checkpoints; a file in its place, a read-only or full file system is one clear error before the
  data is even loaded.
* :func:`begin_run` -- a run without ``--resume`` into a directory that holds an earlier run's
  files is refused unless ``--overwrite`` (which deletes them); ``--resume`` is refused when flags
  given on the command line differ from the run's configuration, except the flags that may change
  on resume (:data:`MAY_CHANGE_ON_RESUME`).
* Resume and ``--epochs``: a run may be extended (``--resume --epochs N`` with N larger than the
  epochs it was started with) when its learning-rate schedule does not depend on the number of
  epochs (``--schedule none``, and the commands without a schedule).  A run whose schedule spans its
  planned epochs (cosine, step) is refused: past its end the cosine schedule trains at learning rate
  0, and stretching it would change the epochs already trained -- start a new run with the larger
  ``--epochs`` instead.  ``--epochs`` below the epochs already finished is refused too.
* :func:`check_config_bounds` -- a configuration read from a checkpoint is sanity-checked before a
  model is built from it: sizes must be positive integers no larger than the largest dimension of
  any array the file holds (a crafted ``hidden [200000, 200000]`` is refused instead of allocating
  160 GB).
"""
from __future__ import annotations

import errno
import math
import os
import tempfile

__all__ = ["RunDirError", "preflight_out", "check_space", "begin_run", "given_flags", "check_config_bounds",
           "resolve_checkpoint", "RUN_FILES", "MAY_CHANGE_ON_RESUME"]

#: the files a training run writes into --out
RUN_FILES = ("last.safetensors", "best.safetensors", "metrics.jsonl", "results.json", "curves.png")
#: flags that may differ from the run's own when it is resumed (they do not change what is computed,
#: or -- epochs -- are checked separately)
MAY_CHANGE_ON_RESUME = frozenset({"epochs", "patience", "progress", "data_dir", "out", "resume", "overwrite",
                                  "log_every", "threads", "debug", "eval_limit", "workers"})
#: configuration keys holding layer sizes, bounded by the checkpoint's own array dimensions
SIZE_KEYS = ("hidden", "dim", "embed_dim", "caps_dim", "attention_size")
#: small counts, bounded outright
COUNT_BOUNDS = {"layers": 64, "window": 1001, "num_classes": 100_000}


class RunDirError(ValueError):
    """--out cannot be used for this run, or --resume does not fit the run found there."""


def _reason(e):
    return {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
            errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
            errno.EPERM: "operation not permitted", errno.ENOTDIR: "a path component is not a directory",
            errno.EEXIST: "exists and is not a directory"}.get(e.errno, e.strerror or str(e))


def preflight_out(out, probe_bytes=64 * 1024):
    """Make sure ``out`` is a directory this process can write files into, before anything runs.

    Creates it if needed, then writes, fsyncs and deletes a small probe file there.  Raises
    :class:`RunDirError` naming ``out`` and the reason (not a directory, read-only, permission
    denied, no space left)."""
    if os.path.lexists(out) and not os.path.isdir(out):
        raise RunDirError(f"--out {out}: exists and is not a directory; choose a directory for the run's files")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"--out {out}: cannot create the directory ({_reason(e)})") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".tmp-probe-", dir=out)
    except OSError as e:
        raise RunDirError(f"--out {out}: cannot write files there ({_reason(e)})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"\0" * probe_bytes)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise RunDirError(f"--out {out}: cannot write files there ({_reason(e)})") from None
    finally:
        try:
            os.unlink(probe)
        except OSError:
            pass


def checkpoint_bytes(model, optimizer_copies=2):
    """Rough size of one checkpoint: the parameters plus up to ``optimizer_copies`` optimizer
    arrays of the same size (Adam's m and v)."""
    return sum(p.data.nbytes for p in model.parameters()) * (1 + optimizer_copies)


def check_space(out, model):
    """Refuse to start when the file system of ``out`` has less free space than the run needs:
    best and last checkpoints plus the temporary copy written next to one of them."""
    need = 3 * checkpoint_bytes(model) + (1 << 20)
    try:
        st = os.statvfs(out)
    except (OSError, AttributeError):
        return
    free = st.f_bavail * st.f_frsize
    if free < need:
        raise RunDirError(f"--out {out}: only {free / 2**20:.1f} MB free on its file system; this run's "
                          f"checkpoints need about {need / 2**20:.1f} MB (best, last and a temporary copy)")


def given_flags(args):
    """The destinations of the options given explicitly on the command line (abbreviations included),
    from ``args._argv`` (set by :func:`chainrule.cli.main`) and the parser that
    :func:`~chainrule.commands.add_run_args` recorded; without ``_argv``, the options whose value
    differs from their default."""
    parser, argv = getattr(args, "_parser", None), getattr(args, "_argv", None)
    if parser is None:
        return set()
    if argv is None:       # parsed without chainrule.cli.main: the options whose value is not the default
        return {a.dest for a in parser._actions
                if a.option_strings and a.dest != "help" and getattr(args, a.dest, a.default) != a.default}
    by_opt = {}
    for action in parser._actions:
        for opt in action.option_strings:
            by_opt[opt] = action.dest
    given = set()
    for tok in argv:
        if tok == "--":
            break
        if not tok.startswith("-") or tok == "-":
            continue
        key = tok.split("=", 1)[0]
        if key in by_opt:
            given.add(by_opt[key])
        elif key.startswith("--"):
            hits = {d for o, d in by_opt.items() if o.startswith(key)}
            if len(hits) == 1:
                given |= hits
    return given


def _flag(parser, dest):
    if parser is not None:
        for action in parser._actions:
            if action.dest == dest and action.option_strings:
                return max(action.option_strings, key=len)
    return "--" + dest.replace("_", "-")


def _check_size(key, v, biggest, path, least=1):
    vals = v if isinstance(v, list) else [v]
    for x in vals:
        if isinstance(x, bool) or not isinstance(x, int) or x < least:
            raise RunDirError(f"{path}: configuration field '{key}' is {v!r}; expected an integer >= {least} "
                              f"{'or a list of them ' if isinstance(v, list) else ''}(the file's metadata was edited "
                              "or damaged)")
        if biggest is not None and x > biggest:
            raise RunDirError(f"{path}: configuration field '{key}' is {v!r}, but no array in the checkpoint has a "
                              f"dimension above {biggest}; the configuration does not belong to these weights "
                              "(refused before building a model of that size)")


def check_config_bounds(config, arrays, path):
    """Sanity-check a configuration read from a checkpoint before building a model from it."""
    if not isinstance(config, dict):
        raise RunDirError(f"{path}: the model configuration in its metadata is a {type(config).__name__}, "
                          "not an object")
    dims = [d for k, a in arrays.items() if k.startswith("model.") for d in getattr(a, "shape", ())]
    biggest = max(dims) if dims else None
    for key in SIZE_KEYS:
        if config.get(key) is not None:
            _check_size(key, config[key], biggest, path, least=0)
    for key, bound in COUNT_BOUNDS.items():
        if config.get(key) is not None:
            _check_size(key, config[key], bound, path)
    for key in ("epochs", "batch_size"):
        if key in config:
            _check_size(key, config[key], None, path)
    lr = config.get("lr")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr < 0):
        raise RunDirError(f"{path}: configuration field 'lr' is {lr!r}; expected a finite non-negative number")


def _describe_run(out, meta):
    e = meta.get("epoch")
    total = ((meta.get("extra") or {}).get("config") or {}).get("epochs")
    return f"{e} of {total} epochs done" if isinstance(e, int) and total else "a checkpoint"


def begin_run(args, out, command, models, fresh_config, schedule_spans_epochs=None):
    """Check ``--out`` and decide what this run is: ``(config, meta)``.

    ``fresh_config()`` builds the configuration from the command line; ``meta`` is the resumed
    checkpoint's metadata (None for a new run).  ``schedule_spans_epochs(config)`` returns a
    description of the learning-rate schedule when it depends on the planned number of epochs (then
    ``--epochs`` may not change on resume), else None.  Raises :class:`RunDirError`."""
    from ..checkpoint import load_checkpoint, remove_stale_temps
    from ..train import check_trainer_meta
    preflight_out(out)
    last = os.path.join(out, "last.safetensors")
    overwrite = getattr(args, "overwrite", False)
    if not args.resume:
        existing = [f for f in RUN_FILES if os.path.lexists(os.path.join(out, f))]
        if existing:
            if not overwrite:
                raise RunDirError(f"--out {out} already holds a run ({', '.join(existing)}); continue it with "
                                  "--resume, start afresh with --overwrite (deletes those files), or choose "
                                  "another --out")
            from ..distributed import is_main
            for f in existing + ["metrics.previous.jsonl"] if is_main() else []:
                try:
                    os.unlink(os.path.join(out, f))
                except FileNotFoundError:
                    pass
        remove_stale_temps(out)
        return fresh_config(), None
    if overwrite:
        raise RunDirError("--resume continues the run in --out and --overwrite deletes it: give one of them")
    if not os.path.lexists(last):
        raise RunDirError(f"--resume: {out} holds no checkpoint to continue (no last.safetensors); "
                          "start the run without --resume")
    arrays, meta = load_checkpoint(last)
    check_trainer_meta(meta, last)
    extra = meta.get("extra")
    config = extra.get("config") if isinstance(extra, dict) else None
    if not isinstance(config, dict) or config.get("model") not in models:
        kind = config.get("model") if isinstance(config, dict) else None
        raise RunDirError(f"--resume: {last} is not a checkpoint of 'chainrule train {command}'"
                          + (f" (its model is {kind!r})" if kind else " (its metadata holds no model configuration)"))
    check_config_bounds(config, arrays, last)
    if command != "mlp" and not isinstance(extra.get("vocab"), (str, dict)):
        raise RunDirError(f"--resume: {last} holds no vocabulary in its metadata; it is not a checkpoint of "
                          f"'chainrule train {command}'")
    parser = getattr(args, "_parser", None)
    fresh = fresh_config()
    given = given_flags(args)
    differ = []
    for dest in sorted(given - MAY_CHANGE_ON_RESUME):
        if dest in fresh and dest in config and fresh[dest] != config[dest]:
            differ.append(f"{_flag(parser, dest)} {fresh[dest]!r} (the run has {config[dest]!r})")
    if differ:
        raise RunDirError(f"--resume: these flags differ from the run in {out}: {'; '.join(differ)}. A resumed run "
                          "keeps its configuration (only --epochs, --patience and output options may change); "
                          "start a new run with --overwrite or another --out to train with different settings")
    if "epochs" in given and fresh.get("epochs") != config.get("epochs"):
        new, done = fresh["epochs"], meta["epoch"]
        if new < done:
            raise RunDirError(f"--resume --epochs {new}: the run in {out} has already finished {done} epochs")
        spans = schedule_spans_epochs(config) if schedule_spans_epochs else None
        if spans:
            raise RunDirError(f"--resume --epochs {new}: the run in {out} was planned for {config['epochs']} epochs and "
                              f"its {spans} spans them (past the end it would train at a learning rate of 0; "
                              f"stretched, it would no longer match the epochs already trained). Start a new run "
                              f"with --epochs {new} (--overwrite or another --out), or use a run without a "
                              "schedule (--schedule none) when you want to extend it later")
        config = dict(config, epochs=new)
    return config, meta


def resolve_checkpoint(path):
    """A checkpoint path, or a run directory (its best.safetensors, else last.safetensors)."""
    if os.path.isdir(path):
        for name in ("best.safetensors", "last.safetensors"):
            p = os.path.join(path, name)
            if os.path.lexists(p):
                return p
        raise RunDirError(f"{path}: a directory without best.safetensors or last.safetensors; give a checkpoint "
                          "file or the --out directory of a 'chainrule train' run")
    return path
