"""The sequence classifier of chainrule.models.sequence: padding invariance, row-sparse embedding
gradients, length buckets."""
import numpy as np

import chainrule as cr


def test_sequence_classifier_padding_invariance_and_sparse_embedding_grad():
    from chainrule.models.sequence import SequenceClassifier
    m = SequenceClassifier(20, embed_dim=5, hidden_size=6, bidirectional=True, pool="attention", dropout=0.0,
                           embed_dropout=0.0, seed=0, dtype=np.float64)
    idx = np.array([[3, 4, 5, 0, 0], [6, 7, 8, 9, 10]])
    lengths = np.array([3, 5])
    z = m(idx, lengths)
    z2 = m(np.where(idx == 0, 11, idx), lengths)                 # different junk at the padding
    np.testing.assert_array_equal(z.data, z2.data)
    np.testing.assert_allclose(m(idx[:1, :3], lengths[:1]).data, z.data[:1], atol=1e-12)
    cr.softmax_cross_entropy(z, np.array([1, 3])).backward()
    g = m.embedding.weight.grad
    assert isinstance(g, cr.RowSparseGrad)
    dense = g.to_dense()
    assert np.all(dense[0] == 0) and np.all(dense[11:] == 0) and np.any(dense[3] != 0)


def test_bucketed_batches_cover_everything_and_are_reproducible():
    from chainrule.models.sequence import BucketedBatches, SequenceDataset
    rng = np.random.default_rng(0)
    seqs = [rng.integers(2, 9, size=int(n)) for n in rng.integers(1, 30, size=103)]
    ds = SequenceDataset(seqs, np.zeros(103, dtype=np.int64))
    b = BucketedBatches(ds, 10, seed=3)
    b.reshuffle(4)
    first = [x.copy() for x in b.batches]
    assert sorted(np.concatenate(first).tolist()) == list(range(103)) and len(b) == 11
    b.reshuffle(5)
    b.reshuffle(4)
    assert all(np.array_equal(u, v) for u, v in zip(first, b.batches))
    x, lengths, y = b.batch([2])
    assert x.shape == (len(lengths), lengths.max()) and lengths.max() - lengths.min() <= 8
