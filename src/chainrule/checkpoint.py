"""Checkpoints in safetensors: arrays in the tensor section, everything else as JSON metadata.

Loading never unpickles and never runs code: a safetensors file is a JSON header plus raw bytes.
Writing goes to a temporary file in the same directory that is renamed over the target, so a crash
or Ctrl-C while writing leaves the previous checkpoint intact; a temporary file orphaned by kill -9
is removed by :func:`remove_stale_temps` (the Trainer calls it when a run starts).  Checkpoints get
the file mode of any other output (``0o666`` minus the umask), not ``mkstemp``'s private ``0o600``.

Integrity: the metadata holds ``chainrule.sha256``, a SHA-256 over the metadata JSON and every
array's name, dtype, shape and bytes; :func:`load_checkpoint` recomputes it and refuses a file whose
bytes changed (a flipped bit in the tensor data is otherwise a valid safetensors file).  Checkpoints
written before the hash existed (chainrule < 0.2) have no such key: they are loaded, with a warning
that they cannot be verified (re-save them to add the hash).

Only regular files are read: a FIFO, a device, a directory or a symlink to one is refused before it
is opened for reading (``O_NONBLOCK`` + ``fstat``), so a hostile path cannot hang or flood the loader.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import tempfile
import warnings

import numpy as np

__all__ = ["save_checkpoint", "load_checkpoint", "CheckpointError", "atomic_write_text", "remove_stale_temps",
           "checkpoint_digest", "open_regular_file"]

_META_KEY = "chainrule"
_HASH_KEY = "chainrule.sha256"
_TMP_PREFIX = ".tmp-"
_MAX_HEADER = 100_000_000            # safetensors' own limit on the JSON header


class CheckpointError(ValueError):
    """A checkpoint file that is missing, truncated, corrupt or of the wrong kind."""


def _safetensors():
    try:
        from safetensors.numpy import load, save
    except ImportError as e:      # pragma: no cover - the train extra installs it
        raise ImportError("checkpoints need the 'safetensors' package: pip install 'chainrule[train]'") from e
    return save, load


def checkpoint_digest(arrays, meta_json):
    """SHA-256 (hex) over the metadata JSON and each array's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    h.update(meta_json.encode("utf-8"))
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"\0{k}\0{a.dtype.str}\0{a.shape}\0".encode("utf-8"))
        h.update(memoryview(a).cast("B") if a.size else b"")
    return h.hexdigest()


def _file_mode():
    """0o666 minus the process umask: the mode ``open()`` gives every other output file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _write_atomic(path, data, what):
    """Write bytes to ``path`` through a temporary file in its directory, fsync, rename.  A failure
    leaves the previous file untouched and no temporary behind; a full disk or a read-only directory
    becomes a :class:`CheckpointError` saying so."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    suffix = os.path.splitext(str(path))[1] or ".tmp"
    try:
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=suffix, dir=d)
    except OSError as e:
        raise CheckpointError(_write_failure(path, what, e)) from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
            raise CheckpointError(_write_failure(path, what, e)) from e
        raise


def _write_failure(path, what, e):
    kept = (f"; the previous {path} is kept unchanged" if os.path.exists(path) else "; nothing was written")
    reason = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
              errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
              errno.EPERM: "operation not permitted"}.get(e.errno, e.strerror or str(e))
    return f"could not write the {what} {path}: {reason}{kept}"


def save_checkpoint(path, arrays, meta=None):
    """Write ``arrays`` (name -> ndarray) and ``meta`` (JSON-serialisable) to ``path`` atomically,
    with the integrity hash (see the module docstring) in the metadata."""
    save, _ = _safetensors()
    clean = {}
    for k, v in arrays.items():
        a = np.ascontiguousarray(v)
        if a.dtype == object:
            raise TypeError(f"save_checkpoint: array {k!r} has dtype object; only numeric arrays are stored")
        clean[k] = a
    meta_json = json.dumps(meta or {}, sort_keys=True, allow_nan=True)
    header = {_META_KEY: meta_json, _HASH_KEY: checkpoint_digest(clean, meta_json)}
    blob = save(clean, metadata=header)
    _write_atomic(path, blob, "checkpoint")


