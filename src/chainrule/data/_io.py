"""Reading the bytes and text of a data file, with every failure named by file (and line and column).

Shared by the readers of :mod:`chainrule.data` (CoNLL, GloVe, PTB trees, idx): a directory, FIFO or
device given for a file, a truncated or corrupt ``.gz``, text that is not UTF-8 -- each becomes the
reader's own error class (a ``ValueError``) naming the file and the place, never a bare
``EOFError``, ``IsADirectoryError`` or ``UnicodeDecodeError``.  A UTF-8 byte-order mark at the start
of a file is dropped (it would otherwise be glued to the first token or word).
"""
from __future__ import annotations

import gzip
import os
import stat
import zlib

BOM = b"\xef\xbb\xbf"


class SourceFormatError(ValueError):
    """A malformed data file: ``str(err)`` starts with ``file:line:`` (``file:line:column:`` when the
    column is known); ``reason``, ``source``, ``line``, ``column`` are kept.  Each reader subclasses it."""

    def __init__(self, reason: str, *, source: str, line: int | None, column: int | None = None):
        self.reason = reason
        self.source = source
        self.line = line
        self.column = column
        where = "".join(f":{v}" for v in (line, column) if v is not None)
        super().__init__(f"{source}{where}: {reason}")


def read_file_bytes(path, error, *, what="file"):
    """The bytes of ``path`` (decompressed if it starts with the gzip magic).

    ``error(reason, line=None, column=None)`` builds the reader's exception; it is raised for a
    path that is not a regular file and a truncated or corrupt gzip stream.  A missing file is a
    ``FileNotFoundError`` naming the path.

    The open-then-``fstat`` refusal of non-regular files is also written in
    :func:`chainrule.checkpoint.open_regular_file`, on purpose: there every failure (a missing file
    included) is one :class:`~chainrule.checkpoint.CheckpointError` worded for checkpoints, here the
    readers' own format errors (file, line, column) and a plain ``FileNotFoundError``; the checkpoint
    module does not import the data loaders."""
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {name}: no such file") from None
    except IsADirectoryError:
        raise error(f"is a directory, not a {what}") from None
    except OSError as e:
        raise error(f"cannot open it ({e.strerror or e})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode)
                    else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
            raise error(f"is {kind}, not a {what}; refused without reading it")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as fh:
            fd = None
            raw = fh.read()
    finally:
        if fd is not None:
            os.close(fd)
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except EOFError:
            raise error("the gzip stream ends early: the .gz file is truncated (copy it again)") from None
        except (gzip.BadGzipFile, zlib.error, OSError) as e:
            raise error(f"not a valid gzip file ({e}); the .gz file is damaged") from None
    return raw


def decode_text(raw, error, encoding="utf-8"):
    """``raw`` decoded (a leading UTF-8 byte-order mark dropped); an undecodable byte becomes
    ``error(reason, line, column)`` with the 1-based line and column (in bytes) of that byte."""
    if raw.startswith(BOM):
        raw = raw[len(BOM):]
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise error(f"not valid {encoding} text ({e.reason}, byte 0x{raw[e.start]:02x})", line, column) from None
