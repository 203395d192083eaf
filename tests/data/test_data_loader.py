"""chainrule.data.DataLoader: iteration, batch sizes, drop_last, shuffling with a seed or the global
generator, custom data sets."""
import numpy as np
import pytest

import chainrule as cr
from chainrule.data import DataLoader, TensorDataset

X = np.arange(20.0).reshape(10, 2)
Y = np.arange(10)


def test_batches_in_order_and_drop_last():
    batches = list(DataLoader((X, Y), batch_size=4))
    assert [yb.tolist() for _, yb in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert all(np.array_equal(xb, X[yb]) for xb, yb in batches)
    assert len(DataLoader((X, Y), batch_size=4)) == 3
    dl = DataLoader((X, Y), batch_size=4, drop_last=True)
    assert len(dl) == 2 and [len(yb) for _, yb in dl] == [4, 4]
    assert [b.shape for b in DataLoader(X, batch_size=6)] == [(6, 2), (4, 2)]     # one array: arrays


def test_shuffle_with_a_seed_is_reproducible_and_differs_per_epoch():
    a = DataLoader((X, Y), batch_size=3, shuffle=True, seed=1)
    b = DataLoader((X, Y), batch_size=3, shuffle=True, seed=1)
    ea1, ea2 = [np.concatenate([yb for _, yb in a]) for _ in range(2)]
    eb1, eb2 = [np.concatenate([yb for _, yb in b]) for _ in range(2)]
    assert np.array_equal(ea1, eb1) and np.array_equal(ea2, eb2)
    assert not np.array_equal(ea1, ea2) and sorted(ea1) == list(range(10))
    assert not np.array_equal(ea1, np.arange(10))


def test_shuffle_without_a_seed_uses_the_global_generator():
    cr.manual_seed(4)
    a = np.concatenate([yb for _, yb in DataLoader((X, Y), batch_size=3, shuffle=True)])
    cr.manual_seed(4)
    b = np.concatenate([yb for _, yb in DataLoader((X, Y), batch_size=3, shuffle=True)])
    assert np.array_equal(a, b)


def test_custom_dataset_tensors_and_errors():
    class Squares:
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return np.array([i, i * i], dtype=np.float32), i % 2

    (xb, yb), = list(DataLoader(Squares(), batch_size=5))
    assert xb.shape == (5, 2) and yb.tolist() == [0, 1, 0, 1, 0]
    ds = TensorDataset(cr.tensor(X), Y)
    assert len(ds) == 10 and ds[2][1] == 2
    with pytest.raises(ValueError, match="different lengths"):
        TensorDataset(X, Y[:3])
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        DataLoader((X, Y), batch_size=0)


def test_a_training_loop_with_the_loader():
    from chainrule import nn, optim, losses
    cr.manual_seed(0)
    Xc = np.random.default_rng(0).standard_normal((64, 3)).astype(np.float32)
    yc = (Xc[:, 0] > 0).astype(np.int64)
    model = nn.Linear(3, 2)
    opt = optim.SGD(model.parameters(), lr=0.5)
    first = None
    for epoch in range(5):
        total = 0.0
        for xb, yb in DataLoader((Xc, yc), batch_size=16, shuffle=True, seed=epoch):
            opt.zero_grad()
            loss = losses.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            total += float(loss)
        first = total if first is None else first
    assert total < first
