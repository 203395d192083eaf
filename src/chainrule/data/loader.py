"""An iterable mini-batch loader, as PyTorch's ``DataLoader`` for in-memory arrays.

>>> import numpy as np
>>> from chainrule.data import DataLoader
>>> X, y = np.arange(10.0).reshape(5, 2), np.arange(5)
>>> [yb.tolist() for xb, yb in DataLoader((X, y), batch_size=2)]
[[0, 1], [2, 3], [4]]
>>> len(DataLoader((X, y), batch_size=2, drop_last=True))
2

Each batch is a tuple of NumPy arrays, one per array of the data set, sliced with the same
example indices (chainrule's layers and losses take arrays and Tensors alike).  Nothing here
imports the autodiff engine unless ``shuffle=True`` without a seed asks for chainrule's global
generator.
"""
from __future__ import annotations

import numpy as np

__all__ = ["DataLoader", "TensorDataset"]


class TensorDataset:
    """Arrays (or Tensors) with the same first axis; ``ds[i]`` is the tuple of their i-th rows."""

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("TensorDataset: need at least one array")
        self.arrays = tuple(np.asarray(getattr(a, "data", a)) for a in arrays)
        n = {len(a) for a in self.arrays}
        if len(n) != 1:
            raise ValueError(f"TensorDataset: the arrays have different lengths {[len(a) for a in self.arrays]}")

    def __len__(self):
        return len(self.arrays[0])

    def __getitem__(self, i):
        return tuple(a[i] for a in self.arrays)


class DataLoader:
    """``for xb, yb in DataLoader((X, y), batch_size=32, shuffle=True, seed=0): ...``

    Args:
        dataset: a tuple/list of arrays with the same first axis (e.g. ``(X, y)``), a single array
            (batches are then arrays, not tuples), a :class:`TensorDataset`, or any object with
            ``__len__`` and ``__getitem__`` returning a tuple per example (stacked per batch).
        batch_size: examples per batch (the last one may be smaller unless ``drop_last``).
        shuffle: a new random order every epoch (every ``iter(loader)``).
        drop_last: drop a last batch smaller than ``batch_size``.
        seed: seeds the loader's own generator (epoch k's order is then the same on every run);
            None: chainrule's global generator (``cr.manual_seed``) is used.
        generator: a ``np.random.Generator`` to draw the orders from (instead of ``seed``).

    ``len(loader)`` is the number of batches per epoch.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=None, generator=None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise ValueError(f"DataLoader: batch_size must be a positive integer, got {batch_size!r}")
        if seed is not None and generator is not None:
            raise ValueError("DataLoader: give seed or generator, not both")
        self.single = False
        if isinstance(dataset, (tuple, list)):
            dataset = TensorDataset(*dataset)
        elif isinstance(dataset, np.ndarray) or hasattr(dataset, "data") and isinstance(dataset.data, np.ndarray):
            dataset = TensorDataset(dataset)
            self.single = True
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(f"DataLoader: the data set must be arrays or have __len__ and __getitem__, "
                            f"got {type(dataset).__name__}")
        self.dataset = dataset
        self.batch_size, self.shuffle, self.drop_last = int(batch_size), bool(shuffle), bool(drop_last)
        self.generator = generator if generator is not None else (
            np.random.default_rng(seed) if seed is not None else None)

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self):
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        g = self.generator
        if g is None:
            from ..random import default_generator
            g = default_generator()
        return g.permutation(n)

    def __iter__(self):
        order = self._order()
        ds, bs = self.dataset, self.batch_size
        stop = (len(order) // bs) * bs if self.drop_last else len(order)
        for i in range(0, stop, bs):
            idx = order[i:i + bs]
            if isinstance(ds, TensorDataset):
                batch = tuple(a[idx] for a in ds.arrays)
            else:
                items = [ds[int(j)] for j in idx]
                if not isinstance(items[0], tuple):
                    batch = (np.stack([np.asarray(it) for it in items]),)
                else:
                    batch = tuple(np.stack([np.asarray(getattr(x, "data", x)) for x in col]) for col in zip(*items))
            yield batch[0] if self.single else batch

    def __repr__(self):
        return (f"DataLoader({len(self.dataset)} examples, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"drop_last={self.drop_last})")
