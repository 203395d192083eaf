"""Data sets: idx files, checksums, data-dir resolution, splits, standardisation, digits."""

import gzip
import hashlib
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from chainrule.data import datasets as D

FILES = D.IDX_FILES


def _idx_bytes(magic: int, shape, payload: bytes) -> bytes:
    """An idx file built by hand (independent of write_idx)."""
    return struct.pack(f">I{len(shape)}I", magic, *shape) + payload


def _write_fake_mnist(directory, n_train=60, n_test=20, seed=0):
    """Tiny MNIST-like idx .gz files; returns (their sha256 by name, the raw arrays)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "train_labels": np.arange(n_train, dtype=np.uint8) % 10,
        "test_images": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "test_labels": np.arange(n_test, dtype=np.uint8) % 10,
    }
    sums = {}
    for role, name in FILES.items():
        a = arrays[role]
        magic = 2051 if a.ndim == 3 else 2049
        data = gzip.compress(_idx_bytes(magic, a.shape, a.tobytes()), mtime=0)
        (directory / name).write_bytes(data)
        sums[name] = hashlib.sha256(data).hexdigest()
    return sums, arrays


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    sums, arrays = _write_fake_mnist(tmp_path / "mnist")
    monkeypatch.setitem(D.IDX_SHA256, "mnist", sums)
    monkeypatch.delenv("CHAINRULE_DATA_DIR", raising=False)
    return tmp_path / "mnist", sums, arrays


# --- idx format ------------------------------------------------------------------------------


def test_read_idx_hand_built_file(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    p = tmp_path / "imgs-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(_idx_bytes(2051, (2, 3, 4), images.tobytes())))
    out = D.read_idx(p, expected_magic=2051)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, images)
    # uncompressed works too (gzip is detected from the content)
    q = tmp_path / "labels-idx1-ubyte"
    q.write_bytes(_idx_bytes(2049, (5,), bytes([3, 1, 4, 1, 5])))
    assert D.read_idx(q).tolist() == [3, 1, 4, 1, 5]


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_write_idx_read_idx_round_trip(tmp_path, dtype):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if dtype == np.uint8:
        a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a.idx", "a.idx.gz"):
        D.write_idx(tmp_path / name, a)
        b = D.read_idx(tmp_path / name)
        assert b.dtype == np.dtype(dtype) and b.shape == a.shape
        np.testing.assert_array_equal(a, b)
    assert (tmp_path / "a.idx.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert (tmp_path / "a.idx").read_bytes()[:2] == b"\x00\x00"


def test_write_idx_header_is_standard(tmp_path):
    D.write_idx(tmp_path / "l.idx", np.array([7, 8, 9], dtype=np.uint8))
    assert (tmp_path / "l.idx").read_bytes() == _idx_bytes(2049, (3,), bytes([7, 8, 9]))
    with pytest.raises(ValueError, match="unsupported"):
        D.write_idx(tmp_path / "x.idx", np.zeros(3, dtype=np.int64))


def test_read_idx_wrong_magic_names_file(tmp_path):
    p = tmp_path / "train-labels-idx1-ubyte.gz"
    p.write_bytes(gzip.compress(_idx_bytes(2051, (1, 2, 2), bytes(4))))
    with pytest.raises(D.IdxFormatError) as info:
        D.read_idx(p, expected_magic=2049)
    msg = str(info.value)
    assert str(p) in msg and "wrong idx magic number 2051" in msg and "expected 2049" in msg

    q = tmp_path / "not-idx.gz"
    q.write_bytes(gzip.compress(b"<html>not found</html>"))
    with pytest.raises(D.IdxFormatError, match="not an idx file") as info:
        D.read_idx(q)
    assert str(q) in str(info.value)


def test_read_idx_truncated_and_oversized(tmp_path):
    full = _idx_bytes(2051, (2, 4, 4), bytes(32))
    p = tmp_path / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(full[:-5]))
    with pytest.raises(D.IdxFormatError) as info:
        D.read_idx(p)
    msg = str(info.value)
    assert str(p) in msg and "truncated idx data" in msg and "(2, 4, 4)" in msg
    assert "48 bytes" in msg and "has 43 bytes" in msg

    p.write_bytes(gzip.compress(full[:9]))
    with pytest.raises(D.IdxFormatError, match="truncated idx header"):
        D.read_idx(p)
    p.write_bytes(b"\x00\x00")
    with pytest.raises(D.IdxFormatError, match="too short"):
        D.read_idx(p)
    p.write_bytes(gzip.compress(full + b"xx"))
    with pytest.raises(D.IdxFormatError, match="extra bytes"):
        D.read_idx(p)
    p.write_bytes(gzip.compress(full)[:-12])  # a cut gzip stream
    with pytest.raises(D.IdxFormatError, match="not a valid gzip file|gzip stream ends early"):
        D.read_idx(p)


# --- files, checksums, where to look ---------------------------------------------------------


def test_load_fake_mnist(fake_mnist):
    d, _, arrays = fake_mnist
    s = D.load("mnist", d, val_fraction=0.1, standardize=False)
    assert s.name == "mnist" and s.image_shape == (28, 28) and s.classes == [str(i) for i in range(10)]
    X, y = s.train
    assert X.dtype == np.float32 and X.shape == (54, 784) and y.dtype == np.int64
    assert s.val[0].shape == (6, 784) and s.test[0].shape == (20, 784)
    assert 0.0 <= X.min() and X.max() <= 1.0
    np.testing.assert_allclose(s.test[0], arrays["test_images"].reshape(20, -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(s.test[1], arrays["test_labels"])
    # train + val are the official train set, in order
    both = np.concatenate([s.train[1], s.val[1]])
    assert sorted(both.tolist()) == sorted(arrays["train_labels"].tolist())
    assert s.mean is None and s.std is None
    assert "train=54, val=6, test=20" in repr(s)


def test_data_dir_may_be_the_parent(fake_mnist):
    d, _, _ = fake_mnist
    assert D.find_data_dir("mnist", d.parent) == d
    assert D.load("MNIST", d.parent).train[0].shape == (54, 784)


def test_data_dir_from_environment(fake_mnist, monkeypatch):
    d, _, _ = fake_mnist
    monkeypatch.setenv("CHAINRULE_DATA_DIR", str(d.parent))
    assert D.find_data_dir("mnist") == d
    assert D.load("mnist").test[0].shape == (20, 784)


def test_missing_file_message(tmp_path, monkeypatch):
    monkeypatch.delenv("CHAINRULE_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(FileNotFoundError) as info:
        D.load("fashion-mnist")
    msg = str(info.value)
    expected_dir = tmp_path / "home" / ".chainrule" / "data" / "fashion-mnist"
    assert "train-images-idx3-ubyte.gz" in msg
    assert str(expected_dir) in msg
    assert D.IDX_SHA256["fashion-mnist"]["train-images-idx3-ubyte.gz"] in msg
    assert "--data-dir" in msg and "CHAINRULE_DATA_DIR" in msg

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as info:
        D.load("mnist", empty)
    msg = str(info.value)
    assert str(empty) in msg and str(empty / "mnist") in msg and "train-images-idx3-ubyte.gz" in msg


def test_missing_second_file_names_it(fake_mnist):
    d, sums, _ = fake_mnist
    (d / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as info:
        D.load("mnist", d)
    msg = str(info.value)
    assert "t10k-labels-idx1-ubyte.gz" in msg and str(d) in msg
    assert sums["t10k-labels-idx1-ubyte.gz"] in msg


def test_checksum_mismatch_names_file_expected_and_actual(fake_mnist, monkeypatch):
    d, sums, _ = fake_mnist
    wrong = dict(sums)
    wrong["train-labels-idx1-ubyte.gz"] = "0" * 64
    monkeypatch.setitem(D.IDX_SHA256, "mnist", wrong)
    with pytest.raises(D.ChecksumError) as info:
        D.load("mnist", d)
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert str(d / "train-labels-idx1-ubyte.gz") in msg
    assert "0" * 64 in msg and sums["train-labels-idx1-ubyte.gz"] in msg


def test_corrupt_file_is_caught(fake_mnist):
    d, sums, _ = fake_mnist
    p = d / "t10k-images-idx3-ubyte.gz"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(D.ChecksumError) as info:
        D.load("mnist", d)
    msg = str(info.value)
    assert "t10k-images-idx3-ubyte.gz" in msg
    assert sums["t10k-images-idx3-ubyte.gz"] in msg
    assert hashlib.sha256(bytes(data)).hexdigest() in msg


def test_verification_is_cached_per_file(fake_mnist, monkeypatch):
    d, sums, _ = fake_mnist
    D.load("mnist", d)  # verifies all four
    calls = []
    real = hashlib.sha256

    def counting(data=b""):
        calls.append(len(data))
        return real(data)

    monkeypatch.setattr(D.hashlib, "sha256", counting)
    D.load("mnist", d)
    assert calls == []
    # a changed file (new mtime/size) is verified again
    p = d / "train-labels-idx1-ubyte.gz"
    content = p.read_bytes()
    p.write_bytes(content + b"")
    os.utime(p, ns=(1, 1))
    D.load("mnist", d)
    assert len(calls) == 1


def test_all_real_checksums_are_listed():
    for name in ("mnist", "fashion-mnist"):
        assert set(D.IDX_SHA256[name]) == set(FILES.values())
        for digest in D.IDX_SHA256[name].values():
            assert len(digest) == 64 and int(digest, 16) >= 0


# --- splits and standardisation --------------------------------------------------------------


def test_train_val_split_reproducible_stratified_disjoint():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), [50, 30, 15, 5])
    rng.shuffle(y)
    X = np.arange(100, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    (Xa, ya), (Xb, yb) = D.train_val_split(X, y, 0.2, seed=3)
    (Xa2, ya2), (Xb2, yb2) = D.train_val_split(X, y, 0.2, seed=3)
    np.testing.assert_array_equal(Xb, Xb2)
    np.testing.assert_array_equal(ya, ya2)
    (_, _), (Xc, _) = D.train_val_split(X, y, 0.2, seed=4)
    assert not np.array_equal(Xb, Xc)
    assert len(yb) == 20 and len(ya) == 80
    assert np.bincount(yb, minlength=4).tolist() == [10, 6, 3, 1]
    ids = np.concatenate([Xa[:, 0], Xb[:, 0]])
    assert sorted(ids.tolist()) == list(range(100))  # disjoint and complete
    assert np.all(np.diff(Xa[:, 0]) > 0) and np.all(np.diff(Xb[:, 0]) > 0)  # original order kept
    np.testing.assert_array_equal(y[Xb[:, 0].astype(int)], yb)  # rows and labels stay paired


def test_train_val_split_edge_cases():
    X, y = np.zeros((10, 2)), np.arange(10) % 2
    (Xa, ya), (Xb, yb) = D.train_val_split(X, y, 0.0)
    assert len(ya) == 10 and Xb.shape == (0, 2)
    with pytest.raises(ValueError, match="val_fraction"):
        D.train_val_split(X, y, 1.0)
    with pytest.raises(ValueError, match="10 labels"):
        D.train_val_split(X[:5], y)


def test_standardize_uses_training_statistics_only():
    rng = np.random.default_rng(1)
    train = rng.normal(3.0, 2.0, size=(500, 4)).astype(np.float32)
    test = rng.normal(10.0, 5.0, size=(100, 4)).astype(np.float32)
    (a, b), mean, std = D.standardize(train, test)
    np.testing.assert_allclose(mean, train.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, train.std(0), rtol=1e-5)
    np.testing.assert_allclose(a.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(a.std(0), 1, rtol=1e-4)
    np.testing.assert_allclose(b, (test - train.mean(0)) / train.std(0), rtol=1e-4, atol=1e-4)
    assert abs(b.mean()) > 1  # the test data was not centred on itself
    assert a.dtype == b.dtype == np.float32
    assert not np.shares_memory(a, train)  # copy=True leaves the inputs alone


def test_standardize_std_floor_and_in_place():
    X = np.array([[0.0, 5.0], [1.0, 5.0], [2.0, 5.0]], dtype=np.float32)
    other = np.array([[1.0, 6.0]], dtype=np.float32)
    (a, b), mean, std = D.standardize(X, other, std_floor=0.5)
    assert std[1] == np.float32(0.5) and np.isfinite(a).all()
    assert b[0, 1] == pytest.approx(2.0)
    (c,), _, _ = D.standardize(X, copy=False)
    assert c is X
    with pytest.raises(ValueError, match="expected \\(N, 2\\)"):
        D.standardize(X, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="std_floor"):
        D.standardize(X, std_floor=0)


def test_load_standardizes_with_train_statistics(fake_mnist):
    d, _, _ = fake_mnist
    raw = D.load("mnist", d, standardize=False, seed=5)
    s = D.load("mnist", d, seed=5)
    np.testing.assert_allclose(s.mean, raw.train[0].mean(0), rtol=1e-5, atol=1e-6)
    expected_std = np.maximum(raw.train[0].std(0), D.STD_FLOOR)
    np.testing.assert_allclose(s.std, expected_std, rtol=1e-4)
    for part in ("train", "val", "test"):
        np.testing.assert_allclose(
            getattr(s, part)[0], (getattr(raw, part)[0] - s.mean) / s.std, rtol=1e-5, atol=1e-5
        )
        np.testing.assert_array_equal(getattr(s, part)[1], getattr(raw, part)[1])
    np.testing.assert_allclose(s.train[0].mean(0), 0, atol=1e-5)


def test_load_argument_errors():
    with pytest.raises(ValueError, match="unknown data set 'cifar10'.*digits, mnist, fashion-mnist"):
        D.load("cifar10")
    with pytest.raises(ValueError, match="val_fraction"):
        D.load("digits", val_fraction=-0.1)


# --- digits (scikit-learn's bundled copy) ----------------------------------------------------


def test_digits_splits():
    pytest.importorskip("sklearn")
    s = D.load("digits")
    assert s.name == "digits" and s.image_shape == (8, 8) and s.num_classes == 10 and s.num_features == 64
    n = sum(len(getattr(s, p)[1]) for p in ("train", "val", "test"))
    assert n == 1797
    assert len(s.test[1]) == round(0.2 * 1797)
    assert len(s.val[1]) == round(0.1 * (1797 - len(s.test[1])))
    for X, y in (s.train, s.val, s.test):
        assert X.dtype == np.float32 and y.dtype == np.int64 and X.shape[1] == 64
        assert set(np.unique(y)) == set(range(10))
    np.testing.assert_allclose(s.train[0].mean(0), 0, atol=1e-5)

    other = D.load("digits", seed=1)
    np.testing.assert_array_equal(s.test[1], other.test[1])  # fixed hold-out
    assert not np.array_equal(s.val[1], other.val[1]) or not np.array_equal(s.val[0], other.val[0])
    again = D.load("digits")
    np.testing.assert_array_equal(s.val[0], again.val[0])

    raw = D.load("digits", standardize=False)
    assert raw.train[0].min() == 0.0 and raw.train[0].max() == 1.0


def test_import_does_not_load_sklearn():
    code = (
        "import sys, chainrule.data as d; import chainrule.data.datasets, chainrule.data.trees, "
        "chainrule.data.conll, chainrule.data.embeddings, chainrule.data.sst; "
        "d.parse_tree; "
        "assert 'sklearn' not in sys.modules, 'sklearn imported'"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_digits_read_without_importing_sklearn_equal_load_digits():
    """The digits are read from scikit-learn's bundled CSV directly (its import costs ~0.7 s); the
    arrays are exactly those of sklearn.datasets.load_digits."""
    from sklearn.datasets import load_digits
    from chainrule.data import datasets
    path = datasets._digits_csv()
    assert path is not None and path.endswith("digits.csv.gz")
    data = np.loadtxt(path, delimiter=",")
    bunch = load_digits()
    np.testing.assert_array_equal(data[:, :-1], bunch.data)
    np.testing.assert_array_equal(data[:, -1], bunch.target)


def test_a_file_of_another_data_set_is_a_mismatch_not_corruption(tmp_path, monkeypatch):
    """A valid MNIST checkpoint evaluated with Fashion-MNIST's files was reported as a corrupt file
    ("delete it and copy it again"); an intact file of another data set is a data set mismatch."""
    import hashlib
    from chainrule.data import datasets as D
    mnist, fashion = b"mnist images", b"fashion images"
    table = {"mnist": {"train-images-idx3-ubyte.gz": hashlib.sha256(mnist).hexdigest()},
             "fashion-mnist": {"train-images-idx3-ubyte.gz": hashlib.sha256(fashion).hexdigest()}}
    monkeypatch.setattr(D, "IDX_SHA256", table)
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(fashion)
    with pytest.raises(D.ChecksumError, match="data set mismatch.*fashion-mnist's train-images.*mnist is expected"):
        D.verify_sha256(p, table["mnist"]["train-images-idx3-ubyte.gz"])
    p.write_bytes(b"damaged")
    with pytest.raises(D.ChecksumError, match="corrupt"):
        D.verify_sha256(p, table["mnist"]["train-images-idx3-ubyte.gz"])
