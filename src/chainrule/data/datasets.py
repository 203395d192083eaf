"""Image classification data sets as standardised NumPy arrays: digits, MNIST, Fashion-MNIST.

``load(name)`` returns :class:`Splits` with ``train``, ``val`` and ``test`` pairs
``(X float32 (N, D), y int64 (N,))``:

* ``'digits'``: scikit-learn's bundled 8x8 digits (1,797 images, no download). It has no official
  test set, so a fixed stratified 20% hold-out (always drawn with seed 0, whatever ``seed`` is) is
  the test split; validation is then split off the remaining 80% with ``seed``.
* ``'mnist'``, ``'fashion-mnist'``: the original idx ``.gz`` files (60,000 train + 10,000 test
  28x28 images); validation is split off the official training set with ``seed``. The files are
  not downloaded: each one's sha256 is checked against :data:`IDX_SHA256` before use.

Pixels are scaled to [0, 1]; then, with ``standardize=True``, each feature is centred and scaled
with the mean and standard deviation of the *training split only* (no information from val/test
leaks into the preprocessing). The statistics are kept in ``Splits.mean`` / ``Splits.std``.

Where the idx files are looked for (first match wins):

1. ``data_dir`` when given (the directory holding the four files, or its parent holding
   ``<name>/``);
2. ``$CHAINRULE_DATA_DIR/<name>``;
3. ``~/.chainrule/data/<name>``.

>>> s = load("digits")                                    # doctest: +SKIP
>>> s.train[0].shape, s.val[0].shape, s.test[0].shape     # doctest: +SKIP
((1293, 64), (144, 64), (360, 64))
"""

from __future__ import annotations

import gzip
import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "Splits",
    "load",
    "standardize",
    "apply_standardization",
    "train_val_split",
    "read_idx",
    "write_idx",
    "find_data_dir",
    "verify_sha256",
    "ChecksumError",
    "IdxFormatError",
    "IDX_FILES",
    "IDX_SHA256",
    "DATASETS",
    "STD_FLOOR",
]

DATASETS = ("digits", "mnist", "fashion-mnist")

#: The four idx files, by role.
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

#: sha256 of the original ``.gz`` files (their md5s are the ones torchvision and the Fashion-MNIST
#: README publish; see ``shared/data/SOURCES.md``).
IDX_SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}

_CLASSES = {
    "digits": [str(i) for i in range(10)],
    "mnist": [str(i) for i in range(10)],
    "fashion-mnist": [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ],
}
_IMAGE_SHAPE = {"digits": (8, 8), "mnist": (28, 28), "fashion-mnist": (28, 28)}
_DIGITS_TEST_FRACTION = 0.2
_DIGITS_TEST_SEED = 0

#: Smallest standard deviation used to scale a feature. Features are pixels in [0, 1]; a pixel
#: that is (almost) constant on the training set, such as MNIST's blank border, is divided by
#: this instead of by ~0, so it stays bounded (|x| <= 1/STD_FLOOR) on images where it is not blank.
STD_FLOOR = 0.1


class ChecksumError(ValueError):
    """A data file's sha256 is not the published one (corrupt or different file)."""


class IdxFormatError(ValueError):
    """A file is not a well-formed idx file (wrong magic number, truncated or oversized data)."""


Pair = tuple[np.ndarray, np.ndarray]


@dataclass
class Splits:
    """Train / validation / test splits of a classification data set.

    Each of ``train``, ``val`` and ``test`` is ``(X, y)``: ``X`` float32 ``(N, D)`` (one flattened
    image per row), ``y`` int64 ``(N,)`` with class indices into ``classes``. ``mean`` and
    ``std`` are the per-feature statistics of the training split used to standardise (``None``
    when ``standardize=False``); apply them to new data with :func:`apply_standardization`.
    """

    train: Pair
    val: Pair
    test: Pair
    classes: list[str]
    name: str
    image_shape: tuple[int, ...]
    mean: np.ndarray | None = field(default=None, repr=False)
    std: np.ndarray | None = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_features(self) -> int:
        return int(self.train[0].shape[1])

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={getattr(self, k)[0].shape[0]}" for k in ("train", "val", "test"))
        return (
            f"Splits(name={self.name!r}, {sizes}, features={self.num_features}, "
            f"classes={self.num_classes}, image_shape={self.image_shape}, standardized={self.mean is not None})"
        )


