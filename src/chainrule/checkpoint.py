"""Checkpoints in safetensors: arrays in the tensor section, everything else as JSON metadata.

Loading never unpickles and never runs code: a safetensors file is a JSON header plus raw bytes.
Writing goes to a temporary file in the same directory that is renamed over the target, so a crash
or Ctrl-C while writing leaves the previous checkpoint intact.
"""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np

__all__ = ["save_checkpoint", "load_checkpoint", "CheckpointError", "atomic_write_text"]

_META_KEY = "chainrule"


class CheckpointError(ValueError):
    """A checkpoint file that is missing, truncated, corrupt or of the wrong kind."""


def _safetensors():
    try:
        from safetensors.numpy import load, save
    except ImportError as e:      # pragma: no cover - the train extra installs it
        raise ImportError("checkpoints need the 'safetensors' package: pip install 'chainrule[train]'") from e
    return save, load


def save_checkpoint(path, arrays, meta=None):
    """Write ``arrays`` (name -> ndarray) and ``meta`` (JSON-serialisable) to ``path`` atomically."""
    save, _ = _safetensors()
    clean = {}
    for k, v in arrays.items():
        a = np.ascontiguousarray(v)
        if a.dtype == object:
            raise TypeError(f"save_checkpoint: array {k!r} has dtype object; only numeric arrays are stored")
        clean[k] = a
    header = {_META_KEY: json.dumps(meta or {}, sort_keys=True)}
    blob = save(clean, metadata=header)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path):
    """Read a checkpoint written by :func:`save_checkpoint`: returns ``(arrays, meta)``."""
    _, load = _safetensors()
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path}: no such file")
    with open(path, "rb") as f:
        blob = f.read()
    try:
        arrays = load(blob)
        n = int.from_bytes(blob[:8], "little")
        header = json.loads(blob[8:8 + n])
        meta = json.loads(header.get("__metadata__", {}).get(_META_KEY, "null"))
    except Exception as e:
        raise CheckpointError(f"checkpoint {path}: not a readable safetensors file ({type(e).__name__}: {e})") from None
    if meta is None:
        raise CheckpointError(f"checkpoint {path}: a safetensors file, but not a chainrule checkpoint "
                              f"(no '{_META_KEY}' metadata)")
    return arrays, meta


def atomic_write_text(path, text):
    """Write a text file through a temporary file and a rename."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