def open_regular_file(path, what="file", error=None):
    """Open ``path`` for binary reading only if it is a regular file (after following symlinks).

    A FIFO, socket, device or directory is refused without blocking on it (``O_NONBLOCK`` and
    ``fstat`` on the opened descriptor, so the check and the read see the same file).  Raises
    ``error`` (default :class:`CheckpointError`) naming the path and what it is instead."""
    error = error or CheckpointError
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{what} {path}: is a directory, not a file") from None
    except OSError as e:
        raise error(f"{what} {path}: cannot open ({e.strerror or e})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode)
                else "a character device" if stat.S_ISCHR(st.st_mode) else "a block device" if stat.S_ISBLK(st.st_mode)
                else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        via = " (through a symlink)" if os.path.islink(path) else ""
        raise error(f"{what} {path}: is {kind}{via}, not a regular file; refused without reading it")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def load_checkpoint(path):
    """Read a checkpoint written by :func:`save_checkpoint`: returns ``(arrays, meta)``.

    Raises :class:`CheckpointError` naming ``path`` for a missing file, something that is not a
    regular file, a file that is not safetensors, not a chainrule checkpoint, or whose bytes do not
    match the integrity hash written with it."""
    _, load = _safetensors()
    with open_regular_file(path, "checkpoint") as f:
        blob = f.read()
    if len(blob) < 8:
        raise CheckpointError(f"checkpoint {path}: {len(blob)} bytes, too short for a safetensors file "
                              "(an 8-byte header length comes first)")
    n = int.from_bytes(blob[:8], "little")
    if n > min(_MAX_HEADER, len(blob) - 8):
        raise CheckpointError(f"checkpoint {path}: header length {n} at byte 0 exceeds the file's "
                              f"{len(blob) - 8} remaining bytes; the file is truncated or not safetensors")
    try:
        header = json.loads(blob[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        where = f" (header line {e.lineno}, column {e.colno})" if isinstance(e, json.JSONDecodeError) else ""
        raise CheckpointError(f"checkpoint {path}: the safetensors header is not valid JSON{where}: "
                              f"{getattr(e, 'msg', None) or e}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"checkpoint {path}: the safetensors header is a JSON {type(header).__name__}, "
                              "not an object")
    try:
        arrays = load(blob)
    except Exception as e:
        raise CheckpointError(f"checkpoint {path}: not a readable safetensors file ({type(e).__name__}: {e})") from None
    md = header.get("__metadata__")
    if not isinstance(md, dict) or _META_KEY not in md:
        raise CheckpointError(f"checkpoint {path}: a safetensors file, but not a chainrule checkpoint "
                              f"(no '{_META_KEY}' metadata)")
    meta_json = md[_META_KEY]
    try:
        meta = json.loads(meta_json)
    except (TypeError, json.JSONDecodeError) as e:
        where = f" at line {e.lineno}, column {e.colno}" if isinstance(e, json.JSONDecodeError) else ""
        raise CheckpointError(f"checkpoint {path}: its '{_META_KEY}' metadata is not JSON{where}") from None
    except RecursionError:
        raise CheckpointError(f"checkpoint {path}: its '{_META_KEY}' metadata is nested too deeply") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {path}: its '{_META_KEY}' metadata is a JSON "
                              f"{type(meta).__name__}, not an object")
    want = md.get(_HASH_KEY)
    if want is None:
        warnings.warn(f"checkpoint {path} has no integrity hash (written before chainrule 0.2): loaded "
                      "without verification; save it again to add one", stacklevel=2)
    elif checkpoint_digest(arrays, meta_json) != want:
        raise CheckpointError(f"checkpoint {path}: its bytes do not match the integrity hash stored in it "
                              "(the file was modified or damaged after it was written); restore it from a "
                              "copy or train again")
    return arrays, meta


def remove_stale_temps(directory):
    """Delete temporary files (``.tmp-*``) that an interrupted atomic write left in ``directory``;
    returns their names.  Call it only when no other writer uses the directory."""
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if name.startswith(_TMP_PREFIX):
            p = os.path.join(directory, name)
            try:
                if os.path.isfile(p) and not os.path.islink(p):
                    os.unlink(p)
                    removed.append(name)
            except OSError:
                pass
    return removed


def atomic_write_text(path, text):
    """Write a text file through a temporary file and a rename."""
    _write_atomic(path, text.encode("utf-8"), "file")