# ---------------------------------------------------------------------------------------------
# Preprocessing
# ---------------------------------------------------------------------------------------------


def standardize(
    X_train: np.ndarray, *others: np.ndarray, std_floor: float = STD_FLOOR, copy: bool = True
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Centre and scale every feature with statistics of ``X_train`` alone.

    ``mean = X_train.mean(0)``, ``std = max(X_train.std(0), std_floor)`` (two passes over blocks
    of rows, accumulated in float64), then ``(X - mean) / std`` for ``X_train`` and each array of
    ``others``.

    Args:
        X_train: ``(N, D)`` array the statistics are fitted on.
        *others: further ``(M, D)`` arrays (validation, test) transformed with the same statistics.
        std_floor: lower bound on the scale, so constant features do not divide by zero.
        copy: if false, float32 C-contiguous inputs are transformed in place (saves a copy).

    Returns:
        ``([X_train', *others'], mean, std)``: float32 arrays and the float32 statistics, each
        of shape ``(D,)``.

    >>> (a, b), mean, std = standardize(np.array([[0., 1.], [2., 1.]]), np.array([[1., 3.]]))
    >>> a.tolist(), b.tolist(), std.tolist()
    ([[-1.0, 0.0], [1.0, 0.0]], [[0.0, 20.0]], [1.0, 0.10000000149011612])
    """
    X_train = np.asarray(X_train)
    if X_train.ndim != 2 or X_train.shape[0] == 0:
        raise ValueError(f"standardize: X_train must be a non-empty 2-D array, got shape {X_train.shape}")
    if not std_floor > 0:
        raise ValueError(f"standardize: std_floor must be > 0, got {std_floor}")
    n, d = X_train.shape
    block = max(1, (1 << 22) // max(d, 1))  # ~4M elements per block: bounded temporaries
    total = np.zeros(d, dtype=np.float64)
    for i in range(0, n, block):
        total += X_train[i : i + block].sum(axis=0, dtype=np.float64)
    mean64 = total / n
    sq = np.zeros(d, dtype=np.float64)
    for i in range(0, n, block):
        dev = X_train[i : i + block] - mean64
        sq += np.einsum("ij,ij->j", dev, dev)
    mean = mean64.astype(np.float32)
    std = np.maximum(np.sqrt(sq / n), std_floor).astype(np.float32)
    out = [
        apply_standardization(X, mean, std, name="X_train" if i == 0 else f"array {i}", copy=copy)
        for i, X in enumerate((X_train, *others))
    ]
    return out, mean, std


def apply_standardization(
    X: np.ndarray, mean: np.ndarray, std: np.ndarray, *, name: str = "X", copy: bool = True
) -> np.ndarray:
    """``(X - mean) / std`` as float32; a new array unless ``copy=False`` and ``X`` is float32 C-contiguous."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != mean.shape[0]:
        raise ValueError(
            f"standardize: {name} has shape {X.shape}, expected (N, {mean.shape[0]}) like the training data"
        )
    if copy or X.dtype != np.float32 or not X.flags.c_contiguous or not X.flags.writeable:
        X = np.array(X, dtype=np.float32, copy=True)
    X -= mean
    X /= std
    return X


def train_val_split(
    X: np.ndarray, y: np.ndarray, val_fraction: float = 0.1, seed: int = 0
) -> tuple[Pair, Pair]:
    """Split ``(X, y)`` into train and validation parts, stratified by class, reproducibly.

    ``round(val_fraction * N)`` examples go to validation, shared among the classes in
    proportion to their sizes (largest remainders get the rounding), each class's examples
    picked by a permutation drawn from ``numpy.random.default_rng(seed)``. Both parts keep the
    original order of the examples. The same ``(N, y, val_fraction, seed)`` always gives the
    same split.

    Returns:
        ``((X_train, y_train), (X_val, y_val))``.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    n = y.shape[0]
    if X.shape[0] != n:
        raise ValueError(f"train_val_split: X has {X.shape[0]} rows but y has {n} labels")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"train_val_split: val_fraction must be in [0, 1), got {val_fraction}")
    val_idx = _stratified_pick(y, int(round(val_fraction * n)), seed)
    mask = np.zeros(n, dtype=bool)
    mask[val_idx] = True
    return (X[~mask], y[~mask]), (X[mask], y[mask])


def _stratified_pick(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``k`` indices, classes represented in proportion, chosen by a seeded permutation."""
    n = y.shape[0]
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    exact = counts * (k / n)
    take = np.floor(exact).astype(np.int64)
    short = k - int(take.sum())
    if short > 0:  # largest remainders first; ties broken by class order
        order = np.argsort(-(exact - take), kind="stable")[:short]
        take[order] += 1
    # Group the permuted indices by class (stable sort keeps the random order inside a class),
    # then take the first take[c] of each group.
    grouped = perm[np.argsort(inverse[perm], kind="stable")]
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    picked = [grouped[s : s + t] for s, t in zip(starts, take)]
    return np.sort(np.concatenate(picked))


# ---------------------------------------------------------------------------------------------
# idx files
# ---------------------------------------------------------------------------------------------

# idx type code -> big-endian dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_CODES = {np.dtype(v).newbyteorder("=").str: k for k, v in _IDX_DTYPES.items()}


def read_idx(path: str | os.PathLike, *, expected_magic: int | None = None, data: bytes | None = None) -> np.ndarray:
    """Read an idx file (plain or gzip-compressed) into an array of its dimensions.

    The header is a 4-byte big-endian magic number ``0x0000TTNN`` (``TT`` the element type,
    ``0x08`` = unsigned byte; ``NN`` the number of dimensions), then ``NN`` big-endian uint32
    sizes, then the data. MNIST labels have magic 2049 (``0x801``: bytes, 1-D), images 2051
    (``0x803``: bytes, 3-D).

    Args:
        path: the file; gzip is recognised by its content, not its name.
        expected_magic: if given, the magic number the file must have.
        data: the file's bytes if already read (``path`` then only names it in errors).

    Returns:
        An array of the file's shape (uint8 for byte data, native byte order otherwise).

    Raises:
        IdxFormatError: naming the file, for a wrong magic number, a truncated header or data, or
            bytes beyond the data.
    """
    name = os.fspath(path)
    if data is None:
        from ._io import read_file_bytes
        data = read_file_bytes(name, lambda reason, line=None, column=None: IdxFormatError(f"{name}: {reason}"),
                               what="idx file")
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise IdxFormatError(f"{name}: not a valid gzip file ({e})") from None
    if len(data) < 4:
        raise IdxFormatError(f"{name}: truncated idx file: {len(data)} bytes, too short for the 4-byte magic number")
    magic = int.from_bytes(data[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise IdxFormatError(
            f"{name}: wrong idx magic number {magic} (0x{magic:08x}), "
            f"expected {expected_magic} (0x{expected_magic:08x})"
            + {2049: " (labels file)", 2051: " (images file)"}.get(expected_magic, "")
        )
    code, ndim = data[2], data[3]
    if data[0] != 0 or data[1] != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise IdxFormatError(
            f"{name}: not an idx file: magic number {magic} (0x{magic:08x}) is not 0x0000TTNN with a "
            "known type TT and NN >= 1 dimensions (MNIST uses 2049 for labels, 2051 for images)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxFormatError(
            f"{name}: truncated idx header: {ndim} dimensions need {header} bytes, the file has {len(data)}"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated idx data" if len(data) < expected else "extra bytes after the idx data"
        raise IdxFormatError(
            f"{name}: {what}: header says shape {shape} of {dtype.name} ({expected} bytes with the header), "
            f"the (decompressed) file has {len(data)} bytes"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    if dtype.itemsize > 1:
        arr = arr.astype(dtype.newbyteorder("="))
    return arr


def write_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool | None = None) -> None:
    """Write ``array`` as an idx file; gzip it when ``compress`` is true (default: name ends ``.gz``)."""
    array = np.asarray(array)
    key = array.dtype.newbyteorder("=").str if array.dtype.itemsize > 1 else array.dtype.str
    code = _IDX_CODES.get(key)
    if code is None or array.ndim == 0:
        raise ValueError(f"write_idx: unsupported array (dtype {array.dtype}, ndim {array.ndim})")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=_IDX_DTYPES[code]).tobytes()
    name = os.fspath(path)
    if compress is None:
        compress = name.endswith(".gz")
    if compress:
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    with open(name, "wb") as fh:
        fh.write(payload)


# ---------------------------------------------------------------------------------------------
# Files: where they are, and are they the right ones
# ---------------------------------------------------------------------------------------------

_verified: dict[tuple[str, int, int], str] = {}
_verified_lock = threading.Lock()


def verify_sha256(path: str | os.PathLike, expected: str, *, data: bytes | None = None) -> bytes:
    """Check a file's sha256 and return its bytes.

    The result is remembered per process for the file's (real path, size, mtime), so loading the
    same data set again does not hash it again.

    Raises:
        FileNotFoundError: the file does not exist.
        ChecksumError: naming the file, the expected and the actual sha256.
    """
    p = os.path.realpath(os.fspath(path))
    st = os.stat(p)
    key = (p, st.st_size, st.st_mtime_ns)
    if data is None:
        with open(p, "rb") as fh:
            data = fh.read()
    if _verified.get(key) == expected:
        return data
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        want = [(ds, fn) for ds, files in IDX_SHA256.items() for fn, h in files.items() if h == expected]
        got = [(ds, fn) for ds, files in IDX_SHA256.items() for fn, h in files.items() if h == actual]
        if got:        # an intact file of another data set: a mismatch of data sets, not a corrupt file
            raise ChecksumError(
                f"data set mismatch: {os.fspath(path)} is {got[0][0]}'s {got[0][1]} (its sha256 matches), but "
                f"{want[0][0] + ' is' if want else 'this run needs'} expected here; point --data-dir at the "
                f"{want[0][0] if want else 'right'} files"
            )
        raise ChecksumError(
            f"checksum mismatch for {os.fspath(path)}: expected sha256 {expected}, got {actual}; "
            "the file is corrupt or not the original (delete it and copy it again)"
        )
    with _verified_lock:
        _verified[key] = expected
    return data


def _candidate_dirs(name: str, data_dir: str | os.PathLike | None) -> list[Path]:
    if data_dir is not None:
        d = Path(data_dir).expanduser()
        return [d, d / name]
    env = os.environ.get("CHAINRULE_DATA_DIR")
    if env:
        return [Path(env).expanduser() / name]
    return [Path.home() / ".chainrule" / "data" / name]


def find_data_dir(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The directory holding the idx files of ``name`` ('mnist' or 'fashion-mnist').

    Resolution: ``data_dir`` (or ``data_dir/<name>``) if given, else
    ``$CHAINRULE_DATA_DIR/<name>``, else ``~/.chainrule/data/<name>``. The directory found is the
    first that holds the training images.

    Raises:
        FileNotFoundError: naming the missing file, the directories searched, the expected sha256
            and how to point the loader at the files.
    """
    name = _canonical(name)
    if name not in IDX_SHA256:
        raise ValueError(f"find_data_dir: {name!r} has no idx files; choose 'mnist' or 'fashion-mnist'")
    dirs = _candidate_dirs(name, data_dir)
    first = IDX_FILES["train_images"]
    for d in dirs:
        if (d / first).is_file():
            return d
    raise _missing(name, first, dirs)


def _missing(name: str, filename: str, dirs: list[Path]) -> FileNotFoundError:
    searched = ", ".join(str(d) for d in dirs)
    return FileNotFoundError(
        f"{name}: file {filename} not found (searched: {searched}); expected sha256 "
        f"{IDX_SHA256[name][filename]}. Put the four original idx .gz files "
        f"({', '.join(IDX_FILES.values())}) in one directory and pass --data-dir DIR "
        f"(data_dir=DIR in Python), or set CHAINRULE_DATA_DIR so that $CHAINRULE_DATA_DIR/{name}/ holds them."
    )


def _canonical(name: str) -> str:
    key = str(name).strip().lower().replace("_", "-")
    if key == "fashion":
        key = "fashion-mnist"
    return key


# ---------------------------------------------------------------------------------------------
# Loaders
# ---------------------------------------------------------------------------------------------


def _load_idx_dataset(name: str, data_dir) -> tuple[Pair, Pair, float]:
    """Raw (uint8 images flattened, int64 labels) for train and test, and the pixel scale 1/255."""
    d = find_data_dir(name, data_dir)
    arrays = {}
    for role, filename in IDX_FILES.items():
        path = d / filename
        if not path.is_file():
            raise _missing(name, filename, [d])
        raw = verify_sha256(path, IDX_SHA256[name][filename])
        arrays[role] = read_idx(path, expected_magic=2051 if role.endswith("images") else 2049, data=raw)
    out = []
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.shape[0] != labels.shape[0]:
            raise IdxFormatError(
                f"{name}: {part} images ({images.shape[0]}) and labels ({labels.shape[0]}) differ in number"
            )
        out.append((images.reshape(images.shape[0], -1), labels.astype(np.int64)))
    return out[0], out[1], 1.0 / 255.0


def _digits_csv() -> str | None:
    """Path of scikit-learn's bundled ``digits.csv.gz``, found without importing scikit-learn
    (whose import takes ~0.7 s; the file is all ``load_digits`` reads)."""
    import importlib.util
    try:
        spec = importlib.util.find_spec("sklearn")
    except (ImportError, ValueError):
        return None
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(root, "datasets", "data", "digits.csv.gz")
        if os.path.isfile(path):
            return path
    return None


def _load_digits() -> tuple[Pair, Pair, float]:
    """scikit-learn's digits: pixel values 0..16, a fixed stratified 20% test hold-out (seed 0)."""
    path = _digits_csv()
    if path is not None:                # the same file and parse as sklearn.datasets.load_digits
        data = np.loadtxt(path, delimiter=",")
        X, y = data[:, :-1].astype(np.float32), data[:, -1].astype(np.int64)
    else:
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise ImportError(
                "the 'digits' data set is scikit-learn's bundled copy: pip install scikit-learn "
                "(or pip install 'chainrule[train]')"
            ) from None
        bunch = load_digits()
        X = np.asarray(bunch.data, dtype=np.float32)
        y = np.asarray(bunch.target, dtype=np.int64)
    train, test = train_val_split(X, y, _DIGITS_TEST_FRACTION, _DIGITS_TEST_SEED)
    return train, test, 1.0 / 16.0


def load(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    standardize: bool = True,
) -> Splits:
    """Load a data set as :class:`Splits` of float32 features and int64 labels.

    Args:
        name: ``'digits'``, ``'mnist'`` or ``'fashion-mnist'`` (case and ``_``/``-`` ignored).
        data_dir: where the MNIST / Fashion-MNIST idx files are (see the module docstring);
            unused for digits.
        val_fraction: share of the training data held out for validation (stratified), in [0, 1).
        seed: seed of the validation split.
        standardize: centre/scale each feature with training-split statistics.

    Raises:
        ValueError: unknown name or bad ``val_fraction``.
        FileNotFoundError: an idx file is missing (the message says where it was looked for).
        ChecksumError: an idx file's sha256 is wrong.
        IdxFormatError: an idx file is malformed.
    """
    key = _canonical(name)
    if key not in DATASETS:
        raise ValueError(f"load: unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"load: val_fraction must be in [0, 1), got {val_fraction}")
    if key == "digits":
        full_train, test, scale = _load_digits()
    else:
        full_train, test, scale = _load_idx_dataset(key, data_dir)
    # Split the raw pixels (uint8 for idx: 4x less memory traffic), then scale each part to
    # [0, 1] float32 in one pass; standardisation then works in place on those new arrays.
    train, val = train_val_split(*full_train, val_fraction=val_fraction, seed=seed)
    train, val, test = ((np.multiply(X, np.float32(scale), dtype=np.float32), y) for X, y in (train, val, test))
    mean = std = None
    if standardize:
        (Xtr, Xva, Xte), mean, std = _standardize(train[0], val[0], test[0], copy=False)
        train, val, test = (Xtr, train[1]), (Xva, val[1]), (Xte, test[1])
    return Splits(
        train=train, val=val, test=test,
        classes=list(_CLASSES[key]), name=key, image_shape=_IMAGE_SHAPE[key],
        mean=mean, std=std,
    )


_standardize = standardize  # `load`'s keyword argument shadows the function inside it
