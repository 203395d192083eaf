"""Checkpoint files (issue 14): integrity hash, hostile paths, file mode, temporaries, full disk."""
import errno
import json
import os
import stat
import threading

import numpy as np
import pytest

from chainrule import checkpoint as ck
from chainrule.checkpoint import CheckpointError, load_checkpoint, remove_stale_temps, save_checkpoint


def _save(p, **meta):
    save_checkpoint(p, {"w": np.arange(64, dtype=np.float32).reshape(8, 8), "b": np.ones(3, np.int64)},
                    meta or {"epoch": 1})


def test_flipped_bytes_in_tensor_data_are_refused(tmp_path):
    p = tmp_path / "c.safetensors"
    _save(p)
    blob = bytearray(p.read_bytes())
    n = int.from_bytes(blob[:8], "little")
    for off in (8 + n + 5, 8 + n + 77, 8 + n + 140, len(blob) - 3):      # four bytes in the tensor data
        blob[off] ^= 0x41
    p.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match=r"c\.safetensors.*integrity hash"):
        load_checkpoint(p)


def test_edited_metadata_is_refused(tmp_path):
    p = tmp_path / "c.safetensors"
    _save(p, epoch=1)
    blob = p.read_bytes().replace(b'\\"epoch\\": 1', b'\\"epoch\\": 7')
    p.write_bytes(blob)
    with pytest.raises(CheckpointError, match="integrity hash"):
        load_checkpoint(p)


def test_checkpoint_without_hash_loads_with_a_warning(tmp_path):
    """Checkpoints written before the hash existed: loaded, with a warning that they are unverified."""
    from safetensors.numpy import save_file
    p = tmp_path / "old.safetensors"
    save_file({"w": np.ones(3, np.float32)}, str(p), metadata={"chainrule": json.dumps({"epoch": 2})})
    with pytest.warns(UserWarning, match="no integrity hash"):
        arrays, meta = load_checkpoint(p)
    assert meta == {"epoch": 2}
    np.testing.assert_array_equal(arrays["w"], np.ones(3, np.float32))


def test_checkpoint_file_mode_is_that_of_other_outputs(tmp_path):
    p = tmp_path / "c.safetensors"
    _save(p)
    other = tmp_path / "metrics.jsonl"
    other.write_text("x")
    assert stat.S_IMODE(p.stat().st_mode) == stat.S_IMODE(other.stat().st_mode)
    ck.atomic_write_text(tmp_path / "r.json", "{}")
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == stat.S_IMODE(other.stat().st_mode)


@pytest.mark.parametrize("kind", ["fifo", "directory", "symlink_to_directory", "symlink_to_fifo", "device"])
def test_non_regular_paths_are_refused_without_reading(tmp_path, kind):
    p = tmp_path / "c.safetensors"
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "directory":
        p.mkdir()
    elif kind == "symlink_to_directory":
        (tmp_path / "d").mkdir()
        p.symlink_to(tmp_path / "d")
    elif kind == "symlink_to_fifo":
        os.mkfifo(tmp_path / "f")
        p.symlink_to(tmp_path / "f")
    else:
        p = "/dev/zero"
    result = {}

    def run():
        try:
            load_checkpoint(p)
        except CheckpointError as e:
            result["err"] = str(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "load_checkpoint blocked on a non-regular file"
    assert "not a regular file" in result["err"] and str(p) in result["err"]


def test_stale_temporaries_are_removed(tmp_path):
    (tmp_path / ".tmp-abc.safetensors").write_bytes(b"x" * 100)
    (tmp_path / ".tmp-curves.png").write_bytes(b"x")
    (tmp_path / "keep.safetensors").write_bytes(b"x")
    assert sorted(remove_stale_temps(tmp_path)) == [".tmp-abc.safetensors", ".tmp-curves.png"]
    assert [f.name for f in tmp_path.iterdir()] == ["keep.safetensors"]


def test_full_disk_during_save_keeps_previous_and_says_so(tmp_path, monkeypatch):
    p = tmp_path / "c.safetensors"
    _save(p)
    before = p.read_bytes()
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(CheckpointError, match=r"no space left.*previous .*c\.safetensors is kept"):
        _save(p, epoch=2)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert p.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["c.safetensors"]


@pytest.mark.parametrize("blob,match", [
    (b"", "too short"),
    ((10 ** 12).to_bytes(8, "little") + b"{}", "header length"),
    ((2).to_bytes(8, "little") + b"[]", "not an object"),
    ((4).to_bytes(8, "little") + b"\xff\xfe{}", "not valid JSON"),
])
def test_malformed_headers_name_the_file(tmp_path, blob, match):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(blob)
    with pytest.raises(CheckpointError, match=match) as e:
        load_checkpoint(p)
    assert "bad.safetensors" in str(e.value)


def test_metadata_that_is_not_an_object(tmp_path):
    from safetensors.numpy import save_file
    p = tmp_path / "m.safetensors"
    save_file({"w": np.ones(1, np.float32)}, str(p), metadata={"chainrule": "[1, 2]"})
    with pytest.raises(CheckpointError, match="not an object"):
        load_checkpoint(p)
    save_file({"w": np.ones(1, np.float32)}, str(p), metadata={"chainrule": "[" * 100_000})
    with pytest.raises(CheckpointError, match="m.safetensors"):
        load_checkpoint(p)


def test_fifo_with_a_writer_is_refused(tmp_path):
    """The check is on the opened descriptor, so a FIFO with a writer attached is refused too."""
    p = tmp_path / "f"
    os.mkfifo(p)
    fd = os.open(p, os.O_RDWR | os.O_NONBLOCK)      # a writer that never writes
    try:
        with pytest.raises(CheckpointError, match="FIFO"):
            load_checkpoint(p)
    finally:
        os.close(fd)
